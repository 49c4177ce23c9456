import { createPrivateKey, createPublicKey, sign as edSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  formatCheckpoint,
  openCheckpoint,
  originFor,
  parseCheckpoint,
  signCheckpoint,
  signCheckpointAsync,
} from './checkpoint.ts';
import { EMPTY_ROOT } from './merkle.ts';
import {
  generateNoteKey,
  NoteError,
  noteVerifierFromPublicKey,
  openNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  signNoteAsync,
  type AsyncNoteSigner,
  type NoteErrorKind,
} from './note.ts';

// The golang.org/x/mod/sumdb/note example keys and note: an independent implementation to interoperate with.
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

function kindOf(fn: () => unknown): NoteErrorKind | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof NoteError) return err.kind;
    throw err;
  }
  return undefined;
}

describe('signed notes (c2sp.org/signed-note)', () => {
  it('reproduces and verifies the Go sumdb/note example byte for byte', () => {
    const signer = parseSignerKey(GO_SKEY);
    expect(signer.verifier.key).toBe(GO_VKEY);
    expect(signNote(GO_TEXT, [signer])).toBe(GO_NOTE);
    const opened = openNote(GO_NOTE, [parseVerifierKey(GO_VKEY)]);
    expect(opened.text).toBe(GO_TEXT);
    expect(opened.verified.map((s) => s.name)).toEqual(['PeterNeumann']);
  });

  it('rejects an altered text or signature by a known key as bad-signature', () => {
    const v = [parseVerifierKey(GO_VKEY)];
    expect(kindOf(() => openNote(GO_NOTE.replace('cryptography', 'cryptographY'), v))).toBe('bad-signature');
    expect(kindOf(() => openNote(GO_NOTE.replace('x08go/ZJ', 'x08go/ZK'), v))).toBe('bad-signature');
  });

  it('ignores signatures by unknown keys, and rejects a note with no known signature as unverified', () => {
    const other = generateNoteKey('PeterNeumann'); // same name, different key and key ID
    const otherSigner = parseSignerKey(other.signerKey);
    const twice = signNote(GO_TEXT, [parseSignerKey(GO_SKEY), otherSigner]);
    const opened = openNote(twice, [parseVerifierKey(GO_VKEY)]);
    expect(opened.verified).toHaveLength(1);
    expect(opened.unknown).toHaveLength(1);
    expect(kindOf(() => openNote(signNote(GO_TEXT, [otherSigner]), [parseVerifierKey(GO_VKEY)]))).toBe(
      'unverified',
    );
    expect(kindOf(() => openNote(GO_NOTE, []))).toBe('unverified');
  });

  it('rejects malformed notes', () => {
    const v = [parseVerifierKey(GO_VKEY)];
    const cases = [
      GO_NOTE.slice(0, -1), // no final newline
      GO_NOTE.replace('\n\n', '\n'), // no blank line before signatures
      GO_NOTE.replace('— ', '-- '), // not an em dash
      GO_NOTE.replace('x08go', 'x08g!'), // not base64
      GO_NOTE.replace('PeterNeumann x08', 'Peter+Neumann x08'), // '+' in a key name
      GO_NOTE.replace('If you', 'If\tyou'), // control character
      GO_NOTE.replace('If you', 'If\ryou'),
      `${GO_TEXT}\n— PeterNeumann AAAA\n`, // shorter than a key ID
      `${GO_TEXT}\n`, // no signature lines at all
    ];
    for (const note of cases)
      expect(
        kindOf(() => openNote(note, v)),
        JSON.stringify(note),
      ).toBe('malformed');
    expect(kindOf(() => signNote('no newline', [parseSignerKey(GO_SKEY)]))).toBe('malformed');
  });

  it('checks verifier and signer key strings, including the key ID', () => {
    expect(kindOf(() => parseVerifierKey(GO_VKEY.replace('c74f20a3', 'c74f20a4')))).toBe('malformed');
    expect(kindOf(() => parseVerifierKey(GO_VKEY.replace('+ARpc', '+AhRpc')))).toBe('malformed');
    expect(kindOf(() => parseVerifierKey('PeterNeumann+c74f20a3'))).toBe('malformed');
    expect(kindOf(() => parseVerifierKey(`+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`))).toBe(
      'malformed',
    );
    expect(kindOf(() => parseSignerKey(GO_SKEY.replace('c74f20a3', '00000000')))).toBe('malformed');
    expect(kindOf(() => parseSignerKey(GO_VKEY))).toBe('malformed');
    // Base64 key material may itself contain '+'.
    const { signerKey, verifierKey } = generateNoteKey('a.example/b');
    expect(parseVerifierKey(verifierKey).key).toBe(verifierKey);
    expect(parseSignerKey(signerKey).verifier.key).toBe(verifierKey);
    expect(kindOf(() => generateNoteKey('has space'))).toBe('malformed');
  });
});

describe('checkpoints (c2sp.org/tlog-checkpoint)', () => {
  const root = Buffer.alloc(32, 7);
  const body = `example.com/log\n42\n${root.toString('base64')}\n`;

  it('formats and parses the body, with optional extension lines', () => {
    expect(formatCheckpoint({ origin: 'example.com/log', size: 42, rootHash: root, extensions: [] })).toBe(
      body,
    );
    expect(parseCheckpoint(body)).toEqual({
      origin: 'example.com/log',
      size: 42,
      rootHash: root,
      extensions: [],
    });
    expect(parseCheckpoint(`${body}ext line\n`).extensions).toEqual(['ext line']);
    expect(parseCheckpoint(`o\n0\n${EMPTY_ROOT.toString('base64')}\n`).size).toBe(0);
  });

  it('rejects malformed bodies', () => {
    const bad = [
      body.slice(0, -1),
      body.replace('42', '042'),
      body.replace('42', '-1'),
      body.replace('42', '4 2'),
      body.replace('42', '9007199254740993'),
      `example.com/log\n42\n${Buffer.alloc(31).toString('base64')}\n`,
      body.replace(/=\n$/, '\n'), // non-canonical base64
      `${body}\n`, // empty extension line
      `\n42\n${root.toString('base64')}\n`,
      'example.com/log\n42\n',
    ];
    for (const b of bad)
      expect(
        kindOf(() => parseCheckpoint(b)),
        JSON.stringify(b),
      ).toBe('malformed');
  });

  it('signs and opens a checkpoint, binding origin, size and root', () => {
    const { signerKey, verifierKey } = generateNoteKey(originFor('prod-eu', 'replica-1'));
    const signer = parseSignerKey(signerKey);
    const note = signCheckpoint({ origin: signer.name, size: 3, rootHash: root, extensions: [] }, signer);
    const cp = openCheckpoint(note, [parseVerifierKey(verifierKey)]);
    expect(cp.origin).toBe('strongroom.audit/prod-eu/replica-1');
    expect(cp.size).toBe(3);
    expect(
      kindOf(() => openCheckpoint(note.replace('\n3\n', '\n4\n'), [parseVerifierKey(verifierKey)])),
    ).toBe('bad-signature');
  });

  it('origins name the cluster and the writer, and refuse odd names', () => {
    expect(originFor('c1', 'operator-0')).toBe('strongroom.audit/c1/operator-0');
    expect(kindOf(() => originFor('C1', 'w'))).toBe('malformed');
    expect(kindOf(() => originFor('c1', 'a/b'))).toBe('malformed');
  });
});

/** The Go example key as a key held elsewhere: only its raw Ed25519 seed, signing with node crypto on request. */
function heldElsewhere(skey: string, name: string): { signer: AsyncNoteSigner; calls: Uint8Array[] } {
  const seed = Buffer.from(skey.split('+').slice(4).join('+'), 'base64').subarray(1);
  const privateKey = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const raw = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(12);
  const verifier = noteVerifierFromPublicKey(name, raw);
  const calls: Uint8Array[] = [];
  return {
    calls,
    signer: {
      name,
      keyId: verifier.keyId,
      verifier,
      sign: async (text) => {
        calls.push(text);
        await new Promise((resolve) => setImmediate(resolve));
        return edSign(null, text, privateKey);
      },
    },
  };
}

describe('asynchronous signers (keys held in a KMS)', () => {
  it('the verifier built from a raw public key is the one the verifier key string encodes', () => {
    const { signer } = heldElsewhere(GO_SKEY, 'PeterNeumann');
    expect(signer.verifier.key).toBe(GO_VKEY);
    expect(signer.keyId).toBe(parseVerifierKey(GO_VKEY).keyId);
    expect(kindOf(() => noteVerifierFromPublicKey('PeterNeumann', Buffer.alloc(31)))).toBe('malformed');
    expect(kindOf(() => noteVerifierFromPublicKey('Peter Neumann', Buffer.alloc(32)))).toBe('malformed');
  });

  it('signs byte for byte what the same key signs in software (Ed25519 is deterministic)', async () => {
    const { signer, calls } = heldElsewhere(GO_SKEY, 'PeterNeumann');
    await expect(signNoteAsync(GO_TEXT, [signer])).resolves.toBe(GO_NOTE);
    expect(Buffer.from(calls[0] ?? []).toString('utf8')).toBe(GO_TEXT);
    // A software signer goes through the same path, and both kinds mix in one note.
    await expect(signNoteAsync(GO_TEXT, [parseSignerKey(GO_SKEY)])).resolves.toBe(GO_NOTE);
    const other = parseSignerKey(generateNoteKey('Other').signerKey);
    const both = await signNoteAsync(GO_TEXT, [signer, other]);
    expect(both).toBe(signNote(GO_TEXT, [parseSignerKey(GO_SKEY), other]));
    const cp = { origin: 'example.com/log', size: 7, rootHash: EMPTY_ROOT, extensions: [] };
    const held = heldElsewhere(GO_SKEY, 'example.com/log').signer;
    const software = parseSignerKey(
      GO_SKEY.replace('PeterNeumann+c74f20a3', `example.com/log+${held.keyId.toString(16).padStart(8, '0')}`),
    );
    await expect(signCheckpointAsync(cp, held)).resolves.toBe(signCheckpoint(cp, software));
    expect(openCheckpoint(await signCheckpointAsync(cp, held), [held.verifier]).size).toBe(7);
  });

  it('refuses a signature its own verifier rejects, and passes a signing failure on', async () => {
    const { signer } = heldElsewhere(GO_SKEY, 'PeterNeumann');
    const foreign = heldElsewhere(generateNoteKey('PeterNeumann').signerKey, 'PeterNeumann').signer;
    const wrongKey: AsyncNoteSigner = { ...signer, sign: (text) => foreign.sign(text) };
    await expect(signNoteAsync(GO_TEXT, [wrongKey])).rejects.toMatchObject({ kind: 'bad-signature' });
    const truncated: AsyncNoteSigner = {
      ...signer,
      sign: async (text) => (await signer.sign(text)).subarray(0, 63),
    };
    await expect(signNoteAsync(GO_TEXT, [truncated])).rejects.toMatchObject({ kind: 'bad-signature' });
    const down = new Error('the token is gone');
    const failing: AsyncNoteSigner = { ...signer, sign: () => Promise.reject(down) };
    await expect(signNoteAsync(GO_TEXT, [failing])).rejects.toBe(down);
    await expect(signNoteAsync('no newline', [signer])).rejects.toMatchObject({ kind: 'malformed' });
    await expect(signNoteAsync(GO_TEXT, [])).rejects.toMatchObject({ kind: 'malformed' });
  });
});
