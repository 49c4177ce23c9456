/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with the semantics of client-go's `leaderelection` package
 * and `ReleaseOnCancel`: one replica leads (reconciles), the others watch the Lease and take over when the leader
 * releases it or stops renewing it. See docs/adr/0006-leader-election.md.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ApiException,
  CoordinationV1Api,
  Observable,
  V1Lease,
  V1LeaseSpec,
  V1MicroTime,
  V1ObjectMeta,
  type ConfigurationOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import type winston from 'winston';

/** How an elector is configured. Durations follow client-go's defaults (15 s / 10 s / 2 s). */
export interface LeaderElectionOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  /** Name of the Lease. */
  readonly name: string;
  /** Unique per process, e.g. `${hostname}_${randomUUID()}`. */
  readonly identity: string;
  /** How long a non-renewed Lease stays valid for the others. Whole seconds; default 15 000. */
  readonly leaseDurationMs?: number;
  /** How long the leader keeps leading without a successful renewal; less than leaseDurationMs. Default 10 000. */
  readonly renewDeadlineMs?: number;
  /** Pause between two attempts to acquire or renew; less than renewDeadlineMs. Default 2 000. */
  readonly retryPeriodMs?: number;
  readonly logger: winston.Logger;
  /** Called once when this process becomes the leader. */
  readonly onStartedLeading: () => void;
  /** Called once after onStartedLeading, when this process stops leading (lost the Lease or stop()). */
  readonly onStoppedLeading: () => void;
  /** Called whenever the observed holder changes (undefined: the Lease is free). */
  readonly onNewLeader?: (identity: string | undefined) => void;
}

/** A misconfigured or misused elector. */
export class LeaderElectionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LeaderElectionError';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pure decision logic (exported for its unit tests).

/** The part of a Lease that leader election reads. Times are kept as the API server sent them. */
export interface LeaseRecord {
  /** undefined when the Lease is free (never held, or released). */
  readonly holderIdentity: string | undefined;
  readonly leaseDurationSeconds: number | undefined;
  readonly acquireTime: string | undefined;
  readonly renewTime: string | undefined;
  readonly leaseTransitions: number;
}

/** A record together with the local monotonic time (ms) at which this exact record was first seen. */
export interface LeaseObservation {
  readonly record: LeaseRecord;
  readonly firstObservedAtMs: number;
}

/** What to do next, given what was observed. */
export type LeaseDecision =
  /** The Lease does not exist: create it naming us. */
  | { readonly kind: 'create' }
  /** The Lease is free or expired: take it over (a new holder, so leaseTransitions + 1). */
  | { readonly kind: 'acquire' }
  /** The Lease names us: renew it. */
  | { readonly kind: 'renew' }
  /** Another holder's Lease is still valid: look again in at most `expiresInMs`. */
  | { readonly kind: 'wait'; readonly holder: string; readonly expiresInMs: number }
  /** We believed we led, but the Lease no longer names us: step down, never re-acquire silently. */
  | { readonly kind: 'lost'; readonly holder: string | undefined };

/** Normalizes a Lease (as returned by client-node, whose MicroTimes arrive as strings) into a record. */
export function leaseRecordOf(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? new V1LeaseSpec();
  const holder = spec.holderIdentity;
  return {
    holderIdentity: holder === undefined || holder === '' ? undefined : holder,
    leaseDurationSeconds: spec.leaseDurationSeconds,
    acquireTime: timeText(spec.acquireTime),
    renewTime: timeText(spec.renewTime),
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}

function timeText(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : undefined;
}

const sameRecord = (a: LeaseRecord, b: LeaseRecord): boolean =>
  a.holderIdentity === b.holderIdentity &&
  a.leaseDurationSeconds === b.leaseDurationSeconds &&
  a.acquireTime === b.acquireTime &&
  a.renewTime === b.renewTime &&
  a.leaseTransitions === b.leaseTransitions;

/**
 * Records a freshly read Lease. The observation time is kept while the record stays the same, so that expiry is
 * measured from when this process first saw the last renewal, by its own monotonic clock (immune to clock skew
 * between replicas), exactly as client-go does.
 */
export function observeLease(
  previous: LeaseObservation | undefined,
  record: LeaseRecord,
  nowMs: number,
): LeaseObservation {
  if (previous !== undefined && sameRecord(previous.record, record)) return previous;
  return { record, firstObservedAtMs: nowMs };
}

/** Input of {@link decideLease}. */
export interface LeaseDecisionInput {
  /** undefined when the Lease does not exist. */
  readonly observation: LeaseObservation | undefined;
  readonly identity: string;
  /** Whether this process currently believes it leads. */
  readonly leading: boolean;
  /** Local monotonic time, same clock as firstObservedAtMs. */
  readonly nowMs: number;
  /** Used when the record carries no valid leaseDurationSeconds. */
  readonly defaultLeaseDurationMs: number;
}

/** The acquire / renew / wait decision of one round of leader election. Pure. */
export function decideLease(input: LeaseDecisionInput): LeaseDecision {
  const { observation, identity, leading, nowMs } = input;
  if (observation === undefined) return leading ? { kind: 'lost', holder: undefined } : { kind: 'create' };
  const holder = observation.record.holderIdentity;
  if (holder === identity) return { kind: 'renew' };
  if (leading) return { kind: 'lost', holder };
  if (holder === undefined) return { kind: 'acquire' };
  const seconds = observation.record.leaseDurationSeconds;
  const durationMs =
    seconds !== undefined && Number.isInteger(seconds) && seconds > 0
      ? seconds * 1000
      : input.defaultLeaseDurationMs;
  const expiresInMs = observation.firstObservedAtMs + durationMs - nowMs;
  return expiresInMs <= 0 ? { kind: 'acquire' } : { kind: 'wait', holder, expiresInMs };
}

/** The spec to write for a create, acquire or renew decision. Pure. */
export function nextLeaseSpec(
  decision: 'create' | 'acquire' | 'renew',
  previous: LeaseRecord | undefined,
  identity: string,
  leaseDurationSeconds: number,
  nowWallMs: number,
): V1LeaseSpec {
  const now = new V1MicroTime(nowWallMs);
  const keepAcquire = decision === 'renew' && previous?.acquireTime !== undefined;
  const acquired = keepAcquire ? Date.parse(previous.acquireTime) : Number.NaN;
  return Object.assign(new V1LeaseSpec(), {
    holderIdentity: identity,
    leaseDurationSeconds,
    acquireTime: Number.isNaN(acquired) ? now : new V1MicroTime(acquired),
    renewTime: now,
    leaseTransitions:
      decision === 'create'
        ? 0
        : decision === 'acquire'
          ? (previous?.leaseTransitions ?? 0) + 1
          : (previous?.leaseTransitions ?? 0),
  });
}

/** The spec of a released Lease: no holder, 1 s duration, so that any candidate takes it at once. Pure. */
export function releasedLeaseSpec(previous: LeaseRecord, nowWallMs: number): V1LeaseSpec {
  const now = new V1MicroTime(nowWallMs);
  return Object.assign(new V1LeaseSpec(), {
    leaseDurationSeconds: 1,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: previous.leaseTransitions,
  });
}

interface Timing {
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
}

/** Validates the options' durations (fail closed on a configuration that could elect two leaders). Pure. */
export function electionTiming(options: Pick<LeaderElectionOptions, keyof Timing>): Timing {
  const timing: Timing = {
    leaseDurationMs: options.leaseDurationMs ?? 15_000,
    renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
    retryPeriodMs: options.retryPeriodMs ?? 2_000,
  };
  for (const [key, value] of Object.entries(timing)) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new LeaderElectionError(`${key} must be a positive integer, got ${String(value)}`);
    }
  }
  if (timing.leaseDurationMs % 1000 !== 0) {
    throw new LeaderElectionError(`leaseDurationMs must be whole seconds, got ${timing.leaseDurationMs}`);
  }
  if (timing.renewDeadlineMs >= timing.leaseDurationMs) {
    throw new LeaderElectionError(
      `renewDeadlineMs (${timing.renewDeadlineMs}) must be less than leaseDurationMs (${timing.leaseDurationMs})`,
    );
  }
  if (timing.retryPeriodMs >= timing.renewDeadlineMs) {
    throw new LeaderElectionError(
      `retryPeriodMs (${timing.retryPeriodMs}) must be less than renewDeadlineMs (${timing.renewDeadlineMs})`,
    );
  }
  return timing;
}

// ---------------------------------------------------------------------------------------------------------------
// The elector: thin I/O around decideLease.

type Round =
  | { readonly kind: 'leading' }
  | { readonly kind: 'lost'; readonly holder: string | undefined }
  | { readonly kind: 'following'; readonly retryInMs: number };

const monotonicNow = (): number => performance.now();

/** Request options that make client-node's fetch honour an AbortSignal. */
function withSignal(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (request) => {
          request.setSignal(signal);
          return new Observable(Promise.resolve(request));
        },
        post: (response) => new Observable(Promise.resolve(response)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

const statusOf = (error: unknown): number | undefined =>
  error instanceof ApiException ? error.code : undefined;

function errorText(error: unknown): string {
  if (error instanceof ApiException) return `HTTP ${error.code}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Campaigns for, holds and releases one Lease. One elector runs one campaign: after it stops leading (lost the
 * Lease, or stop()) it does not campaign again; the operator is expected to exit and be restarted.
 */
export class LeaderElector {
  readonly #options: LeaderElectionOptions;
  readonly #timing: Timing;
  readonly #api: CoordinationV1Api;
  readonly #log: winston.Logger;
  readonly #stopSignal = new AbortController();
  #loop: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #observation: LeaseObservation | undefined;
  #reportedLeader: string | undefined;
  #leading = false;
  /** Monotonic time at which the last successful acquire/renew request was sent. */
  #renewedAtMs = 0;

  /** Validates the options; throws {@link LeaderElectionError} on a configuration that could elect two leaders. */
  constructor(options: LeaderElectionOptions) {
    if (options.identity === '') throw new LeaderElectionError('identity must not be empty');
    if (options.name === '' || options.namespace === '') {
      throw new LeaderElectionError('the Lease name and namespace must not be empty');
    }
    this.#timing = electionTiming(options);
    this.#options = options;
    try {
      this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api);
    } catch (error) {
      throw new LeaderElectionError('the kubeconfig cannot make an API client', { cause: error });
    }
    this.#log = options.logger.child({
      component: 'leader-election',
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
  }

  /** Begins campaigning in the background. Throws if called twice or after stop(). */
  start(): void {
    if (this.#loop !== undefined || this.#stopping !== undefined) {
      throw new LeaderElectionError('a LeaderElector can be started only once');
    }
    this.#loop = this.#run().catch((error: unknown) => {
      // #run handles its own errors; this is a last resort so that the loop never rejects unobserved.
      this.#log.error('leader election loop failed', { error: errorText(error) });
      this.#stepDown('leader election loop failed');
    });
  }

  /** Whether this process currently leads. */
  isLeader(): boolean {
    return this.#leading;
  }

  /** The last observed holder of the Lease (undefined: unknown or free). */
  leader(): string | undefined {
    return this.#observation?.record.holderIdentity;
  }

  /**
   * Stops campaigning. If leading, calls onStoppedLeading first; then, if the Lease still names this process, it
   * releases it (holder cleared, leaseDurationSeconds 1, renewTime now) with an optimistic-concurrency update, so
   * that another replica takes over at once. Resolves after the release. Idempotent; never rejects (a failed
   * release is logged, and the Lease then simply expires).
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#stopSignal.abort();
    if (this.#loop === undefined) return;
    await this.#loop;
    this.#stepDown('stopped');
    // Release even when not (or no longer) leading: an acquire interrupted by stop() may have been committed
    // without us seeing the answer. #release clears the Lease only if it still names us.
    try {
      await this.#release();
    } catch (error) {
      this.#log.warn('could not release the Lease; it will expire', { error: errorText(error) });
    }
  }

  async #release(): Promise<void> {
    const signal = AbortSignal.timeout(this.#timing.renewDeadlineMs);
    const { name, namespace, identity } = this.#options;
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace }, withSignal(signal));
    } catch (error) {
      if (statusOf(error) === 404) return;
      throw error;
    }
    const record = leaseRecordOf(lease);
    if (record.holderIdentity !== identity) return;
    // The update carries the resourceVersion just read, so a release never overwrites another holder.
    lease.spec = releasedLeaseSpec(record, Date.now());
    await this.#api.replaceNamespacedLease({ name, namespace, body: lease }, withSignal(signal));
    this.#log.info('released the Lease');
  }

  #stepDown(reason: string): void {
    if (!this.#leading) return;
    this.#leading = false;
    this.#log.warn('stopped leading', { reason });
    this.#call('onStoppedLeading', () => {
      this.#options.onStoppedLeading();
    });
  }

  #call(name: string, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.#log.error(`${name} threw`, { error: errorText(error) });
    }
  }

  async #run(): Promise<void> {
    const { retryPeriodMs, renewDeadlineMs } = this.#timing;
    const stopped = this.#stopSignal.signal;
    while (!stopped.aborted) {
      const startedAt = monotonicNow();
      const deadline = this.#leading ? this.#renewedAtMs + renewDeadlineMs : startedAt + renewDeadlineMs;
      if (this.#leading && startedAt >= deadline) {
        this.#stepDown(`no successful renewal within ${renewDeadlineMs} ms`);
        return;
      }
      let round: Round | undefined;
      try {
        round = await this.#round(
          AbortSignal.any([stopped, AbortSignal.timeout(Math.ceil(deadline - startedAt))]),
        );
      } catch (error) {
        if (this.#stopped()) return;
        this.#log.warn(this.#leading ? 'renewing the Lease failed' : 'acquiring the Lease failed', {
          error: errorText(error),
        });
      }
      if (this.#stopped()) return;
      if (round?.kind === 'lost') {
        this.#stepDown(`the Lease is now held by ${round.holder ?? 'nobody'}`);
        return;
      }
      if (round?.kind === 'leading') {
        this.#renewedAtMs = startedAt;
        if (!this.#leading) {
          this.#leading = true;
          this.#log.info('started leading');
          this.#call('onStartedLeading', () => {
            this.#options.onStartedLeading();
          });
        }
      }
      let pause = round?.kind === 'following' ? Math.min(retryPeriodMs, round.retryInMs) : retryPeriodMs;
      if (this.#leading) pause = Math.min(pause, this.#renewedAtMs + renewDeadlineMs - monotonicNow());
      await this.#pause(Math.max(0, pause));
    }
  }

  #stopped(): boolean {
    return this.#stopSignal.signal.aborted;
  }

  async #pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.#stopSignal.signal });
    } catch (error) {
      if (!this.#stopSignal.signal.aborted) throw error;
    }
  }

  /** One round: read the Lease, decide, and write if the decision says so. Throws on API errors. */
  async #round(signal: AbortSignal): Promise<Round> {
    const { name, namespace, identity } = this.#options;
    const options = withSignal(signal);
    let lease: V1Lease | undefined;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace }, options);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    this.#observe(lease === undefined ? undefined : leaseRecordOf(lease));
    const decision = decideLease({
      observation: lease === undefined ? undefined : this.#observation,
      identity,
      leading: this.#leading,
      nowMs: monotonicNow(),
      defaultLeaseDurationMs: this.#timing.leaseDurationMs,
    });
    switch (decision.kind) {
      case 'lost':
        return decision;
      case 'wait':
        return { kind: 'following', retryInMs: decision.expiresInMs };
      case 'create':
      case 'acquire':
      case 'renew':
        break;
    }
    const spec = nextLeaseSpec(
      decision.kind,
      lease === undefined ? undefined : leaseRecordOf(lease),
      identity,
      this.#timing.leaseDurationMs / 1000,
      Date.now(),
    );
    let body = lease;
    if (body === undefined) {
      body = Object.assign(new V1Lease(), {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: Object.assign(new V1ObjectMeta(), { name, namespace }),
      });
    }
    // The replace carries the resourceVersion just read: if anyone wrote in between, it fails with 409.
    body.spec = spec;
    try {
      const written =
        lease === undefined
          ? await this.#api.createNamespacedLease({ namespace, body }, options)
          : await this.#api.replaceNamespacedLease({ name, namespace, body }, options);
      this.#observe(leaseRecordOf(written));
      return { kind: 'leading' };
    } catch (error) {
      // 409: someone else created or updated the Lease first (optimistic concurrency); look again next round.
      if (statusOf(error) !== 409) throw error;
      this.#log.debug('lost a race for the Lease', { decision: decision.kind });
      return { kind: 'following', retryInMs: this.#timing.retryPeriodMs };
    }
  }

  /** Records what a read or write returned (undefined: the Lease does not exist) and reports a new holder. */
  #observe(record: LeaseRecord | undefined): void {
    this.#observation =
      record === undefined ? undefined : observeLease(this.#observation, record, monotonicNow());
    const holder = record?.holderIdentity;
    if (holder !== this.#reportedLeader) {
      this.#reportedLeader = holder;
      this.#log.info('new leader observed', { holder });
      const onNewLeader = this.#options.onNewLeader;
      if (onNewLeader !== undefined) {
        this.#call('onNewLeader', () => {
          onNewLeader(holder);
        });
      }
    }
  }
}
