/**
 * How a finished broker call is reported: its duration and status code to the metrics observer, a refusal to the
 * operator's log (UNAVAILABLE and INTERNAL as warnings, other refusals at info, an unexpected failure as an error),
 * and the status the caller gets (proto-mapping.ts). `answer` does all of it for a unary call.
 */
import type * as grpc from '@grpc/grpc-js';
import type winston from 'winston';
import { BrokerError } from './errors.ts';
import { callerStatus } from './proto-mapping.ts';
import type { WipeReportOutcome } from '../observability/metrics.ts';

/** Observations for metrics. */
export interface BrokerObserver {
  call?(method: string, code: string, seconds: number): void;
  streams?(delta: number): void;
  /** A ReleaseKey answered: `allow` when the key left the broker (OperatorMetrics.recordKeyRelease). */
  released?(decision: 'allow' | 'deny' | 'error'): void;
  /** A ReportWipe answered, with the time-to-revoke of a recorded one (OperatorMetrics.recordWipeReport). */
  wipeReport?(outcome: WipeReportOutcome, seconds?: number): void;
}

/** Reports calls of the broker's methods. */
export class CallReporter {
  readonly #log: winston.Logger;
  readonly #observer: BrokerObserver | undefined;

  constructor(log: winston.Logger, observer: BrokerObserver | undefined) {
    this.#log = log;
    this.#observer = observer;
  }

  /**
   * A call refused or failed with `error`: observes and logs it, and returns the status to answer with. `started` is
   * `performance.now()` at the start of the call.
   */
  refused(
    method: string,
    started: number,
    error: unknown,
  ): { code: grpc.status; details: string; metadata?: grpc.Metadata } {
    if (error instanceof BrokerError) {
      this.#observe(method, error.status, started);
      const log = error.status === 'UNAVAILABLE' || error.status === 'INTERNAL' ? 'warn' : 'info';
      this.#log[log](`${method} refused`, {
        status: error.status,
        reason: error.reason,
        detail: error.message,
      });
    } else {
      this.#observe(method, 'INTERNAL', started);
      this.#log.error(`${method} failed unexpectedly`, {
        error: error instanceof Error ? `${error.name}: ${error.message}` : 'unknown',
      });
    }
    return callerStatus(error);
  }

  /**
   * Runs the work of a unary call and answers it: with its response (then `after.sent`), or with the status of its
   * refusal (then `after.refused`).
   */
  answer<T>(
    method: string,
    callback: grpc.sendUnaryData<T>,
    run: () => Promise<T>,
    after: { readonly sent?: (response: T) => void; readonly refused?: (error: unknown) => void } = {},
  ): void {
    const started = performance.now();
    run().then(
      (response) => {
        this.#observe(method, 'OK', started);
        callback(null, response);
        after.sent?.(response);
      },
      (error: unknown) => {
        callback(this.refused(method, started, error));
        after.refused?.(error);
      },
    );
  }

  /** A revocation stream opened (+1) or ended (-1). */
  streams(delta: number): void {
    this.#observer?.streams?.(delta);
  }

  /** A ReleaseKey answer, by decision. */
  released(decision: 'allow' | 'deny' | 'error'): void {
    this.#observer?.released?.(decision);
  }

  /** A ReportWipe answer, by outcome. */
  wipeReport(outcome: WipeReportOutcome, seconds?: number): void {
    this.#observer?.wipeReport?.(outcome, seconds);
  }

  #observe(method: string, code: string, started: number): void {
    this.#observer?.call?.(method, code, (performance.now() - started) / 1000);
  }
}
