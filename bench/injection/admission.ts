/**
 * Admission (issue 8): `creates` rounds of sequential pod CREATEs from one client, one of each kind per round in
 * rotating order: the opted-in pod; the same pod without the opt-in label (which the API server never sends to the
 * webhook); and the same pod sent instead to a webhook in this process that allows it with no patch (the null
 * webhook, the floor) or with the operator's real patch captured once (the same-patch webhook; ./floor.ts). The pods
 * name a scheduler that does not exist, so they stay Pending and neither the scheduler nor the kubelet works on
 * them. The webhook's latency is read from the operator's `strongroom_webhook_admission_duration_seconds` and from
 * the API server's `apiserver_admission_webhook_admission_duration_seconds` per webhook name (deltas of the
 * histograms around the loop); what each webhook adds to a create is the client-side difference to plain.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_ARTIFACTS, LABEL_INJECT } from '../../core/injection/contract.ts';
import { WEBHOOK_NAME } from '../../operator/webhook/configuration.ts';
import type { Cluster } from '../../test/harness/cluster.ts';
import { must } from '../../test/harness/kubectl.ts';
import { eventually } from '../../test/harness/operator.ts';
import { injectedPod, type Stack } from '../../test/harness/stack.ts';
import { cpuSecondsOf, controlPlaneCpu } from '../proc.ts';
import { mean, ms, percentile } from '../report.ts';
import {
  NULL_WEBHOOK_LABEL,
  NULL_WEBHOOK_NAME,
  PATCH_WEBHOOK_LABEL,
  PATCH_WEBHOOK_NAME,
  type FloorWebhooks,
} from './floor.ts';
import {
  bucketQuantile,
  fractionAtOrBelow,
  histogram,
  histogramDelta,
  parseProm,
  type Histogram,
} from './metrics.ts';
import { APP_NS, injected, log, NO_SCHEDULER, SMALL, SMALL_MOUNT } from './shared.ts';

/** Client-side create latency of one kind of pod, and what it adds to a plain create. */
export interface KindSummary {
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly addedP50Ms: number;
  readonly addedP99Ms: number;
  readonly addedMeanMs: number;
  /** Median of the per-round differences (this kind minus the plain create of the same round). */
  readonly pairedMedianMs: number;
}

/** One webhook's `apiserver_admission_webhook_admission_duration_seconds`, delta around the loop. */
export interface ApiserverSummary {
  readonly count: number;
  readonly meanMs: number | undefined;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly p99AtMostMs: number | undefined;
  readonly fractionUnder5Ms: number | undefined;
  readonly histogram: Histogram;
}

export interface AdmissionResult {
  readonly creates: number;
  readonly webhook: {
    readonly count: number;
    readonly meanMs: number | undefined;
    readonly p50Ms: number | undefined;
    readonly p99Ms: number | undefined;
    readonly p99AtMostMs: number | undefined;
    readonly histogram: Histogram;
  };
  readonly apiserver: ApiserverSummary;
  readonly client: {
    readonly injected: { p50Ms: number; p90Ms: number; p99Ms: number; meanMs: number };
    readonly plain: { p50Ms: number; p90Ms: number; p99Ms: number; meanMs: number };
    readonly addedP50Ms: number;
    readonly addedP99Ms: number;
    readonly addedMeanMs: number;
    /** Median of the per-pair differences (injected minus the plain create next to it). */
    readonly pairedMedianMs: number;
  };
  /** The floors (./floor.ts): a webhook that only allows, and one that answers Strongroom's patch. */
  readonly floor: {
    readonly null: { client: KindSummary; apiserver: ApiserverSummary; calls: number };
    readonly patch: { client: KindSummary; apiserver: ApiserverSummary; calls: number; patchBytes: number };
  };
  /** Over the whole loop (all four kinds). */
  readonly cpu: { wallSec: number; operatorSec: number; controlPlaneSec: number };
}

/** The four kinds of pod create in the admission loop, round-robin. */
export const KINDS = ['plain', 'injected', 'null', 'patch'] as const;
export type Kind = (typeof KINDS)[number];
const KIND_PREFIX: Readonly<Record<Kind, string>> = { plain: 'pl', injected: 'in', null: 'nu', patch: 'pa' };
/** The label that routes each kind to its webhook (none for plain). */
const KIND_LABEL: Readonly<Record<Kind, string | undefined>> = {
  plain: undefined,
  injected: LABEL_INJECT,
  null: NULL_WEBHOOK_LABEL,
  patch: PATCH_WEBHOOK_LABEL,
};
/** Where the pods that are not opted in keep the artifacts annotation's value. */
const BENCH_ARTIFACTS_ANNOTATION = 'bench.strongroom.dev/artifacts';
/** The pod for admission creates: an opted-in pod's shape, labelled for `kind`'s webhook only. */
export function admissionPod(name: string, kind: Kind): V1Pod {
  const pod = injectedPod({ name, artifacts: `${SMALL}@v1:${SMALL_MOUNT}`, script: 'sleep 3600' });
  const label = KIND_LABEL[kind];
  if (pod.metadata)
    pod.metadata.labels =
      label === undefined ? { bench: 'admission' } : { [label]: 'true', bench: 'admission' };
  // Only an opted-in pod may carry the artifacts annotation (the opt-in ValidatingAdmissionPolicy refuses any other
  // pod that has it): the other kinds carry the same value under a bench annotation, so every kind is the same size
  // and the captured patch still finds an annotations map to add to.
  const annotations = pod.metadata?.annotations;
  if (kind !== 'injected' && annotations?.[ANNOTATION_ARTIFACTS] !== undefined) {
    const { [ANNOTATION_ARTIFACTS]: artifacts, ...rest } = annotations;
    if (pod.metadata) pod.metadata.annotations = { ...rest, [BENCH_ARTIFACTS_ANNOTATION]: artifacts };
  }
  if (pod.spec) pod.spec.schedulerName = NO_SCHEDULER;
  return pod;
}

export async function measureAdmission(
  stack: Stack,
  cluster: Cluster,
  failures: string[],
  floor: FloorWebhooks,
  patchBytes: number,
  options: { readonly creates: number; readonly warmupCreates: number },
): Promise<AdmissionResult> {
  const { creates, warmupCreates } = options;
  const { core, operator } = stack;
  const createTimed = async (name: string, kind: Kind): Promise<number> => {
    const t0 = performance.now();
    const created = await core.createNamespacedPod({ namespace: APP_NS, body: admissionPod(name, kind) });
    const elapsed = performance.now() - t0;
    const expected = kind === 'injected' || kind === 'patch';
    if (injected(created) !== expected)
      failures.push(`admission: ${kind} pod ${name} was ${expected ? 'not injected' : 'injected'}`);
    return elapsed;
  };
  // A new configuration takes effect once the API server's informer has it: dry-run until both floor webhooks answer.
  await eventually(
    'the floor webhooks in effect',
    async () => {
      const before = floor.null.calls();
      await core.createNamespacedPod({
        namespace: APP_NS,
        body: admissionPod('floor-probe-nu', 'null'),
        dryRun: 'All',
      });
      const patched = await core.createNamespacedPod({
        namespace: APP_NS,
        body: admissionPod('floor-probe-pa', 'patch'),
        dryRun: 'All',
      });
      return floor.null.calls() > before && injected(patched) ? true : undefined;
    },
    30_000,
    100,
  );
  log(`admission: ${String(warmupCreates)} warm-up rounds of ${KINDS.join(', ')} (discarded)`);
  for (let i = 0; i < warmupCreates; i++)
    for (const kind of KINDS) await createTimed(`warm-${KIND_PREFIX[kind]}-${String(i)}`, kind);
  const scrapeApiserver = async (): Promise<Map<string, Histogram>> => {
    const samples = parseProm(await must(cluster, ['get', '--raw', '/metrics']));
    return new Map(
      [WEBHOOK_NAME, NULL_WEBHOOK_NAME, PATCH_WEBHOOK_NAME].map((n) => [
        n,
        histogram(samples, 'apiserver_admission_webhook_admission_duration_seconds', (l) => l.name === n),
      ]),
    );
  };
  const scrapeWebhook = async (): Promise<Histogram> => {
    const { status, body } = await operator.get('/metrics');
    if (status !== 200) throw new Error(`operator /metrics answered ${String(status)}`);
    return histogram(
      parseProm(body),
      'strongroom_webhook_admission_duration_seconds',
      (l) => l.outcome === 'injected',
    );
  };
  const apiBefore = await scrapeApiserver();
  const hookBefore = await scrapeWebhook();
  const floorCalls0 = { null: floor.null.calls(), patch: floor.patch.calls() };
  const opCpu0 = cpuSecondsOf(operator.pid) ?? 0;
  const cpCpu0 = controlPlaneCpu(cluster.workDir, operator.pid);
  const t0 = performance.now();
  const samples: Record<Kind, number[]> = { plain: [], injected: [], null: [], patch: [] };
  /** Per round, each kind minus the plain create of the same round. */
  const pairs: Record<Kind, number[]> = { plain: [], injected: [], null: [], patch: [] };
  log(
    `admission: ${String(creates)} rounds of one create of each kind (${KINDS.join(', ')}), order rotating`,
  );
  for (let i = 0; i < creates; i++) {
    // Rotate the order, so that each kind is first, second, ... equally often.
    const round = {} as Record<Kind, number>;
    for (let k = 0; k < KINDS.length; k++) {
      const kind = KINDS[(i + k) % KINDS.length] ?? 'plain';
      round[kind] = await createTimed(`${KIND_PREFIX[kind]}-${String(i)}`, kind);
    }
    for (const kind of KINDS) {
      samples[kind].push(round[kind]);
      pairs[kind].push(round[kind] - round.plain);
    }
  }
  const wallSec = (performance.now() - t0) / 1000;
  const opCpu = (cpuSecondsOf(operator.pid) ?? 0) - opCpu0;
  const cpCpu = controlPlaneCpu(cluster.workDir, operator.pid) - cpCpu0;
  const apiAfter = await scrapeApiserver();
  const apiOf = (name: string): Histogram => {
    const before = apiBefore.get(name);
    const after = apiAfter.get(name);
    if (before === undefined || after === undefined) throw new Error(`no histogram for ${name}`);
    return histogramDelta(before, after);
  };
  const hook = histogramDelta(hookBefore, await scrapeWebhook());
  const floorCalls = {
    null: floor.null.calls() - floorCalls0.null,
    patch: floor.patch.calls() - floorCalls0.patch,
  };
  if (hook.count !== creates)
    failures.push(
      `admission: the webhook counted ${String(hook.count)} injections for ${String(creates)} creates`,
    );
  for (const [name, calls] of [
    [WEBHOOK_NAME, creates],
    [NULL_WEBHOOK_NAME, creates],
    [PATCH_WEBHOOK_NAME, creates],
  ] as const) {
    const counted = apiOf(name).count;
    if (counted !== calls)
      failures.push(
        `admission: the API server counted ${String(counted)} calls of ${name} for ${String(calls)} creates`,
      );
  }
  for (const kind of ['null', 'patch'] as const)
    if (floorCalls[kind] !== creates)
      failures.push(
        `admission: the ${kind} webhook answered ${String(floorCalls[kind])} reviews for ${String(creates)} creates`,
      );
  if (floor.null.refused() + floor.patch.refused() > 0)
    failures.push('admission: a floor webhook refused a request as malformed');
  await must(cluster, ['-n', APP_NS, 'delete', 'pods', '-l', 'bench=admission', '--wait=false']);
  const summary = (v: number[]): { p50Ms: number; p90Ms: number; p99Ms: number; meanMs: number } => ({
    p50Ms: percentile(v, 50) ?? NaN,
    p90Ms: percentile(v, 90) ?? NaN,
    p99Ms: percentile(v, 99) ?? NaN,
    meanMs: mean(v) ?? NaN,
  });
  const plainS = summary(samples.plain);
  const kindSummary = (kind: Kind): KindSummary => {
    const s = summary(samples[kind]);
    return {
      ...s,
      addedP50Ms: s.p50Ms - plainS.p50Ms,
      addedP99Ms: s.p99Ms - plainS.p99Ms,
      addedMeanMs: s.meanMs - plainS.meanMs,
      pairedMedianMs: percentile(pairs[kind], 50) ?? NaN,
    };
  };
  const injS = kindSummary('injected');
  const q = (h: Histogram, p: number): { value?: number; atMost?: number } => {
    const r = bucketQuantile(h, p);
    return r === undefined ? {} : { value: r.interpolated * 1000, atMost: r.atMost * 1000 };
  };
  const apiSummary = (h: Histogram): ApiserverSummary => ({
    count: h.count,
    meanMs: h.count > 0 ? (h.sum / h.count) * 1000 : undefined,
    p50Ms: q(h, 0.5).value,
    p99Ms: q(h, 0.99).value,
    p99AtMostMs: q(h, 0.99).atMost,
    fractionUnder5Ms: fractionAtOrBelow(h, 0.005),
    histogram: h,
  });
  const result: AdmissionResult = {
    creates,
    webhook: {
      count: hook.count,
      meanMs: hook.count > 0 ? (hook.sum / hook.count) * 1000 : undefined,
      p50Ms: q(hook, 0.5).value,
      p99Ms: q(hook, 0.99).value,
      p99AtMostMs: q(hook, 0.99).atMost,
      histogram: hook,
    },
    apiserver: apiSummary(apiOf(WEBHOOK_NAME)),
    client: {
      injected: injS,
      plain: plainS,
      addedP50Ms: injS.addedP50Ms,
      addedP99Ms: injS.addedP99Ms,
      addedMeanMs: injS.addedMeanMs,
      pairedMedianMs: injS.pairedMedianMs,
    },
    floor: {
      null: {
        client: kindSummary('null'),
        apiserver: apiSummary(apiOf(NULL_WEBHOOK_NAME)),
        calls: floorCalls.null,
      },
      patch: {
        client: kindSummary('patch'),
        apiserver: apiSummary(apiOf(PATCH_WEBHOOK_NAME)),
        calls: floorCalls.patch,
        patchBytes,
      },
    },
    cpu: { wallSec, operatorSec: opCpu, controlPlaneSec: cpCpu },
  };
  log(
    `admission: webhook p50 ${ms(result.webhook.p50Ms, 3)} p99 ${ms(result.webhook.p99Ms, 3)} (≤ ${ms(result.webhook.p99AtMostMs, 3)}), ` +
      `API server mean ${ms(result.apiserver.meanMs)} p99 ≤ ${ms(result.apiserver.p99AtMostMs)}; client p50 ` +
      `${ms(injS.p50Ms)} vs ${ms(plainS.p50Ms)}, p99 ${ms(injS.p99Ms)} vs ${ms(plainS.p99Ms)}; added p50/p99: ` +
      `null webhook ${ms(result.floor.null.client.addedP50Ms)}/${ms(result.floor.null.client.addedP99Ms)}, ` +
      `same patch ${ms(result.floor.patch.client.addedP50Ms)}/${ms(result.floor.patch.client.addedP99Ms)}`,
  );
  return result;
}
