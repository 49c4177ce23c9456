/** A throwaway self-signed certificate for the sidecar's unit tests (a CA unless `ca: false`). */
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';

const cache = new Map<boolean, string>();

export function testCa(options: { ca?: boolean } = {}): string {
  const ca = options.ca ?? true;
  const cached = cache.get(ca);
  if (cached !== undefined) return cached;
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3600_000);
  const subject = [{ name: 'commonName', value: ca ? 'Test CA' : 'Test leaf' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([{ name: 'basicConstraints', cA: ca, critical: true }]);
  cert.sign(
    forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
    forge.md.sha256.create(),
  );
  const pem = forge.pki.certificateToPem(cert);
  cache.set(ca, pem);
  return pem;
}
