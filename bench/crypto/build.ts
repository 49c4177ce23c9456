/**
 * The envelope as deployed, for `npm run bench:crypto`'s `process .js` mode: compiled to JavaScript (what
 * `npm run build` emits) with a JavaScript CLI beside it. Run as its own process, because loading TypeScript would
 * add ~300 MiB to the bench's RSS, which its warm-pool rows include:
 *
 *   node bench/crypto/build.ts <envelope source directory> <output directory>
 */
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTEXT, DEK_ENV } from './envelope.ts';

/** The JavaScript CLI: the same as ./child.ts, without type stripping. */
const BUILT_CLI = `import { SegmentPool, decryptFile, encryptFile } from './index.js';
const [op, input, output] = process.argv.slice(2);
const dek = Buffer.from(process.env.${DEK_ENV}, 'hex');
const context = ${JSON.stringify(CONTEXT)};
const pool = new SegmentPool();
try {
  if (op === 'decrypt') {
    await decryptFile(input, output, { dek, context, pool });
    process.stdout.write('{}\\n');
  } else {
    const r = await encryptFile(input, output, { dek, keyId: 'bench', context, pool, digest: op !== 'encrypt-nodigest' });
    process.stdout.write(JSON.stringify({ digest: r.digest }) + '\\n');
  }
} finally {
  dek.fill(0);
  await pool.close();
}
`;

/**
 * Compiles the envelope's modules to JavaScript the way the build does (TypeScript, relative `.ts` imports rewritten
 * to `.js`) into `dir`, with the CLI beside them. The envelope imports other modules of the tree above it
 * (`../api/validation.ts`), so the whole tree above `source` is compiled, laid out as it is: the envelope lands in
 * `dir/<basename of source>/`. node_modules is linked for @hpke/core.
 */
export async function buildEnvelope(source: string, dir: string): Promise<void> {
  const ts = (await import('typescript')).default;
  const compile = async (from: string, to: string): Promise<void> => {
    await mkdir(to, { recursive: true });
    for (const entry of await readdir(from, { withFileTypes: true })) {
      const { name } = entry;
      if (entry.isDirectory()) {
        if (name !== 'node_modules' && name !== 'testdata') await compile(join(from, name), join(to, name));
        continue;
      }
      if (!name.endsWith('.ts') || name.endsWith('.test.ts') || name.endsWith('.d.ts')) continue;
      const { outputText } = ts.transpileModule(await readFile(join(from, name), 'utf8'), {
        fileName: name,
        compilerOptions: {
          target: ts.ScriptTarget.ES2024,
          module: ts.ModuleKind.ESNext,
          verbatimModuleSyntax: true,
          rewriteRelativeImportExtensions: true,
        },
      });
      await writeFile(join(to, name.replace(/\.ts$/, '.js')), outputText);
    }
  };
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
  await symlink(
    fileURLToPath(new URL('../../node_modules', import.meta.url)),
    join(dir, 'node_modules'),
    'dir',
  );
  await compile(dirname(source), dir);
  await writeFile(builtCliPath(source, dir), BUILT_CLI);
}

/** Where {@link buildEnvelope} puts the CLI for the envelope in `source`. */
export function builtCliPath(source: string, dir: string): string {
  return join(dir, basename(source), 'cli.mjs');
}

if (import.meta.main) await buildEnvelope(process.argv[2] ?? '', process.argv[3] ?? '');
