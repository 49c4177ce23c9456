import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { CsrError, MAX_CSR_PEM_BYTES, verifyCsr, type CsrErrorCode } from './csr.ts';

const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });

/** A CSR made by forge (RSA only), signed with SHA-256, with a subject and a SAN request. */
function forgeCsr(key: { publicKey: KeyObject; privateKey: KeyObject }): forge.pki.CertificateSigningRequest {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(
    key.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  );
  csr.setSubject([{ name: 'commonName', value: 'admin' }]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: 'spiffe://x/ns/prod/sa/admin' }] }],
    },
  ]);
  csr.sign(
    forge.pki.privateKeyFromPem(key.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    forge.md.sha256.create(),
  );
  return csr;
}

/**
 * A CSR assembled by hand and signed with node (any key type forge cannot handle): PKCS#10 with an empty subject
 * and no attributes.
 */
function nodeCsr(privateKey: KeyObject, signatureOid: string, digest: string): string {
  const { asn1 } = forge;
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, '\x00'),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, []),
    asn1.fromDer(spki.toString('binary')),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, asn1.Type.NONE, true, []),
  ]);
  const tbs = Buffer.from(asn1.toDer(info).getBytes(), 'binary');
  const signature = sign(digest, tbs, privateKey);
  const csr = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    info,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(signatureOid).getBytes()),
    ]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\x00${signature.toString('binary')}`),
  ]);
  const body = Buffer.from(asn1.toDer(csr).getBytes(), 'binary').toString('base64');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${body.replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** The request info of `info` with the signature algorithm and signature of `signed`. */
function reassemble(
  info: forge.pki.CertificateSigningRequest,
  signed: forge.pki.CertificateSigningRequest,
): string {
  const { asn1 } = forge;
  const signedAsn1 = asn1.fromDer(
    forge.pem.decode(forge.pki.certificationRequestToPem(signed))[0]?.body ?? '',
  ) as { value: forge.asn1.Asn1[] };
  const pki = forge.pki as unknown as {
    getCertificationRequestInfo(csr: forge.pki.CertificateSigningRequest): forge.asn1.Asn1;
  };
  const infoAsn1 = pki.getCertificationRequestInfo(info);
  const csr = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    infoAsn1,
    signedAsn1.value[1] as forge.asn1.Asn1,
    signedAsn1.value[2] as forge.asn1.Asn1,
  ]);
  return forge.pem.encode({ type: 'CERTIFICATE REQUEST', body: asn1.toDer(csr).getBytes() });
}

function refusal(pem: string): CsrErrorCode {
  try {
    verifyCsr(pem);
  } catch (error) {
    expect(error).toBeInstanceOf(CsrError);
    expect((error as Error).message).not.toContain('BEGIN');
    return (error as CsrError).code;
  }
  throw new Error('expected a CsrError');
}

describe('verifyCsr', () => {
  it('accepts an RSA 2048 CSR and returns exactly its public key', () => {
    const verified = verifyCsr(forge.pki.certificationRequestToPem(forgeCsr(rsa2048)));
    expect(verified.keyBits).toBe(2048);
    expect(verified.publicKeyPem).toBe(rsa2048.publicKey.export({ type: 'spki', format: 'pem' }));
  });

  it('accepts a hand-built RSA CSR signed with SHA-512 (the assembler used below is sound)', () => {
    const verified = verifyCsr(nodeCsr(rsa2048.privateKey, '1.2.840.113549.1.1.13', 'sha512'));
    expect(verified.keyBits).toBe(2048);
  });

  it('refuses a CSR whose subject was changed after signing', () => {
    const signed = forgeCsr(rsa2048);
    const tampered = forge.pki.createCertificationRequest();
    tampered.publicKey = signed.publicKey;
    tampered.setSubject([{ name: 'commonName', value: 'root' }]);
    expect(refusal(reassemble(tampered, signed))).toBe('bad-signature');
  });

  it('refuses a CSR whose key was swapped after signing (the caller does not hold the key)', () => {
    const signed = forgeCsr(rsa2048);
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const tampered = forge.pki.createCertificationRequest();
    tampered.publicKey = forge.pki.publicKeyFromPem(
      other.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    );
    tampered.setSubject([{ name: 'commonName', value: 'admin' }]);
    expect(refusal(reassemble(tampered, signed))).toBe('bad-signature');
    // Control: the same reassembly of the untouched request verifies.
    expect(verifyCsr(reassemble(signed, signed)).keyBits).toBe(2048);
  });

  it('refuses a CSR with one flipped signature bit', () => {
    const pem = forge.pki.certificationRequestToPem(forgeCsr(rsa2048));
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 1;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(refusal(tampered)).toBe('bad-signature');
  });

  it('refuses EC and Ed25519 keys, even with a valid signature', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(refusal(nodeCsr(ec.privateKey, '1.2.840.10045.4.3.2', 'sha256'))).toBe('unsupported-key');
    const ed = generateKeyPairSync('ed25519');
    expect(refusal(nodeCsr(ed.privateKey, '1.3.101.112', null as unknown as string))).toBe('unsupported-key');
  });

  it('refuses RSA keys shorter than 2048 bits', () => {
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(refusal(nodeCsr(short.privateKey, '1.2.840.113549.1.1.11', 'sha256'))).toBe('unsupported-key');
  });

  it('refuses SHA-1 signatures', () => {
    expect(refusal(nodeCsr(rsa2048.privateKey, '1.2.840.113549.1.1.5', 'sha1'))).toBe(
      'unsupported-signature',
    );
  });

  it('refuses a signature algorithm that does not match how it was signed', () => {
    expect(refusal(nodeCsr(rsa2048.privateKey, '1.2.840.113549.1.1.11', 'sha512'))).toBe('bad-signature');
  });

  it.each([
    ['empty input', ''],
    ['garbage', 'not a csr'],
    ['a certificate block', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
    ['bad base64 body', '-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n'],
    [
      'a DER that is not a CSR',
      '-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n',
    ],
  ])('refuses %s as malformed', (_what, pem) => {
    expect(refusal(pem)).toBe('malformed');
  });

  it('refuses two CSR blocks and oversized input', () => {
    const pem = forge.pki.certificationRequestToPem(forgeCsr(rsa2048));
    expect(refusal(pem + pem)).toBe('malformed');
    expect(refusal(pem + ' '.repeat(MAX_CSR_PEM_BYTES))).toBe('malformed');
  });

  it('refuses trailing bytes after the CSR structure', () => {
    const pem = forge.pki.certificationRequestToPem(forgeCsr(rsa2048));
    const der = Buffer.concat([
      Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64'),
      Buffer.from([0]),
    ]);
    const padded = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(refusal(padded)).toBe('malformed');
  });
});
