/**
 * The `pkcs11` KMS provider: KEKs are AES-256 secret keys that live on a PKCS#11 token (an HSM, or SoftHSM2 in
 * tests) and never leave it. Wrapping and unwrapping are C_Encrypt / C_Decrypt with CKM_AES_GCM on the token.
 *
 * What is on the token, per Strongroom key id `K` (all token objects, private, so only visible after login):
 * - one CKO_SECRET_KEY per version: CKK_AES, 32 bytes, generated on the token with C_GenerateKey, CKA_LABEL = `K`,
 *   CKA_ID = `strongroom-kek/<version>` (UTF-8), CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_MODIFIABLE false,
 *   CKA_COPYABLE false, usable for CKA_ENCRYPT / CKA_DECRYPT only;
 * - one CKO_DATA record, CKA_APPLICATION = `strongroom/kms/v1`, CKA_LABEL = `K`, CKA_VALUE = JSON: the versions
 *   (with creation time and state), which one is primary, and a generation counter. Destroyed versions stay in the
 *   record as tombstones, so unwrap tells `destroyed` from `not-found`. A PKCS#11 data object's value cannot be
 *   changed in place on every token (SoftHSM2 refuses), so an update creates the next generation and then destroys
 *   the older ones; readers take the highest generation, which keeps a crash between the two steps harmless.
 *
 * Wrapped ciphertext (base64): iv (12 bytes, from the token's C_GenerateRandom) || ciphertext || tag (16 bytes),
 * AES-256-GCM with the caller's associated data as GCM AAD. A random 96-bit IV per wrap keeps one KEK version far
 * below GCM's 2^32-invocation bound in any realistic life; rotate for other reasons long before.
 *
 * The token is expected to be dedicated to Strongroom (or at least its labels are): a CKO_DATA record with our
 * application marks a key id as ours, and only then are secret keys with that label and our CKA_ID scheme touched.
 *
 * Sessions: the provider opens one read/write session and logs the user in. A PKCS#11 session runs one operation
 * at a time (C_EncryptInit ... C_Encrypt, C_FindObjectsInit ... C_FindObjectsFinal are multi-call), so every
 * operation goes through a per-provider FIFO queue. The library itself is loaded and C_Initialize'd once per
 * process and module path, and shared, reference-counted, by every provider instance using it: a second
 * C_Initialize would fail, and a C_Finalize or C_Logout by one instance would pull the ground from under another
 * (PKCS#11 login state belongs to the application, not to a session).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { Handle, Template } from 'pkcs11js';
import { Pkcs11CheckpointSigningKey, type TokenRun } from './pkcs11-signing.ts';
import {
  KmsError,
  type KeyVersionInfo,
  type KmsErrorCode,
  type KmsProvider,
  type WrappedKey,
} from './provider.ts';
import type { CheckpointSigningKey } from './signing.ts';

export interface Pkcs11Options {
  /** Path of the PKCS#11 module (.so), e.g. /usr/lib/softhsm/libsofthsm2.so. */
  readonly module: string;
  /** The token's label (CK_TOKEN_INFO.label, without the blank padding). */
  readonly tokenLabel: string;
  /** The user PIN. Never logged, never part of an error message. */
  readonly pin: string;
}

const PROVIDER = 'pkcs11';
/** CKA_APPLICATION of the per-key CKO_DATA record. */
export const RECORD_APPLICATION = 'strongroom/kms/v1';
/** CKA_ID of a KEK version's secret key object. */
export function kekObjectId(version: string): Buffer {
  return Buffer.from(`strongroom-kek/${version}`, 'utf8');
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PLAINTEXT_BYTES = 64;
const MAX_KEY_ID_BYTES = 128;
const FIND_BATCH = 64;

/** CKR codes after which the session is gone or logged out: reopen it (and log in again) and retry once. */
const SESSION_LOST = new Set(['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_USER_NOT_LOGGED_IN']);
/**
 * CKR codes of C_Decrypt that mean "does not verify". The standard answer is CKR_ENCRYPTED_DATA_INVALID, but
 * SoftHSM2 (and other tokens that pass OpenSSL's GCM failure through) answer CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED
 * for a wrong tag. Either way the caller is denied.
 */
const DECRYPT_REJECTED = new Set([
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_GENERAL_ERROR',
  'CKR_FUNCTION_FAILED',
]);
const PIN_ERRORS = new Set([
  'CKR_PIN_INCORRECT',
  'CKR_PIN_INVALID',
  'CKR_PIN_LEN_RANGE',
  'CKR_PIN_LOCKED',
  'CKR_PIN_EXPIRED',
]);

// ---------------------------------------------------------------------------------------------------------------
// PKCS#11 errors

interface Ckr {
  readonly name: string;
}

/** The CKR_* name of a pkcs11js error (its Pkcs11Error, or a plain Error whose message is "CKR_X:code"). */
function ckrOf(error: unknown): Ckr | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /\b(CKR_[A-Z0-9_]+)\b/.exec(error.message) ?? /\b(CKR_[A-Z0-9_]+)\b/.exec(error.stack ?? '');
  return match?.[1] ? { name: match[1] } : undefined;
}

function describe(error: unknown): string {
  const ckr = ckrOf(error);
  if (ckr) return ckr.name;
  return error instanceof Error ? error.message : String(error);
}

function fail(code: KmsErrorCode, message: string, cause?: unknown): KmsError {
  return cause === undefined ? new KmsError(code, message) : new KmsError(code, message, { cause });
}

function p11(what: string, error: unknown): KmsError {
  if (error instanceof KmsError) return error;
  return fail('unavailable', `PKCS#11 ${what} failed: ${describe(error)}`, error);
}

// ---------------------------------------------------------------------------------------------------------------
// The shared, process-wide library state

interface Login {
  sessions: number;
  /** HMAC of the PIN under a per-process random key: lets a second provider prove it knows the same PIN. */
  pinDigest: Buffer;
}

interface LoadedModule {
  readonly path: string;
  readonly lib: pkcs11js.PKCS11;
  /** false when something else in this process had already initialized the library: then never finalize it. */
  readonly ownsInit: boolean;
  refs: number;
  /** Per slot (hex of the slot id). */
  readonly logins: Map<string, Login>;
}

const loaded = new Map<string, LoadedModule>();
const pinKey = randomBytes(32);

function pinDigest(pin: string): Buffer {
  return createHmac('sha256', pinKey).update(pin, 'utf8').digest();
}

function acquireModule(modulePath: string): LoadedModule {
  let path: string;
  try {
    path = realpathSync(modulePath);
  } catch (e) {
    throw fail('unavailable', `PKCS#11 module ${modulePath} not found`, e);
  }
  const existing = loaded.get(path);
  if (existing) {
    existing.refs++;
    return existing;
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw fail('unavailable', `cannot load PKCS#11 module ${path}: ${describe(e)}`, e);
  }
  let ownsInit = true;
  try {
    // OS locking: pkcs11js runs the *Async calls on libuv worker threads.
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrOf(e)?.name !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try {
        lib.close();
      } catch {
        // nothing more to release
      }
      throw p11(`C_Initialize of ${path}`, e);
    }
    ownsInit = false;
  }
  const module: LoadedModule = { path, lib, ownsInit, refs: 1, logins: new Map() };
  loaded.set(path, module);
  return module;
}

function releaseModule(module: LoadedModule): void {
  module.refs--;
  if (module.refs > 0) return;
  loaded.delete(module.path);
  try {
    if (module.ownsInit) module.lib.C_Finalize();
  } catch {
    // the process is letting go of the library either way
  }
  try {
    module.lib.close();
  } catch {
    // idem
  }
}

function findSlot(lib: pkcs11js.PKCS11, tokenLabel: string): Handle {
  let slots: Handle[];
  try {
    slots = lib.C_GetSlotList(true);
  } catch (e) {
    throw p11('C_GetSlotList', e);
  }
  const labels: string[] = [];
  for (const slot of slots) {
    let label: string;
    try {
      label = lib.C_GetTokenInfo(slot).label.replace(/[ \0]+$/, '');
    } catch {
      continue; // a slot whose token went away in between
    }
    if (label === tokenLabel) return slot;
    labels.push(label);
  }
  throw fail(
    'unavailable',
    `no PKCS#11 token labelled "${tokenLabel}" (tokens present: ${labels.length ? labels.map((l) => `"${l}"`).join(', ') : 'none'})`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The key record (CKO_DATA)

interface VersionRecord {
  readonly version: string;
  readonly state: 'enabled' | 'destroyed';
  readonly createdAt: string;
  readonly destroyedAt?: string;
}

interface KeyRecord {
  readonly generation: number;
  readonly primary: string;
  readonly versions: readonly VersionRecord[];
}

function parseRecord(keyId: string, value: Buffer): KeyRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (e) {
    throw fail('unavailable', `the token's record of key ${keyId} is not JSON`, e);
  }
  const r = parsed as Partial<KeyRecord> | null;
  const ok =
    typeof r === 'object' &&
    r !== null &&
    Number.isSafeInteger(r.generation) &&
    typeof r.primary === 'string' &&
    Array.isArray(r.versions) &&
    r.versions.every(
      (v: Partial<VersionRecord> | null) =>
        typeof v === 'object' &&
        v !== null &&
        typeof v.version === 'string' &&
        /^[1-9][0-9]*$/.test(v.version) &&
        (v.state === 'enabled' || v.state === 'destroyed') &&
        typeof v.createdAt === 'string',
    );
  if (!ok) throw fail('unavailable', `the token's record of key ${keyId} is malformed`);
  return r as KeyRecord;
}

function nextVersion(record: KeyRecord): string {
  return String(Math.max(0, ...record.versions.map((v) => Number(v.version))) + 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Input validation

function checkKeyId(keyId: unknown): string {
  if (typeof keyId !== 'string' || keyId.length === 0)
    throw fail('invalid', 'the key id must be a non-empty string');
  if (Buffer.byteLength(keyId, 'utf8') > MAX_KEY_ID_BYTES)
    throw fail('invalid', `the key id is longer than ${MAX_KEY_ID_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(keyId)) throw fail('invalid', 'the key id contains control characters');
  return keyId;
}

function checkVersion(version: unknown): string {
  if (typeof version !== 'string' || !/^[1-9][0-9]{0,8}$/.test(version))
    throw fail('invalid', `malformed key version ${JSON.stringify(version)}`);
  return version;
}

function checkBytes(what: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw fail('invalid', `${what} must be bytes (a Uint8Array)`);
  return value;
}

function decodeCiphertext(ciphertext: unknown): Buffer {
  if (
    typeof ciphertext !== 'string' ||
    !/^[A-Za-z0-9+/]*={0,2}$/.test(ciphertext) ||
    ciphertext.length % 4 !== 0
  )
    throw fail('invalid', 'the wrapped ciphertext is not base64');
  const blob = Buffer.from(ciphertext, 'base64');
  if (blob.length < IV_BYTES + 1 + TAG_BYTES || blob.length > IV_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES)
    throw fail('invalid', `the wrapped ciphertext has an impossible length (${blob.length} bytes)`);
  return blob;
}

// ---------------------------------------------------------------------------------------------------------------
// The provider

type Operation<T> = (session: Handle) => Promise<T> | T;

export class Pkcs11KmsProvider implements KmsProvider {
  readonly name = PROVIDER;

  readonly #module: LoadedModule;
  readonly #lib: pkcs11js.PKCS11;
  readonly #slot: Handle;
  readonly #slotKey: string;
  readonly #tokenLabel: string;
  readonly #pin: string;
  #session: Handle;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(module: LoadedModule, slot: Handle, tokenLabel: string, pin: string, session: Handle) {
    this.#module = module;
    this.#lib = module.lib;
    this.#slot = slot;
    this.#slotKey = slot.toString('hex');
    this.#tokenLabel = tokenLabel;
    this.#pin = pin;
    this.#session = session;
  }

  /** Loads the module (once per process), finds the token, opens a read/write session and logs the user in. */
  static open(options: Pkcs11Options): Promise<Pkcs11KmsProvider> {
    // Everything here is synchronous on purpose: the shared module and login state change without interleaving.
    try {
      return Promise.resolve(Pkcs11KmsProvider.#openSync(options));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  static #openSync(options: Pkcs11Options): Pkcs11KmsProvider {
    const { module: modulePath, tokenLabel, pin } = options;
    if (typeof modulePath !== 'string' || modulePath === '')
      throw fail('invalid', 'pkcs11: `module` is required');
    if (typeof tokenLabel !== 'string' || tokenLabel === '')
      throw fail('invalid', 'pkcs11: `tokenLabel` is required');
    if (typeof pin !== 'string' || pin === '') throw fail('invalid', 'pkcs11: `pin` is required');
    const module = acquireModule(modulePath);
    try {
      const slot = findSlot(module.lib, tokenLabel);
      const session = openSession(module.lib, slot);
      try {
        login(module, slot, tokenLabel, pin, session, true);
      } catch (e) {
        closeSessionQuietly(module.lib, session);
        throw e;
      }
      return new Pkcs11KmsProvider(module, slot, tokenLabel, pin, session);
    } catch (e) {
      releaseModule(module);
      throw e;
    }
  }

  createKey(keyId: string): Promise<void> {
    return this.#run(async (s) => {
      checkKeyId(keyId);
      const existing = this.#readRecord(s, keyId)?.record;
      if (existing) {
        const destroyed = existing.versions.every((v) => v.state === 'destroyed');
        throw fail(
          'invalid',
          `key ${keyId} already exists${destroyed ? ' (destroyed; its id stays taken)' : ''}`,
        );
      }
      // A secret key left by a createKey that stopped before its record was written wrapped nothing: sweep it.
      this.#destroyKekObjects(s, keyId, '1');
      await this.#generateKek(s, keyId, '1');
      this.#writeRecord(s, keyId, undefined, {
        primary: '1',
        versions: [{ version: '1', state: 'enabled', createdAt: new Date().toISOString() }],
      });
    });
  }

  wrap(keyId: string, plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedKey> {
    return this.#run(async (s) => {
      checkKeyId(keyId);
      checkBytes('the plaintext', plaintext);
      checkBytes('the associated data', aad);
      if (plaintext.length === 0) throw fail('invalid', 'nothing to wrap: the plaintext is empty');
      if (plaintext.length > MAX_PLAINTEXT_BYTES)
        throw fail(
          'invalid',
          `the plaintext is ${plaintext.length} bytes; at most ${MAX_PLAINTEXT_BYTES} can be wrapped`,
        );
      const record = this.#readRecord(s, keyId)?.record;
      if (!record) throw fail('not-found', `key ${keyId} does not exist`);
      const primary = record.versions.find((v) => v.version === record.primary);
      if (!primary || primary.state === 'destroyed')
        throw fail('destroyed', `key ${keyId} was destroyed: it has no usable primary version`);
      const kek = this.#kekHandle(s, keyId, primary.version);
      const iv = this.#call('C_GenerateRandom', () => this.#lib.C_GenerateRandom(s, Buffer.alloc(IV_BYTES)));
      const input = Buffer.from(plaintext);
      try {
        const sealed = await this.#crypt(s, 'encrypt', kek, iv, aad, input, input.length + TAG_BYTES);
        return {
          provider: PROVIDER,
          keyId,
          keyVersion: primary.version,
          ciphertext: Buffer.concat([iv, sealed]).toString('base64'),
        };
      } finally {
        input.fill(0);
      }
    });
  }

  unwrap(wrapped: WrappedKey, aad: Uint8Array): Promise<Buffer> {
    return this.#run(async (s) => {
      const untrusted: unknown = wrapped; // it comes from artifact metadata: check its shape
      if (typeof untrusted !== 'object' || untrusted === null)
        throw fail('invalid', 'the wrapped key is not an object');
      if (wrapped.provider !== PROVIDER)
        throw fail(
          'invalid',
          `the wrapped key belongs to provider ${JSON.stringify(wrapped.provider)}, not ${PROVIDER}`,
        );
      const keyId = checkKeyId(wrapped.keyId);
      const version = checkVersion(wrapped.keyVersion);
      checkBytes('the associated data', aad);
      const blob = decodeCiphertext(wrapped.ciphertext);
      const record = this.#readRecord(s, keyId)?.record;
      if (!record) throw fail('not-found', `key ${keyId} does not exist`);
      const entry = record.versions.find((v) => v.version === version);
      if (!entry) throw fail('not-found', `key ${keyId} has no version ${version}`);
      if (entry.state === 'destroyed')
        throw fail(
          'destroyed',
          `version ${version} of key ${keyId} was destroyed: what it wrapped is gone for good`,
        );
      const kek = this.#kekHandle(s, keyId, version);
      return this.#crypt(
        s,
        'decrypt',
        kek,
        blob.subarray(0, IV_BYTES),
        aad,
        blob.subarray(IV_BYTES),
        blob.length,
      );
    });
  }

  versions(keyId: string): Promise<readonly KeyVersionInfo[]> {
    return this.#run((s) => {
      checkKeyId(keyId);
      const record = this.#readRecord(s, keyId)?.record;
      if (!record) throw fail('not-found', `key ${keyId} does not exist`);
      return [...record.versions]
        .sort((a, b) => Number(a.version) - Number(b.version))
        .map((v) => ({
          version: v.version,
          state: v.state,
          primary: v.version === record.primary && v.state === 'enabled',
          createdAt: v.createdAt,
        }));
    });
  }

  rotate(keyId: string): Promise<string> {
    return this.#run(async (s) => {
      checkKeyId(keyId);
      const found = this.#readRecord(s, keyId);
      if (!found) throw fail('not-found', `key ${keyId} does not exist`);
      const { record } = found;
      if (record.versions.every((v) => v.state === 'destroyed'))
        throw fail('destroyed', `key ${keyId} was destroyed and cannot be rotated`);
      const version = nextVersion(record);
      this.#destroyKekObjects(s, keyId, version); // left by a rotate that stopped before its record was written
      await this.#generateKek(s, keyId, version);
      this.#writeRecord(s, keyId, found, {
        primary: version,
        versions: [...record.versions, { version, state: 'enabled', createdAt: new Date().toISOString() }],
      });
      return version;
    });
  }

  destroyVersion(keyId: string, version: string): Promise<void> {
    return this.#run((s) => {
      checkKeyId(keyId);
      checkVersion(version);
      const found = this.#readRecord(s, keyId);
      if (!found) throw fail('not-found', `key ${keyId} does not exist`);
      const { record } = found;
      const entry = record.versions.find((v) => v.version === version);
      if (!entry) throw fail('not-found', `key ${keyId} has no version ${version}`);
      if (version === record.primary && entry.state === 'enabled')
        throw fail(
          'invalid',
          `version ${version} is the primary of key ${keyId}: rotate before destroying it`,
        );
      // Erase first, record second: a stop in between never claims an erasure that did not happen.
      this.#destroyKekObjects(s, keyId, version);
      if (entry.state === 'destroyed') return;
      const now = new Date().toISOString();
      this.#writeRecord(s, keyId, found, {
        primary: record.primary,
        versions: record.versions.map((v) =>
          v.version === version ? { ...v, state: 'destroyed' as const, destroyedAt: now } : v,
        ),
      });
    });
  }

  destroyKey(keyId: string): Promise<void> {
    return this.#run((s) => {
      checkKeyId(keyId);
      const found = this.#readRecord(s, keyId);
      if (!found) throw fail('not-found', `key ${keyId} does not exist`);
      const { record } = found;
      for (const v of record.versions) this.#destroyKekObjects(s, keyId, v.version);
      if (record.versions.every((v) => v.state === 'destroyed')) return;
      const now = new Date().toISOString();
      this.#writeRecord(s, keyId, found, {
        primary: record.primary,
        versions: record.versions.map((v) =>
          v.state === 'destroyed' ? v : { ...v, state: 'destroyed' as const, destroyedAt: now },
        ),
      });
    });
  }

  /**
   * The Ed25519 checkpoint signing key labelled `label` on this token, generated on the token at first use
   * (pkcs11-signing.ts). Its operations share this provider's session, login and queue.
   */
  checkpointSigningKey(label: string): Promise<CheckpointSigningKey> {
    try {
      const run: TokenRun = (op) => this.#run((s) => op(this.#lib, s));
      return Promise.resolve(new Pkcs11CheckpointSigningKey(run, this.#tokenLabel, label));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Waits for queued operations, logs out (when no other provider in this process uses the login), finalizes. */
  close(): Promise<void> {
    if (this.#closed) return this.#queue.then(() => undefined);
    this.#closed = true;
    const done = this.#queue.then(() => {
      const login = this.#module.logins.get(this.#slotKey);
      if (login) {
        login.sessions--;
        if (login.sessions <= 0) {
          this.#module.logins.delete(this.#slotKey);
          try {
            this.#lib.C_Logout(this.#session);
          } catch {
            // closing the session below ends the login too, when it is the last one
          }
        }
      }
      closeSessionQuietly(this.#lib, this.#session);
      releaseModule(this.#module);
    });
    this.#queue = done;
    return done;
  }

  // -------------------------------------------------------------------------------------------------------------

  /** Runs `op` alone on the session, after every operation queued before it. */
  #run<T>(op: Operation<T>): Promise<T> {
    if (this.#closed) return Promise.reject(fail('unavailable', 'the pkcs11 provider is closed'));
    const result = this.#queue.then(() => this.#attempt(op));
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  async #attempt<T>(op: Operation<T>): Promise<T> {
    try {
      return await op(this.#session);
    } catch (e) {
      const cause = e instanceof KmsError && e.cause !== undefined ? e.cause : e;
      if (!SESSION_LOST.has(ckrOf(cause)?.name ?? '')) throw e;
      // The token was reset, the session closed under us, or the login lapsed: one fresh session, one retry.
      this.#replaceSession();
      return await op(this.#session);
    }
  }

  /** Opens a new session (logged in again if needed) and closes the old one; the login survives the swap. */
  #replaceSession(): void {
    const old = this.#session;
    const session = openSession(this.#lib, this.#slot);
    try {
      login(this.#module, this.#slot, this.#tokenLabel, this.#pin, session, false);
    } catch (e) {
      closeSessionQuietly(this.#lib, session);
      throw e;
    }
    this.#session = session;
    closeSessionQuietly(this.#lib, old);
  }

  #call<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw p11(what, e);
    }
  }

  #find(s: Handle, template: Template): Handle[] {
    return this.#call('C_FindObjects', () => {
      this.#lib.C_FindObjectsInit(s, template);
      try {
        const handles: Handle[] = [];
        for (;;) {
          const batch = this.#lib.C_FindObjects(s, FIND_BATCH);
          handles.push(...batch);
          if (batch.length < FIND_BATCH) return handles;
        }
      } finally {
        this.#lib.C_FindObjectsFinal(s);
      }
    });
  }

  #readRecord(s: Handle, keyId: string): { record: KeyRecord; handles: Handle[] } | undefined {
    const handles = this.#find(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_APPLICATION, value: Buffer.from(RECORD_APPLICATION, 'utf8') },
      { type: pkcs11js.CKA_LABEL, value: Buffer.from(keyId, 'utf8') },
    ]);
    let latest: KeyRecord | undefined;
    for (const handle of handles) {
      const [attribute] = this.#call('C_GetAttributeValue', () =>
        this.#lib.C_GetAttributeValue(s, handle, [{ type: pkcs11js.CKA_VALUE }]),
      );
      if (!attribute) continue;
      const record = parseRecord(keyId, attribute.value);
      if (!latest || record.generation > latest.generation) latest = record;
    }
    return latest ? { record: latest, handles } : undefined;
  }

  /** Stores the next generation of the record, then removes the older ones. */
  #writeRecord(
    s: Handle,
    keyId: string,
    previous: { record: KeyRecord; handles: Handle[] } | undefined,
    next: Omit<KeyRecord, 'generation'>,
  ): void {
    const record: KeyRecord = { generation: (previous?.record.generation ?? 0) + 1, ...next };
    this.#call('C_CreateObject', () =>
      this.#lib.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: Buffer.from(RECORD_APPLICATION, 'utf8') },
        { type: pkcs11js.CKA_LABEL, value: Buffer.from(keyId, 'utf8') },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from(JSON.stringify(record), 'utf8') },
      ]),
    );
    for (const handle of previous?.handles ?? []) {
      try {
        this.#lib.C_DestroyObject(s, handle);
      } catch {
        // a stale generation left behind is ignored by readers and swept at the next write
      }
    }
  }

  #kekTemplate(keyId: string, version: string): Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: Buffer.from(keyId, 'utf8') },
      { type: pkcs11js.CKA_ID, value: kekObjectId(version) },
    ];
  }

  #kekHandle(s: Handle, keyId: string, version: string): Handle {
    const [handle] = this.#find(s, this.#kekTemplate(keyId, version));
    if (!handle)
      throw fail(
        'not-found',
        `the token has no secret key for version ${version} of key ${keyId}, yet its record does`,
      );
    return handle;
  }

  #destroyKekObjects(s: Handle, keyId: string, version: string): void {
    for (const handle of this.#find(s, this.#kekTemplate(keyId, version))) {
      this.#call('C_DestroyObject', () => {
        this.#lib.C_DestroyObject(s, handle);
      });
    }
  }

  async #generateKek(s: Handle, keyId: string, version: string): Promise<void> {
    try {
      await this.#lib.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        ...this.#kekTemplate(keyId, version),
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_MODIFIABLE, value: false },
        { type: pkcs11js.CKA_COPYABLE, value: false },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
        { type: pkcs11js.CKA_WRAP, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_SIGN, value: false },
        { type: pkcs11js.CKA_VERIFY, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ]);
    } catch (e) {
      throw p11('C_GenerateKey (AES-256 KEK)', e);
    }
  }

  /** One AES-GCM C_Encrypt or C_Decrypt; the result is a fresh buffer, every intermediate one is zeroed. */
  async #crypt(
    s: Handle,
    direction: 'encrypt' | 'decrypt',
    kek: Handle,
    iv: Buffer,
    aad: Uint8Array,
    input: Buffer,
    outputBytes: number,
  ): Promise<Buffer> {
    const mechanism = {
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: {
        type: pkcs11js.CK_PARAMS_GCM,
        iv: Buffer.from(iv),
        ivBits: IV_BYTES * 8,
        aad: Buffer.from(aad),
        tagBits: TAG_BYTES * 8,
      },
    };
    // SoftHSM2 wants room for the whole input when decrypting, tag included.
    const output = Buffer.alloc(outputBytes);
    let active = false;
    try {
      if (direction === 'encrypt') this.#lib.C_EncryptInit(s, mechanism, kek);
      else this.#lib.C_DecryptInit(s, mechanism, kek);
      active = true;
      const result =
        direction === 'encrypt'
          ? await this.#lib.C_EncryptAsync(s, input, output)
          : await this.#lib.C_DecryptAsync(s, input, output);
      active = false;
      return Buffer.from(result);
    } catch (e) {
      const ckr = ckrOf(e);
      // Any CKR error from C_Encrypt/C_Decrypt but CKR_BUFFER_TOO_SMALL ends the operation; otherwise it may still
      // be active on the session, which would refuse the next C_*Init: start over on a fresh session.
      if (active && (!ckr || ckr.name === 'CKR_BUFFER_TOO_SMALL')) {
        try {
          this.#replaceSession();
        } catch {
          // the next operation meets the same trouble and reports it
        }
      }
      if (active && direction === 'decrypt' && ckr && DECRYPT_REJECTED.has(ckr.name))
        throw fail(
          'unwrap-failed',
          `the wrapped key does not verify under this key version (${ckr.name})`,
          e,
        );
      throw p11(direction === 'encrypt' ? 'C_Encrypt (AES-GCM)' : 'C_Decrypt (AES-GCM)', e);
    } finally {
      output.fill(0);
    }
  }
}

function openSession(lib: pkcs11js.PKCS11, slot: Handle): Handle {
  try {
    return lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  } catch (e) {
    throw p11('C_OpenSession', e);
  }
}

function closeSessionQuietly(lib: pkcs11js.PKCS11, session: Handle): void {
  try {
    lib.C_CloseSession(session);
  } catch {
    // already closed, or the token went away
  }
}

/**
 * Logs the user in on `session`. PKCS#11 login state is shared by all sessions of the process with the token, so a
 * second provider's C_Login answers CKR_USER_ALREADY_LOGGED_IN without looking at its PIN: that PIN is checked
 * against the first one's instead. `register` counts the provider as a user of the login (for logout on close).
 */
function login(
  module: LoadedModule,
  slot: Handle,
  tokenLabel: string,
  pin: string,
  session: Handle,
  register: boolean,
): void {
  const key = slot.toString('hex');
  const digest = pinDigest(pin);
  const existing = module.logins.get(key);
  try {
    module.lib.C_Login(session, pkcs11js.CKU_USER, pin);
    if (existing) existing.pinDigest = digest;
  } catch (e) {
    const ckr = ckrOf(e);
    if (ckr?.name !== 'CKR_USER_ALREADY_LOGGED_IN') {
      if (ckr && PIN_ERRORS.has(ckr.name))
        throw fail(
          'unavailable',
          `PKCS#11 login to token "${tokenLabel}" refused: wrong or unusable PIN (${ckr.name})`,
          e,
        );
      throw p11(`C_Login to token "${tokenLabel}"`, e);
    }
    if (existing && !timingSafeEqual(existing.pinDigest, digest))
      throw fail(
        'unavailable',
        `PKCS#11 login to token "${tokenLabel}" refused: wrong PIN (differs from the one this process logged in with)`,
      );
  }
  if (!register) return;
  if (existing) existing.sessions++;
  else module.logins.set(key, { sessions: 1, pinDigest: digest });
}
