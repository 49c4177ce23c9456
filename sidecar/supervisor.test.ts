/**
 * The artifact state machine against a real gRPC server on loopback that plays the broker's ReleaseKey (plain
 * gRPC, no TLS: transport and identity are covered by test/sidecar/sidecar.int.test.ts against the real broker).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encryptDirectory, newDek } from '../core/envelope/index.ts';
import { treeDigest } from '../core/envelope/tree-digest.ts';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import { loadKeyBroker, type KeyBrokerClient, type KeyBrokerHandlers } from '../proto/keybroker.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import { SidecarMetrics } from './metrics.ts';
import { ArtifactSupervisor, leaseRenewalTime, type CompletedWipe } from './supervisor.ts';

type Mode =
  | { kind: 'grant'; leaseMs: number }
  | { kind: 'deny' }
  | { kind: 'unavailable' }
  | { kind: 'hang'; ms: number };

const keyBroker = loadKeyBroker();
let mode: Mode = { kind: 'grant', leaseMs: 60_000 };
let calls = 0;
let server: grpc.Server;
let client: KeyBrokerClient;
let work: string;
let base: PlannedArtifact;
const dek = newDek();
const logger = winston.createLogger({ silent: true });
const supervisors: ArtifactSupervisor[] = [];

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/strongroom-supervisor-test-');
  await mkdir(join(work, 'src'));
  await writeFile(join(work, 'src', 'weights.bin'), Buffer.alloc(4096, 7));
  const context = { artifactUid: 'u1', artifactName: 'resnet', version: 'v1' };
  const manifest = await encryptDirectory(join(work, 'src'), join(work, 'cipher'), {
    dek,
    keyId: 'k',
    context,
  });
  base = {
    namespace: 'ml',
    name: 'resnet',
    uid: 'u1',
    version: 'v1',
    digest: treeDigest(manifest),
    ciphertextPath: join(work, 'cipher'),
    plaintextDir: '',
    mountPath: '/models/resnet',
  };
  server = new grpc.Server();
  const unimplemented = (_: unknown, callback: grpc.sendUnaryData<never>): void => {
    callback({ code: grpc.status.UNIMPLEMENTED });
  };
  const handlers: KeyBrokerHandlers = {
    Attest: unimplemented,
    PublishVersion: unimplemented,
    ReportWipe: unimplemented,
    WatchRevocations: (call) => {
      call.end();
    },
    ReleaseKey: (_call, callback) => {
      calls++;
      const m = mode;
      if (m.kind === 'deny')
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'No AccessGrant (test)' });
      else if (m.kind === 'unavailable')
        callback({ code: grpc.status.UNAVAILABLE, details: 'audit log down (test)' });
      else if (m.kind === 'hang')
        setTimeout(() => {
          callback({ code: grpc.status.UNAVAILABLE, details: 'slow (test)' });
        }, m.ms);
      else {
        const end = Date.now() + m.leaseMs;
        callback(null, {
          dek: Buffer.from(dek),
          version: 'v1',
          digest: base.digest,
          leaseExpiresAt: { seconds: String(Math.floor(end / 1000)), nanos: (end % 1000) * 1e6 },
          grant: { namespace: 'ml', name: 'readers', uid: 'g1' },
          auditIndex: '1',
        });
      }
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

afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stop();
});

afterAll(async () => {
  client.close();
  await new Promise<void>((resolve) => {
    server.tryShutdown(() => {
      resolve();
    });
  });
  await rm(work, { recursive: true, force: true });
});

async function supervisor(
  extra: { metrics?: SidecarMetrics; onWipe?: (wipe: CompletedWipe) => void } = {},
): Promise<{ s: ArtifactSupervisor; dir: string }> {
  const dir = await mkdtemp(join(work, 'plain-'));
  const s = new ArtifactSupervisor({
    artifact: { ...base, plaintextDir: dir },
    client: () => client,
    logger,
    onChange: () => undefined,
    ...extra,
    pendingBackoff: { baseMs: 50, maxMs: 100 },
    wipedRetryMs: 200,
  });
  supervisors.push(s);
  return { s, dir };
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 5000): Promise<number> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now();
}

describe('ArtifactSupervisor', () => {
  it('stays pending while denied, then materializes once a grant appears', async () => {
    mode = { kind: 'deny' };
    const { s, dir } = await supervisor();
    s.start();
    await until('a denial', () => s.lastError?.codeName === 'PERMISSION_DENIED');
    expect(s.phase).toBe('pending');
    expect(s.lastError?.reason).toBe('No AccessGrant (test)');
    expect(await readdir(dir)).toEqual([]);
    mode = { kind: 'grant', leaseMs: 60_000 };
    await until('materialized', () => s.phase === 'materialized');
    expect(await readdir(dir)).toEqual(['weights.bin']);
  });

  it('renews the lease before it ends, and wipes when the broker cannot be reached until it has ended', async () => {
    mode = { kind: 'grant', leaseMs: 1500 };
    const { s, dir } = await supervisor();
    s.start();
    await until('materialized', () => s.phase === 'materialized');
    const before = calls;
    await until('a renewal', () => calls > before, 3000);
    expect(s.phase).toBe('materialized');
    mode = { kind: 'unavailable' };
    const renewedAt = Date.now();
    const wipedAt = await until(
      'wiped at lease end',
      async () => s.phase === 'wiped' && (await readdir(dir)).length === 0,
    );
    // The last granted lease was 1.5 s long: the wipe follows its end, not the first failed renewal.
    expect(wipedAt - renewedAt).toBeGreaterThan(200);
    expect(wipedAt - renewedAt).toBeLessThan(1500 + 1000);
  });

  it('wipes at once when a renewal is denied, and materializes again only after a later release succeeds', async () => {
    mode = { kind: 'grant', leaseMs: 900 };
    const { s, dir } = await supervisor();
    s.start();
    await until('materialized', () => s.phase === 'materialized');
    mode = { kind: 'deny' };
    await until('wiped', async () => s.phase === 'wiped' && (await readdir(dir)).length === 0);
    // Retries (every 200 ms here) keep being denied: nothing comes back.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(s.phase).toBe('wiped');
    expect(await readdir(dir)).toEqual([]);
    mode = { kind: 'grant', leaseMs: 60_000 };
    await until('materialized again', () => s.phase === 'materialized');
    expect(await readdir(dir)).toEqual(['weights.bin']);
  });

  it('a revocation wipes at once even while a renewal waits on a slow broker', async () => {
    mode = { kind: 'grant', leaseMs: 60_000 };
    const { s, dir } = await supervisor();
    s.start();
    await until('materialized', () => s.phase === 'materialized');
    mode = { kind: 'hang', ms: 3000 };
    const before = calls;
    s.recheck('test resync'); // a renewal now hangs for 3 s
    await until('the renewal is in flight', () => calls > before);
    const t0 = Date.now();
    s.revoke('test revocation', { reason: 'renewal-denied' });
    expect(s.phase).toBe('wiped');
    const gone = await until('files gone', async () => (await readdir(dir)).length === 0, 2000);
    expect(gone - t0).toBeLessThan(1000);
  });
});

function revocation(seq: string, grantUid = 'g1'): Revocation__Output {
  return {
    seq,
    epoch: 'e1',
    reason: 'REVOCATION_REASON_GRANT_DELETED',
    artifact: { namespace: 'ml', name: 'resnet' },
    grant: { namespace: 'ml', name: 'readers', uid: grantUid },
    versions: [],
    message: 'test',
    timestamp: null,
    endedAt: { seconds: '1', nanos: 0 },
  };
}

async function count(metrics: SidecarMetrics, name: string, labels: Record<string, string> = {}) {
  const { values } = await (metrics.registry.getSingleMetric(name)?.get() ?? Promise.resolve({ values: [] }));
  return values
    .filter((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('ArtifactSupervisor metrics and wipe reports', () => {
  it('counts the start-up phases of the first materialization, the bytes decrypted and each wipe by reason', async () => {
    mode = { kind: 'grant', leaseMs: 60_000 };
    const metrics = new SidecarMetrics();
    const wipes: CompletedWipe[] = [];
    const { s, dir } = await supervisor({ metrics, onWipe: (w) => wipes.push(w) });
    s.start();
    await until('materialized', () => s.phase === 'materialized');
    const text = await metrics.registry.metrics();
    for (const phase of ['release', 'decrypt', 'verify', 'install'])
      expect(text).toContain(`strongroom_sidecar_startup_phase_seconds_count{phase="${phase}"} 1\n`);
    expect(text).toContain('strongroom_sidecar_decrypted_bytes_total 4096\n');
    const r = revocation('5');
    s.revoke('test', { reason: 'revocation', revocation: r });
    await until('reported', () => wipes.length === 1);
    expect(await readdir(dir)).toEqual([]);
    expect(wipes[0]).toMatchObject({
      reason: 'revocation',
      report: { files: 1, bytes: 4096 },
      revocation: r,
    });
    expect(wipes[0]?.durationMs).toBeGreaterThanOrEqual(0);
    expect(await count(metrics, 'strongroom_sidecar_wipes_total', { reason: 'revocation' })).toBe(1);
    // Back after the retry: a return is not a start-up, but its bytes count.
    await until('materialized again', () => s.phase === 'materialized');
    const again = await metrics.registry.metrics();
    expect(again).toContain('strongroom_sidecar_startup_phase_seconds_count{phase="decrypt"} 1\n');
    expect(again).toContain('strongroom_sidecar_decrypted_bytes_total 8192\n');
    await s.wipeForShutdown();
    expect(await count(metrics, 'strongroom_sidecar_wipes_total', { reason: 'shutdown' })).toBe(1);
  });

  it('answers the first revocation after a lease-end wipe with that wipe, once, and never one of another grant', async () => {
    mode = { kind: 'grant', leaseMs: 700 };
    const metrics = new SidecarMetrics();
    const wipes: CompletedWipe[] = [];
    const { s } = await supervisor({ metrics, onWipe: (w) => wipes.push(w) });
    s.start();
    await until('materialized', () => s.phase === 'materialized');
    mode = { kind: 'unavailable' };
    await until('wiped at the lease end', () => wipes.length === 1, 3000);
    expect(wipes[0]).toMatchObject({ reason: 'lease-expired', revocation: undefined, report: { files: 1 } });
    s.revoke('another grant ended', { reason: 'revocation', revocation: revocation('6', 'g2') });
    await until('its wipe', () => wipes.length === 2);
    expect(wipes[1]?.revocation).toBeUndefined(); // the grant the files were held under is not g2
    const r = revocation('7');
    s.revoke('the grant ended', { reason: 'revocation', revocation: r });
    await until('answered', () => wipes.some((w) => w.revocation === r));
    expect(wipes.find((w) => w.revocation === r)).toMatchObject({
      reason: 'lease-expired',
      report: { files: 1 },
    });
    s.revoke('the grant ended again', { reason: 'revocation', revocation: revocation('8') });
    await until('its wipe', () => wipes.length === 5);
    expect(wipes.filter((w) => w.revocation !== undefined)).toHaveLength(1);
    expect(await count(metrics, 'strongroom_sidecar_wipes_total', { reason: 'lease-expired' })).toBe(1);
    expect(await count(metrics, 'strongroom_sidecar_wipes_total', { reason: 'revocation' })).toBe(3);
  });

  it('does not report a revocation that finds nothing materialized yet', async () => {
    mode = { kind: 'deny' };
    const wipes: CompletedWipe[] = [];
    const { s } = await supervisor({ onWipe: (w) => wipes.push(w) });
    s.start();
    await until('a denial', () => s.lastError !== undefined);
    s.revoke('test', { reason: 'revocation', revocation: revocation('9') });
    await until('its wipe', () => wipes.length === 1);
    expect(wipes[0]?.revocation).toBeUndefined();
  });
});

describe('leaseRenewalTime', () => {
  it('is at 2/3 of what is left of the lease', () => {
    expect(leaseRenewalTime(1000, 4000)).toBe(3000);
    expect(leaseRenewalTime(5000, 4000)).toBe(5000);
  });
});
