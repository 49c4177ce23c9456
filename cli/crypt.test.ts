import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateRecipientKeyPair } from '../core/envelope/index.ts';
import {
  formatIdentity,
  IDENTITY_PREFIX,
  parseIdentity,
  publicKeyOf,
  recipientFromText,
  SEALED_KEY_SUFFIX,
} from './crypt.ts';
import { EXIT } from './io.ts';
import { main } from './strongroom.ts';

/** Runs the real program on `args` with a fake CliIo. */
async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  let code = 0;
  await main(
    {
      out: (t) => (out += t),
      err: (t) => (err += t),
      setExitCode: (c) => (code = c),
    },
    ['node', 'strongroom', ...args],
  );
  return { code, out, err };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'strongroom-crypt-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const p = (...parts: string[]) => join(dir, ...parts);

/** Everything in `dir` (relative paths), to show a failure left nothing behind. */
function listing(): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

async function identity(name: string): Promise<string> {
  const r = await run('keygen', '-o', p(name));
  expect(r.code, r.err).toBe(0);
  return r.out.trim();
}

function tree(): void {
  mkdirSync(p('model', 'weights'), { recursive: true });
  writeFileSync(p('model', 'config.json'), '{"layers": 50}');
  writeFileSync(p('model', 'weights', 'w.bin'), Buffer.alloc(300_000, 7));
  writeFileSync(p('model', 'empty'), '');
}

describe('keygen', () => {
  it('writes an identity 0600 and prints its public key; never overwrites', async () => {
    const pub = await identity('id.key');
    expect(statSync(p('id.key')).mode & 0o777).toBe(0o600);
    const text = readFileSync(p('id.key'), 'utf8');
    expect(text).toContain(`# public key: ${pub}`);
    expect(publicKeyOf(parseIdentity(text, 'id.key'))).toBe(pub);
    const again = await run('keygen', '-o', p('id.key'));
    expect(again.code).toBe(EXIT.usage);
    expect(again.err).toMatch(/already exists/);
    expect(readFileSync(p('id.key'), 'utf8')).toBe(text);
  });

  it('derives the public key the HPKE library would publish', async () => {
    const pair = await generateRecipientKeyPair();
    expect(publicKeyOf(pair.privateKey)).toBe(pair.publicKey);
    expect(formatIdentity(pair.privateKey, new Date(0))).toContain(IDENTITY_PREFIX);
  });

  it('takes a recipient as base64, an identity file, a .pub or a PEM SubjectPublicKeyInfo', async () => {
    const pair = await generateRecipientKeyPair();
    expect(recipientFromText(`# c\n${pair.publicKey}\n`, 'x.pub')).toBe(pair.publicKey);
    expect(recipientFromText(formatIdentity(pair.privateKey, new Date()), 'id')).toBe(pair.publicKey);
    const spki = Buffer.concat([
      Buffer.from('302a300506032b656e032100', 'hex'),
      Buffer.from(pair.publicKey, 'base64'),
    ]);
    const pem = `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`;
    expect(recipientFromText(pem, 'artifact.pem')).toBe(pair.publicKey);
    expect(() => recipientFromText('not-a-key\n', 'bad')).toThrow(/not a base64 32-byte X25519/);
  });
});

describe('encrypt and decrypt', () => {
  it('round-trips a file; the sealed key sits beside the output', async () => {
    const pub = await identity('id.key');
    writeFileSync(p('a.txt'), 'hello strongroom\n');
    const enc = await run('encrypt', '-r', pub, '-o', p('a.enc'), p('a.txt'));
    expect(enc.code, enc.err).toBe(0);
    expect(enc.err).toMatch(/^encrypt: .* MiB\/s\)$/m);
    const keyFile = JSON.parse(readFileSync(p(`a.enc${SEALED_KEY_SUFFIX}`), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(keyFile).toMatchObject({
      format: 'strongroom-sealed-key/v1',
      kind: 'file',
      keyId: 'local/v1',
      context: { artifactUid: 'local', artifactName: 'a.txt', version: 'v1' },
      recipient: pub,
    });
    expect(readFileSync(p('a.enc')).subarray(0, 8).toString('latin1')).toBe('SRENVLP\0');
    const dec = await run('decrypt', '-i', p('id.key'), '-o', p('a.out'), p('a.enc'));
    expect(dec.code, dec.err).toBe(0);
    expect(readFileSync(p('a.out'), 'utf8')).toBe('hello strongroom\n');
  });

  it('round-trips a directory (with @file recipient and an explicit artifact context)', async () => {
    await identity('id.key');
    tree();
    const enc = await run(
      'encrypt',
      '-r',
      `@${p('id.key')}`,
      '--artifact-uid',
      'u-1',
      '--artifact-name',
      'resnet50',
      '--artifact-version',
      'v3',
      '-o',
      p('model.enc'),
      p('model'),
    );
    expect(enc.code, enc.err).toBe(0);
    expect(enc.out).toMatch(/3 files/);
    expect(readdirSync(p('model.enc')).sort()).toEqual(['manifest.sre', 'objects']);
    const dec = await run('decrypt', '-i', p('id.key'), '-o', p('copy'), p('model.enc'));
    expect(dec.code, dec.err).toBe(0);
    expect(readFileSync(p('copy', 'config.json'), 'utf8')).toBe('{"layers": 50}');
    expect(readFileSync(p('copy', 'weights', 'w.bin'))).toEqual(Buffer.alloc(300_000, 7));
    expect(readFileSync(p('copy', 'empty'), 'utf8')).toBe('');
  });

  it('refuses another identity and writes nothing', async () => {
    const pub = await identity('alice.key');
    await identity('mallory.key');
    tree();
    expect((await run('encrypt', '-r', pub, '-o', p('model.enc'), p('model'))).code).toBe(0);
    writeFileSync(p('f'), 'x');
    expect((await run('encrypt', '-r', pub, '-o', p('f.enc'), p('f'))).code).toBe(0);
    const before = listing();
    for (const [input, output] of [
      ['model.enc', 'out-dir'],
      ['f.enc', 'out-file'],
    ] as const) {
      const r = await run('decrypt', '-i', p('mallory.key'), '-o', p(output), p(input));
      expect(r.code).toBe(EXIT.refused);
      expect(r.err).toMatch(/cannot open .*sealed-key\.json.*nothing was written/);
    }
    expect(listing()).toEqual(before);
  });

  it('refuses a tampered byte (file and directory) and leaves no output, not even a partial one', async () => {
    await identity('id.key');
    tree();
    writeFileSync(p('big.bin'), Buffer.alloc(3 << 20, 1));
    expect((await run('encrypt', '-r', `@${p('id.key')}`, '-o', p('big.enc'), p('big.bin'))).code).toBe(0);
    expect((await run('encrypt', '-r', `@${p('id.key')}`, '-o', p('model.enc'), p('model'))).code).toBe(0);
    const flip = (path: string, at: number) => {
      const bytes = readFileSync(path);
      bytes[at] = (bytes[at] ?? 0) ^ 1;
      writeFileSync(path, bytes);
    };
    flip(p('big.enc'), (2 << 20) + 100); // in the third segment: the first two are written before it fails
    const object = readdirSync(p('model.enc', 'objects')).sort().at(-1) ?? '';
    flip(p('model.enc', 'objects', object), 200);
    const before = listing();
    const file = await run('decrypt', '-i', p('id.key'), '-o', p('big.out'), p('big.enc'));
    expect(file.code).toBe(EXIT.failed);
    expect(file.err).toMatch(/segment.*nothing was written/);
    const dir_ = await run('decrypt', '-i', p('id.key'), '-o', p('model.out'), p('model.enc'));
    expect(dir_.code).toBe(EXIT.failed);
    expect(listing()).toEqual(before);
  });

  it('refuses an output that exists (both ways) and an input that does not', async () => {
    const pub = await identity('id.key');
    writeFileSync(p('a'), 'a');
    writeFileSync(p('taken'), 'mine');
    const enc = await run('encrypt', '-r', pub, '-o', p('taken'), p('a'));
    expect(enc.code).toBe(EXIT.usage);
    expect(enc.err).toMatch(/taken already exists/);
    expect(readFileSync(p('taken'), 'utf8')).toBe('mine');
    expect((await run('encrypt', '-r', pub, '-o', p('a.enc'), p('a'))).code).toBe(0);
    const dec = await run('decrypt', '-i', p('id.key'), '-o', p('taken'), p('a.enc'));
    expect(dec.code).toBe(EXIT.usage);
    expect(readFileSync(p('taken'), 'utf8')).toBe('mine');
    mkdirSync(p('emptydir'));
    expect((await run('decrypt', '-i', p('id.key'), '-o', p('emptydir'), p('a.enc'))).code).toBe(EXIT.usage);
    const missing = await run('encrypt', '-r', pub, '-o', p('x.enc'), p('nope'));
    expect(missing.code).toBe(EXIT.notFound);
    const noKey = await run('decrypt', '-i', p('id.key'), '-o', p('x'), p('a'));
    expect(noKey.code).toBe(EXIT.notFound);
    expect(noKey.err).toMatch(/sealed-key file/);
  });

  it('the sealed-key file binds the context: an edited artifact name does not open', async () => {
    const pub = await identity('id.key');
    writeFileSync(p('a'), 'a');
    expect((await run('encrypt', '-r', pub, '-o', p('a.enc'), p('a'))).code).toBe(0);
    const path = p(`a.enc${SEALED_KEY_SUFFIX}`);
    const key = JSON.parse(readFileSync(path, 'utf8')) as { context: { artifactName: string } };
    key.context.artifactName = 'other';
    writeFileSync(path, JSON.stringify(key));
    const r = await run('decrypt', '-i', p('id.key'), '-o', p('a.out'), p('a.enc'));
    expect(r.code).toBe(EXIT.refused);
    expect(readdirSync(dir)).not.toContain('a.out');
  });
});
