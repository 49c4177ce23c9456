/**
 * The sidecar's `WatchRevocations` stream. It keeps one stream open on the identity's current mutual-TLS client and
 * resumes it after any interruption with the last `seq` and `epoch` it saw, with jittered backoff. It reports:
 *
 * - each revocation (the caller decides which planned artifacts it concerns, {@link revocationConcerns});
 * - a *resync* whenever the sidecar cannot be sure it saw every event: the broker said `Resync`, the stream was
 *   re-opened after it broke (a gap), or it stayed silent for two heartbeat intervals (then it is also cancelled
 *   and re-opened). The caller answers a resync by asking `ReleaseKey` again for everything it holds.
 *
 * The identity's renewal switches the stream to the new channel (a planned reconnect, also reported as a resync).
 */
import type * as grpc from '@grpc/grpc-js';
import type winston from 'winston';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import type { WatchRevocationsResponse__Output } from '../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import type { KeyBrokerClient } from '../proto/keybroker.ts';
import { backoffDelay, pause, type BackoffPolicy } from './backoff.ts';

/** The heartbeat period assumed until the broker states its own. */
const DEFAULT_HEARTBEAT_MS = 5000;

/**
 * Whether `revocation` ends access to `artifact`: same namespace and name, either no versions listed (every
 * version) or the planned version among them, and, when both are known, the grant that ended is the one the key
 * was released under (`heldUnder`, a grant uid). Fails closed: a revocation without an artifact, or with reason
 * `REVOCATION_REASON_UNSPECIFIED`, concerns every artifact; one that names no grant concerns every holder.
 */
export function revocationConcerns(
  revocation: Pick<Revocation__Output, 'reason' | 'artifact' | 'versions' | 'grant'>,
  artifact: Pick<PlannedArtifact, 'namespace' | 'name' | 'version'>,
  heldUnder?: string,
): boolean {
  if (revocation.reason === 'REVOCATION_REASON_UNSPECIFIED' || revocation.artifact === null) return true;
  if (revocation.artifact.namespace !== artifact.namespace || revocation.artifact.name !== artifact.name)
    return false;
  if (revocation.versions.length > 0 && !revocation.versions.includes(artifact.version)) return false;
  // The end of another grant does not end the one the key was released under (a renewal re-authorizes anyway).
  // Unknown on either side (no grant named, or not known what the key was released under): it applies.
  const ended = revocation.grant?.uid ?? '';
  return heldUnder === undefined || heldUnder === '' || ended === '' || ended === heldUnder;
}

/** Where to resume: the last sequence number seen in an epoch. */
export interface StreamPosition {
  readonly epoch: string;
  readonly seq: bigint;
}

/**
 * The position after `message`, given the one before (pure). Heartbeats and resyncs carry the broker's highest
 * `seq` so far: everything up to it that concerned the caller was already sent on this ordered stream.
 */
export function advance(
  position: StreamPosition | undefined,
  message: WatchRevocationsResponse__Output,
): StreamPosition | undefined {
  const at = (epoch: string, seq: string): StreamPosition | undefined => {
    if (epoch === '') return position;
    const n = BigInt(seq === '' ? '0' : seq);
    if (position !== undefined && position.epoch === epoch && position.seq > n) return position;
    return { epoch, seq: n };
  };
  if (message.revocation) return at(message.revocation.epoch, message.revocation.seq);
  if (message.heartbeat) return at(message.heartbeat.epoch, message.heartbeat.lastSeq);
  if (message.resync) return at(message.resync.epoch, message.resync.lastSeq);
  return position;
}

export interface RevocationWatcherOptions {
  /** The current mutual-TLS client (it changes when the certificate is renewed). */
  readonly client: () => KeyBrokerClient;
  readonly logger: winston.Logger;
  readonly onRevocation: (revocation: Revocation__Output) => void;
  /** Events may have been missed (`why` is for the logs). */
  readonly onResync: (why: string) => void;
  readonly backoff?: BackoffPolicy;
}

/** One long-lived, self-resuming revocation stream. */
export class RevocationWatcher {
  readonly #o: RevocationWatcherOptions;
  readonly #stopping = new AbortController();
  #position: StreamPosition | undefined;
  #call: grpc.ClientReadableStream<WatchRevocationsResponse__Output> | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  #heartbeatMs = DEFAULT_HEARTBEAT_MS;
  #live = false;
  #liveWaiters: (() => void)[] = [];
  #loop: Promise<void> | undefined;

  constructor(options: RevocationWatcherOptions) {
    this.#o = options;
  }

  /** Whether the current stream has delivered a message and not broken since. */
  get live(): boolean {
    return this.#live;
  }

  /** Starts the stream loop; resolves once the first stream delivered its first message (or on stop). */
  start(): Promise<void> {
    this.#loop ??= this.#run();
    return this.#live || this.#stopping.signal.aborted
      ? Promise.resolve()
      : new Promise((resolve) => this.#liveWaiters.push(resolve));
  }

  /** Re-opens the stream (for example on a new channel), resuming from the last position. */
  reconnect(): void {
    this.#call?.cancel();
  }

  /** Ends the stream for good. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    clearTimeout(this.#silenceTimer);
    this.#call?.cancel();
    for (const w of this.#liveWaiters.splice(0)) w();
    await this.#loop;
  }

  /** Read through a method: the flag changes while awaiting, which narrowing cannot see. */
  #isStopping(): boolean {
    return this.#stopping.signal.aborted;
  }

  async #run(): Promise<void> {
    let failures = 0;
    let opened = false;
    while (!this.#stopping.signal.aborted) {
      const delivered = await this.#stream(opened);
      opened = true;
      if (this.#isStopping()) break;
      failures = delivered ? 1 : failures + 1;
      const delay = backoffDelay(failures, this.#o.backoff);
      this.#o.logger.debug('revocation stream ended; resuming', { retryInMs: delay });
      await pause(delay, this.#stopping.signal);
    }
  }

  /** Runs one stream to its end; returns whether it delivered anything. */
  #stream(isReconnect: boolean): Promise<boolean> {
    const { logger } = this.#o;
    let client: KeyBrokerClient;
    try {
      client = this.#o.client();
    } catch (error) {
      logger.warn('no broker client for the revocation stream', { err: error });
      return Promise.resolve(false);
    }
    const position = this.#position;
    const call = client.WatchRevocations({
      epoch: position?.epoch ?? '',
      ...(position === undefined ? {} : { afterSeq: position.seq.toString() }),
    });
    this.#call = call;
    let delivered = false;
    const armSilence = (): void => {
      clearTimeout(this.#silenceTimer);
      this.#silenceTimer = setTimeout(() => {
        logger.warn('revocation stream silent for two heartbeat intervals; reconnecting', {
          silentMs: 2 * this.#heartbeatMs,
        });
        this.#live = false;
        this.#o.onResync('the revocation stream went silent');
        call.cancel();
      }, 2 * this.#heartbeatMs);
    };
    armSilence();
    call.on('data', (message: WatchRevocationsResponse__Output) => {
      armSilence();
      this.#position = advance(this.#position, message);
      if (!delivered) {
        delivered = true;
        this.#live = true;
        for (const w of this.#liveWaiters.splice(0)) w();
        if (isReconnect) this.#o.onResync('the revocation stream was re-opened');
      }
      if (message.heartbeat) {
        const interval = message.heartbeat.interval;
        const ms = Number(interval?.seconds ?? 0) * 1000 + Math.floor((interval?.nanos ?? 0) / 1e6);
        if (ms > 0) this.#heartbeatMs = ms;
      } else if (message.revocation) {
        this.#o.onRevocation(message.revocation);
      } else if (message.resync) {
        logger.warn('the broker asked for a resync', { reason: message.resync.message });
        this.#o.onResync(`broker resync: ${message.resync.message}`);
      }
    });
    return new Promise<boolean>((resolve) => {
      const end = (error?: grpc.ServiceError): void => {
        clearTimeout(this.#silenceTimer);
        this.#live = false;
        if (this.#call === call) this.#call = undefined;
        if (error !== undefined && !this.#stopping.signal.aborted)
          logger.info('revocation stream closed', { code: error.code, reason: error.details });
        resolve(delivered);
      };
      call.on('error', end);
      call.on('end', () => {
        end();
      });
    });
  }
}
