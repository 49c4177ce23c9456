/**
 * Opens the KMS that --kms chooses ([kms.md](../../docs/kms.md)), as a runnable: the manager opens it after the
 * health server listens and closes it late in shutdown (after pending Events are flushed, before the health server
 * closes). The keyring, the controllers and the broker are built before that with {@link KmsRunnable.provider}, which
 * forwards to the KMS once it is open; nothing calls it earlier (the work queues and the broker run only after).
 */
import { readFileSync } from 'node:fs';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { LocalKmsProvider } from '../../core/kms/local.ts';
import { KmsError, type KmsProvider } from '../../core/kms/provider.ts';
import { holdsSigningKeys, type CheckpointSigningKey } from '../../core/kms/signing.ts';
import type { OperatorConfig } from '../config.ts';
import type { Informer } from '../kube/informer.ts';
import type { Runnable } from '../manager/runnable.ts';
import { SecretKeySetStore } from './secret-keyset-store.ts';

/** The Secret in the operator's namespace that holds the KEKs with --kms local. */
export const KEYSET_SECRET = 'strongroom-kms-local';

/** Opens the configured KMS. `keyset`: the informer of the key set Secret (--kms local reads it from the cache). */
export async function openKms(
  config: OperatorConfig,
  core: CoreV1Api,
  keyset: Informer<V1Secret>,
): Promise<KmsProvider> {
  const kms = config.kms;
  switch (kms.provider) {
    case 'local':
      return new LocalKmsProvider(
        new SecretKeySetStore({
          core,
          namespace: config.namespace,
          name: KEYSET_SECRET,
          cached: () => (keyset.hasSynced() ? keyset.get(`${config.namespace}/${KEYSET_SECRET}`) : undefined),
        }),
      );
    case 'gcp': {
      // Loaded only when chosen: the Cloud KMS client and its protos cost ~25 MiB of memory.
      const { GcpKmsProvider } = await import('../../core/kms/gcp.ts');
      const { withShortKeyIds } = await import('./gcp-key-ids.ts');
      return withShortKeyIds(
        new GcpKmsProvider({
          keyRing: kms.keyRing,
          ...(kms.endpoint ? { clientOptions: { apiEndpoint: kms.endpoint } } : {}),
        }),
      );
    }
    case 'pkcs11': {
      const { Pkcs11KmsProvider } = await import('../../core/kms/pkcs11.ts');
      return Pkcs11KmsProvider.open({
        module: kms.module,
        tokenLabel: kms.tokenLabel ?? '',
        pin: readFileSync(kms.pinFile, 'utf8').trim(),
      });
    }
  }
}

/** The KMS as a runnable: start() opens it, stop() closes it. */
export class KmsRunnable implements Runnable {
  readonly name = 'kms';
  readonly needsLeader = false;
  /** The KMS to build with: forwards every call to the opened KMS; until it is open, calls fail 'unavailable'. */
  readonly provider: KmsProvider;
  readonly #open: () => Promise<KmsProvider>;
  #opened: KmsProvider | undefined;

  /** `kind`: the provider's name (--kms); `open`: opens it (openKms). */
  constructor(kind: string, open: () => Promise<KmsProvider>) {
    this.#open = open;
    const call = <T>(use: (kms: KmsProvider) => Promise<T>): Promise<T> => {
      const kms = this.#opened;
      if (kms === undefined) return Promise.reject(new KmsError('unavailable', 'the KMS is not open'));
      return use(kms);
    };
    this.provider = {
      name: kind,
      createKey: (keyId) => call((kms) => kms.createKey(keyId)),
      wrap: (keyId, plaintext, aad) => call((kms) => kms.wrap(keyId, plaintext, aad)),
      unwrap: (wrapped, aad) => call((kms) => kms.unwrap(wrapped, aad)),
      versions: (keyId) => call((kms) => kms.versions(keyId)),
      rotate: (keyId) => call((kms) => kms.rotate(keyId)),
      destroyVersion: (keyId, version) => call((kms) => kms.destroyVersion(keyId, version)),
      destroyKey: (keyId) => call((kms) => kms.destroyKey(keyId)),
      // Closed by the runnable's stop(), in its shutdown step, not by whoever holds the provider.
      close: () => Promise.resolve(),
    };
  }

  async start(): Promise<void> {
    this.#opened = await this.#open();
  }

  /**
   * The checkpoint signing key `keyId` in the opened KMS (--audit-signer kms; core/kms/signing.ts), created at first
   * use. The local KMS cannot hold one (config.ts refuses --audit-signer kms with --kms local).
   */
  checkpointSigningKey(keyId: string): Promise<CheckpointSigningKey> {
    const kms = this.#opened;
    if (kms === undefined) return Promise.reject(new KmsError('unavailable', 'the KMS is not open'));
    if (!holdsSigningKeys(kms))
      return Promise.reject(
        new KmsError('invalid', `the ${kms.name} KMS cannot hold a checkpoint signing key`),
      );
    return kms.checkpointSigningKey(keyId);
  }

  async stop(): Promise<void> {
    const kms = this.#opened;
    this.#opened = undefined;
    await kms?.close();
  }
}
