/**
 * `WatchRevocations` (docs/broker.md): turns the operator's revocation bus into per-caller streams. A caller gets the
 * revocations that name its namespace and service account, and those of artifacts it holds an unexpired key lease
 * for (the LeaseTracker, fed by ReleaseKey). Heartbeats every `heartbeatMs` let a client tell a quiet stream from a
 * dead one; a Resync tells it that events may have been missed (another epoch, or the bus ring overflowed).
 */
import { randomBytes } from 'node:crypto';
import type { WatchRevocationsResponse } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { REVOCATION_REASONS } from '../../proto/keybroker.ts';
import type { Revocation, RevocationBus } from '../revocation/bus.ts';
import { BrokerError } from './errors.ts';
import type { LeaseBook } from './release.ts';

/**
 * Remembers which artifacts each pod holds a key lease for, until the lease ends, and which versions' keys were sent
 * to it (what a wipe report may name, wipe-report.ts).
 */
export class LeaseTracker implements LeaseBook {
  readonly #byPod = new Map<string, Map<string, number>>();
  /** `<podUid>` → `<namespace>/<name>` → version → end of its lease. */
  readonly #versions = new Map<string, Map<string, Map<string, number>>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  record(podUid: string, artifact: { namespace: string; name: string }, until: Date): void {
    const held = this.#byPod.get(podUid) ?? new Map<string, number>();
    const key = `${artifact.namespace}/${artifact.name}`;
    held.set(key, Math.max(held.get(key) ?? 0, until.getTime()));
    this.#byPod.set(podUid, held);
  }

  /** The key of `version` left the broker for `podUid` (mtls-handlers.ts, once the answer was sent). */
  released(
    podUid: string,
    artifact: { namespace: string; name: string },
    version: string,
    until: Date,
  ): void {
    const byArtifact = this.#versions.get(podUid) ?? new Map<string, Map<string, number>>();
    const key = `${artifact.namespace}/${artifact.name}`;
    const versions = byArtifact.get(key) ?? new Map<string, number>();
    versions.set(version, Math.max(versions.get(version) ?? 0, until.getTime()));
    byArtifact.set(key, versions);
    this.#versions.set(podUid, byArtifact);
  }

  /** The versions of the artifact whose key was sent to `podUid` under a lease that has not ended (may be none). */
  versionsHeld(podUid: string, artifact: { namespace: string; name: string }): string[] {
    const versions = this.#versions.get(podUid)?.get(`${artifact.namespace}/${artifact.name}`);
    const now = this.#now();
    return [...(versions ?? [])].filter(([, until]) => until > now).map(([version]) => version);
  }

  /** True when `podUid` holds an unexpired lease on the artifact. */
  holds(podUid: string, artifact: { namespace: string; name: string }): boolean {
    const until = this.#byPod.get(podUid)?.get(`${artifact.namespace}/${artifact.name}`);
    return until !== undefined && until > this.#now();
  }

  /** Forgets expired leases (called periodically). */
  prune(): void {
    const now = this.#now();
    for (const [pod, held] of this.#byPod) {
      for (const [key, until] of held) if (until <= now) held.delete(key);
      if (held.size === 0) this.#byPod.delete(pod);
    }
    for (const [pod, byArtifact] of this.#versions) {
      for (const [key, versions] of byArtifact) {
        for (const [version, until] of versions) if (until <= now) versions.delete(version);
        if (versions.size === 0) byArtifact.delete(key);
      }
      if (byArtifact.size === 0) this.#versions.delete(pod);
    }
  }
}

/** A revocation as this broker sent it to one pod, kept so that the pod's wipe report can be matched to it. */
export interface DeliveredRevocation {
  readonly seq: number;
  readonly reason: Revocation['reason'];
  readonly artifact: { readonly namespace: string; readonly name: string };
  readonly grant: { readonly namespace: string; readonly name: string; readonly uid: string } | undefined;
  /** When access ended, as sent in the revocation's ended_at. */
  readonly endedAt: Date;
  /**
   * The versions a wipe report may name: those the revocation revoked, narrowed to those whose key this broker sent
   * the pod when it sent any of them ({@link DeliveredRevocations.record}); undefined when the revocation revoked
   * every version and this broker sent the pod none (any version, see {@link maxReports}).
   */
  readonly versions: ReadonlySet<string> | undefined;
  /** How many reports are timed at most: one per version in {@link versions}, one when that is undefined. */
  readonly maxReports: number;
  /**
   * `<version>` of each wipe reported for it (one report per wiped version). wipe-report.ts marks a version before it
   * appends the report to the audit log and unmarks it when the append fails, so concurrent reports time it once.
   */
  readonly reported: Set<string>;
}

/**
 * The versions a wipe report may name for a revocation of `revoked` (every version when empty), given the versions
 * of the artifact whose key this broker sent the pod (`held`, from the LeaseTracker): `revoked` narrowed to `held`
 * when that leaves any (the pod may also hold versions another replica sent it, which this broker cannot know).
 * undefined: any version (every version was revoked and `held` is empty).
 */
export function reportableVersions(
  revoked: readonly string[],
  held: readonly string[],
): ReadonlySet<string> | undefined {
  if (revoked.length === 0) return held.length === 0 ? undefined : new Set(held);
  const narrowed = revoked.filter((v) => held.includes(v));
  return new Set(narrowed.length > 0 ? narrowed : revoked);
}

/** How long, and how many, delivered revocations are kept for matching wipe reports. */
const DELIVERED_TTL_MS = 15 * 60_000;
const DELIVERED_MAX = 16_384;

/**
 * The revocations this process sent, per pod: bounded by age ({@link DELIVERED_TTL_MS}) and count
 * ({@link DELIVERED_MAX}, the oldest dropped first). A wipe report matches only a revocation this very broker sent
 * that pod, so a caller cannot put a time of its choosing into the time-to-revoke histogram.
 */
export class DeliveredRevocations {
  /** `<podUid>/<seq>` → the revocation and when it was sent; Map order is insertion (sending) order. */
  readonly #sent = new Map<string, { readonly sentAt: number; readonly revocation: DeliveredRevocation }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * `revocation` was sent to `podUid`; `held` are the versions of its artifact whose key this broker sent that pod
   * ({@link LeaseTracker.versionsHeld}).
   */
  record(podUid: string, revocation: Revocation, endedAt: Date, held: readonly string[] = []): void {
    const now = this.#now();
    for (const [key, entry] of this.#sent) {
      if (now - entry.sentAt < DELIVERED_TTL_MS && this.#sent.size < DELIVERED_MAX) break;
      this.#sent.delete(key);
    }
    const versions = reportableVersions(revocation.versions, held);
    this.#sent.set(`${podUid}/${String(revocation.seq)}`, {
      sentAt: now,
      revocation: {
        seq: revocation.seq,
        reason: revocation.reason,
        artifact: revocation.artifact,
        grant: revocation.grant,
        endedAt,
        versions,
        maxReports: versions?.size ?? 1,
        reported: new Set(),
      },
    });
  }

  /** The revocation `seq` this process sent `podUid`, if still kept. */
  find(podUid: string, seq: number): DeliveredRevocation | undefined {
    const entry = this.#sent.get(`${podUid}/${String(seq)}`);
    if (entry === undefined || this.#now() - entry.sentAt >= DELIVERED_TTL_MS) return undefined;
    return entry.revocation;
  }
}

/** Who is watching. */
export interface Watcher {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podUid: string;
}

/** The stream's sink: the gRPC call. */
export interface FeedSink {
  write(message: WatchRevocationsResponse): void;
}

export interface RevocationFeedOptions {
  readonly bus: RevocationBus;
  readonly leases: LeaseTracker;
  /** Default 5000 ms. */
  readonly heartbeatMs?: number;
  /**
   * When access ended for a revocation (sent as ended_at); default its publication time `at`. The server passes
   * {@link accessEndedAt} over its grant cache.
   */
  readonly endedAt?: (revocation: Revocation) => Date;
  /** Where the revocations sent are kept for wipe reports; default a new one. */
  readonly delivered?: DeliveredRevocations;
}

/**
 * When access ended: for an expired grant, its spec.expiresAt when that is not later than the publication (the
 * controller publishes at that instant, a follower when it sees the leader's status, later); otherwise the
 * revocation's publication time.
 */
export function accessEndedAt(
  revocation: Pick<Revocation, 'reason' | 'grant' | 'at'>,
  grants: (namespace: string) => readonly { metadata: { uid?: string }; spec: { expiresAt?: string } }[],
): Date {
  const ref = revocation.grant;
  if (revocation.reason !== 'grant-expired' || ref === undefined) return revocation.at;
  const grant = grants(ref.namespace).find((g) => g.metadata.uid === ref.uid);
  const expiresAt = grant?.spec.expiresAt === undefined ? NaN : Date.parse(grant.spec.expiresAt);
  return Number.isFinite(expiresAt) && expiresAt <= revocation.at.getTime()
    ? new Date(expiresAt)
    : revocation.at;
}

/** True when the revocation concerns the watcher. */
export function concerns(revocation: Revocation, watcher: Watcher, leases: LeaseTracker): boolean {
  if (
    revocation.subjects.some(
      (s) => s.namespace === watcher.namespace && s.serviceAccount === watcher.serviceAccount,
    )
  )
    return true;
  return leases.holds(watcher.podUid, revocation.artifact);
}

function timestamp(at: Date): { seconds: string; nanos: number } {
  const ms = at.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** See the module comment. */
export class RevocationFeed {
  /** Identifies this process's sequence numbers. */
  readonly epoch = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  readonly #bus: RevocationBus;
  readonly #leases: LeaseTracker;
  readonly #heartbeatMs: number;
  readonly #endedAt: (revocation: Revocation) => Date;
  /** The revocations sent, per pod, for matching wipe reports (wipe-report.ts). */
  readonly delivered: DeliveredRevocations;

  constructor(options: RevocationFeedOptions) {
    this.#bus = options.bus;
    this.#leases = options.leases;
    this.#heartbeatMs = options.heartbeatMs ?? 5000;
    this.#endedAt = options.endedAt ?? ((r) => r.at);
    this.delivered = options.delivered ?? new DeliveredRevocations();
  }

  /**
   * Starts a stream for `watcher`. Returns the function that ends it (call it when the call ends). Throws
   * BrokerError INVALID_ARGUMENT for an afterSeq without an epoch or an unparsable one.
   */
  open(watcher: Watcher, request: { afterSeq?: string | null; epoch: string }, sink: FeedSink): () => void {
    const afterText = request.afterSeq ?? undefined;
    if (afterText !== undefined && request.epoch === '')
      throw new BrokerError('INVALID_ARGUMENT', 'invalid-request', 'after_seq needs the epoch it belongs to');
    if (afterText !== undefined && !/^\d{1,15}$/.test(afterText))
      throw new BrokerError('INVALID_ARGUMENT', 'invalid-request', 'after_seq is out of range');
    const sameEpoch = request.epoch === this.epoch;
    const resync = (message: string): void => {
      sink.write({ resync: { epoch: this.epoch, lastSeq: String(this.#bus.lastSeq()), message } });
    };
    if (request.epoch !== '' && !sameEpoch)
      resync(`the broker restarted or changed (epoch ${this.epoch}); drop every key and ask again`);
    const listener = (revocation: Revocation): void => {
      if (!concerns(revocation, watcher, this.#leases)) return;
      const endedAt = this.#endedAt(revocation);
      this.delivered.record(
        watcher.podUid,
        revocation,
        endedAt,
        this.#leases.versionsHeld(watcher.podUid, revocation.artifact),
      );
      sink.write({
        revocation: {
          seq: String(revocation.seq),
          epoch: this.epoch,
          reason: REVOCATION_REASONS[revocation.reason],
          artifact: { namespace: revocation.artifact.namespace, name: revocation.artifact.name },
          grant: revocation.grant === undefined ? null : { ...revocation.grant },
          versions: [...revocation.versions],
          message: revocation.message,
          timestamp: timestamp(revocation.at),
          endedAt: timestamp(endedAt),
        },
      });
    };
    const after = afterText !== undefined && sameEpoch ? Number(afterText) : undefined;
    const subscription = this.#bus.subscribe(listener, after);
    if (subscription.missed) resync('revocations after after_seq were dropped; drop every key and ask again');
    const heartbeat = (): void => {
      sink.write({
        heartbeat: {
          timestamp: timestamp(new Date()),
          epoch: this.epoch,
          lastSeq: String(this.#bus.lastSeq()),
          interval: {
            seconds: String(Math.floor(this.#heartbeatMs / 1000)),
            nanos: (this.#heartbeatMs % 1000) * 1_000_000,
          },
        },
      });
    };
    heartbeat();
    const timer = setInterval(heartbeat, this.#heartbeatMs);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      subscription.unsubscribe();
    };
  }
}
