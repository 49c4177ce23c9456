import { afterEach, describe, expect, it } from 'vitest';
import { PROBE_READY_PATH, PROBE_STARTUP_PATH } from '../core/injection/contract.ts';
import { probeAnswer, startProbeServer, type ProbeServer, type ProbeState } from './probe.ts';

const starting: ProbeState = {
  started: false,
  ready: false,
  detail: 'ml/resnet@v1 pending (PERMISSION_DENIED)',
};
const running: ProbeState = { started: true, ready: true, detail: '' };
const revoked: ProbeState = { started: true, ready: false, detail: 'ml/resnet@v1 wiped' };

describe('probeAnswer', () => {
  it('startup is 503 with the reason until every artifact is in place, then 200', () => {
    expect(probeAnswer('GET', PROBE_STARTUP_PATH, starting)).toEqual({
      status: 503,
      body: 'not started: ml/resnet@v1 pending (PERMISSION_DENIED)\n',
    });
    expect(probeAnswer('GET', PROBE_STARTUP_PATH, running)).toEqual({ status: 200, body: 'started\n' });
  });

  it('ready is 503 before start and after a revocation, 200 only while everything is in place', () => {
    expect(probeAnswer('GET', PROBE_READY_PATH, starting).status).toBe(503);
    expect(probeAnswer('GET', PROBE_READY_PATH, running)).toEqual({ status: 200, body: 'ready\n' });
    expect(probeAnswer('GET', PROBE_READY_PATH, revoked)).toEqual({
      status: 503,
      body: 'not ready: ml/resnet@v1 wiped\n',
    });
    // A revoked sidecar stays started (the kubelet no longer asks), but not ready.
    expect(probeAnswer('GET', PROBE_STARTUP_PATH, revoked).status).toBe(200);
  });

  it('other paths are 404, other methods 405, query strings are ignored', () => {
    expect(probeAnswer('GET', '/healthz', running).status).toBe(404);
    expect(probeAnswer('GET', `${PROBE_READY_PATH}/x`, running).status).toBe(404);
    expect(probeAnswer('POST', PROBE_READY_PATH, running).status).toBe(405);
    expect(probeAnswer('HEAD', `${PROBE_READY_PATH}?verbose=1`, running).status).toBe(200);
  });
});

describe('startProbeServer', () => {
  let server: ProbeServer | undefined;
  afterEach(async () => {
    await server?.close();
  });

  it('answers from the current state at every request over real HTTP', async () => {
    let state = starting;
    server = await startProbeServer({ port: 0, host: '127.0.0.1', state: () => state });
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${String(server?.port)}${path}`);
      return { status: response.status, body: await response.text() };
    };
    expect(await get(PROBE_STARTUP_PATH)).toMatchObject({ status: 503 });
    state = running;
    expect(await get(PROBE_STARTUP_PATH)).toEqual({ status: 200, body: 'started\n' });
    expect(await get(PROBE_READY_PATH)).toEqual({ status: 200, body: 'ready\n' });
    state = revoked;
    expect(await get(PROBE_READY_PATH)).toEqual({ status: 503, body: 'not ready: ml/resnet@v1 wiped\n' });
  });

  it('fails to start on a port in use', async () => {
    server = await startProbeServer({ port: 0, host: '127.0.0.1', state: () => running });
    await expect(
      startProbeServer({ port: server.port, host: '127.0.0.1', state: () => running }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
