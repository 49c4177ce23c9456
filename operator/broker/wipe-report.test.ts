/**
 * The broker's metrics of what leaves it and what comes back, through the mTLS service's real handlers (the gRPC
 * transport and the certificate are stubbed: a fake call and a fixed peer): a real local KMS, a real durable audit
 * log on disk, the real audit trail wired to OperatorMetrics exactly as runnable.ts wires it.
 *   - audit coverage: a key is counted where it leaves, as returned and (against a durable allow entry) as audited;
 *     a release path that skips the audit trail shows as strongroom_audit_coverage_ratio below 1, and an answer that
 *     fails after its audit entry cannot lift it above 1;
 *   - ReportWipe: matched only against revocations this broker sent the pod, for a version they revoked there (and
 *     the broker released to it, when it released any); timed from the end of access it sent, at most once per
 *     version however many reports arrive at once; audited with the echoed ended_at; duplicates, strangers, made-up
 *     versions and malformed reports are counted and never timed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import winston from 'winston';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import {
  AuditKey,
  AuditLog,
  generateNoteKey,
  parseSignerKey,
  type AppendReceipt,
  type KeyReleaseInput,
} from '../../core/audit/index.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { DEFAULT_CLASSIFICATION_TABLE } from '../../core/policy/classification.ts';
import type { NamespaceFacts } from '../../core/policy/grant.ts';
import { artifact as fixtureArtifact, grant, NAMESPACES, NOW } from '../../core/policy/testdata/objects.ts';
import type { ReportWipeRequest } from '../../proto/generated/strongroom/v1/ReportWipeRequest.ts';
import type { WatchRevocationsResponse } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { dekAad, encodeWrapped } from '../keys/artifact-keys.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import { RevocationBus, type RevocationInput } from '../revocation/bus.ts';
import { BrokerAuditTrail } from './audit-trail.ts';
import { CallReporter } from './call-report.ts';
import type { ConnectionPeers } from './connection-peers.ts';
import { DekCache } from './dek-cache.ts';
import { MtlsService } from './mtls-handlers.ts';
import type { Peer } from './peer.ts';
import { accessEndedAt, LeaseTracker, reportableVersions, RevocationFeed } from './revocation-feed.ts';
import type { BrokerView, PodFacts } from './view.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-wipe-report-'));
const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'kms.json')));
const noteKey = generateNoteKey('strongroom.audit/unit');
const silent = winston.createLogger({ silent: true });
let log: AuditLog;
let artifact: ModelArtifact;

const peer: Peer = {
  namespace: 'ml-dev',
  serviceAccount: 'trainer',
  podUid: '11111111-2222-3333-4444-555555555555',
  spiffeId: 'spiffe://test/ns/ml-dev/sa/trainer',
  certificateSerial: 'abcd',
  notAfter: new Date(NOW.getTime() + 30 * 60_000),
  address: '127.0.0.1:1234',
};
const livePod: PodFacts = {
  uid: peer.podUid,
  namespace: 'ml-dev',
  name: 'trainer-0',
  serviceAccount: 'trainer',
  labels: { app: 'resnet' },
  terminating: false,
};

function liveGrant(): AccessGrant {
  const g = grant();
  return {
    ...g,
    metadata: Object.assign({}, g.metadata, { uid: 'grant-uid-1', resourceVersion: '7' }),
    status: { phase: 'Active' },
  };
}

const view: BrokerView = {
  ready: () => true,
  artifact: (ns, name) =>
    artifact.metadata.namespace === ns && artifact.metadata.name === name ? artifact : undefined,
  grants: () => [liveGrant()],
  namespaces: (names) => {
    const facts = new Map<string, NamespaceFacts>();
    for (const n of names) facts.set(n, NAMESPACES.get(n) ?? { exists: false, environment: undefined });
    return facts;
  },
  pod: () => livePod,
};

/** The audit entries of the log so far. */
function entries(): Record<string, unknown>[] {
  return readFileSync(join(dir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"event":'))
    .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event);
}

/** One broker's service with its own metrics, bus and audit trail (attached to the shared log unless told). */
function broker(
  options: {
    metrics?: OperatorMetrics;
    trail?: BrokerAuditTrail;
    attach?: boolean;
    view?: BrokerView;
    leases?: LeaseTracker;
  } = {},
) {
  const metrics = options.metrics ?? new OperatorMetrics();
  // As runnable.ts wires them.
  const trail = options.trail ?? new BrokerAuditTrail(metrics.recordBrokerDecision);
  if (options.attach !== false) trail.attach(log, new AuditKey(randomBytes(32)));
  const bus = new RevocationBus();
  const leases = options.leases ?? new LeaseTracker(() => NOW.getTime());
  const feed = new RevocationFeed({ bus, leases, heartbeatMs: 60_000 });
  const clock = { now: new Date(NOW) };
  const service = new MtlsService({
    view: options.view ?? view,
    policy: () => DEFAULT_CLASSIFICATION_TABLE,
    now: () => clock.now,
    kms,
    custom: {} as CustomObjectsApi,
    keyring: { recipientKey: () => undefined, openSealed: () => undefined } as never,
    audit: trail,
    cache: new DekCache({ ttlMs: 0 }),
    leases,
    feed,
    peers: { peer: () => peer } as unknown as ConnectionPeers,
    report: new CallReporter(silent, {
      released: metrics.recordKeyRelease,
      wipeReport: metrics.recordWipeReport,
    }),
    leadership: () => ({ leading: true }),
  });
  return { metrics, trail, bus, feed, leases, clock, handlers: service.handlers() };
}

/** Calls a unary handler with a fake call; resolves with the error or the response. */
function unary<Req, Res>(
  handler: (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void,
  request: Req,
): Promise<{ error: Partial<grpc.StatusObject> | null; response: Res | undefined }> {
  return new Promise((resolve) => {
    const call = {
      request,
      getPeer: () => peer.address,
      getAuthContext: () => ({}),
    } as unknown as grpc.ServerUnaryCall<Req, Res>;
    handler(call, (error, response) => {
      resolve({ error, response: response ?? undefined });
    });
  });
}

const releaseRequest = {
  artifact: { namespace: 'ml-dev', name: 'resnet50' },
  version: 'v2',
  auditContext: { fileDigest: '' },
};

async function value(metrics: OperatorMetrics, name: string, labels: Record<string, string> = {}) {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))?.value;
}

/** The revocation stream of `peer` on `feed`, and a revocation of its grant published `endedMsAgo` before now. */
function revoke(b: ReturnType<typeof broker>, input: Partial<RevocationInput> = {}) {
  const messages: WatchRevocationsResponse[] = [];
  const end = b.feed.open(peer, { epoch: '' }, { write: (m) => messages.push(m) });
  const revocation = b.bus.publish({
    reason: 'grant-deleted',
    artifact: { namespace: 'ml-dev', name: 'resnet50' },
    grant: { namespace: 'ml-dev', name: 'g1', uid: 'grant-uid-1' },
    subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }],
    versions: [],
    message: 'the grant was deleted',
    at: new Date(b.clock.now.getTime() - 150),
    ...input,
  });
  end();
  const sent = messages.find((m) => m.revocation)?.revocation;
  if (!sent) throw new Error('the revocation was not sent');
  return { revocation, sent };
}

function report(
  sent: { seq?: unknown; epoch?: unknown; endedAt?: unknown },
  overrides: Partial<ReportWipeRequest> = {},
) {
  return {
    revocation: sent,
    artifact: { namespace: 'ml-dev', name: 'resnet50' },
    version: 'v2',
    filesRemoved: '3',
    wipeDuration: { seconds: '0', nanos: 4_000_000 },
    trigger: 'revocation',
    ...overrides,
  } as never;
}

beforeAll(async () => {
  await kms.createKey('strongroom-internal');
  const base = fixtureArtifact({ latest: 'v3' });
  artifact = { ...base, metadata: Object.assign({}, base.metadata, { uid: 'artifact-uid-1' }) };
  const keys = [];
  for (const key of artifact.status?.keys ?? []) {
    const wrapped = await kms.wrap('strongroom-internal', randomBytes(32), dekAad(artifact, key.version));
    keys.push({
      ...key,
      wrappedKey: encodeWrapped(wrapped),
      kekId: wrapped.keyId,
      kekVersion: wrapped.keyVersion,
    });
  }
  artifact = { ...artifact, status: { ...artifact.status, keys } };
  log = await AuditLog.open({
    path: join(dir, 'audit.log'),
    origin: 'strongroom.audit/unit/wipe-report',
    signer: parseSignerKey(noteKey.signerKey),
  });
});

afterAll(async () => {
  await log.close();
});

describe('audit coverage', () => {
  it('is 1 before any release, and stays 1 while every returned key has its durable audit entry', async () => {
    const b = broker();
    expect(await value(b.metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
    for (let i = 0; i < 3; i++) {
      const r = await unary(b.handlers.ReleaseKey as never, releaseRequest);
      expect(r.error).toBeNull();
    }
    const denied = await unary(b.handlers.ReleaseKey as never, { ...releaseRequest, version: 'v9' });
    expect(denied.error?.code).toBeDefined();
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'allow' })).toBe(3);
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'deny' })).toBe(1);
    expect(await value(b.metrics, 'strongroom_key_releases_audited_total')).toBe(3);
    expect(await value(b.metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
  });

  it('drops below 1 when a release path bypasses the audit trail', async () => {
    /** A bug: the release "audit" answers with a receipt but appends nothing. */
    class Bypassed extends BrokerAuditTrail {
      override release(input: KeyReleaseInput): Promise<AppendReceipt> {
        if (input.decision === 'allow') return Promise.resolve({ seq: 0 } as AppendReceipt);
        return super.release(input);
      }
    }
    const metrics = new OperatorMetrics();
    const b = broker({ metrics, trail: new Bypassed(metrics.recordBrokerDecision) });
    const before = entries().length;
    for (let i = 0; i < 2; i++)
      expect((await unary(b.handlers.ReleaseKey as never, releaseRequest)).error).toBeNull();
    expect(entries()).toHaveLength(before); // the keys left with no entry
    expect(await value(metrics, 'strongroom_key_releases_total', { decision: 'allow' })).toBe(2);
    expect(await value(metrics, 'strongroom_key_releases_audited_total')).toBe(0);
    expect(await value(metrics, 'strongroom_audit_coverage_ratio')).toBe(0);
    expect(await metrics.registry.metrics()).toContain('strongroom_audit_coverage_ratio 0\n');
    // Audited releases afterwards raise it again, but not back to 1: the two unaudited keys stay counted.
    const fixed = broker({ metrics });
    for (let i = 0; i < 2; i++)
      expect((await unary(fixed.handlers.ReleaseKey as never, releaseRequest)).error).toBeNull();
    expect(await value(metrics, 'strongroom_audit_coverage_ratio')).toBe(0.5);
  });

  it('stays at 1 when an answer fails after its allow entry was appended (no key left), and is not lifted above it', async () => {
    /** A failure between the audit entry and the answer: the lease cannot be recorded. */
    class Failing extends LeaseTracker {
      fail = false;
      override record(...args: Parameters<LeaseTracker['record']>): void {
        if (this.fail) throw new Error('lease book broken');
        super.record(...args);
      }
    }
    const leases = new Failing(() => NOW.getTime());
    const b = broker({ leases });
    expect((await unary(b.handlers.ReleaseKey as never, releaseRequest)).error).toBeNull();
    leases.fail = true;
    const before = entries().length;
    const failed = await unary(b.handlers.ReleaseKey as never, releaseRequest);
    expect(failed.error?.code).toBe(13); // INTERNAL
    expect(entries().slice(before)).toMatchObject([{ type: 'key-release', decision: 'allow' }]);
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'allow' })).toBe(1);
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'error' })).toBe(1);
    expect(await value(b.metrics, 'strongroom_key_releases_audited_total')).toBe(1);
    expect(await value(b.metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
  });

  it('counts a refusal without a decision (the audit log down) as error, and nothing as returned', async () => {
    const b = broker({ attach: false });
    const r = await unary(b.handlers.ReleaseKey as never, releaseRequest);
    expect(r.error?.details).toMatch(/audit log is unavailable/);
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'error' })).toBe(1);
    expect(await value(b.metrics, 'strongroom_key_releases_total', { decision: 'allow' })).toBeUndefined();
    expect(await value(b.metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
  });
});

describe('ReportWipe', () => {
  it('times a matched report from the end of access the broker sent to its receipt, audits it, and counts it once', async () => {
    const b = broker();
    const { sent } = revoke(b);
    expect(sent.endedAt).toEqual({
      seconds: String(Math.floor((NOW.getTime() - 150) / 1000)),
      nanos: ((NOW.getTime() - 150) % 1000) * 1e6,
    });
    // The caller's echo of the end time is not trusted: a year earlier would be a huge time-to-revoke.
    const lie = {
      ...sent,
      endedAt: { seconds: String(Math.floor(NOW.getTime() / 1000) - 31_536_000), nanos: 0 },
    };
    const r = await unary(b.handlers.ReportWipe as never, report(lie));
    expect(r.error).toBeNull();
    expect(r.response).toMatchObject({ recorded: true });
    const text = await b.metrics.registry.metrics();
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_count 1\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_sum 0.15\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="0.1"} 0\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="0.2"} 1\n');
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'recorded' })).toBe(1);
    const audited = entries().at(-1);
    expect(audited).toMatchObject({
      type: 'broker-access',
      operation: 'report-wipe',
      decision: 'allow',
      reason: 'wipe-confirmed',
      verified: true,
      workload: { namespace: 'ml-dev', serviceAccount: 'trainer', podUid: peer.podUid },
      artifact: { namespace: 'ml-dev', name: 'resnet50', version: 'v2' },
    });
    expect(String(audited?.detail)).toMatch(/wipe confirmed 150 ms later; 3 file\(s\) removed in 4 ms/);
    // What the sidecar echoed is kept in the detail, as it sent it.
    const echoed = new Date(Number(lie.endedAt.seconds) * 1000).toISOString();
    expect(String(audited?.detail)).toContain(`; the sidecar echoed ended_at ${echoed}`);
    expect(Number(r.response && (r.response as { auditIndex: string }).auditIndex)).toBeGreaterThan(0);

    // The same wipe again (a retry whose first answer was lost): audited, not timed twice.
    const again = await unary(b.handlers.ReportWipe as never, report(sent));
    expect(again.response).toMatchObject({ recorded: false });
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'duplicate' })).toBe(1);
    expect(await b.metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_count 1\n');
  });

  it('times an expired grant from its expiresAt, not from when the revocation was published', () => {
    const expiresAt = '2026-01-01T00:00:00Z';
    const grants = () => [{ metadata: { uid: 'u1' }, spec: { expiresAt } }];
    const base = {
      grant: { namespace: 'ml', name: 'g', uid: 'u1' },
      at: new Date(Date.parse(expiresAt) + 40),
    };
    expect(accessEndedAt({ ...base, reason: 'grant-expired' }, grants)).toEqual(new Date(expiresAt));
    expect(accessEndedAt({ ...base, reason: 'grant-revoked' }, grants)).toEqual(base.at);
    // An expiresAt after the publication (the grant was changed since) is not used.
    expect(
      accessEndedAt({ ...base, reason: 'grant-expired', at: new Date(Date.parse(expiresAt) - 1) }, grants),
    ).toEqual(new Date(Date.parse(expiresAt) - 1));
    expect(accessEndedAt({ ...base, reason: 'grant-expired' }, () => [])).toEqual(base.at);
  });

  it('does not time a revocation it did not send this pod: another epoch, another seq, another artifact', async () => {
    const b = broker();
    const { sent } = revoke(b);
    for (const [what, request] of [
      ['epoch', report({ ...sent, epoch: 'another-process' })],
      ['seq', report({ ...sent, seq: String(Number(sent.seq) + 1) })],
      ['artifact', report(sent, { artifact: { namespace: 'ml-dev', name: 'other' } })],
    ] as const) {
      const r = await unary(b.handlers.ReportWipe as never, request);
      expect(r.error, what).toBeNull();
      expect(r.response, what).toMatchObject({ recorded: false });
      expect(entries().at(-1)).toMatchObject({
        operation: 'report-wipe',
        decision: 'allow',
        reason: 'revocation-unknown',
      });
    }
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'unmatched' })).toBe(3);
    expect(await b.metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_count 0\n');
  });

  it('does not time a version the revocation did not revoke, however many versions a pod makes up', async () => {
    const b = broker();
    // A revocation of v2 only.
    const one = revoke(b, { versions: ['v2'] }).sent;
    const made = await unary(b.handlers.ReportWipe as never, report(one, { version: 'v3' }));
    expect(made.response).toMatchObject({ recorded: false });
    expect(entries().at(-1)).toMatchObject({
      operation: 'report-wipe',
      reason: 'version-not-revoked',
      artifact: { version: 'v3' },
    });
    expect(String(entries().at(-1)?.detail)).toContain('revoked for this pod only version(s) v2: not timed');
    expect((await unary(b.handlers.ReportWipe as never, report(one))).response).toMatchObject({
      recorded: true,
    });

    // A revocation of every version, and nothing this broker released to the pod: one report is timed, no more.
    const all = revoke(b).sent;
    const outcomes = [];
    for (const version of ['v1', 'v2', 'v3', 'made-up-1', 'made-up-2']) {
      const r = await unary(b.handlers.ReportWipe as never, report(all, { version }));
      outcomes.push([
        version,
        (r.response as { recorded: boolean } | undefined)?.recorded,
        entries().at(-1)?.reason,
      ]);
    }
    expect(outcomes).toEqual([
      ['v1', true, 'wipe-confirmed'],
      ['v2', false, 'reports-exhausted'],
      ['v3', false, 'reports-exhausted'],
      ['made-up-1', false, 'reports-exhausted'],
      ['made-up-2', false, 'reports-exhausted'],
    ]);
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'recorded' })).toBe(2);
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'unmatched' })).toBe(1);
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'duplicate' })).toBe(4);
    expect(await b.metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_count 2\n');
  });

  it('narrows a revocation to the versions whose key left this broker for the pod', async () => {
    const b = broker();
    expect((await unary(b.handlers.ReleaseKey as never, releaseRequest)).error).toBeNull(); // v2
    expect(b.leases.versionsHeld(peer.podUid, { namespace: 'ml-dev', name: 'resnet50' })).toEqual(['v2']);
    for (const versions of [[], ['v1', 'v2']]) {
      const { sent } = revoke(b, { versions });
      const other = await unary(b.handlers.ReportWipe as never, report(sent, { version: 'v1' }));
      expect(other.response, `versions ${versions.join()}`).toMatchObject({ recorded: false });
      expect(entries().at(-1)).toMatchObject({ reason: 'version-not-revoked' });
      const held = await unary(b.handlers.ReportWipe as never, report(sent, { version: 'v2' }));
      expect(held.response, `versions ${versions.join()}`).toMatchObject({ recorded: true });
    }
    expect(await b.metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_count 2\n');
    // A released key is not known for another pod, nor once its lease ended.
    expect(b.leases.versionsHeld('another-pod', { namespace: 'ml-dev', name: 'resnet50' })).toEqual([]);
    const later = new LeaseTracker(() => NOW.getTime() + 3600_000);
    later.released(peer.podUid, { namespace: 'ml-dev', name: 'resnet50' }, 'v2', NOW);
    expect(later.versionsHeld(peer.podUid, { namespace: 'ml-dev', name: 'resnet50' })).toEqual([]);
  });

  it('which versions a report may name: the revoked ones, narrowed to those released when that leaves any', () => {
    expect(reportableVersions([], [])).toBeUndefined();
    expect(reportableVersions([], ['v2'])).toEqual(new Set(['v2']));
    expect(reportableVersions(['v1', 'v2'], ['v2', 'v3'])).toEqual(new Set(['v2']));
    // The pod may hold a revoked version another replica released: the revocation's own versions still bound it.
    expect(reportableVersions(['v1'], ['v3'])).toEqual(new Set(['v1']));
  });

  it('times two concurrent reports of the same wipe once, while the audit append is slow', async () => {
    /** Holds every report-wipe append until `open()`. */
    class Slow extends BrokerAuditTrail {
      readonly #gate = Promise.withResolvers<undefined>();
      held = 0;
      open(): void {
        this.#gate.resolve(undefined);
      }
      override async access(input: Parameters<BrokerAuditTrail['access']>[0]): Promise<AppendReceipt> {
        if (input.operation === 'report-wipe') {
          this.held += 1;
          await this.#gate.promise;
        }
        return super.access(input);
      }
    }
    const metrics = new OperatorMetrics();
    const trail = new Slow(metrics.recordBrokerDecision);
    const b = broker({ metrics, trail });
    const { sent } = revoke(b);
    const before = entries().length;
    // The sidecar's retry after its 5 s deadline, while the first append is still pending.
    const first = unary(b.handlers.ReportWipe as never, report(sent));
    const retry = unary(b.handlers.ReportWipe as never, report(sent));
    await vi.waitFor(() => {
      expect(trail.held).toBe(2);
    });
    trail.open();
    const answers = await Promise.all([first, retry]);
    expect(answers.map((a) => a.response)).toMatchObject([{ recorded: true }, { recorded: false }]);
    expect(
      entries()
        .slice(before)
        .map((e) => e.reason),
    ).toEqual(['wipe-confirmed', 'already-reported']);
    expect(await value(metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'recorded' })).toBe(1);
    expect(await value(metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'duplicate' })).toBe(1);
    expect(await metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_count 1\n');
  });

  it('keeps an echoed ended_at out of range in the detail without failing the report', async () => {
    const b = broker();
    const { sent } = revoke(b);
    const far = { ...sent, endedAt: { seconds: '999999999999999', nanos: 0 } };
    const r = await unary(b.handlers.ReportWipe as never, report(far));
    expect(r.error).toBeNull();
    expect(r.response).toMatchObject({ recorded: true });
    expect(String(entries().at(-1)?.detail)).toMatch(/; the sidecar echoed ended_at out of range$/);
    const none = revoke(b).sent;
    await unary(b.handlers.ReportWipe as never, report({ ...none, endedAt: null }));
    expect(String(entries().at(-1)?.detail)).toMatch(/; the sidecar echoed no ended_at$/);
  });

  it('bounds the detail of a report for a version outside many revoked ones', async () => {
    const b = broker();
    const versions = Array.from({ length: 10 }, (_, i) => `v${String(i)}-${'x'.repeat(58)}`);
    const { sent } = revoke(b, { versions });
    await unary(b.handlers.ReportWipe as never, report(sent, { version: 'v2' }));
    const detail = String(entries().at(-1)?.detail);
    expect(entries().at(-1)).toMatchObject({ reason: 'version-not-revoked' });
    expect(detail).toContain('and 6 more: not timed');
    expect(detail.length).toBeLessThan(1024);
    expect(detail).not.toMatch(/\.\.\.$/);
  });

  it('refuses a malformed report with INVALID_ARGUMENT, audited as a denial', async () => {
    const b = broker();
    const { sent } = revoke(b);
    for (const request of [
      report({ ...sent, seq: 'x' }),
      report(sent, { version: 'Not A Label' }),
      report(sent, { wipeDuration: null }),
      report(sent, { trigger: 'because' }),
      report(sent, { artifact: null }),
    ]) {
      const r = await unary(b.handlers.ReportWipe as never, request);
      expect(r.error?.code).toBe(3); // INVALID_ARGUMENT
      expect(entries().at(-1)).toMatchObject({
        operation: 'report-wipe',
        decision: 'deny',
        reason: 'invalid-request',
      });
    }
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'invalid' })).toBe(5);
  });

  it('answers UNAVAILABLE while the audit log is down, and records the retry once it is back', async () => {
    const b = broker({ attach: false });
    const { sent } = revoke(b);
    const down = await unary(b.handlers.ReportWipe as never, report(sent));
    expect(down.error?.code).toBe(14); // UNAVAILABLE
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'unavailable' })).toBe(
      1,
    );
    b.trail.attach(log, new AuditKey(randomBytes(32)));
    b.clock.now = new Date(NOW.getTime() + 1000);
    const up = await unary(b.handlers.ReportWipe as never, report(sent));
    expect(up.response).toMatchObject({ recorded: true });
    expect(await b.metrics.registry.metrics()).toContain('strongroom_revocation_to_wipe_seconds_sum 1.15\n');
  });

  it('refuses a caller whose pod is gone (audited), and counts it as refused', async () => {
    const b = broker();
    const { sent } = revoke(b);
    const gone = broker({ metrics: b.metrics, view: { ...view, pod: () => 'deleted' } });
    const r = await unary(gone.handlers.ReportWipe as never, report(sent));
    expect(r.error?.code).toBe(16); // UNAUTHENTICATED
    expect(entries().at(-1)).toMatchObject({
      operation: 'report-wipe',
      decision: 'deny',
      reason: 'pod-deleted',
    });
    expect(await value(b.metrics, 'strongroom_sidecar_wipe_reports_total', { outcome: 'refused' })).toBe(1);
  });
});
