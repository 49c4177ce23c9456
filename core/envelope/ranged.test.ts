import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EnvelopeError,
  decryptDirectory,
  decryptDirectoryFromSource,
  decryptFromSource,
  encryptBytes,
  encryptDirectory,
  encryptFile,
  readManifest,
  startsWithEnvelopeMagic,
  type CiphertextDirectorySource,
  type CiphertextSource,
  type EnvelopeErrorKind,
} from './index.ts';
import { TAG_LENGTH, headerLength, type EnvelopeContext } from './format.ts';

// 64 KiB segments: many windows from files of a few MiB (the first read holds the header and a window's worth of
// 1 MiB segments, so windowing shows beyond 16 segments per window); the format is the same at 1 MiB.
const LOG2 = 16;
const S = 2 ** LOG2;
const KEY_ID = 'uid-1/v3';
const dek = randomBytes(32);
const context: EnvelopeContext = {
  artifactUid: 'uid-1',
  artifactName: 'resnet50',
  version: 'v3',
  path: 'w.bin',
};
const dirContext = { artifactUid: 'uid-1', artifactName: 'resnet50', version: 'v3' };
let dir: string;
let counter = 0;
const fresh = (name: string) => join(dir, `${name}-${++counter}`);

beforeAll(() => {
  dir = mkdtempSync('/dev/shm/strongroom-ranged-');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A byte source over an in-memory copy of real encrypted output, recording every read (a test double of bytes). */
function memorySource(
  bytes: Buffer,
  extra: { size?: number; fail?: (offset: number, length: number) => Error | null; name?: string } = {},
): CiphertextSource & { reads: [number, number][]; maxInFlight: number } {
  let inFlight = 0;
  const source = {
    name: extra.name ?? 'memory',
    size: extra.size ?? bytes.length,
    reads: [] as [number, number][],
    maxInFlight: 0,
    async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
      source.reads.push([offset, length]);
      inFlight++;
      source.maxInFlight = Math.max(source.maxInFlight, inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 1));
        signal?.throwIfAborted();
        const error = extra.fail?.(offset, length) ?? null;
        if (error) throw error;
        // A copy, as a network source returns: the caller must not depend on sharing.
        return Uint8Array.from(bytes.subarray(offset, offset + length));
      } finally {
        inFlight--;
      }
    },
  };
  return source;
}

async function sealFile(plain: Buffer, segmentLog2 = LOG2): Promise<Buffer> {
  const input = fresh('plain');
  writeFileSync(input, plain);
  const output = fresh('enc');
  await encryptFile(input, output, { dek, keyId: KEY_ID, context, segmentLog2 });
  return readFileSync(output);
}

/** Decrypts from `source` into a fresh directory and expects a failure with nothing left in that directory. */
async function expectNothingLeft(
  source: CiphertextSource,
  opts: { windowSegments?: number; readsInFlight?: number; signal?: AbortSignal } = {},
): Promise<unknown> {
  const out = mkdtempSync(join(dir, 'out-'));
  const error = await decryptFromSource(source, join(out, 'w.bin'), { dek, context, ...opts }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).not.toBeNull();
  expect(readdirSync(out)).toEqual([]);
  return error;
}

async function expectKind(source: CiphertextSource, kind: EnvelopeErrorKind, opts = {}): Promise<void> {
  const error = await expectNothingLeft(source, opts);
  expect(error).toBeInstanceOf(EnvelopeError);
  expect((error as EnvelopeError).kind).toBe(kind);
}

describe('decryptFromSource', () => {
  it('decrypts the same bytes as decryptFile, with windowed reads and a bounded number in flight', async () => {
    const plain = randomBytes(150 * S + 123);
    const cipher = await sealFile(plain);
    const source = memorySource(cipher);
    const output = fresh('out');
    const result = await decryptFromSource(source, output, {
      dek,
      context,
      digest: true,
      windowSegments: 4,
      readsInFlight: 2,
    });
    expect(readFileSync(output).equals(plain)).toBe(true);
    expect(result).toEqual({
      plaintextLength: plain.length,
      keyId: KEY_ID,
      digest: `sha256:${createHash('sha256').update(plain).digest('hex')}`,
    });
    // One first read (header + the windows it holds), then whole windows of 4 segments, in order, each once.
    const stride = S + TAG_LENGTH;
    const H = headerLength(KEY_ID);
    const [firstRead, ...rest] = source.reads;
    expect(firstRead?.[0]).toBe(0);
    for (const [offset, length] of rest) {
      expect((offset - H) % (4 * stride)).toBe(0);
      expect(length === 4 * stride || offset + length === cipher.length).toBe(true);
    }
    expect(rest.at(-1)?.reduce((a, b) => a + b)).toBe(cipher.length);
    expect(source.maxInFlight).toBeLessThanOrEqual(2);
    expect(rest.length).toBeGreaterThan(15);
    // Every byte is read once, except what the first read holds beyond the windows decrypted from it.
    expect(source.reads.reduce((n, [, l]) => n + l, 0)).toBeLessThan(cipher.length + 4 * stride);
  });

  it('reads a small file in one request, and an empty file too', async () => {
    for (const plain of [Buffer.alloc(0), randomBytes(100), randomBytes(3 * S)]) {
      const source = memorySource(await sealFile(plain));
      const output = fresh('out');
      await decryptFromSource(source, output, { dek, context });
      expect(readFileSync(output).equals(plain)).toBe(true);
      expect(source.reads).toEqual([[0, source.size]]);
    }
  });

  it('handles segments larger than the first read assumes (16 MiB segments)', async () => {
    const plain = randomBytes(2 ** 24 + 5);
    const source = memorySource(await sealFile(plain, 24));
    const output = fresh('out');
    await decryptFromSource(source, output, { dek, context, windowSegments: 1 });
    expect(readFileSync(output).equals(plain)).toBe(true);
  });

  it('fails closed on a flipped byte anywhere, with the segment named', async () => {
    const plain = randomBytes(20 * S + 7);
    const cipher = await sealFile(plain);
    const H = headerLength(KEY_ID);
    for (const segment of [0, 9, 20]) {
      const tampered = Buffer.from(cipher);
      const at = H + segment * (S + TAG_LENGTH) + 3;
      tampered[at] = (tampered[at] ?? 0) ^ 1;
      const error = await expectNothingLeft(memorySource(tampered), { windowSegments: 3 });
      expect(error).toMatchObject({ kind: 'segment', segment });
    }
    const header = Buffer.from(cipher);
    header[30] = (header[30] ?? 0) ^ 1;
    await expectKind(memorySource(header), 'header');
    await expectKind(
      memorySource(Buffer.from('not an envelope at all, just some bytes in a bucket')),
      'header',
    );
  });

  it('fails closed on truncation and extension, by the size the store reports or by short reads', async () => {
    const cipher = await sealFile(randomBytes(12 * S));
    const stride = S + TAG_LENGTH;
    const H = headerLength(KEY_ID);
    // The store reports the real (short or long) size: refused before any decrypt.
    await expectKind(memorySource(cipher.subarray(0, cipher.length - 1)), 'truncated');
    await expectKind(memorySource(cipher.subarray(0, H + 4 * stride)), 'truncated');
    await expectKind(memorySource(Buffer.concat([cipher, Buffer.alloc(1)])), 'extended');
    // The store reports the full size but a read comes back short (the object changed under the reader).
    const short = memorySource(cipher.subarray(0, cipher.length - 100), { size: cipher.length });
    await expectKind(short, 'truncated', { windowSegments: 2 });
    // A source that answers with more bytes than asked is broken.
    const long: CiphertextSource = {
      name: 'long',
      size: cipher.length,
      read: async (offset, length) =>
        Promise.resolve(Buffer.concat([cipher.subarray(offset, offset + length), Buffer.alloc(1)])),
    };
    await expectKind(long, 'io');
    await expectKind(memorySource(Buffer.alloc(0)), 'header');
  });

  it('passes a source error on unchanged, cancels the reads in flight and leaves nothing', async () => {
    const cipher = await sealFile(randomBytes(100 * S));
    const boom = new Error('connection reset by peer');
    const signals: AbortSignal[] = [];
    const source = memorySource(cipher, { fail: (offset) => (offset > 60 * S ? boom : null) });
    const read = source.read.bind(source);
    source.read = (offset, length, signal) => {
      if (signal) signals.push(signal);
      return read(offset, length, signal);
    };
    const error = await expectNothingLeft(source, { windowSegments: 2, readsInFlight: 3 });
    expect(error).toBe(boom);
    expect(signals.at(-1)?.aborted).toBe(true);
  });

  it('stops on abort and leaves nothing', async () => {
    const cipher = await sealFile(randomBytes(100 * S));
    const controller = new AbortController();
    const source = memorySource(cipher, {
      fail: (offset) => {
        if (offset > 40 * S) controller.abort(new Error('revoked'));
        return null;
      },
    });
    const error = await expectNothingLeft(source, { windowSegments: 2, signal: controller.signal });
    expect(String(error)).toMatch(/revoked/);
    const already = new AbortController();
    already.abort(new Error('gone'));
    expect(String(await expectNothingLeft(memorySource(cipher), { signal: already.signal }))).toMatch(/gone/);
  });

  it('refuses the wrong key and the wrong context before reading past the first window', async () => {
    const cipher = await sealFile(randomBytes(40 * S));
    const out = mkdtempSync(join(dir, 'out-'));
    const source = memorySource(cipher);
    await expect(
      decryptFromSource(source, join(out, 'x'), { dek: randomBytes(32), context }),
    ).rejects.toMatchObject({ kind: 'wrong-key' });
    await expect(
      decryptFromSource(source, join(out, 'x'), { dek, context: { ...context, path: 'other' } }),
    ).rejects.toMatchObject({ kind: 'wrong-context' });
    expect(source.reads.map(([o]) => o)).toEqual([0, 0]);
    expect(readdirSync(out)).toEqual([]);
    await expect(
      decryptFromSource(source, join(out, 'x'), { dek, context, windowSegments: 0 }),
    ).rejects.toMatchObject({ kind: 'invalid' });
    await expect(
      decryptFromSource(source, join(out, 'x'), { dek, context, readsInFlight: 9 }),
    ).rejects.toMatchObject({ kind: 'invalid' });
  });

  it('round-trips random plaintexts for random window sizes (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 80 * S }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        async (length, windowSegments, readsInFlight) => {
          const plain = randomBytes(length);
          const source = memorySource(await sealFile(plain));
          const output = fresh('prop');
          const result = await decryptFromSource(source, output, {
            dek,
            context,
            digest: true,
            windowSegments,
            readsInFlight,
          });
          expect(readFileSync(output).equals(plain)).toBe(true);
          expect(result.digest).toBe(`sha256:${createHash('sha256').update(plain).digest('hex')}`);
          expect(source.maxInFlight).toBeLessThanOrEqual(readsInFlight);
          rmSync(output);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('tells envelope bytes from other bytes by the magic', async () => {
    expect(startsWithEnvelopeMagic(await sealFile(Buffer.from('x')))).toBe(true);
    expect(startsWithEnvelopeMagic(Buffer.from('SRENVLP'))).toBe(false);
    expect(startsWithEnvelopeMagic(Buffer.from('PK\u0003\u0004 a zip file'))).toBe(false);
  });
});

describe('decryptDirectoryFromSource', () => {
  const files: Record<string, Buffer> = {
    'config.json': Buffer.from('{"layers":50}'),
    'weights/model.bin': randomBytes(40 * S + 11),
    'weights/empty': Buffer.alloc(0),
  };

  /** A directory source over an encrypted directory's files, read into memory. */
  async function encryptedDir(): Promise<{ manifest: Buffer; objects: Map<string, Buffer>; path: string }> {
    const plain = fresh('tree');
    for (const [path, bytes] of Object.entries(files)) {
      mkdirSync(join(plain, path, '..'), { recursive: true });
      writeFileSync(join(plain, path), bytes);
    }
    const path = fresh('cipher');
    await encryptDirectory(plain, path, { dek, keyId: KEY_ID, context: dirContext });
    const objects = new Map(
      readdirSync(join(path, 'objects')).map((o) => [`objects/${o}`, readFileSync(join(path, 'objects', o))]),
    );
    return { manifest: readFileSync(join(path, 'manifest.sre')), objects, path };
  }

  function dirSource(
    manifest: Buffer | Error,
    objects: Map<string, Buffer | CiphertextSource>,
  ): CiphertextDirectorySource {
    return {
      name: 'memory-dir',
      readManifest: async () => {
        await Promise.resolve();
        if (manifest instanceof Error) throw manifest;
        return manifest;
      },
      listObjects: async () =>
        Promise.resolve(
          new Map([...objects].map(([k, v]) => [k, Buffer.isBuffer(v) ? memorySource(v, { name: k }) : v])),
        ),
    };
  }

  async function expectDirRefused(source: CiphertextDirectorySource, checkDigests = true): Promise<unknown> {
    const out = mkdtempSync(join(dir, 'dirout-'));
    const error = await decryptDirectoryFromSource(source, join(out, 'v3'), {
      dek,
      context: dirContext,
      checkDigests,
      windowSegments: 2,
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).not.toBeNull();
    expect(readdirSync(out)).toEqual([]);
    return error;
  }

  it('builds the same tree as decryptDirectory, checking digests in the same pass', async () => {
    const { manifest, objects, path } = await encryptedDir();
    const target = fresh('fromsource');
    const got = await decryptDirectoryFromSource(dirSource(manifest, objects), target, {
      dek,
      context: dirContext,
      checkDigests: true,
      windowSegments: 3,
    });
    const local = fresh('local');
    expect(
      await decryptDirectory(path, local, { dek, keyId: '', context: dirContext, checkDigests: true }),
    ).toEqual(got);
    for (const [p, bytes] of Object.entries(files)) {
      expect(readFileSync(join(target, p)).equals(bytes), p).toBe(true);
      expect(readFileSync(join(local, p)).equals(bytes), p).toBe(true);
    }
  });

  it('fails closed, leaving nothing, on a missing, extra, swapped, tampered or erroring object', async () => {
    const { manifest, objects } = await encryptedDir();
    const names = [...objects.keys()].sort();
    const [first = '', second = ''] = names;

    const missing = new Map(objects);
    missing.delete(second);
    expect(await expectDirRefused(dirSource(manifest, missing))).toMatchObject({ kind: 'manifest' });

    const extra = new Map(objects).set('objects/000009.sre', objects.get(first) ?? Buffer.alloc(0));
    expect(await expectDirRefused(dirSource(manifest, extra))).toMatchObject({ kind: 'manifest' });
    const stray = new Map(objects).set('objects/sub/x', Buffer.from('x'));
    expect(await expectDirRefused(dirSource(manifest, stray))).toMatchObject({ kind: 'manifest' });

    const swapped = new Map(objects)
      .set(first, objects.get(second) ?? Buffer.alloc(0))
      .set(second, objects.get(first) ?? Buffer.alloc(0));
    expect(await expectDirRefused(dirSource(manifest, swapped))).toMatchObject({ kind: 'wrong-context' });

    const last = names.at(-1) ?? '';
    const tampered = Buffer.from(objects.get(last) ?? Buffer.alloc(0));
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 0x80;
    expect(await expectDirRefused(dirSource(manifest, new Map(objects).set(last, tampered)))).toMatchObject({
      kind: 'segment',
    });

    const boom = new Error('503 Slow Down');
    const failing = memorySource(objects.get(last) ?? Buffer.alloc(0), {
      fail: (o) => (o > 0 ? boom : null),
    });
    expect(
      await expectDirRefused(
        dirSource(manifest, new Map<string, Buffer | CiphertextSource>(objects).set(last, failing)),
      ),
    ).toBe(boom);

    const gone = new Error('NoSuchKey manifest.sre');
    expect(await expectDirRefused(dirSource(gone, objects))).toBe(gone);

    const badManifest = Buffer.from(manifest);
    badManifest[badManifest.length - 5] = (badManifest[badManifest.length - 5] ?? 0) ^ 1;
    expect(await expectDirRefused(dirSource(badManifest, objects))).toMatchObject({ kind: 'segment' });
  });

  it('fails with kind digest when the manifest records a false SHA-256 (checkDigests)', async () => {
    // A DEK holder can seal a manifest whose digests do not describe the files: only hashing catches it.
    const { objects, path } = await encryptedDir();
    const real = await readManifest(path, { dek, context: dirContext });
    const forged = {
      ...real,
      files: real.files.map((f) => (f.size > 0 ? { ...f, sha256: `sha256:${'0'.repeat(64)}` } : f)),
    };
    const manifest = encryptBytes(Buffer.from(JSON.stringify(forged)), {
      dek,
      keyId: KEY_ID,
      context: { ...dirContext, path: '\u0000manifest' },
    });
    expect(await expectDirRefused(dirSource(manifest, objects))).toMatchObject({ kind: 'digest' });
  });
});
