/**
 * Binds the pure admission decision (core/injection `admit`) to the operator's state: artifacts and grants from
 * the informer caches, the injection settings from the flags, and the operator CA bundle the sidecar verifies the broker with
 * (re-read with the serving certificate, so a CA rollover reaches newly injected pods). Serves it through
 * {@link WebhookServer}.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import type winston from 'winston';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { admit, type InjectionSettings } from '../../core/injection/index.ts';
import type { InjectionConfig } from '../config.ts';
import type { Informer } from '../kube/informer.ts';
import { CredentialReloader } from '../pki/credential-reloader.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import { WebhookServer, type AdmissionOutcome, type ReviewAnswer } from './server.ts';

export interface SidecarInjectorOptions {
  readonly config: InjectionConfig;
  readonly namespace: string;
  readonly core: CoreV1Api;
  readonly artifacts: Informer<ModelArtifact>;
  /** For artifacts in other namespaces: only those an AccessGrant names the pod's service account for resolve. */
  readonly grants: Informer<AccessGrant>;
  readonly ca: InternalCa;
  readonly credentialRefreshMs: number;
  readonly logLevel: string;
  readonly logger: winston.Logger;
  readonly observe: (outcome: AdmissionOutcome, seconds: number) => void;
}

/** The webhook server plus what its decisions read. */
export class SidecarInjector {
  readonly #o: SidecarInjectorOptions;
  readonly #server: WebhookServer;
  /** The operator CA bundle injected into pods, re-read like the serving certificate. */
  readonly #caBundle: CredentialReloader<string>;

  constructor(options: SidecarInjectorOptions) {
    this.#o = options;
    this.#caBundle = new CredentialReloader({
      what: 'the operator CA bundle',
      read: async () => (await options.ca.load()).bundlePem,
      same: (a, b) => a === b,
      onChange: () => undefined,
      refreshMs: options.credentialRefreshMs,
      backoff: { firstMs: 500, maxMs: 500 },
      logger: options.logger,
    });
    this.#server = new WebhookServer({
      host: options.config.address.host,
      port: options.config.address.port,
      namespace: options.namespace,
      core: options.core,
      credentialRefreshMs: options.credentialRefreshMs,
      logger: options.logger,
      observe: options.observe,
      review: (body) => this.#review(body),
    });
  }

  /**
   * Loads the CA bundle (retrying every 500 ms), then serves; resolves with the port. Throws CredentialReloadError
   * when `signal` aborts or `stop()` is called before the CA bundle is loaded.
   */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    await this.#caBundle.waitForFirst(signal);
    this.#caBundle.startRefreshing();
    return this.#server.start(signal);
  }

  ready(): boolean {
    return this.#server.ready();
  }

  async stop(): Promise<void> {
    this.#caBundle.stop();
    await this.#server.stop();
  }

  #review(body: unknown): ReviewAnswer {
    const c = this.#o.config;
    const settings: InjectionSettings = {
      image: c.image,
      imagePullPolicy: c.imagePullPolicy,
      brokerAddress: c.brokerAddress,
      attestAddress: c.attestAddress,
      brokerServerName: c.brokerServerName,
      caBundlePem: this.#caBundle.current ?? '',
      operatorNamespace: this.#o.namespace,
      logLevel: this.#o.logLevel,
    };
    const lookup = (namespace: string, name: string): ModelArtifact | undefined =>
      this.#o.artifacts.get(`${namespace}/${name}`);
    const grants = (namespace: string): AccessGrant[] =>
      this.#o.grants.list().filter((g) => g.metadata.namespace === namespace);
    return admit(body, lookup, settings, grants) as ReviewAnswer;
  }
}
