import { createPublicKey } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it, vi } from 'vitest';
import { createKeyAndCsr, generateWorkloadKeyPair, renewalTime } from './identity.ts';

/**
 * How many key pairs node:crypto was asked for (through promisify, as identity.ts calls it): real keys, counted; and
 * a failure to answer the next request with instead.
 */
const generated = vi.hoisted(() => ({ count: 0, failNext: undefined as Error | undefined }));
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  const { promisify } = await import('node:util'); // vi.mock is hoisted above the imports
  const real = promisify(actual.generateKeyPair) as (...args: unknown[]) => Promise<unknown>;
  const generateKeyPair = Object.assign(
    (...args: unknown[]): unknown => (actual.generateKeyPair as (...a: unknown[]) => unknown)(...args),
    {
      [promisify.custom]: (...args: unknown[]): Promise<unknown> => {
        generated.count++;
        const failure = generated.failNext;
        generated.failNext = undefined;
        return failure === undefined ? real(...args) : Promise.reject(failure);
      },
    },
  );
  return { ...actual, generateKeyPair };
});

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

describe('a key pair generated ahead', () => {
  it('is the key of the CSR made with it, and no other pair is generated for it', async () => {
    const before = generated.count;
    const ahead = generateWorkloadKeyPair();
    expect(generated.count - before).toBe(1);
    const first = await createKeyAndCsr(ahead);
    expect(generated.count - before).toBe(1); // the pair generated ahead, not a new one
    const { privateKey: aheadKey } = await ahead;
    expect(first.privateKey.equals(aheadKey)).toBe(true);
    const second = await createKeyAndCsr();
    expect(generated.count - before).toBe(2);
    for (const { privateKey, csrPem } of [first, second]) {
      expect(privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      const csr = forge.pki.certificationRequestFromPem(csrPem);
      expect(csr.verify()).toBe(true);
      const csrKey = createPublicKey(forge.pki.publicKeyToPem(csr.publicKey as forge.pki.rsa.PublicKey));
      expect(csrKey.equals(createPublicKey(privateKey))).toBe(true);
    }
    expect(first.privateKeyPem).not.toBe(second.privateKeyPem);
  });

  it('that failed makes the CSR made with it fail with the same error; the next one works', async () => {
    const failure = new Error('no entropy');
    generated.failNext = failure;
    const ahead = generateWorkloadKeyPair();
    ahead.catch(() => undefined);
    expect(generated.failNext).toBeUndefined(); // it was asked for, and failed
    await expect(createKeyAndCsr(ahead)).rejects.toBe(failure);
    const { privateKey } = await createKeyAndCsr();
    expect(privateKey.asymmetricKeyType).toBe('rsa');
  });
});

describe('renewalTime', () => {
  it('is at 2/3 of the remaining lifetime, and never before now', () => {
    expect(renewalTime(0, 600_000)).toBe(400_000);
    expect(renewalTime(1000, 1000)).toBe(1000);
    expect(renewalTime(5000, 1000)).toBe(5000);
  });
});
