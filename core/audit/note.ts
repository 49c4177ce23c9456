/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys (signature type 0x01).
 *
 *   text (ending in "\n")  "\n"  one or more lines "— <key name> <base64(key ID ‖ signature)>\n"
 *
 * key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4]. Verifier keys are written
 * `<name>+<key ID hex>+<base64(0x01 ‖ public key)>` and signer keys `PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 ‖ seed)>`,
 * the golang.org/x/mod/sumdb/note encodings, so the keys and notes interoperate with Go tooling and witnesses.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';

const ED25519 = 0x01;
const MAX_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 ';
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export type NoteErrorKind =
  /** The note or key is not well formed. */
  | 'malformed'
  /** No signature by a known key: nothing in the note can be trusted. */
  | 'unverified'
  /** A signature by a known key (name and key ID match) does not verify: the text or signature was altered. */
  | 'bad-signature';

export class NoteError extends Error {
  override readonly name = 'NoteError';
  readonly kind: NoteErrorKind;
  constructor(kind: NoteErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  /** The verifier key string, `<name>+<hex>+<base64>`. */
  readonly key: string;
  verify(text: Uint8Array, signature: Uint8Array): boolean;
}

export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  /** The matching verifier. */
  readonly verifier: NoteVerifier;
  sign(text: Uint8Array): Buffer;
}

/**
 * A signer whose private key is elsewhere (a PKCS#11 token, Cloud KMS: core/kms/signing.ts), so signing takes a
 * round trip. Ed25519 is deterministic: the same key signs the same text to the same bytes wherever it is held.
 */
export interface AsyncNoteSigner {
  readonly name: string;
  readonly keyId: number;
  /** The matching verifier, built from the public key the key's holder reports. */
  readonly verifier: NoteVerifier;
  /** The 64-byte Ed25519 signature of `text`. */
  sign(text: Uint8Array): Promise<Uint8Array>;
}

/** Either kind of signer; {@link signNoteAsync} takes both. */
export type AnyNoteSigner = NoteSigner | AsyncNoteSigner;

export interface NoteSignature {
  readonly name: string;
  readonly keyId: number;
  /** base64(key ID ‖ signature), as on the signature line. */
  readonly base64: string;
}

export interface OpenedNote {
  readonly text: string;
  /** Signatures by the given verifiers that verified. */
  readonly verified: readonly NoteSignature[];
  /** Signatures by keys not among the verifiers (ignored, as the spec requires). */
  readonly unknown: readonly NoteSignature[];
}

/** True when `name` is a valid key name: non-empty, no Unicode spaces, no '+'. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !hasControl(name, false) && name.isWellFormed();
}

/** True when `s` holds an ASCII control character (below U+0020, or DEL), newline excepted if allowed. */
export function hasControl(s: string, allowNewline: boolean): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && !(allowNewline && c === 0x0a)) || c === 0x7f) return true;
  }
  return false;
}

function keyIdOf(name: string, publicKey: Uint8Array): number {
  const digest = createHash('sha256')
    .update(name)
    .update(Buffer.from([0x0a, ED25519]))
    .update(publicKey)
    .digest();
  return digest.readUInt32BE(0);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function decodeBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text) || text.length % 4 !== 0) throw new NoteError('malformed', `${what} is not base64`);
  return Buffer.from(text, 'base64');
}

/** The verifier for an Ed25519 public key (32 raw bytes) under key name `name`. */
export function noteVerifierFromPublicKey(name: string, publicKey: Uint8Array): NoteVerifier {
  if (!isValidKeyName(name)) throw new NoteError('malformed', `invalid key name ${JSON.stringify(name)}`);
  if (publicKey.length !== 32) throw new NoteError('malformed', 'an Ed25519 public key is 32 bytes');
  return verifierFromPublicKey(name, Buffer.from(publicKey));
}

function verifierFromPublicKey(name: string, raw: Buffer): NoteVerifier {
  const keyId = keyIdOf(name, raw);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
  } catch (err) {
    throw new NoteError('malformed', `not an Ed25519 public key`, { cause: err });
  }
  const key = `${name}+${hex8(keyId)}+${Buffer.concat([Buffer.from([ED25519]), raw]).toString('base64')}`;
  return {
    name,
    keyId,
    key,
    verify: (text, signature) => signature.length === 64 && verify(null, text, publicKey, signature),
  };
}

/** Parses a verifier key `<name>+<hex>+<base64(0x01 ‖ public key)>`, checking the key ID. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  const trimmed = vkey.trim();
  const parts = trimmed.split('+');
  // The base64 part may itself contain '+', so re-join everything after the second separator.
  if (parts.length < 3) throw new NoteError('malformed', 'a verifier key is <name>+<hash>+<key>');
  const [name, hash] = parts as [string, string];
  const material = parts.slice(2).join('+');
  if (!isValidKeyName(name)) throw new NoteError('malformed', `invalid key name ${JSON.stringify(name)}`);
  if (!/^[0-9a-f]{8}$/.test(hash))
    throw new NoteError('malformed', 'the key hash must be 8 lowercase hex digits');
  const bytes = decodeBase64(material, 'the key');
  if (bytes.length !== 33 || bytes[0] !== ED25519) {
    throw new NoteError('malformed', 'only Ed25519 keys (type 0x01, 32 bytes) are supported');
  }
  const verifier = verifierFromPublicKey(name, bytes.subarray(1));
  if (hex8(verifier.keyId) !== hash) throw new NoteError('malformed', 'the key hash does not match the key');
  return verifier;
}

function signerFromSeed(name: string, seed: Buffer): NoteSigner {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519, seed]),
      format: 'der',
      type: 'pkcs8',
    });
  } catch (err) {
    throw new NoteError('malformed', 'not an Ed25519 private key', { cause: err });
  }
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const verifier = verifierFromPublicKey(name, spki.subarray(SPKI_ED25519.length));
  return { name, keyId: verifier.keyId, verifier, sign: (text) => sign(null, text, privateKey) };
}

/** Parses a signer key `PRIVATE+KEY+<name>+<hex>+<base64(0x01 ‖ seed)>`, checking the key ID. */
export function parseSignerKey(skey: string): NoteSigner {
  const parts = skey.trim().split('+');
  if (parts.length < 5 || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') {
    throw new NoteError('malformed', 'a signer key is PRIVATE+KEY+<name>+<hash>+<key>');
  }
  const name = parts[2] as string;
  const hash = parts[3] as string;
  if (!isValidKeyName(name)) throw new NoteError('malformed', `invalid key name ${JSON.stringify(name)}`);
  const bytes = decodeBase64(parts.slice(4).join('+'), 'the key');
  if (bytes.length !== 33 || bytes[0] !== ED25519) {
    throw new NoteError('malformed', 'only Ed25519 keys (type 0x01, 32-byte seed) are supported');
  }
  const signer = signerFromSeed(name, bytes.subarray(1));
  if (hex8(signer.keyId) !== hash) throw new NoteError('malformed', 'the key hash does not match the key');
  return signer;
}

/** A fresh Ed25519 key pair for `name`, as signer and verifier key strings. */
export function generateNoteKey(name: string): { signerKey: string; verifierKey: string } {
  if (!isValidKeyName(name)) throw new NoteError('malformed', `invalid key name ${JSON.stringify(name)}`);
  const { privateKey } = generateKeyPairSync('ed25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = pkcs8.subarray(PKCS8_ED25519.length);
  const signer = signerFromSeed(name, seed);
  const signerKey = `PRIVATE+KEY+${name}+${hex8(signer.keyId)}+${Buffer.concat([Buffer.from([ED25519]), seed]).toString('base64')}`;
  return { signerKey, verifierKey: signer.verifier.key };
}

function checkText(text: string): void {
  if (!text.isWellFormed()) throw new NoteError('malformed', 'the note is not valid UTF-8');
  if (hasControl(text, true)) {
    throw new NoteError('malformed', 'the note contains an ASCII control character other than newline');
  }
}

/** Signs `text` (which must end in a newline) with each signer, returning the whole note. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  checkText(text);
  if (!text.endsWith('\n')) throw new NoteError('malformed', 'the note text must end in a newline');
  if (signers.length === 0) throw new NoteError('malformed', 'a note needs at least one signature');
  const bytes = Buffer.from(text, 'utf8');
  let out = `${text}\n`;
  for (const signer of signers) {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(signer.keyId);
    out += `${SIG_PREFIX}${signer.name} ${Buffer.concat([id, signer.sign(bytes)]).toString('base64')}\n`;
  }
  return out;
}

/**
 * Signs `text` like {@link signNote}, with signers that may sign asynchronously (one after the other, in order).
 * Every signature is checked against its signer's verifier before the note is returned: a key holder that answers
 * with a wrong or foreign signature fails the note ('bad-signature') instead of producing one nobody can verify.
 */
export async function signNoteAsync(text: string, signers: readonly AnyNoteSigner[]): Promise<string> {
  checkText(text);
  if (!text.endsWith('\n')) throw new NoteError('malformed', 'the note text must end in a newline');
  if (signers.length === 0) throw new NoteError('malformed', 'a note needs at least one signature');
  const bytes = Buffer.from(text, 'utf8');
  let out = `${text}\n`;
  for (const signer of signers) {
    const signature = Buffer.from(await signer.sign(bytes));
    if (!signer.verifier.verify(bytes, signature)) {
      throw new NoteError(
        'bad-signature',
        `the signature by ${keyLabel(signer)} does not verify with its own verifier key`,
      );
    }
    const id = Buffer.alloc(4);
    id.writeUInt32BE(signer.keyId);
    out += `${SIG_PREFIX}${signer.name} ${Buffer.concat([id, signature]).toString('base64')}\n`;
  }
  return out;
}

/**
 * Parses a signed note and checks its signatures against `verifiers` as the spec requires: signatures by
 * unknown keys are ignored; a known key whose signature fails rejects the note ('bad-signature'); without a
 * verifying known signature the note is rejected ('unverified').
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  checkText(note);
  if (!note.endsWith('\n')) throw new NoteError('malformed', 'a signed note ends in a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('malformed', 'no blank line separates the text from the signatures');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES)
    throw new NoteError('malformed', `more than ${MAX_SIGNATURES} signatures`);
  const bytes = Buffer.from(text, 'utf8');
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX))
      throw new NoteError('malformed', `not a signature line: ${JSON.stringify(line)}`);
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = rest.slice(0, space);
    const b64 = rest.slice(space + 1);
    if (space <= 0 || !isValidKeyName(name))
      throw new NoteError('malformed', `bad key name in ${JSON.stringify(line)}`);
    const raw = decodeBase64(b64, 'a signature');
    if (raw.length < 5) throw new NoteError('malformed', 'a signature is too short');
    const keyId = raw.readUInt32BE(0);
    const signature: NoteSignature = { name, keyId, base64: b64 };
    const verifier = verifiers.find((v) => v.name === name && v.keyId === keyId);
    if (verifier === undefined) {
      unknown.push(signature);
      continue;
    }
    if (!verifier.verify(bytes, raw.subarray(4))) {
      throw new NoteError('bad-signature', `the signature by ${name}+${hex8(keyId)} does not verify`);
    }
    verified.push(signature);
  }
  if (verified.length === 0) {
    const seen = unknown.map((s) => `${s.name}+${hex8(s.keyId)}`).join(', ');
    throw new NoteError('unverified', `no signature by a trusted key (signed by: ${seen || 'nobody'})`);
  }
  return { text, verified, unknown };
}

/** The `name+hex` identity of a signature or key, as printed in diagnoses. */
export function keyLabel(k: { name: string; keyId: number }): string {
  return `${k.name}+${hex8(k.keyId)}`;
}
