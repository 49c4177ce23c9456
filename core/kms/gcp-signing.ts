/**
 * The checkpoint signing key in Cloud KMS: a CryptoKey of purpose ASYMMETRIC_SIGN with algorithm EC_SIGN_ED25519
 * (pure Ed25519, the data itself is signed), in the provider's key ring, created at first use.
 *
 * - Asymmetric keys have no primary version: the key signs with its lowest-numbered ENABLED version, chosen at the
 *   first call and kept for the life of this object. A version still PENDING_GENERATION (HSM keys) is waited for,
 *   bounded by the operation timeout. Rotating means disabling that version and starting new audit logs
 *   (docs/kms.md, "Checkpoint signing keys").
 * - GetPublicKey: the PEM must name the chosen version, report EC_SIGN_ED25519, match its `pem_crc32c`, and hold an
 *   Ed25519 SubjectPublicKeyInfo.
 * - AsymmetricSign with `data` and `data_crc32c`: the response must confirm `verified_data_crc32c`, name the chosen
 *   version, and carry a signature matching its `signature_crc32c` (the integrity checks Google documents).
 *
 * IAM: the operator needs `cloudkms.cryptoKeyVersions.useToSign` and `viewPublicKey` on this key (roles/
 * cloudkms.signerVerifier), and `cloudkms.cryptoKeys.create` on the ring only for the first start.
 */
import { createPublicKey } from 'node:crypto';
import type { KeyManagementServiceClient, protos } from '@google-cloud/kms';
import { status } from '@grpc/grpc-js';
import { bytes, crc32c, grpcCode, int64, mapError, stateName } from './gcp.ts';
import { KmsError } from './provider.ts';
import { ed25519FromSpki, ED25519_SIGNATURE_BYTES, type CheckpointSigningKey } from './signing.ts';

type CryptoKeyVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;

const ALGORITHM = 'EC_SIGN_ED25519';
/** The enum number of EC_SIGN_ED25519 (resources.proto), as the REST fallback reports it. */
const ALGORITHM_NUMBER = 40;
/** The enum number of ASYMMETRIC_SIGN (CryptoKeyPurpose). */
const ASYMMETRIC_SIGN_NUMBER = 5;
const MAX_SIGNED_BYTES = 65536;

export interface GcpSigningAccess {
  /** The provider's client (throws once the provider is closed). */
  readonly client: () => KeyManagementServiceClient;
  /** `projects/P/locations/L/keyRings/R/cryptoKeys/K`. */
  readonly cryptoKey: string;
  readonly keyRing: string;
  readonly call: { readonly timeout: number };
  readonly protectionLevel: 'SOFTWARE' | 'HSM';
}

function isEd25519(algorithm: unknown): boolean {
  return algorithm === ALGORITHM || algorithm === ALGORITHM_NUMBER;
}

function versionNumber(name: string | null | undefined): number {
  return Number((name ?? '').split('/').pop());
}

export class GcpCheckpointSigningKey implements CheckpointSigningKey {
  readonly description: string;
  readonly #a: GcpSigningAccess;
  #version: Promise<string> | undefined;

  constructor(access: GcpSigningAccess) {
    this.#a = access;
    this.description = `Cloud KMS key ${access.cryptoKey}`;
  }

  async publicKey(): Promise<Uint8Array> {
    const version = await this.#resolve();
    let response: protos.google.cloud.kms.v1.IPublicKey;
    try {
      [response] = await this.#a.client().getPublicKey({ name: version }, this.#a.call);
    } catch (error) {
      throw mapError(error, `reading the public key of ${version}`);
    }
    const pem = response.pem ?? '';
    if (response.name !== version)
      throw new KmsError('unavailable', `${version}: Cloud KMS answered for "${response.name ?? ''}"`);
    if (!isEd25519(response.algorithm))
      throw new KmsError('invalid', `${version} is ${String(response.algorithm)}, not ${ALGORITHM}`);
    if (pem === '' || int64(response.pemCrc32c) !== crc32c(Buffer.from(pem, 'utf8'))) {
      throw new KmsError(
        'unavailable',
        `${version}: the public key from Cloud KMS does not match its CRC32C checksum (corrupted in transit)`,
      );
    }
    let raw: Uint8Array | undefined;
    try {
      raw = ed25519FromSpki(createPublicKey(pem).export({ format: 'der', type: 'spki' }));
    } catch (error) {
      throw new KmsError('invalid', `${version}: the public key is not a PEM public key`, { cause: error });
    }
    if (!raw) throw new KmsError('invalid', `${version}: the public key is not an Ed25519 key`);
    return raw;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    if (data.length > MAX_SIGNED_BYTES)
      throw new KmsError('invalid', `Cloud KMS signs at most ${MAX_SIGNED_BYTES} bytes of data`);
    const version = await this.#resolve();
    let response: protos.google.cloud.kms.v1.IAsymmetricSignResponse;
    try {
      [response] = await this.#a
        .client()
        .asymmetricSign({ name: version, data, dataCrc32c: { value: crc32c(data) } }, this.#a.call);
    } catch (error) {
      throw mapError(error, `signing with ${version}`, { [status.FAILED_PRECONDITION]: 'unavailable' });
    }
    if (response.verifiedDataCrc32c !== true) {
      throw new KmsError(
        'unavailable',
        `signing with ${version}: Cloud KMS did not confirm the data checksum (the request may have been corrupted in transit)`,
      );
    }
    if (response.name !== version)
      throw new KmsError(
        'unavailable',
        `signing with ${version}: Cloud KMS answered for "${response.name ?? ''}"`,
      );
    const signature = bytes(response.signature);
    if (
      signature.length !== ED25519_SIGNATURE_BYTES ||
      int64(response.signatureCrc32c) !== crc32c(signature)
    ) {
      throw new KmsError(
        'unavailable',
        `signing with ${version}: the signature from Cloud KMS does not match its CRC32C checksum or is not ${ED25519_SIGNATURE_BYTES} bytes`,
      );
    }
    return signature;
  }

  /** The version this key signs with: found (or the key created) once; a failure is retried at the next call. */
  #resolve(): Promise<string> {
    this.#version ??= this.#findOrCreate().catch((error: unknown) => {
      this.#version = undefined;
      throw error;
    });
    return this.#version;
  }

  async #findOrCreate(): Promise<string> {
    const client = this.#a.client();
    const name = this.#a.cryptoKey;
    let key: protos.google.cloud.kms.v1.ICryptoKey | undefined;
    try {
      [key] = await client.getCryptoKey({ name }, this.#a.call);
    } catch (error) {
      if (grpcCode(error) !== status.NOT_FOUND) throw mapError(error, `looking up ${name}`);
    }
    if (!key) {
      try {
        [key] = await client.createCryptoKey(
          {
            parent: this.#a.keyRing,
            cryptoKeyId: name.split('/').pop() ?? '',
            cryptoKey: {
              purpose: 'ASYMMETRIC_SIGN',
              versionTemplate: { algorithm: ALGORITHM, protectionLevel: this.#a.protectionLevel },
              labels: { 'managed-by': 'strongroom', 'strongroom-role': 'audit-checkpoint' },
            },
          },
          this.#a.call,
        );
      } catch (error) {
        // Another replica created it first: use that one.
        if (grpcCode(error) !== status.ALREADY_EXISTS) throw mapError(error, `creating ${name}`);
        try {
          [key] = await client.getCryptoKey({ name }, this.#a.call);
        } catch (again) {
          throw mapError(again, `looking up ${name}`);
        }
      }
    }
    const purpose = key.purpose;
    if (purpose !== 'ASYMMETRIC_SIGN' && Number(purpose) !== ASYMMETRIC_SIGN_NUMBER)
      throw new KmsError('invalid', `${name} has purpose ${String(purpose)}, not ASYMMETRIC_SIGN`);
    if (!isEd25519(key.versionTemplate?.algorithm))
      throw new KmsError(
        'invalid',
        `${name} makes ${String(key.versionTemplate?.algorithm)} versions, not ${ALGORITHM}`,
      );
    return await this.#enabledVersion(client, name);
  }

  /** The lowest-numbered ENABLED Ed25519 version, waiting while the only candidates are PENDING_GENERATION. */
  async #enabledVersion(client: KeyManagementServiceClient, name: string): Promise<string> {
    const deadline = Date.now() + this.#a.call.timeout;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      let versions: CryptoKeyVersion[];
      try {
        [versions] = await client.listCryptoKeyVersions({ parent: name }, this.#a.call);
      } catch (error) {
        throw mapError(error, `listing the versions of ${name}`);
      }
      const usable = versions
        .filter((v) => isEd25519(v.algorithm))
        .sort((x, y) => versionNumber(x.name) - versionNumber(y.name));
      const enabled = usable.find((v) => stateName(v.state) === 'ENABLED');
      if (enabled?.name) return enabled.name;
      const pending = usable.some((v) => stateName(v.state) === 'PENDING_GENERATION');
      if (!pending || Date.now() + delay > deadline) {
        throw new KmsError(
          'unavailable',
          `${name} has no ENABLED ${ALGORITHM} version${pending ? ' yet (still PENDING_GENERATION)' : ''}: a KMS administrator must enable or create one`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
