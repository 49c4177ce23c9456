import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AUTHORITY_SECRET_TYPE,
  authoritySecretData,
  parseAuthoritySecret,
  type AuthorityRecord,
} from './authority-secret.ts';
import {
  createAuthorityCertificate,
  generateRsaKey,
  signLeafCertificate,
  type RsaKeyPem,
} from './certificates.ts';

const DAY = 24 * 3600_000;
const t0 = new Date('2027-01-01T00:00:00Z');
const b64 = (text: string): string => Buffer.from(text).toString('base64');

let keyA: RsaKeyPem;
let keyB: RsaKeyPem;
let record: AuthorityRecord;
let leafPem: string;

function caPem(key: RsaKeyPem, name: string): string {
  return createAuthorityCertificate(key, {
    commonName: name,
    notBefore: t0,
    notAfter: new Date(+t0 + 365 * DAY),
  });
}

beforeAll(async () => {
  [keyA, keyB] = await Promise.all([generateRsaKey(3072), generateRsaKey(2048)]);
  const currentPem = caPem(keyA, 'CA new');
  const retiredPem = caPem(keyB, 'CA old');
  record = {
    current: {
      certPem: currentPem,
      privateKeyPem: keyA.privateKeyPem,
      cert: new X509Certificate(currentPem),
    },
    retired: [
      { certPem: retiredPem, cert: new X509Certificate(retiredPem), trustUntil: new Date(+t0 + 7 * DAY) },
    ],
  };
  leafPem = signLeafCertificate(
    { certPem: currentPem, privateKeyPem: keyA.privateKeyPem },
    {
      publicKeyPem: keyB.publicKeyPem,
      commonName: 'leaf',
      usages: ['serverAuth'],
      notBefore: t0,
      notAfter: new Date(+t0 + DAY),
    },
  );
});

function secret(data: Record<string, string>, type = AUTHORITY_SECRET_TYPE) {
  return { type, data };
}

function malformed(data: Record<string, string>, type?: string): unknown {
  try {
    parseAuthoritySecret(secret(data, type), 'Secret ns/strongroom-ca');
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('the CA Secret format', () => {
  it('round-trips the current CA and the retired CAs with their trust deadlines', () => {
    const data = authoritySecretData(record);
    expect(Object.keys(data).sort()).toEqual(['ca.crt', 'ca.key', 'retired.json']);
    const parsed = parseAuthoritySecret(secret(data), 'here');
    expect(parsed.current.certPem).toBe(record.current.certPem);
    expect(parsed.current.privateKeyPem).toBe(keyA.privateKeyPem);
    expect(parsed.current.cert.fingerprint256).toBe(record.current.cert.fingerprint256);
    expect(parsed.retired).toHaveLength(1);
    expect(parsed.retired[0]?.cert.subject).toContain('CN=CA old');
    expect(parsed.retired[0]?.trustUntil).toEqual(new Date(+t0 + 7 * DAY));
  });

  it('has no retired.json when no CA is retired, and parses that back as none', () => {
    const data = authoritySecretData({ current: record.current, retired: [] });
    expect(data['retired.json']).toBeUndefined();
    expect(parseAuthoritySecret(secret(data), 'here').retired).toEqual([]);
  });

  const good = (): Record<string, string> => authoritySecretData(record);
  const retired = (json: string): Record<string, string> => ({ ...good(), 'retired.json': b64(json) });
  const cases: [string, () => Record<string, string>, string?][] = [
    ['the wrong Secret type', good, 'Opaque'],
    ['no ca.crt', () => ({ 'ca.key': good()['ca.key'] ?? '' })],
    ['no ca.key', () => ({ 'ca.crt': good()['ca.crt'] ?? '' })],
    ['an empty ca.key', () => ({ ...good(), 'ca.key': '' })],
    [
      'garbage in ca.crt',
      () => ({ ...good(), 'ca.crt': b64('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }),
    ],
    [
      'two certificates in ca.crt',
      () => ({ ...good(), 'ca.crt': b64(record.current.certPem + record.current.certPem) }),
    ],
    ['a leaf certificate as ca.crt', () => ({ ...good(), 'ca.crt': b64(leafPem) })],
    ['garbage in ca.key', () => ({ ...good(), 'ca.key': b64('not a key') })],
    ['a key that does not match ca.crt', () => ({ ...good(), 'ca.key': b64(keyB.privateKeyPem) })],
    ['retired.json that is not JSON', () => retired('{')],
    ['retired.json that is not an array', () => retired('{}')],
    [
      'a retired entry without trustUntil',
      () => retired(JSON.stringify([{ certificate: record.current.certPem }])),
    ],
    [
      'a retired entry with a bad date',
      () => retired(JSON.stringify([{ certificate: record.current.certPem, trustUntil: 'tomorrow' }])),
    ],
    [
      'a retired leaf certificate',
      () => retired(JSON.stringify([{ certificate: leafPem, trustUntil: '2027-01-02T00:00:00.000Z' }])),
    ],
  ];
  it.each(cases)(
    'refuses %s with PkiError(malformed), without key material in the message',
    (_, data, type) => {
      const error = malformed(data(), type);
      expect(error).toMatchObject({ name: 'PkiError', code: 'malformed' });
      expect((error as Error).message).toContain('strongroom-ca');
      expect((error as Error).message).not.toContain('PRIVATE KEY');
      expect((error as Error).message).not.toContain(keyA.privateKeyPem.slice(40, 80));
    },
  );
});
