/**
 * The audit log's keys, shared by every replica through one Secret (`strongroom-audit-keys` in the operator
 * namespace), created once by whichever replica gets there first:
 *   - `signer`: the Ed25519 note signer key that signs checkpoints (C2SP signed-note format), with
 *     `--audit-signer=secret` (the default) only;
 *   - `verifier`: its public verifier key, what `strongroom audit verify --key` trusts;
 *   - `hmac`: 32 random bytes; secrets in events (bearer tokens) appear only as HMACs under it. Deleting it shreds
 *     them.
 *
 * With `--audit-signer=kms` the checkpoint signing key is an Ed25519 key in the KMS (core/kms/signing.ts): the
 * Secret holds no `signer`, and its `verifier` is the KMS key's verifier key, written by the first replica and
 * checked by every later one (a replica whose KMS key differs refuses to start; a KMS holding several keys under the
 * id, as a shared token can after two replicas each generated one, is asked for the Secret's). A Secret still
 * holding a `signer` (the operator ran with `--audit-signer=secret` before) is refused with the steps to switch
 * (docs/kms.md).
 */
import { randomBytes } from 'node:crypto';
import { ApiException, type CoreV1Api, type V1Secret } from '@kubernetes/client-node';
import {
  AuditKey,
  generateNoteKey,
  parseSignerKey,
  parseVerifierKey,
  type AnyNoteSigner,
} from '../../core/audit/index.ts';
import { kmsNoteSigner, type CheckpointSigningKey } from '../../core/kms/signing.ts';

export const AUDIT_KEYS_SECRET = 'strongroom-audit-keys';

/** The keys a writer needs. */
export interface AuditKeys {
  /** The Secret's signer key, or (with a signing key in the KMS) a signer that asks the KMS. */
  readonly signer: AnyNoteSigner;
  /** The verifier key text (`<name>+<hash>+<base64>`), public. */
  readonly verifierKey: string;
  readonly hmac: AuditKey;
}

/** Unreadable or inconsistent audit keys (fail closed: the broker does not start without them). */
export class AuditKeysError extends Error {
  override readonly name = 'AuditKeysError';
}

/**
 * Reads the audit keys, creating them (named `keyName`) when the Secret does not exist. With `signingKey` (the
 * checkpoint signing key in the KMS, `--audit-signer=kms`) checkpoints are signed by it and the Secret keeps only its
 * verifier key and the HMAC key.
 */
export async function ensureAuditKeys(
  core: CoreV1Api,
  namespace: string,
  keyName: string,
  signingKey?: CheckpointSigningKey,
): Promise<AuditKeys> {
  if (signingKey !== undefined) return ensureKmsAuditKeys(core, namespace, keyName, signingKey);
  const read = async (): Promise<V1Secret | undefined> => {
    try {
      return await core.readNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace });
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw new AuditKeysError(`cannot read Secret ${namespace}/${AUDIT_KEYS_SECRET}`, { cause: error });
    }
  };
  let secret = await read();
  if (secret === undefined) {
    const { signerKey, verifierKey } = generateNoteKey(keyName);
    const hmac = randomBytes(32);
    try {
      secret = await core.createNamespacedSecret({
        namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: {
            name: AUDIT_KEYS_SECRET,
            labels: { 'app.kubernetes.io/managed-by': 'strongroom', 'strongroom.dev/role': 'audit-keys' },
          },
          data: {
            signer: Buffer.from(signerKey).toString('base64'),
            verifier: Buffer.from(verifierKey).toString('base64'),
            hmac: hmac.toString('base64'),
          },
        },
      });
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 409))
        throw new AuditKeysError(`cannot create Secret ${namespace}/${AUDIT_KEYS_SECRET}`, { cause: error });
      secret = await read();
    } finally {
      hmac.fill(0);
    }
  }
  const data = secret?.data ?? {};
  const field = (name: string): Buffer => {
    const value = data[name];
    if (value === undefined || value === '')
      throw new AuditKeysError(`Secret ${namespace}/${AUDIT_KEYS_SECRET} lacks ${name}`);
    return Buffer.from(value, 'base64');
  };
  if ((data['signer'] ?? '') === '' && (data['verifier'] ?? '') !== '')
    throw new AuditKeysError(
      `Secret ${namespace}/${AUDIT_KEYS_SECRET} lacks signer: its checkpoint signing key is in the KMS; run with --audit-signer=kms`,
    );
  try {
    const signer = parseSignerKey(field('signer').toString('utf8'));
    const verifierKey = field('verifier').toString('utf8');
    const verifier = parseVerifierKey(verifierKey);
    if (verifier.name !== signer.name || verifier.keyId !== signer.keyId)
      throw new AuditKeysError('the verifier key does not belong to the signer key');
    return { signer, verifierKey, hmac: new AuditKey(field('hmac')) };
  } catch (error) {
    if (error instanceof AuditKeysError) throw error;
    throw new AuditKeysError(`Secret ${namespace}/${AUDIT_KEYS_SECRET} holds unusable keys`, {
      cause: error,
    });
  }
}

/** The raw Ed25519 public key of a verifier key text, or undefined when it is not one. */
function publicKeyOf(verifierKey: string): Uint8Array | undefined {
  try {
    parseVerifierKey(verifierKey);
    return Buffer.from(verifierKey.trim().split('+').slice(2).join('+'), 'base64').subarray(1);
  } catch {
    return undefined;
  }
}

const KMS_SWITCH_HELP =
  'to switch to a KMS-held key, archive the audit logs with their verifier key, then delete the `signer` and ' +
  '`verifier` fields of the Secret (docs/kms.md#checkpoint-signing-keys)';

/** --audit-signer=kms: the signer is the KMS key; the Secret holds its verifier key (written once) and the HMAC key. */
async function ensureKmsAuditKeys(
  core: CoreV1Api,
  namespace: string,
  keyName: string,
  signingKey: CheckpointSigningKey,
): Promise<AuditKeys> {
  const where = `Secret ${namespace}/${AUDIT_KEYS_SECRET}`;
  let signer: AnyNoteSigner;
  try {
    signer = await kmsNoteSigner(keyName, signingKey);
  } catch (error) {
    throw new AuditKeysError(`cannot use the checkpoint signing key (${signingKey.description})`, {
      cause: error,
    });
  }
  let verifierKey = signer.verifier.key;
  let asked = false;
  // Create, or complete (add the verifier), under optimistic concurrency; a lost race reads the winner's Secret.
  for (let attempt = 0; ; attempt++) {
    let secret: V1Secret | undefined;
    try {
      secret = await core.readNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace });
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 404))
        throw new AuditKeysError(`cannot read ${where}`, { cause: error });
    }
    const data = secret?.data ?? {};
    if ((data['signer'] ?? '') !== '') {
      throw new AuditKeysError(
        `${where} holds a checkpoint signer key, but --audit-signer=kms signs with ${signingKey.description} ` +
          `(verifier ${verifierKey}); ${KMS_SWITCH_HELP}`,
      );
    }
    const stored =
      data['verifier'] === undefined ? '' : Buffer.from(data['verifier'], 'base64').toString('utf8');
    const hmac = data['hmac'] === undefined ? undefined : Buffer.from(data['hmac'], 'base64');
    if (stored !== '' && stored !== verifierKey && !asked) {
      // The KMS may hold several keys under the id (two replicas each generated one on a shared token): use the
      // cluster's if it is among them. Another key is refused below.
      asked = true;
      const preferred = publicKeyOf(stored);
      if (preferred !== undefined) {
        try {
          signer = await kmsNoteSigner(keyName, signingKey, preferred);
        } catch (error) {
          throw new AuditKeysError(`cannot use the checkpoint signing key (${signingKey.description})`, {
            cause: error,
          });
        }
        verifierKey = signer.verifier.key;
      }
    }
    if (stored !== '' && hmac !== undefined && hmac.length > 0) {
      if (stored !== verifierKey) {
        throw new AuditKeysError(
          `${where} names checkpoint verifier key ${stored}, but ${signingKey.description} is ${verifierKey}: ` +
            'another key (in the KMS, or the Secret-held key of --audit-signer=secret) signs this cluster’s audit logs; refusing to sign with a second one; to switch keys see docs/kms.md#checkpoint-signing-keys',
        );
      }
      return { signer, verifierKey, hmac: new AuditKey(hmac) };
    }
    if (attempt >= 3) throw new AuditKeysError(`${where} keeps changing; giving up`);
    const fresh = hmac === undefined || hmac.length === 0 ? randomBytes(32) : undefined;
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: AUDIT_KEYS_SECRET,
        // The revision read: a replica that wrote in between makes this replace fail with 409, and we read again.
        ...(secret?.metadata?.resourceVersion === undefined
          ? {}
          : { resourceVersion: secret.metadata.resourceVersion }),
        ...(secret?.metadata?.annotations === undefined ? {} : { annotations: secret.metadata.annotations }),
        labels: {
          ...(secret?.metadata?.labels ?? {}),
          'app.kubernetes.io/managed-by': 'strongroom',
          'strongroom.dev/role': 'audit-keys',
        },
      },
      data: {
        ...data,
        verifier: stored === '' ? Buffer.from(verifierKey).toString('base64') : (data['verifier'] ?? ''),
        ...(fresh === undefined ? {} : { hmac: fresh.toString('base64') }),
      },
    };
    try {
      if (secret === undefined) await core.createNamespacedSecret({ namespace, body });
      else await core.replaceNamespacedSecret({ name: AUDIT_KEYS_SECRET, namespace, body });
    } catch (error) {
      if (!(error instanceof ApiException && (error.code === 409 || error.code === 404)))
        throw new AuditKeysError(`cannot write ${where}`, { cause: error });
    } finally {
      fresh?.fill(0);
    }
  }
}
