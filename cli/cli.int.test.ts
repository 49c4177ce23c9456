/**
 * The `strongroom` commands against the real API server and operator, run by the people of the governance tests with
 * their own credentials (test/governance/people.ts): alice requests a grant with `grant create`, bob and carol
 * `approve`, `get grants -o json` shows it Active, `describe grant` shows who approved and the audit log; alice may
 * not quarantine it (exit 3, the admission policy's words), erin (security) quarantines and lifts it, alice revokes
 * it; `get versions`, `describe artifact`, and the kubectl plugin wrapper `cli/kubectl-strongroom`.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster } from '../test/cluster/cluster.ts';
import type { AccessGrant } from '../core/api/index.ts';
import {
  ENVIRONMENT_LABEL,
  GOVERNANCE_CONFIGMAP,
  governancePolicies,
} from '../core/governance/admission-policies.ts';
import { governanceDefaults } from '../core/governance/defaults.ts';
import { run as runProcess } from '../test/cluster/kubectl.ts';
import { farewell, meetThePeople, type Person } from '../test/governance/people.ts';
import { kubectl } from '../test/harness/kubectl.ts';
import { getArtifact, sealedVersion } from '../test/harness/objects.ts';
import { clients, eventually, root } from '../test/harness/operator.ts';
import { auditVerifierKey, grantWhen, operatorSuite } from '../test/harness/suite.ts';
import { EXIT } from './io.ts';
import { main } from './strongroom.ts';

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
  operatorNamespace: 'strongroom-cli',
  namespaces: { dev: { name: 'cli-dev' }, prod: { name: 'cli-prod' } },
  operator: { identity: 'op-cli' },
  autostart: false,
  emptyOnTeardown: ['dev', 'prod'],
});
const opNs = suite.operatorNamespace;
const { dev, prod } = suite.namespaces;
const admin = clients(cluster.kubeconfig);
const adminAdmission = admin.kc.makeApiClient(AdmissionregistrationV1Api);
const policies = governancePolicies({
  operatorNamespace: opNs,
  operatorUser: `strongroom-operator-${opNs}`,
  defaults: governanceDefaults(),
});
let people: Awaited<ReturnType<typeof meetThePeople>>;

interface Result {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** `strongroom <args>` as `person`, through main() with their kubeconfig. */
async function strongroom(person: Person, ...args: string[]): Promise<Result> {
  let out = '';
  let err = '';
  let code = 0;
  await main(
    {
      out: (t) => (out += t),
      err: (t) => (err += t),
      setExitCode: (c) => (code = c),
    },
    ['node', 'strongroom', '--kubeconfig', person.kubeconfig, ...args],
  );
  sample([`(as ${person.name})`, ...args], { code, out, err });
  return { code, out, err };
}

/** With CLI_SAMPLES=<file>, every command's output is appended there (the output samples of the docs). */
function sample(args: readonly string[], result: Result): void {
  const file = process.env['CLI_SAMPLES'];
  if (file === undefined) return;
  appendFileSync(
    file,
    `$ strongroom ${args.join(' ')}   # exit ${String(result.code)}\n${result.out}${result.err}\n`,
  );
}

function ok(result: Result): Result {
  expect(result.code, result.err).toBe(0);
  return result;
}

const grantIs = (name: string, test: (g: AccessGrant) => boolean, what: string) =>
  grantWhen(admin.custom, dev, name, test, `grant ${dev}/${name}: ${what}`, 30_000);

/** Publishes a sealed version as `person` (a publisher), with `publisher` written on it. */
async function addVersion(person: Person, artifact: string, version: string): Promise<void> {
  const a = await eventually(`artifact ${artifact} recipient key`, async () => {
    const x = await getArtifact(admin.custom, dev, artifact);
    return x.status?.recipientPublicKey ? x : undefined;
  });
  const { version: v } = await sealedVersion(a, version, { publisher: person.name });
  const ops =
    a.spec.versions === undefined
      ? [{ op: 'add', path: '/spec/versions', value: [v] }]
      : [{ op: 'add', path: '/spec/versions/-', value: v }];
  const r = await person.kubectl([
    'patch',
    'modelartifact',
    artifact,
    '-n',
    dev,
    '--type=json',
    '-p',
    JSON.stringify(ops),
  ]);
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  const cm = await kubectl(cluster, ['create', 'configmap', GOVERNANCE_CONFIGMAP, '-n', opNs]);
  expect(cm.code, cm.stderr).toBe(0);
  people = await meetThePeople(cluster, [dev, prod]);
  for (const { policy, binding } of policies) {
    await adminAdmission.createValidatingAdmissionPolicy({ body: policy });
    await adminAdmission.createValidatingAdmissionPolicyBinding({ body: binding });
  }
  await eventually('the quarantine policy', async () => {
    const r = await people.alice.kubectl(
      ['create', '--dry-run=server', '-f', '-'],
      JSON.stringify({
        apiVersion: 'strongroom.dev/v1alpha1',
        kind: 'AccessGrant',
        metadata: { name: 'probe', namespace: dev, annotations: { 'strongroom.dev/quarantined': 'x' } },
        spec: {
          requester: 'alice',
          artifactRef: { name: 'x' },
          versions: { match: 'latest' },
          mode: 'read',
          subjects: [{ namespace: dev, serviceAccount: 'x' }],
          expiresAt: '2099-01-01T00:00:00Z',
          purpose: 'probe',
        },
      }),
    );
    return r.code !== 0 && /only the security team/.test(r.stderr) ? true : undefined;
  });
  for (const [ns, env] of [
    [dev, 'dev'],
    [prod, 'prod'],
  ] as const) {
    const r = await people.dave.kubectl(['label', 'namespace', ns, `${ENVIRONMENT_LABEL}=${env}`]);
    expect(r.code, r.stderr).toBe(0);
  }
  await suite.startOperator();
  const created = await people.alice.kubectl(
    ['create', '-f', '-'],
    JSON.stringify({
      apiVersion: 'strongroom.dev/v1alpha1',
      kind: 'ModelArtifact',
      metadata: { name: 'vision', namespace: dev },
      spec: {
        classification: 'confidential',
        owner: { team: 'vision', contact: 'vision@example.com' },
        storage: { persistentVolumeClaim: { claimName: 'models' }, path: 'vision' },
      },
    }),
  );
  expect(created.code, created.stderr).toBe(0);
  await addVersion(people.frank, 'vision', 'v1');
  await addVersion(people.frank, 'vision', 'v2');
  await eventually('vision sealed', async () => {
    const a = await getArtifact(admin.custom, dev, 'vision');
    return (a.status?.keys ?? []).filter((k) => k.state === 'Sealed').length === 2 ? a : undefined;
  });
}, 300_000);

afterAll(async () => {
  for (const { policy, binding } of policies) {
    await adminAdmission
      .deleteValidatingAdmissionPolicyBinding({ name: binding.metadata?.name ?? '' })
      .catch(() => undefined);
    await adminAdmission
      .deleteValidatingAdmissionPolicy({ name: policy.metadata?.name ?? '' })
      .catch(() => undefined);
  }
  await farewell(cluster);
});

describe('strongroom commands as the people who use them', () => {
  it('get versions and describe artifact', async () => {
    const versions = ok(await strongroom(people.alice, 'get', 'versions', 'vision', '-n', dev));
    expect(versions.out).toMatch(/^NAME\s+DIGEST\s+SIZE\s+PUBLISHER\s+PUBLISHED\s+SEALED\s+WITHDRAWN$/m);
    expect(versions.out).toMatch(/^v1\s+sha256:[0-9a-f]{12}\s+.*\s+frank\s+\S+\s+yes\s+no$/m);
    expect(versions.out).toMatch(/^v2 \(latest\)\s+sha256:[0-9a-f]{12}\s+.*\s+frank\s+\S+\s+yes\s+no$/m);
    const json = JSON.parse(
      ok(await strongroom(people.alice, 'get', 'versions', 'vision', '-n', dev, '-o', 'json')).out,
    ) as {
      name: string;
      sealed: boolean;
    }[];
    expect(json.map((v) => [v.name, v.sealed])).toEqual([
      ['v1', true],
      ['v2', true],
    ]);
    const missing = await strongroom(people.alice, 'get', 'versions', 'nope', '-n', dev);
    expect(missing.code).toBe(EXIT.notFound);
    const artifacts = ok(await strongroom(people.alice, 'get', 'artifacts', '-n', dev));
    expect(artifacts.out).toMatch(/^vision\s+confidential\s+v2\s+2\s+True\s+\S+$/m);
  });

  it('alice requests, bob and carol approve, the grant is Active; alice cannot quarantine it, erin can; alice revokes it', async () => {
    const { alice, bob, carol, erin } = people;
    // A server-side dry run first: the admission policies see it, nothing is created.
    const dry = ok(
      await strongroom(
        alice,
        'grant',
        'create',
        'eval',
        '-n',
        dev,
        '--artifact',
        'vision',
        '--versions',
        'v1',
        '--service-account',
        `${prod}/inference`,
        '--cross-environment',
        '--duration',
        '24h',
        '--purpose',
        'Evaluate vision on the December benchmark',
        '--dry-run=server',
      ),
    );
    expect(dry.out).toMatch(/server dry run: nothing was created/);
    const created = ok(
      await strongroom(
        alice,
        'grant',
        'create',
        'eval',
        '-n',
        dev,
        '--artifact',
        'vision',
        '--versions',
        'v1',
        '--service-account',
        `${prod}/inference`,
        '--cross-environment',
        '--duration',
        '24h',
        '--purpose',
        'Evaluate vision on the December benchmark',
      ),
    );
    expect(created.out).toContain(`accessgrant ${dev}/eval created as alice`);
    const pending = await grantIs(
      'eval',
      (g) => g.status?.reason === 'AwaitingApproval',
      'awaiting approval',
    );
    expect(pending.spec.requester).toBe('alice');
    const table = ok(await strongroom(alice, 'get', 'grants', '-n', dev));
    expect(table.out).toMatch(
      /^eval\s+vision\s+read\s+v1\s+cli-prod-\w+\/inference\s+Pending \(AwaitingApproval\)\s+0\/2\s/m,
    );

    // Creating it again: the API server says it exists (refused, exit 3).
    const again = await strongroom(
      alice,
      'grant',
      'create',
      'eval',
      '-n',
      dev,
      '--artifact',
      'vision',
      '--service-account',
      'x',
      '--purpose',
      'p',
    );
    expect(again.code).toBe(EXIT.refused);
    expect(again.err).toMatch(/it already exists .*choose another name/);

    ok(await strongroom(bob, 'approve', 'eval', '-n', dev, '--comment', 'benchmark only'));
    ok(await strongroom(carol, 'approve', 'eval', '-n', dev));
    await grantIs('eval', (g) => g.status?.phase === 'Active', 'Active');
    const list = JSON.parse(ok(await strongroom(alice, 'get', 'grants', '-n', dev, '-o', 'json')).out) as {
      kind: string;
      items: AccessGrant[];
    };
    expect(list.kind).toBe('List');
    expect(list.items[0]?.metadata).not.toHaveProperty('managedFields');
    const eval_ = list.items.find((g) => g.metadata.name === 'eval');
    expect(eval_?.status?.phase).toBe('Active');
    expect(eval_?.status?.approvedBy).toEqual(['bob', 'carol']);
    expect(ok(await strongroom(alice, 'get', 'grants', 'eval', '-n', dev)).out).toMatch(/\sActive\s+2\/2\s/);

    // describe, with the operator's audit log pinned to the cluster's audit key.
    const vkey = join(suite.operator.auditLogDir, '..', 'audit.vkey');
    writeFileSync(vkey, await auditVerifierKey(admin.core, opNs));
    const described = ok(
      await strongroom(
        alice,
        'describe',
        'grant',
        'eval',
        '-n',
        dev,
        '--audit-log',
        suite.operator.auditLogDir,
        '--public-key',
        vkey,
      ),
    );
    expect(described.out).toMatch(/^Requester:\s+alice$/m);
    expect(described.out).toMatch(/^Artifact:\s+vision \(confidential\)$/m);
    expect(described.out).toMatch(/^Phase:\s+Active$/m);
    expect(described.out).toMatch(/Approvals \(2 of 2 counted\):/);
    expect(described.out).toMatch(/^\s+bob\s+strongroom:approvers\s+\S+\s+yes\s+benchmark only$/m);
    expect(described.out).toMatch(new RegExp(`^\\s+${prod}/inference$`, 'm'));
    expect(described.out).toMatch(/: verified, origin strongroom\.audit\//);
    expect(described.out).toMatch(/grant-created\s+Created\s+alice/);
    expect(described.out).toMatch(/grant-approved\s+Approved\s+bob/);
    expect(described.out).toMatch(/grant-activated\s+Granted/);
    const doc = JSON.parse(
      ok(await strongroom(alice, 'describe', 'grant', 'eval', '-n', dev, '-o', 'json')).out,
    ) as Record<string, unknown>;
    expect(doc).toMatchObject({
      kind: 'GrantDescription',
      approvals: { counted: 2, required: 2 },
      releases: { available: false },
    });
    const artifact = ok(await strongroom(alice, 'describe', 'artifact', 'vision', '-n', dev));
    expect(artifact.out).toMatch(/^\s+eval\s+read\s+v1\s+Active\s+2\/2\s+\S+\s+cli-prod-\w+\/inference$/m);

    // Quarantine: only the security team. alice is refused with the rule and the policy's words.
    const byAlice = await strongroom(alice, 'quarantine', 'eval', '-n', dev, '--reason', 'self-inflicted');
    expect(byAlice.code).toBe(EXIT.refused);
    expect(byAlice.err).toMatch(
      /quarantining AccessGrant cli-dev-\w+\/eval: only the security groups .* may add, change or lift a quarantine \(the admission policy strongroom-grant-quarantine said: only the security team \(groups strongroom:security\) may add the quarantine annotation strongroom\.dev\/quarantined\)/,
    );
    expect(
      ok(await strongroom(erin, 'quarantine', 'eval', '-n', dev, '--reason', 'unusual reads from prod')).out,
    ).toContain(`accessgrant ${dev}/eval quarantined`);
    await grantIs('eval', (g) => g.status?.reason === 'Quarantined', 'quarantined');
    expect(ok(await strongroom(alice, 'get', 'grants', '-n', dev)).out).toMatch(
      /^eval\s.*Denied \(Quarantined\)/m,
    );
    const liftByAlice = await strongroom(alice, 'unquarantine', 'eval', '-n', dev);
    expect(liftByAlice.code).toBe(EXIT.refused);
    expect(liftByAlice.err).toMatch(/may lift the quarantine annotation/);
    ok(await strongroom(erin, 'unquarantine', 'eval', '-n', dev));
    await grantIs('eval', (g) => g.status?.phase === 'Active', 'Active again');
    const nothing = ok(await strongroom(erin, 'unquarantine', 'eval', '-n', dev));
    expect(nothing.err).toMatch(/not quarantined; nothing to lift/);

    // Revocation: anyone who may update the grant; permanent.
    ok(await strongroom(alice, 'revoke', 'eval', '-n', dev, '--reason', 'the evaluation is over'));
    const revoked = await grantIs('eval', (g) => g.status?.phase === 'Revoked', 'revoked');
    expect(revoked.status?.reason).toBe('RevokedByAdministrator');
    expect(ok(await strongroom(alice, 'revoke', 'eval', '-n', dev, '--reason', 'again')).err).toMatch(
      /already revoked/,
    );

    // bob may read grants but not create them: RBAC's refusal, explained, exit 3.
    const bobCreates = await strongroom(
      bob,
      'grant',
      'create',
      'bobs',
      '-n',
      dev,
      '--artifact',
      'vision',
      '--service-account',
      'x',
      '--purpose',
      'p',
    );
    expect(bobCreates.code).toBe(EXIT.refused);
    expect(bobCreates.err).toMatch(/you lack the right \(RBAC\)/);
  });

  it('the kubectl plugin wrapper runs the same commands', async () => {
    const r = await runProcess(
      join(cluster.binDir, 'kubectl'),
      ['strongroom', 'get', 'versions', 'vision', '-n', dev],
      {
        env: {
          ...process.env,
          KUBECONFIG: people.alice.kubeconfig,
          PATH: `${join(root, 'cli')}:${process.env.PATH ?? ''}`,
        },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^v2 \(latest\)\s/m);
    const help = await runProcess(join(cluster.binDir, 'kubectl'), ['strongroom', '--help'], {
      env: { ...process.env, PATH: `${join(root, 'cli')}:${process.env.PATH ?? ''}` },
    });
    expect(help.stdout).toMatch(/^Usage: kubectl strongroom /);
  });
});
