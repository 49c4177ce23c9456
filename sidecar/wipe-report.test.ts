/**
 * The sidecar's wipe reports against a real gRPC server on loopback that plays the broker's ReportWipe (plain gRPC:
 * transport and identity are the broker's end-to-end tests' business), and its metrics on the probe port.
 */
import * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ReportWipeRequest__Output } from '../proto/generated/strongroom/v1/ReportWipeRequest.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import { loadKeyBroker, type KeyBrokerClient, type KeyBrokerHandlers } from '../proto/keybroker.ts';
import { METRICS_PATH, SidecarMetrics } from './metrics.ts';
import { startProbeServer } from './probe.ts';
import type { CompletedWipe } from './supervisor.ts';
import { WipeReporter } from './wipe-report.ts';

const keyBroker = loadKeyBroker();
const logger = winston.createLogger({ silent: true });
let server: grpc.Server;
let client: KeyBrokerClient;
/** The statuses the broker answers with, in order; then OK. */
let failures: grpc.status[] = [];
const received: ReportWipeRequest__Output[] = [];

const artifact = {
  namespace: 'ml',
  name: 'resnet',
  uid: 'u1',
  version: 'v1',
  digest: 'sha256:x',
  ciphertextPath: '/c',
  plaintextDir: '/p',
  mountPath: '/models/resnet',
};
const revocation: Revocation__Output = {
  seq: '12',
  epoch: 'e1',
  reason: 'REVOCATION_REASON_GRANT_REVOKED',
  artifact: { namespace: 'ml', name: 'resnet' },
  grant: { namespace: 'ml', name: 'readers', uid: 'g1' },
  versions: [],
  message: 'revoked',
  timestamp: { seconds: '1700000000', nanos: 5_000_000 },
  endedAt: { seconds: '1700000000', nanos: 0 },
};
const wipe: CompletedWipe = {
  reason: 'revocation',
  report: { files: 3, bytes: 9000, directories: 1 },
  durationMs: 1234,
  revocation,
};

beforeAll(async () => {
  server = new grpc.Server();
  const unimplemented = (_: unknown, callback: grpc.sendUnaryData<never>): void => {
    callback({ code: grpc.status.UNIMPLEMENTED });
  };
  const handlers: KeyBrokerHandlers = {
    Attest: unimplemented,
    PublishVersion: unimplemented,
    ReleaseKey: unimplemented,
    WatchRevocations: (call) => {
      call.end();
    },
    ReportWipe: (call, callback) => {
      received.push(call.request);
      const code = failures.shift();
      if (code === undefined) callback(null, { recorded: true, auditIndex: String(received.length) });
      else callback({ code, details: 'test' });
    },
  };
  server.addService(keyBroker.service, handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) => {
      if (error) reject(error);
      else resolve(p);
    });
  });
  client = new keyBroker.Client(`127.0.0.1:${String(port)}`, grpc.credentials.createInsecure());
});

beforeEach(() => {
  received.length = 0;
  failures = [];
});

afterAll(async () => {
  client.close();
  await new Promise<void>((resolve) => {
    server.tryShutdown(() => {
      resolve();
    });
  });
});

function reporter(metrics = new SidecarMetrics()): WipeReporter {
  return new WipeReporter({
    client: () => client,
    logger,
    metrics,
    backoff: { baseMs: 10, maxMs: 20 },
  });
}

describe('WipeReporter', () => {
  it('sends the revocation it answered, the artifact, the files removed and the wipe duration', async () => {
    const r = reporter();
    r.report(artifact, wipe);
    await r.settled();
    expect(received).toEqual([
      {
        revocation: { seq: '12', epoch: 'e1', endedAt: { seconds: '1700000000', nanos: 0 } },
        artifact: { namespace: 'ml', name: 'resnet' },
        version: 'v1',
        filesRemoved: '3',
        wipeDuration: { seconds: '1', nanos: 234_000_000 },
        trigger: 'revocation',
      },
    ]);
  });

  it('retries while the broker cannot be reached, a bounded number of times', async () => {
    const metrics = new SidecarMetrics();
    const r = reporter(metrics);
    failures = [grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE];
    r.report(artifact, wipe);
    await r.settled();
    expect(received).toHaveLength(3);
    expect(await metrics.registry.metrics()).toContain('strongroom_sidecar_wipe_reports_failed_total 0\n');
    received.length = 0;
    failures = Array.from({ length: 10 }, () => grpc.status.UNAVAILABLE);
    r.report(artifact, wipe);
    await r.settled();
    expect(received).toHaveLength(4);
    expect(await metrics.registry.metrics()).toContain('strongroom_sidecar_wipe_reports_failed_total 1\n');
  });

  it('does not retry a refusal, and reports nothing for a wipe that answered no revocation', async () => {
    const metrics = new SidecarMetrics();
    const r = reporter(metrics);
    failures = [grpc.status.INVALID_ARGUMENT, grpc.status.UNAVAILABLE];
    r.report(artifact, wipe);
    r.report(artifact, { ...wipe, reason: 'lease-expired', revocation: undefined });
    await r.settled();
    expect(received).toHaveLength(1);
    expect(await metrics.registry.metrics()).toContain('strongroom_sidecar_wipe_reports_failed_total 1\n');
  });

  it('gives up the retries at once when stopped', async () => {
    const r = new WipeReporter({ client: () => client, logger, backoff: { baseMs: 60_000, maxMs: 60_000 } });
    failures = [grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE];
    r.report(artifact, wipe);
    while (received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const t0 = Date.now();
    r.stop();
    await r.settled();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(received).toHaveLength(1);
  });
});

describe('metrics on the probe port', () => {
  it('serves the registry at /metrics next to the probes, with no artifact in any label', async () => {
    const metrics = new SidecarMetrics();
    metrics.phase('attest', 120);
    metrics.phase('decrypt', -5); // dropped
    metrics.decryptedBytes.inc(4096);
    metrics.wipes.inc({ reason: 'revocation' });
    const probe = await startProbeServer({
      port: 0,
      host: '127.0.0.1',
      state: () => ({ started: true, ready: true, detail: '' }),
      metrics: metrics.registry,
    });
    try {
      const res = await fetch(`http://127.0.0.1:${String(probe.port)}${METRICS_PATH}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(text).toContain('strongroom_sidecar_startup_phase_seconds_count{phase="attest"} 1\n');
      expect(text).toContain('strongroom_sidecar_startup_phase_seconds_sum{phase="attest"} 0.12\n');
      expect(text).not.toContain('phase="decrypt"');
      expect(text).toContain('strongroom_sidecar_decrypted_bytes_total 4096\n');
      expect(text).toContain('strongroom_sidecar_wipes_total{reason="revocation"} 1\n');
      expect(text).not.toMatch(/resnet|namespace=|artifact=/);
      expect((await fetch(`http://127.0.0.1:${String(probe.port)}/ready`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${String(probe.port)}/metrics`, { method: 'POST' })).status).toBe(
        404,
      );
    } finally {
      await probe.close();
    }
  });

  it('answers 404 at /metrics when no registry is given', async () => {
    const probe = await startProbeServer({
      port: 0,
      host: '127.0.0.1',
      state: () => ({ started: true, ready: true, detail: '' }),
    });
    try {
      expect((await fetch(`http://127.0.0.1:${String(probe.port)}/metrics`)).status).toBe(404);
    } finally {
      await probe.close();
    }
  });
});
