import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decryptBytes, encryptBytes } from './bytes.ts';
import { EnvelopeError } from './errors.ts';
import { deriveKeys, type EnvelopeContext } from './format.ts';

interface Vectors {
  dek: string;
  salt: string;
  noncePrefix: string;
  context: EnvelopeContext;
  keyId: string;
  segmentLog2: number;
  derived: { segmentKey: string; headerKey: string; commitKey: string };
  cases: { name: string; plaintext: string; envelope: string }[];
}

const v = JSON.parse(readFileSync(join(import.meta.dirname, 'testdata', 'vectors.json'), 'utf8')) as Vectors;
const hex = (s: string) => Buffer.from(s, 'hex');

describe('format v1 test vectors (testdata/vectors.json)', () => {
  it('derives the committed subkeys', () => {
    const keys = deriveKeys(hex(v.dek), hex(v.salt), v.context);
    expect(keys.segmentKey.toString('hex')).toBe(v.derived.segmentKey);
    expect(keys.headerKey.toString('hex')).toBe(v.derived.headerKey);
    expect(keys.commitKey.toString('hex')).toBe(v.derived.commitKey);
  });

  it('covers empty, one-byte, segment-1, segment, segment+1 and multi-segment plaintexts', () => {
    expect(v.cases.map((c) => c.plaintext.length / 2)).toEqual([0, 1, 4095, 4096, 4097, 10000]);
  });

  it.each(v.cases)('$name: encrypts to exactly the committed bytes and decrypts back', (c) => {
    const envelope = encryptBytes(hex(c.plaintext), {
      dek: hex(v.dek),
      keyId: v.keyId,
      context: v.context,
      segmentLog2: v.segmentLog2,
      randomness: { salt: hex(v.salt), noncePrefix: hex(v.noncePrefix) },
    });
    expect(envelope.toString('hex')).toBe(c.envelope);
    const opened = decryptBytes(hex(c.envelope), { dek: hex(v.dek), context: v.context });
    expect(opened.plaintext.toString('hex')).toBe(c.plaintext);
    expect(opened.keyId).toBe(v.keyId);
  });

  it.each(v.cases)('$name: refuses the committed envelope under another path', (c) => {
    expect(() =>
      decryptBytes(hex(c.envelope), { dek: hex(v.dek), context: { ...v.context, path: 'x' } }),
    ).toThrow(EnvelopeError);
  });
});
