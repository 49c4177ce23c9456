// Writes testdata/vectors.json: fixed inputs and the exact envelope bytes they produce. Run only when the format
// changes on purpose (which needs a new format version): `node core/envelope/testdata/generate-vectors.ts`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encryptBytes } from '../bytes.ts';
import { deriveKeys, type EnvelopeContext } from '../format.ts';

const seq = (start: number, length: number) =>
  Buffer.from(Array.from({ length }, (_, i) => (start + i) & 0xff));
const pattern = (length: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff));

const dek = seq(0x00, 32);
const salt = seq(0x20, 32);
const noncePrefix = seq(0x40, 7);
const context: EnvelopeContext = {
  artifactUid: '6f1c2a9e-3b4d-4c5e-8f70-9a1b2c3d4e5f',
  artifactName: 'resnet50',
  version: 'v3',
  path: 'weights/model.safetensors',
};
const keyId = '6f1c2a9e-3b4d-4c5e-8f70-9a1b2c3d4e5f/v3';
const segmentLog2 = 12;
const keys = deriveKeys(dek, salt, context);

const vectors = {
  description: 'Strongroom envelope format v1 test vectors (docs/format.md). All byte strings are hex.',
  dek: dek.toString('hex'),
  salt: salt.toString('hex'),
  noncePrefix: noncePrefix.toString('hex'),
  context,
  keyId,
  segmentLog2,
  derived: {
    segmentKey: keys.segmentKey.toString('hex'),
    headerKey: keys.headerKey.toString('hex'),
    commitKey: keys.commitKey.toString('hex'),
  },
  cases: [0, 1, 4095, 4096, 4097, 10000].map((length) => {
    const plaintext = pattern(length);
    return {
      name: `${length} bytes`,
      plaintext: plaintext.toString('hex'),
      envelope: encryptBytes(plaintext, {
        dek,
        keyId,
        context,
        segmentLog2,
        randomness: { salt, noncePrefix },
      }).toString('hex'),
    };
  }),
};
writeFileSync(join(import.meta.dirname, 'vectors.json'), `${JSON.stringify(vectors, null, 2)}\n`);
