// Original file: proto/strongroom/v1/keybroker.proto

/**
 * A pod asks for its workload certificate.
 */
export interface AttestRequest {
  /**
   * The pod's projected service-account token (a JWT) with audience "strongroom". Verified with a TokenReview;
   * it must be bound to a pod that still exists and whose UID and service account match. Never logged.
   */
  serviceAccountToken?: string;
  /**
   * A PKCS#10 certificate signing request, PEM ("-----BEGIN CERTIFICATE REQUEST-----"), over a key pair the pod
   * generated and keeps to itself. Its self-signature must verify. Its subject and requested extensions are
   * ignored: the broker sets every name in the certificate itself.
   */
  csrPem?: string;
}

/**
 * A pod asks for its workload certificate.
 */
export interface AttestRequest__Output {
  /**
   * The pod's projected service-account token (a JWT) with audience "strongroom". Verified with a TokenReview;
   * it must be bound to a pod that still exists and whose UID and service account match. Never logged.
   */
  serviceAccountToken: string;
  /**
   * A PKCS#10 certificate signing request, PEM ("-----BEGIN CERTIFICATE REQUEST-----"), over a key pair the pod
   * generated and keeps to itself. Its self-signature must verify. Its subject and requested extensions are
   * ignored: the broker sets every name in the certificate itself.
   */
  csrPem: string;
}
