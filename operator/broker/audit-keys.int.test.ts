/**
 * The audit keys Secret on a real API server, with the checkpoint signing key in a real SoftHSM2 token
 * (--audit-signer kms) or in the Secret (--audit-signer secret): what the Secret holds in each case, that replicas
 * agree on one key, and that a switch between them or a second KMS key is refused rather than guessed at.
 */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSoftHsmToken, type SoftHsmToken } from '../../test/hsm/softhsm.ts';
import { AuditLog, parseVerifierKey, verifyLog } from '../../core/audit/index.ts';
import { releaseEvent } from '../../core/audit/testdata/fixtures.ts';
import { Pkcs11KmsProvider } from '../../core/kms/pkcs11.ts';
import { CHECKPOINT_SIGNING_KEY_ID, type CheckpointSigningKey } from '../../core/kms/signing.ts';
import { AUDIT_KEYS_SECRET, AuditKeysError, ensureAuditKeys } from './audit-keys.ts';

const cluster = inject('cluster');
const kc = new KubeConfig();
kc.loadFromFile(cluster.kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const suffix = randomBytes(3).toString('hex');
const namespaces: string[] = [];
const NAME = 'strongroom.audit/test-cluster';

interface TestKey {
  readonly raw: Buffer;
  readonly privateKey: KeyObject;
}

let token: SoftHsmToken;
let provider: Pkcs11KmsProvider;
let dir: string;

async function namespace(): Promise<string> {
  const name = `audit-keys-${suffix}-${namespaces.length}`;
  await core.createNamespace({ body: { metadata: { name } } });
  namespaces.push(name);
  return name;
}

async function secretData(ns: string): Promise<Record<string, string>> {
  const secret = await core.readNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace: ns });
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}

beforeAll(async () => {
  token = await createSoftHsmToken('audit-keys');
  provider = await Pkcs11KmsProvider.open({
    module: token.module,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
  });
  dir = mkdtempSync(join(tmpdir(), 'audit-keys-'));
});
afterAll(async () => {
  await provider.close();
  await token.cleanup();
  rmSync(dir, { recursive: true, force: true });
  await Promise.all(namespaces.map((name) => core.deleteNamespace({ name })));
});

describe('audit keys with the checkpoint signing key in the KMS', () => {
  it('the Secret holds the KMS key’s verifier and the HMAC key, no signer; every replica agrees', async () => {
    const ns = await namespace();
    const key = await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
    // Two replicas starting at once: one creates the Secret, the other reads it.
    const [a, b] = await Promise.all([
      ensureAuditKeys(core, ns, NAME, key),
      ensureAuditKeys(core, ns, NAME, await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID)),
    ]);
    const data = await secretData(ns);
    expect(Object.keys(data).sort()).toEqual(['hmac', 'verifier']);
    expect(data['verifier']).toBe(a.verifierKey);
    expect(b.verifierKey).toBe(a.verifierKey);
    expect(a.signer.verifier.key).toBe(a.verifierKey);
    expect(a.verifierKey).toMatch(/^strongroom\.audit\/test-cluster\+[0-9a-f]{8}\+/);

    // A log signed on the token verifies with the verifier key from the Secret, as `audit verify --public-key` does.
    const path = join(dir, 'kms.log');
    const log = await AuditLog.open({
      path,
      origin: `${NAME}/replica-0`,
      signer: a.signer,
      heartbeatIntervalMs: 0,
    });
    await log.append(releaseEvent(0));
    await log.close();
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(data['verifier'] ?? '')] });
    expect(report.findings).toEqual([]);
    expect(report.latest?.size).toBe(2);

    // The Secret-held mode refuses this Secret with the reason.
    await expect(ensureAuditKeys(core, ns, NAME)).rejects.toThrow(/lacks signer: .*--audit-signer=kms/);
  });

  it('refuses a Secret that holds a signer key, and signs with the KMS once the admin removed signer and verifier', async () => {
    const ns = await namespace();
    const before = await ensureAuditKeys(core, ns, NAME); // --audit-signer=secret
    const key = await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
    const refused = await ensureAuditKeys(core, ns, NAME, key).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuditKeysError);
    expect((refused as Error).message).toMatch(
      /holds a checkpoint signer key.*delete the `signer` and `verifier`/s,
    );
    const hmacBefore = (await core.readNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace: ns })).data?.[
      'hmac'
    ];
    expect(Object.keys(await secretData(ns)).sort()).toEqual(['hmac', 'signer', 'verifier']);

    // The documented switch: remove signer and verifier; the HMAC key (and so the HMACs in old logs) stays.
    await core.patchNamespacedSecret({
      name: AUDIT_KEYS_SECRET,
      namespace: ns,
      body: [
        { op: 'remove', path: '/data/signer' },
        { op: 'remove', path: '/data/verifier' },
      ],
    });
    const after = await ensureAuditKeys(core, ns, NAME, key);
    expect(after.verifierKey).not.toBe(before.verifierKey);
    const secret = await core.readNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace: ns });
    expect(Object.keys(secret.data ?? {}).sort()).toEqual(['hmac', 'verifier']);
    expect(secret.data?.['hmac']).toBe(hmacBefore);
    expect(secret.metadata?.labels?.['strongroom.dev/role']).toBe('audit-keys');
    expect((await secretData(ns))['verifier']).toBe(after.verifierKey);
  });

  it('two replicas that each generated a key on a shared token both sign with the one the Secret names', async () => {
    // A token holding several Ed25519 keys under one label, as pkcs11-signing.ts sees it (tested there on SoftHSM2):
    // the lowest public key, unless the caller asks for one that is there.
    const token = (keys: readonly [TestKey, ...TestKey[]]): CheckpointSigningKey => {
      let chosen = keys[0];
      return {
        description: 'a shared test token',
        publicKey: (preferred) => {
          chosen = keys.find((k) => preferred !== undefined && k.raw.equals(preferred)) ?? keys[0];
          return Promise.resolve(chosen.raw);
        },
        sign: (data) => Promise.resolve(sign(null, data, chosen.privateKey)),
      };
    };
    const [low, high, stranger] = [0, 1, 2]
      .map(() => generateKeyPairSync('ed25519'))
      .map((k) => ({
        raw: k.publicKey.export({ format: 'der', type: 'spki' }).subarray(12),
        privateKey: k.privateKey,
      }))
      .sort((x, y) => Buffer.compare(x.raw, y.raw)) as [TestKey, TestKey, TestKey];
    const ns = await namespace();
    // Replica A saw only the pair it generated (the higher key) and wrote the Secret with it.
    const a = await ensureAuditKeys(core, ns, NAME, token([high]));
    // Replica B sees both pairs; left to itself it would take the lower key, but the Secret names the other.
    const b = await ensureAuditKeys(core, ns, NAME, token([low, high]));
    expect(b.verifierKey).toBe(a.verifierKey);
    expect((await secretData(ns))['verifier']).toBe(a.verifierKey);
    const text = Buffer.from('strongroom.audit/test-cluster/replica-1\n1\nroot\n');
    expect(parseVerifierKey(a.verifierKey).verify(text, await b.signer.sign(text))).toBe(true);
    // A token without the Secret's key is still refused.
    await expect(ensureAuditKeys(core, ns, NAME, token([low, stranger]))).rejects.toThrow(
      /names checkpoint verifier key .* another key .* signs this cluster/,
    );
  });

  it('refuses to sign with a second KMS key when the Secret names another', async () => {
    const ns = await namespace();
    await ensureAuditKeys(core, ns, NAME, await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID));
    const other = await provider.checkpointSigningKey('another-checkpoint-key');
    await expect(ensureAuditKeys(core, ns, NAME, other)).rejects.toThrow(
      /names checkpoint verifier key .* another key .* signs this cluster/,
    );
  });
});
