/**
 * A local Cloud KMS: a gRPC server implementing the subset of `google.cloud.kms.v1.KeyManagementService` that the gcp
 * provider uses, loaded from the protos that `@google-cloud/kms` itself ships, over real TLS on 127.0.0.1.
 *
 * No official Cloud KMS emulator exists, so tests run the real `@google-cloud/kms` client (google-gax, grpc-js, the
 * library's own request routing headers, retries and timeouts) against this server. It follows the documented
 * behaviour that the provider relies on:
 * - key rings must exist before keys are created in them; versions are numbered 1, 2, ... per key;
 * - Encrypt on a CryptoKey uses its primary version; the ciphertext carries which version made it, so Decrypt needs
 *   only the CryptoKey name; AES-256-GCM binds the additional authenticated data;
 * - CRC32C: request checksums are verified (INVALID_ARGUMENT on mismatch, `verified_*` set when checked), response
 *   checksums are filled in;
 * - DestroyCryptoKeyVersion moves a version to DESTROY_SCHEDULED with `destroy_time` = now +
 *   `destroy_scheduled_duration` (30 days unless set at creation); at that time it becomes DESTROYED and the key
 *   material is erased. A version that is not ENABLED fails Encrypt/Decrypt with FAILED_PRECONDITION
 *   "<version> is not enabled, current state is: <STATE>.";
 * - a ciphertext that does not verify fails with INVALID_ARGUMENT "Decryption failed: the ciphertext is invalid.";
 * - asymmetric signing keys (purpose ASYMMETRIC_SIGN, algorithm EC_SIGN_ED25519 only) have no primary version:
 *   GetPublicKey and AsymmetricSign name a CryptoKeyVersion. GetPublicKey answers the SubjectPublicKeyInfo PEM with
 *   `pem_crc32c`; AsymmetricSign signs `data` itself (pure Ed25519, node crypto), verifies `data_crc32c` (setting
 *   `verified_data_crc32c`), fills `signature_crc32c`, and refuses a `digest` for Ed25519 as Cloud KMS does.
 *
 * Test hooks: every request is recorded (`requests`), a response can be altered before it is sent
 * (`setResponseHook`), the next call of a method can be made to fail (`failNext`) and the clock can be advanced
 * (`advanceClock`) to let scheduled destructions complete; `importSigningKey` creates an Ed25519 signing key from key material
 * the test knows (as Cloud KMS key import would), so a test can compare with the same key in software.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as cryptoSign,
} from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { crc32c } from '../../core/kms/gcp.ts';
import { createCertificateAuthority, issueCertificate } from '../cluster/pki.ts';

const require = createRequire(import.meta.url);
/** `@google-cloud/kms/build/protos` (the KMS protos) and `google-gax/build/protos` (google/api, longrunning, ...). */
const KMS_PACKAGE = path.dirname(require.resolve('@google-cloud/kms/package.json'));
const KMS_PROTOS = path.join(KMS_PACKAGE, 'build', 'protos');
// google-gax exports no package.json: its main module is build/src/index.js, next to build/protos.
const GAX_PROTOS = path.join(
  path.dirname(require.resolve('google-gax', { paths: [KMS_PACKAGE] })),
  '..',
  'protos',
);

type VersionState = 'ENABLED' | 'DISABLED' | 'DESTROY_SCHEDULED' | 'DESTROYED';

interface FakeVersion {
  readonly id: number;
  /** Random identifier written into every ciphertext this version makes. */
  readonly tag: Buffer;
  /** AES-256 key (ENCRYPT_DECRYPT) or Ed25519 private key as PKCS#8 DER (ASYMMETRIC_SIGN); null once destroyed. */
  material: Buffer | null;
  state: VersionState;
  readonly createMs: number;
  destroyAtMs: number | null;
}

interface FakeKey {
  readonly name: string;
  readonly createMs: number;
  readonly destroyScheduledMs: number;
  readonly protectionLevel: string;
  readonly purpose: 'ENCRYPT_DECRYPT' | 'ASYMMETRIC_SIGN';
  /** GOOGLE_SYMMETRIC_ENCRYPTION or EC_SIGN_ED25519. */
  readonly algorithm: string;
  readonly versions: FakeVersion[];
  primary: number | null;
}

interface Int64Value {
  value: string | number;
}

export interface RecordedRequest {
  readonly method: string;
  readonly request: Record<string, unknown>;
  /** Request metadata (headers), first value of each. */
  readonly metadata: Readonly<Record<string, string>>;
}

export interface FakeGcpKms {
  /** '127.0.0.1' */
  readonly endpoint: string;
  readonly port: number;
  /** The CA that signed the server certificate (for `grpc.credentials.createSsl`). */
  readonly caPem: string;
  /** Every request served so far, oldest first. */
  readonly requests: RecordedRequest[];
  /** Creates a key ring (as an administrator would before Strongroom runs). */
  createKeyRing(name: string): void;
  /** Called with each successful response just before it is sent; may mutate it. `undefined` removes the hook. */
  setResponseHook(hook: ((method: string, response: Record<string, unknown>) => void) | undefined): void;
  /** Makes the next call of `method` fail with `code` (a grpc status) and `details`. */
  failNext(method: string, code: grpc.status, details: string): void;
  /**
   * Creates the ASYMMETRIC_SIGN CryptoKey `name` (EC_SIGN_ED25519) whose version 1 is the given Ed25519 private key
   * (PKCS#8 DER), as importing a key would.
   */
  importSigningKey(name: string, pkcs8: Buffer): void;
  /** Moves the server's clock forward (scheduled destructions that fall due complete on next access). */
  advanceClock(ms: number): void;
  /** The server-side state of a CryptoKeyVersion, or undefined if it does not exist. */
  inspectVersion(versionName: string): { state: VersionState; hasKeyMaterial: boolean } | undefined;
  stop(): Promise<void>;
}

export interface FakeGcpKmsOptions {
  /** Key rings that exist from the start. Default: `projects/strongroom-test/locations/global/keyRings/strongroom`. */
  readonly keyRings?: readonly string[];
}

export const DEFAULT_TEST_KEY_RING = 'projects/strongroom-test/locations/global/keyRings/strongroom';

const DAY_MS = 24 * 3600 * 1000;
const CIPHERTEXT_FORMAT = 0x01;
const TAG_BYTES = 16;
const IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
const HEADER_BYTES = 1 + TAG_BYTES + IV_BYTES;
const KEY_RING_RE = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[a-zA-Z0-9_-]{1,63}$/;
const ID_RE = /^[a-zA-Z0-9_-]{1,63}$/;

class Fault extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, details: string) {
    super(details);
    this.code = code;
  }
}

function timestamp(ms: number): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

function durationMs(duration: unknown): number | undefined {
  if (duration === null || typeof duration !== 'object') return undefined;
  const d = duration as { seconds?: string | number; nanos?: number };
  return Number(d.seconds ?? 0) * 1000 + Math.floor((d.nanos ?? 0) / 1_000_000);
}

function bytesField(value: unknown): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

/** Verifies an optional request checksum the way Cloud KMS does: INVALID_ARGUMENT if it does not match. */
function checkCrc(field: string, data: Buffer, crc: unknown): boolean {
  if (crc === null || crc === undefined) return false;
  if (Number((crc as Int64Value).value) !== crc32c(data)) {
    throw new Fault(
      grpc.status.INVALID_ARGUMENT,
      `The checksum in field ${field} did not match the data in field ${field.replace(/_crc32c$/, '')}.`,
    );
  }
  return true;
}

function gcmAad(header: Buffer, aad: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(header.length);
  return Buffer.concat([length, header, aad]);
}

export async function startFakeGcpKms(options: FakeGcpKmsOptions = {}): Promise<FakeGcpKms> {
  const definition = protoLoader.loadSync('google/cloud/kms/v1/service.proto', {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [KMS_PROTOS, GAX_PROTOS],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    google: { cloud: { kms: { v1: { KeyManagementService: grpc.ServiceClientConstructor } } } };
  };
  const service = loaded.google.cloud.kms.v1.KeyManagementService.service;

  let clockOffsetMs = 0;
  const now = (): number => Date.now() + clockOffsetMs;
  const keyRings = new Map<string, number>();
  const keys = new Map<string, FakeKey>();
  const requests: RecordedRequest[] = [];
  const pendingFaults = new Map<string, { code: grpc.status; details: string }>();
  let responseHook: ((method: string, response: Record<string, unknown>) => void) | undefined;

  const addKeyRing = (name: string): void => {
    if (!KEY_RING_RE.test(name)) throw new Error(`not a key ring resource name: ${name}`);
    keyRings.set(name, Date.now());
  };
  for (const ring of options.keyRings ?? [DEFAULT_TEST_KEY_RING]) addKeyRing(ring);

  const versionName = (key: FakeKey, v: FakeVersion): string => `${key.name}/cryptoKeyVersions/${v.id}`;

  /** Completes scheduled destructions that are due: the state becomes DESTROYED and the material is erased. */
  const settle = (v: FakeVersion): FakeVersion => {
    if (v.state === 'DESTROY_SCHEDULED' && v.destroyAtMs !== null && now() >= v.destroyAtMs) {
      v.state = 'DESTROYED';
      v.material?.fill(0);
      v.material = null;
    }
    return v;
  };

  const versionResource = (key: FakeKey, v: FakeVersion): Record<string, unknown> => {
    settle(v);
    return {
      name: versionName(key, v),
      state: v.state,
      protectionLevel: key.protectionLevel,
      algorithm: key.algorithm,
      createTime: timestamp(v.createMs),
      generateTime: timestamp(v.createMs),
      ...(v.destroyAtMs === null ? {} : { destroyTime: timestamp(v.destroyAtMs) }),
      ...(v.state === 'DESTROYED' && v.destroyAtMs !== null
        ? { destroyEventTime: timestamp(v.destroyAtMs) }
        : {}),
    };
  };

  const keyResource = (key: FakeKey): Record<string, unknown> => {
    const primary = key.versions.find((v) => v.id === key.primary);
    return {
      name: key.name,
      purpose: key.purpose,
      createTime: timestamp(key.createMs),
      versionTemplate: { algorithm: key.algorithm, protectionLevel: key.protectionLevel },
      destroyScheduledDuration: { seconds: String(Math.floor(key.destroyScheduledMs / 1000)), nanos: 0 },
      ...(primary ? { primary: versionResource(key, primary) } : {}),
    };
  };

  const getKey = (name: unknown): FakeKey => {
    const key = typeof name === 'string' ? keys.get(name) : undefined;
    if (!key) throw new Fault(grpc.status.NOT_FOUND, `${String(name)} not found.`);
    return key;
  };

  const getVersion = (name: unknown): { key: FakeKey; version: FakeVersion } => {
    const match = typeof name === 'string' ? /^(.+)\/cryptoKeyVersions\/(\d+)$/.exec(name) : null;
    const key = match ? keys.get(match[1] ?? '') : undefined;
    const version = key?.versions.find((v) => String(v.id) === match?.[2]);
    if (!key || !version) throw new Fault(grpc.status.NOT_FOUND, `${String(name)} not found.`);
    return { key, version: settle(version) };
  };

  const requireEnabled = (key: FakeKey, v: FakeVersion): Buffer => {
    settle(v);
    if (v.state !== 'ENABLED' || !v.material) {
      throw new Fault(
        grpc.status.FAILED_PRECONDITION,
        `${versionName(key, v)} is not enabled, current state is: ${v.state}.`,
      );
    }
    return v.material;
  };

  const requirePurpose = (key: FakeKey, purpose: FakeKey['purpose']): void => {
    if (key.purpose !== purpose) {
      throw new Fault(
        grpc.status.FAILED_PRECONDITION,
        `${key.name} has purpose ${key.purpose}; this operation needs purpose ${purpose}.`,
      );
    }
  };

  const newVersion = (key: FakeKey, pkcs8?: Buffer): FakeVersion => {
    const material =
      key.purpose === 'ENCRYPT_DECRYPT'
        ? randomBytes(32)
        : (pkcs8 ?? generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' }));
    const v: FakeVersion = {
      id: key.versions.length + 1,
      tag: randomBytes(TAG_BYTES),
      material,
      state: 'ENABLED',
      createMs: now(),
      destroyAtMs: null,
    };
    key.versions.push(v);
    return v;
  };

  type Handler = (request: Record<string, unknown>) => Record<string, unknown>;
  const handlers: Record<string, Handler> = {
    GetKeyRing(req) {
      const created = typeof req.name === 'string' ? keyRings.get(req.name) : undefined;
      if (created === undefined) throw new Fault(grpc.status.NOT_FOUND, `${String(req.name)} not found.`);
      return { name: req.name, createTime: timestamp(created) };
    },

    CreateKeyRing(req) {
      const name = `${String(req.parent)}/keyRings/${String(req.keyRingId)}`;
      if (!KEY_RING_RE.test(name))
        throw new Fault(grpc.status.INVALID_ARGUMENT, `invalid key ring name ${name}`);
      if (keyRings.has(name)) throw new Fault(grpc.status.ALREADY_EXISTS, `${name} already exists.`);
      addKeyRing(name);
      return { name, createTime: timestamp(now()) };
    },

    CreateCryptoKey(req) {
      const parent = String(req.parent);
      const id = String(req.cryptoKeyId);
      if (!keyRings.has(parent)) throw new Fault(grpc.status.NOT_FOUND, `KeyRing ${parent} not found.`);
      if (!ID_RE.test(id)) {
        throw new Fault(
          grpc.status.INVALID_ARGUMENT,
          `crypto_key_id must match [a-zA-Z0-9_-]{1,63}, got "${id}"`,
        );
      }
      const spec = (req.cryptoKey ?? {}) as Record<string, unknown>;
      const purpose = spec.purpose;
      if (purpose !== 'ENCRYPT_DECRYPT' && purpose !== 'ASYMMETRIC_SIGN') {
        throw new Fault(
          grpc.status.INVALID_ARGUMENT,
          `this server supports only purposes ENCRYPT_DECRYPT and ASYMMETRIC_SIGN`,
        );
      }
      const template = (spec.versionTemplate ?? {}) as Record<string, unknown>;
      const algorithm = template.algorithm;
      if (
        purpose === 'ENCRYPT_DECRYPT' &&
        algorithm !== 'GOOGLE_SYMMETRIC_ENCRYPTION' &&
        algorithm !== 'CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED'
      ) {
        throw new Fault(grpc.status.INVALID_ARGUMENT, `unsupported algorithm ${String(algorithm)}`);
      }
      // Cloud KMS requires an algorithm for asymmetric keys; this server knows only Ed25519 among them.
      if (purpose === 'ASYMMETRIC_SIGN' && algorithm !== 'EC_SIGN_ED25519') {
        throw new Fault(
          grpc.status.INVALID_ARGUMENT,
          `unsupported algorithm ${String(algorithm)} for ASYMMETRIC_SIGN (this server knows EC_SIGN_ED25519)`,
        );
      }
      const name = `${parent}/cryptoKeys/${id}`;
      if (keys.has(name)) throw new Fault(grpc.status.ALREADY_EXISTS, `${name} already exists.`);
      const destroyScheduledMs = durationMs(spec.destroyScheduledDuration) ?? 30 * DAY_MS;
      if (destroyScheduledMs < DAY_MS) {
        throw new Fault(grpc.status.INVALID_ARGUMENT, 'destroy_scheduled_duration must be at least 24 hours');
      }
      const protectionLevel =
        typeof template.protectionLevel === 'string' &&
        template.protectionLevel !== 'PROTECTION_LEVEL_UNSPECIFIED'
          ? template.protectionLevel
          : 'SOFTWARE';
      const key: FakeKey = {
        name,
        createMs: now(),
        destroyScheduledMs,
        protectionLevel,
        purpose,
        algorithm: purpose === 'ASYMMETRIC_SIGN' ? 'EC_SIGN_ED25519' : 'GOOGLE_SYMMETRIC_ENCRYPTION',
        versions: [],
        primary: null,
      };
      keys.set(name, key);
      if (req.skipInitialVersionCreation !== true) {
        const first = newVersion(key);
        // Asymmetric keys have no primary version.
        if (purpose === 'ENCRYPT_DECRYPT') key.primary = first.id;
      }
      return keyResource(key);
    },

    GetCryptoKey(req) {
      return keyResource(getKey(req.name));
    },

    GetCryptoKeyVersion(req) {
      const { key, version } = getVersion(req.name);
      return versionResource(key, version);
    },

    ListCryptoKeyVersions(req) {
      const key = getKey(req.parent);
      return {
        cryptoKeyVersions: key.versions.map((v) => versionResource(key, v)),
        nextPageToken: '',
        totalSize: key.versions.length,
      };
    },

    CreateCryptoKeyVersion(req) {
      const key = getKey(req.parent);
      return versionResource(key, newVersion(key));
    },

    UpdateCryptoKeyPrimaryVersion(req) {
      const key = getKey(req.name);
      requirePurpose(key, 'ENCRYPT_DECRYPT');
      const version = key.versions.find((v) => String(v.id) === req.cryptoKeyVersionId);
      if (!version) {
        throw new Fault(
          grpc.status.NOT_FOUND,
          `${key.name}/cryptoKeyVersions/${String(req.cryptoKeyVersionId)} not found.`,
        );
      }
      requireEnabled(key, version);
      key.primary = version.id;
      return keyResource(key);
    },

    DestroyCryptoKeyVersion(req) {
      const { key, version } = getVersion(req.name);
      if (version.state !== 'ENABLED' && version.state !== 'DISABLED') {
        throw new Fault(
          grpc.status.FAILED_PRECONDITION,
          `${versionName(key, version)} is not in a destroyable state, current state is: ${version.state}.`,
        );
      }
      version.state = 'DESTROY_SCHEDULED';
      version.destroyAtMs = now() + key.destroyScheduledMs;
      return versionResource(key, version);
    },

    Encrypt(req) {
      const key = getKey(req.name);
      requirePurpose(key, 'ENCRYPT_DECRYPT');
      const plaintext = bytesField(req.plaintext);
      const aad = bytesField(req.additionalAuthenticatedData);
      if (plaintext.length === 0) throw new Fault(grpc.status.INVALID_ARGUMENT, 'plaintext is required.');
      if (plaintext.length > 65536 || aad.length > 65536) {
        throw new Fault(
          grpc.status.INVALID_ARGUMENT,
          'plaintext and additional_authenticated_data are limited to 64 KiB.',
        );
      }
      const verifiedPlaintext = checkCrc('plaintext_crc32c', plaintext, req.plaintextCrc32c);
      const verifiedAad = checkCrc(
        'additional_authenticated_data_crc32c',
        aad,
        req.additionalAuthenticatedDataCrc32c,
      );
      const primary = key.versions.find((v) => v.id === key.primary);
      if (!primary) throw new Fault(grpc.status.FAILED_PRECONDITION, `${key.name} has no primary version.`);
      const material = requireEnabled(key, primary);
      const header = Buffer.concat([Buffer.from([CIPHERTEXT_FORMAT]), primary.tag, randomBytes(IV_BYTES)]);
      const cipher = createCipheriv('aes-256-gcm', material, header.subarray(1 + TAG_BYTES));
      cipher.setAAD(gcmAad(header, aad));
      const ciphertext = Buffer.concat([
        header,
        cipher.update(plaintext),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
      return {
        name: versionName(key, primary),
        ciphertext,
        ciphertextCrc32c: { value: String(crc32c(ciphertext)) },
        verifiedPlaintextCrc32c: verifiedPlaintext,
        verifiedAdditionalAuthenticatedDataCrc32c: verifiedAad,
        protectionLevel: key.protectionLevel,
      };
    },

    Decrypt(req) {
      const key = getKey(req.name);
      requirePurpose(key, 'ENCRYPT_DECRYPT');
      const ciphertext = bytesField(req.ciphertext);
      const aad = bytesField(req.additionalAuthenticatedData);
      checkCrc('ciphertext_crc32c', ciphertext, req.ciphertextCrc32c);
      checkCrc('additional_authenticated_data_crc32c', aad, req.additionalAuthenticatedDataCrc32c);
      const invalid = new Fault(
        grpc.status.INVALID_ARGUMENT,
        'Decryption failed: the ciphertext is invalid.',
      );
      if (ciphertext.length < HEADER_BYTES + GCM_TAG_BYTES || ciphertext[0] !== CIPHERTEXT_FORMAT)
        throw invalid;
      const header = ciphertext.subarray(0, HEADER_BYTES);
      const tag = header.subarray(1, 1 + TAG_BYTES);
      const version = key.versions.find((v) => v.tag.equals(tag));
      if (!version) throw invalid;
      const material = requireEnabled(key, version);
      const decipher = createDecipheriv('aes-256-gcm', material, header.subarray(1 + TAG_BYTES));
      decipher.setAAD(gcmAad(header, aad));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG_BYTES));
      let plaintext: Buffer;
      try {
        plaintext = Buffer.concat([
          decipher.update(ciphertext.subarray(HEADER_BYTES, ciphertext.length - GCM_TAG_BYTES)),
          decipher.final(),
        ]);
      } catch {
        throw invalid;
      }
      return {
        plaintext,
        plaintextCrc32c: { value: String(crc32c(plaintext)) },
        usedPrimary: version.id === key.primary,
        protectionLevel: key.protectionLevel,
      };
    },

    GetPublicKey(req) {
      const { key, version } = getVersion(req.name);
      requirePurpose(key, 'ASYMMETRIC_SIGN');
      const material = requireEnabled(key, version);
      const pem = createPublicKey(createPrivateKey({ key: material, format: 'der', type: 'pkcs8' }))
        .export({ format: 'pem', type: 'spki' })
        .toString();
      return {
        name: versionName(key, version),
        pem,
        pemCrc32c: { value: String(crc32c(Buffer.from(pem, 'utf8'))) },
        algorithm: key.algorithm,
        protectionLevel: key.protectionLevel,
        publicKeyFormat: 'PEM',
      };
    },

    AsymmetricSign(req) {
      const { key, version } = getVersion(req.name);
      requirePurpose(key, 'ASYMMETRIC_SIGN');
      if (req.digest !== null && req.digest !== undefined) {
        throw new Fault(
          grpc.status.INVALID_ARGUMENT,
          'EC_SIGN_ED25519 signs data, not a digest: set data instead of digest.',
        );
      }
      const data = bytesField(req.data);
      if (data.length > 65536) throw new Fault(grpc.status.INVALID_ARGUMENT, 'data is limited to 64 KiB.');
      const verifiedData = checkCrc('data_crc32c', data, req.dataCrc32c);
      const material = requireEnabled(key, version);
      const signature = cryptoSign(
        null,
        data,
        createPrivateKey({ key: material, format: 'der', type: 'pkcs8' }),
      );
      return {
        name: versionName(key, version),
        signature,
        signatureCrc32c: { value: String(crc32c(signature)) },
        verifiedDataCrc32c: verifiedData,
        verifiedDigestCrc32c: false,
        protectionLevel: key.protectionLevel,
      };
    },
  };

  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    implementation[method] = (
      call: grpc.ServerUnaryCall<Record<string, unknown>, Record<string, unknown>>,
      callback: grpc.sendUnaryData<Record<string, unknown>>,
    ) => {
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(call.metadata.getMap()))
        metadata[k] = Buffer.isBuffer(v) ? v.toString() : v;
      requests.push({ method, request: call.request, metadata });
      const fault = pendingFaults.get(method);
      if (fault) {
        pendingFaults.delete(method);
        callback({ code: fault.code, details: fault.details });
        return;
      }
      try {
        const response = handler(call.request);
        responseHook?.(method, response);
        callback(null, response);
      } catch (error) {
        if (error instanceof Fault) callback({ code: error.code, details: error.message });
        else callback({ code: grpc.status.INTERNAL, details: String(error) });
      }
    };
  }

  const ca = createCertificateAuthority('strongroom fake Cloud KMS CA', 1);
  const leaf = issueCertificate(ca, {
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validDays: 1,
  });
  const server = new grpc.Server();
  server.addService(service, implementation);
  const endpoint = '127.0.0.1';
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${endpoint}:0`,
      grpc.ServerCredentials.createSsl(
        null,
        [{ cert_chain: Buffer.from(leaf.certPem), private_key: Buffer.from(leaf.keyPem) }],
        false,
      ),
      (error, boundPort) => {
        if (error) reject(error);
        else resolve(boundPort);
      },
    );
  });

  return {
    endpoint,
    port,
    caPem: ca.certPem,
    requests,
    createKeyRing: addKeyRing,
    setResponseHook(hook) {
      responseHook = hook;
    },
    failNext(method, code, details) {
      if (!(method in handlers)) throw new Error(`the fake KMS does not implement ${method}`);
      pendingFaults.set(method, { code, details });
    },
    importSigningKey(name, pkcs8) {
      const parent = name.replace(/\/cryptoKeys\/[^/]+$/, '');
      if (!keyRings.has(parent)) throw new Error(`no key ring ${parent}`);
      if (keys.has(name)) throw new Error(`${name} exists`);
      const key: FakeKey = {
        name,
        createMs: now(),
        destroyScheduledMs: 30 * DAY_MS,
        protectionLevel: 'SOFTWARE',
        purpose: 'ASYMMETRIC_SIGN',
        algorithm: 'EC_SIGN_ED25519',
        versions: [],
        primary: null,
      };
      keys.set(name, key);
      newVersion(key, Buffer.from(pkcs8));
    },
    advanceClock(ms) {
      clockOffsetMs += ms;
    },
    inspectVersion(name) {
      try {
        const { version } = getVersion(name);
        return { state: version.state, hasKeyMaterial: version.material !== null };
      } catch {
        return undefined;
      }
    },
    stop() {
      return new Promise<void>((resolve) => {
        server.tryShutdown(() => {
          resolve();
        });
        // In-flight calls of a test that failed must not keep the process alive.
        setTimeout(() => {
          server.forceShutdown();
        }, 2000).unref();
      });
    },
  };
}
