import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateRecipientKeyPair } from '../core/envelope/index.ts';
import { writeVersion } from '../core/storage/index.ts';
import { receive, ReceiveError, STREAM_FORMAT, versionStream } from './receive.ts';

let dir: string;
let version: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strongroom-receive-'));
  const source = join(dir, 'plain');
  await mkdir(join(source, 'sub'), { recursive: true });
  await writeFile(join(source, 'model.bin'), Buffer.alloc(3 << 20, 7));
  await writeFile(join(source, 'sub', 'config.json'), '{"layers":3}');
  const { publicKey } = await generateRecipientKeyPair();
  const written = await writeVersion({
    source,
    storageRoot: join(dir, 'local'),
    storagePath: '',
    artifact: { uid: 'uid-1', name: 'resnet' },
    version: 'v1',
    recipientPublicKey: publicKey,
  });
  version = written.path;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p);
  return Buffer.concat(parts);
}

/** The stream cut into chunks of `size` bytes, as a pipe might deliver it. */
function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function tree(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).sort();
}

describe('the ciphertext stream into a claim', () => {
  it('installs exactly the version directory, byte for byte, whatever the chunking', async () => {
    const stream = await collect(versionStream(version));
    for (const size of [7, 4096, stream.length]) {
      const target = join(dir, 'claim', String(size), 'resnet', 'v1');
      const result = await receive(chunks(stream, size), target);
      expect(result.files).toBe(3);
      expect(await tree(target)).toEqual(await tree(version));
      for (const f of ['manifest.sre', 'objects/000000.sre', 'objects/000001.sre'])
        expect((await readFile(join(target, f))).equals(await readFile(join(version, f)))).toBe(true);
    }
  }, 120_000);

  it('reports the bytes sent', async () => {
    const seen: number[] = [];
    await collect(versionStream(version, (n) => seen.push(n)));
    expect(seen.at(-1)).toBeGreaterThan(3 << 20);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });

  const refusals: [string, (s: Buffer) => Buffer, RegExp][] = [
    [
      'a file that is not ciphertext',
      (s) => replaceFirst(s, Buffer.from('SRENVLP'), Buffer.from('PLAINTX')),
      /not Strongroom ciphertext/,
    ],
    [
      'a name outside the version layout',
      (s) => replaceFirst(s, Buffer.from('"objects/000001.sre"'), Buffer.from('"../../etc/passwd00"')),
      /only manifest.sre and objects/,
    ],
    ["a flipped byte (the end line's hash)", (s) => flip(s, s.length - 200), /SHA-256/],
    ['a truncated stream', (s) => s.subarray(0, s.length - 100), /ended/],
    [
      'another format',
      (s) => replaceFirst(s, Buffer.from(STREAM_FORMAT), Buffer.from('strongroom-ciphertext-stream/v9')),
      /not a strongroom-ciphertext-stream\/v1 stream/,
    ],
  ];
  it.each(refusals)('refuses %s and leaves nothing behind', async (_name, mutate, message) => {
    const stream = mutate(await collect(versionStream(version)));
    const parent = join(dir, 'claim', 'resnet');
    await expect(receive(chunks(stream, 65536), join(parent, 'v1'))).rejects.toThrow(message);
    expect(await readdir(parent)).toEqual([]);
  });

  it('refuses a version that already exists, leaving it as it was', async () => {
    const target = join(dir, 'claim', 'v1');
    await mkdir(target, { recursive: true });
    await writeFile(join(target, 'keep'), 'x');
    await expect(receive(versionStream(version), target)).rejects.toBeInstanceOf(ReceiveError);
    expect(await readdir(target)).toEqual(['keep']);
  });
});

function replaceFirst(s: Buffer, from: Buffer, to: Buffer): Buffer {
  expect(to.length).toBe(from.length);
  const i = s.indexOf(from, from.equals(Buffer.from(STREAM_FORMAT)) ? 0 : 100);
  expect(i).toBeGreaterThanOrEqual(0);
  const copy = Buffer.from(s);
  to.copy(copy, i);
  return copy;
}

function flip(s: Buffer, at: number): Buffer {
  const copy = Buffer.from(s);
  copy[at] = (copy[at] ?? 0) ^ 1;
  return copy;
}
