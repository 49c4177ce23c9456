/**
 * The Strongroom envelope format v1 (docs/format.md): a Tink / STREAM style segmented AEAD.
 * Pure functions over bytes: header encoding and parsing, key derivation, nonces and layout.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { EnvelopeError } from './errors.ts';

export const MAGIC = Buffer.from('SRENVLP\x00', 'latin1');
export const FORMAT_VERSION = 1;
export const ALG_AES_256_GCM = 1;
export const DEFAULT_SEGMENT_LOG2 = 20;
export const MIN_SEGMENT_LOG2 = 12;
export const MAX_SEGMENT_LOG2 = 24;
export const TAG_LENGTH = 16;
export const SALT_LENGTH = 32;
export const NONCE_PREFIX_LENGTH = 7;
export const DEK_LENGTH = 32;
const MAX_KEY_ID_LENGTH = 1024;
const MAC_LENGTH = 32;
const DIGEST_LENGTH = 16;
/** Bytes before the key id: magic 8, version 1, alg 1, segLog2 1, flags 1, ptLength 8, salt 32, prefix 7, reserved 1, keyIdLen 2. */
const FIXED_PREFIX = 8 + 1 + 1 + 1 + 1 + 8 + SALT_LENGTH + NONCE_PREFIX_LENGTH + 1 + 2;
/** At most 2^32 segments: the counter in the nonce is 32 bits. */
const MAX_SEGMENTS = 2 ** 32;

/** What a file is sealed for. Every field is bound into the file's keys: a file moved elsewhere fails to verify. */
export interface EnvelopeContext {
  readonly artifactUid: string;
  readonly artifactName: string;
  readonly version: string;
  /** The file's path inside the artifact ("" for a single-file artifact). */
  readonly path: string;
}

export interface Header {
  readonly segmentLog2: number;
  readonly plaintextLength: number;
  readonly salt: Buffer;
  readonly noncePrefix: Buffer;
  /** Names the DEK (for example `<artifact uid>/<version>`); the wrapped DEK itself lives in artifact metadata. */
  readonly keyId: string;
}

export interface DerivedKeys {
  readonly segmentKey: Buffer;
  readonly headerKey: Buffer;
  readonly commitKey: Buffer;
}

/** Overwrites the derived keys with zeros once the caller is done with them. */
export function zeroKeys(keys: DerivedKeys): void {
  keys.segmentKey.fill(0);
  keys.headerKey.fill(0);
  keys.commitKey.fill(0);
}

/** Length-prefixed (u32 BE) UTF-8 fields: unambiguous, unlike concatenation. */
function encodeFields(fields: readonly string[]): Buffer {
  return Buffer.concat(
    fields.flatMap((f) => {
      const bytes = Buffer.from(f, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes.length);
      return [len, bytes];
    }),
  );
}

export function encodeContext(context: EnvelopeContext): Buffer {
  return encodeFields([
    'strongroom/envelope/v1',
    context.artifactUid,
    context.artifactName,
    context.version,
    context.path,
  ]);
}

/**
 * K_commit depends on the DEK and salt only; K_seg and K_hdr also on the context. So a header that verifies under
 * K_commit but not K_hdr tells "right key, wrong context" apart from "wrong key".
 */
export function deriveKeys(dek: Uint8Array, salt: Uint8Array, context: EnvelopeContext): DerivedKeys {
  if (dek.length !== DEK_LENGTH)
    throw new EnvelopeError('invalid', `a DEK is ${DEK_LENGTH} bytes, got ${dek.length}`);
  const commitKey = Buffer.from(
    hkdfSync('sha256', dek, salt, encodeFields(['strongroom/envelope/v1/commit']), 32),
  );
  const okm = Buffer.from(hkdfSync('sha256', dek, salt, encodeContext(context), 64));
  return { segmentKey: okm.subarray(0, 32), headerKey: okm.subarray(32, 64), commitKey };
}

export function segmentSize(header: Pick<Header, 'segmentLog2'>): number {
  return 2 ** header.segmentLog2;
}

/** Number of segments: at least one (an empty file has one empty final segment). */
export function segmentCount(plaintextLength: number, segmentLog2: number): number {
  return Math.max(1, Math.ceil(plaintextLength / 2 ** segmentLog2));
}

export function headerLength(keyId: string): number {
  return FIXED_PREFIX + Buffer.byteLength(keyId, 'utf8') + 2 * MAC_LENGTH + DIGEST_LENGTH;
}

export function ciphertextLength(header: Header): number {
  return (
    headerLength(header.keyId) +
    header.plaintextLength +
    TAG_LENGTH * segmentCount(header.plaintextLength, header.segmentLog2)
  );
}

/** nonce_i = prefix(7) ‖ BE32(i) ‖ last(1) */
export function segmentNonce(
  noncePrefix: Uint8Array,
  index: number,
  last: boolean,
  out = Buffer.alloc(12),
): Buffer {
  out.set(noncePrefix, 0);
  out.writeUInt32BE(index, NONCE_PREFIX_LENGTH);
  out[11] = last ? 1 : 0;
  return out;
}

function fieldsBytes(header: Header): Buffer {
  const keyId = Buffer.from(header.keyId, 'utf8');
  const b = Buffer.alloc(FIXED_PREFIX + keyId.length);
  let o = MAGIC.copy(b, 0);
  b[o++] = FORMAT_VERSION;
  b[o++] = ALG_AES_256_GCM;
  b[o++] = header.segmentLog2;
  b[o++] = 0; // flags
  b.writeBigUInt64BE(BigInt(header.plaintextLength), o);
  o += 8;
  o += header.salt.copy(b, o);
  o += header.noncePrefix.copy(b, o);
  b[o++] = 0; // reserved
  b.writeUInt16BE(keyId.length, o);
  o += 2;
  keyId.copy(b, o);
  return b;
}

function hmac(key: Buffer, ...parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

function validate(header: Header): void {
  if (
    !Number.isInteger(header.segmentLog2) ||
    header.segmentLog2 < MIN_SEGMENT_LOG2 ||
    header.segmentLog2 > MAX_SEGMENT_LOG2
  ) {
    throw new EnvelopeError(
      'invalid',
      `segment size 2^${header.segmentLog2} is outside 2^${MIN_SEGMENT_LOG2}..2^${MAX_SEGMENT_LOG2}`,
    );
  }
  if (!Number.isSafeInteger(header.plaintextLength) || header.plaintextLength < 0) {
    throw new EnvelopeError(
      'invalid',
      `plaintext length ${header.plaintextLength} is not a non-negative safe integer`,
    );
  }
  if (segmentCount(header.plaintextLength, header.segmentLog2) > MAX_SEGMENTS) {
    throw new EnvelopeError('invalid', 'the file needs more than 2^32 segments');
  }
  if (header.salt.length !== SALT_LENGTH || header.noncePrefix.length !== NONCE_PREFIX_LENGTH) {
    throw new EnvelopeError('invalid', 'salt must be 32 bytes and the nonce prefix 7 bytes');
  }
  const keyIdBytes = Buffer.byteLength(header.keyId, 'utf8');
  if (keyIdBytes === 0 || keyIdBytes > MAX_KEY_ID_LENGTH) {
    throw new EnvelopeError('invalid', `key id must be 1..${MAX_KEY_ID_LENGTH} bytes`);
  }
}

/** The complete header: fields ‖ key commitment ‖ header MAC ‖ digest. */
export function encodeHeader(header: Header, keys: DerivedKeys): Buffer {
  validate(header);
  const fields = fieldsBytes(header);
  const commitment = hmac(keys.commitKey, fields);
  const mac = hmac(keys.headerKey, fields, commitment);
  const digest = createHash('sha256')
    .update(fields)
    .update(commitment)
    .update(mac)
    .digest()
    .subarray(0, DIGEST_LENGTH);
  return Buffer.concat([fields, commitment, mac, digest]);
}

export interface ParsedHeader extends Header {
  readonly length: number;
  readonly fields: Buffer;
  readonly commitment: Buffer;
  readonly mac: Buffer;
}

/**
 * Parses a header from the start of `bytes` (which must hold at least the header; 64 KiB suffices). Checks
 * structure and the unkeyed digest only; authenticate() checks the keys.
 */
export function parseHeader(bytes: Buffer): ParsedHeader {
  if (bytes.length < FIXED_PREFIX)
    throw new EnvelopeError('header', `the file is too short to hold a header (${bytes.length} bytes)`);
  if (!bytes.subarray(0, 8).equals(MAGIC))
    throw new EnvelopeError('header', 'not a Strongroom envelope (bad magic)');
  if (bytes[8] !== FORMAT_VERSION)
    throw new EnvelopeError('header', `unsupported format version ${bytes[8] ?? '?'}`);
  if (bytes[9] !== ALG_AES_256_GCM)
    throw new EnvelopeError('header', `unsupported algorithm ${bytes[9] ?? '?'}`);
  const segmentLog2 = bytes[10] ?? 0;
  if (bytes[11] !== 0) throw new EnvelopeError('header', `unknown flags 0x${(bytes[11] ?? 0).toString(16)}`);
  const length64 = bytes.readBigUInt64BE(12);
  const salt = Buffer.from(bytes.subarray(20, 52));
  const noncePrefix = Buffer.from(bytes.subarray(52, 59));
  if (bytes[59] !== 0) throw new EnvelopeError('header', 'reserved byte is not zero');
  const keyIdLength = bytes.readUInt16BE(60);
  const total = FIXED_PREFIX + keyIdLength + 2 * MAC_LENGTH + DIGEST_LENGTH;
  if (keyIdLength === 0 || keyIdLength > MAX_KEY_ID_LENGTH)
    throw new EnvelopeError('header', `bad key id length ${keyIdLength}`);
  if (bytes.length < total)
    throw new EnvelopeError('header', `the file is too short to hold its ${total}-byte header`);
  const fieldsEnd = FIXED_PREFIX + keyIdLength;
  const fields = Buffer.from(bytes.subarray(0, fieldsEnd));
  const commitment = Buffer.from(bytes.subarray(fieldsEnd, fieldsEnd + MAC_LENGTH));
  const mac = Buffer.from(bytes.subarray(fieldsEnd + MAC_LENGTH, fieldsEnd + 2 * MAC_LENGTH));
  const digest = bytes.subarray(fieldsEnd + 2 * MAC_LENGTH, total);
  const expected = createHash('sha256')
    .update(fields)
    .update(commitment)
    .update(mac)
    .digest()
    .subarray(0, DIGEST_LENGTH);
  if (!timingSafeEqual(expected, digest))
    throw new EnvelopeError('header', 'the header is corrupted (its digest does not match)');
  if (segmentLog2 < MIN_SEGMENT_LOG2 || segmentLog2 > MAX_SEGMENT_LOG2)
    throw new EnvelopeError('header', `bad segment size 2^${segmentLog2}`);
  if (length64 > BigInt(Number.MAX_SAFE_INTEGER))
    throw new EnvelopeError('header', 'plaintext length too large');
  const keyId = bytes.subarray(FIXED_PREFIX, fieldsEnd).toString('utf8');
  return {
    segmentLog2,
    plaintextLength: Number(length64),
    salt,
    noncePrefix,
    keyId,
    length: total,
    fields,
    commitment,
    mac,
  };
}

/** Checks the key commitment, then the context-bound MAC, in constant time. */
export function authenticateHeader(header: ParsedHeader, keys: DerivedKeys): void {
  if (!timingSafeEqual(hmac(keys.commitKey, header.fields), header.commitment)) {
    throw new EnvelopeError(
      'wrong-key',
      `the header does not verify under this DEK (key id in file: ${header.keyId})`,
    );
  }
  if (!timingSafeEqual(hmac(keys.headerKey, header.fields, header.commitment), header.mac)) {
    throw new EnvelopeError('wrong-context', 'the file was sealed for another artifact, version or path');
  }
}
