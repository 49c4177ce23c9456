/**
 * The fresh-process Strongroom "CLI" that `npm run bench:crypto` times (mode `process .ts`): start Node, import the
 * envelope, create a pool, do one file, exit.
 *
 *   node bench/crypto/child.ts encrypt|encrypt-nodigest|decrypt <input> <output>   (DEK in STRONGROOM_BENCH_DEK)
 */
import { CONTEXT, DEFAULT_ENVELOPE, DEK_ENV, ENVELOPE_ENV, loadEnvelope } from './envelope.ts';

export async function childMain(argv: string[]): Promise<void> {
  const [op, input, output] = argv;
  const hex = process.env[DEK_ENV];
  if (!op || !input || !output || !hex) throw new Error(`usage: child.ts <op> <in> <out>, ${DEK_ENV}`);
  const { SegmentPool, decryptFile, encryptFile } = await loadEnvelope(
    process.env[ENVELOPE_ENV] ?? DEFAULT_ENVELOPE,
  );
  const dek = Buffer.from(hex, 'hex');
  const pool = new SegmentPool();
  try {
    if (op === 'decrypt') {
      await decryptFile(input, output, { dek, context: CONTEXT, pool });
      process.stdout.write('{}\n');
    } else {
      const r = await encryptFile(input, output, {
        dek,
        keyId: 'bench',
        context: CONTEXT,
        pool,
        digest: op !== 'encrypt-nodigest',
      });
      process.stdout.write(`${JSON.stringify({ digest: r.digest })}\n`);
    }
  } finally {
    dek.fill(0);
    await pool.close();
  }
}

if (import.meta.main) await childMain(process.argv.slice(2));
