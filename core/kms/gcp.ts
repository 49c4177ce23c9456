/**
 * The `gcp` KMS provider: key-encryption keys are Cloud KMS CryptoKeys (purpose ENCRYPT_DECRYPT, algorithm
 * GOOGLE_SYMMETRIC_ENCRYPTION) in one key ring, driven through the official `@google-cloud/kms` client.
 *
 * Key ids are full CryptoKey resource names, `projects/P/locations/L/keyRings/R/cryptoKeys/K`, and must lie in the
 * configured key ring: a wrapped key read from artifact metadata can never steer the operator to another ring.
 * `keyName('K')` builds one. Versions are the numeric last segment of the CryptoKeyVersion name ("1", "2", ...).
 *
 * - wrap: Encrypt on the CryptoKey (Cloud KMS picks the primary version and says which in the response `name`),
 *   with the caller's associated data as `additional_authenticated_data`. Request and response CRC32C checksums are
 *   sent and verified, as Google recommends.
 * - unwrap: GetCryptoKeyVersion for the recorded version first (so an unknown version is `not-found` and a destroyed
 *   one is `destroyed`, even though the Cloud KMS ciphertext names its version itself), then Decrypt with the same
 *   associated data and checksums.
 * - destroy: DestroyCryptoKeyVersion. Cloud KMS first moves a version to DESTROY_SCHEDULED; the material is erased
 *   `destroy_scheduled_duration` later (30 days by default, at least 24 hours, set per key at creation:
 *   `destroyScheduledDurationSeconds`). Decrypt is refused from the moment of the call, so this provider reports the
 *   version as `destroyed` at once. Until the scheduled time an administrator with
 *   `cloudkms.cryptoKeyVersions.restore` could still bring it back (it returns DISABLED).
 */
import { KeyManagementServiceClient, type protos } from '@google-cloud/kms';
import { status } from '@grpc/grpc-js';
import {
  KmsError,
  type KeyVersionInfo,
  type KmsErrorCode,
  type KmsProvider,
  type WrappedKey,
} from './provider.ts';
import type { CheckpointSigningKey } from './signing.ts';

type ClientOptions = NonNullable<ConstructorParameters<typeof KeyManagementServiceClient>[0]>;
/** The part of google-gax's CallOptions used here: the total time of a call, retries included. */
interface CallOptions {
  readonly timeout: number;
}
type CryptoKeyVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;

export interface GcpKmsProviderOptions {
  /** `projects/P/locations/L/keyRings/R`. It must exist; the provider creates keys in it but never key rings. */
  readonly keyRing: string;
  /** A ready client; the provider does not close it. Otherwise one is made from `clientOptions` and closed on close(). */
  readonly client?: KeyManagementServiceClient;
  /**
   * Options for the client the provider makes: e.g. `{ apiEndpoint, port, sslCreds }` for a private endpoint or a
   * test server, or `{ keyFilename }` for explicit credentials. Default: Application Default Credentials against
   * cloudkms.googleapis.com.
   */
  readonly clientOptions?: ClientOptions;
  /** Total time for one operation including the library's retries (ms). Default 30 000. */
  readonly timeoutMs?: number;
  /** Protection level of new keys. Default SOFTWARE. */
  readonly protectionLevel?: 'SOFTWARE' | 'HSM';
  /** How long destroyed versions stay restorable before the material is erased (new keys only; ≥ 86 400). */
  readonly destroyScheduledDurationSeconds?: number;
}

// Project ids (6-30 of [a-z0-9-]), legacy domain-scoped ids (example.com:project) and project numbers.
const KEY_RING_RE =
  /^projects\/[a-z0-9][a-z0-9.:-]{0,62}\/locations\/[a-z0-9-]{1,63}\/keyRings\/[a-zA-Z0-9_-]{1,63}$/;
const KEY_ID_RE = /^[a-zA-Z0-9_-]{1,63}$/;
const VERSION_RE = /^[1-9][0-9]{0,18}$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MAX_DEK_BYTES = 64;
const MAX_AAD_BYTES = 65536;

/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as Cloud KMS uses for its integrity fields. Node's
 * zlib.crc32 is the other CRC-32 (IEEE), so it cannot be used here.
 */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC32C_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function int64(value: protos.google.protobuf.IInt64Value | null | undefined): number | undefined {
  if (value?.value === null || value?.value === undefined) return undefined;
  return Number(String(value.value));
}

/** A copy of a bytes field (gRPC gives Buffers; the REST fallback may give base64 strings). */
export function bytes(value: Uint8Array | string | null | undefined): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  return Buffer.from(value ?? new Uint8Array(0));
}

/** A CryptoKeyVersionState as a name (the gRPC transport gives names; the REST fallback gives numbers). */
export function stateName(state: CryptoKeyVersion['state']): string {
  if (typeof state === 'string') return state;
  const names: Record<number, string> = {
    1: 'ENABLED',
    2: 'DISABLED',
    3: 'DESTROYED',
    4: 'DESTROY_SCHEDULED',
    5: 'PENDING_GENERATION',
    9: 'PENDING_EXTERNAL_DESTRUCTION',
    10: 'EXTERNAL_DESTRUCTION_FAILED',
  };
  return names[state ?? 0] ?? `STATE_${String(state)}`;
}

/** States in which the version's material is gone or irrevocably on its way out. */
const DESTROYED_STATES = new Set([
  'DESTROYED',
  'DESTROY_SCHEDULED',
  'PENDING_EXTERNAL_DESTRUCTION',
  'EXTERNAL_DESTRUCTION_FAILED',
]);

export function grpcCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export function errorText(error: unknown): string {
  const e = error as { details?: unknown; message?: unknown } | null;
  if (typeof e?.details === 'string' && e.details !== '') return e.details;
  return typeof e?.message === 'string' ? e.message : String(error);
}

/** Maps a Cloud KMS / gRPC failure to a KmsError; `overrides` picks codes that depend on the operation. */
export function mapError(
  error: unknown,
  what: string,
  overrides: Partial<Record<number, KmsErrorCode>> = {},
): KmsError {
  if (error instanceof KmsError) return error;
  const code = grpcCode(error);
  const text = errorText(error);
  const override = code === undefined ? undefined : overrides[code];
  if (override) return new KmsError(override, `${what}: ${text}`, { cause: error });
  switch (code) {
    case status.NOT_FOUND:
      return new KmsError('not-found', `${what}: ${text}`, { cause: error });
    case status.ALREADY_EXISTS:
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
      return new KmsError('invalid', `${what}: ${text}`, { cause: error });
    case status.PERMISSION_DENIED:
    case status.UNAUTHENTICATED:
      return new KmsError(
        'unavailable',
        `${what}: Cloud KMS refused the caller (${text}); check the operator's credentials and IAM roles`,
        { cause: error },
      );
    default:
      return new KmsError('unavailable', `${what}: Cloud KMS failed: ${text}`, { cause: error });
  }
}

export class GcpKmsProvider implements KmsProvider {
  readonly name = 'gcp';
  readonly keyRing: string;
  readonly #client: KeyManagementServiceClient;
  readonly #ownsClient: boolean;
  readonly #call: CallOptions;
  readonly #protectionLevel: 'SOFTWARE' | 'HSM';
  readonly #destroyScheduledSeconds: number | undefined;
  #closed = false;

  constructor(options: GcpKmsProviderOptions) {
    if (!KEY_RING_RE.test(options.keyRing)) {
      throw new KmsError(
        'invalid',
        `keyRing must be projects/P/locations/L/keyRings/R, got "${options.keyRing}"`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
      throw new KmsError('invalid', 'timeoutMs must be positive');
    const destroySeconds = options.destroyScheduledDurationSeconds;
    if (destroySeconds !== undefined && !(Number.isInteger(destroySeconds) && destroySeconds >= 86_400)) {
      throw new KmsError(
        'invalid',
        'destroyScheduledDurationSeconds must be an integer of at least 86400 (24 hours)',
      );
    }
    this.keyRing = options.keyRing;
    this.#call = { timeout: timeoutMs };
    this.#protectionLevel = options.protectionLevel ?? 'SOFTWARE';
    this.#destroyScheduledSeconds = destroySeconds;
    if (options.client) {
      this.#client = options.client;
      this.#ownsClient = false;
    } else {
      this.#client = new KeyManagementServiceClient(options.clientOptions ?? {});
      this.#ownsClient = true;
    }
  }

  /** The full CryptoKey resource name (the key id) for a short CryptoKey id in this provider's key ring. */
  keyName(cryptoKeyId: string): string {
    if (!KEY_ID_RE.test(cryptoKeyId)) {
      throw new KmsError('invalid', `a CryptoKey id is 1-63 of [a-zA-Z0-9_-], got "${cryptoKeyId}"`);
    }
    return `${this.keyRing}/cryptoKeys/${cryptoKeyId}`;
  }

  async createKey(keyId: string): Promise<void> {
    const cryptoKeyId = this.#shortId(keyId);
    const client = this.#ready();
    try {
      await client.createCryptoKey(
        {
          parent: this.keyRing,
          cryptoKeyId,
          cryptoKey: {
            purpose: 'ENCRYPT_DECRYPT',
            versionTemplate: {
              algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
              protectionLevel: this.#protectionLevel,
            },
            ...(this.#destroyScheduledSeconds === undefined
              ? {}
              : { destroyScheduledDuration: { seconds: this.#destroyScheduledSeconds } }),
            labels: { 'managed-by': 'strongroom' },
          },
        },
        this.#call,
      );
    } catch (error) {
      if (grpcCode(error) === status.ALREADY_EXISTS) {
        throw new KmsError('invalid', `key ${keyId} already exists`, { cause: error });
      }
      throw mapError(error, `creating key ${keyId}`);
    }
  }

  async wrap(keyId: string, plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedKey> {
    this.#shortId(keyId);
    if (plaintext.length === 0 || plaintext.length > MAX_DEK_BYTES) {
      throw new KmsError(
        'invalid',
        `a data key to wrap is 1-${MAX_DEK_BYTES} bytes, got ${plaintext.length}`,
      );
    }
    if (aad.length > MAX_AAD_BYTES)
      throw new KmsError('invalid', `associated data is at most ${MAX_AAD_BYTES} bytes`);
    const client = this.#ready();
    let response: protos.google.cloud.kms.v1.IEncryptResponse;
    try {
      [response] = await client.encrypt(
        {
          name: keyId,
          plaintext,
          additionalAuthenticatedData: aad,
          plaintextCrc32c: { value: crc32c(plaintext) },
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        this.#call,
      );
    } catch (error) {
      if (grpcCode(error) === status.FAILED_PRECONDITION) throw await this.#primaryUnusable(keyId, error);
      throw mapError(error, `wrapping with ${keyId}`);
    }
    // Integrity checks Google documents for Encrypt: the request arrived intact and the response did too.
    if (
      response.verifiedPlaintextCrc32c !== true ||
      response.verifiedAdditionalAuthenticatedDataCrc32c !== true
    ) {
      throw new KmsError(
        'unavailable',
        `wrapping with ${keyId}: Cloud KMS did not confirm the request checksums (the request may have been corrupted in transit)`,
      );
    }
    const ciphertext = bytes(response.ciphertext);
    if (ciphertext.length === 0 || int64(response.ciphertextCrc32c) !== crc32c(ciphertext)) {
      throw new KmsError(
        'unavailable',
        `wrapping with ${keyId}: the ciphertext from Cloud KMS does not match its CRC32C checksum (corrupted in transit)`,
      );
    }
    const prefix = `${keyId}/cryptoKeyVersions/`;
    const keyVersion = response.name?.startsWith(prefix) ? response.name.slice(prefix.length) : '';
    if (!VERSION_RE.test(keyVersion)) {
      throw new KmsError(
        'unavailable',
        `wrapping with ${keyId}: Cloud KMS answered for an unexpected key version "${response.name ?? ''}"`,
      );
    }
    return { provider: this.name, keyId, keyVersion, ciphertext: ciphertext.toString('base64') };
  }

  async unwrap(wrapped: WrappedKey, aad: Uint8Array): Promise<Buffer> {
    const ciphertext = this.#checkWrapped(wrapped);
    const client = this.#ready();
    const versionName = `${wrapped.keyId}/cryptoKeyVersions/${wrapped.keyVersion}`;
    // The ciphertext names its own version, so check the recorded one: unknown → not-found, destroyed → destroyed.
    await this.#requireEnabled(versionName);
    let response: protos.google.cloud.kms.v1.IDecryptResponse;
    try {
      [response] = await client.decrypt(
        {
          name: wrapped.keyId,
          ciphertext,
          additionalAuthenticatedData: aad,
          ciphertextCrc32c: { value: crc32c(ciphertext) },
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        this.#call,
      );
    } catch (error) {
      const code = grpcCode(error);
      if (code === status.FAILED_PRECONDITION) {
        // The version the ciphertext names is not usable; Cloud KMS says which state it is in.
        const destroyed = /current state is: (DESTROYED|DESTROY_SCHEDULED)/.test(errorText(error));
        throw new KmsError(
          destroyed ? 'destroyed' : 'unavailable',
          `unwrapping with ${versionName}: ${errorText(error)}`,
          { cause: error },
        );
      }
      throw mapError(error, `unwrapping with ${versionName}`, { [status.INVALID_ARGUMENT]: 'unwrap-failed' });
    }
    const plaintext = bytes(response.plaintext);
    // Keep one copy of the DEK: the caller zeroes the one returned, this one is the library's.
    if (response.plaintext instanceof Uint8Array) response.plaintext.fill(0);
    if (int64(response.plaintextCrc32c) !== crc32c(plaintext)) {
      plaintext.fill(0);
      throw new KmsError(
        'unavailable',
        `unwrapping with ${versionName}: the plaintext from Cloud KMS does not match its CRC32C checksum (corrupted in transit)`,
      );
    }
    if (plaintext.length === 0)
      throw new KmsError('unwrap-failed', `unwrapping with ${versionName}: empty plaintext`);
    return plaintext;
  }

  async versions(keyId: string): Promise<readonly KeyVersionInfo[]> {
    this.#shortId(keyId);
    const client = this.#ready();
    try {
      const [[key], [versions]] = await Promise.all([
        client.getCryptoKey({ name: keyId }, this.#call),
        client.listCryptoKeyVersions({ parent: keyId }, this.#call),
      ]);
      const primary = key.primary?.name ?? undefined;
      return versions
        .map((v): KeyVersionInfo & { n: number } => {
          const version = (v.name ?? '').split('/').pop() ?? '';
          return {
            n: Number(version),
            version,
            state: DESTROYED_STATES.has(stateName(v.state)) ? 'destroyed' : 'enabled',
            primary: v.name === primary && !DESTROYED_STATES.has(stateName(v.state)),
            createdAt: new Date(
              Number(String(v.createTime?.seconds ?? 0)) * 1000 +
                Math.floor((v.createTime?.nanos ?? 0) / 1e6),
            ).toISOString(),
          };
        })
        .sort((a, b) => a.n - b.n)
        .map(({ version, state, primary: isPrimary, createdAt }) => ({
          version,
          state,
          primary: isPrimary,
          createdAt,
        }));
    } catch (error) {
      throw mapError(error, `listing the versions of ${keyId}`);
    }
  }

  async rotate(keyId: string): Promise<string> {
    this.#shortId(keyId);
    const client = this.#ready();
    let created: CryptoKeyVersion;
    try {
      // The library does not retry this call (non-idempotent): a lost response never adds two versions.
      [created] = await client.createCryptoKeyVersion({ parent: keyId, cryptoKeyVersion: {} }, this.#call);
    } catch (error) {
      throw mapError(error, `rotating ${keyId}`);
    }
    const name = created.name ?? '';
    const version = name.split('/').pop() ?? '';
    if (!name.startsWith(`${keyId}/cryptoKeyVersions/`) || !VERSION_RE.test(version)) {
      throw new KmsError(
        'unavailable',
        `rotating ${keyId}: Cloud KMS created an unexpected version "${name}"`,
      );
    }
    try {
      await this.#waitGenerated(client, name, created);
      await client.updateCryptoKeyPrimaryVersion({ name: keyId, cryptoKeyVersionId: version }, this.#call);
    } catch (error) {
      throw mapError(error, `making ${name} primary`);
    }
    return version;
  }

  async destroyVersion(keyId: string, version: string): Promise<void> {
    this.#shortId(keyId);
    if (!VERSION_RE.test(version))
      throw new KmsError('invalid', `a key version is a positive number, got "${version}"`);
    const client = this.#ready();
    const name = `${keyId}/cryptoKeyVersions/${version}`;
    let primary: string | null | undefined;
    try {
      const [key] = await client.getCryptoKey({ name: keyId }, this.#call);
      primary = key.primary?.name;
    } catch (error) {
      throw mapError(error, `destroying ${name}`);
    }
    if (primary === name) {
      throw new KmsError('invalid', `${name} is the primary version: rotate first, or destroy the whole key`);
    }
    await this.#destroy(client, name);
  }

  async destroyKey(keyId: string): Promise<void> {
    this.#shortId(keyId);
    const client = this.#ready();
    let versions: CryptoKeyVersion[];
    try {
      [versions] = await client.listCryptoKeyVersions({ parent: keyId }, this.#call);
    } catch (error) {
      throw mapError(error, `destroying ${keyId}`);
    }
    for (const v of versions) {
      if (!DESTROYED_STATES.has(stateName(v.state))) await this.#destroy(client, v.name ?? '');
    }
  }

  /**
   * The Ed25519 checkpoint signing key `cryptoKeyId` in this key ring (purpose ASYMMETRIC_SIGN, algorithm
   * EC_SIGN_ED25519), created at first use (gcp-signing.ts).
   */
  async checkpointSigningKey(cryptoKeyId: string): Promise<CheckpointSigningKey> {
    const name = this.keyName(cryptoKeyId);
    const { GcpCheckpointSigningKey } = await import('./gcp-signing.ts');
    return new GcpCheckpointSigningKey({
      client: () => this.#ready(),
      cryptoKey: name,
      keyRing: this.keyRing,
      call: this.#call,
      protectionLevel: this.#protectionLevel,
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsClient) await this.#client.close();
  }

  #ready(): KeyManagementServiceClient {
    if (this.#closed) throw new KmsError('unavailable', 'the gcp KMS provider is closed');
    return this.#client;
  }

  /** Checks that `keyId` is a CryptoKey in the configured key ring; returns the short CryptoKey id. */
  #shortId(keyId: string): string {
    const prefix = `${this.keyRing}/cryptoKeys/`;
    const id = keyId.startsWith(prefix) ? keyId.slice(prefix.length) : '';
    if (!KEY_ID_RE.test(id)) {
      throw new KmsError(
        'invalid',
        `a gcp key id is a CryptoKey name in ${this.keyRing} (${prefix}<id>), got "${keyId}"`,
      );
    }
    return id;
  }

  #checkWrapped(wrapped: WrappedKey): Buffer {
    if (wrapped.provider !== this.name) {
      throw new KmsError(
        'invalid',
        `wrapped key belongs to provider "${wrapped.provider}", not "${this.name}"`,
      );
    }
    this.#shortId(wrapped.keyId);
    if (!VERSION_RE.test(wrapped.keyVersion)) {
      throw new KmsError('invalid', `a key version is a positive number, got "${wrapped.keyVersion}"`);
    }
    if (!BASE64_RE.test(wrapped.ciphertext) || wrapped.ciphertext.length === 0) {
      throw new KmsError('invalid', 'wrapped key ciphertext is not base64');
    }
    return Buffer.from(wrapped.ciphertext, 'base64');
  }

  async #requireEnabled(versionName: string): Promise<void> {
    const client = this.#ready();
    let version: CryptoKeyVersion;
    try {
      [version] = await client.getCryptoKeyVersion({ name: versionName }, this.#call);
    } catch (error) {
      throw mapError(error, `looking up ${versionName}`);
    }
    const state = stateName(version.state);
    if (DESTROYED_STATES.has(state)) {
      throw new KmsError(
        'destroyed',
        `${versionName} was destroyed (state ${state}): what it wrapped is unrecoverable`,
      );
    }
    if (state !== 'ENABLED') {
      throw new KmsError(
        'unavailable',
        `${versionName} is ${state}, not ENABLED: a KMS administrator must enable it`,
      );
    }
  }

  /** Encrypt failed a precondition: `destroyed` if the primary was destroyed, else `unavailable`. */
  async #primaryUnusable(keyId: string, error: unknown): Promise<KmsError> {
    try {
      const client = this.#ready();
      const [key] = await client.getCryptoKey({ name: keyId }, this.#call);
      const state = stateName(key.primary?.state);
      if (!key.primary || DESTROYED_STATES.has(state)) {
        return new KmsError(
          'destroyed',
          `wrapping with ${keyId}: the primary version was destroyed (${errorText(error)})`,
          {
            cause: error,
          },
        );
      }
    } catch {
      // Report the original failure below.
    }
    return new KmsError('unavailable', `wrapping with ${keyId}: ${errorText(error)}`, { cause: error });
  }

  /** Waits (bounded by the operation timeout) while an HSM version is still PENDING_GENERATION. */
  async #waitGenerated(
    client: KeyManagementServiceClient,
    name: string,
    created: CryptoKeyVersion,
  ): Promise<void> {
    const deadline = Date.now() + this.#call.timeout;
    let state = stateName(created.state);
    for (let delay = 100; state === 'PENDING_GENERATION'; delay = Math.min(delay * 2, 2000)) {
      if (Date.now() + delay > deadline) {
        throw new KmsError('unavailable', `rotating: ${name} is still PENDING_GENERATION`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      const [current] = await client.getCryptoKeyVersion({ name }, this.#call);
      state = stateName(current.state);
    }
    if (state !== 'ENABLED') throw new KmsError('unavailable', `rotating: ${name} is ${state}, not ENABLED`);
  }

  async #destroy(client: KeyManagementServiceClient, name: string): Promise<void> {
    try {
      await client.destroyCryptoKeyVersion({ name }, this.#call);
    } catch (error) {
      // Already destroyed (or scheduled) by someone else: the goal is reached.
      if (
        grpcCode(error) === status.FAILED_PRECONDITION &&
        /current state is: DESTROY/.test(errorText(error))
      )
        return;
      throw mapError(error, `destroying ${name}`);
    }
  }
}
