import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createAuthorityCertificate,
  generateRsaKey,
  randomSerialHex,
  signLeafCertificate,
  type RsaKeyPem,
  type SigningAuthority,
} from './certificates.ts';
import { PkiError } from './errors.ts';

const HOUR = 3600_000;
const t0 = new Date('2027-03-01T12:00:00Z');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let caKey: RsaKeyPem;
let leafKey: RsaKeyPem;
let ca: SigningAuthority;
let otherCa: SigningAuthority;

function makeCa(key: RsaKeyPem, commonName: string): SigningAuthority {
  const certPem = createAuthorityCertificate(key, {
    commonName,
    notBefore: t0,
    notAfter: new Date(+t0 + 90 * 24 * HOUR),
  });
  return { certPem, privateKeyPem: key.privateKeyPem };
}

function leaf(
  overrides: Partial<Parameters<typeof signLeafCertificate>[1]> = {},
  issuer = ca,
): X509Certificate {
  return new X509Certificate(
    signLeafCertificate(issuer, {
      publicKeyPem: leafKey.publicKeyPem,
      commonName: 'pod-a',
      dnsNames: ['webhook.strongroom.svc'],
      ipAddresses: ['127.0.0.1', '2001:db8::1'],
      uris: ['spiffe://strongroom/ns/ml/sa/trainer'],
      usages: ['clientAuth'],
      notBefore: t0,
      notAfter: new Date(+t0 + 24 * HOUR),
      ...overrides,
    }),
  );
}

/** Reads (never verifies) an extension with forge: node's X509Certificate does not expose these fields. */
function extension(pem: string, name: string): Record<string, unknown> {
  const ext: unknown = forge.pki.certificateFromPem(pem).getExtension(name);
  if (ext === null || typeof ext !== 'object') throw new Error(`no ${name} extension`);
  return ext as Record<string, unknown>;
}

beforeAll(async () => {
  [caKey, leafKey] = await Promise.all([generateRsaKey(3072), generateRsaKey(2048)]);
  ca = makeCa(caKey, 'Strongroom CA test');
  otherCa = makeCa(await generateRsaKey(2048), 'Strongroom CA other');
});

describe('CA certificates', () => {
  it('are self-signed SHA-256 CAs with pathLen 0, keyCertSign + cRLSign and a subject key identifier', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(ca.certPem).not.toContain('\r');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.signatureAlgorithm).toBe('sha256WithRSAEncryption');
    expect(cert.subject).toBe('O=strongroom.dev\nCN=Strongroom CA test');
    expect(cert.validFromDate).toEqual(t0);
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    const basic = extension(ca.certPem, 'basicConstraints');
    expect(basic).toMatchObject({ cA: true, pathLenConstraint: 0, critical: true });
    const usage = extension(ca.certPem, 'keyUsage');
    expect(usage).toMatchObject({
      keyCertSign: true,
      cRLSign: true,
      digitalSignature: false,
      critical: true,
    });
    expect(extension(ca.certPem, 'subjectKeyIdentifier')['subjectKeyIdentifier']).toMatch(/^[0-9a-f]{40}$/);
  });
});

describe('leaf certificates', () => {
  it('chain to their CA only, carry the SANs, usages and validity asked for, and are not CAs', () => {
    const cert = leaf({ usages: ['serverAuth', 'clientAuth'] });
    const caCert = new X509Certificate(ca.certPem);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    const foreign = new X509Certificate(otherCa.certPem);
    expect(cert.checkIssued(foreign)).toBe(false);
    expect(cert.verify(foreign.publicKey)).toBe(false);
    expect(cert.ca).toBe(false);
    expect(cert.signatureAlgorithm).toBe('sha256WithRSAEncryption');
    expect(cert.subject).toBe('CN=pod-a');
    expect(cert.issuer).toBe(caCert.subject);
    expect(cert.subjectAltName).toBe(
      'DNS:webhook.strongroom.svc, IP Address:127.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1, URI:spiffe://strongroom/ns/ml/sa/trainer',
    );
    expect(cert.checkHost('webhook.strongroom.svc')).toBe('webhook.strongroom.svc');
    expect(cert.checkHost('other.strongroom.svc')).toBeUndefined();
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.validFromDate).toEqual(t0);
    expect(cert.validToDate).toEqual(new Date(+t0 + 24 * HOUR));
    expect(cert.keyUsage.toSorted()).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    expect(cert.checkPrivateKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)).toBe(false);
    const usage = extension(cert.toString(), 'keyUsage');
    expect(usage).toMatchObject({
      digitalSignature: true,
      keyEncipherment: true,
      keyCertSign: false,
      critical: true,
    });
    expect(extension(cert.toString(), 'basicConstraints')).toMatchObject({ cA: false, critical: true });
    const ski = extension(ca.certPem, 'subjectKeyIdentifier')['subjectKeyIdentifier'];
    const aki = forge.util.bytesToHex(
      extension(cert.toString(), 'authorityKeyIdentifier')['value'] as string,
    );
    expect(aki).toContain(ski);
  });

  it('carry exactly the extended key usages requested', () => {
    expect(leaf({ usages: ['clientAuth'] }).keyUsage).toEqual([CLIENT_AUTH]);
    expect(leaf({ usages: ['serverAuth'] }).keyUsage).toEqual([SERVER_AUTH]);
  });

  it('get positive, 126-bit random serials', () => {
    const serials = Array.from({ length: 64 }, () => randomSerialHex());
    expect(new Set(serials).size).toBe(64);
    for (const serial of serials) {
      expect(serial).toMatch(/^[4-7][0-9a-f]{31}$/);
    }
    const a = leaf().serialNumber;
    const b = leaf().serialNumber;
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[4-7][0-9A-F]{31}$/);
  });

  it.each([
    ['no usage', { usages: [] }],
    ['an empty validity', { notAfter: t0 }],
    ['an invalid date', { notAfter: new Date(Number.NaN) }],
    ['a bad DNS name', { dnsNames: ['bad_name.example'] }],
    ['a DNS name with a space', { dnsNames: ['a b'] }],
    ['a bad IP address', { ipAddresses: ['300.1.1.1'] }],
    ['a bad URI', { uris: ['not a uri'] }],
    ['an empty common name', { commonName: '' }],
    ['a 65-character common name', { commonName: 'x'.repeat(65) }],
    ['a non-PEM public key', { publicKeyPem: 'garbage' }],
  ])('refuses %s with PkiError(invalid)', (_, overrides) => {
    expect(() => leaf(overrides)).toThrow(expect.objectContaining({ name: 'PkiError', code: 'invalid' }));
  });

  it('refuses EC and short RSA keys (forge can only certify RSA; < 2048 bits is too weak)', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    for (const publicKeyPem of [ec.toString(), short.toString()]) {
      const error = (() => {
        try {
          leaf({ publicKeyPem });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(PkiError);
      expect((error as PkiError).code).toBe('invalid');
    }
  });
});
