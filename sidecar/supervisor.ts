/**
 * One planned artifact's life in the sidecar: release its key, materialize it, keep its key lease renewed, and wipe
 * it when access ends. States:
 *
 * - `pending`: never materialized; ReleaseKey + materialize is retried with jittered backoff (a grant may be
 *   created later). A denial is logged at level error with `{artifact, version, code, reason}`.
 * - `materialized`: plain files are in place. The lease is renewed (ReleaseKey again, DEK discarded at once) at 2/3
 *   of what is left of it; a renewal that is denied wipes at once; failures to reach the broker are retried until
 *   the lease ends, and the lease's end wipes.
 * - `wiped`: access ended (a revocation, a denied renewal, the lease passed). /ready is 503. Every
 *   {@link WIPED_RETRY_MS} ReleaseKey is tried again; only if it succeeds is the artifact materialized again.
 *
 * {@link revoke} turns the state to `wiped` synchronously (so /ready fails at once) and starts the wipe at once,
 * without waiting for a renewal or materialization in progress (those may wait for the broker for seconds). A
 * materialization in progress is aborted: it checks its signal after installing and wipes again if access ended
 * meanwhile, so a rename racing the wipe cannot leave files behind. Materializations and renewals of one artifact
 * never overlap: they run one after another.
 *
 * Every completed wipe is counted (metrics.ts) and told to `onWipe`; a wipe of files in place that a revocation
 * caused carries that revocation (the sidecar reports it to the broker, sidecar.ts). A revocation that finds the
 * files already wiped for another reason (the lease ended, a renewal was denied) is answered once with that wipe.
 */
import type { SegmentPool } from '../core/envelope/pool.ts';
import * as grpc from '@grpc/grpc-js';
import type winston from 'winston';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import type { KeyBrokerClient } from '../proto/keybroker.ts';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';
import { materialize } from './materialize.ts';
import type { SidecarMetrics, WipeReason } from './metrics.ts';
import { isDenial, ReleaseError, releaseKey, type ReleasedKey } from './release.ts';
import { wipeDirectory, type WipeReport } from './wipe.ts';

/** How often a wiped artifact asks ReleaseKey again; only a release that succeeds brings the files back. */
export const WIPED_RETRY_MS = 10_000;
/** The backoff of a pending artifact: 1 s doubling up to 30 s. */
const PENDING_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 30_000 };

export type ArtifactPhase = 'pending' | 'materialized' | 'wiped';

/** Why access ended, as {@link ArtifactSupervisor.revoke} is told. */
export type RevokeCause =
  | { readonly reason: 'revocation'; readonly revocation: Revocation__Output }
  | { readonly reason: 'lease-expired' | 'renewal-denied' };

/** A completed wipe of the artifact's plaintext directory (not at shutdown). */
export interface CompletedWipe {
  /** Why the files were wiped. */
  readonly reason: Exclude<WipeReason, 'shutdown'>;
  readonly report: WipeReport;
  readonly durationMs: number;
  /** The revocation this wipe answers: the one that caused it, or the first that came after it, once. */
  readonly revocation: Revocation__Output | undefined;
}

/** Read through a function: a revocation aborts while a task awaits, which narrowing cannot see. */
function isAborted(controller: AbortController): boolean {
  return controller.signal.aborted;
}

/** When to renew a lease obtained at `now` that ends at `end`: at 2/3 of what is left. */
export function leaseRenewalTime(now: number, end: number): number {
  return now + Math.max(0, (end - now) * (2 / 3));
}

export interface SupervisorOptions {
  readonly artifact: PlannedArtifact;
  readonly client: () => KeyBrokerClient;
  /** Worker threads that decrypt segments in parallel (shared by the sidecar's artifacts). */
  readonly pool?: SegmentPool;
  readonly logger: winston.Logger;
  /** Called on every phase change. */
  readonly onChange: () => void;
  /** Start-up phases, decrypted bytes and wipes are counted here when given. */
  readonly metrics?: SidecarMetrics;
  /** Told of every completed wipe (see the module comment). */
  readonly onWipe?: (wipe: CompletedWipe) => void;
  readonly pendingBackoff?: BackoffPolicy;
  readonly wipedRetryMs?: number;
}

/** Keeps one artifact materialized exactly while access lasts. */
export class ArtifactSupervisor {
  readonly #o: SupervisorOptions;
  readonly #fields: { artifact: string; version: string };
  #phase: ArtifactPhase = 'pending';
  #queue: Promise<void> = Promise.resolve();
  #stopped = false;
  #leaseEnd = 0;
  /** The uid of the grant the current key lease was released under (from ReleaseKey), if any. */
  #heldUnder: string | undefined;
  #leaseTimer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempts = 0;
  /** Aborted by a revocation so that a materialization in progress installs nothing. */
  #inflight: AbortController | undefined;
  #lastError: ReleaseError | undefined;
  /** Wipes in progress (never rejects). */
  #wiping: Promise<void> = Promise.resolve();
  /** The last completed wipe of files that were in place, until a revocation has been answered with it. */
  #lastWipe:
    { readonly wipe: CompletedWipe; readonly heldUnder: string | undefined; answered: boolean } | undefined;

  constructor(options: SupervisorOptions) {
    this.#o = options;
    const a = options.artifact;
    this.#fields = { artifact: `${a.namespace}/${a.name}`, version: a.version };
  }

  /** The uid of the grant the plaintext is currently held under; undefined when not known (then any revocation of
   * the artifact applies). */
  get heldUnder(): string | undefined {
    return this.#phase === 'materialized' ? this.#heldUnder : undefined;
  }

  get artifact(): PlannedArtifact {
    return this.#o.artifact;
  }

  get phase(): ArtifactPhase {
    return this.#phase;
  }

  /** The last refusal or failure of ReleaseKey, for the probe's text. */
  get lastError(): ReleaseError | undefined {
    return this.#lastError;
  }

  /** Starts the first ReleaseKey and materialization (in the background). */
  start(): void {
    this.#enqueue(() => this.#acquire());
  }

  /** Access ended: turns to `wiped` now, wipes, and retries ReleaseKey every WIPED_RETRY_MS. */
  revoke(why: string, cause: RevokeCause): void {
    if (this.#stopped) return;
    const was = this.#phase;
    const heldUnder = was === 'materialized' ? this.#heldUnder : undefined;
    this.#inflight?.abort();
    this.#clearLease();
    clearTimeout(this.#retryTimer);
    this.#setPhase('wiped');
    this.#o.logger.warn('access ended; wiping', { ...this.#fields, why, was });
    const revocation = cause.reason === 'revocation' ? cause.revocation : undefined;
    this.#wiping = this.#wiping.then(async () => {
      // Already wiped for another reason: that wipe (done by now, it ran first) answers this revocation.
      if (was === 'wiped' && revocation !== undefined) this.#answerWith(revocation);
      // Only a wipe of files in place answers a revocation itself, or is kept to answer a later one.
      const inPlace = was === 'materialized' ? { heldUnder } : undefined;
      await this.#wipe(why, cause.reason, inPlace === undefined ? undefined : revocation, inPlace);
    });
  }

  /** Events may have been missed: ask ReleaseKey again; a denial wipes. */
  recheck(why: string): void {
    if (this.#stopped) return;
    if (this.#phase === 'materialized') this.#enqueue(() => this.#renew(why));
    else {
      // Pending or wiped: try now rather than at the next scheduled retry.
      clearTimeout(this.#retryTimer);
      this.#enqueue(() => this.#acquire());
    }
  }

  /** Stops every timer and waits for the work in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#inflight?.abort();
    this.#clearLease();
    clearTimeout(this.#retryTimer);
    await Promise.all([this.#queue, this.#wiping]);
  }

  /** Wipes the plaintext directory for good (shutdown). */
  async wipeForShutdown(): Promise<void> {
    await this.stop();
    this.#setPhase('wiped');
    let report: WipeReport;
    try {
      report = await wipeDirectory(this.#o.artifact.plaintextDir);
    } catch (error) {
      this.#o.metrics?.wipeFailures.inc({ reason: 'shutdown' });
      throw error;
    }
    this.#o.metrics?.wipes.inc({ reason: 'shutdown' });
    this.#o.logger.info('wiped on shutdown', { ...this.#fields, ...report });
  }

  /** Answers `revocation` with the last wipe, if no revocation was answered with it yet and it concerns that grant. */
  #answerWith(revocation: Revocation__Output): void {
    const last = this.#lastWipe;
    if (last === undefined || last.answered) return;
    const ended = revocation.grant?.uid ?? '';
    if (last.heldUnder !== undefined && last.heldUnder !== '' && ended !== '' && ended !== last.heldUnder)
      return;
    last.answered = true;
    this.#o.onWipe?.({ ...last.wipe, revocation });
  }

  // Read through methods: these change while a task awaits, which type narrowing cannot see.
  #isStopped(): boolean {
    return this.#stopped;
  }

  #currentPhase(): ArtifactPhase {
    return this.#phase;
  }

  #enqueue(task: () => Promise<void>): void {
    this.#queue = this.#queue.then(task).catch((error: unknown) => {
      this.#o.logger.error('artifact task failed', { ...this.#fields, err: error });
    });
  }

  #setPhase(phase: ArtifactPhase): void {
    if (this.#phase === phase) return;
    this.#phase = phase;
    this.#o.onChange();
  }

  #clearLease(): void {
    clearTimeout(this.#leaseTimer);
    clearTimeout(this.#renewTimer);
    this.#leaseTimer = undefined;
    this.#renewTimer = undefined;
  }

  async #release(): Promise<ReleasedKey> {
    try {
      const key = await releaseKey(this.#o.client(), this.#o.artifact);
      this.#lastError = undefined;
      return key;
    } catch (error) {
      const failure =
        error instanceof ReleaseError
          ? error
          : new ReleaseError(grpc.status.UNAVAILABLE, 'no broker client yet', { cause: error });
      this.#lastError = failure;
      const fields = { ...this.#fields, code: failure.codeName, reason: failure.reason };
      if (isDenial(failure)) this.#o.logger.error('key release denied', fields);
      else this.#o.logger.warn('key release failed', fields);
      throw failure;
    }
  }

  /** Pending or wiped: ReleaseKey, then materialize; on failure schedule the next try. */
  async #acquire(): Promise<void> {
    if (this.#stopped || this.#phase === 'materialized') return;
    const from = this.#phase;
    const inflight = new AbortController();
    this.#inflight = inflight;
    try {
      const asked = Date.now();
      const key = await this.#release();
      // Start-up phases are those of the first materialization (from pending), not of a return after a wipe.
      const startup = from === 'pending' ? this.#o.metrics : undefined;
      startup?.phase('release', Date.now() - asked);
      if (isAborted(inflight) || this.#isStopped()) {
        key.dek.fill(0);
        return;
      }
      const started = Date.now();
      const result = await materialize(
        this.#o.artifact,
        key.dek,
        inflight.signal,
        this.#o.pool,
        startup === undefined
          ? undefined
          : (step, ms) => {
              startup.phase(step, ms);
            },
      );
      // Revoked right after the last check inside materialize: the revocation's wipe removes what was installed.
      if (isAborted(inflight) || this.#isStopped()) return;
      this.#o.metrics?.decryptedBytes.inc(result.bytes);
      this.#lastWipe = undefined; // the files are back: the next revocation is answered by the next wipe
      this.#attempts = 0;
      this.#o.logger.info('materialized', {
        ...this.#fields,
        files: result.files,
        bytes: result.bytes,
        digest: result.digest,
        tookMs: Date.now() - started,
        grant: key.grant?.name,
        auditIndex: key.auditIndex,
        leaseExpiresAt: key.leaseExpiresAt.toISOString(),
      });
      this.#setPhase('materialized');
      this.#heldUnder = key.grant?.uid;
      this.#holdLease(key.leaseExpiresAt.getTime());
    } catch (error) {
      if (!(error instanceof ReleaseError))
        this.#o.logger.error('materialization failed', { ...this.#fields, err: error });
      if (this.#isStopped() || inflight.signal.aborted) return;
      this.#attempts++;
      const delay =
        from === 'wiped'
          ? (this.#o.wipedRetryMs ?? WIPED_RETRY_MS)
          : backoffDelay(this.#attempts, this.#o.pendingBackoff ?? PENDING_BACKOFF);
      this.#scheduleRetry(delay);
    } finally {
      if (this.#inflight === inflight) this.#inflight = undefined;
    }
  }

  #scheduleRetry(delayMs: number): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#enqueue(() => this.#acquire());
    }, delayMs);
  }

  /** Wipes at the lease's end unless renewed before; renews at 2/3 of the remaining lease. */
  #holdLease(end: number): void {
    this.#clearLease();
    this.#leaseEnd = end;
    const now = Date.now();
    this.#leaseTimer = setTimeout(
      () => {
        this.revoke('the key lease ended without renewal', { reason: 'lease-expired' });
      },
      Math.max(0, end - now),
    );
    this.#scheduleRenewal(leaseRenewalTime(now, end) - now, 1);
  }

  #scheduleRenewal(delayMs: number, attempt: number): void {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(
      () => {
        this.#enqueue(() => this.#renew('the key lease is due for renewal', attempt));
      },
      Math.max(0, delayMs),
    );
  }

  /** Materialized: ReleaseKey again to extend the lease; a denial wipes, a failure retries until the lease ends. */
  async #renew(why: string, attempt = 1): Promise<void> {
    if (this.#stopped || this.#phase !== 'materialized') return;
    this.#o.logger.debug('renewing the key lease', { ...this.#fields, why });
    try {
      const key = await this.#release();
      key.dek.fill(0);
      if (this.#currentPhase() !== 'materialized') return;
      this.#heldUnder = key.grant?.uid;
      this.#holdLease(key.leaseExpiresAt.getTime());
    } catch (error) {
      if (this.#currentPhase() !== 'materialized') return;
      if (isDenial(error)) {
        this.revoke(`the broker refused the renewal (${(error as ReleaseError).codeName})`, {
          reason: 'renewal-denied',
        });
        return;
      }
      // Not an answer: try again before the lease ends (the lease timer wipes if it does end).
      const delay = Math.min(backoffDelay(attempt), Math.max(0, this.#leaseEnd - Date.now() - 100));
      this.#scheduleRenewal(delay, attempt + 1);
    }
  }

  /**
   * Wipes; counts it; tells onWipe of a completed wipe, with `revocation` when it answers one. A wipe of files that
   * were in place (`inPlace`, with the grant they were held under) is kept to answer a later revocation when none
   * caused it.
   */
  async #wipe(
    why: string,
    reason: CompletedWipe['reason'],
    revocation: Revocation__Output | undefined,
    inPlace: { readonly heldUnder: string | undefined } | undefined,
  ): Promise<void> {
    const started = Date.now();
    try {
      const report = await wipeDirectory(this.#o.artifact.plaintextDir);
      const durationMs = Date.now() - started;
      this.#o.logger.warn('wiped', { ...this.#fields, why, ...report, tookMs: durationMs });
      this.#o.metrics?.wipes.inc({ reason });
      const wipe: CompletedWipe = { reason, report, durationMs, revocation };
      if (inPlace !== undefined)
        this.#lastWipe = { wipe, heldUnder: inPlace.heldUnder, answered: revocation !== undefined };
      this.#o.onWipe?.(wipe);
    } catch (error) {
      this.#o.metrics?.wipeFailures.inc({ reason });
      this.#o.logger.error('wipe failed', { ...this.#fields, why, err: error });
    }
    if (!this.#stopped) this.#scheduleRetry(this.#o.wipedRetryMs ?? WIPED_RETRY_MS);
  }
}
