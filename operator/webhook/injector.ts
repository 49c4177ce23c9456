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
  #caBundlePem = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(options: SidecarInjectorOptions) {
    this.#o = options;
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

  /** Loads the CA bundle, then serves; resolves with the port. */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    for (let attempt = 0; this.#caBundlePem === ''; attempt++) {
      try {
        this.#caBundlePem = (await this.#o.ca.load()).bundlePem;
      } catch (error) {
        if (signal?.aborted === true) throw error;
        if (attempt % 10 === 0)
          this.#o.logger.info('waiting for the operator CA', {
            error: error instanceof Error ? error.message : String(error),
          });
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    this.#timer = setInterval(() => {
      this.#o.ca.load().then(
        ({ bundlePem }) => {
          this.#caBundlePem = bundlePem;
        },
        (error: unknown) => {
          this.#o.logger.warn('could not re-read the CA bundle; injecting the last one', {
            error: error instanceof Error ? error.message : String(error),
          });
        },
      );
    }, this.#o.credentialRefreshMs).unref();
    return this.#server.start(signal);
  }

  ready(): boolean {
    return this.#server.ready();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
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
      caBundlePem: this.#caBundlePem,
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
