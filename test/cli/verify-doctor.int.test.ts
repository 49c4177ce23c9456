/**
 * `strongroom verify` and `strongroom doctor` against the real API server, run in-process as the CLI runs
 * (cli/strongroom.ts main) with the admin kubeconfig.
 *
 * The install is the harness's (test/harness/suite.ts): the operator as a process on the host with the chart's
 * least-privilege RBAC, the injector's MutatingWebhookConfiguration by URL (installInjector), and the governance
 * policies, their bindings and the ConfigMap strongroom-governance as the chart renders them (built by
 * core/governance). What doctor's checks meet here:
 *
 * | check | here |
 * | --- | --- |
 * | crds, admission-policies, webhook-configuration, webhook-ca, certificates, clock-skew | real objects, ok |
 * | webhook-admission | a real dry-run pod create the API server sends to the operator's webhook: ok while it runs, fail while the operator is stopped (SIGSTOP) |
 * | kms | judged from the Lease (no operator pods: the operator is outside the cluster), and the ModelArtifacts' KeysReady |
 * | operator-pods, broker-endpoints | warn: no pods or Services, the webhook is configured by URL (their in-cluster paths are covered only by the unit tests of their judgements) |
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster } from '../cluster/cluster.ts';
import { governancePolicies, POLICY_NAMES } from '../../core/governance/admission-policies.ts';
import { governanceDefaults } from '../../core/governance/defaults.ts';
import { GOVERNANCE_CONFIGMAP } from '../../core/policy/classification.ts';
import { INSTALL, type DoctorReport } from '../../cli/doctor.ts';
import type { CliIo } from '../../cli/io.ts';
import { main } from '../../cli/strongroom.ts';
import type { VerifyReport } from '../../cli/verify.ts';
import { LEASE_NAME } from '../../operator/kube/permissions.ts';
import {
  OPT_IN_POLICY_NAME,
  WEBHOOK_CONFIGURATION_NAME,
  WEBHOOK_NAME,
} from '../../operator/webhook/configuration.ts';
import { kubectl, must } from '../harness/kubectl.ts';
import { appendVersion, getArtifact, sealedVersion } from '../harness/objects.ts';
import { clients, eventually, operatorUser } from '../harness/operator.ts';
import {
  installInjector,
  keyedArtifact,
  operatorSuite,
  removeInjector,
  sealedArtifact,
} from '../harness/suite.ts';

// A control plane of its own, not the shared one: this file installs Strongroom's governance policies (parameterized
// ValidatingAdmissionPolicies) with their params ConfigMap in its own operator namespace, and on Kubernetes 1.35.4 the
// API server kept answering "no params found" when files sharing it did so one after another (docs/install.md,
// Troubleshooting). Registered first, so that it is stopped last.
const own = await startCluster({ log: () => undefined, binaries: 'test' });
afterAll(async () => {
  await own.stop();
}, 120_000);
const cluster = own;
const suite = operatorSuite(cluster, {
  operatorNamespace: 'vd-system',
  namespaces: { apps: { name: 'vd-apps', environment: 'dev' } },
  operator: { identity: 'verify-doctor', waitFor: 'webhook' },
  emptyOnTeardown: ['apps'],
});
const { custom, kc } = clients(cluster.kubeconfig);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
let dir: string;

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  let code = 0;
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), setExitCode: (c) => (code = c) };
  await main(io, ['node', 'strongroom', '--kubeconfig', cluster.kubeconfig, ...args]);
  return { code, out, err };
}

function governance(): object[] {
  const policies = governancePolicies({
    operatorNamespace: suite.operatorNamespace,
    operatorUser: operatorUser(suite.operatorNamespace),
    defaults: governanceDefaults(),
  });
  return [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: GOVERNANCE_CONFIGMAP, namespace: suite.operatorNamespace },
      // Stricter than the default (90d), so that the grant rule visibly reads the cluster's table.
      data: { 'internal.maxGrantDuration': '30d' },
    },
    ...policies.flatMap((p) => [p.policy, p.binding]),
  ];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'verify-doctor-'));
  await installInjector(admission, suite.operatorNamespace, suite.operator.ports.webhook);
  await suite.operator.brokerPorts();
  const apps = suite.namespaces.apps;
  await sealedArtifact(custom, apps, 'resnet50', { versions: ['v1'] });
  // A version whose sealed key was sealed for another version name: the operator cannot open it, so never seals it.
  const broken = await keyedArtifact(custom, apps, 'broken');
  const { version } = await sealedVersion(broken, 'v1');
  const { version: other } = await sealedVersion(broken, 'elsewhere');
  await appendVersion(custom, broken, { ...version, encryption: other.encryption });
  await eventually('broken v1 judged by the operator', async () => {
    const a = await getArtifact(custom, apps, 'broken');
    return a.status?.conditions?.some((c) => c.type === 'KeysReady' && c.status === 'False') === true
      ? a
      : undefined;
  });
  // The governance policies last: they would refuse the harness's hand-made versions (publisher not the user).
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: governance() }),
  );
  // The serving certificates doctor reads are issued by the leader.
  for (const name of INSTALL.servingSecrets)
    await eventually(`Secret ${name}`, async () =>
      (await kubectl(cluster, ['-n', suite.operatorNamespace, 'get', 'secret', name])).code === 0
        ? true
        : undefined,
    );
}, 240_000);

afterAll(async () => {
  await removeInjector(admission);
  for (const name of Object.values(POLICY_NAMES)) {
    await admission.deleteValidatingAdmissionPolicyBinding({ name }).catch(() => undefined);
    await admission.deleteValidatingAdmissionPolicy({ name }).catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

function workload(name: string, artifacts: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: ${suite.namespaces.apps} }
spec:
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata:
      labels: { app: ${name}, strongroom.dev/inject: "true" }
      annotations: { strongroom.dev/artifacts: "${artifacts}" }
    spec:
      containers: [{ name: main, image: trainer:1 }]
`;
}

describe('strongroom verify on the real API server', () => {
  it('passes a workload reading a sealed version (by name and as @latest)', async () => {
    const file = join(dir, 'good.yaml');
    writeFileSync(file, workload('trainer', 'resnet50@v1:/models/a, resnet50@latest:/models/b'));
    const { code, out, err } = await cli(['verify', file, '-o', 'json']);
    expect(err).toBe('');
    const report = JSON.parse(out) as VerifyReport;
    expect(report.findings).toEqual([]);
    expect(report).toMatchObject({ ok: true, checked: { workloads: 1, artifactReferences: 2 } });
    // The ciphertext is on a claim the CLI cannot read: reported as skipped, never as passed.
    expect(report.skipped).toEqual([
      expect.objectContaining({
        check: 'storage',
        reason: expect.stringContaining('PersistentVolumeClaim models') as string,
      }),
    ]);
    expect(code).toBe(0);
  });

  it('fails an unsealed version, a missing version and a missing artifact, and a grant longer than the cluster table allows', async () => {
    const file = join(dir, 'bad.yaml');
    const expires = new Date(Date.now() + 60 * 24 * 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    writeFileSync(
      file,
      [
        workload('unsealed', 'broken@v1:/models'),
        workload('missing-version', 'resnet50@v9:/models'),
        workload('missing-artifact', 'nosuch@v1:/models'),
        `apiVersion: strongroom.dev/v1alpha1
kind: AccessGrant
metadata: { name: long, namespace: ${suite.namespaces.apps} }
spec:
  artifactRef: { name: resnet50 }
  versions: { match: latest }
  mode: read
  subjects: [{ namespace: ${suite.namespaces.apps}, serviceAccount: trainer }]
  expiresAt: "${expires}"
  purpose: too long
`,
      ].join('---\n'),
    );
    const json = await cli(['verify', file, '-o', 'json', '--operator-namespace', suite.operatorNamespace]);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.out) as VerifyReport;
    expect(report.ok).toBe(false);
    expect(report.findings.map((f) => [f.rule, f.object.name])).toEqual([
      ['version-unsealed', 'unsealed'],
      ['version-missing', 'missing-version'],
      ['artifact-missing', 'missing-artifact'],
      ['grant-duration', 'long'],
    ]);
    expect(report.findings[0]?.reason).toMatch(/version v1 of ModelArtifact .*\/broken is not sealed/);
    expect(report.findings[3]?.reason).toMatch(
      /more than 30d, the longest a grant for a internal artifact may last/,
    );
    expect(report.checked.classificationTable).toBe(
      `configmap ${suite.operatorNamespace}/${GOVERNANCE_CONFIGMAP}`,
    );
    const table = await cli(['verify', file, '--operator-namespace', suite.operatorNamespace]);
    expect(table.code).toBe(1);
    expect(table.out).toMatch(/^version-unsealed\s+error\s+Deployment /m);
    expect(table.out).toMatch(/^FAIL: 4 errors, 0 warnings/m);
  });
});

describe('strongroom doctor on the real API server', () => {
  it("names the operator's objects as the operator does", () => {
    expect(INSTALL.webhookConfiguration).toBe(WEBHOOK_CONFIGURATION_NAME);
    expect(INSTALL.webhook).toBe(WEBHOOK_NAME);
    expect(INSTALL.optInPolicy).toBe(OPT_IN_POLICY_NAME);
    expect(INSTALL.lease).toBe(LEASE_NAME);
  });

  it('passes a healthy install, and fails the webhook check while the operator is stopped', async () => {
    const args = [
      'doctor',
      '-n',
      suite.namespaces.apps,
      '--operator-namespace',
      suite.operatorNamespace,
      '-o',
      'json',
    ];
    const healthy = await cli(args);
    const report = JSON.parse(healthy.out) as DoctorReport;
    const status = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
    expect(status, JSON.stringify(report.checks, null, 2)).toEqual({
      crds: 'ok',
      'admission-policies': 'ok',
      'webhook-configuration': 'ok',
      'webhook-ca': 'ok',
      'webhook-admission': 'ok',
      'operator-pods': 'warn',
      'broker-endpoints': 'warn',
      'broker-mtls': 'warn',
      // The broken artifact reports KeysReady False: a warning, the KMS itself opened.
      kms: 'warn',
      certificates: 'ok',
      'clock-skew': 'ok',
    });
    expect(healthy.code).toBe(0);
    expect(report.ok).toBe(true);

    suite.operator.kill('SIGSTOP');
    try {
      const stopped = await cli(args);
      const down = JSON.parse(stopped.out) as DoctorReport;
      const webhook = down.checks.find((c) => c.id === 'webhook-admission');
      expect(webhook).toMatchObject({
        status: 'fail',
        detail: expect.stringContaining(`the API server could not call the webhook: `) as string,
      });
      expect(stopped.code).toBe(1);
      const table = await cli(args.slice(0, -2));
      expect(table.out).toMatch(/^webhook-admission\s+fail\s+the API server could not call the webhook/m);
      expect(table.out).toMatch(/^UNHEALTHY: /m);
    } finally {
      suite.operator.kill('SIGCONT');
    }
  });
});
