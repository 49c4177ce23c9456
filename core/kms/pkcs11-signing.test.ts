/**
 * The checkpoint signing key on a real SoftHSM2 token: Ed25519 generated on the token, signatures that node crypto
 * and the audit log's verifier accept, byte-identical notes to the same key in software, and a private key that
 * cannot be read, wrapped out, copied or made extractable. A separate Node process (its own C_Initialize and login)
 * looks at and changes the token behind the provider's back, as another application would.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftHsmToken, type SoftHsmToken } from '../../test/hsm/softhsm.ts';
import { openCheckpoint, signCheckpoint, signCheckpointAsync } from '../audit/checkpoint.ts';
import { AuditLog } from '../audit/log.ts';
import { EMPTY_ROOT } from '../audit/merkle.ts';
import {
  noteVerifierFromPublicKey,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  signNoteAsync,
} from '../audit/note.ts';
import { releaseEvent } from '../audit/testdata/fixtures.ts';
import { verifyLog } from '../audit/verify.ts';
import { Pkcs11KmsProvider } from './pkcs11.ts';
import { expectKmsError } from './conformance.ts';
import { CHECKPOINT_SIGNING_KEY_ID, kmsNoteSigner } from './signing.ts';

const run = promisify(execFile);
const pkcs11jsPath = createRequire(import.meta.url).resolve('pkcs11js');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const NAME = 'strongroom.audit/test-cluster';

interface Inspection {
  readonly privateKeys: number;
  readonly publicKeys: number;
  readonly readValue: string;
  readonly attributes: Record<string, boolean>;
  readonly makeExtractable: string;
  readonly copyExtractable: string;
  readonly wrapOut: string;
}

/** Runs `action` in another process that logs in to the token itself. */
async function onToken<T>(
  token: SoftHsmToken,
  action: string,
  args: Record<string, unknown> = {},
): Promise<T> {
  const script = `
    const p = require(${JSON.stringify(pkcs11jsPath)});
    const { module, tokenLabel, pin, action, label, seed, point } = JSON.parse(process.argv[1]);
    const x = new p.PKCS11(); x.load(module); x.C_Initialize();
    const slot = x.C_GetSlotList(true).find((s) => x.C_GetTokenInfo(s).label.trim() === tokenLabel);
    const s = x.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
    x.C_Login(s, p.CKU_USER, pin);
    const err = (f) => { try { f(); return 'no error'; } catch (e) { return /CKR_[A-Z_]+/.exec(e.message)?.[0] ?? e.message; } };
    const find = (cls) => { x.C_FindObjectsInit(s, [{ type: p.CKA_CLASS, value: cls }, { type: p.CKA_LABEL, value: Buffer.from(label) }]);
      const h = x.C_FindObjects(s, 100); x.C_FindObjectsFinal(s); return h; };
    const ID = Buffer.from('strongroom-checkpoint-signer/ed25519');
    const OID = Buffer.from('06032b6570', 'hex');
    const pair = (priv, pub) => {
      const common = [{ type: p.CKA_TOKEN, value: true }, { type: p.CKA_KEY_TYPE, value: 0x40 },
        { type: p.CKA_LABEL, value: Buffer.from(label) }, { type: p.CKA_ID, value: ID }, { type: p.CKA_EC_PARAMS, value: OID }];
      x.C_CreateObject(s, [...common, { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY }, { type: p.CKA_VERIFY, value: true },
        { type: p.CKA_EC_POINT, value: Buffer.concat([Buffer.from([4, 32]), Buffer.from(point, 'hex')]) }]);
      x.C_CreateObject(s, [...common, { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_PRIVATE, value: true },
        { type: p.CKA_SIGN, value: true }, { type: p.CKA_VALUE, value: Buffer.from(seed, 'hex') }, ...priv]);
    };
    let out;
    if (action === 'inspect') {
      const [k] = find(p.CKO_PRIVATE_KEY);
      const names = ['CKA_TOKEN', 'CKA_PRIVATE', 'CKA_SENSITIVE', 'CKA_ALWAYS_SENSITIVE', 'CKA_EXTRACTABLE',
        'CKA_NEVER_EXTRACTABLE', 'CKA_MODIFIABLE', 'CKA_SIGN', 'CKA_DECRYPT', 'CKA_UNWRAP', 'CKA_DERIVE'];
      const attributes = {};
      for (const n of names) attributes[n] = x.C_GetAttributeValue(s, k, [{ type: p[n] }])[0].value[0] === 1;
      const wrapping = x.C_GenerateKey(s, { mechanism: p.CKM_AES_KEY_GEN }, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES }, { type: p.CKA_VALUE_LEN, value: 32 }, { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_WRAP, value: true }, { type: p.CKA_EXTRACTABLE, value: true }, { type: p.CKA_SENSITIVE, value: false }]);
      out = {
        privateKeys: find(p.CKO_PRIVATE_KEY).length,
        publicKeys: find(p.CKO_PUBLIC_KEY).length,
        readValue: err(() => x.C_GetAttributeValue(s, k, [{ type: p.CKA_VALUE }])),
        attributes,
        makeExtractable: err(() => x.C_SetAttributeValue(s, k, [{ type: p.CKA_EXTRACTABLE, value: true }])),
        copyExtractable: err(() => x.C_CopyObject(s, k, [{ type: p.CKA_EXTRACTABLE, value: true }, { type: p.CKA_SENSITIVE, value: false }])),
        wrapOut: err(() => x.C_WrapKey(s, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, wrapping, k, Buffer.alloc(256))),
      };
    } else if (action === 'import') {
      // A known key, so that the test can compare with the same key in software; sensitive, not extractable.
      pair([{ type: p.CKA_SENSITIVE, value: true }, { type: p.CKA_EXTRACTABLE, value: false }]);
      out = { imported: true };
    } else if (action === 'import-extractable') {
      pair([{ type: p.CKA_SENSITIVE, value: false }, { type: p.CKA_EXTRACTABLE, value: true }]);
      out = { imported: true };
    } else if (action === 'destroy') {
      for (const h of [...find(p.CKO_PRIVATE_KEY), ...find(p.CKO_PUBLIC_KEY)]) x.C_DestroyObject(s, h);
      out = { destroyed: true };
    }
    x.C_Logout(s); x.C_CloseSession(s); x.C_Finalize();
    process.stdout.write(JSON.stringify(out));
  `;
  const input = JSON.stringify({
    module: token.module,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
    action,
    ...args,
  });
  const { stdout } = await run(process.execPath, ['-e', script, input], {
    env: { ...process.env, SOFTHSM2_CONF: token.conf },
  });
  return JSON.parse(stdout) as T;
}

/** A fresh Ed25519 key in software: its seed, raw public key and note signer key string for `name`. */
function softwareKey(): { seed: Buffer; publicKey: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    seed: privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_ED25519.length),
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519.length),
  };
}

describe('checkpoint signing key on a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  let provider: Pkcs11KmsProvider;
  let dir: string;
  const options = () => ({ module: token.module, tokenLabel: token.tokenLabel, pin: token.pin });

  beforeAll(async () => {
    token = await createSoftHsmToken('checkpoint-signing');
    provider = await Pkcs11KmsProvider.open(options());
    dir = mkdtempSync(join(tmpdir(), 'pkcs11-signing-'));
  });
  afterAll(async () => {
    await provider.close();
    await token.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('generates an Ed25519 key on the token whose signatures node crypto verifies, and finds it again', async () => {
    const key = await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
    const publicKey = await key.publicKey();
    expect(publicKey).toHaveLength(32);
    const data = Buffer.from('strongroom.audit/test-cluster/replica-0\n1\nroot\n');
    const signature = await key.sign(data);
    expect(signature).toHaveLength(64);
    const spki = createPublicKey({
      key: Buffer.concat([SPKI_ED25519, publicKey]),
      format: 'der',
      type: 'spki',
    });
    expect(verify(null, data, spki, signature)).toBe(true);
    expect(verify(null, Buffer.from('other'), spki, signature)).toBe(false);
    // Deterministic: the same data signs to the same bytes.
    expect(Buffer.from(await key.sign(data)).equals(Buffer.from(signature))).toBe(true);
    // Another provider (a restarted replica) finds the same key instead of making a new one.
    const again = await Pkcs11KmsProvider.open(options());
    try {
      const found = await again.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
      expect(Buffer.from(await found.publicKey()).equals(Buffer.from(publicKey))).toBe(true);
    } finally {
      await again.close();
    }
    const seen = await onToken<Inspection>(token, 'inspect', { label: CHECKPOINT_SIGNING_KEY_ID });
    expect([seen.privateKeys, seen.publicKeys]).toEqual([1, 1]);
  });

  it('keeps the private key on the token: sensitive, never extractable, not readable, not wrappable, not copyable', async () => {
    await (await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID)).publicKey();
    const seen = await onToken<Inspection>(token, 'inspect', { label: CHECKPOINT_SIGNING_KEY_ID });
    expect(seen.readValue).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(seen.attributes).toEqual({
      CKA_TOKEN: true,
      CKA_PRIVATE: true,
      CKA_SENSITIVE: true,
      CKA_ALWAYS_SENSITIVE: true,
      CKA_EXTRACTABLE: false,
      CKA_NEVER_EXTRACTABLE: true,
      CKA_MODIFIABLE: false,
      CKA_SIGN: true,
      CKA_DECRYPT: false,
      CKA_UNWRAP: false,
      CKA_DERIVE: false,
    });
    // SoftHSM2 answers the attempt to flip CKA_EXTRACTABLE with a vendor code; what matters is that it is refused.
    expect(seen.makeExtractable).not.toBe('no error');
    expect(seen.copyExtractable).not.toBe('no error');
    expect(seen.wrapOut).toBe('CKR_KEY_UNEXTRACTABLE');
    // After those attempts the key is as it was: still one pair, still unreadable and never extractable.
    const after = await onToken<Inspection>(token, 'inspect', { label: CHECKPOINT_SIGNING_KEY_ID });
    expect([after.privateKeys, after.publicKeys, after.readValue]).toEqual([1, 1, 'CKR_ATTRIBUTE_SENSITIVE']);
    expect(after.attributes).toEqual(seen.attributes);
  });

  it('signs checkpoints byte for byte as the same key does in software, and the audit log verifies', async () => {
    const { seed, publicKey } = softwareKey();
    await onToken(token, 'import', {
      label: 'imported',
      seed: seed.toString('hex'),
      point: publicKey.toString('hex'),
    });
    const signer = await kmsNoteSigner(NAME, await provider.checkpointSigningKey('imported'));
    // The same key as a software signer key string (golang.org/x/mod/sumdb/note encoding).
    const hex = signer.keyId.toString(16).padStart(8, '0');
    const software = parseSignerKey(
      `PRIVATE+KEY+${NAME}+${hex}+${Buffer.concat([Buffer.from([1]), seed]).toString('base64')}`,
    );
    expect(signer.verifier.key).toBe(software.verifier.key);
    const cp = { origin: `${NAME}/replica-0`, size: 42, rootHash: EMPTY_ROOT, extensions: [] };
    const note = await signCheckpointAsync(cp, signer);
    expect(note).toBe(signCheckpoint(cp, software));
    expect(await signNoteAsync('hello\n', [signer])).toBe(signNote('hello\n', [software]));
    expect(openCheckpoint(note, [parseVerifierKey(signer.verifier.key)]).size).toBe(42);

    // A whole log signed on the token verifies with the verifier key alone.
    const path = join(dir, 'token.log');
    const log = await AuditLog.open({ path, origin: `${NAME}/replica-0`, signer, heartbeatIntervalMs: 0 });
    await Promise.all([0, 1, 2].map((i) => log.append(releaseEvent(i))));
    await log.checkpoint();
    await log.close();
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(signer.verifier.key)] });
    expect(report.findings).toEqual([]);
    expect(report.latest?.size).toBe(4);
  });

  it('every note signed by a generated key verifies with the verifier key built from the public key it reports', async () => {
    const signer = await kmsNoteSigner(NAME, await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID));
    const verifier = parseVerifierKey(signer.verifier.key);
    for (let size = 1; size <= 5; size++) {
      const note = await signCheckpointAsync(
        { origin: NAME, size, rootHash: EMPTY_ROOT, extensions: [] },
        signer,
      );
      expect(openCheckpoint(note, [verifier]).size).toBe(size);
    }
  });

  it('refuses an extractable key, and a key that went away', async () => {
    const extractable = softwareKey();
    await onToken(token, 'import-extractable', {
      label: 'extractable',
      seed: extractable.seed.toString('hex'),
      point: extractable.publicKey.toString('hex'),
    });
    const refused = await expectKmsError((await provider.checkpointSigningKey('extractable')).publicKey());
    expect(refused.code).toBe('invalid');
    expect(refused.message).toMatch(/never leave the token/);

    const key = await provider.checkpointSigningKey('goes-away');
    await key.publicKey();
    await onToken(token, 'destroy', { label: 'goes-away' });
    const gone = await expectKmsError(key.sign(Buffer.from('x')));
    expect(gone.code).toBe('not-found');
    // It is not silently replaced by a new key at the next signature.
    const seen = await onToken<{ privateKeys: number }>(token, 'inspect', { label: 'goes-away' }).catch(
      () => ({
        privateKeys: 0,
      }),
    );
    expect(seen.privateKeys).toBe(0);

    await expect(provider.checkpointSigningKey('')).rejects.toMatchObject({ code: 'invalid' });
  });

  it('two key pairs under one label (two replicas generated one each): every replica picks the same, or the one it is asked for', async () => {
    const a = softwareKey();
    const b = softwareKey();
    for (const k of [a, b])
      await onToken(token, 'import', {
        label: 'twice',
        seed: k.seed.toString('hex'),
        point: k.publicKey.toString('hex'),
      });
    expect(
      await onToken<Inspection>(token, 'inspect', { label: 'twice' }).then((i) => [
        i.privateKeys,
        i.publicKeys,
      ]),
    ).toEqual([2, 2]);
    const [low, high] = [a.publicKey, b.publicKey].sort((x, y) => Buffer.compare(x, y)) as [Buffer, Buffer];
    const spki = (raw: Buffer) =>
      createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
    const data = Buffer.from('strongroom.audit/test-cluster/replica-0\n7\nroot\n');

    // Nothing preferred: the lowest public key, and signatures by its own private key.
    const key = await provider.checkpointSigningKey('twice');
    expect(Buffer.from(await key.publicKey()).equals(low)).toBe(true);
    const signature = Buffer.from(await key.sign(data));
    expect(verify(null, data, spki(low), signature)).toBe(true);
    // Another replica (its own provider, session and login) picks the same pair.
    const other = await Pkcs11KmsProvider.open(options());
    try {
      const found = await other.checkpointSigningKey('twice');
      expect(Buffer.from(await found.publicKey()).equals(low)).toBe(true);
      expect(Buffer.from(await found.sign(data)).equals(signature)).toBe(true);
    } finally {
      await other.close();
    }

    // Asked for the other one (the cluster's verifier key names it): that pair, signing with its own private key.
    const asked = await provider.checkpointSigningKey('twice');
    expect(Buffer.from(await asked.publicKey(high)).equals(high)).toBe(true);
    const byHigh = Buffer.from(await asked.sign(data));
    expect(verify(null, data, spki(high), byHigh)).toBe(true);
    expect(verify(null, data, spki(low), byHigh)).toBe(false);
    // A note signer asked for it writes a log that verifies with that key alone.
    const signer = await kmsNoteSigner(NAME, await provider.checkpointSigningKey('twice'), high);
    expect(signer.verifier.key).toBe(noteVerifierFromPublicKey(NAME, high).key);
    const path = join(dir, 'twice.log');
    const log = await AuditLog.open({ path, origin: `${NAME}/replica-2`, signer, heartbeatIntervalMs: 0 });
    await log.append(releaseEvent(0));
    await log.close();
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(signer.verifier.key)] });
    expect(report.findings).toEqual([]);
    expect(report.latest?.size).toBe(2);

    // Asked for a key that is not on the token: the same choice as with nothing asked (the caller refuses it).
    const stranger = softwareKey().publicKey;
    expect(
      Buffer.from(await (await provider.checkpointSigningKey('twice')).publicKey(stranger)).equals(low),
    ).toBe(true);
    // Still two pairs: nothing was generated or deleted.
    expect(
      await onToken<Inspection>(token, 'inspect', { label: 'twice' }).then((i) => [
        i.privateKeys,
        i.publicKeys,
      ]),
    ).toEqual([2, 2]);
  });

  it('a key that fails to sign leaves the entries durable without a checkpoint; the log goes on and counts it', async () => {
    const key = await provider.checkpointSigningKey('removed-mid-run');
    const signer = await kmsNoteSigner(NAME, key);
    const path = join(dir, 'removed.log');
    const stages: string[] = [];
    const log = await AuditLog.open({
      path,
      origin: `${NAME}/replica-1`,
      signer,
      heartbeatIntervalMs: 0,
      metrics: { onFailure: (_e, stage) => stages.push(stage) },
    });
    await onToken(token, 'destroy', { label: 'removed-mid-run' });
    const refused = await log
      .append(releaseEvent(0))
      .then(() => log.checkpoint())
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ kind: 'io' });
    expect((refused as Error).cause).toMatchObject({ code: 'not-found' });
    expect((await log.append(releaseEvent(1))).seq).toBe(2);
    expect(stages).toEqual(['sign']);
    await log.close();
    expect(stages).toEqual(['sign', 'sign']);
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(signer.verifier.key)] });
    expect(report.findings.map((f) => f.kind)).toEqual(['unsigned-tail']);
    expect([report.entries, report.latest?.size]).toEqual([3, 1]);
  });
});
