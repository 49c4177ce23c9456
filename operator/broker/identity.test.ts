import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import {
  IdentityError,
  identityFromCertificate,
  parseSubjectAltName,
  podUri,
  spiffeId,
  type IdentityErrorCode,
} from './identity.ts';

const TD = 'strongroom.test';
const UID = '0f8b1c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3';
const SPIFFE = `spiffe://${TD}/ns/research/sa/trainer`;
const POD = `urn:strongroom:pod:${UID}`;

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const forgeKey = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
const forgePublic = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());

type AltName = { type: 6; value: string } | { type: 2; value: string } | { type: 7; ip: string };

/** A self-signed certificate with the given SANs (TLS has verified the issuer before identity is read). */
function certificate(altNames: AltName[], commonName = 'ignored'): X509Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  cert.setSubject([{ name: 'commonName', value: commonName }]);
  cert.setIssuer([{ name: 'commonName', value: 'test' }]);
  if (altNames.length > 0) cert.setExtensions([{ name: 'subjectAltName', altNames }]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return new X509Certificate(forge.pki.certificateToPem(cert));
}

const uri = (value: string): AltName => ({ type: 6, value });

function refusal(run: () => unknown): IdentityErrorCode {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(IdentityError);
    return (error as IdentityError).code;
  }
  throw new Error('expected an IdentityError');
}

describe('identityFromCertificate', () => {
  it('reads the SPIFFE ID and pod UID from the URI SANs, in either order', () => {
    const expected = { trustDomain: TD, namespace: 'research', serviceAccount: 'trainer', podUid: UID };
    expect(identityFromCertificate(certificate([uri(SPIFFE), uri(POD)]), TD)).toEqual(expected);
    expect(identityFromCertificate(certificate([uri(POD), uri(SPIFFE)]), TD)).toEqual(expected);
  });

  it('never reads the CN, even when it looks like a SPIFFE ID', () => {
    const cn = 'spiffe://strongroom.test/ns/prod/sa/admin';
    expect(refusal(() => identityFromCertificate(certificate([], cn), TD))).toBe('san-set');
    const id = identityFromCertificate(certificate([uri(SPIFFE), uri(POD)], cn), TD);
    expect(id.namespace).toBe('research');
  });

  it.each<[string, AltName[], IdentityErrorCode]>([
    ['no SPIFFE ID', [uri(POD)], 'san-set'],
    ['two SPIFFE IDs', [uri(SPIFFE), uri(`spiffe://${TD}/ns/prod/sa/admin`), uri(POD)], 'san-set'],
    ['no pod URI', [uri(SPIFFE)], 'san-set'],
    [
      'two pod URIs',
      [uri(SPIFFE), uri(POD), uri('urn:strongroom:pod:11111111-2222-4333-8444-555555555555')],
      'san-set',
    ],
    ['an extra URI', [uri(SPIFFE), uri(POD), uri('https://example.com/')], 'san-set'],
    ['an extra DNS SAN', [uri(SPIFFE), uri(POD), { type: 2, value: 'broker.example' }], 'san-set'],
    ['an extra IP SAN', [uri(SPIFFE), uri(POD), { type: 7, ip: '127.0.0.1' }], 'san-set'],
    [
      'another trust domain',
      [uri('spiffe://evil.test/ns/research/sa/trainer'), uri(POD)],
      'foreign-trust-domain',
    ],
    [
      'a trust domain differing in case',
      [uri('spiffe://Strongroom.test/ns/research/sa/trainer'), uri(POD)],
      'foreign-trust-domain',
    ],
    ['a SPIFFE ID without /sa/', [uri(`spiffe://${TD}/ns/research`), uri(POD)], 'malformed'],
    ['a SPIFFE ID with extra path', [uri(`spiffe://${TD}/ns/research/sa/trainer/x`), uri(POD)], 'malformed'],
    ['a SPIFFE ID with a query', [uri(`spiffe://${TD}/ns/research/sa/trainer?x=1`), uri(POD)], 'malformed'],
    ['an upper-case namespace', [uri(`spiffe://${TD}/ns/Research/sa/trainer`), uri(POD)], 'malformed'],
    ['a namespace with a dot', [uri(`spiffe://${TD}/ns/a.b/sa/trainer`), uri(POD)], 'malformed'],
    ['a percent-encoded name', [uri(`spiffe://${TD}/ns/research/sa/tr%61iner`), uri(POD)], 'malformed'],
    ['a pod URI that is not a UUID', [uri(SPIFFE), uri('urn:strongroom:pod:web-0')], 'malformed'],
    ['an upper-case pod UID', [uri(SPIFFE), uri(`urn:strongroom:pod:${UID.toUpperCase()}`)], 'malformed'],
    ['an upper-case pod URN prefix', [uri(SPIFFE), uri(`URN:strongroom:pod:${UID}`)], 'malformed'],
    ['a URI with a comma (node quotes it)', [uri(SPIFFE), uri(POD), uri('urn:x,URI:y')], 'san-set'],
  ])('refuses a certificate with %s', (_what, names, code) => {
    expect(refusal(() => identityFromCertificate(certificate(names), TD))).toBe(code);
  });

  it('refuses an invalid trust domain configuration', () => {
    expect(refusal(() => identityFromCertificate(certificate([uri(SPIFFE), uri(POD)]), 'Bad/Domain'))).toBe(
      'malformed',
    );
  });
});

describe('parseSubjectAltName', () => {
  it('parses node quoting, so a crafted value cannot smuggle a second SAN', () => {
    expect(parseSubjectAltName('URI:spiffe://a/ns/b/sa/c, URI:"urn:x\\u002c URI:z", DNS:d.example')).toEqual([
      { type: 'URI', value: 'spiffe://a/ns/b/sa/c' },
      { type: 'URI', value: 'urn:x, URI:z' },
      { type: 'DNS', value: 'd.example' },
    ]);
  });

  it.each(['URI', 'URI:"unterminated', 'URI:a, ', 'URI:"a"x', ':a'])('refuses %j', (text) => {
    expect(refusal(() => parseSubjectAltName(text))).toBe('malformed');
  });
});

describe('spiffeId and podUri', () => {
  it('build the names that identityFromCertificate reads back', () => {
    const id = spiffeId({ trustDomain: TD, namespace: 'research', serviceAccount: 'trainer' });
    expect(id).toBe(SPIFFE);
    expect(podUri(UID)).toBe(POD);
    expect(identityFromCertificate(certificate([uri(id), uri(podUri(UID))]), TD).podUid).toBe(UID);
  });

  it('refuse names they could not read back', () => {
    expect(refusal(() => spiffeId({ trustDomain: TD, namespace: 'a/b', serviceAccount: 'x' }))).toBe(
      'malformed',
    );
    expect(refusal(() => spiffeId({ trustDomain: TD, namespace: 'a', serviceAccount: 'X' }))).toBe(
      'malformed',
    );
    expect(refusal(() => podUri('not-a-uid'))).toBe('malformed');
  });
});
