/**
 * The replay test (issue 18, item 5): a recorded audit log from real broker traffic, fed to a fresh detector.
 *
 * The real operator process (least-privilege RBAC) runs the key broker and writes its real AuditLog to disk. Pods
 * are created through the API server, attest with pod-bound tokens and call ReleaseKey over mutual TLS. First normal
 * traffic from three identities (a steady trickle of releases of the artifacts they are granted), then injected bad
 * behaviour, each by its own identity:
 *
 *   prod/burster   a release burst (40 concurrent ReleaseKey) after a normal history  → release-rate-spike
 *   prod/prober    12 ReleaseKey for an artifact no grant gives it                      → denial-burst
 *   prod/scraper   releases of 4 distinct artifacts in a row                            → bulk-access
 *   prod/curious   releases of a restricted artifact (twice)                            → first-restricted-access
 *   dev/reader     ReleaseKey for a prod artifact without a cross-environment grant     → cross-environment
 *
 * Every entry of the log is real traffic: nothing is injected into the file. The log is then read back from disk
 * (core/audit/tail.ts) and fed to fresh detectors: the normal prefix alone raises nothing; the whole log raises
 * exactly the five alerts above, each citing only the bad entries; and off-hours, with working hours that exclude
 * the recorded times, raises one alert per identity that was released a key, citing its first release.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { KeyReleaseEvent } from '../../core/audit/event.ts';
import { validateEvent } from '../../core/audit/event.ts';
import { parseVerifierKey, verifyLog } from '../../core/audit/index.ts';
import {
  AnomalyDetector,
  alertEvent,
  logEntries,
  parseDetectionConfig,
  type Alert,
  type DetectorEntry,
} from '../../core/detection/index.ts';
import { approval, createGrant, grantBody } from '../harness/objects.ts';
import { clients, eventually } from '../harness/operator.ts';
import { auditVerifierKey, grantWhen, operatorSuite, sealedArtifact } from '../harness/suite.ts';
import { attestedWorkload, release, type Released, type Workload } from '../harness/workload.ts';

const cluster = inject('cluster');
const suite = operatorSuite(cluster, {
  operatorNamespace: 'det-op',
  namespaces: {
    prod: {
      name: 'det-prod',
      environment: 'prod',
      serviceAccounts: ['reader-a', 'reader-b', 'burster', 'prober', 'scraper', 'curious'],
    },
    dev: { name: 'det-dev', environment: 'dev', serviceAccounts: ['reader'] },
  },
  operator: { identity: 'op-detect', args: ['--trust-domain=strongroom.test'], waitFor: 'broker' },
  emptyOnTeardown: ['prod'],
});
const { prod, dev } = suite.namespaces;
const { core, custom } = clients(cluster.kubeconfig);

/**
 * The detection configuration of the replay: the defaults, with windows short enough for a test (a 2 s rate window
 * whose baseline needs 3 windows of history) and bulk access at 4 artifacts.
 */
const REPLAY_CONFIG = {
  'release-rate-spike.window': '2s',
  'release-rate-spike.factor': '3',
  'release-rate-spike.minCount': '10',
  'release-rate-spike.minHistory': '3',
  'bulk-access.distinctArtifacts': '4',
};

const NORMAL_MS = 10_000;
const BURST = 40;
const PROBES = 12;

const workloads = new Map<string, Workload>();
/** The seq of the last entry of the normal traffic. */
let prefixEnd = -1;
let entries: DetectorEntry[] = [];

function ok(outcome: Released, what: string): void {
  if ('error' in outcome) {
    throw new Error(`${what}: ${grpc.status[outcome.error.code]}: ${outcome.error.details}`);
  }
}

function logPath(): string {
  const dir = suite.operator.auditLogDir;
  const files = readdirSync(dir);
  expect(files).toHaveLength(1);
  return join(dir, files[0] as string);
}

/** The log as the detector reads it back from disk (core/audit/tail.ts). */
async function readLog(): Promise<DetectorEntry[]> {
  const out: DetectorEntry[] = [];
  for await (const entry of logEntries(logPath())) out.push(entry);
  return out;
}

function releases(filter: (e: KeyReleaseEvent) => boolean): DetectorEntry[] {
  return entries.filter((e) => e.event.type === 'key-release' && filter(e.event));
}

function by(serviceAccount: string, namespace = prod): (e: KeyReleaseEvent) => boolean {
  return (e) => e.workload.namespace === namespace && e.workload.serviceAccount === serviceAccount;
}

function seqs(list: readonly { seq: number }[]): number[] {
  return list.map((e) => e.seq);
}

function run(config: Record<string, string>, feed: readonly DetectorEntry[]): Alert[] {
  const detector = new AnomalyDetector(parseDetectionConfig(config));
  return feed.flatMap((e) => detector.observe(e));
}

/** Releases `artifact` to `w` once the broker's caches say its grant is Active (a lagging cache is retried). */
async function firstRelease(w: Workload, artifact: string): Promise<void> {
  await eventually(`${artifact} released`, async () => {
    const r = await release(w.client, prod, artifact);
    return 'ok' in r ? true : undefined;
  });
}

beforeAll(async () => {
  for (const name of ['model-a', 'model-b', 'model-c', 'model-d']) {
    await sealedArtifact(custom, prod, name, { classification: 'internal' });
  }
  await sealedArtifact(custom, prod, 'crown', { classification: 'restricted' });
  const subject = (serviceAccount: string, namespace = prod) => ({ namespace, serviceAccount });
  const grants: [string, string, Parameters<typeof grantBody>[2]][] = [
    ['a-readers', 'model-a', { subjects: ['reader-a', 'burster', 'scraper'].map((s) => subject(s)) }],
    ['b-readers', 'model-b', { subjects: ['reader-b', 'scraper'].map((s) => subject(s)) }],
    ['c-readers', 'model-c', { subjects: [subject('scraper')] }],
    ['d-readers', 'model-d', { subjects: [subject('scraper')] }],
    [
      'crown-readers',
      'crown',
      { subjects: [subject('curious')], approvals: [approval('a@example.com'), approval('b@example.com')] },
    ],
    // Names a dev identity on a prod artifact without crossEnvironment: the broker refuses it.
    ['a-dev', 'model-a', { subjects: [subject('reader', dev)] }],
  ];
  for (const [name, artifact, spec] of grants)
    await createGrant(custom, prod, grantBody(name, artifact, spec));
  for (const [name] of grants.slice(0, 5)) {
    await grantWhen(custom, prod, name, (g) => g.status?.phase === 'Active', `${name} Active`);
  }
  for (const sa of ['reader-a', 'reader-b', 'burster', 'prober', 'scraper', 'curious']) {
    workloads.set(sa, await attestedWorkload(core, suite.endpoint, prod, `${sa}-0`, sa));
  }
  workloads.set('dev', await attestedWorkload(core, suite.endpoint, dev, 'dev-reader-0', 'reader'));
  const w = (sa: string): Workload => workloads.get(sa) as Workload;

  // Normal traffic: three identities, each releasing its artifact every 600 ms for NORMAL_MS.
  const normal = async (sa: string, artifact: string): Promise<void> => {
    await firstRelease(w(sa), artifact);
    const until = Date.now() + NORMAL_MS;
    while (Date.now() < until) {
      await sleep(600);
      ok(await release(w(sa).client, prod, artifact), `${sa} normal release`);
    }
  };
  await Promise.all([
    normal('reader-a', 'model-a'),
    normal('reader-b', 'model-b'),
    normal('burster', 'model-a'),
  ]);
  // Every release was durable in the file before its answer came back: the prefix is complete.
  prefixEnd = (await readLog()).at(-1)?.seq ?? -1;

  // Bad behaviour.
  const burst = await Promise.all(
    Array.from({ length: BURST }, () => release(w('burster').client, prod, 'model-a')),
  );
  burst.forEach((r, i) => {
    ok(r, `burst release ${String(i)}`);
  });
  for (let i = 0; i < PROBES; i++) {
    const r = await release(w('prober').client, prod, 'model-b');
    expect('error' in r && r.error.code).toBe(grpc.status.PERMISSION_DENIED);
  }
  for (const artifact of ['model-a', 'model-b', 'model-c', 'model-d'])
    await firstRelease(w('scraper'), artifact);
  await firstRelease(w('curious'), 'crown');
  ok(await release(w('curious').client, prod, 'crown'), 'second crown release');
  const cross = await release(w('dev').client, prod, 'model-a');
  expect('error' in cross && cross.error.details).toMatch(/^CrossEnvironmentNotAllowed: /);

  // Let a checkpoint cover the latest entries (written every second), then read the log back from disk.
  await sleep(1500);
  entries = await readLog();
}, 600_000);

afterAll(() => {
  for (const w of workloads.values()) w.client.close();
});

describe('the replay of a recorded log from real broker traffic', () => {
  it('records the traffic as key-release entries of a real log', async () => {
    expect(prefixEnd).toBeGreaterThan(0);
    // The operator's own log, intact under its pinned key.
    const vkey = await auditVerifierKey(core, suite.operatorNamespace);
    const report = verifyLog(readFileSync(logPath()), { verifiers: [parseVerifierKey(vkey)] });
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    // Normal traffic: reader-a, reader-b and burster each released a dozen or so keys.
    for (const sa of ['reader-a', 'reader-b', 'burster']) {
      const normal = releases(by(sa)).filter((e) => e.seq <= prefixEnd);
      expect(normal.length, sa).toBeGreaterThanOrEqual(10);
    }
    expect(releases(by('burster')).filter((e) => e.seq > prefixEnd)).toHaveLength(BURST);
    const probes = releases(by('prober'));
    expect(probes.map((e) => (e.event as KeyReleaseEvent).reason)).toEqual(Array(PROBES).fill('no-grant'));
    expect(releases(by('reader', dev)).map((e) => (e.event as KeyReleaseEvent).reason)).toEqual([
      'cross-environment-not-allowed',
    ]);
    // The times are real: the log spans the normal traffic.
    const times = entries.map((e) => Date.parse(e.time as string));
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(NORMAL_MS);
  });

  it('raises nothing for the normal traffic alone', () => {
    const prefix = entries.filter((e) => e.seq <= prefixEnd);
    expect(run(REPLAY_CONFIG, prefix)).toEqual([]);
  });

  it('raises exactly one alert per injected behaviour, each citing only the bad entries', () => {
    const alerts = run(REPLAY_CONFIG, entries);
    const summary = alerts.map((a) => ({
      rule: a.rule,
      identity: a.identity,
      artifact: a.artifact,
      severity: a.severity,
    }));
    expect(summary).toEqual([
      {
        rule: 'release-rate-spike',
        identity: { namespace: prod, serviceAccount: 'burster' },
        artifact: null,
        severity: 'high',
      },
      {
        rule: 'denial-burst',
        identity: { namespace: prod, serviceAccount: 'prober' },
        artifact: null,
        severity: 'medium',
      },
      {
        rule: 'bulk-access',
        identity: { namespace: prod, serviceAccount: 'scraper' },
        artifact: null,
        severity: 'high',
      },
      {
        rule: 'first-restricted-access',
        identity: { namespace: prod, serviceAccount: 'curious' },
        artifact: { namespace: prod, name: 'crown' },
        severity: 'medium',
      },
      {
        rule: 'cross-environment',
        identity: { namespace: dev, serviceAccount: 'reader' },
        artifact: { namespace: prod, name: 'model-a' },
        severity: 'medium',
      },
    ]);
    const [spike, denial, bulk, first, cross] = alerts as [Alert, Alert, Alert, Alert, Alert];
    const origin = entries[0]?.origin;
    for (const alert of alerts) {
      expect(alert.evidence.every((e) => e.origin === origin)).toBe(true);
      // The entry that triggered each alert is injected bad behaviour. (The rate spike's evidence is the releases of
      // its tumbling window, which may begin with the burster's last normal releases: checked below.)
      expect(alert.evidence.at(-1)?.seq ?? -1, alert.rule).toBeGreaterThan(prefixEnd);
      if (alert.rule !== 'release-rate-spike') {
        expect(
          alert.evidence.every((e) => e.seq > prefixEnd),
          alert.rule,
        ).toBe(true);
      }
      expect(alert.evidence.length).toBeLessThanOrEqual(32);
      // Each alert is a valid anomaly-alert audit event.
      validateEvent(alertEvent(alert));
    }

    // The spike's evidence: the burster's allowed releases in the window [from, to], in order; all but the normal
    // releases that opened the window are the burst's.
    const burster = releases((e) => by('burster')(e) && e.decision === 'allow');
    const inWindow = burster.filter((e) => {
      const t = Date.parse(e.time as string);
      return t >= spike.from && t <= spike.to;
    });
    expect(seqs(spike.evidence)).toEqual(seqs(inWindow).slice(0, spike.evidence.length));
    expect(spike.evidence.length).toBe(Math.min(32, spike.observed));
    const normalInWindow = inWindow.filter((e) => e.seq <= prefixEnd).length;
    expect(normalInWindow).toBeLessThan(spike.threshold);
    expect(spike.observed - normalInWindow).toBeGreaterThan(0);
    expect(spike.observed).toBeGreaterThanOrEqual(spike.threshold);
    expect(spike.threshold).toBeGreaterThanOrEqual(10);
    expect(spike.baseline).toBeGreaterThanOrEqual(1);
    expect(spike.windowMs).toBe(2000);
    expect(spike.message).toMatch(
      new RegExp(
        `^sa ${prod}/burster was released \\d+ keys in 2 s; its baseline is \\d+\\.\\d per 2 s \\(threshold 3x, at least 10\\)$`,
      ),
    );

    expect(seqs(denial.evidence)).toEqual(seqs(releases(by('prober'))).slice(0, 10));
    expect([denial.observed, denial.threshold]).toEqual([10, 10]);

    const scraped = releases((e) => by('scraper')(e) && e.decision === 'allow');
    expect(seqs(bulk.evidence)).toEqual(seqs(scraped));
    expect([bulk.observed, bulk.threshold]).toEqual([4, 4]);

    const crown = releases((e) => by('curious')(e) && e.decision === 'allow');
    expect(crown).toHaveLength(2);
    expect(seqs(first.evidence)).toEqual([crown[0]?.seq]);

    expect(seqs(cross.evidence)).toEqual(seqs(releases(by('reader', dev))));
  });

  it('raises off-hours for each identity released a key when the working hours exclude the recorded times', () => {
    const first = Date.parse(entries[0]?.time as string);
    const hour = new Date(first).getUTCHours();
    const pad = (h: number): string => `${String(h % 24).padStart(2, '0')}:00`;
    const only = (hours: string): Record<string, string> => ({
      'release-rate-spike.enabled': 'false',
      'denial-burst.enabled': 'false',
      'first-restricted-access.enabled': 'false',
      'bulk-access.enabled': 'false',
      'cross-environment.enabled': 'false',
      'off-hours.enabled': 'true',
      'off-hours.days': 'sun,mon,tue,wed,thu,fri,sat',
      'off-hours.hours': hours,
    });
    // Working hours 6 to 12 hours after the recording: every release is off hours.
    const alerts = run(only(`${pad(hour + 6)}-${pad(hour + 12)}`), entries);
    const released = (sa: string) => releases((e) => by(sa)(e) && e.decision === 'allow');
    const expected = ['reader-a', 'reader-b', 'burster', 'scraper', 'curious']
      .map((sa) => ({ sa, seq: released(sa)[0]?.seq ?? -1 }))
      .sort((a, b) => a.seq - b.seq);
    expect(alerts.map((a) => [a.rule, a.identity?.serviceAccount, seqs(a.evidence)])).toEqual(
      expected.map((e) => ['off-hours', e.sa, [e.seq]]),
    );
    // Working hours that hold the whole day: nothing.
    expect(run(only('00:00-24:00'), entries)).toEqual([]);
  });

  it('ignores its own alerts when they are in the log it reads', () => {
    const alerts = run(REPLAY_CONFIG, entries);
    const last = entries.at(-1) as DetectorEntry;
    const withAlerts: DetectorEntry[] = [
      ...entries,
      ...alerts.map((a, i) => ({ ...last, seq: last.seq + 1 + i, event: alertEvent(a) })),
    ];
    expect(run(REPLAY_CONFIG, withAlerts)).toEqual(alerts);
  });
});
