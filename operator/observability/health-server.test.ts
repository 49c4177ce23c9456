import { createServer } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import winston from 'winston';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthServer, HealthServerError, type HealthCheck } from './health-server.ts';
import { OperatorMetrics } from './metrics.ts';

const logger = winston.createLogger({ silent: true });
const servers: HealthServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/** A check whose result the test changes. */
function switchable(
  name: string,
  initial: { ok: boolean; detail?: string },
): HealthCheck & { set(r: typeof initial): void } {
  let result = initial;
  return {
    name,
    check: () => result,
    set(r) {
      result = r;
    },
  };
}

async function start(
  options: Partial<{
    liveness: HealthCheck[];
    readiness: HealthCheck[];
    registry: Registry;
    port: number;
    auditCheckpoint: () => string | undefined;
  }> = {},
): Promise<{ server: HealthServer; url: (path: string) => string; port: number }> {
  const server = new HealthServer({
    host: '127.0.0.1',
    port: options.port ?? 0,
    registry: options.registry ?? new Registry(),
    liveness: options.liveness ?? [],
    readiness: options.readiness ?? [],
    logger,
    ...(options.auditCheckpoint === undefined ? {} : { auditCheckpoint: options.auditCheckpoint }),
  });
  servers.push(server);
  const { port } = await server.start();
  return { server, port, url: (path) => `http://127.0.0.1:${port}${path}` };
}

async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

describe('probes', () => {
  it('answers 200 ok with no checks and with passing checks', async () => {
    const { url } = await start({ liveness: [switchable('loop', { ok: true })] });
    for (const path of ['/healthz', '/readyz']) {
      const res = await get(url(path));
      expect(res).toMatchObject({ status: 200, body: 'ok\n' });
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('answers 503 with one line per failing check only, and recovers when the check does', async () => {
    const watch = switchable('watch:modelartifacts', { ok: false, detail: 'not synced' });
    const leader = switchable('leader-election', { ok: true });
    const kms = switchable('kms', { ok: false });
    const { url } = await start({ readiness: [watch, leader, kms] });
    expect(await get(url('/readyz'))).toMatchObject({
      status: 503,
      body: 'watch:modelartifacts: not synced\nkms: failed\n',
    });
    expect(await get(url('/healthz'))).toMatchObject({ status: 200, body: 'ok\n' });
    watch.set({ ok: true });
    kms.set({ ok: true });
    expect(await get(url('/readyz'))).toMatchObject({ status: 200, body: 'ok\n' });
    leader.set({ ok: false, detail: 'lease lost' });
    expect(await get(url('/readyz'))).toMatchObject({ status: 503, body: 'leader-election: lease lost\n' });
  });

  it('keeps liveness and readiness apart', async () => {
    const { url } = await start({
      liveness: [switchable('event-loop', { ok: false, detail: 'blocked' })],
      readiness: [switchable('synced', { ok: true })],
    });
    expect(await get(url('/healthz'))).toMatchObject({ status: 503, body: 'event-loop: blocked\n' });
    expect(await get(url('/readyz'))).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('lists every check with ?verbose', async () => {
    const { url } = await start({
      readiness: [switchable('a', { ok: true }), switchable('b', { ok: false, detail: 'down' })],
      liveness: [switchable('c', { ok: true })],
    });
    expect(await get(url('/readyz?verbose'))).toMatchObject({
      status: 503,
      body: '[+]a ok\n[-]b: down\nreadyz check failed\n',
    });
    expect(await get(url('/healthz?verbose=1'))).toMatchObject({
      status: 200,
      body: '[+]c ok\nhealthz check passed\n',
    });
  });

  it('fails closed on a check that throws or returns something that is not `true`', async () => {
    const throwing: HealthCheck = {
      name: 'thrower',
      check: () => {
        throw new Error('informer gone');
      },
    };
    const sloppy = { name: 'sloppy', check: () => ({ ok: 'yes' }) } as unknown as HealthCheck;
    const { url } = await start({ liveness: [throwing, sloppy] });
    expect(await get(url('/healthz'))).toMatchObject({
      status: 503,
      body: 'thrower: check threw: informer gone\nsloppy: failed\n',
    });
  });

  it('keeps each failing check on one line', async () => {
    const { url } = await start({
      readiness: [switchable('multi', { ok: false, detail: 'line one\nline two\r\n' })],
    });
    expect((await get(url('/readyz'))).body).toBe('multi: line one line two \n');
  });

  it('turns /readyz 503 at once after setShuttingDown, leaving /healthz alone', async () => {
    const { server, url } = await start({ readiness: [switchable('synced', { ok: true })] });
    expect((await get(url('/readyz'))).status).toBe(200);
    server.setShuttingDown();
    expect(await get(url('/readyz'))).toMatchObject({
      status: 503,
      body: 'shutting-down: the operator is shutting down\n',
    });
    expect((await get(url('/readyz?verbose'))).body).toBe(
      '[-]shutting-down: the operator is shutting down\n[+]synced ok\nreadyz check failed\n',
    );
    expect(await get(url('/healthz'))).toMatchObject({ status: 200, body: 'ok\n' });
  });
});

describe('/metrics', () => {
  it("serves the registry's exposition with its content type", async () => {
    const metrics = new OperatorMetrics();
    metrics.leader.set(1);
    metrics.watchObserver().event?.('accessgrants', 'added');
    const { url } = await start({ registry: metrics.registry });
    const res = await get(url('/metrics'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.registry.contentType);
    expect(res.body).toMatch(/^strongroom_leader 1$/m);
    expect(res.body).toContain('strongroom_watch_events_total{resource="accessgrants",type="added"} 1');
    expect(res.body).toContain('strongroom_operator_process_cpu_user_seconds_total');
  });

  it('answers 500 when collecting fails, and keeps serving', async () => {
    const registry = new Registry();
    let broken = true;
    new Gauge({
      name: 'flaky',
      help: 'a collector that fails',
      registers: [registry],
      collect() {
        if (broken) throw new Error('collector broke');
        this.set(7);
      },
    });
    const { url } = await start({ registry });
    expect(await get(url('/metrics'))).toMatchObject({ status: 500, body: 'collecting metrics failed\n' });
    broken = false;
    const ok = await get(url('/metrics'));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^flaky 7$/m);
  });
});

describe('routing', () => {
  it.each(['/', '/health', '/healthz/', '/healthz/x', '/metrics/', '/readyz.json', '/favicon.ico'])(
    '404 for %s',
    async (path) => {
      const { url } = await start();
      expect(await get(url(path))).toMatchObject({ status: 404, body: 'not found\n' });
    },
  );

  it.each(['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'])('405 for %s on every known path', async (method) => {
    const { url } = await start();
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await get(url(path), { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET');
    }
  });

  it('ignores the query string for routing', async () => {
    const { url } = await start();
    expect((await get(url('/healthz?foo=bar'))).status).toBe(200);
  });
});

describe('/audit/checkpoint', () => {
  it('serves the latest signed checkpoint as text/plain, 404 until the first one, GET only', async () => {
    const latest: { note?: string } = {};
    const { url } = await start({ auditCheckpoint: () => latest.note });
    expect(await get(url('/audit/checkpoint'))).toMatchObject({
      status: 404,
      body: 'no audit checkpoint yet\n',
    });
    latest.note = 'strongroom.audit/c/w\n3\nAAAA\n\n— strongroom.audit/c abcd\n';
    const res = await get(url('/audit/checkpoint'));
    expect(res).toMatchObject({ status: 200, body: latest.note });
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await get(url('/audit/checkpoint'), { method: 'POST' })).status).toBe(405);
  });

  it('is not served without the option', async () => {
    const { url } = await start();
    expect((await get(url('/audit/checkpoint'))).status).toBe(404);
    expect((await get(url('/audit/checkpoint'))).body).toBe('not found\n');
  });
});

describe('lifecycle', () => {
  it('reports the port it bound when asked for port 0', async () => {
    const { port } = await start();
    expect(port).toBeGreaterThan(0);
    expect((await get(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it('rejects with HealthServerError (and the system error as cause) when the port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const err = await start({ port: taken }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(HealthServerError);
      expect((err as Error).message).toContain(`127.0.0.1:${taken}`);
      expect((err as Error).cause).toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('cannot be started twice', async () => {
    const { server } = await start();
    await expect(server.start()).rejects.toThrow(HealthServerError);
  });

  it('stops listening on stop, with keep-alive connections open, and stop is idempotent', async () => {
    const { server, url } = await start();
    // fetch keeps the connection alive: stop must close it rather than wait for it.
    expect((await get(url('/healthz'))).status).toBe(200);
    await Promise.all([server.stop(), server.stop()]);
    await server.stop();
    await expect(fetch(url('/healthz'))).rejects.toThrow();
    await expect(server.start()).rejects.toThrow(HealthServerError);
  });

  it('lets an in-flight scrape finish during stop', async () => {
    const registry = new Registry();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let collecting: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      collecting = resolve;
    });
    new Gauge({
      name: 'slow',
      help: 'waits for the test',
      registers: [registry],
      async collect() {
        collecting();
        await gate;
        this.set(1);
      },
    });
    const { server, url } = await start({ registry });
    const scrape = get(url('/metrics'));
    await started;
    const stopped = server.stop();
    release();
    const res = await scrape;
    expect(res.status).toBe(200);
    expect(res.body).toMatch(/^slow 1$/m);
    // The connection is closed after the response instead of idling until the client's keep-alive timeout.
    expect(res.headers.get('connection')).toBe('close');
    await stopped;
    await expect(fetch(url('/metrics'))).rejects.toThrow();
  });

  it('stop before start resolves and leaves nothing listening', async () => {
    const server = new HealthServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      liveness: [],
      readiness: [],
      logger,
    });
    await server.stop();
    await expect(server.start()).rejects.toThrow(HealthServerError);
  });

  it('stop while start is under way closes the server once it is listening', async () => {
    const server = new HealthServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      liveness: [],
      readiness: [],
      logger,
    });
    const starting = server.start();
    const stopped = server.stop();
    const { port } = await starting;
    await stopped;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});
