/**
 * Revocations on every replica (docs/broker.md § Revocations on every replica). The key broker serves
 * WatchRevocations on every ready replica, but only the leader runs the controllers that decide a revocation. So each
 * replica also derives revocations from what its own informers see, the facts the controllers write:
 *   - a grant whose status phase leaves Active (to Expired, Revoked, Denied or Pending; status reason Quarantined is
 *     a suspension) → grant-expired / grant-revoked / grant-denied / grant-suspended;
 *   - a grant deleted (or given a deletionTimestamp) while its status was Active → grant-deleted;
 *   - a read grant still Active whose status.resolvedVersions lost versions → versions-removed (those versions);
 *   - an artifact whose status.keys marks versions Withdrawn that were not → version-withdrawn;
 *   - an artifact given a deletionTimestamp, or deleted → artifact-deleted.
 * On the leader both the controllers (first, on their decision, before the status is written) and this deriver (on
 * seeing the written status) would publish the same revocation, so both publish through one ledger here that lets
 * each revocation through once: per grant UID "access ended" and "version v removed", per artifact "deleted" and
 * "version v withdrawn". A mark is cleared only when the informer shows the opposite transition (the grant Active
 * again, the version covered or not Withdrawn again, the artifact gone), so the next end is published again. A
 * follower, which runs no controller, publishes from its informers alone. Idempotent by construction: a relist that
 * shows the same state again publishes nothing.
 */
import type winston from 'winston';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import type { Informer, InformerEvent } from '../kube/informer.ts';
import type { Revocation, RevocationBus, RevocationInput, RevocationReason } from './bus.ts';

/** Where the controllers publish revocations (the ledger below, or a bus in tests). */
export interface RevocationPublisher {
  publish(input: RevocationInput): Revocation | undefined;
}

const GRANT_ENDED: ReadonlySet<RevocationReason> = new Set<RevocationReason>([
  'grant-expired',
  'grant-deleted',
  'grant-revoked',
  'grant-denied',
  'grant-suspended',
]);

/** How many UIDs of deleted grants keep their marks, so a late publish of the same deletion is still dropped. */
const TOMBSTONES = 4096;

/** What this replica last saw of a grant. */
interface SeenGrant {
  readonly uid: string;
  readonly active: boolean;
  readonly versions: readonly string[];
}

export interface RevocationDeriverOptions {
  readonly bus: Pick<RevocationBus, 'publish'>;
  readonly grants: Pick<Informer<AccessGrant>, 'onEvent'>;
  readonly artifacts: Pick<Informer<ModelArtifact>, 'onEvent'>;
  readonly logger: winston.Logger;
  /** Told of each revocation this deriver publishes itself (not those the controllers published first). */
  readonly onDerived?: (reason: RevocationReason) => void;
}

/** The revocation status of one grant: its phase mapped to the reason the controller uses. */
function endReason(grant: AccessGrant): RevocationReason {
  if (grant.status?.reason === 'Quarantined') return 'grant-suspended';
  switch (grant.status?.phase) {
    case 'Expired':
      return 'grant-expired';
    case 'Revoked':
      return 'grant-revoked';
    case 'Denied':
      return 'grant-denied';
    default:
      return 'grant-suspended';
  }
}

function grantRef(grant: AccessGrant): { namespace: string; name: string; uid: string } {
  return {
    namespace: grant.metadata.namespace ?? '',
    name: grant.metadata.name ?? '',
    uid: grant.metadata.uid ?? '',
  };
}

function withdrawnVersions(artifact: ModelArtifact): Set<string> {
  return new Set((artifact.status?.keys ?? []).filter((k) => k.state === 'Withdrawn').map((k) => k.version));
}

/** See the module comment. */
export class RevocationDeriver implements RevocationPublisher {
  readonly #o: RevocationDeriverOptions;
  /** Marks of revocations already published: `grant/<uid>`, `grant/<uid>/<version>`, `artifact/<key>[/<version>]`. */
  readonly #published = new Set<string>();
  readonly #grants = new Map<string, SeenGrant>();
  /** Per artifact key: the versions last seen Withdrawn, and whether it was seen deleting. */
  readonly #artifacts = new Map<string, { readonly withdrawn: Set<string>; readonly deleting: boolean }>();
  readonly #tombstones: string[] = [];

  constructor(options: RevocationDeriverOptions) {
    this.#o = options;
    options.grants.onEvent((event) => {
      this.#guard('grant', event.key, () => {
        this.#grant(event);
      });
    });
    options.artifacts.onEvent((event) => {
      this.#guard('artifact', event.key, () => {
        this.#artifact(event);
      });
    });
  }

  /**
   * Publishes unless the same revocation already went out (the controllers' path). Returns what was published, or
   * undefined when nothing new remained.
   */
  publish(input: RevocationInput): Revocation | undefined {
    const marks = this.#marks(input);
    const fresh = marks.filter((m) => !this.#published.has(m.mark));
    if (fresh.length === 0) return undefined;
    for (const m of fresh) this.#published.add(m.mark);
    const versions = input.reason === 'versions-removed' || input.reason === 'version-withdrawn';
    return this.#o.bus.publish(versions ? { ...input, versions: fresh.map((m) => m.version ?? '') } : input);
  }

  /** The marks a revocation sets: one per grant end or artifact deletion, one per version for version changes. */
  #marks(input: RevocationInput): { mark: string; version?: string }[] {
    const artifact = `artifact/${input.artifact.namespace}/${input.artifact.name}`;
    if (GRANT_ENDED.has(input.reason) && input.grant !== undefined)
      return [{ mark: `grant/${input.grant.uid}` }];
    if (input.reason === 'versions-removed' && input.grant !== undefined) {
      const uid = input.grant.uid;
      return input.versions.map((version) => ({ mark: `grant/${uid}/${version}`, version }));
    }
    if (input.reason === 'version-withdrawn')
      return input.versions.map((version) => ({ mark: `${artifact}/${version}`, version }));
    if (input.reason === 'artifact-deleted') return [{ mark: artifact }];
    // Anything else has no identity to deduplicate on: it always goes out.
    return [{ mark: `unique/${String(Math.random())}` }];
  }

  /** A failure to derive is logged; it never stops the informer's other handlers. */
  #guard(kind: string, key: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#o.logger.error('could not derive a revocation', {
        kind,
        key,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      });
    }
  }

  #derived(input: RevocationInput): void {
    const published = this.publish(input);
    if (published === undefined) return;
    this.#o.onDerived?.(input.reason);
    // The fields of the controllers' "published revocation": namespace and name of the grant (else the artifact).
    this.#o.logger.info('derived revocation', {
      namespace: input.grant?.namespace ?? input.artifact.namespace,
      name: input.grant?.name ?? input.artifact.name,
      reason: input.reason,
      artifact: `${input.artifact.namespace}/${input.artifact.name}`,
      versions: published.versions,
      seq: published.seq,
    });
  }

  #grant(event: InformerEvent<AccessGrant>): void {
    const grant = event.object;
    const ref = grantRef(grant);
    const previous = this.#grants.get(event.key);
    const target = { namespace: ref.namespace, name: grant.spec.artifactRef.name };
    const subjects = grant.spec.subjects.map((s) => ({
      namespace: s.namespace,
      serviceAccount: s.serviceAccount,
    }));
    const gone = event.type === 'deleted' || grant.metadata.deletionTimestamp !== undefined;
    const active = !gone && grant.status?.phase === 'Active';
    const versions = grant.status?.resolvedVersions ?? [];
    const wasActive = previous?.uid === ref.uid && previous.active;
    if (gone) {
      this.#grants.delete(event.key);
      if (wasActive || (previous === undefined && grant.status?.phase === 'Active'))
        this.#derived({
          reason: 'grant-deleted',
          artifact: target,
          grant: ref,
          subjects,
          versions: [],
          message: 'the grant was deleted',
        });
      if (event.type === 'deleted') this.#tombstone(ref.uid);
      return;
    }
    this.#grants.set(event.key, { uid: ref.uid, active, versions });
    const mark = `grant/${ref.uid}`;
    if (active) {
      // Seen becoming Active (again): its next end is a new revocation, and so is the next removal of a version it
      // covers anew. Only a transition clears a mark: a controller may have published the end already while the
      // informer still shows the status before its write.
      if (!wasActive) this.#published.delete(mark);
      const before = wasActive ? previous.versions : [];
      for (const v of versions) if (!before.includes(v)) this.#published.delete(`${mark}/${v}`);
      if (!wasActive || grant.spec.mode !== 'read') return;
      const dropped = previous.versions.filter((v) => !versions.includes(v));
      if (dropped.length > 0)
        this.#derived({
          reason: 'versions-removed',
          artifact: target,
          grant: ref,
          subjects,
          versions: dropped,
          message: `versions no longer covered: ${dropped.join(', ')}`,
        });
      return;
    }
    if (wasActive)
      this.#derived({
        reason: endReason(grant),
        artifact: target,
        grant: ref,
        subjects,
        versions: [],
        message: `${grant.status?.reason ?? grant.status?.phase ?? 'ended'}: ${grant.status?.message ?? 'access ended'}`,
      });
  }

  #artifact(event: InformerEvent<ModelArtifact>): void {
    const artifact = event.object;
    const target = { namespace: artifact.metadata.namespace ?? '', name: artifact.metadata.name ?? '' };
    const prefix = `artifact/${event.key}`;
    const previous = this.#artifacts.get(event.key);
    if (event.type === 'deleted' || artifact.metadata.deletionTimestamp !== undefined) {
      if (previous?.deleting !== true)
        this.#derived({
          reason: 'artifact-deleted',
          artifact: target,
          subjects: [],
          versions: [],
          message: 'the artifact is being deleted; its keys are crypto-shredded',
        });
      if (event.type === 'deleted') {
        // Gone: a new artifact of the same name starts afresh.
        this.#artifacts.delete(event.key);
        for (const mark of [...this.#published])
          if (mark === prefix || mark.startsWith(`${prefix}/`)) this.#published.delete(mark);
      } else this.#artifacts.set(event.key, { withdrawn: previous?.withdrawn ?? new Set(), deleting: true });
      return;
    }
    const withdrawn = withdrawnVersions(artifact);
    this.#artifacts.set(event.key, { withdrawn, deleting: false });
    this.#published.delete(prefix);
    for (const v of previous?.withdrawn ?? [])
      if (!withdrawn.has(v)) this.#published.delete(`${prefix}/${v}`);
    if (previous === undefined) return; // the first sight is not a change
    const newly = [...withdrawn].filter((v) => !previous.withdrawn.has(v));
    if (newly.length > 0)
      this.#derived({
        reason: 'version-withdrawn',
        artifact: target,
        subjects: [],
        versions: newly,
        message: `version(s) ${newly.join(', ')} withdrawn`,
      });
  }

  /** Keeps a deleted grant's marks for a while (a controller may publish its deletion after the event). */
  #tombstone(uid: string): void {
    this.#tombstones.push(uid);
    if (this.#tombstones.length <= TOMBSTONES) return;
    const oldest = this.#tombstones.shift();
    if (oldest === undefined) return;
    for (const mark of [...this.#published])
      if (mark === `grant/${oldest}` || mark.startsWith(`grant/${oldest}/`)) this.#published.delete(mark);
  }
}
