import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import type { ModelArtifact, ModelArtifactVersion } from '../../core/api/index.ts';
import { generateRecipientKeyPair, newDek, sealDek } from '../../core/envelope/index.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { KmsError, type KmsProvider } from '../../core/kms/provider.ts';
import { DEFAULT_CLASSIFICATION_TABLE } from '../../core/policy/classification.ts';
import {
  ArtifactKeyring,
  DEFAULT_KEK_SCOPES,
  kekVersionsInUse,
  recipientWrapOf,
  decodeWrapped,
  dekAad,
  describePublicKey,
  encodeWrapped,
  kekIdFor,
  kekScopes,
  recipientSecretName,
} from './artifact-keys.ts';

const artifact = (classification: ModelArtifact['spec']['classification'], uid = 'u-1'): ModelArtifact => ({
  apiVersion: 'strongroom.dev/v1alpha1',
  kind: 'ModelArtifact',
  metadata: { name: 'resnet', namespace: 'ml', uid },
  spec: {
    classification,
    owner: { team: 't' },
    storage: { persistentVolumeClaim: { claimName: 'c' }, path: 'p' },
  },
});

describe('artifact key naming', () => {
  it('shares a KEK per classification for public and internal; confidential and restricted artifacts get their own', () => {
    expect(kekIdFor(artifact('public'), DEFAULT_KEK_SCOPES)).toBe('strongroom-public');
    expect(kekIdFor(artifact('internal'), DEFAULT_KEK_SCOPES)).toBe('strongroom-internal');
    expect(kekIdFor(artifact('confidential', 'def'), DEFAULT_KEK_SCOPES)).toBe('strongroom-artifact-def');
    expect(kekIdFor(artifact('restricted', 'abc'), DEFAULT_KEK_SCOPES)).toBe('strongroom-artifact-abc');
    expect(recipientSecretName('abc')).toBe('strongroom-rk-abc');
  });

  it('binds a DEK to artifact uid, namespace, name and version', () => {
    const a = dekAad(artifact('internal'), 'v1');
    expect(a.equals(dekAad(artifact('internal'), 'v1'))).toBe(true);
    expect(a.equals(dekAad(artifact('internal'), 'v2'))).toBe(false);
    expect(a.equals(dekAad(artifact('internal', 'u-2'), 'v1'))).toBe(false);
    expect(a.equals(dekAad({ uid: 'u-1', namespace: 'ml', name: 'resnet' }, 'v1'))).toBe(true);
    expect(a.equals(dekAad({ uid: 'u-1', namespace: 'other', name: 'resnet' }, 'v1'))).toBe(false);
  });
});

describe('recipient public key description', () => {
  it('gives the PEM SubjectPublicKeyInfo and the SHA-256 fingerprint of its DER', async () => {
    const pair = await generateRecipientKeyPair();
    pair.privateKey.fill(0);
    const { pem, fingerprint } = describePublicKey(pair.publicKey);
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    const other = await generateRecipientKeyPair();
    expect(describePublicKey(other.publicKey).fingerprint).not.toBe(fingerprint);
  });

  it('matches the SHA-256 of the DER SPKI that node:crypto exports for the same key', () => {
    const { publicKey } = generateKeyPairSync('x25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url').toString('base64');
    const der = publicKey.export({ type: 'spki', format: 'der' });
    expect(describePublicKey(raw).fingerprint).toBe(
      `sha256:${createHash('sha256').update(der).digest('hex')}`,
    );
  });
});

describe('wrapped key records', () => {
  it('round-trip through base64 JSON and reject anything else', () => {
    const wrapped = { provider: 'local', keyId: 'strongroom-internal', keyVersion: '2', ciphertext: 'AAAA' };
    expect(decodeWrapped(encodeWrapped(wrapped))).toEqual(wrapped);
    expect(() => decodeWrapped(Buffer.from('{"provider":"local"}').toString('base64'))).toThrow(
      /wrapped key/,
    );
    expect(() => decodeWrapped('not base64 json')).toThrow();
  });
});

describe('sealed version keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-keyring-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** A keyring over a real local KMS that counts wraps; recipient-key Secrets are "created" by echoing them. */
  async function keyring(): Promise<{ ring: ArtifactKeyring; kms: LocalKmsProvider; wraps: () => number }> {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    await kms.createKey('kek');
    let wraps = 0;
    const counting: KmsProvider = {
      name: kms.name,
      createKey: (keyId) => kms.createKey(keyId),
      wrap: (keyId, plaintext, aad) => {
        wraps += 1;
        return kms.wrap(keyId, plaintext, aad);
      },
      unwrap: (wrapped, aad) => kms.unwrap(wrapped, aad),
      versions: (keyId) => kms.versions(keyId),
      rotate: (keyId) => kms.rotate(keyId),
      destroyVersion: (keyId, v) => kms.destroyVersion(keyId, v),
      destroyKey: (keyId) => kms.destroyKey(keyId),
      close: () => kms.close(),
    };
    const core = {
      createNamespacedSecret: ({ body }: { body: V1Secret }) => Promise.resolve(body),
    } as unknown as CoreV1Api;
    const ring = new ArtifactKeyring({
      kms: counting,
      core,
      namespace: 'strongroom',
      logger: winston.createLogger({ silent: true }),
      cachedSecret: () => null,
    });
    return { ring, kms, wraps: () => wraps };
  }

  async function version(
    recipientPublicKey: string,
    fingerprint: string,
    dek: Uint8Array,
    sealedFor = 'v1',
  ): Promise<ModelArtifactVersion> {
    const sealed = await sealDek(recipientPublicKey, dek, {
      artifactUid: 'u-1',
      artifactName: 'resnet',
      version: sealedFor,
    });
    return {
      name: 'v1',
      digest: `sha256:${'a'.repeat(64)}`,
      size: 1,
      publisher: 'frank',
      publishedAt: '2026-12-07T00:00:00Z',
      encryption: {
        format: 'v1',
        algorithm: 'AES-256-GCM',
        keyFingerprint: fingerprint,
        sealedKey: { ...sealed, suite: 'HPKE-Base-X25519-SHA256-AES256GCM' },
      },
    };
  }

  it('openSealed checks the sealed DEK opens and wraps nothing; sealVersion wraps that DEK under the KEK', async () => {
    const { ring, kms, wraps } = await keyring();
    const a = artifact('internal');
    const recipient = await ring.ensureRecipientKey(a, 'kek');
    const created = wraps();
    const dek = newDek();
    const v = await version(recipient.publicKey, recipient.fingerprint, dek);
    await ring.openSealed(a, v, recipient);
    expect(wraps()).toBe(created);
    const wrapped = await ring.sealVersion(a, v, recipient, 'kek');
    expect(wraps()).toBe(created + 1);
    expect(Buffer.from(await kms.unwrap(wrapped, dekAad(a, 'v1'))).equals(dek)).toBe(true);
  });

  it('refuses a DEK sealed for another version, or to another recipient key, in both, and wraps nothing', async () => {
    const { ring, wraps } = await keyring();
    const a = artifact('internal');
    const recipient = await ring.ensureRecipientKey(a, 'kek');
    const created = wraps();
    const otherVersion = await version(recipient.publicKey, recipient.fingerprint, newDek(), 'v2');
    const otherKey = await version(recipient.publicKey, `sha256:${'0'.repeat(64)}`, newDek());
    for (const use of [
      (v: ModelArtifactVersion) => ring.openSealed(a, v, recipient),
      (v: ModelArtifactVersion) => ring.sealVersion(a, v, recipient, 'kek'),
    ]) {
      await expect(use(otherVersion)).rejects.toMatchObject({ reason: 'SealedKeyInvalid' });
      await expect(use(otherKey)).rejects.toMatchObject({ reason: 'FingerprintMismatch' });
      const { format, keyFingerprint } = otherVersion.encryption;
      await expect(use({ ...otherVersion, encryption: { format, keyFingerprint } })).rejects.toMatchObject({
        reason: 'SealedKeyMissing',
      });
    }
    expect(wraps()).toBe(created);
  });
});

describe('which KEK versions are still in use', () => {
  const w = (keyId: string, keyVersion: string) => ({
    provider: 'local',
    keyId,
    keyVersion,
    ciphertext: 'AAAA',
  });
  const withKeys = (
    a: ModelArtifact,
    keys: NonNullable<NonNullable<ModelArtifact['status']>['keys']>,
  ): ModelArtifact => ({
    ...a,
    status: { keys },
  });
  const entry = (version: string, wrapped: ReturnType<typeof w>) => ({
    version,
    keyFingerprint: `sha256:${'a'.repeat(64)}`,
    wrappedKey: encodeWrapped(wrapped),
    kekId: wrapped.keyId,
    kekVersion: wrapped.keyVersion,
  });

  it('collects the versions of one KEK from status.keys and recipient keys, ignoring other KEKs', () => {
    const a = withKeys(artifact('internal', 'a'), [entry('v1', w('kek', '1')), entry('v2', w('other', '7'))]);
    const b = withKeys(artifact('internal', 'b'), [entry('v1', w('kek', '3'))]);
    expect(kekVersionsInUse('kek', [a, b], [w('kek', '2'), w('other', '9')])).toEqual(
      new Set(['1', '2', '3']),
    );
    expect(kekVersionsInUse('kek', [artifact('internal')], [])).toEqual(new Set());
  });

  it('counts the kekVersion recorded beside a wrapped key as well as the wrapped key itself', () => {
    const a = withKeys(artifact('internal'), [{ ...entry('v1', w('kek', '2')), kekVersion: '1' }]);
    expect(kekVersionsInUse('kek', [a], [])).toEqual(new Set(['1', '2']));
  });

  it('cannot tell (undefined) for a recipient key that does not read, or a status entry naming no KEK at all', () => {
    expect(kekVersionsInUse('kek', [], [undefined])).toBeUndefined();
    const bad = withKeys(artifact('internal'), [
      { version: 'v1', keyFingerprint: 'x', wrappedKey: 'garbage' },
    ]);
    expect(kekVersionsInUse('kek', [bad], [])).toBeUndefined();
    // An unreadable wrapped key that names the KEK pins the version it names.
    const named = withKeys(artifact('internal'), [
      { version: 'v1', keyFingerprint: 'x', wrappedKey: 'garbage', kekId: 'kek', kekVersion: '4' },
    ]);
    expect(kekVersionsInUse('kek', [named], [])).toEqual(new Set(['4']));
  });

  it('reads the wrapped recipient private key of a Secret as the informer or the API gives it', () => {
    const wrapped = w('kek', '2');
    const json = JSON.stringify(wrapped);
    expect(recipientWrapOf({ data: { wrappedPrivateKey: Buffer.from(json).toString('base64') } })).toEqual(
      wrapped,
    );
    expect(recipientWrapOf({ stringData: { wrappedPrivateKey: json } })).toEqual(wrapped);
    expect(recipientWrapOf({ data: {} })).toBeUndefined();
    expect(
      recipientWrapOf({ data: { wrappedPrivateKey: Buffer.from('{}').toString('base64') } }),
    ).toBeUndefined();
  });
});

describe('an artifact KEK: retired versions and crypto-shredding', () => {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-keyring-retire-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const D = 86_400_000;

  function ring(kms: KmsProvider, deleted: string[] = []): ArtifactKeyring {
    const core = {
      createNamespacedSecret: ({ body }: { body: V1Secret }) => Promise.resolve(body),
      deleteNamespacedSecret: ({ name }: { name: string }) => {
        deleted.push(name);
        return Promise.resolve({});
      },
    } as unknown as CoreV1Api;
    return new ArtifactKeyring({
      kms,
      core,
      namespace: 'strongroom',
      logger: winston.createLogger({ silent: true }),
      cachedSecret: () => null,
    });
  }

  it('destroyRetiredVersions destroys only once the recipient key and every DEK are on the primary, after the retention', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const keys = ring(kms);
    const a = artifact('confidential', 'c-1');
    const kekId = kekIdFor(a, DEFAULT_KEK_SCOPES);
    await keys.ensureKek(kekId);
    const recipient = await keys.ensureRecipientKey(a, kekId);
    const dek = newDek();
    const saved = await kms.wrap(kekId, dek, dekAad(a, 'v1'));
    await kms.rotate(kekId);
    const retiredAt = Date.parse((await kms.versions(kekId))[1]?.createdAt ?? '');
    const moved = await keys.rewrapVersion(a, 'v1', saved, kekId);
    const status = (wrapped: typeof saved) => ({
      ...a,
      status: {
        keys: [{ version: 'v1', keyFingerprint: recipient.fingerprint, wrappedKey: encodeWrapped(wrapped) }],
      },
    });
    const late = new Date(retiredAt + 2 * D);

    // The recipient key is still under version 1.
    let inUse = kekVersionsInUse(kekId, [status(moved)], [recipient.wrapped]);
    expect(await keys.destroyRetiredVersions(kekId, { inUse, retentionMs: D, now: late })).toEqual({
      destroy: [],
      blocked: 'in-use',
      destroyed: [],
    });
    // Both moved; before the retention: nothing, and when to come back.
    const recipientMoved = await kms.wrap(kekId, newDek(), Buffer.from('r'));
    inUse = kekVersionsInUse(kekId, [status(moved)], [recipientMoved]);
    expect(
      await keys.destroyRetiredVersions(kekId, { inUse, retentionMs: D, now: new Date(retiredAt) }),
    ).toEqual({
      destroy: [],
      destroyed: [],
      nextDueAt: new Date(retiredAt + D),
    });
    expect(await keys.destroyRetiredVersions(kekId, { inUse, retentionMs: D, now: late })).toEqual({
      destroy: ['1'],
      destroyed: ['1'],
    });
    await expect(kms.unwrap(saved, dekAad(a, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    expect((await kms.unwrap(moved, dekAad(a, 'v1'))).equals(dek)).toBe(true);
  });

  it('deleting a confidential artifact destroys its own KEK: a saved wrapped DEK no longer opens', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const deleted: string[] = [];
    const keys = ring(kms, deleted);
    const a = artifact('confidential', 'c-2');
    const kekId = kekIdFor(a, DEFAULT_KEK_SCOPES);
    expect(DEFAULT_KEK_SCOPES.confidential).toBe('artifact');
    await keys.ensureKek(kekId);
    const dek = newDek();
    const saved = await kms.wrap(kekId, dek, dekAad(a, 'v1'));
    await keys.shred(a);
    expect(deleted).toEqual([recipientSecretName('c-2')]);
    await expect(kms.unwrap(saved, dekAad(a, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    expect((await kms.versions(kekId)).every((v) => v.state === 'destroyed')).toBe(true);
    // An internal artifact shares its KEK: shredding it only deletes its recipient key.
    const b = artifact('internal', 'i-1');
    await keys.ensureKek('strongroom-internal');
    const other = await kms.wrap('strongroom-internal', dek, dekAad(b, 'v1'));
    await keys.shred(b);
    expect((await kms.unwrap(other, dekAad(b, 'v1'))).equals(dek)).toBe(true);
    expect((await kms.versions('strongroom-internal')).every((v) => v.state === 'enabled')).toBe(true);
  });

  it('destroys an artifact’s own KEK on deletion even after dedicatedKek was switched off for its classification', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const keys = ring(kms);
    const a = artifact('confidential', 'c-3');
    // Made while confidential had dedicatedKek: its own KEK wraps a DEK.
    const own = kekIdFor(a, DEFAULT_KEK_SCOPES);
    expect(own).toBe('strongroom-artifact-c-3');
    await keys.ensureKek(own);
    const dek = newDek();
    const saved = await kms.wrap(own, dek, dekAad(a, 'v1'));
    // The table turns dedicatedKek off: the artifact moves to the shared KEK, its own KEK is left behind.
    const shared = kekScopes({
      ...DEFAULT_CLASSIFICATION_TABLE,
      classifications: {
        ...DEFAULT_CLASSIFICATION_TABLE.classifications,
        confidential: { ...DEFAULT_CLASSIFICATION_TABLE.classifications.confidential, dedicatedKek: false },
      },
    });
    expect(kekIdFor(a, shared)).toBe('strongroom-confidential');
    const moved = await keys.rewrapVersion(a, 'v1', saved, kekIdFor(a, shared));
    expect(moved.keyId).toBe('strongroom-confidential');
    await keys.shred(a);
    // The copy wrapped under its own KEK no longer opens; the shared KEK is untouched.
    await expect(kms.unwrap(saved, dekAad(a, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    expect((await kms.versions(own)).every((v) => v.state === 'destroyed')).toBe(true);
    expect((await kms.versions('strongroom-confidential')).every((v) => v.state === 'enabled')).toBe(true);
    // Shredding again (a retried finalizer) is fine, and so is an artifact that never had a KEK of its own.
    await keys.shred(a);
    await keys.shred(artifact('public', 'p-1'));
  });

  it('shred fails on a KMS error other than not-found or destroyed, so the finalizer stays and is retried', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const failing = Object.assign(Object.create(kms) as KmsProvider, {
      destroyKey: () => Promise.reject(new KmsError('unavailable', 'token unreachable')),
    });
    await expect(ring(failing).shred(artifact('internal', 'i-2'))).rejects.toMatchObject({
      code: 'unavailable',
    });
  });
});
