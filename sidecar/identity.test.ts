import { createPublicKey } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { createKeyAndCsr, renewalTime } from './identity.ts';

describe('createKeyAndCsr', () => {
  it('makes an RSA 2048 key and a CSR over it whose SHA-256 self-signature verifies', async () => {
    const { privateKey, privateKeyPem, csrPem } = await createKeyAndCsr();
    expect(privateKey.asymmetricKeyType).toBe('rsa');
    expect(privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    expect(csr.verify()).toBe(true);
    expect((csr as unknown as { signatureOid: string }).signatureOid).toBe('1.2.840.113549.1.1.11');
    const csrKey = createPublicKey(forge.pki.publicKeyToPem(csr.publicKey as forge.pki.rsa.PublicKey));
    expect(csrKey.equals(createPublicKey(privateKey))).toBe(true);
  });

  it('a CSR whose signature bytes were altered does not verify (the check above is real)', async () => {
    const { csrPem } = await createKeyAndCsr();
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    const sig = (csr as unknown as { signature: string }).signature;
    (csr as unknown as { signature: string }).signature =
      String.fromCharCode(sig.charCodeAt(0) ^ 1) + sig.slice(1);
    let verified: boolean;
    try {
      verified = csr.verify();
    } catch {
      verified = false; // forge throws for a signature that does not decode
    }
    expect(verified).toBe(false);
  });

  it('makes a new key every time', async () => {
    const [a, b] = await Promise.all([createKeyAndCsr(), createKeyAndCsr()]);
    expect(a.privateKeyPem).not.toBe(b.privateKeyPem);
  });
});

describe('renewalTime', () => {
  it('is at 2/3 of the remaining lifetime, and never before now', () => {
    expect(renewalTime(0, 600_000)).toBe(400_000);
    expect(renewalTime(1000, 1000)).toBe(1000);
    expect(renewalTime(5000, 1000)).toBe(5000);
  });
});
