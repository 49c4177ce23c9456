/**
 * The caller of an mTLS broker call, read only from the certificate that the TLS handshake verified against the
 * operator CA (docs/broker.md § Identity model). Never from request fields, metadata or the CN.
 */
import { X509Certificate } from 'node:crypto';
import { BrokerError } from './errors.ts';
import { identityFromCertificate, IdentityError, spiffeId } from './identity.ts';

/** A verified broker peer. */
export interface Peer {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podUid: string;
  readonly spiffeId: string;
  /** Hex serial of the client certificate (audit). */
  readonly certificateSerial: string;
  readonly notAfter: Date;
  /** Remote `ip:port`. */
  readonly address: string;
}

/** What grpc-js exposes of a verified peer certificate. */
export interface PeerCertificate {
  readonly raw?: Buffer;
}

/**
 * The peer of a call from its verified certificate. Throws BrokerError UNAUTHENTICATED when there is none (the
 * connection did not present one that verified), when its SANs do not name a workload of `trustDomain`, or when it
 * is outside its validity period.
 */
export function peerFromCertificate(
  certificate: PeerCertificate | undefined,
  trustDomain: string,
  address: string,
  now: Date,
): Peer {
  if (certificate?.raw === undefined) {
    throw new BrokerError(
      'UNAUTHENTICATED',
      'no-client-certificate',
      'this call needs a client certificate from Attest (mutual TLS)',
    );
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certificate.raw);
  } catch (error) {
    throw new BrokerError(
      'UNAUTHENTICATED',
      'malformed-certificate',
      'the client certificate cannot be parsed',
      {
        cause: error,
      },
    );
  }
  let identity;
  try {
    identity = identityFromCertificate(x509, trustDomain);
  } catch (error) {
    if (error instanceof IdentityError)
      throw new BrokerError('UNAUTHENTICATED', `certificate-${error.code}`, error.message, { cause: error });
    throw error;
  }
  const notAfter = new Date(x509.validTo);
  if (now.getTime() >= notAfter.getTime() || now.getTime() < new Date(x509.validFrom).getTime()) {
    throw new BrokerError(
      'UNAUTHENTICATED',
      'certificate-expired',
      'the client certificate is outside its validity period; attest again',
    );
  }
  return {
    namespace: identity.namespace,
    serviceAccount: identity.serviceAccount,
    podUid: identity.podUid,
    spiffeId: spiffeId(identity),
    certificateSerial: x509.serialNumber.toLowerCase(),
    notAfter,
    address,
  };
}

/** The peer as an audit log's workload record. */
export function workloadOf(peer: Peer): {
  namespace: string;
  serviceAccount: string;
  podUid: string;
  certificateSerial: string;
} {
  return {
    namespace: peer.namespace,
    serviceAccount: peer.serviceAccount,
    podUid: peer.podUid,
    certificateSerial: peer.certificateSerial,
  };
}

/** What the caller of a pod that is not as injected is told (the detail goes to the audit log and the pod's Events). */
export const POD_NOT_INJECTED =
  "pod-not-injected: only a pod as Strongroom injection makes it, whose token only the injected sidecar holds, gets a certificate or keys; details are in the pod's events";

/** What {@link podOf} reads. */
export interface PodLookup {
  pod(uid: string):
    | {
        namespace: string;
        serviceAccount: string;
        labels: Readonly<Record<string, string>>;
        terminating: boolean;
        /** Why the pod is not as injection made it; undefined when it is. */
        notInjected?: string | undefined;
      }
    | 'deleted'
    | undefined;
}

/**
 * The live pod behind a peer's certificate, from the broker's pod cache. A pod the cache has not seen yet (created
 * a moment ago) is waited for up to `waitMs`. Throws BrokerError UNAUTHENTICATED when the pod is gone or never
 * appears, or when its namespace or service account differ from the certificate's; PERMISSION_DENIED when it is
 * terminating, or when its spec is no longer what injection produces (`pod-not-injected`: the sidecar's image was
 * changed, an ephemeral container mounts the token, ...).
 */
export async function podOf(
  peer: Peer,
  lookup: PodLookup,
  waitMs = 2000,
): Promise<{ labels: Readonly<Record<string, string>> }> {
  let pod = lookup.pod(peer.podUid);
  const deadline = Date.now() + waitMs;
  while (pod === undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    pod = lookup.pod(peer.podUid);
  }
  if (pod === 'deleted')
    throw new BrokerError(
      'UNAUTHENTICATED',
      'pod-deleted',
      `pod ${peer.podUid} named by the client certificate has been deleted`,
    );
  if (pod === undefined)
    throw new BrokerError(
      'UNAUTHENTICATED',
      'pod-not-found',
      `pod ${peer.podUid} named by the client certificate does not exist`,
    );
  if (pod.namespace !== peer.namespace || pod.serviceAccount !== peer.serviceAccount)
    throw new BrokerError(
      'UNAUTHENTICATED',
      'pod-identity-mismatch',
      `pod ${peer.podUid} runs as ${pod.namespace}/${pod.serviceAccount}, not ${peer.namespace}/${peer.serviceAccount} as the certificate says`,
      {
        publicMessage:
          "pod-identity-mismatch: the pod named by the client certificate does not run as the certificate's service account",
      },
    );
  if (pod.terminating)
    throw new BrokerError('PERMISSION_DENIED', 'pod-terminating', `pod ${peer.podUid} is terminating`);
  if (pod.notInjected !== undefined)
    throw new BrokerError(
      'PERMISSION_DENIED',
      'pod-not-injected',
      `pod ${peer.podUid} is not as Strongroom injection made it, so it gets no keys: ${pod.notInjected}`,
      { publicMessage: POD_NOT_INJECTED },
    );
  return { labels: pod.labels };
}
