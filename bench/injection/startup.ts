/**
 * Start-up (issue 8): a pod asking for a `size` artifact (in `files` shards) on the node; from the sidecar's process
 * start (/proc start time of its `node`, 10 ms resolution; the kubelet's second-resolution `startedAt` is reported
 * too) to the startup probe passing (the sidecar's `started: true` in the pod status, polled every 50 ms; the
 * sidecar's own "started" log line is reported too), against the bare `decryptDirectory` of the same version into
 * tmpfs in this process, with no pool and with a warm pool (bench/crypto/; the sidecar decrypts through a pool).
 * Each run also starts a null sidecar (./floor.ts: the injected sidecar's container running `node -e` with an HTTP
 * server that answers every probe) in a pod that is not injected, measured the same way: the start-up floor.
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { V1Container } from '@kubernetes/client-node';
import { decryptDirectory, SegmentPool } from '../../core/envelope/index.ts';
import { ANNOTATION_INJECTED, SIDECAR_CONTAINER } from '../../core/injection/contract.ts';
import type { KeyBrokerClient } from '../../proto/keybroker.ts';
import type { Cluster, Node } from '../../test/harness/cluster.ts';
import { must } from '../../test/harness/kubectl.ts';
import { createGrant, getGrant, grantBody } from '../../test/harness/objects.ts';
import { eventually } from '../../test/harness/operator.ts';
import { injectedPod, OPERATOR_NAMESPACE, publishSample, type Stack } from '../../test/harness/stack.ts';
import {
  asInjected,
  channelOptions,
  keyAndCsr,
  keyBroker,
  podToken,
  release,
  useOperatorInjection,
} from '../../test/harness/workload.ts';
import { writeRandomFile } from '../files.ts';
import { MiB, sec } from '../report.ts';
import { NULL_SIDECAR_MARKER, nullSidecarContainer, nullSidecarListening } from './floor.ts';
import {
  APP_NS,
  BIG,
  BIG_MOUNT,
  BROKER_SERVER_NAME,
  injected,
  log,
  NO_SCHEDULER,
  SA,
  sidecarLog,
  sidecarProcess,
} from './shared.ts';

export interface StartupRun {
  readonly run: number;
  readonly bareNoPoolMs: number;
  /** Hashing the bare decrypt's output as the sidecar's verify step does (not part of the bare reference). */
  readonly bareRehashMs: number;
  readonly barePoolMs: number;
  /** Sidecar process start (/proc) → `started: true` seen in the pod status. */
  readonly processToProbeMs: number;
  /** Kubelet `state.running.startedAt` (whole seconds) → `started: true` seen. */
  readonly kubeletStartedAtToProbeMs: number;
  /** Sidecar process start → its "started" log line (everything decrypted and verified). */
  readonly processToLoggedStartedMs: number;
  /** Sidecar's first log line → its "started" log line. */
  readonly firstLogToLoggedStartedMs: number;
  /** Sidecar process start → its first log line (Node start-up and module loading). */
  readonly processToFirstLogMs: number;
  /** The "materialized" line's tookMs: decrypt, re-hash, install. */
  readonly materializeMs: number;
  /** Sidecar "started" log line → `started: true` seen (the probe period and the status update). */
  readonly loggedStartedToProbeMs: number;
  /** The null sidecar (./floor.ts), same run: process start (/proc) → `started: true` seen. */
  readonly nullProcessToProbeMs: number;
  /** … process start → its HTTP server listening (its own log line): Node's start-up. */
  readonly nullProcessToListeningMs: number;
  /** … process start → Node's `performance.timeOrigin` (exec and the dynamic loader, before Node's own start). */
  readonly nullProcessToTimeOriginMs: number;
  /** … listening → `started: true` seen: the kubelet's probe period and the status update. */
  readonly nullListeningToProbeMs: number;
}

export interface StartupResult {
  readonly sizeBytes: number;
  readonly files: number;
  readonly poolWorkers: number;
  readonly runs: readonly StartupRun[];
}

/** Attests a Pending pod of `SA` in `namespace` at the broker on the pod bridge and returns an mTLS client. */
async function benchClient(stack: Stack, node: Node, namespace: string): Promise<KeyBrokerClient> {
  const ports = await stack.operator.brokerPorts();
  const ca = await stack.core.readNamespacedSecret({ name: 'strongroom-ca', namespace: OPERATOR_NAMESPACE });
  const caPem = Buffer.from(ca.data?.['ca.crt'] ?? '', 'base64');
  const endpoint = { ...ports, caPem: caPem.toString('utf8'), serverName: BROKER_SERVER_NAME };
  // A Pending pod (no scheduler runs for it) that satisfies "restricted", not opted in: only its identity is used.
  // It must look injected with the stack's sidecar image, or Attest refuses it (pod-not-injected).
  await useOperatorInjection(stack.core, OPERATOR_NAMESPACE, {
    image: stack.image,
    brokerAddress: `${node.network.gateway}:${String(ports.brokerPort)}`,
    attestAddress: `${node.network.gateway}:${String(ports.attestPort)}`,
  });
  const body = asInjected(
    injectedPod({ name: 'bench-decrypt-client', serviceAccount: SA, script: 'sleep 3600' }),
  );
  if (body.metadata) body.metadata.labels = {};
  if (body.spec) body.spec.schedulerName = NO_SCHEDULER;
  const pod = await stack.core.createNamespacedPod({ namespace, body });
  const token = await podToken(stack.core, pod);
  const { keyPem, csrPem } = keyAndCsr();
  const attester = new keyBroker.Client(
    `${node.network.gateway}:${String(ports.attestPort)}`,
    grpc.credentials.createSsl(caPem),
    channelOptions(endpoint),
  );
  const certPem = await new Promise<string>((resolve, reject) => {
    attester.Attest(
      { serviceAccountToken: token, csrPem },
      { deadline: Date.now() + 30_000 },
      (error, response) => {
        attester.close();
        if (error) reject(new Error(`attest failed: ${error.details}`, { cause: error }));
        else resolve(response?.certificateChainPem ?? '');
      },
    );
  });
  return new keyBroker.Client(
    `${node.network.gateway}:${String(ports.brokerPort)}`,
    grpc.credentials.createSsl(caPem, Buffer.from(keyPem), Buffer.from(certPem)),
    channelOptions(endpoint),
  );
}

/** The fields of a {@link StartupRun} that come from the null sidecar. */
type NullRun = Pick<
  StartupRun,
  'nullProcessToProbeMs' | 'nullProcessToListeningMs' | 'nullProcessToTimeOriginMs' | 'nullListeningToProbeMs'
>;

/**
 * Polls the pod every 50 ms until its init container `container` reports `started: true`, looking for its process
 * on the host (command line containing `marker`) meanwhile.
 */
async function awaitSidecarStarted(
  core: Stack['core'],
  name: string,
  uid: string,
  container: string,
  marker: string,
): Promise<{
  proc: { pid: number; startedAt: number };
  probeSeenAt: number;
  kubeletStartedAt: number | undefined;
}> {
  let proc: { pid: number; startedAt: number } | undefined;
  let probeSeenAt: number | undefined;
  let kubeletStartedAt: number | undefined;
  const deadline = Date.now() + 300_000;
  while (probeSeenAt === undefined) {
    if (Date.now() > deadline) throw new Error(`${name}: the startup probe did not pass within 300 s`);
    proc ??= sidecarProcess(uid, marker);
    const pod = await core.readNamespacedPod({ namespace: APP_NS, name });
    const status = pod.status?.initContainerStatuses?.find((c) => c.name === container);
    if (status?.started === true) {
      probeSeenAt = Date.now();
      const startedAt = status.state?.running?.startedAt;
      kubeletStartedAt = startedAt === undefined ? undefined : new Date(startedAt).getTime();
    } else await sleep(50);
  }
  proc ??= sidecarProcess(uid, marker);
  if (proc === undefined) throw new Error(`${name}: the sidecar process was never seen on the host`);
  return { proc, probeSeenAt, kubeletStartedAt };
}

/** Deletes a pod in APP_NS and waits until it is gone. */
async function deleteAndWait(core: Stack['core'], name: string): Promise<void> {
  await core.deleteNamespacedPod({ namespace: APP_NS, name, gracePeriodSeconds: 5 });
  await eventually(
    `${name} gone`,
    async () => {
      try {
        await core.readNamespacedPod({ namespace: APP_NS, name });
        return undefined;
      } catch {
        return true;
      }
    },
    60_000,
    200,
  );
}

/**
 * The start-up floor: a pod in the restricted namespace, not opted in (nothing is injected), whose native sidecar
 * is the null sidecar (./floor.ts: the injected sidecar's image, probes, security context and
 * resources, running an HTTP server that answers at once). Measured exactly as the real sidecar.
 */
async function measureNullSidecar(
  stack: Stack,
  cluster: Cluster,
  sidecar: V1Container,
  run: number,
): Promise<NullRun> {
  const name = `null-sidecar-${String(run)}`;
  const container = nullSidecarContainer(sidecar);
  const body = injectedPod({ name, script: 'sleep 3600' });
  if (body.metadata) body.metadata.labels = { bench: 'null-sidecar' };
  if (body.spec) body.spec.initContainers = [container];
  const created = await stack.core.createNamespacedPod({ namespace: APP_NS, body });
  if (injected(created) || created.metadata?.annotations?.[ANNOTATION_INJECTED] !== undefined)
    throw new Error(`${name}: the null sidecar's pod was injected`);
  const { proc, probeSeenAt } = await awaitSidecarStarted(
    stack.core,
    name,
    created.metadata?.uid ?? '',
    container.name,
    NULL_SIDECAR_MARKER,
  );
  const listening = nullSidecarListening(
    await must(cluster, ['-n', APP_NS, 'logs', name, '-c', container.name]),
  );
  if (listening === undefined) throw new Error(`${name}: the null sidecar did not log that it listens`);
  await deleteAndWait(stack.core, name);
  return {
    nullProcessToProbeMs: probeSeenAt - proc.startedAt,
    nullProcessToListeningMs: listening.listeningAt - proc.startedAt,
    nullProcessToTimeOriginMs: listening.timeOrigin - proc.startedAt,
    nullListeningToProbeMs: probeSeenAt - listening.listeningAt,
  };
}

export async function measureStartup(
  stack: Stack,
  node: Node,
  cluster: Cluster,
  failures: string[],
  sidecar: V1Container,
  options: { readonly size: number; readonly shardCount: number; readonly runs: number },
): Promise<StartupResult> {
  const { size, shardCount, runs } = options;
  const { core, custom } = stack;
  // The sidecar's entry point (SIDECAR_COMMAND's script, as the operator injects it) names its process on the host.
  const sidecarScript = sidecar.command?.at(-1);
  if (sidecarScript === undefined) throw new Error('the injected sidecar has no command');
  const source = join(cluster.workDir, 'plaintext', APP_NS, BIG, 'v1');
  mkdirSync(source, { recursive: true });
  log(
    `start-up: writing ${String(shardCount)} random shards, ${(size / MiB).toFixed(0)} MiB in all, and publishing`,
  );
  const shard = Math.floor(size / shardCount);
  for (let i = 0; i < shardCount; i++) {
    const bytes = i === shardCount - 1 ? size - shard * (shardCount - 1) : shard;
    await writeRandomFile(
      join(source, `model-${String(i + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.bin`),
      bytes,
      { mode: 0o644 },
    );
  }
  const published = await publishSample(stack, APP_NS, BIG, 'v1', {
    'config.json': JSON.stringify({ shards: shardCount }),
  });
  const artifactUid = published.artifact.metadata.uid ?? '';
  rmSync(source, { recursive: true, force: true });
  await createGrant(
    custom,
    APP_NS,
    grantBody('big-readers', BIG, { subjects: [{ namespace: APP_NS, serviceAccount: SA }] }),
  );
  await eventually('grant big-readers Active', async () =>
    (await getGrant(custom, APP_NS, 'big-readers')).status?.phase === 'Active' ? true : undefined,
  );
  const ciphertext = join(stack.storageDir(APP_NS), BIG, 'v1');
  const client = await benchClient(stack, node, APP_NS);
  const released = await eventually('a ReleaseKey for the bare decrypt', async () => {
    const r = await release(client, APP_NS, BIG, 'v1');
    return 'ok' in r ? r.ok : undefined;
  });
  client.close();
  const dek = Buffer.from(released.dek);
  released.dek.fill(0);
  const context = { artifactUid, artifactName: BIG, version: 'v1' };
  const shm = mkdtempSync('/dev/shm/strongroom-bench-injection-');
  const pool = new SegmentPool();
  const runsOut: StartupRun[] = [];
  try {
    /**
     * Decrypts the version into tmpfs; with `rehash`, then also hashes every file as the sidecar's verify step does
     * (a read stream through SHA-256 per file, 4 at a time) and checks it against the manifest.
     */
    const bare = async (
      label: string,
      withPool: boolean,
      rehash = false,
    ): Promise<{ decryptMs: number; rehashMs: number }> => {
      const out = join(shm, `out-${label}`);
      const t0 = performance.now();
      const manifest = await decryptDirectory(ciphertext, out, {
        dek,
        keyId: '',
        context,
        ...(withPool ? { pool } : {}),
      });
      const decryptMs = performance.now() - t0;
      let rehashMs = NaN;
      if (rehash) {
        const t1 = performance.now();
        const files = [...manifest.files];
        const worker = async (): Promise<void> => {
          for (let f = files.shift(); f !== undefined; f = files.shift()) {
            const hash = createHash('sha256');
            await pipeline(createReadStream(join(out, ...f.path.split('/'))), hash);
            if (`sha256:${hash.digest('hex')}` !== f.sha256)
              failures.push(`start-up: ${f.path} does not match the manifest after the bare decrypt`);
          }
        };
        await Promise.all([worker(), worker(), worker(), worker()]);
        rehashMs = performance.now() - t1;
      }
      const bytes = manifest.files.reduce((s, f) => s + f.size, 0);
      await rm(out, { recursive: true, force: true });
      if (bytes < size)
        failures.push(`start-up: the bare decrypt gave ${String(bytes)} bytes for ${String(size)}`);
      return { decryptMs, rehashMs };
    };
    // Warm: the pool's workers and the page cache of the ciphertext (untimed).
    await bare('warm', true);
    for (let run = 1; run <= runs; run++) {
      const noPool = await bare(`nopool-${String(run)}`, false, true);
      const bareNoPoolMs = noPool.decryptMs;
      const bareRehashMs = noPool.rehashMs;
      const barePoolMs = (await bare(`pool-${String(run)}`, true)).decryptMs;
      log(
        `start-up run ${String(run)}: bare decryptDirectory ${sec(bareNoPoolMs)} (no pool; re-hashing it as the ` +
          `sidecar verifies: ${sec(bareRehashMs)}), ${sec(barePoolMs)} (pool of ${String(pool.size)})`,
      );
      await sleep(500);
      // The null sidecar before the real one in odd runs, after it in even ones.
      let nullRun: NullRun | undefined;
      if (run % 2 === 1) nullRun = await measureNullSidecar(stack, cluster, sidecar, run);
      const name = `big-${String(run)}`;
      const created = await core.createNamespacedPod({
        namespace: APP_NS,
        body: injectedPod({ name, artifacts: `${BIG}@v1:${BIG_MOUNT}`, script: 'sleep 3600' }),
      });
      const { proc, probeSeenAt, kubeletStartedAt } = await awaitSidecarStarted(
        core,
        name,
        created.metadata?.uid ?? '',
        SIDECAR_CONTAINER,
        sidecarScript,
      );
      const lines = await sidecarLog(cluster, APP_NS, name);
      const first = lines[0];
      const started = lines.find((l) => l.message.startsWith('every artifact is decrypted and verified'));
      const materialized = lines.find((l) => l.message === 'materialized');
      if (first === undefined || started === undefined || materialized === undefined)
        throw new Error(`${name}: the sidecar did not log its start-up (${String(lines.length)} lines)`);
      const r: Omit<StartupRun, keyof NullRun> = {
        run,
        bareNoPoolMs,
        bareRehashMs,
        barePoolMs,
        processToProbeMs: probeSeenAt - proc.startedAt,
        kubeletStartedAtToProbeMs: kubeletStartedAt === undefined ? NaN : probeSeenAt - kubeletStartedAt,
        processToLoggedStartedMs: started.at - proc.startedAt,
        firstLogToLoggedStartedMs: started.at - first.at,
        processToFirstLogMs: first.at - proc.startedAt,
        materializeMs: Number(materialized.fields.tookMs),
        loggedStartedToProbeMs: probeSeenAt - started.at,
      };
      log(
        `start-up run ${String(run)}: process start → probe passing ${sec(r.processToProbeMs)} ` +
          `(→ first log ${sec(r.processToFirstLogMs)}, materialize ${sec(r.materializeMs)}, → "started" log ` +
          `${sec(r.processToLoggedStartedMs)}, then probe seen +${sec(r.loggedStartedToProbeMs)}); kubelet startedAt → probe ` +
          sec(r.kubeletStartedAtToProbeMs),
      );
      // Delete and wait until it is gone: its 2 GiB memory volume must be freed before the next run.
      await deleteAndWait(core, name);
      if (run % 2 === 0) nullRun = await measureNullSidecar(stack, cluster, sidecar, run);
      if (nullRun === undefined) throw new Error(`start-up run ${String(run)}: no null sidecar measured`);
      runsOut.push({ ...r, ...nullRun });
      log(
        `start-up run ${String(run)}: null sidecar: process start → probe passing ${sec(nullRun.nullProcessToProbeMs)} ` +
          `(→ Node's timeOrigin ${sec(nullRun.nullProcessToTimeOriginMs)}, → listening ` +
          `${sec(nullRun.nullProcessToListeningMs)}, then probe seen +${sec(nullRun.nullListeningToProbeMs)})`,
      );
    }
  } finally {
    dek.fill(0);
    await pool.close();
    rmSync(shm, { recursive: true, force: true });
  }
  return { sizeBytes: size, files: shardCount + 1, poolWorkers: availableParallelism(), runs: runsOut };
}
