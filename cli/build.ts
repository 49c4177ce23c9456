/**
 * The installable `strongroom` command: esbuild bundles `cli/bin.ts` (which runs cli/strongroom.ts's main) and everything it imports (the project's
 * TypeScript and its npm dependencies) into one ESM file, `dist/cli/strongroom.mjs`, with a `#!/usr/bin/env node`
 * line, and the envelope's segment worker beside it as `dist/cli/segment-worker.js` (the name
 * core/envelope/pool.ts loads when its own URL does not end in `.ts`).
 *
 * Why a bundle: Node strips TypeScript types only outside node_modules, so an installed package must ship
 * JavaScript; and a bundle needs no dependency at run time, so `npm install -g strongroom-<v>.tgz` has nothing to
 * fetch or compile (package.json's `bundleDependencies` is not used; the bundle simply has them inside).
 *
 * `npm pack` runs this (the `prepack` script); `node cli/build.ts [outDir]` runs it by hand. package.json `bin`
 * names the bundle twice, `strongroom` and `kubectl-strongroom`: the program tells which by the name it was invoked
 * as (cli/strongroom.ts), so `kubectl strongroom …` prints `kubectl strongroom` in its usage.
 *
 * Imports nothing but Node built-ins and esbuild.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

export const CLI_BUNDLE = 'dist/cli/strongroom.mjs';
export const CLI_WORKER = 'dist/cli/segment-worker.js';

/**
 * The first lines of the bundle: the interpreter line; a refusal on a Node.js without `import.meta.main` (before
 * 24.2, where the program would otherwise exit 0 doing nothing); and a `require` for the CommonJS packages inside
 * the ESM bundle (they require Node built-ins).
 */
const BANNER = [
  '#!/usr/bin/env node',
  "import { createRequire as __strongroomCreateRequire } from 'node:module';",
  'const require = __strongroomCreateRequire(import.meta.url);',
  "if (typeof import.meta.main !== 'boolean') {",
  '  process.stderr.write(`strongroom needs Node.js 24.2 or newer; this is ${process.version}\\n`);',
  '  process.exit(5);',
  '}',
].join('\n');

/** Node built-ins through `require` (the module object, nothing more loaded), as the sidecar bundle does. */
const builtinsByRequire: Plugin = {
  name: 'builtins-by-require',
  setup(b) {
    const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      args.kind === 'import-statement' && builtins.has(args.path)
        ? { path: args.path, namespace: 'builtin-by-require' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin-by-require' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/** The CLI must not link the operator or a native addon (it runs on laptops and CI runners). */
const FORBIDDEN_INPUT = /(^|\/)operator\/|(^|\/)node_modules\/pkcs11js\/|\.node$/;

export class CliBundleError extends Error {
  override readonly name = 'CliBundleError';
}

export interface CliBundle {
  readonly entry: string;
  readonly worker: string;
  /** Every source file bundled, relative to the repository. */
  readonly inputs: readonly string[];
  readonly bytes: number;
}

const defaultRepoRoot = (): string => resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Bundles the CLI into `<outRoot>/dist/cli/` (default: the repository). */
export async function bundleCli(options: { repoRoot?: string; outRoot?: string } = {}): Promise<CliBundle> {
  const repoRoot = resolve(options.repoRoot ?? defaultRepoRoot());
  const outRoot = resolve(options.outRoot ?? repoRoot);
  const entry = join(outRoot, CLI_BUNDLE);
  const worker = join(outRoot, CLI_WORKER);
  mkdirSync(dirname(entry), { recursive: true });
  const result = await build({
    absWorkingDir: repoRoot,
    entryPoints: [
      { in: join(repoRoot, 'cli', 'bin.ts'), out: 'strongroom' },
      { in: join(repoRoot, 'core', 'envelope', 'segment-worker.ts'), out: 'segment-worker' },
    ],
    outdir: dirname(entry),
    outExtension: { '.js': '.js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    plugins: [builtinsByRequire],
    // One import.meta for every bundled module: no "if (import.meta.main)" block may fire (cli/bin.ts runs main).
    define: { 'import.meta.main': 'false' },
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
  }).catch((error: unknown) => {
    throw new CliBundleError(`bundling the CLI failed: ${String(error)}`, { cause: error });
  });
  // esbuild names both outputs .js; the command gets its banner and .mjs (a bundle that is ESM wherever it lies).
  const built = join(dirname(entry), 'strongroom.js');
  writeFileSync(entry, `${BANNER}\n${readFileSync(built, 'utf8')}`);
  rmSync(built);
  const workerText = readFileSync(worker, 'utf8');
  writeFileSync(worker, `${BANNER.split('\n').slice(1, 3).join('\n')}\n${workerText}`);
  chmodSync(entry, 0o755);
  const inputs = Object.keys(result.metafile.inputs).sort();
  const forbidden = inputs.filter((i) => FORBIDDEN_INPUT.test(i));
  if (forbidden.length > 0)
    throw new CliBundleError(
      `the CLI bundle would link ${forbidden.join(', ')}: the CLI must not import them`,
    );
  if (result.warnings.length > 0)
    throw new CliBundleError(
      `esbuild warned: ${result.warnings.map((w) => `${w.location?.file ?? ''}: ${w.text}`).join('; ')}`,
    );
  for (const file of [entry, worker])
    if (!existsSync(file)) throw new CliBundleError(`esbuild did not write ${file}`);
  return { entry, worker, inputs, bytes: readFileSync(entry).length };
}

/** postject, the tool Node's documentation uses to put the blob into a copy of the node binary (run with npx). */
export const POSTJECT = 'postject@1.0.0-alpha.6';
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * A single executable application (Node's SEA, `--experimental-sea-config` in Node 24): `<outDir>/strongroom`, a
 * copy of the running node binary with the CLI inside, and `<outDir>/kubectl-strongroom` linking to it. Node 24's SEA
 * runs one CommonJS script, so the CLI is bundled again as CommonJS, with `import.meta.url` defined as the
 * executable's file URL (nothing is loaded from beside it: encrypt/decrypt run without worker threads there).
 * postject comes from npm through npx (it is not a dependency).
 */
export async function buildSea(outDir: string, repoRoot = defaultRepoRoot()): Promise<string> {
  const out = resolve(outDir);
  mkdirSync(out, { recursive: true });
  const script = join(out, 'strongroom.cjs');
  const metaUrl = join(out, 'import-meta-url.js');
  writeFileSync(
    metaUrl,
    "export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;\n",
  );
  try {
    await build({
      absWorkingDir: repoRoot,
      entryPoints: [join(repoRoot, 'cli', 'bin.ts')],
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node24',
      define: { 'import.meta.main': 'false', 'import.meta.url': 'importMetaUrl' },
      inject: [metaUrl],
      legalComments: 'none',
      logLevel: 'silent',
    });
  } catch (error) {
    throw new CliBundleError(`bundling the CLI for the single executable failed: ${String(error)}`, {
      cause: error,
    });
  } finally {
    rmSync(metaUrl, { force: true });
  }
  const config = join(out, 'sea-config.json');
  const blob = join(out, 'sea-prep.blob');
  writeFileSync(
    config,
    JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'pipe' });
  const executable = join(out, 'strongroom');
  rmSync(executable, { force: true });
  copyFileSync(process.execPath, executable);
  chmodSync(executable, 0o755);
  execFileSync('npx', ['--yes', POSTJECT, executable, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], {
    stdio: 'pipe',
  });
  const plugin = join(out, 'kubectl-strongroom');
  rmSync(plugin, { force: true });
  symlinkSync('strongroom', plugin);
  for (const file of [script, config, blob]) rmSync(file, { force: true });
  return executable;
}

// `node cli/build.ts [outRoot]` (the `prepack` script); `node cli/build.ts --sea <outDir>`: the single executable.
if (import.meta.main && process.argv[2] === '--sea') {
  buildSea(process.argv[3] ?? 'dist/sea').then(
    (executable) => {
      process.stdout.write(`wrote the single executable ${executable} and kubectl-strongroom beside it\n`);
    },
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
} else if (import.meta.main) {
  const outRoot = process.argv[2];
  bundleCli(outRoot === undefined ? {} : { outRoot }).then(
    (bundle) => {
      process.stdout.write(
        `bundled ${String(bundle.inputs.length)} files into ${bundle.entry} (${(bundle.bytes / 2 ** 20).toFixed(1)} MiB)\n`,
      );
    },
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
}
