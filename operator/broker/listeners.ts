/**
 * The broker's two TLS 1.3 listeners (tls-listener.ts) and their credentials: the serving certificate (Secret
 * `strongroom-broker-tls` by default) and the operator CA bundle that client certificates must chain to.
 * `waitForCredentials` waits for the serving certificate (retrying every 500 ms until `stop()`); `listen` listens on
 * both addresses, then re-reads the credentials every `credentialRefreshMs` and swaps a change into both listeners
 * without a restart (pki/credential-reloader.ts).
 *   - attest: server-authenticated TLS (a pod has no client certificate yet);
 *   - broker: mutual TLS, a client certificate chaining to the CA bundle is required at the handshake.
 */
import type { TLSSocket } from 'node:tls';
import type { CoreV1Api } from '@kubernetes/client-node';
import type winston from 'winston';
import { CredentialReloader, CredentialReloadError } from '../pki/credential-reloader.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import { readServingCertificate } from '../pki/serving-secret.ts';
import { BrokerServerError } from './errors.ts';
import { sameIdentity, TlsListener, type RefusedHandshake, type TlsIdentity } from './tls-listener.ts';

export interface BrokerListenersOptions {
  readonly attestAddress: { readonly host: string; readonly port: number };
  readonly brokerAddress: { readonly host: string; readonly port: number };
  /** The operator namespace, which holds the serving Secret. */
  readonly namespace: string;
  /** Default `strongroom-broker-tls`. */
  readonly servingSecretName?: string | undefined;
  readonly core: CoreV1Api;
  readonly ca: Pick<InternalCa, 'load'>;
  /** Default 30 000 ms. */
  readonly credentialRefreshMs?: number | undefined;
  readonly logger: winston.Logger;
  readonly onRefused: (listener: 'attest' | 'broker', refused: RefusedHandshake) => void;
}

/** See the module comment. */
export class BrokerListeners {
  readonly #o: BrokerListenersOptions;
  readonly #credentials: CredentialReloader<TlsIdentity>;
  #listeners: { attest: TlsListener; broker: TlsListener } | undefined;

  constructor(options: BrokerListenersOptions) {
    this.#o = options;
    this.#credentials = new CredentialReloader({
      what: 'the serving certificate',
      read: () => this.#readIdentity(),
      same: sameIdentity,
      onChange: (next) => {
        this.#listeners?.attest.setIdentity(next);
        this.#listeners?.broker.setIdentity(next);
        options.logger.info('serving certificate or CA bundle changed; new handshakes use it');
      },
      refreshMs: options.credentialRefreshMs ?? 30_000,
      backoff: { firstMs: 500, maxMs: 500 },
      logger: options.logger,
    });
  }

  /** True while both listeners are up. */
  get listening(): boolean {
    return this.#listeners !== undefined;
  }

  /** Waits for the serving certificate and CA bundle. Throws BrokerServerError when stopped first. */
  async waitForCredentials(): Promise<void> {
    try {
      await this.#credentials.waitForFirst();
    } catch (error) {
      if (error instanceof CredentialReloadError)
        throw new BrokerServerError('stopped before the serving certificate was available', { cause: error });
      throw error;
    }
  }

  /**
   * Listens on both addresses with the credentials `waitForCredentials` found, handing each connection past its
   * handshake to `onConnection` (on the broker listener, only those whose client certificate verified); resolves
   * with the bound ports. Throws BrokerServerError when an address cannot be bound.
   */
  async listen(onConnection: {
    readonly attest: (socket: TLSSocket) => void;
    readonly broker: (socket: TLSSocket) => void;
  }): Promise<{ attest: number; broker: number }> {
    const identity = this.#credentials.current;
    if (identity === undefined) throw new BrokerServerError('no serving certificate yet: wait for it first');
    const listener = (name: 'attest' | 'broker', address: { host: string; port: number }, mutual: boolean) =>
      new TlsListener({
        ...address,
        mutual,
        onConnection: onConnection[name],
        onRefused: (refused) => {
          this.#o.onRefused(name, refused);
        },
      });
    const listeners = {
      attest: listener('attest', this.#o.attestAddress, false),
      broker: listener('broker', this.#o.brokerAddress, true),
    };
    let ports: { attest: number; broker: number };
    try {
      ports = {
        attest: await listeners.attest.start(identity),
        broker: await listeners.broker.start(identity),
      };
    } catch (error) {
      await Promise.all([listeners.attest.stop(), listeners.broker.stop()]);
      throw new BrokerServerError('cannot listen', { cause: error });
    }
    this.#listeners = listeners;
    this.#credentials.startRefreshing();
    return ports;
  }

  /**
   * Re-reads the serving certificate and CA bundle and, when either changed, uses them for new handshakes. Returns
   * true when something changed; throws CredentialReloadError when they cannot be read.
   */
  async refreshIdentity(): Promise<boolean> {
    return this.#credentials.reload();
  }

  /** Stops re-reading the credentials (and waiting for them), stops listening and destroys every connection. */
  async stop(): Promise<void> {
    this.#credentials.stop();
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) await Promise.all([listeners.attest.stop(), listeners.broker.stop()]);
  }

  async #readIdentity(): Promise<TlsIdentity> {
    const name = this.#o.servingSecretName ?? 'strongroom-broker-tls';
    const { cert, key } = await readServingCertificate(this.#o.core, this.#o.namespace, name);
    const { bundlePem } = await this.#o.ca.load();
    return { cert, key, ca: Buffer.from(bundlePem) };
  }
}
