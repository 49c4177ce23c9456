/**
 * Step 2 of `npm run bench:broker`: revocation latency. `streams` pods attested, each with a WatchRevocations
 * stream; each of `rounds` rounds creates a grant, waits until it is Active, releases once per pod, deletes the grant
 * through the API and times, per stream, the arrival of its grant-deleted revocation from just before the delete.
 */
import type { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { createGrant, deleteGrant, grantBody } from '../../test/harness/objects.ts';
import { eventually } from '../../test/harness/operator.ts';
import {
  attestedWorkload,
  watch,
  type BrokerEndpoint,
  type Watch,
  type Workload,
} from '../../test/harness/workload.ts';
import { percentile } from '../report.ts';
import type { RevocationResult } from './report.ts';
import {
  APP_NS,
  ARTIFACT,
  firstRelease,
  log,
  REVOCATION_TIMEOUT_MS,
  SERVICE_ACCOUNT,
  waitActive,
} from './shared.ts';

/**
 * Measures revocation latency on the operator behind `endpoint`. The attested pods go to `workloads` and their
 * streams to `watches` as they open, so that the caller closes them whatever happens.
 */
export async function measureRevocation(options: {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly endpoint: BrokerEndpoint;
  readonly streamCount: number;
  readonly rounds: number;
  readonly workloads: Workload[];
  readonly watches: Watch[];
  readonly failures: string[];
}): Promise<RevocationResult> {
  const { core, custom, endpoint, streamCount, rounds, workloads, watches, failures } = options;
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
    await waitActive(custom, name, 20);
    await Promise.all(watchers.map((w) => firstRelease(w.client)));
    const t0 = Date.now();
    await deleteGrant(custom, APP_NS, name);
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
  if (missed > 0)
    failures.push(
      `revocation: ${String(missed)} of ${String(watches.length * rounds)} (stream, round) samples missed`,
    );
  return {
    streams: watches.length,
    rounds,
    samples: samples.length,
    missed,
    p50Ms: percentile(samples, 50),
    p99Ms: percentile(samples, 99),
    maxMs: percentile(samples, 100),
  };
}
