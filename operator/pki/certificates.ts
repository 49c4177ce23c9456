import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  privateEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { isDnsName } from '../../core/api/validation.ts';
import { PkiError } from './errors.ts';

/**
 * Certificate building. Keys come from node:crypto (native, asynchronous); node-forge only encodes and signs, always
 * with SHA-256 and RSA (forge signs nothing else). Callers verify the results with node's X509Certificate.
 */

/** An RSA key pair as PEM: PKCS#8 private key, SPKI public key. */
export interface RsaKeyPem {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

/** A CA's certificate and private key as PEM; the key is what signs leaves. */
export interface SigningAuthority {
  readonly certPem: string;
  readonly privateKeyPem: string;
}

/** What a leaf certificate says. Lifetimes are decided by the caller; names are validated here. */
export interface LeafTemplate {
  /** SPKI PEM of an RSA key of at least 2048 bits. */
  readonly publicKeyPem: string;
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly uris?: readonly string[];
  readonly usages: readonly ('serverAuth' | 'clientAuth')[];
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const generateKeyPairAsync = promisify(generateKeyPair);
const MIN_RSA_BITS = 2048;
/** RFC 5280 upper bound of a commonName. */
const MAX_COMMON_NAME = 64;

/** A fresh RSA key from node's native generator (never blocks the event loop). */
export async function generateRsaKey(modulusLength: 2048 | 3072): Promise<RsaKeyPem> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/**
 * A positive serial of 126 random bits as hex. The first byte is 01xxxxxx: the sign bit is clear (DER would read a
 * set top bit as negative) and the byte is never zero (a leading zero byte would be a non-minimal DER INTEGER).
 */
export function randomSerialHex(): string {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x3f) | 0x40;
  return serial.toString('hex');
}

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2, note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');
const privateKeys = new Map<string, KeyObject>();

/**
 * A signer for forge's `cert.sign`: forge builds the TBSCertificate and hashes it, OpenSSL (node:crypto) makes the
 * RSA PKCS#1 v1.5 signature. forge's own RSA is pure JavaScript and blocks the event loop for 100 ms and more per
 * signature, which every broker call would wait behind; OpenSSL takes about 1 ms.
 */
function nativeSigner(privateKeyPem: string): forge.pki.rsa.PrivateKey {
  let key = privateKeys.get(privateKeyPem);
  if (key === undefined) {
    key = createPrivateKey(privateKeyPem);
    if (privateKeys.size >= 8) privateKeys.clear();
    privateKeys.set(privateKeyPem, key);
  }
  const privateKey = key;
  return {
    sign: (md: forge.md.MessageDigest) => {
      if (md.algorithm !== 'sha256')
        throw new PkiError('invalid', 'certificates are signed with SHA-256 only');
      const digest = Buffer.from(md.digest().getBytes(), 'binary');
      const signature = privateEncrypt(
        { key: privateKey, padding: constants.RSA_PKCS1_PADDING },
        Buffer.concat([SHA256_DIGEST_INFO, digest]),
      );
      return signature.toString('binary');
    },
  } as unknown as forge.pki.rsa.PrivateKey;
}

/** A self-signed CA certificate: CA:true with pathLen 0, keyCertSign + cRLSign, a subject key identifier. */
export function createAuthorityCertificate(
  key: RsaKeyPem,
  subject: { readonly commonName: string; readonly notBefore: Date; readonly notAfter: Date },
): string {
  checkCommonName(subject.commonName);
  checkValidity(subject.notBefore, subject.notAfter);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = subject.notBefore;
  cert.validity.notAfter = subject.notAfter;
  const name = [
    { name: 'organizationName', value: 'strongroom.dev' },
    { name: 'commonName', value: subject.commonName },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(nativeSigner(key.privateKeyPem), forge.md.sha256.create());
  return toLf(forge.pki.certificateToPem(cert));
}

/**
 * A leaf certificate for `template.publicKeyPem` signed by `issuer`: CA:false, digitalSignature + keyEncipherment,
 * the requested extended key usages, SANs, and an authority key identifier. Throws PkiError('invalid') for a non-RSA
 * or short key, bad names, no usage, or an empty validity.
 */
export function signLeafCertificate(issuer: SigningAuthority, template: LeafTemplate): string {
  const publicKey = leafPublicKey(template.publicKeyPem);
  checkCommonName(template.commonName);
  checkValidity(template.notBefore, template.notAfter);
  if (template.usages.length === 0)
    throw new PkiError('invalid', 'a leaf certificate needs at least one usage');
  const altNames = subjectAltNames(template);
  const caCert = forge.pki.certificateFromPem(issuer.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = template.notBefore;
  cert.validity.notAfter = template.notAfter;
  cert.setSubject([{ name: 'commonName', value: template.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    {
      name: 'extKeyUsage',
      serverAuth: template.usages.includes('serverAuth'),
      clientAuth: template.usages.includes('clientAuth'),
    },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  cert.sign(nativeSigner(issuer.privateKeyPem), forge.md.sha256.create());
  return toLf(forge.pki.certificateToPem(cert));
}

/** Throws PkiError('invalid') unless every DNS name is a syntactically valid (optionally wildcard) host name. */
export function checkDnsNames(names: readonly string[]): void {
  for (const name of names) {
    // Host names are case-insensitive; only ASCII letters fold (String#toLowerCase maps 'K', U+212A, to 'k').
    const host = (name.startsWith('*.') ? name.slice(2) : name).replace(/[A-Z]+/g, (c) => c.toLowerCase());
    if (name.length > 253 || isDnsName(host).length > 0)
      throw new PkiError('invalid', `invalid DNS name ${JSON.stringify(name)}`);
  }
}

/** Throws PkiError('invalid') unless every entry is an IPv4 or IPv6 address. */
export function checkIpAddresses(addresses: readonly string[]): void {
  for (const address of addresses) {
    if (isIP(address) === 0) throw new PkiError('invalid', `invalid IP address ${JSON.stringify(address)}`);
  }
}

function leafPublicKey(pem: string): forge.pki.rsa.PublicKey {
  let key;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new PkiError('invalid', 'the public key is not a PEM public key', { cause: error });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new PkiError(
      'invalid',
      `only RSA public keys can be certified, not ${String(key.asymmetricKeyType)}`,
    );
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS)
    throw new PkiError('invalid', `RSA key of ${bits} bits is shorter than ${MIN_RSA_BITS}`);
  return forge.pki.publicKeyFromPem(key.export({ type: 'spki', format: 'pem' }).toString());
}

function subjectAltNames(template: LeafTemplate): object[] {
  const dnsNames = template.dnsNames ?? [];
  const ipAddresses = template.ipAddresses ?? [];
  const uris = template.uris ?? [];
  checkDnsNames(dnsNames);
  checkIpAddresses(ipAddresses);
  for (const uri of uris) {
    if (!URL.canParse(uri) || /\s/.test(uri))
      throw new PkiError('invalid', `invalid URI ${JSON.stringify(uri)}`);
  }
  return [
    ...dnsNames.map((value) => ({ type: 2, value })),
    ...ipAddresses.map((ip) => ({ type: 7, ip })),
    ...uris.map((value) => ({ type: 6, value })),
  ];
}

function checkCommonName(commonName: string): void {
  if (commonName.length === 0 || commonName.length > MAX_COMMON_NAME) {
    throw new PkiError('invalid', `a commonName must have 1 to ${MAX_COMMON_NAME} characters`);
  }
}

function checkValidity(notBefore: Date, notAfter: Date): void {
  if (!(notAfter.getTime() > notBefore.getTime() + 1000)) {
    throw new PkiError('invalid', `empty validity ${String(notBefore)} .. ${String(notAfter)}`);
  }
}

/** forge writes PEM with CRLF line ends; everything else here (and node) uses LF. */
function toLf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}
