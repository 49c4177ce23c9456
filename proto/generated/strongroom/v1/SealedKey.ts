// Original file: proto/strongroom/v1/keybroker.proto

import type {
  HpkeSuite as _strongroom_v1_HpkeSuite,
  HpkeSuite__Output as _strongroom_v1_HpkeSuite__Output,
} from '../../strongroom/v1/HpkeSuite.ts';

/**
 * A DEK sealed with HPKE to the artifact's recipient key; the info string binds the artifact's uid, name and
 * version (docs/format.md). Ciphertext: only the operator's recipient private key opens it.
 */
export interface SealedKey {
  /**
   * The HPKE suite.
   */
  suite?: _strongroom_v1_HpkeSuite;
  /**
   * The HPKE encapsulated key (raw bytes; base64 in the CRD).
   */
  enc?: Buffer | Uint8Array | string;
  /**
   * The sealed DEK (raw bytes; base64 in the CRD).
   */
  ciphertext?: Buffer | Uint8Array | string;
}

/**
 * A DEK sealed with HPKE to the artifact's recipient key; the info string binds the artifact's uid, name and
 * version (docs/format.md). Ciphertext: only the operator's recipient private key opens it.
 */
export interface SealedKey__Output {
  /**
   * The HPKE suite.
   */
  suite: _strongroom_v1_HpkeSuite__Output;
  /**
   * The HPKE encapsulated key (raw bytes; base64 in the CRD).
   */
  enc: Buffer;
  /**
   * The sealed DEK (raw bytes; base64 in the CRD).
   */
  ciphertext: Buffer;
}
