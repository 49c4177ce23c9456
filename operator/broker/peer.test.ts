import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createAuthorityCertificate, generateRsaKey, signLeafCertificate } from '../pki/certificates.ts';
import { BrokerError } from './errors.ts';
import { peerFromCertificate, podOf, POD_NOT_INJECTED, type Peer } from './peer.ts';

const UID = '0b3f9c1e-5d6a-4c2b-9e8f-7a6b5c4d3e2f';
const NOW = new Date();
let issuer: { certPem: string; privateKeyPem: string };
let leafKey: { publicKeyPem: string };

function leaf(
  uris: string[],
  notBefore = new Date(NOW.getTime() - 60_000),
  notAfter = new Date(NOW.getTime() + 3600_000),
) {
  const pem = signLeafCertificate(issuer, {
    publicKeyPem: leafKey.publicKeyPem,
    commonName: 'spiffe://test/ns/prod/sa/admin', // the CN is never read
    uris,
    usages: ['clientAuth'],
    notBefore,
    notAfter,
  });
  return { raw: new X509Certificate(pem).raw };
}

function refusal(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (error) {
    if (error instanceof BrokerError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

beforeAll(async () => {
  const caKey = await generateRsaKey(2048);
  issuer = {
    certPem: createAuthorityCertificate(caKey, {
      commonName: 'test CA',
      notBefore: new Date(NOW.getTime() - 3600_000),
      notAfter: new Date(NOW.getTime() + 24 * 3600_000),
    }),
    privateKeyPem: caKey.privateKeyPem,
  };
  leafKey = await generateRsaKey(2048);
});

describe('peerFromCertificate', () => {
  it('reads the workload only from the URI SANs, with the serial and expiry', () => {
    const cert = leaf([`spiffe://strongroom.test/ns/ml-dev/sa/trainer`, `urn:strongroom:pod:${UID}`]);
    const peer = peerFromCertificate(cert, 'strongroom.test', '10.0.0.1:5000', NOW);
    expect(peer).toMatchObject({
      namespace: 'ml-dev',
      serviceAccount: 'trainer',
      podUid: UID,
      spiffeId: 'spiffe://strongroom.test/ns/ml-dev/sa/trainer',
      address: '10.0.0.1:5000',
    });
    expect(peer.certificateSerial).toMatch(/^[0-9a-f]+$/);
    expect(peer.notAfter.getTime()).toBeGreaterThan(NOW.getTime());
  });

  it.each([
    ['no certificate', undefined, 'no-client-certificate'],
    ['bytes that are no certificate', { raw: Buffer.from('not a certificate') }, 'malformed-certificate'],
  ])('refuses %s (UNAUTHENTICATED)', (_what, cert, reason) => {
    const error = refusal(() => peerFromCertificate(cert, 'strongroom.test', 'x', NOW));
    expect(error.status).toBe('UNAUTHENTICATED');
    expect(error.reason).toBe(reason);
  });

  it('refuses another trust domain, a missing pod URI, and an extra SAN', () => {
    const foreign = leaf([`spiffe://other.test/ns/ml-dev/sa/trainer`, `urn:strongroom:pod:${UID}`]);
    expect(refusal(() => peerFromCertificate(foreign, 'strongroom.test', 'x', NOW)).reason).toBe(
      'certificate-foreign-trust-domain',
    );
    const noPod = leaf([`spiffe://strongroom.test/ns/ml-dev/sa/trainer`]);
    expect(refusal(() => peerFromCertificate(noPod, 'strongroom.test', 'x', NOW)).reason).toBe(
      'certificate-san-set',
    );
    const extra = leaf([
      `spiffe://strongroom.test/ns/ml-dev/sa/trainer`,
      `urn:strongroom:pod:${UID}`,
      `spiffe://strongroom.test/ns/prod/sa/admin`,
    ]);
    expect(refusal(() => peerFromCertificate(extra, 'strongroom.test', 'x', NOW)).status).toBe(
      'UNAUTHENTICATED',
    );
  });

  it('refuses a certificate outside its validity period', () => {
    const old = leaf(
      [`spiffe://strongroom.test/ns/ml-dev/sa/trainer`, `urn:strongroom:pod:${UID}`],
      new Date(NOW.getTime() - 7200_000),
      new Date(NOW.getTime() - 3600_000),
    );
    expect(refusal(() => peerFromCertificate(old, 'strongroom.test', 'x', NOW)).reason).toBe(
      'certificate-expired',
    );
  });
});

describe('podOf', () => {
  const peer: Peer = {
    namespace: 'ml-dev',
    serviceAccount: 'trainer',
    podUid: UID,
    spiffeId: 'spiffe://strongroom.test/ns/ml-dev/sa/trainer',
    certificateSerial: '01',
    notAfter: NOW,
    address: 'x',
  };
  const pod = { namespace: 'ml-dev', serviceAccount: 'trainer', labels: { app: 'a' }, terminating: false };

  it('returns the live pod labels, waiting for a pod the cache has not seen yet', async () => {
    let calls = 0;
    const result = await podOf(peer, { pod: () => (++calls < 3 ? undefined : pod) }, 1000);
    expect(result.labels).toEqual({ app: 'a' });
    expect(calls).toBe(3);
  });

  it.each([
    ['deleted', 'deleted' as const, 'pod-deleted', 'UNAUTHENTICATED'],
    ['never seen', undefined, 'pod-not-found', 'UNAUTHENTICATED'],
    ['in another namespace', { ...pod, namespace: 'ml-prod' }, 'pod-identity-mismatch', 'UNAUTHENTICATED'],
    ['terminating', { ...pod, terminating: true }, 'pod-terminating', 'PERMISSION_DENIED'],
    [
      'no longer as injected',
      { ...pod, notInjected: 'sidecar image changed' },
      'pod-not-injected',
      'PERMISSION_DENIED',
    ],
  ])('refuses a pod that is %s', async (_what, found, reason, status) => {
    await expect(podOf(peer, { pod: () => found }, 60)).rejects.toMatchObject({ reason, status });
  });

  it('tells the caller of a pod that is not as injected a generic reason, and keeps the detail for the audit and Event', async () => {
    const error = await podOf(
      peer,
      { pod: () => ({ ...pod, notInjected: 'the sidecar runs image "x"' }) },
      60,
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).callerMessage).toBe(POD_NOT_INJECTED);
    expect((error as BrokerError).message).toContain('the sidecar runs image "x"');
  });

  it('does not tell the caller of a mismatched pod which service account it really runs as', async () => {
    const error = (await podOf(peer, { pod: () => ({ ...pod, serviceAccount: 'admin' }) }, 60).catch(
      (e: unknown) => e,
    )) as BrokerError;
    expect(error.message).toContain('ml-dev/admin');
    expect(error.callerMessage).not.toContain('admin');
  });
});
