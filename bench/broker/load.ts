/**
 * Step 1 of `npm run bench:broker`: ReleaseKey over mutual TLS with ghz (compiled, `--cpus=1`) against one operator:
 * a discarded warm-up, then a fixed rate, then unlimited; every call must be OK, and the audit log must then hold at
 * least one durable (fdatasync'ed) key-release entry per OK call. CPU seconds of ghz, of the operator and of the
 * control plane are measured over each run, with the operator's event-loop delay and GC pauses.
 */
import { join } from 'node:path';
import { KEY_BROKER_PROTO, KEY_BROKER_SERVICE, PROTO_ROOT } from '../../proto/keybroker.ts';
import type { OperatorProcess } from '../../test/harness/operator.ts';
import type { BrokerEndpoint, Workload } from '../../test/harness/workload.ts';
import { runGhz, type GhzResult, type GhzRunOptions } from '../ghz.ts';
import { controlPlaneCpu, machineBusySeconds } from '../proc.ts';
import { cpuShare, ms } from '../report.ts';
import type { BrokerRun } from './args.ts';
import { auditedReleases, operatorCpu, scrapeOperator } from './operator.ts';
import { gc, type ConfigResult, type LoadRun } from './report.ts';
import { firstRelease, log, REQUEST, SERVER_NAME } from './shared.ts';

/** One operator under load, and what a load run needs around it. */
export interface LoadContext {
  /** The ghz binary (ensureGhz). */
  readonly ghz: string;
  readonly op: OperatorProcess;
  readonly endpoint: BrokerEndpoint;
  /** The cluster's work directory: its processes count as the control plane's CPU. */
  readonly workDir: string;
  /** The attested client's CA bundle, certificate and key, as files for ghz. */
  readonly files: { readonly cacert: string; readonly cert: string; readonly key: string };
  readonly options: BrokerRun;
  readonly failures: string[];
}

const cpu = (run: Pick<LoadRun, 'wallSec'>, seconds: number): string => cpuShare(seconds, run.wallSec);

async function load(
  ctx: LoadContext,
  label: string,
  options: Pick<GhzRunOptions, 'rps' | 'concurrency' | 'connections' | 'durationSec'>,
): Promise<LoadRun> {
  const { op, endpoint, files, failures } = ctx;
  const opBefore = operatorCpu(op);
  const controlPlaneBefore = controlPlaneCpu(ctx.workDir, op.pid);
  const machineBefore = machineBusySeconds();
  const before = await scrapeOperator(op);
  const t0 = performance.now();
  const result: GhzResult = await runGhz({
    ghz: ctx.ghz,
    target: `127.0.0.1:${String(endpoint.brokerPort)}`,
    protoFile: join(PROTO_ROOT, KEY_BROKER_PROTO),
    importPaths: [PROTO_ROOT],
    call: `${KEY_BROKER_SERVICE}.ReleaseKey`,
    data: REQUEST,
    tls: { ...files, serverName: SERVER_NAME },
    cpus: 1,
    ...options,
  });
  const wallSec = (performance.now() - t0) / 1000;
  const after = await scrapeOperator(op);
  const run: LoadRun = {
    label,
    targetRps: options.rps,
    concurrency: options.concurrency,
    connections: options.connections ?? 1,
    wallSec,
    count: result.count,
    ok: result.statusCodes.OK ?? 0,
    errorCount: result.errorCount,
    errors: result.errors,
    rps: result.rps,
    p50Ms: result.p50Ms,
    p90Ms: result.p90Ms,
    p99Ms: result.p99Ms,
    ghzCpuSec: result.cpuSeconds,
    operatorCpuSec: operatorCpu(op) - opBefore,
    controlPlaneCpuSec: controlPlaneCpu(ctx.workDir, op.pid) - controlPlaneBefore,
    machineCpuSec: machineBusySeconds() - machineBefore,
    operatorStats: {
      eventLoopDelayP99Ms: after.eventLoopDelayP99Ms,
      eventLoopDelayMaxMs: after.eventLoopDelayMaxMs,
      gcPauseMs: Object.fromEntries(
        Object.entries(after.gcSumSec).map(([kind, sec]) => [
          kind,
          (sec - (before.gcSumSec[kind] ?? 0)) * 1000,
        ]),
      ),
      gcPausesOver10Ms: after.gcCount - after.gcUnder10Ms - (before.gcCount - before.gcUnder10Ms),
    },
  };
  log(
    `${label}: ${String(run.count)} calls, ${String(run.errorCount)} errors, ${run.rps.toFixed(0)}/s, ` +
      `p50 ${ms(run.p50Ms)} p90 ${ms(run.p90Ms)} p99 ${ms(run.p99Ms)}; CPU ghz ${cpu(run, run.ghzCpuSec)}, ` +
      `operator ${cpu(run, run.operatorCpuSec)}, control plane ${cpu(run, run.controlPlaneCpuSec)}; ` +
      `operator event-loop delay p99 ${ms(run.operatorStats.eventLoopDelayP99Ms)} max ` +
      `${ms(run.operatorStats.eventLoopDelayMaxMs)}, GC ${gc(run.operatorStats)} ` +
      `(${String(run.operatorStats.gcPausesOver10Ms)} pauses ≥ 10 ms)`,
  );
  if (run.errorCount > 0 || run.ok !== run.count)
    failures.push(
      `${label}: ${String(run.errorCount)} of ${String(run.count)} calls failed: ${JSON.stringify(run.errors)}`,
    );
  return run;
}

/**
 * The load runs against the operator in `ctx` (a warm-up, a fixed rate, unlimited) and the audit check after them:
 * the audit log must hold an allowed key-release entry for every OK call.
 */
export async function measureConfig(
  ctx: LoadContext,
  dekCacheTtl: string,
  bench: Workload['client'],
  auditOn: ConfigResult['audit'] = 'durable',
): Promise<ConfigResult> {
  const { op, failures } = ctx;
  const { fixedRps, fixedConcurrency, warmupSec, durationSec, concurrency, connections } = ctx.options;
  await firstRelease(bench);
  const tag = `ttl ${dekCacheTtl}${auditOn === 'tmpfs' ? ', audit on tmpfs' : ''}`;
  const warmup = await load(ctx, `[${tag}] warm-up ${String(fixedRps)}/s`, {
    rps: fixedRps,
    concurrency: fixedConcurrency,
    connections: 1,
    durationSec: warmupSec,
  });
  const fixed = await load(ctx, `[${tag}] fixed ${String(fixedRps)}/s`, {
    rps: fixedRps,
    concurrency: fixedConcurrency,
    connections: 1,
    durationSec,
  });
  const unlimited = await load(ctx, `[${tag}] unlimited`, { rps: 0, concurrency, connections, durationSec });
  const okCalls = 1 + warmup.ok + fixed.ok + unlimited.ok;
  const audit = auditedReleases(op);
  log(
    `[${tag}] audit log: ${String(audit.allowed)} allowed key-release entries for ${String(okCalls)} OK calls ` +
      `(${String(audit.lines)} key-release lines)`,
  );
  if (audit.allowed < okCalls)
    failures.push(
      `[${tag}] the audit log holds ${String(audit.allowed)} allowed key releases for ${String(okCalls)} OK calls`,
    );
  return {
    dekCacheTtl,
    audit: auditOn,
    warmup,
    fixed,
    unlimited,
    okCalls,
    auditedReleases: audit.allowed,
    keyReleaseLines: audit.lines,
  };
}
