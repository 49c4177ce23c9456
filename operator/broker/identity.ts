/**
 * Workload identity of a key broker peer, read only from the URI SANs of its verified certificate (docs/broker.md
 * § Identity model): exactly `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` and
 * `urn:strongroom:pod:<pod-uid>`, and no other SAN of any kind. The subject (CN) is never read.
 */
import type { X509Certificate } from 'node:crypto';
import { isDns1123Label, isDns1123Subdomain, isSpiffeTrustDomain } from '../../core/api/validation.ts';

/** Who a broker peer is. */
export interface WorkloadIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podUid: string;
}

/** Why a certificate does not name a workload. */
export type IdentityErrorCode =
  /** No SPIFFE ID, several, or a SAN set other than exactly one SPIFFE ID and one pod URI. */
  | 'san-set'
  /** A SAN that cannot be parsed, or a SPIFFE ID or pod UID that is not well formed. */
  | 'malformed'
  /** A well-formed SPIFFE ID of a trust domain other than the broker's. */
  | 'foreign-trust-domain';

/** A peer certificate that does not carry a usable workload identity (maps to gRPC UNAUTHENTICATED). */
export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  readonly code: IdentityErrorCode;
  constructor(code: IdentityErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SPIFFE = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;
const POD_URN_PREFIX = 'urn:strongroom:pod:';

/** Throws IdentityError('malformed') unless `trustDomain` is a valid SPIFFE trust domain name. */
export function checkTrustDomain(trustDomain: string): void {
  if (isSpiffeTrustDomain(trustDomain).length > 0) {
    throw new IdentityError('malformed', `invalid trust domain ${JSON.stringify(trustDomain)}`);
  }
}

/** The SPIFFE ID of a service account: `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
export function spiffeId(identity: Omit<WorkloadIdentity, 'podUid'>): string {
  checkTrustDomain(identity.trustDomain);
  checkNames(identity.namespace, identity.serviceAccount);
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

/** The pod URI SAN: `urn:strongroom:pod:<uid>` (a lowercase UUID). */
export function podUri(podUid: string): string {
  if (!UUID.test(podUid)) throw new IdentityError('malformed', `invalid pod UID ${JSON.stringify(podUid)}`);
  return `${POD_URN_PREFIX}${podUid}`;
}

/**
 * The identity named by a peer certificate (already verified against the operator CA by TLS) for the broker's
 * trust domain. Throws IdentityError unless its SANs are exactly one SPIFFE ID of that trust domain and one pod URI.
 */
export function identityFromCertificate(certificate: X509Certificate, trustDomain: string): WorkloadIdentity {
  const text = certificate.subjectAltName;
  const names = text === undefined ? [] : parseSubjectAltName(text);
  return identityFromSans(names, trustDomain);
}

/** A subject alternative name as node reports it: type (`URI`, `DNS`, `IP Address`, ...) and value. */
export interface SubjectAltName {
  readonly type: string;
  readonly value: string;
}

/** {@link identityFromCertificate} on already parsed SANs. */
export function identityFromSans(names: readonly SubjectAltName[], trustDomain: string): WorkloadIdentity {
  checkTrustDomain(trustDomain);
  const others = names.filter((n) => n.type !== 'URI');
  if (others.length > 0) {
    throw new IdentityError('san-set', `the certificate has ${others.length} non-URI SAN(s)`);
  }
  const uris = names.map((n) => n.value);
  const spiffe = uris.filter((u) => u.toLowerCase().startsWith('spiffe:'));
  const pods = uris.filter((u) => u.toLowerCase().startsWith('urn:strongroom:pod:'));
  if (spiffe.length !== 1)
    throw new IdentityError('san-set', `the certificate has ${spiffe.length} SPIFFE IDs, not exactly one`);
  if (pods.length !== 1)
    throw new IdentityError('san-set', `the certificate has ${pods.length} pod URIs, not exactly one`);
  if (uris.length !== 2)
    throw new IdentityError('san-set', `the certificate has ${uris.length} URI SANs, not exactly two`);
  const [id] = spiffe as [string];
  const [pod] = pods as [string];
  const match = SPIFFE.exec(id);
  if (match === null) throw new IdentityError('malformed', `unparsable SPIFFE ID ${JSON.stringify(id)}`);
  const [, domain, namespace, serviceAccount] = match as unknown as [string, string, string, string];
  if (domain !== trustDomain) {
    throw new IdentityError('foreign-trust-domain', `SPIFFE ID of trust domain ${JSON.stringify(domain)}`);
  }
  checkNames(namespace, serviceAccount);
  const podUid = pod.slice(POD_URN_PREFIX.length);
  if (!pod.startsWith(POD_URN_PREFIX) || !UUID.test(podUid))
    throw new IdentityError('malformed', `unparsable pod URI ${JSON.stringify(pod)}`);
  return { trustDomain, namespace, serviceAccount, podUid };
}

function checkNames(namespace: string, serviceAccount: string): void {
  if (isDns1123Label(namespace).length > 0)
    throw new IdentityError('malformed', `invalid namespace ${JSON.stringify(namespace)}`);
  if (isDns1123Subdomain(serviceAccount).length > 0)
    throw new IdentityError('malformed', `invalid service account ${JSON.stringify(serviceAccount)}`);
}

/**
 * Parses node's `X509Certificate.subjectAltName` text: entries `TYPE:value` separated by `, `, where a value with
 * special characters is a JSON string (node quotes those since 17.3.1). Throws IdentityError('malformed') for
 * anything else.
 */
export function parseSubjectAltName(text: string): SubjectAltName[] {
  const names: SubjectAltName[] = [];
  let rest = text;
  while (rest.length > 0) {
    const colon = rest.indexOf(':');
    if (colon <= 0) throw new IdentityError('malformed', 'unparsable subjectAltName');
    const type = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    let value: string;
    if (rest.startsWith('"')) {
      const end = closingQuote(rest);
      try {
        value = JSON.parse(rest.slice(0, end + 1)) as string;
      } catch (error) {
        throw new IdentityError('malformed', 'unparsable quoted subjectAltName', { cause: error });
      }
      rest = rest.slice(end + 1);
    } else {
      const comma = rest.indexOf(', ');
      value = comma < 0 ? rest : rest.slice(0, comma);
      rest = comma < 0 ? '' : rest.slice(comma);
    }
    names.push({ type, value });
    if (rest.length > 0) {
      if (!rest.startsWith(', ')) throw new IdentityError('malformed', 'unparsable subjectAltName');
      rest = rest.slice(2);
      if (rest.length === 0) throw new IdentityError('malformed', 'unparsable subjectAltName');
    }
  }
  return names;
}

function closingQuote(text: string): number {
  for (let i = 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  throw new IdentityError('malformed', 'unterminated quoted subjectAltName');
}
