/**
 * Envelope encryption end to end with a KMS: a DEK per artifact version, wrapped under a KEK; rotation rewraps the
 * DEK without touching ciphertext; destroying the KEK (or losing the only wrapped DEK) makes the artifact
 * permanently undecryptable.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EnvelopeError, decryptFile, encryptFile, newDek, type EnvelopeContext } from '../envelope/index.ts';
import { FileKeySetStore, LocalKmsProvider } from './local.ts';
import { KmsError, rewrapToPrimary } from './provider.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-lifecycle-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const context: EnvelopeContext = { artifactUid: 'uid-7', artifactName: 'llm', version: 'v1', path: '' };
const aad = Buffer.from(JSON.stringify(['uid-7', 'llm', 'v1']));
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

async function sealArtifact(kms: LocalKmsProvider, keyId: string) {
  const plain = join(dir, `${keyId}.plain`);
  writeFileSync(plain, randomBytes(300_000));
  const cipher = join(dir, `${keyId}.sre`);
  const dek = newDek();
  await encryptFile(plain, cipher, { dek, keyId: 'uid-7/v1', context, segmentLog2: 16 });
  const wrapped = await kms.wrap(keyId, dek, aad);
  dek.fill(0);
  return { plain, cipher, wrapped };
}

async function open(
  kms: LocalKmsProvider,
  wrapped: Parameters<LocalKmsProvider['unwrap']>[0],
  cipher: string,
  out: string,
) {
  const dek = await kms.unwrap(wrapped, aad);
  try {
    await decryptFile(cipher, out, { dek, context });
  } finally {
    dek.fill(0);
  }
}

describe('KEK rotation and crypto-shredding', () => {
  it('rotation makes a new primary; rewrapping the DEK leaves every ciphertext byte as it was', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'rotate.json')));
    await kms.createKey('kek-rotate');
    const { plain, cipher, wrapped } = await sealArtifact(kms, 'kek-rotate');
    const before = { hash: sha(cipher), mtime: statSync(cipher).mtimeMs };
    await kms.rotate('kek-rotate');
    const rewrapped = await rewrapToPrimary(kms, wrapped, aad);
    expect([wrapped.keyVersion, rewrapped.keyVersion]).toEqual(['1', '2']);
    expect({ hash: sha(cipher), mtime: statSync(cipher).mtimeMs }).toEqual(before);
    // The old version is retired only after every DEK moved: then the rewrapped one still opens the artifact.
    await kms.destroyVersion('kek-rotate', '1');
    await expect(kms.unwrap(wrapped, aad)).rejects.toMatchObject({ code: 'destroyed' });
    await open(kms, rewrapped, cipher, join(dir, 'rotate.out'));
    expect(sha(join(dir, 'rotate.out'))).toBe(sha(plain));
  });

  it('destroying a dedicated KEK makes the artifact permanently undecryptable', async () => {
    const path = join(dir, 'shred.json');
    const kms = new LocalKmsProvider(new FileKeySetStore(path));
    await kms.createKey('kek-shred');
    const { cipher, wrapped } = await sealArtifact(kms, 'kek-shred');
    await kms.destroyKey('kek-shred');
    const error = await open(kms, wrapped, cipher, join(dir, 'shred.out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmsError);
    expect((error as KmsError).code).toBe('destroyed');
    // Nothing in the key set can unwrap it any more: no key material is left at all.
    const stored = JSON.parse(readFileSync(path, 'utf8')) as {
      keys: Record<string, { versions: { material?: string }[] }>;
    };
    expect(stored.keys['kek-shred']?.versions.every((v) => v.material === undefined)).toBe(true);
    // And no other DEK opens the ciphertext: the file commits to its key.
    const other = await decryptFile(cipher, join(dir, 'shred.out'), { dek: newDek(), context }).catch(
      (e: unknown) => e,
    );
    expect((other as EnvelopeError).kind).toBe('wrong-key');
  });

  it('destroying the DEK (its only wrapped copy) leaves no way back, even with the KEK intact', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'dek.json')));
    await kms.createKey('kek-dek');
    const { cipher } = await sealArtifact(kms, 'kek-dek');
    // The wrapped DEK is deleted from the artifact's metadata. What remains: the KEK, and the ciphertext.
    // A fresh wrap of a guessed key is all anyone can make, and it does not open the file.
    const guess = await kms.unwrap(await kms.wrap('kek-dek', newDek(), aad), aad);
    const error = await decryptFile(cipher, join(dir, 'dek.out'), { dek: guess, context }).catch(
      (e: unknown) => e,
    );
    expect((error as EnvelopeError).kind).toBe('wrong-key');
  });
});
