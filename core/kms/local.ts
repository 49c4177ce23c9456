/**
 * The default KMS: a versioned set of AES-256 KEKs kept by a pluggable store (the operator keeps it in a Kubernetes
 * Secret; tests and single-node setups use a file). Wrapping is AES-256-GCM with the key id, version and caller's
 * associated data all authenticated. Destroying a version erases its key material from the stored set.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { KmsError, type KeyVersionInfo, type KmsProvider, type WrappedKey } from './provider.ts';

interface StoredVersion {
  version: string;
  state: 'enabled' | 'destroyed';
  createdAt: string;
  /** base64 key material; absent once destroyed. */
  material?: string;
}

interface StoredKey {
  primary: string;
  versions: StoredVersion[];
}

/** The whole key set, as stored. */
export interface KeySetData {
  readonly format: 'strongroom-local-kms/v1';
  readonly keys: Record<string, StoredKey>;
}

/** Where the key set lives. `revision` gives optimistic concurrency: save fails with 'unavailable' on a conflict. */
export interface KeySetStore {
  load(): Promise<{ data: KeySetData; revision: string } | null>;
  save(data: KeySetData, expectedRevision: string | null): Promise<string>;
}

const KEY_ID = /^[a-z0-9][a-z0-9._/-]{0,252}$/;

function emptySet(): KeySetData {
  return { format: 'strongroom-local-kms/v1', keys: {} };
}

/** A key set in one JSON file, replaced atomically (temporary file, then rename). Mode 0600. */
export class FileKeySetStore implements KeySetStore {
  readonly #path: string;
  constructor(path: string) {
    this.#path = path;
  }
  async load(): Promise<{ data: KeySetData; revision: string } | null> {
    let text: string;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new KmsError('unavailable', `cannot read the key set ${this.#path}`, { cause: error });
    }
    const data = JSON.parse(text) as KeySetData;
    if ((data.format as string) !== 'strongroom-local-kms/v1' || typeof data.keys !== 'object')
      throw new KmsError('invalid', `${this.#path} is not a Strongroom local key set`);
    return { data, revision: createHash('sha256').update(text).digest('hex') };
  }
  async save(data: KeySetData, expectedRevision: string | null): Promise<string> {
    const current = await this.load();
    if ((current?.revision ?? null) !== expectedRevision)
      throw new KmsError('unavailable', 'the key set changed concurrently; retry');
    const text = JSON.stringify(data, null, 2);
    const temp = `${this.#path}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(temp, text, { mode: 0o600, flush: true });
    await rename(temp, this.#path);
    return createHash('sha256').update(text).digest('hex');
  }
}

/** AES-GCM associated data: the key id and version as well as the caller's, so a blob cannot move between keys. */
function boundAad(keyId: string, version: string, aad: Uint8Array): Buffer {
  return Buffer.concat([
    Buffer.from(JSON.stringify(['strongroom/local-kms/v1', keyId, version])),
    Buffer.from([0]),
    aad,
  ]);
}

export class LocalKmsProvider implements KmsProvider {
  readonly name = 'local';
  readonly #store: KeySetStore;
  /** Serializes read-modify-write cycles within this process. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(store: KeySetStore) {
    this.#store = store;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #read(): Promise<{ data: KeySetData; revision: string | null }> {
    const loaded = await this.#store.load();
    return loaded ?? { data: emptySet(), revision: null };
  }

  #key(data: KeySetData, keyId: string): StoredKey {
    const key = data.keys[keyId];
    if (!key) throw new KmsError('not-found', `local KMS has no key ${JSON.stringify(keyId)}`);
    return key;
  }

  #modify(fn: (data: KeySetData) => KeySetData): Promise<void> {
    return this.#serial(async () => {
      const { data, revision } = await this.#read();
      await this.#store.save(fn(structuredClone(data)), revision);
    });
  }

  createKey(keyId: string): Promise<void> {
    if (!KEY_ID.test(keyId))
      return Promise.reject(
        new KmsError(
          'invalid',
          `bad key id ${JSON.stringify(keyId)}: lower-case letters, digits, . _ / - (max 253)`,
        ),
      );
    return this.#modify((data) => {
      if (data.keys[keyId]) throw new KmsError('invalid', `key ${keyId} already exists`);
      return {
        ...data,
        keys: {
          ...data.keys,
          [keyId]: {
            primary: '1',
            versions: [
              {
                version: '1',
                state: 'enabled',
                createdAt: new Date().toISOString(),
                material: randomBytes(32).toString('base64'),
              },
            ],
          },
        },
      };
    });
  }

  async wrap(keyId: string, plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedKey> {
    if (plaintext.length === 0 || plaintext.length > 64)
      throw new KmsError('invalid', `a wrapped key is 1..64 bytes, got ${plaintext.length}`);
    const key = this.#key((await this.#read()).data, keyId);
    const primary = key.versions.find((v) => v.version === key.primary);
    if (!primary?.material) throw new KmsError('destroyed', `key ${keyId} has been destroyed`);
    const kek = Buffer.from(primary.material, 'base64');
    try {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', kek, iv, { authTagLength: 16 });
      cipher.setAAD(boundAad(keyId, primary.version, aad));
      const ciphertext = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      return {
        provider: this.name,
        keyId,
        keyVersion: primary.version,
        ciphertext: ciphertext.toString('base64'),
      };
    } finally {
      kek.fill(0);
    }
  }

  async unwrap(wrapped: WrappedKey, aad: Uint8Array): Promise<Buffer> {
    if (wrapped.provider !== this.name)
      throw new KmsError('invalid', `a ${wrapped.provider} wrapped key cannot be unwrapped by the local KMS`);
    const key = this.#key((await this.#read()).data, wrapped.keyId);
    const version = key.versions.find((v) => v.version === wrapped.keyVersion);
    if (!version)
      throw new KmsError('not-found', `key ${wrapped.keyId} has no version ${wrapped.keyVersion}`);
    if (version.state === 'destroyed' || !version.material) {
      throw new KmsError(
        'destroyed',
        `key ${wrapped.keyId} version ${wrapped.keyVersion} was destroyed: what it wrapped is gone`,
      );
    }
    const blob = Buffer.from(wrapped.ciphertext, 'base64');
    if (blob.length < 12 + 16 + 1) throw new KmsError('unwrap-failed', 'wrapped key is too short');
    const kek = Buffer.from(version.material, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, blob.subarray(0, 12), { authTagLength: 16 });
      decipher.setAAD(boundAad(wrapped.keyId, wrapped.keyVersion, aad));
      decipher.setAuthTag(blob.subarray(blob.length - 16));
      const plain = decipher.update(blob.subarray(12, blob.length - 16));
      try {
        decipher.final();
      } catch (cause) {
        plain.fill(0);
        throw new KmsError(
          'unwrap-failed',
          'the wrapped key does not verify (tampered, other associated data, or another key)',
          { cause },
        );
      }
      return plain;
    } finally {
      kek.fill(0);
    }
  }

  async versions(keyId: string): Promise<readonly KeyVersionInfo[]> {
    const key = this.#key((await this.#read()).data, keyId);
    return key.versions.map((v) => ({
      version: v.version,
      state: v.state,
      primary: v.version === key.primary,
      createdAt: v.createdAt,
    }));
  }

  async rotate(keyId: string): Promise<string> {
    let next = '';
    await this.#modify((data) => {
      const key = this.#key(data, keyId);
      if (key.versions.every((v) => v.state === 'destroyed'))
        throw new KmsError('destroyed', `key ${keyId} has been destroyed`);
      next = String(Math.max(...key.versions.map((v) => Number(v.version))) + 1);
      key.versions.push({
        version: next,
        state: 'enabled',
        createdAt: new Date().toISOString(),
        material: randomBytes(32).toString('base64'),
      });
      key.primary = next;
      return data;
    });
    return next;
  }

  destroyVersion(keyId: string, version: string): Promise<void> {
    return this.#modify((data) => {
      const key = this.#key(data, keyId);
      const v = key.versions.find((x) => x.version === version);
      if (!v) throw new KmsError('not-found', `key ${keyId} has no version ${version}`);
      if (key.primary === version && v.state !== 'destroyed') {
        throw new KmsError(
          'invalid',
          `version ${version} is the primary of ${keyId}: rotate first, or destroy the whole key`,
        );
      }
      v.state = 'destroyed';
      delete v.material;
      return data;
    });
  }

  destroyKey(keyId: string): Promise<void> {
    return this.#modify((data) => {
      for (const v of this.#key(data, keyId).versions) {
        v.state = 'destroyed';
        delete v.material;
      }
      return data;
    });
  }

  async close(): Promise<void> {
    await this.#queue;
  }
}
