/**
 * `npm run bench:detection`: how fast the anomaly detector (core/detection/) consumes audit entries, since every
 * replica feeds it synchronously from its audit log's acknowledge path (docs/detection.md). Two mixes:
 * - steady: many identities and artifacts, mostly allowed releases, a few denials, all six rules on (off-hours
 *   included, with a working day of 24 h so it never fires); its alerts are each identity's first restricted touch;
 * - hostile: the same plus bursts, bulk access and denial storms, so rules raise alerts and build evidence.
 * Reported: entries/s, the per-entry p50/p99/max (sampled), the heap the detector retains (after a GC), and the ratio to the audit log's
 * measured durable append rate (docs/audit.md, 20,352/s with 64 appenders): the detector must be far faster.
 *
 *   node bench/detection.ts [--entries 400000] [--identities 2000] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { AuditEvent } from '../core/audit/event.ts';
import { AnomalyDetector, parseDetectionConfig, type DetectorEntry } from '../core/detection/index.ts';
import { percentile } from './report.ts';

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '400000' },
    identities: { type: 'string', default: '2000' },
    json: { type: 'string' },
  },
});
const N = Number(values.entries);
const IDENTITIES = Number(values.identities);
const ARTIFACTS = 500;
const ORIGIN = 'strongroom.audit/bench/replica-0';
/** The audit log's durable append rate with 64 appenders (docs/audit.md, 2026-11-26). */
const AUDIT_APPENDS_PER_S = 20_352;
const T0 = Date.UTC(2026, 11, 7, 6, 0, 0);

/** A deterministic pseudo-random sequence (xorshift32), so runs compare. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function release(
  sa: number,
  artifact: number,
  decision: 'allow' | 'deny',
  classification: string,
): AuditEvent {
  const ns = `team-${sa % 50}`;
  return {
    type: 'key-release',
    decision,
    reason: decision === 'allow' ? 'granted' : 'no-grant',
    workload: {
      namespace: ns,
      serviceAccount: `sa-${sa}`,
      podUid: `pod-${sa}`,
      certificateSerial: '0a',
      environment: 'prod',
    },
    artifact: {
      namespace: ns,
      name: `model-${artifact}`,
      version: `v${artifact % 3}`,
      classification,
      environment: 'prod',
    },
    key: { id: 'strongroom-internal', version: '1' },
    grant:
      decision === 'allow'
        ? { namespace: ns, name: `g-${sa}`, uid: `u-${sa}`, resourceVersion: '1', approvals: [] }
        : null,
    secrets: {},
  };
}

/** Entries spread over `spanMs` of log time: `hostile` mixes in bursts, bulk reads and denial storms. */
function workload(hostile: boolean): DetectorEntry[] {
  const next = rng(hostile ? 7 : 3);
  const spanMs = 6 * 3_600_000;
  const out: DetectorEntry[] = [];
  for (let seq = 0; seq < N; seq++) {
    const time = T0 + Math.floor((seq / N) * spanMs);
    let sa = Math.floor(next() * IDENTITIES);
    let artifact = sa % ARTIFACTS;
    let decision: 'allow' | 'deny' = next() < 0.02 ? 'deny' : 'allow';
    let classification = next() < 0.05 ? 'restricted' : 'internal';
    if (hostile && seq % 1000 < 40) {
      // 4 % of the traffic: one identity of the moment bursts, reads many artifacts, or gets refused repeatedly.
      sa = Math.floor(seq / 1000) % IDENTITIES;
      const kind = Math.floor(seq / 1000) % 3;
      if (kind === 1) artifact = (seq * 7) % ARTIFACTS;
      if (kind === 2) decision = 'deny';
      classification = 'restricted';
    }
    out.push({ origin: ORIGIN, seq, time, event: release(sa, artifact, decision, classification) });
  }
  return out;
}

interface Result {
  readonly mix: string;
  readonly entries: number;
  readonly perSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  readonly alerts: number;
  readonly heapGrowthMiB: number;
  readonly ratioToAuditAppends: number;
}

function run(mix: 'steady' | 'hostile'): Result {
  const entries = workload(mix === 'hostile');
  const detector = new AnomalyDetector(
    parseDetectionConfig({ 'off-hours.enabled': 'true', 'off-hours.hours': '00:00-24:00' }),
  );
  globalThis.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const samples: number[] = [];
  let alerts = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as DetectorEntry;
    if (i % 64 === 0) {
      const t = process.hrtime.bigint();
      alerts += detector.observe(entry).length;
      samples.push(Number(process.hrtime.bigint() - t) / 1000);
    } else {
      alerts += detector.observe(entry).length;
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // Retained by the detector: collect first (with --expose-gc), keep the detector alive across the reading.
  globalThis.gc?.();
  const heapGrowthMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  if (alerts < 0) console.log(detector);
  samples.sort((a, b) => a - b);
  const perSecond = Math.round(entries.length / seconds);
  return {
    mix,
    entries: entries.length,
    perSecond,
    p50Us: Math.round((percentile(samples, 50) ?? 0) * 10) / 10,
    p99Us: Math.round((percentile(samples, 99) ?? 0) * 10) / 10,
    maxUs: Math.round((samples.at(-1) ?? 0) * 10) / 10,
    alerts,
    heapGrowthMiB: Math.round(heapGrowthMiB * 10) / 10,
    ratioToAuditAppends: Math.round((perSecond / AUDIT_APPENDS_PER_S) * 10) / 10,
  };
}

const results = [run('steady'), run('hostile')];
console.log(
  `anomaly detector, ${N} entries over 6 h of log time, ${IDENTITIES} identities, ${ARTIFACTS} artifacts, all six rules on`,
);
for (const r of results) {
  console.log(
    `${r.mix.padEnd(8)} ${String(r.perSecond).padStart(8)} entries/s (${r.ratioToAuditAppends}x the audit log's ` +
      `durable appends), per entry p50 ${r.p50Us} µs, p99 ${r.p99Us} µs, max ${r.maxUs} µs, ` +
      `${r.alerts} alerts, heap +${r.heapGrowthMiB} MiB`,
  );
}
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(results, null, 2));
