/**
 * Keeps the operator's internal PKI current (leader only): the CA in its Secret (created once, rolled over before it
 * expires), the serving certificates of the webhook and the key broker (renewed at 2/3 of their life), and the CA
 * bundle in the webhook configurations the operator owns. Comes back when the earliest renewal is due.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type winston from 'winston';
import { InternalCa } from '../pki/internal-ca.ts';
import type { ReconcileResult } from '../kube/workqueue.ts';
import { watch, type Controller, type EventSource } from '../manager/controller.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';

/** Re-checked at least this often, so a deleted Secret or an edited webhook configuration is repaired. */
const MAX_WAIT_MS = 5 * 60_000;

export interface PkiControllerOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly metrics: OperatorMetrics;
  readonly logger: winston.Logger;
}

/**
 * The DNS names of the Services `strongroom-webhook` and `strongroom-broker` in the operator's namespace, which the
 * serving certificates carry. Nothing in this repository creates the Services: the tests reach the operator on the
 * host, the webhook through a `url` and the broker at the pod bridge's gateway under its `.svc` server name.
 */
export function servingNames(namespace: string): { webhook: string[]; broker: string[] } {
  const dns = (service: string): string[] => [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
  return { webhook: dns('strongroom-webhook'), broker: dns('strongroom-broker') };
}

export class PkiController {
  /** The one key of its queue. */
  static readonly KEY = 'pki';
  readonly #o: PkiControllerOptions;
  readonly ca: InternalCa;

  constructor(options: PkiControllerOptions) {
    this.#o = options;
    this.ca = new InternalCa(options.kubeConfig, { namespace: options.namespace, logger: options.logger });
  }

  /**
   * How the manager runs this controller (operator/manager/controller.ts): its own queue `pki` with one worker and
   * one key, queued on a resync and on any event of the webhook configurations the operator owns (labelled
   * strongroom.dev/ca-bundle=operator), so an edited CA bundle is repaired at once.
   */
  controller(sources: { readonly webhookConfigurations: readonly EventSource<unknown>[] }): Controller {
    return {
      name: 'pki',
      workers: 1,
      reconcile: () => this.reconcile(),
      resync: () => [PkiController.KEY],
      watches: sources.webhookConfigurations.map((source) => watch(source, () => [PkiController.KEY])),
    };
  }

  async reconcile(): Promise<ReconcileResult> {
    const state = await this.ca.ensureAuthority();
    this.#o.metrics.caNotAfterSeconds.set({ ca: 'current' }, state.caNotAfter.getTime() / 1000);
    const names = servingNames(this.#o.namespace);
    // The bundle goes out before any certificate signed by a new CA, so no client meets a leaf it cannot verify.
    const patched = await this.ca.syncCaBundles();
    if (patched.length > 0) this.#o.logger.info('patched CA bundles', { webhookConfigurations: patched });
    let next = state.nextCheckAt.getTime();
    for (const [name, dnsNames] of Object.entries(names)) {
      const cert = await this.ca.ensureServingCertificate({ name, dnsNames, ipAddresses: ['127.0.0.1'] });
      if (cert.issued) this.#o.logger.info('issued serving certificate', { name, secret: cert.secretName });
      next = Math.min(next, cert.renewAt.getTime());
      this.#o.metrics.certificateNotAfterSeconds.set({ name }, cert.notAfter.getTime() / 1000);
    }
    return { requeueAfterMs: Math.min(MAX_WAIT_MS, Math.max(1_000, next - Date.now())) };
  }
}
