/**
 * Audits changes of the namespace label strongroom.dev/environment (it decides which grants cross environments).
 * Runs on the leader in a queue of its own with one key, queued on every namespace event and at the start of every
 * term. The last audited value per namespace is kept in ConfigMap `strongroom-environments` in the operator's namespace
 * (data: namespace → label value; unlabelled namespaces are absent), so a restart does not audit again what was
 * already recorded, and a change made while no operator ran is audited on start-up. Order: the events are appended
 * first, the ConfigMap written after; a crash in between audits the same change again (at-least-once).
 */
import type { CoreV1Api, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import type winston from 'winston';
import { ENVIRONMENT_LABEL } from '../../core/api/index.ts';
import { environmentChanges } from '../../core/audit/index.ts';
import type { Informer } from '../kube/informer.ts';
import { watch, type Controller } from '../manager/controller.ts';
import type { GovernanceAudit } from './governance-audit.ts';

export const ENVIRONMENTS_CONFIGMAP = 'strongroom-environments';

export interface EnvironmentAuditorOptions {
  readonly core: CoreV1Api;
  /** The operator's namespace, where the ConfigMap lives. */
  readonly namespace: string;
  readonly namespaces: Informer<V1Namespace>;
  readonly audit: GovernanceAudit;
  readonly logger: winston.Logger;
}

function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export class EnvironmentAuditor {
  /** The one key of its queue. */
  static readonly KEY = '#environments';
  readonly #o: EnvironmentAuditorOptions;

  constructor(options: EnvironmentAuditorOptions) {
    this.#o = options;
  }

  /**
   * How the manager runs this auditor (operator/manager/controller.ts): its own queue `environment-audit` with one
   * worker and one key, queued on a resync (so the start of every term) and on every namespace event.
   */
  controller(): Controller {
    return {
      name: 'environment-audit',
      workers: 1,
      reconcile: () => this.reconcile().then(() => undefined),
      resync: () => [EnvironmentAuditor.KEY],
      watches: [watch(this.#o.namespaces, () => [EnvironmentAuditor.KEY])],
    };
  }

  async reconcile(): Promise<void> {
    const { core, namespace, namespaces } = this.#o;
    // An unsynced cache would look like every namespace had been deleted.
    if (!namespaces.hasSynced()) throw new Error('the namespace cache is not synced yet');
    let stored: V1ConfigMap | undefined;
    try {
      stored = await core.readNamespacedConfigMap({ namespace, name: ENVIRONMENTS_CONFIGMAP });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
    }
    const recorded = stored?.data ?? {};
    const current = new Map<string, string | undefined>();
    for (const ns of namespaces.list()) {
      const name = ns.metadata?.name;
      if (name) current.set(name, ns.metadata?.labels?.[ENVIRONMENT_LABEL]);
    }
    const changes = environmentChanges(recorded, current);
    if (changes.length === 0 && stored !== undefined) return;
    for (const change of changes) {
      await this.#o.audit.record(change);
      this.#o.logger.info('environment label changed', {
        namespace: change.namespace,
        old: change.old,
        new: change.new,
        reason: change.reason,
      });
    }
    const data: Record<string, string> = {};
    for (const [name, value] of [...current].sort(([a], [b]) => (a < b ? -1 : 1)))
      if (value !== undefined && value !== '') data[name] = value;
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: ENVIRONMENTS_CONFIGMAP,
        namespace,
        labels: { 'app.kubernetes.io/managed-by': 'strongroom' },
        ...(stored?.metadata?.resourceVersion ? { resourceVersion: stored.metadata.resourceVersion } : {}),
      },
      data,
    };
    // Optimistic concurrency: a 409 (another writer, a stale read) retries the whole reconcile.
    if (stored === undefined) await core.createNamespacedConfigMap({ namespace, body });
    else await core.replaceNamespacedConfigMap({ namespace, name: ENVIRONMENTS_CONFIGMAP, body });
  }
}
