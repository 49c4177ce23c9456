/**
 * The AccessGrant controller. Level-triggered like the artifact controller: cache in, pure decision
 * (core/policy/grant.ts) out, status written only on change. Two things are its own:
 * - time: the decision says when it can next change by time alone (notBefore, expiresAt), and the reconcile asks the
 *   queue to come back at exactly that instant, so a grant expires on time without polling;
 * - revocation: every change that ends access (Active → anything else, a grant deleted while Active, versions dropped
 *   from an Active grant) is published on the revocation bus before the status is written (through the ledger of
 *   revocation/derive.ts, which every replica also feeds from its informers once the status is written, and which
 *   lets each revocation through once);
 * - audit: every governance transition between the recorded status and the one about to be written (created,
 *   approved, denied, activated, expired, revoked, quarantined, lifted; core/audit/governance.ts) is appended to the
 *   audit log before the status is written. If the log is not open the reconcile fails and is retried; a crash between
 *   the append and the write records the transition again on the next reconcile (at-least-once).
 */
import type { CustomObjectsApi, V1Namespace } from '@kubernetes/client-node';
import type winston from 'winston';
import {
  ACCESS_GRANT_PLURAL,
  ENVIRONMENT_LABEL,
  type AccessGrant,
  type AccessGrantStatus,
  type AccessGrantSubject,
  type ModelArtifact,
} from '../../core/api/index.ts';
import { grantTransitions } from '../../core/audit/index.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import { quarantineKey, type QuarantineSet } from '../../core/policy/quarantine.ts';
import { statusEqual } from '../../core/policy/conditions.ts';
import {
  endsAccess,
  evaluateGrant,
  grantStatus,
  type GrantPhase,
  type NamespaceFacts,
} from '../../core/policy/grant.ts';
import type { EventRecorder } from '../kube/events.ts';
import { objectKey, type Informer } from '../kube/informer.ts';
import type { ReconcileResult } from '../kube/workqueue.ts';
import { watch, type Controller, type EventSource } from '../manager/controller.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { RevocationReason } from '../revocation/bus.ts';
import type { RevocationPublisher } from '../revocation/derive.ts';
import type { GovernanceAudit } from './governance-audit.ts';
import { writeStatus } from './status-writer.ts';

const MAX_REQUEUE_MS = 6 * 3600_000;

const PHASE_REASON: Record<GrantPhase, RevocationReason> = {
  Expired: 'grant-expired',
  Revoked: 'grant-revoked',
  Denied: 'grant-denied',
  Pending: 'grant-suspended',
  Active: 'grant-suspended',
};

interface Known {
  readonly uid: string;
  readonly phase: GrantPhase | undefined;
  readonly artifact: { readonly namespace: string; readonly name: string };
  readonly subjects: readonly AccessGrantSubject[];
  readonly resolvedVersions: readonly string[];
}

export interface AccessGrantControllerOptions {
  readonly custom: CustomObjectsApi;
  readonly grants: Informer<AccessGrant>;
  readonly artifacts: Informer<ModelArtifact>;
  readonly namespaces: Informer<V1Namespace>;
  readonly events: EventRecorder;
  /** Where revocations go: the ledger that lets each through once (revocation/derive.ts). */
  readonly bus: RevocationPublisher;
  readonly metrics: OperatorMetrics;
  readonly logger: winston.Logger;
  /** The classification table in force, read at every reconcile (it can change while the operator runs). */
  readonly policy: () => ClassificationTable;
  /** Where governance transitions are recorded (the leader's audit log). */
  readonly audit: GovernanceAudit;
  /**
   * The quarantined identities (operator/quarantine/store.ts), read at every reconcile; undefined while the cache has
   * not synced (the reconcile then fails and is retried: no grant is judged without them). Absent: none.
   */
  readonly quarantines?: () => QuarantineSet | undefined;
  readonly now?: () => Date;
}

export class AccessGrantController {
  readonly #o: AccessGrantControllerOptions;
  readonly #now: () => Date;
  /** What this process last decided per grant key, so a grant that disappears can still be revoked. */
  readonly #known = new Map<string, Known>();
  /** artifact key → grant keys that reference it. */
  readonly #byArtifact = new Map<string, Set<string>>();
  /**
   * Per grant key: the resourceVersion whose transitions this process already appended, and what it appended. A
   * stale cache (or a failed status write) shows the same resourceVersion again; those events are not appended twice.
   */
  readonly #audited = new Map<string, { readonly resourceVersion: string; readonly events: Set<string> }>();
  /** The quarantines seen at the last quarantine event (key → record), to queue only the grants concerned. */
  #quarantineKeys = new Map<string, string>();

  constructor(options: AccessGrantControllerOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * How the manager runs this controller (operator/manager/controller.ts): queue `accessgrant`, every grant on a
   * resync, and these watches: a grant's events keep the artifact → grants index and queue the grant; an artifact's
   * events queue the grants that reference it; any namespace event queues every grant (subjects' namespaces and
   * their environments); a valid change of the classification table queues every grant; a change of the
   * quarantines ConfigMap queues the grants naming an identity quarantined or lifted.
   */
  controller(sources: {
    readonly workers: number;
    readonly tableChanged: EventSource<unknown>;
    /** Fires when the quarantines ConfigMap changes: the grants naming an identity added or removed are queued. */
    readonly quarantinesChanged?: EventSource<unknown>;
  }): Controller {
    const all = (): string[] => this.#o.grants.list().map(objectKey);
    return {
      name: 'accessgrant',
      workers: sources.workers,
      reconcile: (key) => this.reconcile(key),
      resync: all,
      watches: [
        watch(this.#o.grants, (event) => {
          this.indexGrant(event.key, event.object, event.type === 'deleted');
          return [event.key];
        }),
        watch(this.#o.artifacts, (event) => this.grantsFor(event.key)),
        watch(this.#o.namespaces, all),
        watch(sources.tableChanged, all),
        ...(sources.quarantinesChanged === undefined
          ? []
          : [watch(sources.quarantinesChanged, () => this.grantsOfChangedQuarantines())]),
      ],
    };
  }

  /** Keeps the artifact → grants index; called for every event of the grant informer (see controller()). */
  indexGrant(key: string, grant: AccessGrant, deleted: boolean): void {
    const artifactKey = `${grant.metadata.namespace ?? ''}/${grant.spec.artifactRef.name}`;
    const set = this.#byArtifact.get(artifactKey) ?? new Set<string>();
    if (deleted) set.delete(key);
    else set.add(key);
    if (set.size === 0) this.#byArtifact.delete(artifactKey);
    else this.#byArtifact.set(artifactKey, set);
  }

  /**
   * The grants naming an identity whose quarantine key appeared, disappeared or changed since the last call (every
   * grant when the quarantines are not readable yet).
   */
  grantsOfChangedQuarantines(): string[] {
    const set = this.#o.quarantines?.();
    if (set === undefined) return this.#o.grants.list().map(objectKey);
    const now = new Map([...set.byKey].map(([k, q]) => [k, JSON.stringify([q.record, q.problem ?? ''])]));
    const changed = new Set(
      [...now.keys(), ...this.#quarantineKeys.keys()].filter(
        (k) => now.get(k) !== this.#quarantineKeys.get(k),
      ),
    );
    this.#quarantineKeys = now;
    if (changed.size === 0) return [];
    return this.#o.grants
      .list()
      .filter((g) => g.spec.subjects.some((s) => changed.has(quarantineKey(s))))
      .map(objectKey);
  }

  /** The grants to re-evaluate when an artifact changes. */
  grantsFor(artifactKey: string): readonly string[] {
    return [...(this.#byArtifact.get(artifactKey) ?? [])];
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const grant = this.#o.grants.get(key);
    if (!grant || grant.metadata.deletionTimestamp) {
      this.#forget(key, grant);
      return undefined;
    }
    const now = this.#now();
    const namespace = grant.metadata.namespace ?? '';
    const artifact = this.#o.artifacts.get(`${namespace}/${grant.spec.artifactRef.name}`);
    const quarantines = this.#o.quarantines === undefined ? undefined : this.#o.quarantines();
    if (this.#o.quarantines !== undefined && quarantines === undefined)
      throw new Error('the quarantines ConfigMap is not in the cache yet; the grant is judged once it is');
    const decision = evaluateGrant({
      grant,
      artifact,
      namespaces: this.#namespaceFacts(grant),
      policy: this.#o.policy(),
      now,
      ...(quarantines === undefined ? {} : { quarantines }),
    });
    const status = grantStatus(grant.status, decision, grant, now, artifact);
    const previous = this.#known.get(key);
    const previousPhase = grant.status?.phase ?? previous?.phase;
    const previousVersions = previous?.resolvedVersions ?? grant.status?.resolvedVersions ?? [];
    const target = { namespace, name: grant.spec.artifactRef.name };
    if (endsAccess(previousPhase, decision.phase)) {
      this.#publish(
        grant,
        decision.reason === 'Quarantined' ? 'grant-suspended' : PHASE_REASON[decision.phase],
        target,
        [],
        `${decision.reason}: ${decision.message}`,
      );
    } else if (decision.phase === 'Active' && grant.spec.mode === 'read') {
      const dropped = previousVersions.filter((v) => !decision.resolvedVersions.includes(v));
      if (dropped.length > 0)
        this.#publish(
          grant,
          'versions-removed',
          target,
          dropped,
          `versions no longer covered: ${dropped.join(', ')}`,
        );
    }
    this.#known.set(key, {
      uid: grant.metadata.uid ?? '',
      phase: decision.phase,
      artifact: target,
      subjects: grant.spec.subjects,
      resolvedVersions: decision.resolvedVersions,
    });
    if (!statusEqual(grant.status, status)) {
      await this.#audit(key, grant, status);
      await writeStatus(
        this.#o.custom,
        ACCESS_GRANT_PLURAL,
        namespace,
        grant.metadata.name ?? '',
        grant.status,
        status,
      );
      // Events for what someone must act on or know about: a denial, a revocation, an expiry, and access that
      // resumes after it had ended. A grant going Pending → Active on creation is the normal path and is visible
      // in its status; an Event per grant would double the API writes of a large rollout.
      const noteworthy =
        decision.phase === 'Denied' ||
        decision.phase === 'Revoked' ||
        decision.phase === 'Expired' ||
        (decision.phase === 'Active' && previousPhase !== undefined && previousPhase !== 'Pending');
      if (previousPhase !== decision.phase && noteworthy)
        this.#o.events.record(
          grant,
          decision.phase === 'Denied' || decision.phase === 'Revoked' ? 'Warning' : 'Normal',
          decision.reason,
          decision.message,
        );
    }
    if (!decision.nextEvaluationAt) return undefined;
    const delay = decision.nextEvaluationAt.getTime() - this.#now().getTime();
    return { requeueAfterMs: Math.min(MAX_REQUEUE_MS, Math.max(0, delay)) };
  }

  /** Appends the grant's governance transitions, each once per resourceVersion in this process. */
  async #audit(key: string, grant: AccessGrant, next: AccessGrantStatus): Promise<void> {
    const resourceVersion = grant.metadata.resourceVersion ?? '';
    let done = this.#audited.get(key);
    if (done?.resourceVersion !== resourceVersion) {
      done = { resourceVersion, events: new Set() };
      this.#audited.set(key, done);
    }
    for (const event of grantTransitions(grant, grant.status, next)) {
      const id = JSON.stringify(event);
      if (done.events.has(id)) continue;
      await this.#o.audit.record(event);
      done.events.add(id);
    }
  }

  #forget(key: string, grant: AccessGrant | undefined): void {
    const known = this.#known.get(key);
    this.#known.delete(key);
    this.#audited.delete(key);
    const wasActive = known ? known.phase === 'Active' : grant?.status?.phase === 'Active';
    if (!wasActive) return;
    const target = known?.artifact ?? {
      namespace: grant?.metadata.namespace ?? '',
      name: grant?.spec.artifactRef.name ?? '',
    };
    const published = this.#o.bus.publish({
      reason: 'grant-deleted',
      artifact: target,
      grant: {
        namespace: key.split('/')[0] ?? '',
        name: key.split('/')[1] ?? '',
        uid: known?.uid ?? grant?.metadata.uid ?? '',
      },
      subjects: (known?.subjects ?? grant?.spec.subjects ?? []).map((s) => ({
        namespace: s.namespace,
        serviceAccount: s.serviceAccount,
      })),
      versions: [],
      message: 'the grant was deleted',
    });
    // Counted once per replica: the ledger drops what the informers already showed (revocation/derive.ts).
    if (published !== undefined) this.#o.metrics.revocations.inc({ reason: 'grant-deleted' });
    this.#o.logger[published === undefined ? 'debug' : 'info'](
      published === undefined ? 'revocation already published' : 'published revocation',
      {
        namespace: key.split('/')[0],
        name: key.split('/')[1],
        reason: 'grant-deleted',
      },
    );
  }

  #publish(
    grant: AccessGrant,
    reason: RevocationReason,
    artifact: { namespace: string; name: string },
    versions: readonly string[],
    message: string,
  ): void {
    const published = this.#o.bus.publish({
      reason,
      artifact,
      grant: {
        namespace: grant.metadata.namespace ?? '',
        name: grant.metadata.name ?? '',
        uid: grant.metadata.uid ?? '',
      },
      subjects: grant.spec.subjects.map((s) => ({
        namespace: s.namespace,
        serviceAccount: s.serviceAccount,
      })),
      versions,
      message,
    });
    // Counted once per replica: the ledger drops what the informers already showed (revocation/derive.ts).
    if (published !== undefined) this.#o.metrics.revocations.inc({ reason });
    this.#o.logger[published === undefined ? 'debug' : 'info'](
      published === undefined ? 'revocation already published' : 'published revocation',
      {
        namespace: grant.metadata.namespace,
        name: grant.metadata.name,
        reason,
      },
    );
  }

  #namespaceFacts(grant: AccessGrant): Map<string, NamespaceFacts> {
    const names = new Set([grant.metadata.namespace ?? '', ...grant.spec.subjects.map((s) => s.namespace)]);
    const facts = new Map<string, NamespaceFacts>();
    for (const name of names) {
      const ns = this.#o.namespaces.get(name);
      facts.set(name, {
        exists: ns !== undefined && !ns.metadata?.deletionTimestamp,
        environment: ns?.metadata?.labels?.[ENVIRONMENT_LABEL],
      });
    }
    return facts;
  }
}
