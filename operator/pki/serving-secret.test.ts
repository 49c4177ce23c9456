import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createAuthorityCertificate,
  generateRsaKey,
  signLeafCertificate,
  type RsaKeyPem,
  type SigningAuthority,
} from './certificates.ts';
import { canonicalIp, judgeServingSecret, type ServingExpectation } from './serving-secret.ts';

const DAY = 24 * 3600_000;
const t0 = new Date('2027-01-01T00:00:00Z');
const at = (days: number): Date => new Date(+t0 + days * DAY);
const b64 = (text: string): string => Buffer.from(text).toString('base64');
const dnsNames = ['webhook.strongroom.svc', 'webhook.strongroom.svc.cluster.local'];
const ipAddresses = ['10.0.0.1', '2001:db8::1'];

let key: RsaKeyPem;
let otherKey: RsaKeyPem;
let ca: SigningAuthority;
let otherCa: SigningAuthority;

beforeAll(async () => {
  [key, otherKey] = await Promise.all([generateRsaKey(2048), generateRsaKey(2048)]);
  const authority = (k: RsaKeyPem, name: string): SigningAuthority => ({
    certPem: createAuthorityCertificate(k, { commonName: name, notBefore: t0, notAfter: at(365) }),
    privateKeyPem: k.privateKeyPem,
  });
  ca = authority(key, 'CA');
  otherCa = authority(otherKey, 'other CA');
});

function tlsSecret(
  options: {
    issuer?: SigningAuthority;
    names?: string[];
    ips?: string[];
    keyPem?: string;
    bundle?: string;
  } = {},
) {
  const certPem = signLeafCertificate(options.issuer ?? ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'strongroom-webhook',
    dnsNames: options.names ?? dnsNames,
    ipAddresses: options.ips ?? ipAddresses,
    usages: ['serverAuth'],
    notBefore: at(0),
    notAfter: at(3),
  });
  return {
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': b64(certPem),
      'tls.key': b64(options.keyPem ?? key.privateKeyPem),
      'ca.crt': b64(options.bundle ?? ca.certPem),
    },
  };
}

function expectation(now: Date, overrides: Partial<ServingExpectation> = {}): ServingExpectation {
  return {
    ca: new X509Certificate(ca.certPem),
    bundlePem: ca.certPem,
    dnsNames,
    ipAddresses,
    now,
    ...overrides,
  };
}

describe('judging a serving Secret', () => {
  it('keeps a good certificate until 2/3 of its lifetime and renews it from then on', () => {
    const secret = tlsSecret();
    expect(judgeServingSecret(secret, expectation(at(1)))).toEqual({
      action: 'keep',
      renewAt: at(2),
      notAfter: at(3),
    });
    expect(judgeServingSecret(secret, expectation(new Date(+at(2) - 1)))).toMatchObject({ action: 'keep' });
    expect(judgeServingSecret(secret, expectation(at(2)))).toEqual({
      action: 'issue',
      reason: 'past 2/3 of its lifetime',
    });
  });

  it('issues when the Secret is absent or incomplete', () => {
    expect(judgeServingSecret(null, expectation(at(1)))).toMatchObject({ action: 'issue' });
    const { data } = tlsSecret();
    expect(judgeServingSecret({ data: { 'tls.crt': data['tls.crt'] } }, expectation(at(1)))).toMatchObject({
      action: 'issue',
    });
    expect(
      judgeServingSecret({ data: { ...data, 'tls.crt': b64('junk') } }, expectation(at(1))),
    ).toMatchObject({
      action: 'issue',
    });
  });

  it('issues when the certificate was signed by another CA (for example the one before a rollover)', () => {
    const verdict = judgeServingSecret(tlsSecret({ issuer: otherCa }), expectation(at(1)));
    expect(verdict).toEqual({ action: 'issue', reason: 'not signed by the current CA' });
  });

  describe('after a rollover, a certificate of the retired CA stays until the move', () => {
    // The leaf lives day 0 to day 3 (2/3 at day 2); `otherCa` is the retired CA, `ca` the current one.
    const retired = () => [new X509Certificate(otherCa.certPem)];
    const old = () => tlsSecret({ issuer: otherCa });

    it('is kept before the move and renewed at the move at the latest', () => {
      expect(judgeServingSecret(old(), expectation(at(1), { retired: retired(), moveAt: at(1.5) }))).toEqual({
        action: 'keep',
        renewAt: at(1.5),
        notAfter: at(3),
      });
      // A move later than 2/3 of its life does not postpone its renewal.
      expect(judgeServingSecret(old(), expectation(at(1), { retired: retired(), moveAt: at(2.5) }))).toEqual({
        action: 'keep',
        renewAt: at(2),
        notAfter: at(3),
      });
    });

    it('is kept past 2/3 of its life while it is still valid at the move', () => {
      expect(
        judgeServingSecret(old(), expectation(at(2.2), { retired: retired(), moveAt: at(2.5) })),
      ).toEqual({ action: 'keep', renewAt: at(2.5), notAfter: at(3) });
      expect(
        judgeServingSecret(old(), expectation(at(2.2), { retired: retired(), moveAt: at(3.5) })),
      ).toEqual({ action: 'issue', reason: 'past 2/3 of its lifetime' });
    });

    it('moves to the current CA at the move, and never stays on a CA that is not a retired one', () => {
      expect(
        judgeServingSecret(old(), expectation(at(1.5), { retired: retired(), moveAt: at(1.5) })),
      ).toEqual({
        action: 'issue',
        reason: 'not signed by the current CA',
      });
      expect(judgeServingSecret(old(), expectation(at(1), { retired: [], moveAt: at(1.5) }))).toEqual({
        action: 'issue',
        reason: 'not signed by the current CA',
      });
      expect(judgeServingSecret(old(), expectation(at(1), { retired: retired() }))).toEqual({
        action: 'issue',
        reason: 'not signed by the current CA',
      });
    });

    it('still checks names and keys, and asks for the bundle with both CAs', () => {
      const both = `${ca.certPem}${otherCa.certPem}`;
      expect(
        judgeServingSecret(
          tlsSecret({ issuer: otherCa, names: ['x.svc'] }),
          expectation(at(1), { retired: retired(), moveAt: at(1.5) }),
        ),
      ).toEqual({ action: 'issue', reason: 'names differ from the request' });
      expect(
        judgeServingSecret(
          old(),
          expectation(at(1), { retired: retired(), moveAt: at(1.5), bundlePem: both }),
        ),
      ).toEqual({ action: 'update-bundle', renewAt: at(1.5), notAfter: at(3) });
    });
  });

  it('issues when tls.key is not the certificate key', () => {
    const verdict = judgeServingSecret(tlsSecret({ keyPem: otherKey.privateKeyPem }), expectation(at(1)));
    expect(verdict).toEqual({ action: 'issue', reason: 'tls.key does not match' });
  });

  it('issues when a name is missing or extra, and matches names case-insensitively and IPs in any notation', () => {
    const reason = { action: 'issue', reason: 'names differ from the request' };
    expect(judgeServingSecret(tlsSecret({ names: [dnsNames[0] ?? ''] }), expectation(at(1)))).toEqual(reason);
    expect(judgeServingSecret(tlsSecret({ names: [...dnsNames, 'x.svc'] }), expectation(at(1)))).toEqual(
      reason,
    );
    expect(judgeServingSecret(tlsSecret({ ips: ['10.0.0.1'] }), expectation(at(1)))).toEqual(reason);
    const respelled = expectation(at(1), {
      dnsNames: dnsNames.map((n) => n.toUpperCase()),
      ipAddresses: ['10.0.0.1', '2001:0DB8:0:0::1'],
    });
    expect(judgeServingSecret(tlsSecret(), respelled)).toMatchObject({ action: 'keep' });
  });

  it('issues when the certificate is not valid yet (clock went backwards)', () => {
    expect(judgeServingSecret(tlsSecret(), expectation(new Date(+t0 - 1000)))).toEqual({
      action: 'issue',
      reason: 'not yet valid',
    });
  });

  it('only rewrites ca.crt when the certificate is fine but the bundle changed', () => {
    const bundle = ca.certPem + otherCa.certPem;
    expect(judgeServingSecret(tlsSecret(), expectation(at(1), { bundlePem: bundle }))).toEqual({
      action: 'update-bundle',
      renewAt: at(2),
      notAfter: at(3),
    });
    expect(
      judgeServingSecret(tlsSecret({ bundle }), expectation(at(1), { bundlePem: bundle })),
    ).toMatchObject({
      action: 'keep',
    });
  });

  it('canonicalizes IP addresses the way node prints them in SANs', () => {
    expect(canonicalIp('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalIp('10.0.0.1')).toBe('10.0.0.1');
  });
});
