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

/** Remembers which artifacts each pod holds a key lease for, until the lease ends. */
export class LeaseTracker implements LeaseBook {
  readonly #byPod = new Map<string, Map<string, number>>();
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

  constructor(options: RevocationFeedOptions) {
    this.#bus = options.bus;
    this.#leases = options.leases;
    this.#heartbeatMs = options.heartbeatMs ?? 5000;
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
