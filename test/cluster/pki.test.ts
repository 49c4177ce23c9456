import { X509Certificate, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate } from './pki.ts';

describe('test cluster PKI', () => {
  const ca = createCertificateAuthority('test-ca');

  it('makes a self-signed CA that verifies itself and is marked as a CA', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=test-ca');
    expect(cert.verify(cert.publicKey)).toBe(true);
  });

  it('issues a client certificate whose subject carries the user and the groups', () => {
    const leaf = issueCertificate(ca, {
      commonName: 'alice',
      organizations: ['ml-researchers', 'dev'],
      usage: 'client',
    });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subject.split('\n')).toEqual(['O=ml-researchers', 'O=dev', 'CN=alice']);
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
  });

  it('issues a server certificate with DNS and IP SANs that a foreign CA does not verify', () => {
    const leaf = issueCertificate(ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes.default.svc'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subjectAltName).toBe('DNS:localhost, DNS:kubernetes.default.svc, IP Address:127.0.0.1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    const other = createCertificateAuthority('other-ca');
    expect(cert.verify(new X509Certificate(other.certPem).publicKey)).toBe(false);
  });
});
