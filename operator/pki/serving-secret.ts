import { createPrivateKey, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { ApiException, type CoreV1Api } from '@kubernetes/client-node';
import { PkiError } from './errors.ts';
import type { SecretLike } from './authority-secret.ts';
import { leafRenewAt } from './schedule.ts';

/** Pure decision about an existing kubernetes.io/tls serving Secret: keep it, refresh its ca.crt, or issue anew. */

/** The verdict on an existing serving Secret. */
export type ServingVerdict =
  | { readonly action: 'keep'; readonly renewAt: Date; readonly notAfter: Date }
  /** The certificate is good but ca.crt is not the current bundle: rewrite ca.crt only. */
  | { readonly action: 'update-bundle'; readonly renewAt: Date; readonly notAfter: Date }
  /** Issue a new key and certificate; `reason` is for logs. */
  | { readonly action: 'issue'; readonly reason: string };

/** What the serving Secret must satisfy. */
export interface ServingExpectation {
  readonly ca: X509Certificate;
  /** CAs retired by a rollover and still trusted. */
  readonly retired?: readonly X509Certificate[];
  /**
   * When serving certificates move to the current CA after a rollover. Until then a certificate signed by one of
   * `retired` is kept (and renewed at `moveAt` at the latest), so that every sidecar has renewed its own certificate,
   * and with it learnt the new CA from Attest's bundle, before the broker presents a certificate of the new CA.
   */
  readonly moveAt?: Date;
  readonly bundlePem: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly now: Date;
}

/**
 * Judges a serving Secret (null when absent). It is kept only if tls.crt parses, is signed by the current CA, names
 * exactly the requested DNS names and IP addresses, is already valid, is before 2/3 of its lifetime, and tls.key is
 * its key; or, before `moveAt`, if it is signed by a retired CA still trusted and otherwise fine (see
 * {@link ServingExpectation.moveAt}). A stale ca.crt alone only asks for a bundle update.
 */
export function judgeServingSecret(secret: SecretLike | null, expected: ServingExpectation): ServingVerdict {
  if (secret === null) return { action: 'issue', reason: 'no Secret' };
  const certPem = text(secret, 'tls.crt');
  const keyPem = text(secret, 'tls.key');
  if (certPem === undefined || keyPem === undefined)
    return { action: 'issue', reason: 'no tls.crt or tls.key' };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem)))
      return { action: 'issue', reason: 'tls.key does not match' };
  } catch {
    return { action: 'issue', reason: 'tls.crt or tls.key does not parse' };
  }
  const now = expected.now.getTime();
  const signedBy = (ca: X509Certificate) => cert.checkIssued(ca) && cert.verify(ca.publicKey);
  const moveAt = expected.moveAt;
  const beforeMove = moveAt !== undefined && now < moveAt.getTime() ? moveAt : undefined;
  const byRetired =
    !signedBy(expected.ca) && beforeMove !== undefined && (expected.retired ?? []).some(signedBy);
  if (!byRetired && !signedBy(expected.ca)) {
    return { action: 'issue', reason: 'not signed by the current CA' };
  }
  if (!sameNames(cert, expected)) return { action: 'issue', reason: 'names differ from the request' };
  if (cert.validFromDate.getTime() > now) return { action: 'issue', reason: 'not yet valid' };
  let renewAt = leafRenewAt(cert.validFromDate, cert.validToDate);
  if (byRetired) {
    // Kept until the move even past 2/3 of its life, as long as it is still valid then.
    const validAtMove = cert.validToDate.getTime() > beforeMove.getTime();
    if (now >= renewAt.getTime() && !validAtMove)
      return { action: 'issue', reason: 'past 2/3 of its lifetime' };
    renewAt = now >= renewAt.getTime() || beforeMove < renewAt ? beforeMove : renewAt;
  } else if (now >= renewAt.getTime()) return { action: 'issue', reason: 'past 2/3 of its lifetime' };
  if (text(secret, 'ca.crt') !== expected.bundlePem)
    return { action: 'update-bundle', renewAt, notAfter: cert.validToDate };
  return { action: 'keep', renewAt, notAfter: cert.validToDate };
}

/** The canonical text form of an IP address (IPv6 compressed and lower case), as node prints it in SANs. */
export function canonicalIp(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]`).hostname.slice(1, -1) : address;
}

function sameNames(cert: X509Certificate, expected: ServingExpectation): boolean {
  const actual = (cert.subjectAltName ?? '').split(', ').filter((entry) => entry !== '');
  const wanted = [
    ...expected.dnsNames.map((name) => `DNS:${name.toLowerCase()}`),
    ...expected.ipAddresses.map((ip) => `IP Address:${canonicalIp(ip)}`),
  ];
  const normalized = actual.map((entry) =>
    entry.startsWith('DNS:')
      ? `DNS:${entry.slice('DNS:'.length).toLowerCase()}`
      : entry.startsWith('IP Address:')
        ? `IP Address:${canonicalIp(entry.slice('IP Address:'.length))}`
        : entry,
  );
  const a = [...new Set(normalized)].sort();
  const b = [...new Set(wanted)].sort();
  return a.length === b.length && a.every((entry, i) => entry === b[i]);
}

function text(secret: SecretLike, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString();
}

/**
 * Reads a serving certificate and key from a `kubernetes.io/tls` Secret for a TLS server (the broker and the
 * webhook). Throws PkiError `missing` when the Secret cannot be read (not issued yet, or the API server is
 * unreachable) and `malformed` when it lacks `tls.crt` or `tls.key`.
 */
export async function readServingCertificate(
  core: CoreV1Api,
  namespace: string,
  name: string,
): Promise<{ cert: Buffer; key: Buffer }> {
  const where = `Secret ${namespace}/${name}`;
  let data: Record<string, string> | undefined;
  try {
    data = (await core.readNamespacedSecret({ name, namespace })).data;
  } catch (error) {
    const why = error instanceof ApiException ? `HTTP ${String(error.code)}` : 'unreachable API server';
    throw new PkiError('missing', `cannot read ${where}: ${why}`, { cause: error });
  }
  const cert = data?.['tls.crt'];
  const key = data?.['tls.key'];
  if (!cert || !key) throw new PkiError('malformed', `${where} lacks tls.crt or tls.key`);
  return { cert: Buffer.from(cert, 'base64'), key: Buffer.from(key, 'base64') };
}
