/**
 * The plain-HTTP health and metrics listener: `GET /healthz` (liveness), `GET /readyz` (readiness),
 * `GET /metrics` (Prometheus) and, when configured, `GET /audit/checkpoint` (the latest signed audit checkpoint, a
 * C2SP signed note as text/plain). Nothing else is served. Probes answer `200 ok`, or `503` with one line per failing
 * check (`name: detail`); `?verbose` lists every check Kubernetes-style (`[+]name ok` / `[-]name: detail`).
 * A check that throws counts as failing. After {@link HealthServer.setShuttingDown}, `/readyz` answers 503 at once
 * so that endpoints drop the pod before anything else stops.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type winston from 'winston';

/** One named probe input. `check` must be cheap and synchronous: it runs on every probe request. */
export interface HealthCheck {
  readonly name: string;
  check(): { ok: boolean; detail?: string };
}

/** The listener could not start (address in use, permission denied, bad host) or was used out of order. */
export class HealthServerError extends Error {
  override readonly name = 'HealthServerError';
}

/** Options of {@link HealthServer}. */
export interface HealthServerOptions {
  readonly host: string;
  /** 0 picks a free port; {@link HealthServer.start} returns it. */
  readonly port: number;
  readonly registry: Registry;
  readonly liveness: readonly HealthCheck[];
  readonly readiness: readonly HealthCheck[];
  readonly logger: winston.Logger;
  /**
   * `GET /audit/checkpoint`: the latest signed C2SP checkpoint of this replica's audit log, for outside witnesses;
   * undefined (404) until the first one. Without this option the path is not served.
   */
  readonly auditCheckpoint?: () => string | undefined;
}

interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

const SHUTTING_DOWN: CheckResult = {
  name: 'shutting-down',
  ok: false,
  detail: 'the operator is shutting down',
};
/** Where the latest audit checkpoint is served (docs/audit.md#published-checkpoints). */
export const AUDIT_CHECKPOINT_PATH = '/audit/checkpoint';
/** Probes and scrapes are tiny: a client slower than this is dropped. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Serves /healthz, /readyz and /metrics on node:http. */
export class HealthServer {
  readonly #options: HealthServerOptions;
  readonly #server: Server;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #shuttingDown = false;

  constructor(options: HealthServerOptions) {
    this.#options = options;
    this.#server = createServer(
      { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS },
      (req, res) => {
        this.#handle(req, res);
      },
    );
  }

  /** Starts listening; resolves with the bound port. Rejects with {@link HealthServerError} if it cannot listen. */
  async start(): Promise<{ port: number }> {
    if (this.#starting || this.#stopping)
      throw new HealthServerError('health server can be started only once');
    this.#starting = this.#listen();
    await this.#starting;
    const port = (this.#server.address() as AddressInfo).port;
    this.#options.logger.info('health server listening', { host: this.#options.host, port });
    return { port };
  }

  async #listen(): Promise<void> {
    const { host, port } = this.#options;
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen({ host, port }, () => {
          this.#server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      throw new HealthServerError(
        `health server cannot listen on ${host}:${port}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.#server.on('error', (err) => {
      this.#options.logger.error('health server error', { err });
    });
  }

  /** The first step of a graceful shutdown: /readyz answers 503 from now on. /healthz is unaffected. */
  setShuttingDown(): void {
    this.#shuttingDown = true;
  }

  /**
   * Stops accepting connections and closes idle keep-alive connections; resolves once the server is closed.
   * Safe to call more than once, before start, or while start is still under way.
   */
  stop(): Promise<void> {
    this.#shuttingDown = true;
    this.#stopping ??= this.#close();
    return this.#stopping;
  }

  async #close(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve();
      });
    });
    this.#server.closeIdleConnections();
    await closed;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://health.invalid');
    const known =
      url.pathname === '/healthz' ||
      url.pathname === '/readyz' ||
      url.pathname === '/metrics' ||
      (url.pathname === AUDIT_CHECKPOINT_PATH && this.#options.auditCheckpoint !== undefined);
    if (!known) {
      this.#reply(res, 404, 'not found\n');
      return;
    }
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      this.#reply(res, 405, 'method not allowed\n');
      return;
    }
    if (url.pathname === '/metrics') {
      this.#serveMetrics(res);
      return;
    }
    if (url.pathname === AUDIT_CHECKPOINT_PATH) {
      const note = this.#options.auditCheckpoint?.();
      if (note === undefined) this.#reply(res, 404, 'no audit checkpoint yet\n');
      else this.#reply(res, 200, note);
      return;
    }
    const verbose = url.searchParams.has('verbose');
    if (url.pathname === '/healthz') {
      this.#serveProbe(res, 'healthz', this.#run(this.#options.liveness), verbose);
    } else {
      const results = this.#run(this.#options.readiness);
      this.#serveProbe(res, 'readyz', this.#shuttingDown ? [SHUTTING_DOWN, ...results] : results, verbose);
    }
  }

  #run(checks: readonly HealthCheck[]): CheckResult[] {
    return checks.map((c) => {
      try {
        // Read as unknown: only a real `true` passes (fail closed on whatever a careless check returns).
        const result: { ok?: unknown; detail?: unknown } = c.check();
        const ok = result.ok === true;
        const detail = typeof result.detail === 'string' ? result.detail : ok ? 'ok' : 'failed';
        return { name: c.name, ok, detail };
      } catch (err) {
        this.#options.logger.warn('health check threw', { check: c.name, err });
        return { name: c.name, ok: false, detail: `check threw: ${(err as Error).message}` };
      }
    });
  }

  #serveProbe(res: ServerResponse, probe: string, results: readonly CheckResult[], verbose: boolean): void {
    const healthy = results.every((r) => r.ok);
    if (verbose) {
      const lines = results.map((r) => (r.ok ? `[+]${r.name} ok` : `[-]${r.name}: ${oneLine(r.detail)}`));
      lines.push(healthy ? `${probe} check passed` : `${probe} check failed`);
      this.#reply(res, healthy ? 200 : 503, `${lines.join('\n')}\n`);
      return;
    }
    if (healthy) {
      this.#reply(res, 200, 'ok\n');
      return;
    }
    const failing = results.filter((r) => !r.ok).map((r) => `${r.name}: ${oneLine(r.detail)}\n`);
    this.#reply(res, 503, failing.join(''));
  }

  #reply(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
    res.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      // Once stopping, a response that was in flight closes its connection, so that stop() need not wait for the
      // client's keep-alive timeout.
      ...(this.#stopping ? { Connection: 'close' } : {}),
    });
    res.end(body);
  }

  #serveMetrics(res: ServerResponse): void {
    const { registry, logger } = this.#options;
    registry.metrics().then(
      (text) => {
        this.#reply(res, 200, text, registry.contentType);
      },
      (err: unknown) => {
        logger.error('collecting metrics failed', { err });
        this.#reply(res, 500, 'collecting metrics failed\n');
      },
    );
  }
}

/** A detail is one line of the response, whatever the check returned. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
