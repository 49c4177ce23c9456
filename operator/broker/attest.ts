/**
 * `Attest`: exchanges a pod's projected service-account token and a CSR for a short-lived client certificate signed
 * by the operator CA (docs/broker.md § Attest). Order: the CSR is verified first (cheap, and a bad CSR never costs
 * the API server a TokenReview), then the token with a TokenReview for audience `strongroom`, then the pod it is
 * bound to is read back (it must still exist with the same UID and service account, not be terminating, and be
 * exactly what injection produces: core/injection verifyInjectedPod, so only the injected sidecar holds the token), then
 * the CSR's key is certified for at most one hour and never past the token's own expiry. The certificate's names come
 * only from the TokenReview: the CSR's subject and extensions are ignored.
 *
 * Least RBAC for the broker's Kubernetes identity: `create` on `tokenreviews.authentication.k8s.io` (cluster scope),
 * `get` on `pods` (every namespace that runs sidecars), and `get` on the CA Secret in the operator namespace.
 *
 * Never logged or returned: the token, the CSR, any key.
 */
import { X509Certificate } from 'node:crypto';
import { ApiException, type AuthenticationV1Api, type CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import type winston from 'winston';
import { verifyInjectedPod, type ExpectedSidecar } from '../../core/injection/verify.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import { PkiError } from '../pki/errors.ts';
import { CsrError, verifyCsr } from './csr.ts';
import { identityFromCertificate, podUri, spiffeId } from './identity.ts';
import { BROKER_AUDIENCE, bindingFromReview, checkPod, isDenial, type PodBinding } from './pod-binding.ts';

/** The longest life of an attested certificate. */
export const MAX_CERTIFICATE_VALIDITY_MS = 3600 * 1000;
/** A token that expires sooner than this cannot be exchanged (signLeaf's shortest validity). */
const MIN_VALIDITY_MS = 60 * 1000;
/** The longest token accepted (projected tokens are about 1 KiB). */
const MAX_TOKEN_BYTES = 16 * 1024;

/** The gRPC status names Attest answers with. */
export type AttestStatus =
  'INVALID_ARGUMENT' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'UNAVAILABLE' | 'INTERNAL';

/**
 * A refused or failed attestation. `message` never holds a token, CSR or key; it is sent to the caller unless
 * `publicMessage` is set (then `message` goes only to the audit log and the operator's log).
 */
export class AttestError extends Error {
  override readonly name = 'AttestError';
  readonly status: AttestStatus;
  /** The audit reason code, when more specific than the status's. */
  readonly reason: string | undefined;
  readonly publicMessage: string | undefined;
  constructor(
    status: AttestStatus,
    message: string,
    options?: ErrorOptions & { reason?: string; publicMessage?: string },
  ) {
    super(message, options);
    this.status = status;
    this.reason = options?.reason;
    this.publicMessage = options?.publicMessage;
  }
}

/** What the caller of a refused pod-not-injected attestation is told (the detail is audited). */
export const ATTEST_NOT_INJECTED =
  'pod-not-injected: only a pod as Strongroom injection makes it, whose token only the injected sidecar holds, gets a certificate; details are in the audit log';

/** What Attest needs. */
export interface AttestDeps {
  /** For TokenReview (create tokenreviews). */
  readonly authentication: AuthenticationV1Api;
  /** For reading the bound pod (get pods). */
  readonly core: CoreV1Api;
  readonly ca: Pick<InternalCa, 'signLeaf' | 'load'>;
  /** The SPIFFE trust domain written into certificates, e.g. `cluster.local`. */
  readonly trustDomain: string;
  /** The configured sidecar: only a pod whose spec is what injection produces with it is attested. */
  readonly sidecar: ExpectedSidecar;
  readonly logger: winston.Logger;
  /** Default and cap {@link MAX_CERTIFICATE_VALIDITY_MS}. */
  readonly maxValidityMs?: number;
  readonly now?: () => Date;
}

/** Attest's input. */
export interface AttestInput {
  readonly token: string;
  readonly csrPem: string;
}

/** An issued workload certificate. */
export interface AttestResult {
  /** The leaf (no intermediates: the operator CA signs leaves directly). */
  readonly certificateChainPem: string;
  /** Every CA the caller must trust now, to verify the broker. */
  readonly caBundlePem: string;
  readonly notAfter: Date;
  readonly spiffeId: string;
  readonly podUid: string;
}

/** Runs Attest. Throws AttestError with the gRPC status to answer; any other failure is a bug (INTERNAL). */
export async function attest(input: AttestInput, deps: AttestDeps): Promise<AttestResult> {
  const now = deps.now ?? (() => new Date());
  const token = input.token;
  if (token.length === 0) throw new AttestError('UNAUTHENTICATED', 'no service account token');
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES || !/^[\x21-\x7e]+$/.test(token))
    throw new AttestError('UNAUTHENTICATED', 'the service account token is malformed');

  let publicKeyPem: string;
  try {
    publicKeyPem = verifyCsr(input.csrPem).publicKeyPem;
  } catch (error) {
    if (error instanceof CsrError) throw new AttestError('INVALID_ARGUMENT', error.message, { cause: error });
    throw error;
  }

  const binding = await review(token, deps);
  const pod = await readPod(binding, deps.core);
  const podDenial = checkPod(binding, pod);
  if (podDenial !== null) throw new AttestError(podDenial.status, podDenial.reason);
  const notInjected = verifyInjectedPod(pod, deps.sidecar);
  if (notInjected !== undefined)
    throw new AttestError(
      'PERMISSION_DENIED',
      `pod ${binding.namespace}/${binding.podName} is not as Strongroom injection made it: ${notInjected}`,
      { reason: 'pod-not-injected', publicMessage: ATTEST_NOT_INJECTED },
    );

  const cap = Math.min(deps.maxValidityMs ?? MAX_CERTIFICATE_VALIDITY_MS, MAX_CERTIFICATE_VALIDITY_MS);
  const tokenExpiry = tokenExpiresAt(token);
  const validityMs = Math.min(cap, tokenExpiry === null ? cap : tokenExpiry.getTime() - now().getTime());
  if (validityMs < MIN_VALIDITY_MS)
    throw new AttestError('UNAUTHENTICATED', 'the service account token expires within a minute');

  const identity = {
    trustDomain: deps.trustDomain,
    namespace: binding.namespace,
    serviceAccount: binding.serviceAccount,
  };
  const id = spiffeId(identity);
  let certificateChainPem: string;
  let caBundlePem: string;
  try {
    certificateChainPem = await deps.ca.signLeaf({
      publicKeyPem,
      commonName: binding.podUid,
      uris: [id, podUri(binding.podUid)],
      validityMs: Math.floor(validityMs),
      usages: ['clientAuth'],
    });
    caBundlePem = (await deps.ca.load()).bundlePem;
  } catch (error) {
    throw caFailure(error);
  }

  const leaf = new X509Certificate(certificateChainPem);
  const named = identityFromCertificate(leaf, deps.trustDomain);
  if (named.podUid !== binding.podUid || spiffeId(named) !== id)
    throw new AttestError('INTERNAL', 'the signed certificate does not name the attested identity');
  deps.logger.info('attested a pod', {
    namespace: binding.namespace,
    serviceAccount: binding.serviceAccount,
    pod: binding.podName,
    podUid: binding.podUid,
    serial: leaf.serialNumber,
    notAfter: leaf.validToDate.toISOString(),
  });
  return {
    certificateChainPem,
    caBundlePem,
    notAfter: leaf.validToDate,
    spiffeId: id,
    podUid: binding.podUid,
  };
}

async function review(token: string, deps: AttestDeps): Promise<PodBinding> {
  let status;
  try {
    const reviewed = await deps.authentication.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [BROKER_AUDIENCE] },
      },
    });
    status = reviewed.status;
  } catch (error) {
    throw apiFailure('TokenReview', error);
  }
  const binding = bindingFromReview(status);
  if (isDenial(binding)) {
    // status.error is the authenticator's explanation; it never contains the token itself.
    deps.logger.info('refused an attestation', { reason: binding.reason, reviewError: status?.error });
    throw new AttestError(binding.status, binding.reason);
  }
  return binding;
}

async function readPod(binding: PodBinding, core: CoreV1Api): Promise<V1Pod | null> {
  try {
    return await core.readNamespacedPod({ name: binding.podName, namespace: binding.namespace });
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return null;
    throw apiFailure('reading the pod', error);
  }
}

function apiFailure(what: string, error: unknown): AttestError {
  const detail = error instanceof ApiException ? `HTTP ${error.code}` : 'unreachable';
  return new AttestError(
    'UNAVAILABLE',
    `${what} failed: the API server is ${detail === 'unreachable' ? detail : `answering ${detail}`}`,
    {
      cause: error,
    },
  );
}

function caFailure(error: unknown): AttestError {
  if (error instanceof PkiError) {
    if (error.code === 'missing')
      return new AttestError('UNAVAILABLE', 'the operator CA is not available', { cause: error });
    return new AttestError('INTERNAL', `the operator CA cannot sign: ${error.code}`, { cause: error });
  }
  return new AttestError('UNAVAILABLE', 'the operator CA could not be read', { cause: error });
}

/**
 * The `exp` claim of a JWT that the API server has already verified (read, not verified, here), or null when absent
 * or unreadable (then only the broker's own cap applies).
 */
export function tokenExpiresAt(token: string): Date | null {
  const payload = token.split('.')[1];
  if (payload === undefined) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? new Date(claims.exp * 1000) : null;
  } catch {
    return null;
  }
}
