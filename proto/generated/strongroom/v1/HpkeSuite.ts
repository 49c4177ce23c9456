// Original file: proto/strongroom/v1/keybroker.proto

/**
 * HPKE suites (RFC 9180) a sealed DEK may use.
 */
export const HpkeSuite = {
  /**
   * Never valid; the server rejects it with INVALID_ARGUMENT.
   */
  HPKE_SUITE_UNSPECIFIED: 'HPKE_SUITE_UNSPECIFIED',
  /**
   * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode ("HPKE-Base-X25519-SHA256-AES256GCM").
   */
  HPKE_SUITE_BASE_X25519_SHA256_AES256GCM: 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM',
} as const;

/**
 * HPKE suites (RFC 9180) a sealed DEK may use.
 */
export type HpkeSuite =
  /**
   * Never valid; the server rejects it with INVALID_ARGUMENT.
   */
  | 'HPKE_SUITE_UNSPECIFIED'
  | 0
  /**
   * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode ("HPKE-Base-X25519-SHA256-AES256GCM").
   */
  | 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM'
  | 1;

/**
 * HPKE suites (RFC 9180) a sealed DEK may use.
 */
export type HpkeSuite__Output = (typeof HpkeSuite)[keyof typeof HpkeSuite];
