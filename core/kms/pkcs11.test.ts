/**
 * The pkcs11 provider against a real SoftHSM2 token: the shared conformance suite, then what is particular to
 * PKCS#11 (the KEK never leaves the token, PIN handling, persistence across provider instances, concurrency).
 *
 * A separate Node process (its own C_Initialize and login, as another application would have) inspects and
 * manipulates the token where a test needs to look behind the provider's back.
 */
import { execFile } from 'node:child_process';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftHsmToken, type SoftHsmToken } from '../../test/hsm/softhsm.ts';
import { describeKmsProvider, expectKmsError } from './conformance.ts';
import { kekObjectId, Pkcs11KmsProvider } from './pkcs11.ts';
import { KmsError } from './provider.ts';

const run = promisify(execFile);
const pkcs11jsPath = createRequire(import.meta.url).resolve('pkcs11js');

let counter = 0;
const newKeyId = (): string => `kek-${process.pid}-${++counter}`;

describeKmsProvider('pkcs11 (SoftHSM2)', async () => {
  const token = await createSoftHsmToken('conformance');
  const provider = await Pkcs11KmsProvider.open({
    module: token.module,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
  });
  return { provider, newKeyId, teardown: () => token.cleanup() };
});

interface KekInspection {
  readonly count: number;
  readonly readValue: string;
  readonly attributes: Record<string, boolean>;
  readonly makeExtractable: string;
  readonly copyExtractable: string;
  readonly wrapOut: string;
}

/** Runs `action` in another process that logs in to the token itself. */
async function onToken<T>(token: SoftHsmToken, action: string, args: Record<string, unknown>): Promise<T> {
  const script = `
    const p = require(${JSON.stringify(pkcs11jsPath)});
    const { module, tokenLabel, pin, action, keyId, kekId, value } = JSON.parse(process.argv[1]);
    const x = new p.PKCS11(); x.load(module); x.C_Initialize();
    const slot = x.C_GetSlotList(true).find((s) => x.C_GetTokenInfo(s).label.trim() === tokenLabel);
    const s = x.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
    x.C_Login(s, p.CKU_USER, pin);
    const err = (f) => { try { f(); return 'no error'; } catch (e) { return /CKR_[A-Z_]+/.exec(e.message)?.[0] ?? e.message; } };
    const find = (t) => { x.C_FindObjectsInit(s, t); const h = x.C_FindObjects(s, 100); x.C_FindObjectsFinal(s); return h; };
    const keys = find([{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }, { type: p.CKA_LABEL, value: Buffer.from(keyId) },
      ...(kekId ? [{ type: p.CKA_ID, value: Buffer.from(kekId, 'hex') }] : [])]);
    let out;
    if (action === 'inspect') {
      const k = keys[0];
      const names = ['CKA_TOKEN', 'CKA_PRIVATE', 'CKA_SENSITIVE', 'CKA_ALWAYS_SENSITIVE', 'CKA_EXTRACTABLE',
        'CKA_NEVER_EXTRACTABLE', 'CKA_MODIFIABLE', 'CKA_ENCRYPT', 'CKA_DECRYPT', 'CKA_WRAP', 'CKA_UNWRAP'];
      const attributes = {};
      for (const n of names) attributes[n] = x.C_GetAttributeValue(s, k, [{ type: p[n] }])[0].value[0] === 1;
      const wrapping = x.C_GenerateKey(s, { mechanism: p.CKM_AES_KEY_GEN }, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES }, { type: p.CKA_VALUE_LEN, value: 32 }, { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_WRAP, value: true }, { type: p.CKA_EXTRACTABLE, value: true }, { type: p.CKA_SENSITIVE, value: false }]);
      out = {
        count: keys.length,
        readValue: err(() => x.C_GetAttributeValue(s, k, [{ type: p.CKA_VALUE }])),
        attributes,
        makeExtractable: err(() => x.C_SetAttributeValue(s, k, [{ type: p.CKA_EXTRACTABLE, value: true }])),
        copyExtractable: err(() => x.C_CopyObject(s, k, [{ type: p.CKA_EXTRACTABLE, value: true }, { type: p.CKA_SENSITIVE, value: false }])),
        wrapOut: err(() => x.C_WrapKey(s, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, wrapping, k, Buffer.alloc(128))),
      };
    } else if (action === 'replace') {
      // Swaps the generated KEK for one whose bytes the test knows, with the same label, id and attributes.
      for (const k of keys) x.C_DestroyObject(s, k);
      x.C_CreateObject(s, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_TOKEN, value: true }, { type: p.CKA_PRIVATE, value: true }, { type: p.CKA_LABEL, value: Buffer.from(keyId) },
        { type: p.CKA_ID, value: Buffer.from(kekId, 'hex') }, { type: p.CKA_VALUE, value: Buffer.from(value, 'hex') },
        { type: p.CKA_SENSITIVE, value: true }, { type: p.CKA_EXTRACTABLE, value: false },
        { type: p.CKA_ENCRYPT, value: true }, { type: p.CKA_DECRYPT, value: true }]);
      out = { replaced: keys.length };
    } else if (action === 'count') {
      out = { count: keys.length };
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

describe('pkcs11 provider on a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  let provider: Pkcs11KmsProvider;
  const aad = Buffer.from('strongroom/v1 artifact=bert version=v1');
  const options = () => ({ module: token.module, tokenLabel: token.tokenLabel, pin: token.pin });

  beforeAll(async () => {
    token = await createSoftHsmToken('pkcs11-specific');
    provider = await Pkcs11KmsProvider.open(options());
  });
  afterAll(async () => {
    await provider.close();
    await token.cleanup();
  });

  it('keeps the KEK on the token: sensitive, never extractable, not readable, not wrappable, not copyable', async () => {
    const keyId = newKeyId();
    await provider.createKey(keyId);
    await provider.rotate(keyId);
    for (const version of ['1', '2']) {
      const seen = await onToken<KekInspection>(token, 'inspect', {
        keyId,
        kekId: kekObjectId(version).toString('hex'),
      });
      expect(seen.count).toBe(1);
      expect(seen.readValue).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(seen.attributes).toMatchObject({
        CKA_TOKEN: true,
        CKA_PRIVATE: true,
        CKA_SENSITIVE: true,
        CKA_ALWAYS_SENSITIVE: true,
        CKA_EXTRACTABLE: false,
        CKA_NEVER_EXTRACTABLE: true,
        CKA_MODIFIABLE: false,
        CKA_WRAP: false,
        CKA_UNWRAP: false,
      });
      expect(seen.makeExtractable).not.toBe('no error');
      expect(seen.copyExtractable).not.toBe('no error');
      expect(seen.wrapOut).toBe('CKR_KEY_UNEXTRACTABLE');
    }
  });

  it('never puts KEK bytes in its output: the blob is iv || AES-256-GCM(dek, aad) || tag and nothing else', async () => {
    const keyId = newKeyId();
    await provider.createKey(keyId);
    // Only a KEK whose bytes are known can be looked for: swap version 1 for such a key, from another process.
    const kek = randomBytes(32);
    await onToken(token, 'replace', {
      keyId,
      kekId: kekObjectId('1').toString('hex'),
      value: kek.toString('hex'),
    });
    const encodings = (b: Buffer) => [
      b.toString('hex'),
      b.toString('base64'),
      b.toString('base64url'),
      b.toString('latin1'),
    ];
    for (let i = 0; i < 50; i++) {
      const dek = randomBytes(1 + (i % 64));
      const wrapped = await provider.wrap(keyId, dek, aad);
      const blob = Buffer.from(wrapped.ciphertext, 'base64');
      expect(blob.length).toBe(12 + dek.length + 16);
      expect(blob.includes(kek)).toBe(false);
      expect(blob.includes(kek.subarray(0, 8))).toBe(false);
      const serialized = JSON.stringify(wrapped);
      for (const text of encodings(kek)) expect(serialized.includes(text)).toBe(false);
      // The known KEK opens it with plain node crypto: proof of the format, and that the AAD is the GCM AAD.
      const decipher = createDecipheriv('aes-256-gcm', kek, blob.subarray(0, 12), { authTagLength: 16 });
      decipher.setAAD(aad);
      decipher.setAuthTag(blob.subarray(blob.length - 16));
      const opened = Buffer.concat([decipher.update(blob.subarray(12, blob.length - 16)), decipher.final()]);
      expect(opened.equals(dek)).toBe(true);
      expect((await provider.unwrap(wrapped, aad)).equals(dek)).toBe(true);
    }
  });

  it('refuses a wrong PIN with a clear error that does not contain the PIN', async () => {
    const wrongPin = `wrong-${randomBytes(6).toString('hex')}`;
    // While another provider of this process is logged in, PKCS#11 itself would not check the PIN.
    const whileLoggedIn = await expectKmsError(Pkcs11KmsProvider.open({ ...options(), pin: wrongPin }));
    expect(whileLoggedIn.code).toBe('unavailable');
    expect(whileLoggedIn.message).toMatch(/wrong PIN/);
    expect(whileLoggedIn.message).not.toContain(wrongPin);
    // With nobody logged in, the token's own check answers.
    await provider.close();
    try {
      const alone = await expectKmsError(Pkcs11KmsProvider.open({ ...options(), pin: wrongPin }));
      expect(alone.code).toBe('unavailable');
      expect(alone.message).toMatch(/PIN.*CKR_PIN_INCORRECT/);
      expect(alone.message).not.toContain(wrongPin);
      expect(JSON.stringify(alone, Object.getOwnPropertyNames(alone))).not.toContain(wrongPin);
    } finally {
      provider = await Pkcs11KmsProvider.open(options());
    }
    const unknownToken = await expectKmsError(
      Pkcs11KmsProvider.open({ ...options(), tokenLabel: 'no-such-token' }),
    );
    expect(unknownToken.message).toMatch(/no PKCS#11 token labelled "no-such-token".*"pkcs11-specific"/);
    const noModule = await expectKmsError(
      Pkcs11KmsProvider.open({ ...options(), module: '/nonexistent/libpkcs11.so' }),
    );
    expect(noModule.code).toBe('unavailable');
  });

  it('keeps keys on the token: another provider instance, open at the same time or later, uses them', async () => {
    const keyId = newKeyId();
    await provider.createKey(keyId);
    const dek = randomBytes(32);
    const v1 = await provider.wrap(keyId, dek, aad);

    const second = await Pkcs11KmsProvider.open(options());
    try {
      expect((await second.unwrap(v1, aad)).equals(dek)).toBe(true);
      expect(await second.rotate(keyId)).toBe('2');
      const v2 = await provider.wrap(keyId, dek, aad);
      expect(v2.keyVersion).toBe('2');
      expect((await second.unwrap(v2, aad)).equals(dek)).toBe(true);
    } finally {
      await second.close();
    }
    // Closing the second instance neither logged out nor finalized under the first one.
    expect((await provider.unwrap(v1, aad)).equals(dek)).toBe(true);
    await provider.destroyVersion(keyId, '1');

    // A fresh start: every provider closed, the library finalized, then opened again.
    await provider.close();
    provider = await Pkcs11KmsProvider.open(options());
    const versions = await provider.versions(keyId);
    expect(versions.map((v) => [v.version, v.state, v.primary])).toEqual([
      ['1', 'destroyed', false],
      ['2', 'enabled', true],
    ]);
    expect((await expectKmsError(provider.unwrap(v1, aad))).code).toBe('destroyed');
    expect((await provider.unwrap(await provider.wrap(keyId, dek, aad), aad)).equals(dek)).toBe(true);
    // The destroyed version's secret key is really gone from the token.
    expect(await onToken(token, 'count', { keyId, kekId: kekObjectId('1').toString('hex') })).toEqual({
      count: 0,
    });
    expect(await onToken(token, 'count', { keyId, kekId: kekObjectId('2').toString('hex') })).toEqual({
      count: 1,
    });
  });

  it('serializes concurrent operations on its one session', async () => {
    const keyId = newKeyId();
    await provider.createKey(keyId);
    const deks = Array.from({ length: 40 }, () => randomBytes(32));
    const [wrapped] = await Promise.all([
      Promise.all(deks.map((dek) => provider.wrap(keyId, dek, aad))),
      provider.rotate(keyId),
      provider.versions(keyId),
    ]);
    const opened = await Promise.all(wrapped.map((w) => provider.unwrap(w, aad)));
    opened.forEach((dek, i) => {
      expect(dek.equals(deks[i] ?? Buffer.alloc(0))).toBe(true);
    });
    // A failing operation in the middle of the queue leaves the session usable for the next ones.
    const [first, second] = wrapped;
    if (!first || !second) throw new Error('nothing was wrapped');
    const results = await Promise.allSettled([
      provider.unwrap({ ...first, ciphertext: randomBytes(60).toString('base64') }, aad),
      provider.unwrap(second, aad),
      provider.unwrap({ ...second, ciphertext: 'not base64!' }, aad),
      provider.unwrap(first, aad),
    ]);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as KmsError).code : 'ok'))).toEqual([
      'unwrap-failed',
      'ok',
      'invalid',
      'ok',
    ]);
    expect(results[1].status).toBe('fulfilled');
  });

  it('is closed for business after close()', async () => {
    const other = await Pkcs11KmsProvider.open(options());
    await other.close();
    await other.close();
    expect((await expectKmsError(other.versions('anything'))).code).toBe('unavailable');
  });
});
