/**
 * Issue 16, installed as users install it: the Helm chart (charts/strongroom) on the harness's real node, nothing on
 * the host but the cluster itself. The operator runs as the chart's StatefulSet (two replicas, an audit log volume
 * each), the API server calls the webhook through its Service, sidecars reach the broker through the broker Service
 * by DNS, and the people act with their own credentials (test/governance/people.ts): alice requests, bob approves,
 * frank publishes, erin revokes, dave labels the environment. Images are built locally and never pulled.
 *
 * The tests share one Helm 3 release and run in order: install, the mission, leader failover, upgrade, uninstall;
 * then the same install with Helm 4 in fresh namespaces.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_ARTIFACTS, LABEL_INJECT, PROBE_PORT } from '../../core/injection/contract.ts';
import { REVOKED_ANNOTATION } from '../../core/policy/grant.ts';
import { OPT_IN_POLICY_NAME, WEBHOOK_CONFIGURATION_NAME } from '../../operator/webhook/configuration.ts';
import { POLICY_NAMES } from '../../core/governance/admission-policies.ts';
import { attachNode, startCluster, type Cluster, type Node } from '../cluster/cluster.ts';
import { farewell, meetThePeople, type Name, type Person } from '../governance/people.ts';
import {
  auditLines,
  auditVerifierKey,
  auditVerify,
  createAuditVolumes,
  helm,
  helmBinary,
  helmDeploy,
  importStrongroomImage,
  isReady,
  lease,
  modelsNamespace,
  publishVersion,
  replicaAuditLogs,
  replicaLogs,
  replicaPods,
  startupSeconds,
  waitForReplicas,
  type AuditVolumes,
  type ImportedImage,
} from '../harness/chart.ts';
import { kubectl, must, run, type ClusterInfo } from '../harness/kubectl.ts';
import { clients, eventually, root } from '../harness/operator.ts';
import { artifactBody, getArtifact, getGrant, grantBody } from '../harness/objects.ts';
import { sample, scrape } from '../harness/metrics.ts';
import { execInApp, injectedPod } from '../harness/stack.ts';

const RELEASE = 'strongroom';
const OP_NS = 'strongroom-chart';
const APP = 'chart-ml';
const OP_NS4 = 'strongroom-helm4';
const APP4 = 'chart-ml4';
const ARTIFACT = 'resnet50';
const MOUNT = '/models/resnet50';
const FILES = {
  'config.json': JSON.stringify({ arch: 'resnet50', classes: 1000 }),
  'weights/layer1.bin': Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256)),
  'README with space.txt': 'a sample model\n',
};
const expectedSums = Object.entries(FILES)
  .map(([path, content]) => `${createHash('sha256').update(content).digest('hex')}  ./${path}`)
  .sort();
/** Lists every file with its SHA-256, then waits. */
const SHOW_AND_WAIT = `cd ${MOUNT} && find . -type f | sort | while read -r f; do sha256sum "$f"; done; echo END-OF-LIST; sleep 3600`;

let cluster: ClusterInfo;
let node: Node;
let image: ImportedImage;
let people: Record<Name, Person>;
const volumes: AuditVolumes[] = [];
const admin = (): ReturnType<typeof clients> => clients(cluster.kubeconfig);
/** Seconds from pod creation to Ready of every operator replica seen starting, for docs/images.md. */
const startups: number[] = [];
const log = (line: string): void => {
  process.stderr.write(`[chart] ${line}\n`);
};

/** The values every install of these tests uses: the local image (never pulled) and the audit volumes' class. */
function baseValues(img: ImportedImage, storageClass: string): Record<string, unknown> {
  return {
    image: { repository: img.repository, tag: img.tag, pullPolicy: 'Never' },
    auditLog: { persistence: { storageClassName: storageClass, size: '1Gi' } },
    // confidential grants need two approvals here (the default is one): bob and carol both sign off.
    governance: { classifications: { confidential: { approvals: 2 } } },
  };
}

async function mustAs(person: Person, args: readonly string[], input?: string): Promise<string> {
  const r = await person.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} as ${person.name} failed: ${r.stderr}`);
  return r.stdout;
}

/** `strongroom approve NAME -n NS` (the kubectl plugin's command) as `person`. */
function approveAs(person: Person, namespace: string, grant: string) {
  return run(process.execPath, [join(root, 'cli', 'strongroom.ts'), 'approve', grant, '-n', namespace], {
    env: { ...process.env, KUBECONFIG: person.kubeconfig },
    timeoutMs: 60_000,
  });
}

async function podAs(person: Person, namespace: string, pod: V1Pod): Promise<void> {
  await mustAs(person, ['-n', namespace, 'create', '-f', '-'], JSON.stringify(pod));
}

async function readPod(namespace: string, name: string): Promise<V1Pod> {
  return admin().core.readNamespacedPod({ namespace, name });
}

async function waitPodReady(namespace: string, name: string, timeoutMs = 90_000): Promise<V1Pod> {
  try {
    return await eventually(
      `${namespace}/${name} Ready`,
      async () => {
        const p = await readPod(namespace, name);
        return isReady(p) ? p : undefined;
      },
      timeoutMs,
      200,
    );
  } catch (error) {
    const describe = await kubectl(cluster, ['-n', namespace, 'describe', 'pod', name]);
    const sidecar = await kubectl(cluster, ['-n', namespace, 'logs', name, '-c', 'strongroom-sidecar']);
    throw new Error(
      `${(error as Error).message}\n${describe.stdout.slice(-3000)}\n${sidecar.stdout.slice(-3000)}`,
      { cause: error },
    );
  }
}

/** The SHA-256 lines the app printed for the files it found at the mount. */
async function sumsSeen(namespace: string, pod: string): Promise<string[]> {
  const out = await eventually('the app to list the files', async () => {
    const r = await kubectl(cluster, ['-n', namespace, 'logs', pod, '-c', 'app']);
    return r.stdout.includes('END-OF-LIST') ? r.stdout : undefined;
  });
  return out
    .split('\n')
    .filter((l) => /^[0-9a-f]{64} {2}/.test(l))
    .sort();
}

/** Reads the files as `person` in a new pod of service account `sa` and checks they are byte-identical. */
async function readerReads(namespace: string, name: string, sa = 'trainer'): Promise<V1Pod> {
  await podAs(
    people.alice,
    namespace,
    injectedPod({ name, serviceAccount: sa, artifacts: `${ARTIFACT}@v1:${MOUNT}`, script: SHOW_AND_WAIT }),
  );
  const pod = await waitPodReady(namespace, name);
  expect(await sumsSeen(namespace, name)).toEqual(expectedSums);
  return pod;
}

/** The webhook configuration's caBundle once the operator has filled it; fails with the replicas' logs. */
async function filledCaBundle(namespace: string): Promise<string> {
  try {
    return await eventually(
      'the operator to fill the webhook caBundle',
      async () => {
        const got = await must(cluster, [
          'get',
          'mutatingwebhookconfiguration',
          WEBHOOK_CONFIGURATION_NAME,
          '-o',
          'jsonpath={.webhooks[0].clientConfig.caBundle}',
        ]);
        return got.trim() === '' ? undefined : got.trim();
      },
      60_000,
      250,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await replicaLogs(cluster, namespace, 60)}`, {
      cause: error,
    });
  }
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Prepares an application namespace, an artifact with a published v1 and an Active grant, as the people do it. */
async function missionSetup(namespace: string, grantName: string): Promise<{ storageDir: string }> {
  const storageDir = await modelsNamespace(cluster, node, namespace, ['trainer', 'intern', 'evaluator']);
  people = await meetThePeople(cluster, [namespace]);
  // The environment label is the platform admins' to set (the governance policy refuses anyone else).
  const byAlice = await people.alice.kubectl([
    'label',
    'namespace',
    namespace,
    'strongroom.dev/environment=dev',
  ]);
  expect(byAlice.code).not.toBe(0);
  expect(byAlice.stderr).toContain('strongroom.dev/environment');
  await mustAs(people.dave, ['label', 'namespace', namespace, 'strongroom.dev/environment=dev']);
  // alice creates the artifact; frank, a publisher, encrypts and publishes v1 in his own name.
  await mustAs(
    people.alice,
    ['-n', namespace, 'create', '-f', '-'],
    JSON.stringify(artifactBody(ARTIFACT, 'confidential')),
  );
  await publishVersion({
    admin: admin().custom,
    as: { name: 'frank', custom: people.frank.api.custom },
    namespace,
    artifact: ARTIFACT,
    version: 'v1',
    storageDir,
    plaintextDir: join(cluster.workDir, 'plaintext'),
    files: FILES,
  });
  await requestAndApprove(namespace, grantName, 'trainer');
  return { storageDir };
}

/** alice requests read access for service account `sa`; bob and carol approve; resolves once it is Active. */
async function requestAndApprove(namespace: string, grantName: string, sa: string): Promise<void> {
  await mustAs(
    people.alice,
    ['-n', namespace, 'create', '-f', '-'],
    JSON.stringify(
      grantBody(grantName, ARTIFACT, {
        requester: 'alice',
        subjects: [{ namespace, serviceAccount: sa }],
        purpose: 'chart test: evaluate resnet50',
      }),
    ),
  );
  const waiting = await eventually(`${grantName} awaiting approval`, async () => {
    const g = await getGrant(admin().custom, namespace, grantName);
    return g.status?.reason === 'AwaitingApproval' ? g : undefined;
  });
  expect(waiting.status?.phase).toBe('Pending');
  for (const approver of [people.bob, people.carol]) {
    const r = await approveAs(approver, namespace, grantName);
    expect(r.code, r.stderr).toBe(0);
  }
  await eventually(`${grantName} Active`, async () => {
    const g = await getGrant(admin().custom, namespace, grantName);
    return g.status?.phase === 'Active' ? g : undefined;
  });
}

/** Removes an install's leftovers so the next one starts clean: finalizers, namespaces, volumes. */
async function scrub(namespaces: readonly string[]): Promise<void> {
  for (const ns of namespaces) {
    const names = await kubectl(cluster, ['-n', ns, 'get', 'modelartifacts', '-o', 'name']);
    for (const n of names.stdout.split('\n').filter(Boolean))
      await kubectl(cluster, [
        '-n',
        ns,
        'patch',
        n,
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]);
  }
  await kubectl(cluster, ['delete', 'namespace', ...namespaces, '--ignore-not-found', '--timeout=90s'], {
    timeoutMs: 120_000,
  });
}

/** The cluster this file installs into: its own, with a fresh API server (see the comment in beforeAll). */
let own: Cluster | undefined;

beforeAll(async () => {
  // A cluster of its own rather than the shared one: on Kubernetes 1.35.4 we saw the API server keep answering "no
  // params found" for parameterized ValidatingAdmissionPolicies after this file's install, uninstall and reinstall
  // of the governance policies and their ConfigMap, and the governance tests that ran next on the same API server
  // then failed (docs/install.md, Troubleshooting). Each file here starts from a clean API server instead.
  own = await startCluster({ log, binaries: 'test' });
  cluster = own;
  node = await attachNode(cluster, { log });
  image = await importStrongroomImage(node, log);
  volumes.push(await createAuditVolumes(cluster, node, 'h3'));
}, 400_000);

afterAll(async () => {
  await helm(cluster, 3, ['uninstall', RELEASE, '-n', OP_NS, '--wait']);
  await scrub([APP, OP_NS]);
  for (const v of volumes) await v.remove({ claims: true });
  await kubectl(cluster, ['delete', 'pv', '-l', 'strongroom.dev/test=chart-models', '--ignore-not-found']);
  await kubectl(cluster, ['delete', 'storageclass', 'strongroom-chart-audit', '--ignore-not-found']);
  await farewell(cluster);
  if (startups.length > 0)
    log(
      `operator replica start-up, pod creation to Ready: median ${String(median(startups))} s of ${String(startups.length)} (${startups.join(', ')})`,
    );
  await node.stop();
  await own?.stop();
}, 400_000);

describe('the chart installed with Helm 3', () => {
  it('refuses values its schema does not allow, before touching the cluster', async () => {
    const r = await helmDeploy(cluster, 'install', {
      helm: 3,
      release: 'rejected',
      namespace: 'strongroom-rejected',
      values: [baseValues(image, volumes[0]?.storageClass ?? ''), { replicas: 'two' }],
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/schema/i);
    expect(r.stderr).toContain('replicas');
    expect((await kubectl(cluster, ['get', 'namespace', 'strongroom-rejected'])).code).not.toBe(0);
  });

  it('installs into a fresh namespace: two replicas Running and Ready, caBundle filled, policies in place', async () => {
    const r = await helmDeploy(cluster, 'install', {
      helm: 3,
      release: RELEASE,
      namespace: OP_NS,
      values: [baseValues(image, volumes[0]?.storageClass ?? '')],
    });
    expect(r.code, r.stderr).toBe(0);
    const pods = await waitForReplicas(cluster, OP_NS, 2);
    expect(pods.map((p) => p.metadata?.name)).toEqual([`${RELEASE}-0`, `${RELEASE}-1`]);
    for (const p of pods) {
      const operator = p.spec?.containers[0];
      expect(operator?.image).toBe(image.ref);
      expect(operator?.imagePullPolicy).toBe('Never');
    }
    startups.push(...startupSeconds(pods));

    const webhook = JSON.parse(
      await must(cluster, ['get', 'mutatingwebhookconfiguration', WEBHOOK_CONFIGURATION_NAME, '-o', 'json']),
    ) as {
      webhooks: {
        clientConfig: { caBundle?: string; service?: { name: string; namespace: string }; url?: string };
      }[];
    };
    expect(webhook.webhooks[0]?.clientConfig.url).toBeUndefined();
    expect(webhook.webhooks[0]?.clientConfig.service).toMatchObject({
      name: 'strongroom-webhook',
      namespace: OP_NS,
    });
    const caBundle = await filledCaBundle(OP_NS);
    const ca = await must(cluster, [
      '-n',
      OP_NS,
      'get',
      'secret',
      'strongroom-ca',
      '-o',
      'jsonpath={.data.ca\\.crt}',
    ]);
    expect(Buffer.from(caBundle, 'base64').toString()).toContain('BEGIN CERTIFICATE');
    expect(Buffer.from(caBundle, 'base64').toString()).toContain(
      Buffer.from(ca, 'base64').toString().trim().split('\n')[1] ?? 'no CA',
    );

    const policies = (await must(cluster, ['get', 'validatingadmissionpolicies', '-o', 'name']))
      .split('\n')
      .filter(Boolean);
    const bindings = (await must(cluster, ['get', 'validatingadmissionpolicybindings', '-o', 'name']))
      .split('\n')
      .filter(Boolean);
    for (const name of [OPT_IN_POLICY_NAME, ...Object.values(POLICY_NAMES)]) {
      expect(policies).toContain(`validatingadmissionpolicy.admissionregistration.k8s.io/${name}`);
      expect(bindings).toContain(`validatingadmissionpolicybinding.admissionregistration.k8s.io/${name}`);
    }
    // The governance policies read the chart's ConfigMap (parameterNotFoundAction Deny: without it they refuse).
    const governance = JSON.parse(
      await must(cluster, ['-n', OP_NS, 'get', 'configmap', 'strongroom-governance', '-o', 'json']),
    ) as { data?: Record<string, string> };
    expect(governance.data?.['confidential.approvals']).toBe('2');
    // One of the two replicas holds the Lease.
    const held = await eventually('a leader', async () => (await lease(cluster, OP_NS)).holder);
    expect([`${RELEASE}-0`, `${RELEASE}-1`]).toContain(held);
  }, 300_000);

  it('strongroom doctor finds the installed chart healthy, every check ok', async () => {
    const r = await run(
      process.execPath,
      [join(root, 'cli', 'strongroom.ts'), 'doctor', '--operator-namespace', OP_NS, '-o', 'json'],
      { env: { ...process.env, KUBECONFIG: cluster.kubeconfig }, timeoutMs: 120_000 },
    );
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { id: string; status: string; detail: string }[];
    };
    expect(
      report.checks.filter((c) => c.status !== 'ok'),
      r.stdout,
    ).toEqual([]);
    expect(report.checks.map((c) => c.id)).toEqual(
      expect.arrayContaining([
        'operator-pods',
        'broker-endpoints',
        'certificates',
        'clock-skew',
        'webhook-admission',
      ]),
    );
    expect(report.ok).toBe(true);
    expect(r.code).toBe(0);
    // Its checks (a dry-run pod, a TLS handshake refused for want of a client certificate) leave both replicas Ready.
    await sleep(3000);
    const after = await replicaPods(cluster, OP_NS);
    expect(
      after.map((p) => [p.metadata?.name, p.status?.conditions?.find((c) => c.type === 'Ready')?.status]),
    ).toEqual([
      [`${RELEASE}-0`, 'True'],
      [`${RELEASE}-1`, 'True'],
    ]);
  }, 180_000);
});

describe('the mission through the installed chart, as the people', () => {
  it('alice requests, bob and carol approve, an injected pod reads byte-identical files', async () => {
    await missionSetup(APP, 'trainer-reads');
    // alice cannot approve her own request.
    const self = await approveAs(people.alice, APP, 'trainer-reads');
    expect(self.code).not.toBe(0);
    await readerReads(APP, 'reader');
    const sidecar = await must(cluster, ['-n', APP, 'logs', 'reader', '-c', 'strongroom-sidecar']);
    expect(sidecar).not.toMatch(/PRIVATE KEY|eyJhbGci/);
  }, 300_000);

  it('refuses at admission a pod that names artifacts without opting in', async () => {
    const pod = injectedPod({
      name: 'no-label',
      artifacts: `${ARTIFACT}@v1:${MOUNT}`,
      script: SHOW_AND_WAIT,
    });
    delete pod.metadata?.labels?.[LABEL_INJECT];
    const r = await people.alice.kubectl(['-n', APP, 'create', '-f', '-'], JSON.stringify(pod));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`ValidatingAdmissionPolicy '${OPT_IN_POLICY_NAME}'`);
    expect(r.stderr).toContain(`but not the label ${LABEL_INJECT}: "true"`);
    expect((await kubectl(cluster, ['-n', APP, 'get', 'pod', 'no-label'])).code).not.toBe(0);
  });

  it('gives a pod without a grant no files: its key release is denied, audited and explained', async () => {
    const pod = injectedPod({
      name: 'intern',
      serviceAccount: 'intern',
      artifacts: `${ARTIFACT}@v1:${MOUNT}`,
      script: SHOW_AND_WAIT,
    });
    await podAs(people.alice, APP, pod);
    const why = await eventually(
      'the sidecar to log the denial',
      async () => {
        const r = await kubectl(cluster, ['-n', APP, 'logs', 'intern', '-c', 'strongroom-sidecar']);
        return r.stdout.includes('PERMISSION_DENIED') ? r.stdout : undefined;
      },
      90_000,
      500,
    );
    expect(why).toMatch(/key release denied/);
    const events = await mustAs(people.alice, [
      '-n',
      APP,
      'get',
      'events',
      '--field-selector',
      'involvedObject.name=intern,reason=KeyReleaseDenied',
      '-o',
      'json',
    ]);
    expect(events).toContain('KeyReleaseDenied');
    const p = await readPod(APP, 'intern');
    const app = p.status?.containerStatuses?.find((c) => c.name === 'app');
    expect(app?.state?.running).toBeUndefined();
    expect(app?.lastState?.running).toBeUndefined();
    expect(isReady(p)).toBe(false);
    // Audited by whichever replica answered: the union of the replicas' logs has the denial for this pod.
    const uid = p.metadata?.uid ?? '';
    const logs = (await replicaAuditLogs(cluster, OP_NS)).flatMap((r) => r.logs);
    const denial = auditLines(logs).find((e) => {
      const text = JSON.stringify(e);
      return text.includes(uid) && text.includes('"deny"');
    });
    expect(denial, 'a deny entry for the intern pod in some replica log').toBeDefined();
    await mustAs(people.alice, ['-n', APP, 'delete', 'pod', 'intern', '--wait=false']);
  });

  it('wipes the files from a running pod when the security team revokes its grant', async () => {
    await requestAndApprove(APP, 'evaluator-reads', 'evaluator');
    await readerReads(APP, 'evaluator', 'evaluator');
    expect((await execInApp(cluster, APP, 'evaluator', `ls ${MOUNT}`)).out).toContain('config.json');
    // erin, of the security team, revokes it.
    const started = Date.now();
    await mustAs(people.erin, [
      '-n',
      APP,
      'annotate',
      'accessgrant',
      'evaluator-reads',
      `${REVOKED_ANNOTATION}=chart test: revoked by security`,
    ]);
    let wipedAfter = -1;
    await eventually(
      'the files to vanish',
      async () => {
        const listing = await execInApp(cluster, APP, 'evaluator', `ls -A ${MOUNT} | wc -l`);
        if (listing.out.trim() !== '0') return undefined;
        wipedAfter = Date.now() - started;
        return true;
      },
      15_000,
      20,
    );
    log(`revocation: files wiped ${String(wipedAfter)} ms after erin's annotation`);
    expect(wipedAfter).toBeLessThan(2_000);
    await eventually('evaluator not Ready', async () =>
      isReady(await readPod(APP, 'evaluator')) ? undefined : true,
    );
    expect((await getGrant(admin().custom, APP, 'evaluator-reads')).status?.phase).toBe('Revoked');
    // The other grant, and the reader's files, are untouched.
    expect((await execInApp(cluster, APP, 'reader', `ls ${MOUNT}`)).out).toContain('config.json');
    expect(isReady(await readPod(APP, 'reader'))).toBe(true);

    // The metrics (docs/metrics.md), scraped from the real pods over the pod bridge. The evaluator's sidecar: its
    // start-up phases, the bytes it decrypted, the wipe.
    const evaluator = await readPod(APP, 'evaluator');
    const sidecar = await scrape(`http://${evaluator.status?.podIP ?? ''}:${String(PROBE_PORT)}/metrics`);
    for (const phase of ['attest', 'watch', 'release', 'decrypt', 'verify', 'install'])
      expect(sample(sidecar, 'strongroom_sidecar_startup_phase_seconds_count', { phase }), phase).toBe(1);
    const plainBytes = Object.values(FILES).reduce((n, c) => n + Buffer.byteLength(c), 0);
    expect(sample(sidecar, 'strongroom_sidecar_decrypted_bytes_total')).toBe(plainBytes);
    expect(sample(sidecar, 'strongroom_sidecar_wipes_total', { reason: 'revocation' })).toBe(1);
    expect(sidecar).not.toMatch(/resnet|evaluator|BEGIN|eyJ/);
    // The operator replicas: the sidecar reported the wipe to the replica whose stream sent the revocation, which
    // timed it from the end of access; every returned key has its audit entry on both.
    const replicas = await replicaPods(cluster, OP_NS);
    const scrapeReplicas = (): Promise<string[]> =>
      Promise.all(
        replicas.map((p) => {
          const port = p.spec?.containers[0]?.ports?.find((q) => q.name === 'health')?.containerPort;
          return scrape(`http://${p.status?.podIP ?? ''}:${String(port ?? 8080)}/metrics`);
        }),
      );
    const operators = await eventually(
      'a replica to record the wipe report',
      async () => {
        const texts = await scrapeReplicas();
        const timed = texts.reduce(
          (n, t) => n + (sample(t, 'strongroom_revocation_to_wipe_seconds_count') ?? 0),
          0,
        );
        return timed >= 1 ? texts : undefined;
      },
      30_000,
      500,
    );
    const sum = (name: string, labels: Record<string, string> = {}): number =>
      operators.reduce((n, t) => n + (sample(t, name, labels) ?? 0), 0);
    const count = sum('strongroom_revocation_to_wipe_seconds_count');
    expect(count).toBeGreaterThanOrEqual(1);
    expect(sum('strongroom_sidecar_wipe_reports_total', { outcome: 'recorded' })).toBe(count);
    // Within the 2 s this test allows the wipe itself (le="2" is a bucket bound).
    expect(sum('strongroom_revocation_to_wipe_seconds_bucket', { le: '2' })).toBe(count);
    log(
      `time-to-revoke: ${String(count)} wipe(s) reported, ${String(Math.round((sum('strongroom_revocation_to_wipe_seconds_sum') / count) * 1000))} ms on average from the end of access`,
    );
    for (const text of operators) expect(sample(text, 'strongroom_audit_coverage_ratio')).toBe(1);
    // reader, evaluator, and the renewals: keys were returned, each with its audit entry.
    expect(sum('strongroom_key_releases_total', { decision: 'allow' })).toBeGreaterThanOrEqual(2);
    expect(sum('strongroom_key_releases_audited_total')).toBe(
      sum('strongroom_key_releases_total', { decision: 'allow' }),
    );
    // The report itself is audited, by the replica that timed it.
    const uid = evaluator.metadata?.uid ?? '';
    const reports = auditLines((await replicaAuditLogs(cluster, OP_NS)).flatMap((r) => r.logs)).filter(
      (e) => {
        const text = JSON.stringify(e);
        return text.includes('"report-wipe"') && text.includes(uid);
      },
    );
    expect(reports.length, 'a report-wipe entry for the evaluator pod').toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(reports[0])).toContain('wipe-confirmed');
    await mustAs(people.alice, ['-n', APP, 'delete', 'pod', 'evaluator', '--wait=false']);
  }, 300_000);
});

describe('leader failover across real pods', () => {
  it('moves the Lease to the other replica within the lease duration; a pod starting meanwhile gets its files', async () => {
    // The survivor must be Ready before the leader goes, or there is nothing to fail over to.
    await waitForReplicas(cluster, OP_NS, 2);
    const before = await lease(cluster, OP_NS);
    const leader = before.holder ?? '';
    const pods = (await replicaPods(cluster, OP_NS)).map((p) => p.metadata?.name ?? '');
    expect(pods).toContain(leader);
    const survivor = pods.find((p) => p !== leader) ?? '';
    expect(before.leaseDurationSeconds).toBeGreaterThan(0);

    const deletedAt = Date.now();
    await must(cluster, ['-n', OP_NS, 'delete', 'pod', leader, '--wait=false']);
    await podAs(
      people.alice,
      APP,
      injectedPod({ name: 'during-failover', artifacts: `${ARTIFACT}@v1:${MOUNT}`, script: SHOW_AND_WAIT }),
    );
    const takeover = await eventually(
      `${survivor} to take the Lease`,
      async () => ((await lease(cluster, OP_NS)).holder === survivor ? Date.now() - deletedAt : undefined),
      before.leaseDurationSeconds * 1000 + 30_000,
      100,
    );
    log(
      `failover: ${survivor} took the Lease ${String(takeover)} ms after ${leader} was deleted (lease ${String(before.leaseDurationSeconds)} s)`,
    );
    expect(takeover).toBeLessThan(before.leaseDurationSeconds * 1000);
    expect((await lease(cluster, OP_NS)).transitions).toBeGreaterThan(before.transitions);

    const reader = await waitPodReady(APP, 'during-failover');
    expect(await sumsSeen(APP, 'during-failover')).toEqual(expectedSums);
    const back = await waitForReplicas(cluster, OP_NS, 2);
    // The release is audited by the replica that served it: the survivor, or the deleted leader's replacement (the
    // StatefulSet recreates it under the same name, on the same log, often before the pod asks for its keys); read
    // once both replicas are back, so that both logs are there to read.
    const uid = reader.metadata?.uid ?? '';
    const logs = await replicaAuditLogs(cluster, OP_NS);
    const auditedBy = logs
      .filter((l) =>
        auditLines(l.logs).some((e) => {
          const text = JSON.stringify(e);
          return text.includes(uid) && text.includes('"allow"');
        }),
      )
      .map((l) => l.pod);
    expect(auditedBy, 'the replicas whose log has an allow entry for during-failover').not.toEqual([]);
    log(`failover: during-failover's keys were released and audited by ${auditedBy.join(', ')}`);

    const replacement = back.find((p) => p.metadata?.name === leader);
    if (replacement) startups.push(...startupSeconds([replacement]));
  }, 300_000);
});

describe('helm upgrade', () => {
  it('changes a value and keeps every key, grant and audit entry', async () => {
    const keysBefore = (await getArtifact(admin().custom, APP, ARTIFACT)).status?.keys;
    const grantBefore = await getGrant(admin().custom, APP, 'trainer-reads');
    const secretsBefore = await must(cluster, [
      '-n',
      OP_NS,
      'get',
      'secret',
      'strongroom-kms-local',
      'strongroom-audit-keys',
      '-o',
      'jsonpath={range .items[*]}{.metadata.uid}={.metadata.resourceVersion} {end}',
    ]);
    const logsBefore = new Map<string, string>();
    for (const r of await replicaAuditLogs(cluster, OP_NS))
      for (const file of r.logs) logsBefore.set(file, readFileSync(file, 'utf8'));
    expect(logsBefore.size).toBeGreaterThanOrEqual(2);
    const revisionBefore = JSON.parse(
      await must(cluster, ['-n', OP_NS, 'get', 'statefulset', 'strongroom', '-o', 'json']),
    ) as { status: { currentRevision: string } };

    const r = await helmDeploy(cluster, 'upgrade', {
      helm: 3,
      release: RELEASE,
      namespace: OP_NS,
      values: [baseValues(image, volumes[0]?.storageClass ?? ''), { logLevel: 'debug' }],
    });
    expect(r.code, r.stderr).toBe(0);
    const pods = await waitForReplicas(cluster, OP_NS, 2);
    for (const p of pods) {
      expect(p.metadata?.labels?.['controller-revision-hash']).not.toBe(
        revisionBefore.status.currentRevision,
      );
      const c = p.spec?.containers[0];
      expect(
        [
          ...(c?.args ?? []),
          ...(c?.command ?? []),
          ...(c?.env ?? []).map((e) => `${e.name}=${e.value ?? ''}`),
        ].join(' '),
      ).toMatch(/log-level=debug|LOG_LEVEL=debug/);
    }
    startups.push(...startupSeconds(pods));

    // Keys: the same wrapped keys, the same key-set and audit-key Secrets, and a new pod decrypts v1.
    expect((await getArtifact(admin().custom, APP, ARTIFACT)).status?.keys).toEqual(keysBefore);
    expect(
      await must(cluster, [
        '-n',
        OP_NS,
        'get',
        'secret',
        'strongroom-kms-local',
        'strongroom-audit-keys',
        '-o',
        'jsonpath={range .items[*]}{.metadata.uid}={.metadata.resourceVersion} {end}',
      ]),
    ).toBe(secretsBefore);
    await readerReads(APP, 'after-upgrade');
    // The grant: the same object, still Active.
    const grant = await getGrant(admin().custom, APP, 'trainer-reads');
    expect(grant.metadata.uid).toBe(grantBefore.metadata.uid);
    expect(grant.status?.phase).toBe('Active');
    // The audit: every log written before the upgrade still starts with what it held, and verifies.
    const key = await auditVerifierKey(cluster, OP_NS);
    const after = await replicaAuditLogs(cluster, OP_NS);
    const files = after.flatMap((l) => l.logs);
    for (const [file, content] of logsBefore) {
      expect(files).toContain(file);
      expect(readFileSync(file, 'utf8').startsWith(content)).toBe(true);
    }
    for (const file of files) {
      const v = await auditVerify([file], key);
      expect(v.code, `${file}: ${v.stdout}${v.stderr}`).toBe(0);
    }
    // And all replicas' logs in one run (each its own origin), as an auditor checks a whole installation.
    const all = await auditVerify(files, key);
    expect(all.code, `${all.stdout}${all.stderr}`).toBe(0);
    // Fail closed: one flipped byte in a log written before the upgrade fails the run.
    const tampered = join(cluster.workDir, 'tampered.log');
    const served = [...logsBefore.keys()].find((f) => readFileSync(f, 'utf8').includes('"podUid":"'));
    const bytes = readFileSync(served ?? '');
    const at = bytes.indexOf('"podUid":"') + '"podUid":"'.length;
    expect(at).toBeGreaterThan(10);
    // Another hex digit: still valid JSON, a different pod.
    bytes[at] = bytes[at] === 0x61 ? 0x62 : 0x61;
    writeFileSync(tampered, bytes);
    const bad = await auditVerify([tampered], key);
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    // The pod read after the upgrade is audited too.
    const uid = (await readPod(APP, 'after-upgrade')).metadata?.uid ?? '';
    expect(auditLines(files).some((e) => JSON.stringify(e).includes(uid))).toBe(true);
  }, 300_000);
});

describe('helm uninstall', () => {
  it('leaves nothing that blocks pod creation, and keeps the CRDs, their objects and the keys', async () => {
    const r = await helm(cluster, 3, ['uninstall', RELEASE, '-n', OP_NS, '--wait']);
    expect(r.code, r.stderr).toBe(0);
    await eventually(
      'the replicas gone',
      async () => ((await replicaPods(cluster, OP_NS)).length === 0 ? true : undefined),
      120_000,
      500,
    );
    const webhooks = await must(cluster, ['get', 'mutatingwebhookconfigurations', '-o', 'name']);
    expect(webhooks).not.toContain(WEBHOOK_CONFIGURATION_NAME);
    const policies = await must(cluster, [
      'get',
      'validatingadmissionpolicies,validatingadmissionpolicybindings',
      '-o',
      'name',
    ]);
    expect(policies).not.toMatch(/strongroom/);
    // A pod that opts in to injection (label and annotation) is created as it is, with no sidecar.
    const pod = injectedPod({
      name: 'after-uninstall',
      artifacts: `${ARTIFACT}@v1:${MOUNT}`,
      script: 'sleep 3600',
    });
    await podAs(people.alice, APP, pod);
    const created = await waitPodReady(APP, 'after-uninstall');
    expect(created.metadata?.labels?.[LABEL_INJECT]).toBe('true');
    expect(created.metadata?.annotations?.[ANNOTATION_ARTIFACTS]).toBe(`${ARTIFACT}@v1:${MOUNT}`);
    expect(
      [...(created.spec?.initContainers ?? []), ...(created.spec?.containers ?? [])].map((c) => c.name),
    ).toEqual(['app']);

    // What remains, for docs/install.md.
    const crds = await must(cluster, ['get', 'crd', '-o', 'name']);
    expect(crds).toContain('modelartifacts.strongroom.dev');
    expect(crds).toContain('accessgrants.strongroom.dev');
    expect((await getArtifact(admin().custom, APP, ARTIFACT)).metadata.finalizers).toContain(
      'strongroom.dev/crypto-shred',
    );
    const remaining = await must(cluster, [
      '-n',
      OP_NS,
      'get',
      'secrets,configmaps,leases,pvc,serviceaccounts,services,statefulsets',
      '-o',
      'name',
    ]);
    log(`after helm uninstall, left in ${OP_NS}:\n${remaining}`);
    // The keys the operator made stay (Helm never owned them): the artifacts can be served again by a reinstall.
    for (const name of ['strongroom-kms-local', 'strongroom-audit-keys', 'strongroom-ca'])
      expect(remaining).toContain(`secret/${name}`);
    // The audit logs stay on their claims (a StatefulSet's claims outlive it).
    expect(remaining).toMatch(/persistentvolumeclaim\/\S+-strongroom-0/);
    expect(remaining).toMatch(/persistentvolumeclaim\/\S+-strongroom-1/);
    expect(remaining).not.toMatch(/statefulset|service\/strongroom/);
    // Cluster-scoped objects Helm made (other test files leave RBAC of their own, named strongroom-operator-<ns>).
    const clusterScoped = await must(cluster, [
      'get',
      'clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations',
      '-l',
      'app.kubernetes.io/managed-by=Helm',
      '-o',
      'name',
    ]);
    expect(clusterScoped.split('\n').filter((l) => /strongroom/.test(l))).toEqual([]);
    for (const [kind, name] of [
      ['clusterrole', 'strongroom-operator'],
      ['clusterrolebinding', 'strongroom-operator'],
      ['mutatingwebhookconfiguration', WEBHOOK_CONFIGURATION_NAME],
    ] as const)
      expect((await kubectl(cluster, ['get', kind, name])).code, `${kind}/${name}`).not.toBe(0);
  }, 300_000);
});

describe('the chart installed with Helm 4', () => {
  /**
   * On a cluster of its own (a fresh API server), not after the Helm 3 release's uninstall on this file's first: on
   * Kubernetes 1.35.4 we saw the governance policies' bindings keep answering "no params found" for their
   * ConfigMap after an uninstall and a reinstall into another namespace (docs/install.md, Troubleshooting), and
   * that is not what this test is about.
   */
  it('installs, both replicas become Ready, and an injected pod reads its files', async (context) => {
    if (helmBinary(cluster, 4) === undefined) {
      log(`Helm 4 (helm4) is not in ${cluster.binDir}: not tested`);
      context.skip();
    }
    const shared = { cluster, node, people };
    await node.stop();
    const own = await startCluster({ log, binaries: 'test' });
    try {
      cluster = own;
      node = await attachNode(own, { log });
      image = await importStrongroomImage(node, log);
      const v4 = await createAuditVolumes(cluster, node, 'h4');
      const r = await helmDeploy(cluster, 'install', {
        helm: 4,
        release: RELEASE,
        namespace: OP_NS4,
        values: [baseValues(image, v4.storageClass)],
      });
      expect(r.code, r.stderr).toBe(0);
      const pods = await waitForReplicas(cluster, OP_NS4, 2);
      startups.push(...startupSeconds(pods));
      await filledCaBundle(OP_NS4);
      await missionSetup(APP4, 'trainer-reads');
      await readerReads(APP4, 'reader');
      const u = await helm(cluster, 4, ['uninstall', RELEASE, '-n', OP_NS4, '--wait']);
      expect(u.code, u.stderr).toBe(0);
      expect(await must(cluster, ['get', 'mutatingwebhookconfigurations', '-o', 'name'])).not.toContain(
        WEBHOOK_CONFIGURATION_NAME,
      );
    } finally {
      await node.stop();
      await own.stop();
      ({ cluster, node, people } = shared);
    }
  }, 400_000);
});
