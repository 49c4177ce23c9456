import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.ts';

/**
 * The CA Secret's format (see docs/pki.md): pure parsing and serialization, no I/O.
 *
 *   type: strongroom.dev/internal-ca
 *   data:
 *     ca.crt        the current CA certificate (one PEM block)
 *     ca.key        the current CA private key (PKCS#8 PEM, RSA)
 *     retired.json  optional: [{"certificate": "<PEM>", "trustUntil": "<RFC 3339>"}] for CAs replaced by a rollover
 *                   whose leaves may still be in use; their keys are gone.
 */

/** The Secret type of the CA Secret. */
export const AUTHORITY_SECRET_TYPE = 'strongroom.dev/internal-ca';

/** The CA that signs now. */
export interface CurrentAuthority {
  readonly certPem: string;
  readonly privateKeyPem: string;
  readonly cert: X509Certificate;
}

/** A CA replaced by a rollover: it signs nothing any more but stays trusted until `trustUntil`. */
export interface RetiredAuthority {
  readonly certPem: string;
  readonly cert: X509Certificate;
  readonly trustUntil: Date;
}

/** Everything the CA Secret holds. */
export interface AuthorityRecord {
  readonly current: CurrentAuthority;
  readonly retired: readonly RetiredAuthority[];
}

/** The parts of a Secret the parser reads (data values are base64, as the API returns them). */
export interface SecretLike {
  readonly type?: string | undefined;
  readonly data?: Readonly<Record<string, string>> | undefined;
}

/**
 * Parses and checks the CA Secret. Throws PkiError('malformed') unless: the type is right; ca.crt is exactly one
 * self-signed CA certificate; ca.key is an RSA private key matching it; retired.json, when present, lists CA
 * certificates with valid dates. The messages never include key material.
 */
export function parseAuthoritySecret(secret: SecretLike, where: string): AuthorityRecord {
  if (secret.type !== AUTHORITY_SECRET_TYPE) {
    throw new PkiError(
      'malformed',
      `${where}: type is ${String(secret.type)}, expected ${AUTHORITY_SECRET_TYPE}`,
    );
  }
  const certPem = decoded(secret, 'ca.crt', where);
  const privateKeyPem = decoded(secret, 'ca.key', where);
  const cert = caCertificate(certPem, `${where} ca.crt`);
  if (!cert.checkIssued(cert) || !cert.verify(cert.publicKey)) {
    throw new PkiError('malformed', `${where}: ca.crt is not self-signed`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new PkiError('malformed', `${where}: ca.key is not a PEM private key`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'rsa') throw new PkiError('malformed', `${where}: ca.key is not an RSA key`);
  if (!cert.checkPrivateKey(key)) throw new PkiError('malformed', `${where}: ca.key does not match ca.crt`);
  const retiredJson = secret.data?.['retired.json'];
  const retired =
    retiredJson === undefined ? [] : parseRetired(Buffer.from(retiredJson, 'base64').toString(), where);
  return { current: { certPem, privateKeyPem, cert }, retired };
}

/** The Secret `data` (base64 values) that parseAuthoritySecret reads back as `record`. */
export function authoritySecretData(record: AuthorityRecord): Record<string, string> {
  const data: Record<string, string> = {
    'ca.crt': base64(record.current.certPem),
    'ca.key': base64(record.current.privateKeyPem),
  };
  if (record.retired.length > 0) {
    const retired = record.retired.map((r) => ({
      certificate: r.certPem,
      trustUntil: r.trustUntil.toISOString(),
    }));
    data['retired.json'] = base64(JSON.stringify(retired));
  }
  return data;
}

/** Parses one PEM certificate that must be a CA; PkiError('malformed') otherwise. */
export function caCertificate(pem: string, what: string): X509Certificate {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
  if (blocks !== 1) throw new PkiError('malformed', `${what}: expected one PEM certificate, found ${blocks}`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (error) {
    throw new PkiError('malformed', `${what}: not a parsable certificate`, { cause: error });
  }
  if (!cert.ca) throw new PkiError('malformed', `${what}: not a CA certificate`);
  return cert;
}

function parseRetired(json: string, where: string): RetiredAuthority[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new PkiError('malformed', `${where}: retired.json is not JSON`, { cause: error });
  }
  if (!Array.isArray(value)) throw new PkiError('malformed', `${where}: retired.json is not an array`);
  return value.map((entry: unknown, i): RetiredAuthority => {
    const what = `${where} retired.json[${i}]`;
    if (typeof entry !== 'object' || entry === null)
      throw new PkiError('malformed', `${what}: not an object`);
    const { certificate, trustUntil } = entry as { certificate?: unknown; trustUntil?: unknown };
    if (typeof certificate !== 'string' || typeof trustUntil !== 'string') {
      throw new PkiError('malformed', `${what}: needs string fields certificate and trustUntil`);
    }
    const until = new Date(trustUntil);
    if (Number.isNaN(until.getTime()) || until.toISOString() !== trustUntil) {
      throw new PkiError('malformed', `${what}: trustUntil is not an RFC 3339 UTC time`);
    }
    return { certPem: certificate, cert: caCertificate(certificate, what), trustUntil: until };
  });
}

function decoded(secret: SecretLike, key: string, where: string): string {
  const value = secret.data?.[key];
  if (value === undefined || value === '') throw new PkiError('malformed', `${where}: no ${key}`);
  return Buffer.from(value, 'base64').toString();
}

function base64(text: string): string {
  return Buffer.from(text).toString('base64');
}
