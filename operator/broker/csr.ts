/**
 * Verification of the PKCS#10 certificate signing requests that pods send to `Attest`. Only the CSR's public key is
 * used: its subject and requested extensions are ignored (never copied into a certificate), because the broker
 * writes every name itself from the verified token (docs/broker.md § Identity model). The self-signature must verify,
 * which proves the caller holds the private key. Keys are RSA of 2048 to 4096 bits (the operator CA signs with
 * node-forge, which certifies RSA keys only); signatures are PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512.
 */
import { createPublicKey } from 'node:crypto';
import forge from 'node-forge';

/** Why a CSR was refused (maps to gRPC INVALID_ARGUMENT). */
export type CsrErrorCode =
  /** Not exactly one PEM `CERTIFICATE REQUEST` block, or not a PKCS#10 structure. */
  | 'malformed'
  /** The key is not RSA, or is shorter than 2048 or longer than 4096 bits. */
  | 'unsupported-key'
  /** The signature algorithm is not RSA PKCS#1 v1.5 with SHA-256/384/512. */
  | 'unsupported-signature'
  /** The self-signature does not verify under the CSR's own key. */
  | 'bad-signature';

/** A refused CSR. The message never contains the CSR itself. */
export class CsrError extends Error {
  override readonly name = 'CsrError';
  readonly code: CsrErrorCode;
  constructor(code: CsrErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** A CSR whose self-signature verified. */
export interface VerifiedCsr {
  /** The requested public key, SPKI PEM. */
  readonly publicKeyPem: string;
  readonly keyBits: number;
}

/** The largest CSR PEM accepted (a 4096-bit CSR with a few extensions is about 2 KiB). */
export const MAX_CSR_PEM_BYTES = 16 * 1024;
const MIN_BITS = 2048;
const MAX_BITS = 4096;
/** sha256WithRSAEncryption, sha384WithRSAEncryption, sha512WithRSAEncryption. */
const SIGNATURE_OIDS: ReadonlySet<string> = new Set([
  '1.2.840.113549.1.1.11',
  '1.2.840.113549.1.1.12',
  '1.2.840.113549.1.1.13',
]);
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/** Verifies a CSR PEM and returns its public key. Throws CsrError for anything it does not accept. */
export function verifyCsr(pem: string): VerifiedCsr {
  if (Buffer.byteLength(pem) > MAX_CSR_PEM_BYTES)
    throw new CsrError('malformed', `the CSR is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  const labels = [...pem.matchAll(BLOCK)].map((m) => m[1]);
  if (labels.length !== 1 || labels[0] !== 'CERTIFICATE REQUEST')
    throw new CsrError('malformed', 'expected exactly one PEM "CERTIFICATE REQUEST" block');

  let der: string;
  try {
    const [message] = forge.pem.decode(pem);
    if (message?.type !== 'CERTIFICATE REQUEST' || message.procType !== null) throw new Error('bad block');
    der = message.body;
  } catch (error) {
    throw new CsrError('malformed', 'the CSR is not valid PEM', { cause: error });
  }

  let root: forge.asn1.Asn1;
  try {
    root = forge.asn1.fromDer(der, true);
  } catch (error) {
    throw new CsrError('malformed', 'the CSR is not valid DER', { cause: error });
  }
  const spkiAsn1 = child(child(root, 0), 2);

  let keyBits: number;
  let publicKeyPem: string;
  try {
    const key = createPublicKey({
      key: Buffer.from(forge.asn1.toDer(spkiAsn1).getBytes(), 'binary'),
      format: 'der',
      type: 'spki',
    });
    if (key.asymmetricKeyType !== 'rsa')
      throw new CsrError(
        'unsupported-key',
        `only RSA keys are accepted, not ${String(key.asymmetricKeyType)}`,
      );
    keyBits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    publicKeyPem = key.export({ type: 'spki', format: 'pem' }).toString();
  } catch (error) {
    if (error instanceof CsrError) throw error;
    throw new CsrError('malformed', 'the CSR public key cannot be read', { cause: error });
  }
  if (keyBits < MIN_BITS || keyBits > MAX_BITS)
    throw new CsrError(
      'unsupported-key',
      `RSA keys must have ${MIN_BITS} to ${MAX_BITS} bits, not ${keyBits}`,
    );

  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromAsn1(root);
  } catch (error) {
    throw new CsrError('malformed', 'the CSR is not a PKCS#10 request', { cause: error });
  }
  const signatureOid = (csr as unknown as { signatureOid: string | null }).signatureOid;
  if (signatureOid === null || !SIGNATURE_OIDS.has(signatureOid))
    throw new CsrError(
      'unsupported-signature',
      'the CSR must be signed with RSA PKCS#1 v1.5 and SHA-256/384/512',
    );
  let valid: boolean;
  try {
    valid = csr.verify();
  } catch (error) {
    throw new CsrError('bad-signature', 'the CSR signature does not verify', { cause: error });
  }
  if (!valid) throw new CsrError('bad-signature', 'the CSR signature does not verify');
  return { publicKeyPem, keyBits };
}

function child(node: forge.asn1.Asn1, index: number): forge.asn1.Asn1 {
  const value = Array.isArray(node.value) ? node.value[index] : undefined;
  if (value === undefined || node.type !== forge.asn1.Type.SEQUENCE)
    throw new CsrError('malformed', 'the CSR is not a PKCS#10 request');
  return value;
}
