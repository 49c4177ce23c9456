/**
 * The sidecar's probe endpoint (contract `PROBE_PORT`, `PROBE_STARTUP_PATH`, `PROBE_READY_PATH`), plain HTTP on all
 * addresses so the kubelet can reach it. The answers are a pure function of the sidecar's state
 * ({@link probeAnswer}):
 *
 * - startup: 200 only when every planned artifact is decrypted, verified and in place;
 * - ready: 200 only when started and no artifact has been revoked, denied or let expire since; 503 with a short
 *   text otherwise. Anything else is 404; methods other than GET and HEAD are 405.
 *
 * With a registry, `GET /metrics` serves the sidecar's Prometheus metrics (metrics.ts) on the same port.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { PROBE_READY_PATH, PROBE_STARTUP_PATH } from '../core/injection/contract.ts';
import { METRICS_PATH } from './metrics.ts';

/** What the probes look at. */
export interface ProbeState {
  /** Every artifact was materialized and verified (at least once). */
  readonly started: boolean;
  /** Every artifact is in place now (none revoked, denied on renewal, expired or wiped). */
  readonly ready: boolean;
  /** A short reason when not started or not ready (no secrets: artifact names and gRPC status names). */
  readonly detail: string;
}

/** An HTTP answer. */
export interface ProbeAnswer {
  readonly status: number;
  readonly body: string;
}

/** The answer to `method path` in `state` (pure). */
export function probeAnswer(method: string, path: string, state: ProbeState): ProbeAnswer {
  const route = path.split('?')[0];
  if (route !== PROBE_STARTUP_PATH && route !== PROBE_READY_PATH) return { status: 404, body: 'not found\n' };
  if (method !== 'GET' && method !== 'HEAD') return { status: 405, body: 'method not allowed\n' };
  if (route === PROBE_STARTUP_PATH)
    return state.started
      ? { status: 200, body: 'started\n' }
      : { status: 503, body: `not started: ${state.detail}\n` };
  if (!state.started) return { status: 503, body: `not started: ${state.detail}\n` };
  return state.ready
    ? { status: 200, body: 'ready\n' }
    : { status: 503, body: `not ready: ${state.detail}\n` };
}

/** A listening probe server. */
export interface ProbeServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on `host:port` (port 0 picks a free one) and answers from `state()` at every request. */
export async function startProbeServer(options: {
  readonly port: number;
  readonly host?: string;
  readonly state: () => ProbeState;
  /** Served at {@link METRICS_PATH} when given. */
  readonly metrics?: Pick<Registry, 'metrics' | 'contentType'>;
}): Promise<ProbeServer> {
  const metrics = options.metrics;
  const server: Server = createServer((request, response) => {
    if (metrics !== undefined && request.url?.split('?')[0] === METRICS_PATH && request.method === 'GET') {
      metrics.metrics().then(
        (body) => {
          response.writeHead(200, {
            'content-type': metrics.contentType,
            'cache-control': 'no-store',
            'content-length': Buffer.byteLength(body),
          });
          response.end(body);
        },
        () => {
          response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          response.end('collecting metrics failed\n');
        },
      );
      return;
    }
    const answer = probeAnswer(request.method ?? 'GET', request.url ?? '/', options.state());
    response.writeHead(answer.status, {
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(answer.body),
    });
    response.end(request.method === 'HEAD' ? undefined : answer.body);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
