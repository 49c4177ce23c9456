// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';

/**
 * The workload certificate.
 */
export interface AttestResponse {
  /**
   * The leaf certificate for the CSR's public key, followed by any intermediates, PEM. The leaf carries exactly two
   * URI SANs, spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> and urn:strongroom:pod:<pod-uid>, and
   * is valid for at most 1 hour (never past the token's own expiry).
   */
  certificateChainPem?: string;
  /**
   * The CA certificates the client must use to verify the broker's serving certificate, PEM. Not the public roots.
   */
  caBundlePem?: string;
  /**
   * The leaf certificate's notAfter. The client re-attests before this time (for example at two thirds of the
   * lifetime) with a fresh token.
   */
  notAfter?: _google_protobuf_Timestamp | null;
  /**
   * The SPIFFE ID written into the certificate, for the client's logs and self-checks.
   */
  spiffeId?: string;
  /**
   * The pod UID written into the certificate (as urn:strongroom:pod:<uid>).
   */
  podUid?: string;
}

/**
 * The workload certificate.
 */
export interface AttestResponse__Output {
  /**
   * The leaf certificate for the CSR's public key, followed by any intermediates, PEM. The leaf carries exactly two
   * URI SANs, spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> and urn:strongroom:pod:<pod-uid>, and
   * is valid for at most 1 hour (never past the token's own expiry).
   */
  certificateChainPem: string;
  /**
   * The CA certificates the client must use to verify the broker's serving certificate, PEM. Not the public roots.
   */
  caBundlePem: string;
  /**
   * The leaf certificate's notAfter. The client re-attests before this time (for example at two thirds of the
   * lifetime) with a fresh token.
   */
  notAfter: _google_protobuf_Timestamp__Output | null;
  /**
   * The SPIFFE ID written into the certificate, for the client's logs and self-checks.
   */
  spiffeId: string;
  /**
   * The pod UID written into the certificate (as urn:strongroom:pod:<uid>).
   */
  podUid: string;
}
