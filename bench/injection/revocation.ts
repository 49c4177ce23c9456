/**
 * Revocation (issue 8): `rounds` rounds of grant → pod Ready → grant deleted; the sidecar's "wiped" log timestamp
 * minus the time just before the delete call, confirmed by `kubectl exec ls` in the app container (also timed).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/harness/cluster.ts';
import { must } from '../../test/harness/kubectl.ts';
import { createGrant, deleteGrant, getGrant, grantBody } from '../../test/harness/objects.ts';
import { eventually } from '../../test/harness/operator.ts';
import { execInApp, injectedPod, type Stack } from '../../test/harness/stack.ts';
import { ms, percentile } from '../report.ts';
import { log, ready, REVOKE_NS, SA, sidecarLog, SMALL, SMALL_MOUNT } from './shared.ts';

export interface RevocationRound {
  readonly round: number;
  /** Delete call → the sidecar's "wiped" log line. */
  readonly wipeLoggedMs: number;
  /** Delete call → the sidecar's "access ended; wiping" log line. */
  readonly revokeLoggedMs: number;
  /** Delete call → the first `kubectl exec ls` that shows no file (each exec takes ~100 ms). */
  readonly execConfirmedMs: number;
  readonly notReadyMs: number;
}

export interface RevocationResult {
  readonly rounds: readonly RevocationRound[];
  readonly wipeP50Ms: number | undefined;
  readonly wipeP99Ms: number | undefined;
  readonly wipeMaxMs: number | undefined;
  readonly execP50Ms: number | undefined;
  readonly execP99Ms: number | undefined;
  readonly execMaxMs: number | undefined;
}

export async function measureRevocation(
  stack: Stack,
  cluster: Cluster,
  failures: string[],
  rounds: number,
): Promise<RevocationResult> {
  const { core, custom } = stack;
  const exec = async (pod: string, command: string): Promise<string> =>
    (await execInApp(cluster, REVOKE_NS, pod, command)).out;
  const out: RevocationRound[] = [];
  for (let round = 1; round <= rounds; round++) {
    const name = `revoke-${String(round).padStart(3, '0')}`;
    await createGrant(
      custom,
      REVOKE_NS,
      grantBody(name, SMALL, { subjects: [{ namespace: REVOKE_NS, serviceAccount: SA }] }),
    );
    await eventually(
      `grant ${name} Active`,
      async () => ((await getGrant(custom, REVOKE_NS, name)).status?.phase === 'Active' ? true : undefined),
      20_000,
      50,
    );
    await core.createNamespacedPod({
      namespace: REVOKE_NS,
      body: injectedPod({ name, artifacts: `${SMALL}@v1:${SMALL_MOUNT}`, script: 'sleep 3600' }),
    });
    await eventually(
      `${name} Ready`,
      async () => (ready(await core.readNamespacedPod({ namespace: REVOKE_NS, name })) ? true : undefined),
      120_000,
      100,
    );
    const before = await exec(name, `ls -A ${SMALL_MOUNT}`);
    if (!before.includes('config.json'))
      throw new Error(`${name}: the files are not there before the revocation: ${before}`);
    const t0 = Date.now();
    await deleteGrant(custom, REVOKE_NS, name);
    let execConfirmedMs = NaN;
    const deadline = t0 + 10_000;
    while (Date.now() < deadline) {
      const listing = await exec(name, `ls -A ${SMALL_MOUNT} | wc -l`);
      if (listing.trim() === '0') {
        execConfirmedMs = Date.now() - t0;
        break;
      }
    }
    let notReadyMs = NaN;
    while (Date.now() < deadline) {
      if (!ready(await core.readNamespacedPod({ namespace: REVOKE_NS, name }))) {
        notReadyMs = Date.now() - t0;
        break;
      }
      await sleep(50);
    }
    const lines = await sidecarLog(cluster, REVOKE_NS, name);
    const wiped = lines.find((l) => l.message === 'wiped' && l.at >= t0 - 1000);
    const revoked = lines.find((l) => l.message === 'access ended; wiping' && l.at >= t0 - 1000);
    if (Number.isNaN(execConfirmedMs))
      failures.push(`revocation round ${String(round)}: files still there after 10 s`);
    if (wiped === undefined || revoked === undefined)
      failures.push(`revocation round ${String(round)}: the sidecar logged no wipe`);
    if (Number.isNaN(notReadyMs)) failures.push(`revocation round ${String(round)}: the pod stayed Ready`);
    const r: RevocationRound = {
      round,
      wipeLoggedMs: wiped === undefined ? NaN : wiped.at - t0,
      revokeLoggedMs: revoked === undefined ? NaN : revoked.at - t0,
      execConfirmedMs,
      notReadyMs,
    };
    out.push(r);
    log(
      `revocation round ${String(round)}/${String(rounds)}: wiped (log) ${ms(r.wipeLoggedMs, 0)}, confirmed by exec ` +
        `${ms(r.execConfirmedMs, 0)}, not Ready ${ms(r.notReadyMs, 0)}`,
    );
    await must(cluster, ['-n', REVOKE_NS, 'delete', 'pod', name, '--wait=false']);
  }
  const wipe = out.map((r) => r.wipeLoggedMs).filter((v) => !Number.isNaN(v));
  const execs = out.map((r) => r.execConfirmedMs).filter((v) => !Number.isNaN(v));
  return {
    rounds: out,
    wipeP50Ms: percentile(wipe, 50),
    wipeP99Ms: percentile(wipe, 99),
    wipeMaxMs: percentile(wipe, 100),
    execP50Ms: percentile(execs, 50),
    execP99Ms: percentile(execs, 99),
    execMaxMs: percentile(execs, 100),
  };
}
