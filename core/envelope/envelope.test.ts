import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeError, type EnvelopeErrorKind } from './errors.ts';
import { decryptFile, encryptFile, verifyFile } from './file.ts';
import { TAG_LENGTH, headerLength, type EnvelopeContext } from './format.ts';
import { SegmentPool } from './pool.ts';

const LOG2 = 12; // 4 KiB segments keep the property runs fast; the format is the same at 1 MiB.
const S = 2 ** LOG2;
const KEY_ID = 'artifact-uid-1/v3';
const dek = randomBytes(32);
const context: EnvelopeContext = {
  artifactUid: 'uid-1',
  artifactName: 'resnet50',
  version: 'v3',
  path: 'weights.bin',
};
let dir: string;
let pool: SegmentPool;
let counter = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'strongroom-envelope-'));
  pool = new SegmentPool(2);
});
afterAll(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

const fresh = (name: string) => join(dir, `${name}-${++counter}`);

async function seal(plain: Buffer, ctx = context, key = dek): Promise<{ cipher: Buffer; path: string }> {
  const input = fresh('plain');
  writeFileSync(input, plain);
  const path = fresh('enc');
  await encryptFile(input, path, { dek: key, keyId: KEY_ID, context: ctx, segmentLog2: LOG2, pool });
  return { cipher: readFileSync(path), path };
}

/** Decrypts `cipher` and expects a typed failure with no output and no temporary file left behind. */
async function expectRejected(
  cipher: Buffer,
  kinds: readonly EnvelopeErrorKind[],
  opts: { ctx?: EnvelopeContext; key?: Buffer; usePool?: boolean } = {},
) {
  const input = fresh('tampered');
  writeFileSync(input, cipher);
  const outDir = mkdtempSync(join(dir, 'out-'));
  const output = join(outDir, 'weights.bin');
  const error = await decryptFile(input, output, {
    dek: opts.key ?? dek,
    context: opts.ctx ?? context,
    ...(opts.usePool === false ? {} : { pool }),
  }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EnvelopeError);
  expect(kinds).toContain((error as EnvelopeError).kind);
  expect(readdirSync(outDir)).toEqual([]);
  rmSync(outDir, { recursive: true });
  return error as EnvelopeError;
}

function segmentsOf(cipher: Buffer): { header: Buffer; segments: Buffer[] } {
  const h = headerLength(KEY_ID);
  const segments: Buffer[] = [];
  for (let at = h; at < cipher.length; at += S + TAG_LENGTH)
    segments.push(cipher.subarray(at, Math.min(at + S + TAG_LENGTH, cipher.length)));
  return { header: cipher.subarray(0, h), segments };
}

describe('round trips', () => {
  it.each([0, 1, S - 1, S, S + 1, 3 * S, 3 * S + 17])(
    '%i bytes, through the pool and on the calling thread',
    async (size) => {
      const plain = randomBytes(size);
      const { cipher, path } = await seal(plain);
      expect(cipher.length).toBe(headerLength(KEY_ID) + size + TAG_LENGTH * Math.max(1, Math.ceil(size / S)));
      for (const usePool of [true, false]) {
        const out = fresh('out');
        const result = await decryptFile(path, out, { dek, context, ...(usePool ? { pool } : {}) });
        expect(result).toEqual({ plaintextLength: size, keyId: KEY_ID, digest: null });
        expect(readFileSync(out).equals(plain)).toBe(true);
      }
      expect((await verifyFile(path, { dek, context, pool })).plaintextLength).toBe(size);
    },
  );

  it('random sizes round-trip (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 20 * S }), async (size) => {
        const plain = randomBytes(size);
        const { path } = await seal(plain);
        const out = fresh('out');
        await decryptFile(path, out, { dek, context, pool });
        return readFileSync(out).equals(plain);
      }),
      { numRuns: 25 },
    );
  });

  it.each([0, 1, S, 8 * S, 8 * S + 1, 17 * S + 5, 100 * S + 3])(
    '%i bytes: decrypting with digest returns the SHA-256 of the plaintext, through the pool and on the calling thread',
    async (size) => {
      // 8 segments make a batch: sizes around batch edges exercise the follower's in-order reading.
      const plain = randomBytes(size);
      const expected = `sha256:${createHash('sha256').update(plain).digest('hex')}`;
      const { path } = await seal(plain);
      for (const usePool of [true, false]) {
        const out = fresh('out');
        const result = await decryptFile(path, out, {
          dek,
          context,
          digest: true,
          ...(usePool ? { pool } : {}),
        });
        expect(result).toEqual({ plaintextLength: size, keyId: KEY_ID, digest: expected });
        expect(readFileSync(out).equals(plain)).toBe(true);
      }
    },
  );

  it('a failing segment late in a pooled, hashed decrypt throws the segment error and leaves nothing', async () => {
    const plain = randomBytes(64 * S + 9);
    const { cipher } = await seal(plain);
    const { header, segments } = segmentsOf(cipher);
    const last = segments.length - 2;
    const bad = Buffer.from(segments[last] ?? Buffer.alloc(0));
    bad[10] = (bad[10] ?? 0) ^ 0x80;
    const tampered = Buffer.concat([header, ...segments.slice(0, last), bad, ...segments.slice(last + 1)]);
    const input = fresh('tampered');
    writeFileSync(input, tampered);
    const outDir = mkdtempSync(join(dir, 'out-'));
    const error = await decryptFile(input, join(outDir, 'weights.bin'), {
      dek,
      context,
      pool,
      digest: true,
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).kind).toBe('segment');
    expect((error as EnvelopeError).segment).toBe(last);
    expect(readdirSync(outDir)).toEqual([]);
  });

  it('never produces the same ciphertext twice for the same plaintext', async () => {
    const plain = randomBytes(2 * S);
    expect((await seal(plain)).cipher.equals((await seal(plain)).cipher)).toBe(false);
  });

  it('reports the plaintext SHA-256', async () => {
    const input = fresh('plain');
    writeFileSync(input, 'hello');
    const result = await encryptFile(input, fresh('enc'), { dek, keyId: KEY_ID, context, segmentLog2: LOG2 });
    expect(result.digest).toBe('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  });
});

describe('tampering is detected with a typed error and leaves no plaintext', () => {
  const plain = randomBytes(5 * S + 100);
  let cipher: Buffer;
  beforeAll(async () => {
    cipher = (await seal(plain)).cipher;
  });

  it('any single-bit flip in the header', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: headerLength(KEY_ID) * 8 - 1 }), async (bit) => {
        const bad = Buffer.from(cipher);
        bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        await expectRejected(bad, ['header', 'wrong-key', 'wrong-context', 'truncated', 'extended']);
      }),
      { numRuns: 60 },
    );
  });

  it('any single-bit flip in any segment names that segment', async () => {
    const h = headerLength(KEY_ID);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: h * 8, max: cipher.length * 8 - 1 }),
        fc.boolean(),
        async (bit, usePool) => {
          const bad = Buffer.from(cipher);
          bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
          const error = await expectRejected(bad, ['segment'], { usePool });
          expect(error.segment).toBe(Math.floor(((bit >> 3) - h) / (S + TAG_LENGTH)));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('truncation at and between segment boundaries', async () => {
    const h = headerLength(KEY_ID);
    const boundaries = [
      0,
      10,
      h - 1,
      h,
      h + 1,
      h + S + TAG_LENGTH,
      h + 2 * (S + TAG_LENGTH),
      cipher.length - 1,
      cipher.length - TAG_LENGTH,
    ];
    for (const length of boundaries) {
      await expectRejected(cipher.subarray(0, length), ['header', 'truncated']);
    }
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: cipher.length - 1 }), async (length) => {
        await expectRejected(cipher.subarray(0, length), ['header', 'truncated']);
      }),
      { numRuns: 30 },
    );
  });

  it('appended bytes', async () => {
    for (const extra of [Buffer.alloc(1), randomBytes(16), randomBytes(S + TAG_LENGTH)]) {
      await expectRejected(Buffer.concat([cipher, extra]), ['extended']);
    }
  });

  it('swapped, duplicated and reordered segments', async () => {
    const { header, segments } = segmentsOf(cipher);
    const [s0, s1, s2, s3, s4, s5] = segments as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
    expect(segments).toHaveLength(6);
    const cases: Buffer[][] = [
      [s1, s0, s2, s3, s4, s5], // swap
      [s0, s0, s2, s3, s4, s5], // duplicate (same length)
      [s0, s2, s1, s3, s4, s5],
      [s4, s3, s2, s1, s0, s5], // reverse the full ones
    ];
    for (const order of cases) {
      const error = await expectRejected(Buffer.concat([header, ...order]), ['segment']);
      expect(error.segment).toBe(order.findIndex((seg, i) => seg !== segments[i]));
    }
    // Dropping the final segment and presenting a full one as last fails too (length, and the last-segment flag).
    await expectRejected(Buffer.concat([header, s0, s1, s2, s3, s4]), ['truncated']);
  });

  it('a header or a segment transplanted from another file, or from another version', async () => {
    const other = (await seal(plain)).cipher; // same DEK and context, fresh salt
    const otherVersion = (await seal(plain, { ...context, version: 'v4' })).cipher;
    for (const donor of [other, otherVersion]) {
      const a = segmentsOf(cipher);
      const b = segmentsOf(donor);
      // Segment 2 from the donor.
      const spliced = Buffer.concat([
        a.header,
        ...a.segments.map((s, i) => (i === 2 ? (b.segments[2] ?? s) : s)),
      ]);
      expect((await expectRejected(spliced, ['segment'])).segment).toBe(2);
      // The donor's header on our segments: its salt gives other keys, so segment 0 fails (or the context does).
      await expectRejected(Buffer.concat([b.header, ...a.segments]), ['segment', 'wrong-context']);
    }
    // The other version's file, whole, under this version's context.
    expect((await expectRejected(otherVersion, ['wrong-context'])).message).toMatch(
      /another artifact, version or path/,
    );
  });

  it('a wrong key or a wrong context, told apart', async () => {
    await expectRejected(cipher, ['wrong-key'], { key: randomBytes(32) });
    for (const ctx of [
      { ...context, artifactUid: 'uid-2' },
      { ...context, artifactName: 'resnet51' },
      { ...context, version: 'v2' },
      { ...context, path: 'other.bin' },
    ]) {
      await expectRejected(cipher, ['wrong-context'], { ctx });
    }
  });

  it('verify-only finds the same faults without writing anything', async () => {
    const bad = Buffer.from(cipher);
    bad[bad.length - 5] = (bad[bad.length - 5] ?? 0) ^ 0x80;
    const input = fresh('tampered');
    writeFileSync(input, bad);
    const error = (await verifyFile(input, { dek, context, pool }).catch((e: unknown) => e)) as EnvelopeError;
    expect(error.kind).toBe('segment');
    expect(error.segment).toBe(5);
  });
});

describe('bad input', () => {
  it('refuses a DEK of the wrong size and a destination that cannot be written', async () => {
    const input = fresh('plain');
    writeFileSync(input, 'x');
    await expect(
      encryptFile(input, fresh('enc'), { dek: randomBytes(16), keyId: KEY_ID, context }),
    ).rejects.toThrow(/a DEK is 32 bytes/);
    await expect(
      encryptFile(input, join(dir, 'no-such-dir', 'x'), { dek, keyId: KEY_ID, context }),
    ).rejects.toThrow(/cannot create the output beside/);
    await expect(
      encryptFile(join(dir, 'missing'), fresh('enc'), { dek, keyId: KEY_ID, context }),
    ).rejects.toThrow(/cannot read/);
  });

  it('refuses a file that is not an envelope', async () => {
    const error = await expectRejected(
      Buffer.from('this is plain text, not ciphertext, and long enough to parse as a header at all....'),
      ['header'],
    );
    expect(error.message).toMatch(/bad magic/);
  });
});
