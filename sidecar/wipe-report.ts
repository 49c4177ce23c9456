/**
 * Reporting a wipe to the broker (`ReportWipe`, docs/broker.md): after the plaintext of an artifact is gone in answer
 * to a revocation, the sidecar tells the broker which revocation it answered, what it removed and how long the wipe
 * took, so that the broker can measure time-to-revoke (docs/metrics.md). The wipe never waits for this: a report is
 * sent after the wipe completed, in the background, and retried a bounded number of times (jittered backoff) while
 * the broker cannot be reached; an answer that is a refusal is not retried. A report that is never acknowledged is
 * logged and counted (`strongroom_sidecar_wipe_reports_failed_total`); nothing else depends on it.
 */
import * as grpc from '@grpc/grpc-js';
import type winston from 'winston';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import type { ReportWipeRequest } from '../proto/generated/strongroom/v1/ReportWipeRequest.ts';
import type { ReportWipeResponse__Output } from '../proto/generated/strongroom/v1/ReportWipeResponse.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import type { KeyBrokerClient } from '../proto/keybroker.ts';
import { backoffDelay, pause, type BackoffPolicy } from './backoff.ts';
import type { SidecarMetrics } from './metrics.ts';
import type { CompletedWipe } from './supervisor.ts';

/** Statuses that mean the broker was not reached (or not able to record): worth another attempt. */
const RETRYABLE: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.CANCELLED,
]);

export interface WipeReporterOptions {
  /** The current mutual-TLS client (it changes when the certificate is renewed). */
  readonly client: () => KeyBrokerClient;
  readonly logger: winston.Logger;
  readonly metrics?: SidecarMetrics;
  /** Attempts per report, default 4. */
  readonly attempts?: number;
  /** Default 250 ms doubling up to 2 s. */
  readonly backoff?: BackoffPolicy;
  /** Per attempt, default 5000 ms. */
  readonly deadlineMs?: number;
}

/** The ReportWipe request for a wipe that answered `revocation`. */
export function wipeReportRequest(
  artifact: Pick<PlannedArtifact, 'namespace' | 'name' | 'version'>,
  wipe: Pick<CompletedWipe, 'reason' | 'report' | 'durationMs'>,
  revocation: Pick<Revocation__Output, 'seq' | 'epoch' | 'endedAt'>,
): ReportWipeRequest {
  const ms = Math.max(0, Math.round(wipe.durationMs));
  return {
    revocation: {
      seq: revocation.seq,
      epoch: revocation.epoch,
      ...(revocation.endedAt === null ? {} : { endedAt: revocation.endedAt }),
    },
    artifact: { namespace: artifact.namespace, name: artifact.name },
    version: artifact.version,
    filesRemoved: String(wipe.report.files),
    wipeDuration: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    trigger: wipe.reason,
  };
}

/** Sends wipe reports in the background; see the module comment. */
export class WipeReporter {
  readonly #o: WipeReporterOptions;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stopping = new AbortController();

  constructor(options: WipeReporterOptions) {
    this.#o = options;
  }

  /** Reports `wipe` (which answered `wipe.revocation`) without waiting; never throws. */
  report(artifact: PlannedArtifact, wipe: CompletedWipe): void {
    const revocation = wipe.revocation;
    if (revocation === undefined) return;
    const request = wipeReportRequest(artifact, wipe, revocation);
    const fields = {
      artifact: `${artifact.namespace}/${artifact.name}`,
      version: artifact.version,
      seq: revocation.seq,
      trigger: wipe.reason,
    };
    const sending = this.#send(request).then(
      (response) => {
        this.#o.logger.info('wipe reported', {
          ...fields,
          recorded: response.recorded,
          auditIndex: response.auditIndex,
        });
      },
      (error: unknown) => {
        this.#o.metrics?.wipeReportsFailed.inc();
        const e = error as Partial<grpc.ServiceError>;
        this.#o.logger.warn('the wipe could not be reported (the files are gone regardless)', {
          ...fields,
          code: e.code === undefined ? undefined : grpc.status[e.code],
          reason: e.details ?? (error instanceof Error ? error.message : String(error)),
        });
      },
    );
    this.#inFlight.add(sending);
    void sending.finally(() => this.#inFlight.delete(sending));
  }

  /** Resolves once every report sent so far has been acknowledged or given up. */
  async settled(): Promise<void> {
    await Promise.all([...this.#inFlight]);
  }

  /** Gives up the retries still waiting (shutdown). */
  stop(): void {
    this.#stopping.abort();
  }

  /** Read through a method: stop() can run while a retry waits, which narrowing cannot see. */
  #isStopping(): boolean {
    return this.#stopping.signal.aborted;
  }

  async #send(request: ReportWipeRequest): Promise<ReportWipeResponse__Output> {
    const attempts = this.#o.attempts ?? 4;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#once(request);
      } catch (error) {
        const code = (error as Partial<grpc.ServiceError>).code;
        const retry = code !== undefined && RETRYABLE.has(code);
        if (!retry || attempt >= attempts || this.#isStopping()) throw error;
        await pause(
          backoffDelay(attempt, this.#o.backoff ?? { baseMs: 250, maxMs: 2000 }),
          this.#stopping.signal,
        );
        if (this.#isStopping()) throw error;
      }
    }
  }

  #once(request: ReportWipeRequest): Promise<ReportWipeResponse__Output> {
    return new Promise((resolve, reject) => {
      let client: KeyBrokerClient;
      try {
        client = this.#o.client();
      } catch (error) {
        reject(
          Object.assign(new Error('no broker client yet', { cause: error }), {
            code: grpc.status.UNAVAILABLE,
          }),
        );
        return;
      }
      client.ReportWipe(
        request,
        { deadline: Date.now() + (this.#o.deadlineMs ?? 5000) },
        (error, response) => {
          if (error) reject(error);
          else if (response === undefined) reject(new Error('the broker answered with nothing'));
          else resolve(response);
        },
      );
    });
  }
}
