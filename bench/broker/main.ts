/**
 * `npm run bench:broker`: the key broker against the targets of issue 7, side by side with the OpenBao 2.6.2 anchor
 * measured on this machine. It starts its own control plane (no node), the operator as a real process with its
 * least-privilege RBAC (the broker runs inside it), a sealed internal artifact with a read grant, and one attested
 * pod whose certificate, key and the operator CA bundle go to a temporary directory for ghz. Then:
 *   1. ReleaseKey over mutual TLS with ghz (./load.ts): a discarded warm-up, then a fixed rate, then unlimited;
 *      every call must be OK, and the audit log must then hold a durable key-release entry per OK call.
 *   2. Revocation latency (./revocation.ts), on the default operator.
 *   3. Step 1 again on a fresh operator with `--dek-cache-ttl=0s`, so that every release does a KMS unwrap, and
 *      once more with the audit log on tmpfs (a reference, not a target run).
 *
 *   node bench/broker/main.ts [--duration 15] [--warmup 3] [--rps 500] [--fixed-concurrency 8] [--concurrency 50]
 *                             [--connections 4] [--streams 50] [--rounds 20]
 *                             [--operator-node-args="--cpu-prof --cpu-prof-dir=/tmp/p"] [--json out.json]
 *
 * Options: ./args.ts; the report: ./report.ts. Exit code 1 when a run is invalid (a failed call, a missing audit
 * entry, a missed revocation); a missed target is reported as FAIL in the table and does not change the exit code.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster } from '../../test/harness/cluster.ts';
import { must } from '../../test/harness/kubectl.ts';
import {
  appendVersion,
  artifactBody,
  createArtifact,
  createGrant,
  getArtifact,
  grantBody,
  sealedVersion,
} from '../../test/harness/objects.ts';
import {
  clients,
  eventually,
  installCrds,
  installOperatorIdentity,
  startOperator,
  type OperatorProcess,
} from '../../test/harness/operator.ts';
import {
  attestedWorkload,
  mtlsClient,
  useOperatorInjection,
  type BrokerEndpoint,
  type Watch,
  type Workload,
} from '../../test/harness/workload.ts';
import { measureFsyncFloor } from '../fsync-floor.ts';
import { ensureGhz } from '../ghz.ts';
import { machine as thisMachine, publish } from '../report.ts';
import { parseBrokerArgs, type BrokerOptions } from './args.ts';
import { measureConfig, type LoadContext } from './load.ts';
import { brokerReport, type BrokerResults, type ConfigResult, type RevocationResult } from './report.ts';
import { measureRevocation } from './revocation.ts';
import {
  APP_NS,
  ARTIFACT,
  log,
  OPERATOR_NS,
  REQUEST,
  SERVER_NAME,
  SERVICE_ACCOUNT,
  waitActive,
} from './shared.ts';

/** Runs the three steps on a cluster of its own; every failure is in `failures`, never thrown. */
export async function runBrokerBench(options: BrokerOptions): Promise<BrokerResults> {
  const started = Date.now();
  // Measured alone, before anything else runs: what one durable audit append costs on this disk.
  const fsyncFloor = await measureFsyncFloor(tmpdir());
  const cluster = await startCluster({ log });
  const failures: string[] = [];
  const machine = thisMachine();
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
      const op = await startOperator({
        namespace: OPERATOR_NS,
        kubeconfig,
        identity: `bench-broker-${String(generation++)}`,
        args: ['--log-level=info', ...extraArgs],
        nodeArgs: options.operatorNodeArgs,
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
    await waitActive(custom, 'bench-readers');

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
    const context = (): LoadContext => ({
      ghz,
      op,
      endpoint,
      workDir: cluster.workDir,
      files,
      options: options.run,
      failures,
    });

    configs.push(await measureConfig(context(), '5s (default)', client.client));

    revocation = await measureRevocation({
      core,
      custom,
      endpoint,
      streamCount: options.run.streamCount,
      rounds: options.run.rounds,
      workloads,
      watches,
      failures,
    });

    // Every release unwraps through the KMS: a fresh operator with the DEK cache off.
    await op.stop();
    ({ op, endpoint } = await start(['--dek-cache-ttl=0s']));
    const fresh = mtlsClient(endpoint, { certPem: client.certPem, keyPem: client.keyPem });
    try {
      configs.push(await measureConfig(context(), '0s (off)', fresh));
    } finally {
      fresh.close();
    }
    await op.stop();

    // The same broker with its audit log on tmpfs, where fdatasync costs nothing: what the disk adds, and the
    // configuration closest to the anchor's file audit device (which does not fsync). Not a target run.
    ({ op, endpoint } = await start([], mkdtempSync('/dev/shm/strongroom-audit-bench-')));
    const shm = mtlsClient(endpoint, { certPem: client.certPem, keyPem: client.keyPem });
    try {
      configs.push(await measureConfig(context(), '5s (default)', shm, 'tmpfs'));
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
  return {
    machine,
    options: options.run,
    configs,
    revocation,
    fsyncFloor,
    failures,
    totalSec: Math.round((Date.now() - started) / 1000),
  };
}

if (import.meta.main) {
  const options = parseBrokerArgs(process.argv.slice(2));
  const results = await runBrokerBench(options);
  publish(results, brokerReport(results), options.json);
}
