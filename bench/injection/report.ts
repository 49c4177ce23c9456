/** The Markdown report of `npm run bench:injection`: the targets of issue 8 against the anchor and the floors. */
import { WEBHOOK_NAME } from '../../operator/webhook/configuration.ts';
import {
  boundText,
  GiB,
  INJECTION_ANCHOR as ANCHOR,
  judge,
  ms,
  percentile,
  sec,
  tableHead,
  TARGETS,
  validity,
  verdictCell,
  type Machine,
} from '../report.ts';
import type { AdmissionResult, ApiserverSummary, KindSummary } from './admission.ts';
import { NULL_WEBHOOK_NAME, PATCH_WEBHOOK_NAME } from './floor.ts';
import type { RevocationResult } from './revocation.ts';
import type { StartupResult, StartupRun } from './startup.ts';

/** Everything one run measured (also its JSON). */
export interface InjectionResults {
  readonly date: string;
  readonly machine: Machine;
  readonly options: {
    readonly quick: boolean;
    readonly creates: number;
    readonly warmupCreates: number;
    readonly sizeBytes: number;
    readonly files: number;
    readonly runs: number;
    readonly rounds: number;
  };
  readonly admission: AdmissionResult | undefined;
  readonly startup: StartupResult | undefined;
  readonly revocation: RevocationResult | undefined;
  readonly failures: readonly string[];
  readonly totalSec: number;
}

export function injectionReport(results: InjectionResults): string {
  const { machine, admission, startup, revocation, failures } = results;
  const out: string[] = [];
  out.push(
    `Injection benchmark: ${machine.cpuModel}, ${String(machine.cores)} cores, ${String(machine.memGiB)} GiB, Node ` +
      `${machine.node}, load average at start ${machine.loadAverageAtStart.join(' ')}; the control plane, the node, ` +
      `the operator and this client share the cores. ${String(results.totalSec)} s in all${results.options.quick ? ' (--quick)' : ''}.`,
    '',
    ...tableHead(['Target (issue 8)', 'Strongroom', 'Anchor (vault-k8s)', 'Target', 'Result']),
  );
  if (admission) out.push(...admissionTargets(admission));
  if (startup && startup.runs.length > 0) out.push(...startupTargets(startup));
  if (revocation) out.push(...revocationTargets(revocation));
  if (admission) out.push(...admissionDetail(admission));
  if (startup) out.push(...startupDetail(startup));
  out.push('', validity(failures));
  return out.join('\n');
}

function admissionTargets(admission: AdmissionResult): string[] {
  const w = admission.webhook;
  const a = admission.apiserver;
  const c = admission.client;
  const { addedP50, addedP99, webhookP99 } = TARGETS;
  const n = admission.floor.null.client;
  const floorVerdict = (floorMs: number, target: number): string =>
    !Number.isFinite(floorMs)
      ? '–'
      : floorMs >= target
        ? `**out of reach**: the floor alone is ${ms(floorMs - target)} over the target`
        : `reachable: the floor leaves ${ms(target - floorMs)}`;
  return [
    `| Webhook admission p99 at the webhook (\`strongroom_webhook_admission_duration_seconds\`, ${String(w.count)} injections) | ` +
      `${ms(w.p99Ms, 3)} (bucket ≤ ${ms(w.p99AtMostMs, 2)}; p50 ${ms(w.p50Ms, 3)}, mean ${ms(w.meanMs, 3)}) | – | ${boundText(webhookP99)} | ` +
      `${verdictCell(judge(webhookP99, w.p99AtMostMs))} |`,
    `| Webhook admission p99 in the API server's \`apiserver_admission_webhook_admission_duration_seconds\` (${String(a.count)} calls) | ` +
      `≤ ${ms(a.p99AtMostMs, 0)} (${((a.fractionUnder5Ms ?? 0) * 100).toFixed(1)} % ≤ 5 ms; mean ${ms(a.meanMs)}) | ` +
      `mean ${String(ANCHOR.apiserverMeanMs[0])}–${String(ANCHOR.apiserverMeanMs[1])} ms | ${boundText(webhookP99)} | ` +
      `${verdictCell(judge(webhookP99, a.p99AtMostMs))} |`,
    `| Added to a pod create at p50 (${String(admission.creates)} rounds of 4 kinds of create, rotating order, one client) | ` +
      `${ms(c.addedP50Ms)} (${ms(c.injected.p50Ms)} vs ${ms(c.plain.p50Ms)}; paired median ${ms(c.pairedMedianMs)}) | ` +
      `${String(ANCHOR.addedP50Ms[0])}–${String(ANCHOR.addedP50Ms[1])} ms | ${boundText(addedP50)} (half the anchor's lower bound) | ` +
      `${verdictCell(judge(addedP50, c.addedP50Ms))} |`,
    `| Added to a pod create at p99 | ${ms(c.addedP99Ms)} (${ms(c.injected.p99Ms)} vs ${ms(c.plain.p99Ms)}) | ` +
      `${String(ANCHOR.addedP99Ms[0])}–${String(ANCHOR.addedP99Ms[1])} ms | ${boundText(addedP99)} (half the anchor's lower bound) | ` +
      `${verdictCell(judge(addedP99, c.addedP99Ms))} |`,
    `| Floor: added to a pod create at p50 by a webhook that does nothing (allowed, no patch; same certificate, configuration and loopback as Strongroom's; ${String(admission.creates)} creates in the same rounds) | ` +
      `${ms(n.addedP50Ms)} (${ms(n.p50Ms)} vs ${ms(c.plain.p50Ms)}; paired median ${ms(n.pairedMedianMs)}) | – | ${boundText(addedP50)} | ` +
      `${floorVerdict(n.addedP50Ms, addedP50.bound)} |`,
    `| Floor: the same at p99 | ${ms(n.addedP99Ms)} (${ms(n.p99Ms)} vs ${ms(c.plain.p99Ms)}) | – | ${boundText(addedP99)} | ` +
      `${floorVerdict(n.addedP99Ms, addedP99.bound)} |`,
  ];
}

function startupTargets(startup: StartupResult): string[] {
  const { startupVsBare } = TARGETS;
  const med = (f: (r: StartupRun) => number): number => percentile(startup.runs.map(f), 50) ?? NaN;
  const sidecarMs = med((r) => r.processToProbeMs);
  const noPool = med((r) => r.bareNoPoolMs);
  const withPool = med((r) => r.barePoolMs);
  const label = `${(startup.sizeBytes / GiB).toFixed(2)} GiB in ${String(startup.files)} files, median of ${String(startup.runs.length)}`;
  // The sidecar cannot start decrypting before Node is up, nor be seen started before a probe after it: it takes at
  // least bare + floor, so 1.2 × bare is reachable only if floor ≤ 1.2 × bare − bare.
  const slack = Math.round((startupVsBare.bound - 1) * 1000) / 1000;
  const floorMs = med((r) => r.nullProcessToProbeMs);
  const nodeStartMs = med((r) => r.nullProcessToListeningMs);
  const probeWaitMs = med((r) => r.nullListeningToProbeMs);
  const budgetVerdict = (budget: number): string => {
    const over = startup.runs.filter((r) => r.nullProcessToProbeMs > budget).length;
    const runsOver = `floor over the budget in ${String(over)} of ${String(startup.runs.length)} runs`;
    return floorMs > budget
      ? `**out of reach** for any Node sidecar with a kubelet HTTP startup probe (periodSeconds ≥ 1); ${runsOver}` +
          (nodeStartMs > budget ? '; Node start alone exceeds the budget' : '')
      : `reachable: the floor leaves ${sec(budget - floorMs)}; ${runsOver}`;
  };
  return [
    `| Sidecar start → startup probe passing (${label}) vs bare decryptDirectory with a warm pool of ${String(startup.poolWorkers)} workers (bench/crypto/'s "warm pool"; the sidecar decrypts through a pool too) | ` +
      `${sec(sidecarMs)} vs ${sec(withPool)} = ${(sidecarMs / withPool).toFixed(2)}× | – | ${boundText(startupVsBare)} | ` +
      `${verdictCell(judge(startupVsBare, sidecarMs / withPool))} |`,
    `| … vs bare decryptDirectory with no pool (one thread) | ` +
      `${sec(sidecarMs)} vs ${sec(noPool)} = ${(sidecarMs / noPool).toFixed(2)}× | – | ${boundText(startupVsBare)} | ` +
      `${verdictCell(judge(startupVsBare, sidecarMs / noPool))} |`,
    `| Floor: a native sidecar that does nothing (same image, probes, security context and resources; \`node -e\` HTTP server), process start → startup probe passing, median of ${String(startup.runs.length)} | ` +
      `${sec(floorMs)} (Node start → listening ${sec(nodeStartMs)}, then probe wait ${sec(probeWaitMs)}) | – | ` +
      `≤ ${String(startupVsBare.bound)} × bare − bare = ${String(slack)} × ${sec(withPool)} = ${sec(slack * withPool)} (warm pool) | ` +
      `${budgetVerdict(slack * withPool)} |`,
    `| … against the no-pool bare decrypt | ${sec(floorMs)} | – | ≤ ${String(slack)} × ${sec(noPool)} = ${sec(slack * noPool)} | ` +
      `${budgetVerdict(slack * noPool)} |`,
  ];
}

function revocationTargets(revocation: RevocationResult): string[] {
  const { revocationWipeP99, revocationWipeStretch, revocationConfirmedP99 } = TARGETS;
  const valid = revocation.rounds.every(
    (r) => !Number.isNaN(r.wipeLoggedMs) && !Number.isNaN(r.execConfirmedMs),
  );
  const p99 = revocation.wipeP99Ms;
  const stretch = judge(revocationWipeStretch, p99, valid);
  return [
    `| Time to revoke, grant deleted → files wiped (sidecar's "wiped" log), p99 of ${String(revocation.rounds.length)} rounds | ` +
      `${ms(p99, 0)} (p50 ${ms(revocation.wipeP50Ms, 0)}, max ${ms(revocation.wipeMaxMs, 0)}) | no peer wipes running pods | ` +
      `${boundText(revocationWipeP99)} (stretch ${boundText(revocationWipeStretch)}) | ` +
      `${verdictCell(judge(revocationWipeP99, p99, valid))} (stretch ${verdictCell(stretch)}) |`,
    `| … confirmed from the app container (\`kubectl exec ls\` polled back to back, ~100 ms per exec) | ` +
      `${ms(revocation.execP99Ms, 0)} (p50 ${ms(revocation.execP50Ms, 0)}, max ${ms(revocation.execMaxMs, 0)}) | | ` +
      `${boundText(revocationConfirmedP99)} | ${verdictCell(judge(revocationConfirmedP99, revocation.execP99Ms, valid))} |`,
  ];
}

function admissionDetail(admission: AdmissionResult): string[] {
  const c = admission.client;
  const cpu = admission.cpu;
  const f = admission.floor;
  const apiCell = (name: string, a: ApiserverSummary): string =>
    `\`${name}\`, ${String(a.count)}, mean ${ms(a.meanMs)}, p50 ${ms(a.p50Ms)}, p99 ${ms(a.p99Ms)} (≤ ${ms(a.p99AtMostMs, 0)})`;
  const row = (label: string, k: KindSummary | undefined, api: string): string =>
    k === undefined
      ? `| ${label} | ${ms(c.plain.p50Ms)} | ${ms(c.plain.p99Ms)} | ${ms(c.plain.meanMs)} | – | – | – | – | ${api} |`
      : `| ${label} | ${ms(k.p50Ms)} | ${ms(k.p99Ms)} | ${ms(k.meanMs)} | ${ms(k.addedP50Ms)} | ${ms(k.addedP99Ms)} | ` +
        `${ms(k.addedMeanMs)} | ${ms(k.pairedMedianMs)} | ${api} |`;
  const inj: KindSummary = {
    ...c.injected,
    addedP50Ms: c.addedP50Ms,
    addedP99Ms: c.addedP99Ms,
    addedMeanMs: c.addedMeanMs,
    pairedMedianMs: c.pairedMedianMs,
  };
  return [
    '',
    `Pod create, client side (ms): opted in p50 ${ms(c.injected.p50Ms)} p90 ${ms(c.injected.p90Ms)} p99 ${ms(c.injected.p99Ms)} ` +
      `mean ${ms(c.injected.meanMs)}; plain p50 ${ms(c.plain.p50Ms)} p90 ${ms(c.plain.p90Ms)} p99 ${ms(c.plain.p99Ms)} mean ` +
      `${ms(c.plain.meanMs)}; mean added ${ms(c.addedMeanMs)}. CPU over the ${cpu.wallSec.toFixed(1)} s loop: operator ` +
      `${cpu.operatorSec.toFixed(2)} s (${((cpu.operatorSec / cpu.wallSec) * 100).toFixed(0)} % of a core), control plane and ` +
      `node ${cpu.controlPlaneSec.toFixed(2)} s (${((cpu.controlPlaneSec / cpu.wallSec) * 100).toFixed(0)} %), all four kinds.`,
    '',
    `Admission per kind (${String(admission.creates)} creates each, round-robin in rotating order; added = minus plain):`,
    '',
    ...tableHead([
      'Kind',
      'client p50',
      'p99',
      'mean',
      'added p50',
      'added p99',
      'added mean',
      'paired median',
      'API server metric: webhook, calls, mean, p50, p99',
    ]),
    row('plain (no webhook)', undefined, '–'),
    row('Strongroom (injected)', inj, apiCell(WEBHOOK_NAME, admission.apiserver)),
    row('null webhook (allowed, no patch)', f.null.client, apiCell(NULL_WEBHOOK_NAME, f.null.apiserver)),
    row(
      `same-patch webhook (Strongroom's patch, ${String(f.patch.patchBytes)} bytes)`,
      f.patch.client,
      apiCell(PATCH_WEBHOOK_NAME, f.patch.apiserver),
    ),
    '',
    `Differences of p50 / p99: Strongroom over the same-patch webhook ${ms(c.injected.p50Ms - f.patch.client.p50Ms)} / ` +
      `${ms(c.injected.p99Ms - f.patch.client.p99Ms)} (Strongroom's own webhook beyond answering a patch of that size); ` +
      `same patch over null ${ms(f.patch.client.p50Ms - f.null.client.p50Ms)} / ${ms(f.patch.client.p99Ms - f.null.client.p99Ms)} ` +
      `(carrying, applying and storing the patch). API server metric means: Strongroom ${ms(admission.apiserver.meanMs)}, ` +
      `same patch ${ms(f.patch.apiserver.meanMs)}, null ${ms(f.null.apiserver.meanMs)}.`,
  ];
}

function startupDetail(startup: StartupResult): string[] {
  return [
    '',
    ...tableHead([
      'Run',
      'bare, no pool',
      're-hash of it',
      'bare, pool',
      'process → probe',
      'kubelet startedAt → probe',
      'process → first log',
      'materialize (log)',
      'process → "started" log',
      '"started" log → probe seen',
      'null: process → probe',
      'null: process → timeOrigin',
      'null: process → listening',
      'null: listening → probe seen',
    ]),
    ...startup.runs.map(
      (r) =>
        `| ${String(r.run)} | ${sec(r.bareNoPoolMs)} | ${sec(r.bareRehashMs)} | ${sec(r.barePoolMs)} | ${sec(r.processToProbeMs)} | ${sec(r.kubeletStartedAtToProbeMs)} | ` +
        `${sec(r.processToFirstLogMs)} | ${sec(r.materializeMs)} | ${sec(r.processToLoggedStartedMs)} | ${sec(r.loggedStartedToProbeMs)} | ` +
        `${sec(r.nullProcessToProbeMs)} | ${sec(r.nullProcessToTimeOriginMs)} | ${sec(r.nullProcessToListeningMs)} | ${sec(r.nullListeningToProbeMs)} |`,
    ),
  ];
}
