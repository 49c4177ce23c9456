/**
 * The health and metrics server (health-server.ts) as a runnable: the first part the manager starts, and the last
 * but one it stops. At the very beginning of shutdown (beforeStop) /readyz turns 503, so that endpoints drop the pod
 * before anything else stops.
 */
import type { Registry } from 'prom-client';
import type winston from 'winston';
import type { Runnable } from '../manager/runnable.ts';
import { HealthServer, type HealthCheck } from './health-server.ts';

export interface HealthRunnableOptions {
  readonly host: string;
  /** 0 picks a free port: read {@link HealthRunnable.port} after start. */
  readonly port: number;
  readonly registry: Registry;
  readonly logger: winston.Logger;
  /** The readiness checks, read once when the server starts (by then every informer has been made). */
  readonly readiness: () => readonly HealthCheck[];
  /** `GET /audit/checkpoint` (health-server.ts): this replica's latest signed audit checkpoint. */
  readonly auditCheckpoint?: () => string | undefined;
}

/** A readiness check that is ok while `ok()` is true, and otherwise says `detail`. */
export function readinessCheck(name: string, ok: () => boolean, detail: string): HealthCheck {
  return {
    name,
    check: () => {
      const passed = ok();
      return { ok: passed, ...(passed ? {} : { detail }) };
    },
  };
}

export class HealthRunnable implements Runnable {
  readonly name = 'health';
  readonly needsLeader = false;
  readonly #o: HealthRunnableOptions;
  #server: HealthServer | undefined;
  #port: number | undefined;

  constructor(options: HealthRunnableOptions) {
    this.#o = options;
  }

  /** The port it listens on; only after start. */
  get port(): number {
    if (this.#port === undefined) throw new Error('the health server has not started');
    return this.#port;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const server = new HealthServer({
      host: o.host,
      port: o.port,
      registry: o.registry,
      logger: o.logger,
      liveness: [{ name: 'event-loop', check: () => ({ ok: true }) }],
      readiness: o.readiness(),
      ...(o.auditCheckpoint === undefined ? {} : { auditCheckpoint: o.auditCheckpoint }),
    });
    this.#server = server;
    this.#port = (await server.start()).port;
  }

  beforeStop(): void {
    this.#server?.setShuttingDown();
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
  }
}
