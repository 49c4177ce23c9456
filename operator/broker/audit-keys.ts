/**
 * The audit log's keys, shared by every replica through one Secret (`strongroom-audit-keys` in the operator
 * namespace), created once by whichever replica gets there first:
 *   - `signer`: the Ed25519 note signer key that signs checkpoints (C2SP signed-note format);
 *   - `verifier`: its public verifier key, what `strongroom audit verify --key` trusts;
 *   - `hmac`: 32 random bytes; secrets in events (bearer tokens) appear only as HMACs under it. Deleting it shreds
 *     them.
 */
import { randomBytes } from 'node:crypto';
import { ApiException, type CoreV1Api, type V1Secret } from '@kubernetes/client-node';
import {
  AuditKey,
  generateNoteKey,
  parseSignerKey,
  parseVerifierKey,
  type NoteSigner,
} from '../../core/audit/index.ts';

export const AUDIT_KEYS_SECRET = 'strongroom-audit-keys';

/** The keys a writer needs. */
export interface AuditKeys {
  readonly signer: NoteSigner;
  /** The verifier key text (`<name>+<hash>+<base64>`), public. */
  readonly verifierKey: string;
  readonly hmac: AuditKey;
}

/** Unreadable or inconsistent audit keys (fail closed: the broker does not start without them). */
export class AuditKeysError extends Error {
  override readonly name = 'AuditKeysError';
}

/** Reads the audit keys, creating them (named `keyName`) when the Secret does not exist. */
export async function ensureAuditKeys(
  core: CoreV1Api,
  namespace: string,
  keyName: string,
): Promise<AuditKeys> {
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
