/** The same envelope format for small in-memory payloads (directory manifests, test vectors): no files, no pool. */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { EnvelopeError } from './errors.ts';
import {
  DEFAULT_SEGMENT_LOG2,
  NONCE_PREFIX_LENGTH,
  SALT_LENGTH,
  TAG_LENGTH,
  authenticateHeader,
  ciphertextLength,
  deriveKeys,
  encodeHeader,
  parseHeader,
  segmentCount,
  segmentNonce,
  zeroKeys,
  type EnvelopeContext,
  type Header,
} from './format.ts';

/** In-memory payloads are for small things; big data goes through encryptFile with bounded memory. */
export const MAX_IN_MEMORY = 64 * 1024 * 1024;

export interface BytesOptions {
  readonly dek: Uint8Array;
  readonly keyId: string;
  readonly context: EnvelopeContext;
  readonly segmentLog2?: number;
  /** Fixed salt and nonce prefix, for test vectors only. */
  readonly randomness?: { readonly salt: Buffer; readonly noncePrefix: Buffer };
}

export function encryptBytes(plaintext: Uint8Array, options: BytesOptions): Buffer {
  if (plaintext.length > MAX_IN_MEMORY)
    throw new EnvelopeError('invalid', `in-memory payloads are limited to ${MAX_IN_MEMORY} bytes`);
  const header: Header = {
    segmentLog2: options.segmentLog2 ?? DEFAULT_SEGMENT_LOG2,
    plaintextLength: plaintext.length,
    salt: options.randomness?.salt ?? randomBytes(SALT_LENGTH),
    noncePrefix: options.randomness?.noncePrefix ?? randomBytes(NONCE_PREFIX_LENGTH),
    keyId: options.keyId,
  };
  const keys = deriveKeys(options.dek, header.salt, options.context);
  try {
    const parts = [encodeHeader(header, keys)];
    const size = 2 ** header.segmentLog2;
    const n = segmentCount(plaintext.length, header.segmentLog2);
    for (let i = 0; i < n; i++) {
      const cipher = createCipheriv(
        'aes-256-gcm',
        keys.segmentKey,
        segmentNonce(header.noncePrefix, i, i === n - 1),
        {
          authTagLength: TAG_LENGTH,
        },
      );
      parts.push(
        cipher.update(plaintext.subarray(i * size, (i + 1) * size)),
        cipher.final(),
        cipher.getAuthTag(),
      );
    }
    return Buffer.concat(parts);
  } finally {
    zeroKeys(keys);
  }
}

export function decryptBytes(
  ciphertext: Buffer,
  options: Pick<BytesOptions, 'dek' | 'context'>,
): { plaintext: Buffer; keyId: string } {
  const header = parseHeader(ciphertext);
  const keys = deriveKeys(options.dek, header.salt, options.context);
  try {
    authenticateHeader(header, keys);
    const expected = ciphertextLength(header);
    if (ciphertext.length < expected)
      throw new EnvelopeError('truncated', `${expected - ciphertext.length} bytes are missing`);
    if (ciphertext.length > expected)
      throw new EnvelopeError('extended', `${ciphertext.length - expected} bytes too many`);
    if (header.plaintextLength > MAX_IN_MEMORY)
      throw new EnvelopeError('invalid', 'payload too large to decrypt in memory');
    const size = 2 ** header.segmentLog2;
    const n = segmentCount(header.plaintextLength, header.segmentLog2);
    const out: Buffer[] = [];
    let at = header.length;
    for (let i = 0; i < n; i++) {
      const len = i === n - 1 ? header.plaintextLength - (n - 1) * size : size;
      const decipher = createDecipheriv(
        'aes-256-gcm',
        keys.segmentKey,
        segmentNonce(header.noncePrefix, i, i === n - 1),
        {
          authTagLength: TAG_LENGTH,
        },
      );
      decipher.setAuthTag(ciphertext.subarray(at + len, at + len + TAG_LENGTH));
      const plain = decipher.update(ciphertext.subarray(at, at + len));
      try {
        decipher.final();
      } catch (cause) {
        plain.fill(0);
        for (const b of out) b.fill(0);
        throw new EnvelopeError('segment', `segment ${i} failed authentication`, { cause, segment: i });
      }
      out.push(plain);
      at += len + TAG_LENGTH;
    }
    return { plaintext: Buffer.concat(out), keyId: header.keyId };
  } finally {
    zeroKeys(keys);
  }
}
