/** The Markdown report of `npm run bench:broker`: the targets of issue 7 beside the OpenBao anchor, and the runs. */
import { loadavg } from 'node:os';
import type { FsyncFloor } from '../fsync-floor.ts';
import {
  boundText,
  cpuShare,
  judge,
  ms,
  tableHead,
  TARGETS,
  thousands,
  validity,
  verdictCell,
  type Machine,
} from '../report.ts';
import type { BrokerRun } from './args.ts';
/** The anchor, OpenBao 2.6.2 Transit decrypt of a 32-byte data key over TLS on loopback, measured on this machine. */
export const ANCHOR = {
  p99At500Ms: '1.3–1.6 ms',
  peakRps: '6,400–8,200/s (4,900–5,600/s with a file audit device, no fsync)',
  revocation: '– (not measured)',
} as const;

/** One ghz run with the CPU each side used. */
export interface LoadRun {
  readonly label: string;
  readonly targetRps: number;
  readonly concurrency: number;
  readonly connections: number;
  readonly wallSec: number;
  readonly count: number;
  readonly ok: number;
  readonly errorCount: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly rps: number;
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly ghzCpuSec: number;
  readonly operatorCpuSec: number;
  /** etcd, kube-apiserver and the rest of this bench's control plane. */
  readonly controlPlaneCpuSec: number;
  /**
   * Busy time of every core from /proc/stat (anything running on the host). JSON only: in this VM it is at times
   * below the sum of the per-process figures, so it is not printed.
   */
  readonly machineCpuSec: number;
  /** The operator's own view of the run, from its /metrics (see {@link OperatorStats}). */
  readonly operatorStats: OperatorStats;
}

/**
 * What the operator's Node runtime did during a run, from its prom-client default metrics: event-loop delay (the
 * monitor resets at every scrape, and the bench scrapes just before the run) and garbage-collection pauses.
 */
export interface OperatorStats {
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  /** Total GC pause time, by kind (major, minor, incremental, weakcb). */
  readonly gcPauseMs: Readonly<Record<string, number>>;
  /** GC pauses of 10 ms or more (any kind). */
  readonly gcPausesOver10Ms: number;
}

/** The load runs against one operator configuration and the audit check that follows them. */
export interface ConfigResult {
  readonly dekCacheTtl: string;
  /** durable: ext4 with fdatasync per batch (the target); tmpfs: the same code on /dev/shm, where fdatasync is free. */
  readonly audit: 'durable' | 'tmpfs';
  readonly warmup: LoadRun;
  readonly fixed: LoadRun;
  readonly unlimited: LoadRun;
  /** OK calls that ghz counted (warm-up included) plus the bench's own releases before the check. */
  readonly okCalls: number;
  /** Allowed key-release entries in the operator's audit log. */
  readonly auditedReleases: number;
  /** Lines containing "type":"key-release" (allowed or denied). */
  readonly keyReleaseLines: number;
}

export interface RevocationResult {
  readonly streams: number;
  readonly rounds: number;
  readonly samples: number;
  readonly missed: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
}

/** Everything one run measured (also its JSON). */
export interface BrokerResults {
  readonly machine: Machine;
  readonly options: BrokerRun;
  readonly configs: readonly ConfigResult[];
  readonly revocation: RevocationResult | undefined;
  readonly fsyncFloor: FsyncFloor;
  readonly failures: readonly string[];
  readonly totalSec: number;
}

const cpu = (run: Pick<LoadRun, 'wallSec'>, seconds: number): string => cpuShare(seconds, run.wallSec);

/** The GC pause time of a run by kind: `major 12 ms, minor 30 ms`. */
export function gc(stats: OperatorStats): string {
  const parts = Object.entries(stats.gcPauseMs)
    .filter(([, pause]) => pause > 0)
    .map(([kind, pause]) => `${kind} ${pause.toFixed(0)} ms`);
  return parts.join(', ') || 'none';
}

export function brokerReport(results: BrokerResults): string {
  const { machine, configs, revocation, fsyncFloor, failures } = results;
  const { fixedRps } = results.options;
  const { releaseP99, releasesPerSec, brokerRevocationP99, brokerRevocationStretch } = TARGETS;
  const out: string[] = [];
  out.push(
    `Key broker benchmark: ${machine.cpuModel}, ${String(machine.cores)} cores, Node ${machine.node}, ` +
      `load average at start ${machine.loadAverageAtStart.join(' ')}; ghz --cpus=1, the operator, etcd and ` +
      `kube-apiserver share the cores. ${String(results.totalSec)} s in all.`,
    '',
    ...tableHead(['Target (issue 7)', 'Strongroom', 'OpenBao 2.6.2 anchor', 'Target', 'Result']),
  );
  const auditKind = (c: ConfigResult): string =>
    c.audit === 'durable' ? 'durable audit' : 'audit on tmpfs (not durable)';
  const judged = (c: ConfigResult, ok: boolean): string =>
    c.audit === 'durable' ? verdictCell(ok) : `reference (${ok ? 'would pass' : 'would fail'})`;
  for (const c of configs) {
    const p99 = c.fixed.p99Ms;
    const valid = c.fixed.errorCount === 0 && c.fixed.count > 0;
    out.push(
      `| ReleaseKey p99 at ${String(fixedRps)}/s, mTLS + local KMS + ${auditKind(c)}, DEK cache ${c.dekCacheTtl} | ` +
        `${ms(p99)} | ${ANCHOR.p99At500Ms} | ${boundText(releaseP99)} | ${judged(c, judge(releaseP99, p99, valid).pass)} |`,
    );
  }
  for (const c of configs) {
    const valid = c.unlimited.errorCount === 0 && c.auditedReleases >= c.okCalls;
    out.push(
      `| Releases/s with ${auditKind(c)}, DEK cache ${c.dekCacheTtl} | ${thousands(c.unlimited.rps)}/s ` +
        `(p99 ${ms(c.unlimited.p99Ms)}) | ${ANCHOR.peakRps} | ${boundText(releasesPerSec)} | ` +
        `${judged(c, judge(releasesPerSec, c.unlimited.rps, valid).pass)} |`,
    );
  }
  if (revocation) {
    const p99 = revocation.p99Ms;
    const valid = revocation.missed === 0;
    out.push(
      `| Revocation reaches a connected client, p99 (${String(revocation.streams)} streams × ` +
        `${String(revocation.rounds)} rounds) | ${ms(p99)} (p50 ${ms(revocation.p50Ms)}, max ${ms(revocation.maxMs)}, ` +
        `${String(revocation.missed)} missed) | ${ANCHOR.revocation} | ` +
        `${boundText(brokerRevocationP99)} (stretch ${boundText(brokerRevocationStretch)}) | ` +
        `${verdictCell(judge(brokerRevocationP99, p99, valid))} ` +
        `(stretch ${verdictCell(judge(brokerRevocationStretch, p99, valid))}) |`,
    );
  }
  out.push(
    '',
    `The disk's floor (bench/fsync-floor.ts, measured before the cluster started): write + fdatasync of one ` +
      `audit-sized record at ${String(fixedRps)}/s in ${fsyncFloor.dir}: p50 ${ms(fsyncFloor.p50Ms)}, p99 ` +
      `${ms(fsyncFloor.p99Ms)}, p99.9 ${ms(fsyncFloor.p999Ms)}. A release answered only after its own durable ` +
      `append can be no faster, so the ${String(releaseP99.bound)} ms p99 target leaves ` +
      `${ms(Math.max(0, releaseP99.bound - fsyncFloor.p99Ms))} at p99 ` +
      `for TLS, gRPC, authorization and the KMS.`,
    '',
    ...tableHead([
      'Run',
      'Calls',
      'Errors',
      'Rate',
      'p50',
      'p90',
      'p99',
      'CPU ghz',
      'CPU operator',
      'CPU control plane',
    ]),
  );
  for (const c of configs)
    for (const run of [c.fixed, c.unlimited])
      out.push(
        `| ${run.label} (c=${String(run.concurrency)}, ${String(run.connections)} conn) | ${thousands(run.count)} | ` +
          `${String(run.errorCount)} | ${thousands(run.rps)}/s | ${ms(run.p50Ms)} | ${ms(run.p90Ms)} | ${ms(run.p99Ms)} | ` +
          `${cpu(run, run.ghzCpuSec)} | ${cpu(run, run.operatorCpuSec)} | ${cpu(run, run.controlPlaneCpuSec)} |`,
      );
  out.push(
    '',
    ...tableHead([
      'Run',
      'Operator event-loop delay p99 / max',
      'Operator GC pause time',
      'GC pauses ≥ 10 ms',
    ]),
  );
  for (const c of configs)
    for (const run of [c.fixed, c.unlimited]) {
      const stats = run.operatorStats;
      const total = Object.values(stats.gcPauseMs).reduce((sum, pause) => sum + pause, 0);
      out.push(
        `| ${run.label} | ${ms(stats.eventLoopDelayP99Ms)} / ${ms(stats.eventLoopDelayMaxMs)} | ` +
          `${total.toFixed(0)} ms (${gc(stats)}) | ${String(stats.gcPausesOver10Ms)} |`,
      );
    }
  out.push(
    '',
    `CPU: seconds used during the run (user + system, from /proc/<pid>/stat) and % of one core over its wall time ` +
      `(${String(machine.cores)} cores = ${String(machine.cores * 100)}%). Load average at the end: ` +
      `${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} (other work on this host shows here).`,
  );
  for (const c of configs)
    out.push(
      `Audit (DEK cache ${c.dekCacheTtl}, ${auditKind(c)}): ${thousands(c.auditedReleases)} allowed key-release entries${c.audit === 'durable' ? ", fdatasync'ed," : ''} ` +
        `for ${thousands(c.okCalls)} OK calls: ${verdictCell(c.auditedReleases >= c.okCalls)}`,
    );
  out.push(validity(failures));
  return out.join('\n');
}
