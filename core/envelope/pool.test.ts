import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EnvelopeError } from './errors.ts';
import { decryptFile, encryptFile } from './file.ts';
import { SegmentPool } from './pool.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-pool-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const dek = randomBytes(32);
const context = { artifactUid: 'u', artifactName: 'n', version: 'v1', path: '' };

describe('segment pool', () => {
  it('refuses a nonsensical size', () => {
    expect(() => new SegmentPool(0)).toThrow(/pool size 0 is not 1..64/);
    expect(() => new SegmentPool(1.5)).toThrow(EnvelopeError);
  });

  it('refuses work once closed, with a clear error and no output', async () => {
    const pool = new SegmentPool(1);
    writeFileSync(join(dir, 'p'), randomBytes(200_000));
    await encryptFile(join(dir, 'p'), join(dir, 'c'), { dek, keyId: 'k', context, segmentLog2: 12, pool });
    await pool.close();
    const out = mkdtempSync(join(dir, 'out-'));
    const error = await decryptFile(join(dir, 'c'), join(out, 'p'), { dek, context, pool }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).message).toBe('the segment pool is closed');
    expect(readdirSync(out)).toEqual([]);
  });

  it('reports an unwritable destination as an io error', async () => {
    writeFileSync(join(dir, 'q'), 'x');
    await encryptFile(join(dir, 'q'), join(dir, 'qc'), { dek, keyId: 'k', context });
    const error = await decryptFile(join(dir, 'qc'), join(dir, 'missing-dir', 'q'), { dek, context }).catch(
      (e: unknown) => e,
    );
    expect((error as EnvelopeError).kind).toBe('io');
  });
});
