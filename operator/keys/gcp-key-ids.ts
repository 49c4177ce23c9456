/**
 * The operator names its KEKs with short ids (`strongroom-public`, `strongroom-artifact-<uid>`); the gcp provider
 * names keys by full CryptoKey resource name in its key ring. This adapter maps one to the other both ways, so that
 * every wrapped key the operator stores (status.keys[], the recipient-key Secret) records the operator's short id,
 * and the "still in use" checks of KEK destruction compare like with like. A wrapped key therefore opens only
 * through a provider configured with the same key ring.
 */
import type { GcpKmsProvider } from '../../core/kms/gcp.ts';
import type { KmsProvider, WrappedKey } from '../../core/kms/provider.ts';
import type { CheckpointSigningKey, CheckpointSigningKeys } from '../../core/kms/signing.ts';

export function withShortKeyIds(gcp: GcpKmsProvider): KmsProvider & CheckpointSigningKeys {
  const prefix = `${gcp.keyRing}/cryptoKeys/`;
  const full = (id: string): string => gcp.keyName(id);
  const short = (w: WrappedKey): WrappedKey =>
    w.keyId.startsWith(prefix) ? { ...w, keyId: w.keyId.slice(prefix.length) } : w;
  return {
    name: gcp.name,
    createKey: (id) => gcp.createKey(full(id)),
    wrap: async (id, plaintext, aad) => short(await gcp.wrap(full(id), plaintext, aad)),
    unwrap: (w, aad) => gcp.unwrap({ ...w, keyId: full(w.keyId) }, aad),
    versions: (id) => gcp.versions(full(id)),
    rotate: (id) => gcp.rotate(full(id)),
    destroyVersion: (id, v) => gcp.destroyVersion(full(id), v),
    destroyKey: (id) => gcp.destroyKey(full(id)),
    checkpointSigningKey: (id): Promise<CheckpointSigningKey> => gcp.checkpointSigningKey(id),
    close: () => gcp.close(),
  };
}
