/**
 * The sidecar bundled for the Strongroom image: esbuild turns `sidecar/main.ts` and everything it imports (the
 * project's TypeScript and the CommonJS packages grpc-js, proto-loader, protobufjs, winston, node-forge…) into one
 * ESM file, so that the sidecar starts without type stripping and without resolving and loading a few hundred files
 * of node_modules (docs/images.md, "Start-up"). The segment worker (core/envelope/segment-worker.ts) is bundled
 * beside it under the name core/envelope/pool.ts loads when its URL ends in `.js`.
 *
 * Layout, under an application directory (`/app` in the image): `dist/sidecar/main.js` and
 * `dist/sidecar/segment-worker.js`. The bundle still reads `proto/strongroom/v1/keybroker.proto` at run time
 * (proto/keybroker.ts looks in `../../proto` from the module's own directory), so the application directory must
 * hold `proto/` too; {@link bundleSidecar} checks it does.
 *
 * Used by test/cluster/app-image.ts and by the Dockerfile (`node test/cluster/sidecar-bundle.ts <app dir>`), so this
 * file imports nothing but Node built-ins and esbuild.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';

/** The bundled sidecar entry, relative to the application directory. */
export const SIDECAR_BUNDLE_ENTRY = 'dist/sidecar/main.js';
/** The bundled segment worker, beside {@link SIDECAR_BUNDLE_ENTRY} under the name core/envelope/pool.ts loads. */
export const SIDECAR_BUNDLE_WORKER = 'dist/sidecar/segment-worker.js';
/** The .proto file the bundle reads at run time, relative to the application directory. */
const RUNTIME_PROTO = 'proto/strongroom/v1/keybroker.proto';

/**
 * CommonJS packages inside an ESM bundle call `require` for Node built-ins (and protobufjs's optional modules);
 * ESM has no `require`, so the bundle defines one relative to itself.
 */
const REQUIRE_BANNER =
  "import { createRequire as __strongroomCreateRequire } from 'node:module';\n" +
  'const require = __strongroomCreateRequire(import.meta.url);';

/**
 * Node's built-in modules, reached through `require` rather than `import`. An ESM import of a built-in builds an ES
 * module facade over all of its exports, and for `node:http` reading every export loads Node's bundled undici (about
 * 25 ms of the sidecar's start-up); `require` returns the module object and loads nothing more.
 */
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

/** What the sidecar must never link: the operator's code (docs/design: the sidecar talks to it over the proto only)
 * and native addons (pkcs11js is the operator's KMS provider). */
const FORBIDDEN_INPUT = /(^|\/)operator\/|(^|\/)node_modules\/pkcs11js\/|\.node$/;

/** Bundling failed, or the bundle would not run from where it is written. */
export class SidecarBundleError extends Error {
  override readonly name = 'SidecarBundleError';
}

export interface SidecarBundleOptions {
  /** The repository the sources come from; default: the one this file belongs to. */
  readonly repoRoot?: string;
  /** The application directory the bundle is written under (`<appDir>/dist/sidecar/`); it must hold proto/. */
  readonly appDir: string;
}

export interface SidecarBundle {
  /** Absolute paths of {@link SIDECAR_BUNDLE_ENTRY} and {@link SIDECAR_BUNDLE_WORKER} under the application dir. */
  readonly entry: string;
  readonly worker: string;
  /** Every source file bundled, relative to the repository, sorted. */
  readonly inputs: readonly string[];
}

const defaultRepoRoot = (): string => resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Bundles the sidecar and its segment worker into `<appDir>/dist/sidecar/`. Fails when the application directory has
 * no proto/ for the bundle to read, when esbuild reports an error or a warning, or when the bundle would link the
 * operator's code or a native addon.
 */
export async function bundleSidecar(options: SidecarBundleOptions): Promise<SidecarBundle> {
  const repoRoot = resolve(options.repoRoot ?? defaultRepoRoot());
  if (!isAbsolute(options.appDir))
    throw new SidecarBundleError(`the application directory must be absolute: ${options.appDir}`);
  const appDir = resolve(options.appDir);
  if (!existsSync(join(appDir, RUNTIME_PROTO)))
    throw new SidecarBundleError(
      `${appDir} has no ${RUNTIME_PROTO}, which the bundled sidecar reads at run time: copy proto/ first`,
    );
  const entry = join(appDir, SIDECAR_BUNDLE_ENTRY);
  const worker = join(appDir, SIDECAR_BUNDLE_WORKER);
  const outdir = dirname(entry);
  mkdirSync(outdir, { recursive: true });
  let metafile: Metafile;
  try {
    const result = await build({
      absWorkingDir: repoRoot,
      entryPoints: [
        { in: join(repoRoot, 'sidecar', 'main.ts'), out: 'main' },
        { in: join(repoRoot, 'core', 'envelope', 'segment-worker.ts'), out: 'segment-worker' },
      ],
      outdir,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      outExtension: { '.js': '.js' },
      banner: { js: REQUIRE_BANNER },
      plugins: [builtinsByRequire],
      // No minification: it saves little start-up time (V8 parses lazily) and keeps stack traces readable.
      legalComments: 'none',
      metafile: true,
      logLevel: 'silent',
    });
    if (result.warnings.length > 0)
      throw new SidecarBundleError(
        `esbuild warned: ${result.warnings.map((w) => `${w.location?.file ?? ''}: ${w.text}`).join('; ')}`,
      );
    metafile = result.metafile;
  } catch (error) {
    if (error instanceof SidecarBundleError) throw error;
    throw new SidecarBundleError(`bundling the sidecar failed: ${String(error)}`, { cause: error });
  }
  const inputs = Object.keys(metafile.inputs).sort();
  const forbidden = inputs.filter((i) => FORBIDDEN_INPUT.test(i));
  if (forbidden.length > 0)
    throw new SidecarBundleError(
      `the sidecar bundle would link ${forbidden.join(', ')}: the sidecar must not import the operator or a native addon`,
    );
  for (const file of [entry, worker])
    if (!existsSync(file)) throw new SidecarBundleError(`esbuild did not write ${file}`);
  return { entry, worker, inputs };
}

// `node test/cluster/sidecar-bundle.ts <app dir>` (the Dockerfile's bundle stage).
if (import.meta.main) {
  const appDir = process.argv[2];
  if (appDir === undefined || process.argv.length !== 3) {
    process.stderr.write('usage: node test/cluster/sidecar-bundle.ts <absolute application directory>\n');
    process.exit(2);
  }
  bundleSidecar({ appDir }).then(
    (bundle) => {
      process.stdout.write(`bundled ${String(bundle.inputs.length)} files into ${bundle.entry}\n`);
    },
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
}
