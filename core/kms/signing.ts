/**
 * Checkpoint signing keys held in the KMS: the Ed25519 key that signs the audit log's checkpoints (C2SP signed notes,
 * core/audit/note.ts), kept where the operator's Secrets are not. With the key in a PKCS#11 token or in Cloud KMS, a
 * reader of the operator's Secrets (or of etcd) can no longer sign a rewritten or truncated history: they would need
 * the token PIN or signing permission on the Cloud KMS key as well (docs/security.md).
 *
 * - pkcs11 (pkcs11-signing.ts): an Ed25519 key pair generated on the token (CKM_EC_EDWARDS_KEY_PAIR_GEN), private
 *   key sensitive and never extractable, signing with CKM_EDDSA;
 * - gcp (gcp-signing.ts): a CryptoKey of purpose ASYMMETRIC_SIGN, algorithm EC_SIGN_ED25519, signing with
 *   AsymmetricSign over the data itself (pure Ed25519), CRC32C-checked both ways;
 * - local has no such key: its checkpoint signer stays in the Secret `strongroom-audit-keys`.
 *
 * Ed25519 is deterministic (RFC 8032): the same key signs the same text to the same 64 bytes wherever it is held, so
 * a KMS-held key writes exactly the notes the same key in software would, and `strongroom audit verify` needs only
 * the verifier key built from the public key the KMS reports.
 */
import { noteVerifierFromPublicKey, type AsyncNoteSigner } from '../audit/note.ts';
import { KmsError } from './provider.ts';

/** The key id (PKCS#11 label, Cloud KMS CryptoKey id) of the checkpoint signing key the operator uses. */
export const CHECKPOINT_SIGNING_KEY_ID = 'strongroom-audit-checkpoint';

export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;

/** An Ed25519 signing key whose private half stays in the KMS. */
export interface CheckpointSigningKey {
  /** Where the key is, for messages (never a secret). */
  readonly description: string;
  /**
   * The raw 32-byte Ed25519 public key. Where the KMS may hold several keys under the id (pkcs11: two replicas that
   * each generated a pair on a shared token), the one whose public key is `preferred` is used when it is there (else
   * one chosen the same way by every replica), and sign() signs with the key chosen here.
   */
  publicKey(preferred?: Uint8Array): Promise<Uint8Array>;
  /** The 64-byte Ed25519 signature of `data` (pure Ed25519: the data itself is signed, not a digest). */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** A KMS provider able to hold checkpoint signing keys (pkcs11 and gcp; local cannot). */
export interface CheckpointSigningKeys {
  /** The Ed25519 signing key `keyId`, created in the KMS on first use; later calls find the same key. */
  checkpointSigningKey(keyId: string): Promise<CheckpointSigningKey>;
}

/** True when `kms` can hold checkpoint signing keys. */
export function holdsSigningKeys(kms: object): kms is CheckpointSigningKeys {
  return typeof (kms as Partial<CheckpointSigningKeys>).checkpointSigningKey === 'function';
}

/**
 * A note signer named `name` (the audit keys' name, `strongroom.audit/<cluster>`) whose signatures come from `key`.
 * The verifier is built from the public key the KMS reports; signNoteAsync checks every signature against it, so a
 * KMS answering with a signature by another key fails the checkpoint instead of writing it (the log then writes the
 * entries without it and signs again at the next interval, core/audit/log.ts). `preferred`: the public key to use
 * when the KMS holds several under the id (the one in the cluster's published verifier key).
 */
export async function kmsNoteSigner(
  name: string,
  key: CheckpointSigningKey,
  preferred?: Uint8Array,
): Promise<AsyncNoteSigner> {
  const publicKey = await key.publicKey(preferred);
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new KmsError(
      'invalid',
      `${key.description}: the public key is ${publicKey.length} bytes, not an Ed25519 key's ${ED25519_PUBLIC_KEY_BYTES}`,
    );
  }
  const verifier = noteVerifierFromPublicKey(name, publicKey);
  return {
    name,
    keyId: verifier.keyId,
    verifier,
    async sign(text) {
      const signature = await key.sign(text);
      if (signature.length !== ED25519_SIGNATURE_BYTES) {
        throw new KmsError(
          'unavailable',
          `${key.description}: the signature is ${signature.length} bytes, not ${ED25519_SIGNATURE_BYTES}`,
        );
      }
      return signature;
    },
  };
}

/** The raw public key of an Ed25519 SubjectPublicKeyInfo (DER), or undefined if it is not one. */
export function ed25519FromSpki(der: Uint8Array): Uint8Array | undefined {
  const prefix = Buffer.from('302a300506032b6570032100', 'hex');
  const bytes = Buffer.from(der);
  if (
    bytes.length !== prefix.length + ED25519_PUBLIC_KEY_BYTES ||
    !bytes.subarray(0, prefix.length).equals(prefix)
  )
    return undefined;
  return bytes.subarray(prefix.length);
}
