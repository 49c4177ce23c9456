/**
 * The keys behind one ModelArtifact, as the operator keeps them:
 *
 *   KMS KEK (per classification, or per artifact when the classification table sets dedicatedKek)
 *     ├─ wraps the artifact's recipient private key (X25519)  → Secret strongroom-rk-<uid> in the operator's namespace
 *     └─ wraps each version's DEK                             → ModelArtifact status.keys[].wrappedKey
 *   recipient public key                                      → status.recipientPublicKey (writers seal DEKs to it)
 *
 * Every name is derived from the artifact's uid, so a reconcile that is killed half way and runs again finds what it
 * made instead of making a second one. Associated data binds each wrapped key to its artifact (and version), so a
 * wrapped key copied to another artifact does not unwrap.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { ApiException, type CoreV1Api, type V1Secret } from '@kubernetes/client-node';
import type winston from 'winston';
import {
  CLASSIFICATIONS,
  type Classification,
  type ModelArtifact,
  type ModelArtifactVersion,
} from '../../core/api/index.ts';
import { DEFAULT_CLASSIFICATION_TABLE, type ClassificationTable } from '../../core/policy/classification.ts';
import { generateRecipientKeyPair, SEAL_SUITE } from '../../core/envelope/index.ts';
import { KmsError, type KeyVersionInfo, type KmsProvider, type WrappedKey } from '../../core/kms/provider.ts';
import { withUnsealedDek } from '../../core/kms/sealed.ts';
import { retiredVersionsDue, type RetirementPlan } from '../../core/policy/rotation.ts';

export type KekScope = 'shared' | 'artifact';

/**
 * Which artifacts get a KEK of their own (destroying it on delete is then a true crypto-shred): the classifications
 * whose `dedicatedKek` is true in the classification table. The operator passes a live view of the table in force
 * (operator/governance/table.ts); this is the view of the built-in table.
 */
export function kekScopes(table: ClassificationTable): Readonly<Record<Classification, KekScope>> {
  const scopes = {} as Record<Classification, KekScope>;
  for (const c of CLASSIFICATIONS) scopes[c] = table.classifications[c].dedicatedKek ? 'artifact' : 'shared';
  return Object.freeze(scopes);
}

/** The scopes of the built-in classification table: only restricted artifacts have a KEK of their own. */
export const DEFAULT_KEK_SCOPES: Readonly<Record<Classification, KekScope>> = kekScopes(
  DEFAULT_CLASSIFICATION_TABLE,
);

export const RECIPIENT_KEY_ALGORITHM = SEAL_SUITE;

/** A key problem a reconcile should report on the artifact rather than retry blindly. */
export class ArtifactKeyError extends Error {
  override readonly name = 'ArtifactKeyError';
  readonly reason: 'SealedKeyMissing' | 'FingerprintMismatch' | 'SealedKeyInvalid' | 'RecipientKeyInvalid';
  constructor(reason: ArtifactKeyError['reason'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

export interface RecipientKey {
  /** Raw X25519 public key, base64. */
  readonly publicKey: string;
  readonly publicKeyPem: string;
  readonly fingerprint: string;
  readonly createdAt: string;
  readonly wrapped: WrappedKey;
  readonly secretName: string;
}

interface Meta {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
}

function meta(artifact: ModelArtifact): Meta {
  const { uid, namespace, name } = artifact.metadata;
  if (!uid || !namespace || !name)
    throw new Error('a ModelArtifact from the API server always has uid, namespace and name');
  return { uid, namespace, name };
}

/** The name of the KEK of the artifact with this uid, when it has one of its own. */
export function ownKekId(uid: string): string {
  return `strongroom-artifact-${uid}`;
}

export function kekIdFor(
  artifact: ModelArtifact,
  scopes: Readonly<Record<Classification, KekScope>>,
): string {
  const classification = artifact.spec.classification;
  return scopes[classification] === 'artifact'
    ? ownKekId(meta(artifact).uid)
    : `strongroom-${classification}`;
}

export function recipientSecretName(uid: string): string {
  return `strongroom-rk-${uid}`;
}

/** Associated data of a version's wrapped DEK. The broker unwraps with the same bytes. */
export function dekAad(artifact: Meta | ModelArtifact, version: string): Buffer {
  const m = 'metadata' in artifact ? meta(artifact) : artifact;
  return Buffer.from(JSON.stringify(['strongroom/dek/v1', m.uid, m.namespace, m.name, version]));
}

function recipientAad(m: Meta): Buffer {
  return Buffer.from(JSON.stringify(['strongroom/recipient-key/v1', m.uid, m.namespace, m.name]));
}

const described = new Map<string, { pem: string; fingerprint: string }>();

/** PEM SubjectPublicKeyInfo and "sha256:<hex of the DER SPKI>" of a raw X25519 public key (memoized). */
export function describePublicKey(rawBase64: string): { pem: string; fingerprint: string } {
  let result = described.get(rawBase64);
  if (!result) {
    result = computeDescription(rawBase64);
    if (described.size >= 50_000) described.clear();
    described.set(rawBase64, result);
  }
  return result;
}

function computeDescription(rawBase64: string): { pem: string; fingerprint: string } {
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(rawBase64, 'base64').toString('base64url') },
    format: 'jwk',
  });
  const der = key.export({ type: 'spki', format: 'der' });
  return {
    pem: key.export({ type: 'spki', format: 'pem' }).toString(),
    fingerprint: `sha256:${createHash('sha256').update(der).digest('hex')}`,
  };
}

export function encodeWrapped(wrapped: WrappedKey): string {
  return Buffer.from(JSON.stringify(wrapped)).toString('base64');
}

export function decodeWrapped(text: string): WrappedKey {
  const value = JSON.parse(Buffer.from(text, 'base64').toString('utf8')) as Partial<WrappedKey>;
  if (
    typeof value.provider !== 'string' ||
    typeof value.keyId !== 'string' ||
    typeof value.keyVersion !== 'string' ||
    typeof value.ciphertext !== 'string'
  )
    throw new KmsError('invalid', 'not a wrapped key record');
  return value as WrappedKey;
}

/**
 * The wrapped recipient private key a recipient-key Secret holds (as an informer delivers it: `data`, base64), or
 * undefined when the Secret does not hold a readable one.
 */
export function recipientWrapOf(secret: V1Secret): WrappedKey | undefined {
  const data = secret.data?.['wrappedPrivateKey'];
  const json =
    data === undefined
      ? secret.stringData?.['wrappedPrivateKey']
      : Buffer.from(data, 'base64').toString('utf8');
  if (json === undefined) return undefined;
  try {
    return decodeWrapped(Buffer.from(json).toString('base64'));
  } catch {
    return undefined;
  }
}

/**
 * The versions of KEK `keyId` that some wrapped key still needs: the DEKs in the artifacts' `status.keys` (the wrapped
 * key itself, and the `kekId`/`kekVersion` recorded beside it) and the recipient private keys. Undefined when that
 * cannot be told for sure (a status entry or a recipient key that does not read): the caller then destroys nothing.
 */
export function kekVersionsInUse(
  keyId: string,
  artifacts: Iterable<ModelArtifact>,
  recipientWraps: Iterable<WrappedKey | undefined>,
): Set<string> | undefined {
  const used = new Set<string>();
  for (const artifact of artifacts)
    for (const entry of artifact.status?.keys ?? []) {
      let wrapped: WrappedKey | undefined;
      try {
        wrapped = entry.wrappedKey ? decodeWrapped(entry.wrappedKey) : undefined;
      } catch {
        wrapped = undefined;
      }
      if (wrapped === undefined && entry.kekId === undefined) return undefined;
      if (wrapped?.keyId === keyId) used.add(wrapped.keyVersion);
      if (entry.kekId === keyId) used.add(entry.kekVersion ?? '');
    }
  for (const wrapped of recipientWraps) {
    if (wrapped === undefined) return undefined;
    if (wrapped.keyId === keyId) used.add(wrapped.keyVersion);
  }
  return used;
}

/** What {@link ArtifactKeyring.destroyRetiredVersions} did. */
export interface RetiredVersionsResult extends RetirementPlan {
  /** The versions destroyed now. */
  readonly destroyed: readonly string[];
}

export interface ArtifactKeyringOptions {
  readonly kms: KmsProvider;
  readonly core: CoreV1Api;
  /** The operator's namespace: recipient-key Secrets live here, out of reach of artifact owners. */
  readonly namespace: string;
  readonly logger: winston.Logger;
  /**
   * A watch-fed view of the recipient-key Secrets, if the caller keeps one: the Secret, null when a synced cache
   * says it does not exist, undefined when the cache cannot tell (then a GET decides).
   */
  readonly cachedSecret?: (name: string) => V1Secret | null | undefined;
}

export class ArtifactKeyring {
  readonly #o: ArtifactKeyringOptions;

  constructor(options: ArtifactKeyringOptions) {
    this.#o = options;
  }

  /** The KEK's primary version, creating the KEK (version 1) if it does not exist yet. */
  async ensureKek(keyId: string): Promise<KeyVersionInfo> {
    let versions: readonly KeyVersionInfo[];
    try {
      versions = await this.#o.kms.versions(keyId);
    } catch (error) {
      if (!(error instanceof KmsError && error.code === 'not-found')) throw error;
      try {
        await this.#o.kms.createKey(keyId);
        this.#o.logger.info('created KEK', { keyId });
      } catch (createError) {
        // Another worker created it between our two calls: fine, read it.
        if (!(createError instanceof KmsError && createError.code === 'invalid')) throw createError;
      }
      versions = await this.#o.kms.versions(keyId);
    }
    const primary = versions.find((v) => v.primary);
    if (!primary) throw new KmsError('not-found', `KEK ${keyId} has no primary version`);
    return primary;
  }

  /** The artifact's recipient key if it has one. */
  async recipientKey(artifact: ModelArtifact): Promise<RecipientKey | undefined> {
    const name = recipientSecretName(meta(artifact).uid);
    const cached = this.#o.cachedSecret?.(name);
    const secret = cached === undefined ? await this.#readSecret(name) : cached;
    return secret ? this.#parseRecipient(secret, name) : undefined;
  }

  /** Creates the recipient key pair once; the private half only ever exists wrapped under the KEK. */
  async ensureRecipientKey(artifact: ModelArtifact, kekId: string): Promise<RecipientKey> {
    const existing = await this.recipientKey(artifact);
    if (existing) return existing;
    const m = meta(artifact);
    const name = recipientSecretName(m.uid);
    const pair = await generateRecipientKeyPair();
    let wrapped: WrappedKey;
    try {
      wrapped = await this.#o.kms.wrap(kekId, pair.privateKey, recipientAad(m));
    } finally {
      pair.privateKey.fill(0);
    }
    const createdAt = new Date().toISOString();
    try {
      const secret = await this.#o.core.createNamespacedSecret({
        namespace: this.#o.namespace,
        body: this.#recipientSecret(name, m, { publicKey: pair.publicKey, createdAt, wrapped }),
      });
      this.#o.logger.info('created recipient key', { artifact: `${m.namespace}/${m.name}`, uid: m.uid });
      return this.#parseRecipient(secret, name);
    } catch (error) {
      // A concurrent or interrupted reconcile created it first: the stored one wins.
      if (error instanceof ApiException && error.code === 409) {
        const secret = await this.#readSecret(name);
        if (secret) return this.#parseRecipient(secret, name);
      }
      throw error;
    }
  }

  /** Moves the wrapped recipient private key to `kekId`'s primary version if it is elsewhere. */
  async rewrapRecipientKey(artifact: ModelArtifact, key: RecipientKey, kekId: string): Promise<RecipientKey> {
    const m = meta(artifact);
    const wrapped = await this.#rewrap(key.wrapped, kekId, recipientAad(m));
    if (wrapped === key.wrapped) return key;
    const current = await this.#readSecret(key.secretName);
    if (!current) throw new ArtifactKeyError('RecipientKeyInvalid', `Secret ${key.secretName} disappeared`);
    const body = this.#recipientSecret(key.secretName, m, { ...key, wrapped });
    if (body.metadata) body.metadata.resourceVersion = current.metadata?.resourceVersion ?? '';
    const saved = await this.#o.core.replaceNamespacedSecret({
      namespace: this.#o.namespace,
      name: key.secretName,
      body,
    });
    return this.#parseRecipient(saved, key.secretName);
  }

  /**
   * Checks that a version's sealed DEK (spec.versions[].encryption.sealedKey) opens with the artifact's recipient
   * key, without wrapping it: the broker refuses a version whose key would never seal before writing it. The DEK
   * is zeroed at once. Throws what `sealVersion` throws.
   */
  async openSealed(artifact: ModelArtifact, version: ModelArtifactVersion, key: RecipientKey): Promise<void> {
    await this.#withSealedDek(artifact, version, key, () => Promise.resolve());
  }

  /**
   * Unseals a version's DEK (spec.versions[].encryption.sealedKey) and wraps it under `kekId`. Only the
   * ModelArtifact controller calls it: it is the one writer of `status.keys` (docs/operator.md).
   */
  sealVersion(
    artifact: ModelArtifact,
    version: ModelArtifactVersion,
    key: RecipientKey,
    kekId: string,
  ): Promise<WrappedKey> {
    return this.#withSealedDek(artifact, version, key, (dek) =>
      this.#o.kms.wrap(kekId, dek, dekAad(meta(artifact), version.name)),
    );
  }

  /** Opens the sealed DEK, hands it to `use`, and zeroes it and the recipient private key whatever happens. */
  async #withSealedDek<T>(
    artifact: ModelArtifact,
    version: ModelArtifactVersion,
    key: RecipientKey,
    use: (dek: Uint8Array) => Promise<T>,
  ): Promise<T> {
    const m = meta(artifact);
    const sealed = version.encryption.sealedKey;
    if (!sealed)
      throw new ArtifactKeyError(
        'SealedKeyMissing',
        `version ${version.name} has no encryption.sealedKey; publish it with \`strongroom publish\` or the broker`,
      );
    if (version.encryption.keyFingerprint !== key.fingerprint)
      throw new ArtifactKeyError(
        'FingerprintMismatch',
        `version ${version.name} was sealed to key ${version.encryption.keyFingerprint}, but this artifact's recipient key is ${key.fingerprint}`,
      );
    const privateKey = await this.#o.kms.unwrap(key.wrapped, recipientAad(m));
    try {
      return await withUnsealedDek(
        sealed,
        privateKey,
        { artifactUid: m.uid, artifactName: m.name, version: version.name },
        use,
      );
    } catch (error) {
      if (error instanceof KmsError) throw error;
      throw new ArtifactKeyError(
        'SealedKeyInvalid',
        `the sealed key of version ${version.name} does not open with this artifact's recipient key (sealed for another artifact or version, or tampered)`,
        { cause: error },
      );
    } finally {
      privateKey.fill(0);
    }
  }

  /** Moves a version's wrapped DEK to `kekId`'s primary version; returns the same object when nothing moved. */
  rewrapVersion(
    artifact: ModelArtifact,
    version: string,
    wrapped: WrappedKey,
    kekId: string,
  ): Promise<WrappedKey> {
    return this.#rewrap(wrapped, kekId, dekAad(artifact, version));
  }

  /**
   * Crypto-shreds the artifact: deletes its recipient key and destroys its own KEK `strongroom-artifact-<uid>`
   * whatever the classification table says now (a KEK the artifact got while its classification had dedicatedKek
   * stays its own after the table turned that off, and goes with it); a KEK that never existed or is already
   * destroyed is fine. A shared KEK is never touched.
   */
  async shred(artifact: ModelArtifact): Promise<void> {
    const m = meta(artifact);
    try {
      await this.#o.core.deleteNamespacedSecret({
        namespace: this.#o.namespace,
        name: recipientSecretName(m.uid),
      });
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 404)) throw error;
    }
    try {
      await this.#o.kms.destroyKey(ownKekId(m.uid));
    } catch (error) {
      if (!(error instanceof KmsError && (error.code === 'not-found' || error.code === 'destroyed')))
        throw error;
    }
  }

  /**
   * Destroys the versions of `kekId` that the retention rule allows now (core/policy/rotation.ts
   * retiredVersionsDue): only when every wrapped key of the KEK (`inUse`, from {@link kekVersionsInUse}) is on the
   * primary version, and only versions retired at least `retentionMs` before `now`. The versions are read from the
   * KMS at the moment of the decision. A version another worker destroyed meanwhile counts as done.
   */
  async destroyRetiredVersions(
    kekId: string,
    options: { inUse: ReadonlySet<string> | undefined; retentionMs: number; now: Date },
  ): Promise<RetiredVersionsResult> {
    const plan = retiredVersionsDue({ versions: await this.#o.kms.versions(kekId), ...options });
    const destroyed: string[] = [];
    for (const version of plan.destroy) {
      try {
        await this.#o.kms.destroyVersion(kekId, version);
      } catch (error) {
        if (!(error instanceof KmsError && error.code === 'destroyed')) throw error;
        continue;
      }
      destroyed.push(version);
    }
    return { ...plan, destroyed };
  }

  async #rewrap(wrapped: WrappedKey, kekId: string, aad: Uint8Array): Promise<WrappedKey> {
    const primary = await this.ensureKek(kekId);
    if (wrapped.keyId === kekId && wrapped.keyVersion === primary.version) return wrapped;
    const plain = await this.#o.kms.unwrap(wrapped, aad);
    try {
      return await this.#o.kms.wrap(kekId, plain, aad);
    } finally {
      plain.fill(0);
    }
  }

  async #readSecret(name: string): Promise<V1Secret | undefined> {
    try {
      return await this.#o.core.readNamespacedSecret({ namespace: this.#o.namespace, name });
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw error;
    }
  }

  #recipientSecret(
    name: string,
    m: Meta,
    key: { publicKey: string; createdAt: string; wrapped: WrappedKey },
  ): V1Secret {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name,
        namespace: this.#o.namespace,
        labels: {
          'app.kubernetes.io/managed-by': 'strongroom',
          'strongroom.dev/role': 'recipient-key',
          'strongroom.dev/artifact-uid': m.uid,
          'strongroom.dev/artifact-namespace': m.namespace,
          'strongroom.dev/artifact-name': m.name,
        },
      },
      stringData: {
        publicKey: key.publicKey,
        createdAt: key.createdAt,
        wrappedPrivateKey: JSON.stringify(key.wrapped),
      },
    };
  }

  #parseRecipient(secret: V1Secret, name: string): RecipientKey {
    const field = (k: string): string => {
      const v =
        secret.data?.[k] ??
        (secret.stringData?.[k] !== undefined
          ? Buffer.from(secret.stringData[k]).toString('base64')
          : undefined);
      if (v === undefined) throw new ArtifactKeyError('RecipientKeyInvalid', `Secret ${name} lacks ${k}`);
      return Buffer.from(v, 'base64').toString('utf8');
    };
    try {
      const publicKey = field('publicKey');
      const { pem, fingerprint } = describePublicKey(publicKey);
      const wrapped = JSON.parse(field('wrappedPrivateKey')) as WrappedKey;
      return {
        publicKey,
        publicKeyPem: pem,
        fingerprint,
        createdAt: field('createdAt'),
        wrapped,
        secretName: name,
      };
    } catch (error) {
      if (error instanceof ArtifactKeyError) throw error;
      throw new ArtifactKeyError('RecipientKeyInvalid', `Secret ${name} is malformed`, { cause: error });
    }
  }
}
