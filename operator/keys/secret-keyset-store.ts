/**
 * The local KMS's key set, kept in one Secret in the operator's namespace (created on first save). Optimistic
 * concurrency comes from the Secret's resourceVersion: a save based on a stale revision fails with 'unavailable'
 * (a 409 from the API server), exactly as KeySetStore promises. Reads come from a watch-fed cache when the caller
 * provides one (so key operations cost no API call), else from a GET; parsed data is cached per resourceVersion.
 */
import { ApiException, type CoreV1Api, type V1Secret } from '@kubernetes/client-node';
import { KmsError } from '../../core/kms/provider.ts';
import type { KeySetData, KeySetStore } from '../../core/kms/local.ts';

const DATA_KEY = 'keyset.json';

export interface SecretKeySetStoreOptions {
  readonly core: CoreV1Api;
  readonly namespace: string;
  readonly name: string;
  /** The Secret as last seen by a watch, if the caller keeps one; absent means GET on every load. */
  readonly cached?: () => V1Secret | undefined;
}

function parse(secret: V1Secret, where: string): KeySetData {
  const raw = secret.data?.[DATA_KEY];
  if (raw === undefined) throw new KmsError('invalid', `${where} has no ${DATA_KEY}`);
  let data: KeySetData;
  try {
    data = JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as KeySetData;
  } catch (cause) {
    throw new KmsError('invalid', `${where} does not hold JSON`, { cause });
  }
  if ((data.format as string) !== 'strongroom-local-kms/v1' || typeof data.keys !== 'object')
    throw new KmsError('invalid', `${where} is not a Strongroom local key set`);
  return data;
}

export class SecretKeySetStore implements KeySetStore {
  readonly #o: SecretKeySetStoreOptions;
  readonly #where: string;
  /** The newest Secret this store has read or written: never older than what the cache may still show. */
  #latest: V1Secret | undefined;
  #parsed: { revision: string; data: KeySetData } | undefined;

  constructor(options: SecretKeySetStoreOptions) {
    this.#o = options;
    this.#where = `Secret ${options.namespace}/${options.name}`;
  }

  async load(): Promise<{ data: KeySetData; revision: string } | null> {
    const secret = await this.#current();
    if (!secret) return null;
    const revision = secret.metadata?.resourceVersion ?? '';
    if (this.#parsed?.revision !== revision) this.#parsed = { revision, data: parse(secret, this.#where) };
    return { data: this.#parsed.data, revision };
  }

  async save(data: KeySetData, expectedRevision: string | null): Promise<string> {
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: this.#o.name,
        namespace: this.#o.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'strongroom', 'strongroom.dev/role': 'local-kms-keyset' },
        ...(expectedRevision === null ? {} : { resourceVersion: expectedRevision }),
      },
      data: { [DATA_KEY]: Buffer.from(JSON.stringify(data)).toString('base64') },
    };
    let saved: V1Secret;
    try {
      saved =
        expectedRevision === null
          ? await this.#o.core.createNamespacedSecret({ namespace: this.#o.namespace, body })
          : await this.#o.core.replaceNamespacedSecret({
              namespace: this.#o.namespace,
              name: this.#o.name,
              body,
            });
    } catch (error) {
      if (error instanceof ApiException && (error.code === 409 || error.code === 404)) {
        this.#latest = undefined;
        throw new KmsError('unavailable', `${this.#where} changed concurrently; retry`, { cause: error });
      }
      throw new KmsError('unavailable', `cannot write ${this.#where}`, { cause: error });
    }
    this.#latest = saved;
    return saved.metadata?.resourceVersion ?? '';
  }

  async #current(): Promise<V1Secret | undefined> {
    const fromWatch = this.#o.cached?.();
    if (fromWatch && this.#latest) {
      // The watch may lag our own write by a few milliseconds: take whichever is newer.
      return newer(fromWatch, this.#latest);
    }
    if (fromWatch) return fromWatch;
    if (this.#o.cached && this.#latest) return this.#latest;
    try {
      this.#latest = await this.#o.core.readNamespacedSecret({
        namespace: this.#o.namespace,
        name: this.#o.name,
      });
      return this.#latest;
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw new KmsError('unavailable', `cannot read ${this.#where}`, { cause: error });
    }
  }
}

/** resourceVersions are opaque, but within one etcd they are increasing integers; fall back to the watch copy. */
function newer(a: V1Secret, b: V1Secret): V1Secret {
  const ra = Number(a.metadata?.resourceVersion);
  const rb = Number(b.metadata?.resourceVersion);
  if (Number.isFinite(ra) && Number.isFinite(rb)) return rb > ra ? b : a;
  return a;
}
