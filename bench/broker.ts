/**
 * `npm run bench:broker`: the key broker against the targets of issue 7, side by side with the OpenBao 2.6.2 anchor
 * measured on this machine. It starts its own control plane (no node), the operator as a real process with its
 * least-privilege RBAC (the broker runs inside it), a sealed internal artifact with a read grant, and one attested
 * pod whose certificate, key and the operator CA bundle go to a temporary directory for ghz. Then:
 *   1. ReleaseKey over mutual TLS with ghz (compiled, `--cpus=1`): a discarded warm-up, then a fixed rate, then
 *      unlimited; every call must be OK, and the audit log must then hold at least one durable (fdatasync'ed)
 *      key-release entry per OK call. CPU seconds of ghz, of the operator and of the control plane are reported.
 *   2. Revocation latency (default operator): `streams` pods attested, each with a WatchRevocations stream; each of
 *      `rounds` rounds creates a grant, waits until it is Active, releases once per pod, deletes the grant through
 *      the API and times, per stream, the arrival of its grant-deleted revocation from just before the delete.
 *   3. Step 1 again on a fresh operator with `--dek-cache-ttl=0s`, so that every release does a KMS unwrap.
 *
 *   node bench/broker.ts [--duration 15] [--warmup 3] [--rps 500] [--fixed-concurrency 8] [--concurrency 50]
 *                        [--connections 4] [--streams 50] [--rounds 20] [--operator-node-args="--cpu-prof --cpu-prof-dir=/tmp/p"]
 *                        [--json out.json]
 *
 * Exit code 1 when a run is invalid (a failed call, a missing audit entry, a missed revocation); a missed target is
 * reported as FAIL in the table and does not change the exit code.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AccessGrant } from '../core/api/index.ts';
import { ACCESS_GRANT_PLURAL, GROUP, VERSION } from '../core/api/index.ts';
import { KEY_BROKER_PROTO, KEY_BROKER_SERVICE, PROTO_ROOT } from '../proto/keybroker.ts';
import { startCluster } from '../test/cluster/cluster.ts';
import { kubectl, type ClusterInfo } from '../test/cluster/kubectl.ts';
import {
  attestedWorkload,
  useOperatorInjection,
  mtlsClient,
  release,
  watch,
  type BrokerEndpoint,
  type Watch,
  type Workload,
} from '../test/broker/workload.ts';
import {
  clients,
  eventually,
  installCrds,
  installOperatorIdentity,
  startOperator,
  type OperatorProcess,
} from '../test/operator/harness.ts';
import {
  appendVersion,
  artifactBody,
  createArtifact,
  createGrant,
  getArtifact,
  getGrant,
  grantBody,
  sealedVersion,
} from '../test/operator/objects.ts';
import { measureFsyncFloor } from './fsync-floor.ts';
import { cpuSecondsOf, ensureGhz, runGhz, type GhzResult, type GhzRunOptions } from './ghz.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    rps: { type: 'string', default: '500' },
    // The fixed-rate run: a few workers on one connection, as one sidecar would.
    'fixed-concurrency': { type: 'string', default: '8' },
    // The unlimited run: enough workers and connections to saturate the broker.
    concurrency: { type: 'string', default: '50' },
    connections: { type: 'string', default: '4' },
    streams: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '20' },
    // The V8 flags of `npm run operator` (package.json), so that the operator is measured as it is run.
    'operator-node-args': { type: 'string', default: '--max-semi-space-size=4 --max-old-space-size=200' },
    json: { type: 'string' },
  },
});
const durationSec = Number(values.duration);
const warmupSec = Number(values.warmup);
const fixedRps = Number(values.rps);
const fixedConcurrency = Number(values['fixed-concurrency']);
const concurrency = Number(values.concurrency);
const connections = Number(values.connections);
const streamCount = Number(values.streams);
const rounds = Number(values.rounds);
const operatorNodeArgs = values['operator-node-args'].split(' ').filter((a) => a !== '');
const log = (line: string): void => {
  process.stderr.write(`[bench:broker] ${line}\n`);
};

const OPERATOR_NS = 'strongroom-system';
const APP_NS = 'bench-prod';
const SERVICE_ACCOUNT = 'reader';
const ARTIFACT = 'model';
const SERVER_NAME = `strongroom-broker.${OPERATOR_NS}.svc`;
const REQUEST = { artifact: { namespace: APP_NS, name: ARTIFACT }, version: 'v1' };
/** A revocation that has not reached its stream this long after the delete counts as missed. */
const REVOCATION_TIMEOUT_MS = 5_000;

/** The anchor, OpenBao 2.6.2 Transit decrypt of a 32-byte data key over TLS on loopback, measured on this machine. */
const ANCHOR = {
  p99At500Ms: '1.3–1.6 ms',
  peakRps: '6,400–8,200/s (4,900–5,600/s with a file audit device, no fsync)',
  revocation: '– (not measured)',
} as const;

/** One ghz run with the CPU each side used. */
interface LoadRun {
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
interface OperatorStats {
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  /** Total GC pause time, by kind (major, minor, incremental, weakcb). */
  readonly gcPauseMs: Readonly<Record<string, number>>;
  /** GC pauses of 10 ms or more (any kind). */
  readonly gcPausesOver10Ms: number;
}

/** The load runs against one operator configuration and the audit check that follows them. */
interface ConfigResult {
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

interface RevocationResult {
  readonly streams: number;
  readonly rounds: number;
  readonly samples: number;
  readonly missed: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return clockTicks;
}

/** Busy (non-idle, non-iowait) CPU seconds of the whole machine so far, from /proc/stat. */
function machineBusySeconds(): number {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = first.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.slice(0, 8).reduce((sum, t) => sum + t, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return (total - idle) / ticksPerSecond();
}

/**
 * CPU seconds so far of the processes that name the control plane's work directory (etcd, kube-apiserver, ...), but
 * not `exclude` (the operator names its kubeconfig there too).
 */
function controlPlaneCpu(workDir: string, exclude: number): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === exclude || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline.includes(workDir)) total += cpuSecondsOf(Number(entry)) ?? 0;
  }
  return total;
}

function operatorCpu(operator: OperatorProcess): number {
  const seconds = cpuSecondsOf(operator.pid);
  if (seconds === undefined) throw new Error(`the operator (pid ${String(operator.pid)}) is gone`);
  return seconds;
}

/** The operator's runtime metrics now: event-loop delay since the last scrape, GC histogram totals so far. */
async function scrapeOperator(operator: OperatorProcess): Promise<{
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  gcSumSec: Record<string, number>;
  gcCount: number;
  gcUnder10Ms: number;
}> {
  const { status, body } = await operator.get('/metrics');
  if (status !== 200) throw new Error(`operator /metrics answered ${String(status)}`);
  const prefix = 'strongroom_operator_nodejs_';
  const gauge = (name: string): number => {
    const value = new RegExp(`^${prefix}${name} (\\S+)$`, 'm').exec(body)?.[1];
    if (value === undefined) throw new Error(`operator /metrics has no ${prefix}${name}`);
    return Number(value);
  };
  const gcSumSec: Record<string, number> = {};
  let gcCount = 0;
  let gcUnder10Ms = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${prefix}gc_duration_seconds`)) continue;
    const kind = /kind="(\w+)"/.exec(line)?.[1] ?? '?';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${prefix}gc_duration_seconds_sum`)) gcSumSec[kind] = value;
    else if (line.startsWith(`${prefix}gc_duration_seconds_count`)) gcCount += value;
    else if (line.includes('le="0.01"')) gcUnder10Ms += value;
  }
  return {
    eventLoopDelayP99Ms: gauge('eventloop_lag_p99_seconds') * 1000,
    eventLoopDelayMaxMs: gauge('eventloop_lag_max_seconds') * 1000,
    gcSumSec,
    gcCount,
    gcUnder10Ms,
  };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** The allowed key-release entries and all key-release lines in the operator's audit log. */
function auditedReleases(operator: OperatorProcess): { allowed: number; lines: number } {
  let allowed = 0;
  let lines = 0;
  for (const file of readdirSync(operator.auditLogDir))
    for (const line of readFileSync(join(operator.auditLogDir, file), 'utf8').split('\n')) {
      if (!line.includes('"type":"key-release"')) continue;
      lines++;
      const event = (JSON.parse(line) as { event?: { type?: unknown; decision?: unknown } }).event;
      if (event?.type === 'key-release' && event.decision === 'allow') allowed++;
    }
  return { allowed, lines };
}

async function must(cluster: ClusterInfo, args: string[]): Promise<void> {
  const result = await kubectl(cluster, args);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
}

const started = Date.now();
// Measured alone, before anything else runs: what one durable audit append costs on this disk.
const fsyncFloor = await measureFsyncFloor(tmpdir());
const cluster = await startCluster({ log });
const failures: string[] = [];
const machine = {
  cpuModel: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
};
let operator: OperatorProcess | undefined;
const workloads: Workload[] = [];
const watches: Watch[] = [];
const dir = mkdtempSync(join(tmpdir(), 'strongroom-bench-broker-'));
/** The operators' audit logs (tens of MB each): removed at the end, once counted. */
const auditDirs: string[] = [];
// startCluster stops the cluster on these signals and exits; the operator is ours to stop.
const onSignal = (): void => {
  operator?.kill('SIGTERM');
};
const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
for (const sig of signals) process.on(sig, onSignal);
const configs: ConfigResult[] = [];
let revocation: RevocationResult | undefined;
try {
  const ghz = await ensureGhz({ log });
  await installCrds(cluster);
  const kubeconfig = await installOperatorIdentity(cluster, OPERATOR_NS);
  await must(cluster, ['create', 'namespace', APP_NS]);
  await must(cluster, ['label', 'namespace', APP_NS, 'strongroom.dev/environment=prod']);
  await must(cluster, ['-n', APP_NS, 'create', 'serviceaccount', SERVICE_ACCOUNT]);
  const { core, custom } = clients(cluster.kubeconfig);

  let generation = 0;
  const start = async (
    extraArgs: string[],
    auditLogDir?: string,
  ): Promise<{ op: OperatorProcess; endpoint: BrokerEndpoint }> => {
    const op = startOperator({
      namespace: OPERATOR_NS,
      kubeconfig,
      identity: `bench-broker-${String(generation++)}`,
      args: ['--log-level=info', ...extraArgs],
      nodeArgs: operatorNodeArgs,
      ...(auditLogDir === undefined ? {} : { auditLogDir }),
    });
    operator = op;
    auditDirs.push(op.auditLogDir);
    const ports = await op.brokerPorts();
    await useOperatorInjection(core, OPERATOR_NS);
    const ca = await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: OPERATOR_NS });
    const caPem = Buffer.from(ca.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
    if (!caPem.includes('BEGIN CERTIFICATE')) throw new Error('no CA bundle in strongroom-ca');
    return { op, endpoint: { ...ports, caPem, serverName: SERVER_NAME } };
  };
  const waitActive = (name: string, intervalMs = 100): Promise<AccessGrant> =>
    eventually(
      `grant ${name} Active`,
      async () => {
        const g = await getGrant(custom, APP_NS, name);
        return g.status?.phase === 'Active' ? g : undefined;
      },
      30_000,
      intervalMs,
    );

  let { op, endpoint } = await start([]);

  // A sealed internal artifact (the writer's side, as a publisher would do it) and a read grant.
  await createArtifact(custom, APP_NS, artifactBody(ARTIFACT, 'internal'));
  const withKey = await eventually(`${ARTIFACT} recipient key`, async () => {
    const a = await getArtifact(custom, APP_NS, ARTIFACT);
    return a.status?.recipientPublicKey ? a : undefined;
  });
  await appendVersion(custom, withKey, (await sealedVersion(withKey, REQUEST.version)).version);
  await eventually(`${ARTIFACT} sealed`, async () => {
    const a = await getArtifact(custom, APP_NS, ARTIFACT);
    return a.status?.keys?.some((k) => k.state === 'Sealed') ? a : undefined;
  });
  await createGrant(
    custom,
    APP_NS,
    grantBody('bench-readers', ARTIFACT, {
      subjects: [{ namespace: APP_NS, serviceAccount: SERVICE_ACCOUNT }],
    }),
  );
  await waitActive('bench-readers');

  const client = await attestedWorkload(core, endpoint, APP_NS, 'bench-client', SERVICE_ACCOUNT);
  workloads.push(client);
  const files = {
    cacert: join(dir, 'ca.crt'),
    cert: join(dir, 'client.crt'),
    key: join(dir, 'client.key'),
  };
  writeFileSync(files.cacert, endpoint.caPem);
  writeFileSync(files.cert, client.certPem);
  writeFileSync(files.key, client.keyPem, { mode: 0o600 });

  /** Releases once through grpc-js until it succeeds (the broker's caches may still be filling); checks the DEK. */
  const firstRelease = async (c: Workload['client']): Promise<void> => {
    const ok = await eventually('a first ReleaseKey', async () => {
      const r = await release(c, APP_NS, ARTIFACT, REQUEST.version);
      return 'ok' in r ? r.ok : undefined;
    });
    if (ok.dek.length !== 32) throw new Error(`ReleaseKey returned a ${String(ok.dek.length)}-byte DEK`);
  };

  const load = async (
    label: string,
    options: Pick<GhzRunOptions, 'rps' | 'concurrency' | 'connections' | 'durationSec'>,
  ): Promise<LoadRun> => {
    const opBefore = operatorCpu(op);
    const controlPlaneBefore = controlPlaneCpu(cluster.workDir, op.pid);
    const machineBefore = machineBusySeconds();
    const before = await scrapeOperator(op);
    const t0 = performance.now();
    const result: GhzResult = await runGhz({
      ghz,
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
      controlPlaneCpuSec: controlPlaneCpu(cluster.workDir, op.pid) - controlPlaneBefore,
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
  };

  const measureConfig = async (
    dekCacheTtl: string,
    bench: Workload['client'],
    auditOn: ConfigResult['audit'] = 'durable',
  ): Promise<ConfigResult> => {
    await firstRelease(bench);
    const tag = `ttl ${dekCacheTtl}${auditOn === 'tmpfs' ? ', audit on tmpfs' : ''}`;
    const warmup = await load(`[${tag}] warm-up ${String(fixedRps)}/s`, {
      rps: fixedRps,
      concurrency: fixedConcurrency,
      connections: 1,
      durationSec: warmupSec,
    });
    const fixed = await load(`[${tag}] fixed ${String(fixedRps)}/s`, {
      rps: fixedRps,
      concurrency: fixedConcurrency,
      connections: 1,
      durationSec,
    });
    const unlimited = await load(`[${tag}] unlimited`, { rps: 0, concurrency, connections, durationSec });
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
  };

  configs.push(await measureConfig('5s (default)', client.client));

  // Revocation latency, on the default operator.
  log(`revocation: attesting ${String(streamCount)} pods and opening their WatchRevocations streams`);
  const watchers: Workload[] = [];
  for (let i = 0; i < streamCount; i += 5) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(5, streamCount - i) }, (_, j) =>
        attestedWorkload(
          core,
          endpoint,
          APP_NS,
          `watcher-${String(i + j).padStart(3, '0')}`,
          SERVICE_ACCOUNT,
        ),
      ),
    );
    watchers.push(...batch);
    workloads.push(...batch);
  }
  for (const w of watchers) watches.push(watch(w.client));
  await eventually('a first message (heartbeat) on every stream', () =>
    watches.every((s) => s.messages.length > 0) ? true : undefined,
  );
  const samples: number[] = [];
  let missed = 0;
  for (let round = 0; round < rounds; round++) {
    const name = `revoke-${String(round).padStart(3, '0')}`;
    await createGrant(
      custom,
      APP_NS,
      grantBody(name, ARTIFACT, { subjects: [{ namespace: APP_NS, serviceAccount: SERVICE_ACCOUNT }] }),
    );
    await waitActive(name, 20);
    await Promise.all(watchers.map((w) => firstRelease(w.client)));
    const t0 = Date.now();
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: APP_NS,
      plural: ACCESS_GRANT_PLURAL,
      name,
    });
    const arrival = (s: Watch): number | undefined =>
      s.messages.find(
        (m) =>
          m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_DELETED' &&
          m.message.revocation.grant?.name === name,
      )?.at;
    const deadline = t0 + REVOCATION_TIMEOUT_MS;
    while (Date.now() < deadline && !watches.every((s) => arrival(s) !== undefined))
      await new Promise((r) => setTimeout(r, 5));
    const roundSamples: number[] = [];
    for (const s of watches) {
      const at = arrival(s);
      if (at === undefined) missed++;
      else roundSamples.push(at - t0);
    }
    samples.push(...roundSamples);
    log(
      `revocation round ${String(round + 1)}/${String(rounds)}: ${String(roundSamples.length)}/${String(watches.length)} ` +
        `streams in max ${String(Math.max(...roundSamples))} ms`,
    );
  }
  for (const s of watches) s.cancel();
  const sorted = [...samples].sort((a, b) => a - b);
  revocation = {
    streams: watches.length,
    rounds,
    samples: samples.length,
    missed,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.at(-1),
  };
  if (missed > 0)
    failures.push(
      `revocation: ${String(missed)} of ${String(watches.length * rounds)} (stream, round) samples missed`,
    );

  // Every release unwraps through the KMS: a fresh operator with the DEK cache off.
  await op.stop();
  ({ op, endpoint } = await start(['--dek-cache-ttl=0s']));
  const fresh = mtlsClient(endpoint, { certPem: client.certPem, keyPem: client.keyPem });
  try {
    configs.push(await measureConfig('0s (off)', fresh));
  } finally {
    fresh.close();
  }
  await op.stop();

  // The same broker with its audit log on tmpfs, where fdatasync costs nothing: what the disk adds, and the
  // configuration closest to the anchor's file audit device (which does not fsync). Not a target run.
  ({ op, endpoint } = await start([], mkdtempSync('/dev/shm/strongroom-audit-bench-')));
  const shm = mtlsClient(endpoint, { certPem: client.certPem, keyPem: client.keyPem });
  try {
    configs.push(await measureConfig('5s (default)', shm, 'tmpfs'));
  } finally {
    shm.close();
  }
  await op.stop();
  operator = undefined;
} catch (error) {
  failures.push(`the benchmark did not complete: ${String(error)}`);
  log(String((error as Error).stack ?? error));
  if (operator) log(`operator output (tail):\n${operator.output().slice(-3000)}`);
} finally {
  for (const s of watches) s.cancel();
  for (const w of workloads) w.client.close();
  await operator?.stop();
  await cluster.stop();
  for (const sig of signals) process.off(sig, onSignal);
  rmSync(dir, { recursive: true, force: true });
  for (const d of auditDirs) rmSync(d, { recursive: true, force: true });
}

function ms(value: number | undefined): string {
  return value === undefined ? '–' : `${value.toFixed(2)} ms`;
}
function cpu(run: Pick<LoadRun, 'wallSec'>, seconds: number): string {
  return `${seconds.toFixed(1)} s (${((seconds / run.wallSec) * 100).toFixed(0)}%)`;
}
function gc(stats: OperatorStats): string {
  const parts = Object.entries(stats.gcPauseMs)
    .filter(([, pause]) => pause > 0)
    .map(([kind, pause]) => `${kind} ${pause.toFixed(0)} ms`);
  return parts.join(', ') || 'none';
}
function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}
const thousands = (n: number): string => Math.round(n).toLocaleString('en-US');

const results = {
  machine,
  options: {
    durationSec,
    warmupSec,
    fixedRps,
    fixedConcurrency,
    concurrency,
    connections,
    streamCount,
    rounds,
  },
  configs,
  revocation,
  fsyncFloor,
  failures,
  totalSec: Math.round((Date.now() - started) / 1000),
};

const out: string[] = [];
out.push(
  `Key broker benchmark: ${machine.cpuModel}, ${String(machine.cores)} cores, Node ${machine.node}, ` +
    `load average at start ${machine.loadAverageAtStart.join(' ')}; ghz --cpus=1, the operator, etcd and ` +
    `kube-apiserver share the cores. ${String(results.totalSec)} s in all.`,
  '',
  '| Target (issue 7) | Strongroom | OpenBao 2.6.2 anchor | Target | Result |',
  '|---|---|---|---|---|',
);
const auditKind = (c: ConfigResult): string =>
  c.audit === 'durable' ? 'durable audit' : 'audit on tmpfs (not durable)';
const judged = (c: ConfigResult, ok: boolean): string =>
  c.audit === 'durable' ? verdict(ok) : `reference (${ok ? 'would pass' : 'would fail'})`;
for (const c of configs) {
  const p99 = c.fixed.p99Ms;
  const valid = c.fixed.errorCount === 0 && c.fixed.count > 0;
  out.push(
    `| ReleaseKey p99 at ${String(fixedRps)}/s, mTLS + local KMS + ${auditKind(c)}, DEK cache ${c.dekCacheTtl} | ` +
      `${ms(p99)} | ${ANCHOR.p99At500Ms} | ≤ 2 ms | ${judged(c, valid && p99 !== undefined && p99 <= 2)} |`,
  );
}
for (const c of configs) {
  const valid = c.unlimited.errorCount === 0 && c.auditedReleases >= c.okCalls;
  out.push(
    `| Releases/s with ${auditKind(c)}, DEK cache ${c.dekCacheTtl} | ${thousands(c.unlimited.rps)}/s ` +
      `(p99 ${ms(c.unlimited.p99Ms)}) | ${ANCHOR.peakRps} | ≥ 5,000/s | ${judged(c, valid && c.unlimited.rps >= 5000)} |`,
  );
}
if (revocation) {
  const p99 = revocation.p99Ms;
  const valid = revocation.missed === 0 && p99 !== undefined;
  out.push(
    `| Revocation reaches a connected client, p99 (${String(revocation.streams)} streams × ` +
      `${String(revocation.rounds)} rounds) | ${ms(p99)} (p50 ${ms(revocation.p50Ms)}, max ${ms(revocation.maxMs)}, ` +
      `${String(revocation.missed)} missed) | ${ANCHOR.revocation} | ≤ 1 s (stretch ≤ 100 ms) | ` +
      `${verdict(valid && p99 <= 1000)}${valid && p99 <= 100 ? ' (stretch PASS)' : ' (stretch FAIL)'} |`,
  );
}
out.push(
  '',
  `The disk's floor (bench/fsync-floor.ts, measured before the cluster started): write + fdatasync of one ` +
    `audit-sized record at ${String(fixedRps)}/s in ${fsyncFloor.dir}: p50 ${ms(fsyncFloor.p50Ms)}, p99 ` +
    `${ms(fsyncFloor.p99Ms)}, p99.9 ${ms(fsyncFloor.p999Ms)}. A release answered only after its own durable ` +
    `append can be no faster, so the 2 ms p99 target leaves ${ms(Math.max(0, 2 - fsyncFloor.p99Ms))} at p99 ` +
    `for TLS, gRPC, authorization and the KMS.`,
  '',
  '| Run | Calls | Errors | Rate | p50 | p90 | p99 | CPU ghz | CPU operator | CPU control plane |',
  '|---|---|---|---|---|---|---|---|---|---|',
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
  '| Run | Operator event-loop delay p99 / max | Operator GC pause time | GC pauses ≥ 10 ms |',
  '|---|---|---|---|',
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
      `for ${thousands(c.okCalls)} OK calls: ${verdict(c.auditedReleases >= c.okCalls)}`,
  );
out.push(failures.length === 0 ? 'Every run valid.' : `INVALID RUNS:\n  ${failures.join('\n  ')}`);
console.log(out.join('\n'));
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
if (failures.length > 0) process.exitCode = 1;
