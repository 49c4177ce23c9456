/**
 * Retired KEK versions are destroyed after their retention, through the operator's own code path (the KEK rotation
 * controller and the key ring), for each provider against a real backend: the local key set in a file, the real
 * `@google-cloud/kms` client against the local Cloud KMS server, and PKCS#11 on a real SoftHSM2 token.
 *
 * The story each provider goes through: a DEK is wrapped and a copy of the wrapped DEK is saved (as an etcd backup
 * or an old status would keep it); the controller rotates the KEK; the wrapped DEK in the artifact's status is
 * rewrapped as the artifact controller does (ArtifactKeyring.rewrapVersion); a fake clock is moved to just before and
 * then to the end of the retention. Before: the saved copy still opens. After: the saved copy is `destroyed` for good
 * and the rewrapped one still opens. A version some wrapped key still uses is never destroyed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import { CLASSIFICATIONS, type Classification, type ModelArtifact } from '../../core/api/index.ts';
import { GcpKmsProvider } from '../../core/kms/gcp.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { Pkcs11KmsProvider } from '../../core/kms/pkcs11.ts';
import { expectKmsError } from '../../core/kms/conformance.ts';
import { KmsError, type KmsProvider, type WrappedKey } from '../../core/kms/provider.ts';
import { createSoftHsmToken } from '../../test/hsm/softhsm.ts';
import { DEFAULT_TEST_KEY_RING, startFakeGcpKms } from '../../test/kms-server/gcp-kms-server.ts';
import { withShortKeyIds } from '../keys/gcp-key-ids.ts';
import { ArtifactKeyring, dekAad, encodeWrapped, type KekScope } from '../keys/artifact-keys.ts';
import type { Informer } from '../kube/informer.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import { KekRotationController } from './kek-rotation.ts';

const D = 86_400_000;
const RETENTION = D;
const PERIOD = 30 * D;

/** A provider to test, opened once per describe block. */
interface Backend {
  readonly name: string;
  open(): Promise<{ kms: KmsProvider; close: () => Promise<void> }>;
}

const BACKENDS: readonly Backend[] = [
  {
    name: 'local (key set file)',
    open() {
      const dir = mkdtempSync(join(tmpdir(), 'strongroom-kek-destruction-'));
      const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'keyset.json')));
      return Promise.resolve({
        kms,
        close: async () => {
          await kms.close();
          rmSync(dir, { recursive: true, force: true });
        },
      });
    },
  },
  {
    name: 'gcp (real @google-cloud/kms client → local Cloud KMS server)',
    async open() {
      const fake = await startFakeGcpKms();
      const gcp = new GcpKmsProvider({
        keyRing: DEFAULT_TEST_KEY_RING,
        clientOptions: {
          apiEndpoint: fake.endpoint,
          port: fake.port,
          sslCreds: grpc.credentials.createSsl(Buffer.from(fake.caPem)),
          universeDomain: 'googleapis.com',
          'grpc.ssl_target_name_override': 'localhost',
        },
      });
      return {
        kms: withShortKeyIds(gcp),
        close: async () => {
          await gcp.close();
          await fake.stop();
        },
      };
    },
  },
  {
    name: 'pkcs11 (SoftHSM2 token)',
    async open() {
      const token = await createSoftHsmToken('kek-destruction');
      const kms = await Pkcs11KmsProvider.open({
        module: token.module,
        tokenLabel: token.tokenLabel,
        pin: token.pin,
      });
      return {
        kms,
        close: async () => {
          await kms.close();
          await token.cleanup();
        },
      };
    },
  },
];

function artifact(classification: Classification, uid: string): ModelArtifact {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { name: `model-${uid}`, namespace: 'ml', uid },
    spec: {
      classification,
      owner: { team: 't' },
      storage: { persistentVolumeClaim: { claimName: 'c' }, path: 'p' },
    },
  };
}

/** The status.keys entry the artifact controller writes for a wrapped DEK. */
function withKey(a: ModelArtifact, wrapped: WrappedKey): ModelArtifact {
  return {
    ...a,
    status: {
      keys: [
        {
          version: 'v1',
          keyFingerprint: `sha256:${'a'.repeat(64)}`,
          wrappedKey: encodeWrapped(wrapped),
          kekId: wrapped.keyId,
          kekVersion: wrapped.keyVersion,
          sealedAt: '2026-12-07T00:00:00Z',
          state: 'Sealed',
        },
      ],
    },
  };
}

/** A recipient-key Secret as the informer delivers it (`data`, base64). */
function recipientSecret(uid: string, wrapped: WrappedKey): V1Secret {
  return {
    metadata: { name: `strongroom-rk-${uid}`, namespace: 'strongroom' },
    data: { wrappedPrivateKey: Buffer.from(JSON.stringify(wrapped)).toString('base64') },
  };
}

/** Everything around one KekRotationController: caches the test fills in, a fake clock, the real key ring. */
function harness(kms: KmsProvider, shared: Classification) {
  const state = {
    artifacts: [] as ModelArtifact[],
    secrets: [] as V1Secret[],
    synced: true,
    clock: new Date(),
    queued: [] as string[],
  };
  const artifacts = {
    list: () => state.artifacts,
    get: (key: string) => state.artifacts.find((a) => `ml/${a.metadata.name ?? ''}` === key),
    hasSynced: () => state.synced,
  } as unknown as Informer<ModelArtifact>;
  const keyring = new ArtifactKeyring({
    kms,
    core: {} as CoreV1Api,
    namespace: 'strongroom',
    logger: winston.createLogger({ silent: true }),
  });
  const metrics = new OperatorMetrics();
  const scopes = Object.fromEntries(
    CLASSIFICATIONS.map((c) => [c, c === shared ? 'shared' : 'artifact']),
  ) as Record<Classification, KekScope>;
  const controller = new KekRotationController({
    kms,
    artifacts,
    recipientKeys: { list: () => state.secrets, hasSynced: () => state.synced },
    rotation: { public: PERIOD, internal: PERIOD, confidential: PERIOD, restricted: PERIOD },
    retention: () => RETENTION,
    scopes,
    metrics,
    logger: winston.createLogger({ silent: true }),
    ensureKek: (keyId) => keyring.ensureKek(keyId),
    destroyRetiredVersions: (keyId, options) => keyring.destroyRetiredVersions(keyId, options),
    enqueueArtifact: (key) => {
      state.queued.push(key);
    },
    now: () => state.clock,
  });
  const destroyedCount = async (): Promise<number> =>
    (await metrics.kekVersionsDestroyed.get()).values.find((v) => v.labels.classification === shared)
      ?.value ?? 0;
  return { state, keyring, controller, destroyedCount, keyId: `strongroom-${shared}` };
}

async function opens(kms: KmsProvider, wrapped: WrappedKey, aad: Buffer, dek: Buffer): Promise<boolean> {
  const plain = await kms.unwrap(wrapped, aad);
  try {
    return plain.equals(dek);
  } finally {
    plain.fill(0);
  }
}

async function createdAt(kms: KmsProvider, keyId: string, version: string): Promise<number> {
  const found = (await kms.versions(keyId)).find((v) => v.version === version);
  if (!found) throw new Error(`no version ${version} of ${keyId}`);
  return Date.parse(found.createdAt);
}

describe.each(BACKENDS)('retired KEK versions are destroyed after the retention: $name', (backend) => {
  let kms: KmsProvider;
  let close: () => Promise<void> = () => Promise.resolve();
  beforeAll(async () => {
    ({ kms, close } = await backend.open());
  }, 60_000);
  afterAll(async () => {
    await close();
  });

  /**
   * The first reconcile creates the KEK; a DEK is wrapped under version 1 and recorded in an artifact's status;
   * a reconcile at the end of the rotation period rotates (the primary becomes version 2).
   */
  async function rotated(shared: Classification) {
    const h = harness(kms, shared);
    await h.controller.reconcile();
    const a = artifact(shared, `u-${shared}`);
    const aad = dekAad(a, 'v1');
    const dek = randomBytes(32);
    const saved = await kms.wrap(h.keyId, dek, aad);
    expect(saved.keyVersion).toBe('1');
    h.state.artifacts = [withKey(a, saved)];
    h.state.clock = new Date((await createdAt(kms, h.keyId, '1')) + PERIOD);
    await h.controller.reconcile();
    expect((await kms.versions(h.keyId)).find((v) => v.primary)?.version).toBe('2');
    expect(h.state.queued).toContain(`ml/${a.metadata.name ?? ''}`);
    // Retired since version 2 was created: the fake clock is set from that creation time from here on.
    const retiredAt = await createdAt(kms, h.keyId, '2');
    return { h, a, aad, dek, saved, retiredAt };
  }

  it('a wrapped DEK saved before the rotation opens until the retention has passed, then never again; the rewrapped one still opens', async () => {
    const { h, a, aad, dek, saved, retiredAt } = await rotated('public');
    // The artifact controller's rewrap (status.keys moves to the primary; no ciphertext changes).
    const rewrapped = await h.keyring.rewrapVersion(a, 'v1', saved, h.keyId);
    expect(rewrapped.keyVersion).toBe('2');
    h.state.artifacts = [withKey(a, rewrapped)];

    h.state.clock = new Date(retiredAt + RETENTION - 1);
    const before = await h.controller.reconcile();
    expect(await opens(kms, saved, aad, dek)).toBe(true);
    expect((await kms.versions(h.keyId)).find((v) => v.version === '1')?.state).toBe('enabled');
    expect(await h.destroyedCount()).toBe(0);
    // The controller asks to come back when version 1 falls due (1 ms from now), not at the next rotation.
    expect(before.requeueAfterMs).toBeLessThanOrEqual(1);

    h.state.clock = new Date(retiredAt + RETENTION);
    await h.controller.reconcile();
    await expectKmsError(kms.unwrap(saved, aad), 'destroyed');
    expect(await opens(kms, rewrapped, aad, dek)).toBe(true);
    const versions = await kms.versions(h.keyId);
    expect(versions.map((v) => [v.version, v.state, v.primary])).toEqual([
      ['1', 'destroyed', false],
      ['2', 'enabled', true],
    ]);
    expect(await h.destroyedCount()).toBe(1);
    // Idempotent: a later reconcile destroys nothing more and counts nothing more.
    await h.controller.reconcile();
    expect(await h.destroyedCount()).toBe(1);
  });

  it('never destroys a version that a status.keys entry or a recipient key still uses, however old', async () => {
    const { h, a, aad, dek, saved, retiredAt } = await rotated('internal');
    // Not rewrapped yet: status.keys still names version 1. (10 retentions later; still before the next rotation.)
    h.state.clock = new Date(retiredAt + 10 * RETENTION);
    await h.controller.reconcile();
    expect(await opens(kms, saved, aad, dek)).toBe(true);

    // The DEK moved, but a recipient private key is still wrapped under version 1.
    const recipientAad = Buffer.from('recipient');
    const recipient = await kms.wrap(h.keyId, randomBytes(32), recipientAad);
    expect(recipient.keyVersion).toBe('2');
    const oldRecipient = { ...recipient, keyVersion: '1' };
    h.state.artifacts = [withKey(a, await h.keyring.rewrapVersion(a, 'v1', saved, h.keyId))];
    h.state.secrets = [recipientSecret('u-internal', oldRecipient)];
    await h.controller.reconcile();
    expect(await opens(kms, saved, aad, dek)).toBe(true);
    expect(await h.destroyedCount()).toBe(0);

    // Everything on the primary: now version 1 goes.
    h.state.secrets = [recipientSecret('u-internal', recipient)];
    await h.controller.reconcile();
    await expectKmsError(kms.unwrap(saved, aad), 'destroyed');
    expect(await h.destroyedCount()).toBe(1);
  });
});

describe('retired KEK versions: failing closed (local KMS)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-kek-closed-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('destroys nothing while the artifact or recipient-key cache is not synced, and nothing for an unreadable record', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'keyset.json')));
    const h = harness(kms, 'public');
    await h.controller.reconcile();
    const a = artifact('public', 'u-1');
    const aad = dekAad(a, 'v1');
    const dek = randomBytes(32);
    const saved = await kms.wrap(h.keyId, dek, aad);
    await kms.rotate(h.keyId);
    h.state.artifacts = [withKey(a, await h.keyring.rewrapVersion(a, 'v1', saved, h.keyId))];
    h.state.clock = new Date((await createdAt(kms, h.keyId, '2')) + 10 * RETENTION);

    h.state.synced = false;
    await h.controller.reconcile();
    expect(await opens(kms, saved, aad, dek)).toBe(true);

    h.state.synced = true;
    h.state.secrets = [
      { metadata: { name: 'strongroom-rk-x' }, data: { wrappedPrivateKey: 'bm90IGpzb24=' } },
    ];
    await h.controller.reconcile();
    expect(await opens(kms, saved, aad, dek)).toBe(true);

    h.state.secrets = [];
    await h.controller.reconcile();
    await expectKmsError(kms.unwrap(saved, aad), 'destroyed');
  });

  it('a KMS failure while destroying does not hold up the rotation that is due', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'failing.json')));
    const failing: KmsProvider = {
      name: 'local',
      createKey: (id) => kms.createKey(id),
      wrap: (id, plaintext, aad) => kms.wrap(id, plaintext, aad),
      unwrap: (w, aad) => kms.unwrap(w, aad),
      versions: (id) => kms.versions(id),
      rotate: (id) => kms.rotate(id),
      destroyVersion: () => Promise.reject(new KmsError('unavailable', 'the KMS is down')),
      destroyKey: (id) => kms.destroyKey(id),
      close: () => kms.close(),
    };
    const h = harness(failing, 'public');
    await h.controller.reconcile();
    await kms.rotate(h.keyId);
    const v2 = await createdAt(kms, h.keyId, '2');
    h.state.clock = new Date(v2 + PERIOD);
    const result = await h.controller.reconcile();
    expect((await kms.versions(h.keyId)).map((v) => [v.version, v.state, v.primary])).toEqual([
      ['1', 'enabled', false],
      ['2', 'enabled', false],
      ['3', 'enabled', true],
    ]);
    expect(result.requeueAfterMs).toBeLessThanOrEqual(15_000);
  });
});
