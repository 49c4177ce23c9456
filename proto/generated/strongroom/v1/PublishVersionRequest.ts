// Original file: proto/strongroom/v1/keybroker.proto

import type {
  ArtifactRef as _strongroom_v1_ArtifactRef,
  ArtifactRef__Output as _strongroom_v1_ArtifactRef__Output,
} from '../../strongroom/v1/ArtifactRef.ts';
import type {
  SealedKey as _strongroom_v1_SealedKey,
  SealedKey__Output as _strongroom_v1_SealedKey__Output,
} from '../../strongroom/v1/SealedKey.ts';
import type {
  Lineage as _strongroom_v1_Lineage,
  Lineage__Output as _strongroom_v1_Lineage__Output,
} from '../../strongroom/v1/Lineage.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * The encrypting sidecar registers a version whose ciphertext it has already written to the artifact's storage.
 * The publisher recorded on the version is the caller's SPIFFE ID from its certificate.
 */
export interface PublishVersionRequest {
  /**
   * The artifact to add the version to.
   */
  artifact?: _strongroom_v1_ArtifactRef | null;
  /**
   * The new version's name: a DNS-1123 label, at most 63 characters, not yet used in the artifact.
   */
  version?: string;
  /**
   * SHA-256 of the plaintext, "sha256:" followed by 64 lowercase hex digits.
   */
  digest?: string;
  /**
   * Size of the plaintext in bytes (at least 1).
   */
  size?: number | string | Long;
  /**
   * The version's DEK sealed to the artifact's recipient public key (spec.versions[].encryption.sealedKey).
   */
  sealedKey?: _strongroom_v1_SealedKey | null;
  /**
   * Fingerprint of the recipient key the DEK was sealed to, "sha256:" + 64 lowercase hex digits of the SHA-256 of
   * its DER SubjectPublicKeyInfo. Must equal the artifact's status.recipientPublicKey.fingerprint.
   */
  keyFingerprint?: string;
  /**
   * Where the version came from; optional.
   */
  lineage?: _strongroom_v1_Lineage | null;
}

/**
 * The encrypting sidecar registers a version whose ciphertext it has already written to the artifact's storage.
 * The publisher recorded on the version is the caller's SPIFFE ID from its certificate.
 */
export interface PublishVersionRequest__Output {
  /**
   * The artifact to add the version to.
   */
  artifact: _strongroom_v1_ArtifactRef__Output | null;
  /**
   * The new version's name: a DNS-1123 label, at most 63 characters, not yet used in the artifact.
   */
  version: string;
  /**
   * SHA-256 of the plaintext, "sha256:" followed by 64 lowercase hex digits.
   */
  digest: string;
  /**
   * Size of the plaintext in bytes (at least 1).
   */
  size: string;
  /**
   * The version's DEK sealed to the artifact's recipient public key (spec.versions[].encryption.sealedKey).
   */
  sealedKey: _strongroom_v1_SealedKey__Output | null;
  /**
   * Fingerprint of the recipient key the DEK was sealed to, "sha256:" + 64 lowercase hex digits of the SHA-256 of
   * its DER SubjectPublicKeyInfo. Must equal the artifact's status.recipientPublicKey.fingerprint.
   */
  keyFingerprint: string;
  /**
   * Where the version came from; optional.
   */
  lineage: _strongroom_v1_Lineage__Output | null;
}
