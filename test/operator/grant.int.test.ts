/**
 * The AccessGrant controller against the real control plane: phases with reasons for every policy outcome, exact
 * expiry, and revocations published when access ends (seen in the operator's log and metrics; the broker subscribes
 * to the same bus in-process).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import type { AccessGrant } from '../../core/api/index.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { must } from '../harness/kubectl.ts';
import { clients, eventually, operatorUser, startOperator } from '../harness/operator.ts';
import {
  TEST_ADMIN,
  appendVersion,
  approval,
  artifactBody,
  condition,
  createArtifact,
  createGrant,
  getArtifact,
  getGrant,
  grantBody,
  sealedVersion,
} from '../harness/objects.ts';
import { grantWhen, operatorSuite, sealedArtifact } from '../harness/suite.ts';

const cluster = inject('cluster');
const suite = operatorSuite(cluster, {
  operatorNamespace: 'strongroom-op',
  namespaces: {
    dev: { name: 'ml-dev', environment: 'dev' },
    dev2: { name: 'ml-dev2', environment: 'dev' },
    prod: { name: 'ml-prod', environment: 'prod' },
    plain: { name: 'plain' },
  },
  operator: { identity: 'op-grants' },
  emptyOnTeardown: ['dev'],
  expectCleanExit: true,
});
const opNs = suite.operatorNamespace;
const { dev, dev2, prod, plain } = suite.namespaces;
const admin = clients(cluster.kubeconfig);

function phase(name: string, expected: string, ns = dev, timeoutMs = 30_000): Promise<AccessGrant> {
  const test = (g: AccessGrant) => g.status?.phase === expected;
  return grantWhen(admin.custom, ns, name, test, `grant ${name} ${expected}`, timeoutMs, 50);
}

/** Revocations published on the leader: by a controller, or first derived from the informers (revocation/derive.ts). */
function published(l: { message?: string }): boolean {
  return l.message === 'published revocation' || l.message === 'derived revocation';
}

function revocations(reason: string): number {
  return suite.operator.lines().filter((l) => published(l) && l.reason === reason).length;
}

beforeAll(async () => {
  await sealedArtifact(admin.custom, dev, 'resnet', { classification: 'internal' });
  await sealedArtifact(admin.custom, dev, 'vault', { classification: 'restricted' });
});

describe('AccessGrant phases', () => {
  it('a grant in the same environment is Active, resolves latest, and reads well in kubectl', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('trainer', 'resnet', { subjects: [{ namespace: dev2, serviceAccount: 'trainer' }] }),
    );
    const g = await phase('trainer', 'Active');
    expect(g.status).toMatchObject({
      reason: 'Granted',
      resolvedVersions: ['v1'],
      subjectSummary: `${dev2}/trainer`,
      observedGeneration: g.metadata.generation,
    });
    expect(condition(g, 'Ready')).toMatchObject({
      status: 'True',
      observedGeneration: g.metadata.generation,
    });
    const table = await kubectl(cluster, ['get', 'accessgrants', '-n', dev, 'trainer']);
    expect(table.stdout).toMatch(/trainer\s+.*Active/);
  });

  it('a subject in another environment without crossEnvironment is Denied, and with approval Active', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('to-prod', 'resnet', { subjects: [{ namespace: prod, serviceAccount: 'inference' }] }),
    );
    const denied = await phase('to-prod', 'Denied');
    expect(denied.status?.reason).toBe('CrossEnvironmentNotAllowed');
    expect(denied.status?.message).toContain(prod);
    await createGrant(
      admin.custom,
      dev,
      grantBody('to-prod-approved', 'resnet', {
        subjects: [{ namespace: prod, serviceAccount: 'inference' }],
        crossEnvironment: true,
        approvals: [approval('security@example.com')],
      }),
    );
    await phase('to-prod-approved', 'Active');
    const events = await kubectl(cluster, [
      'get',
      'events',
      '-n',
      dev,
      '--field-selector',
      'involvedObject.name=to-prod',
    ]);
    expect(events.stdout).toContain('CrossEnvironmentNotAllowed');
  });

  it('a restricted artifact never crosses environments, approved or not', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('vault-to-prod', 'vault', {
        subjects: [{ namespace: prod, serviceAccount: 'inference' }],
        crossEnvironment: true,
        approvals: [approval('a@example.com'), approval('b@example.com')],
      }),
    );
    expect((await phase('vault-to-prod', 'Denied')).status?.reason).toBe('RestrictedCannotCrossEnvironments');
  });

  it('a grant for a missing artifact is Denied, and turns Active when the artifact appears', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('early', 'later-model', { subjects: [{ namespace: dev, serviceAccount: 'trainer' }] }),
    );
    expect((await phase('early', 'Denied')).status?.reason).toBe('ArtifactNotFound');
    await createArtifact(admin.custom, dev, artifactBody('later-model'));
    const a = await eventually('later-model key', async () => {
      const x = await getArtifact(admin.custom, dev, 'later-model');
      return x.status?.recipientPublicKey ? x : undefined;
    });
    expect((await phase('early', 'Pending')).status?.reason).toBe('NoSealedVersion');
    const { version } = await sealedVersion(a, 'v1');
    await appendVersion(admin.custom, a, version);
    await phase('early', 'Active');
  });

  it('expires within 1 s of expiresAt, publishing a revocation, with no polling in between', async () => {
    const expiresAt = new Date(Date.now() + 6_000);
    await createGrant(
      admin.custom,
      dev,
      grantBody('short', 'resnet', {
        subjects: [{ namespace: dev, serviceAccount: 'trainer' }],
        expiresAt: expiresAt.toISOString(),
      }),
    );
    const active = await phase('short', 'Active');
    expect(active.status?.expiresAt).toBeDefined();
    expect(new Date(active.status?.expiresAt ?? 0).getTime()).toBe(expiresAt.getTime());
    const before = revocations('grant-expired');
    const expired = await phase('short', 'Expired', dev, 15_000);
    const seenAt = Date.now();
    expect(seenAt - expiresAt.getTime()).toBeGreaterThanOrEqual(0);
    expect(seenAt - expiresAt.getTime()).toBeLessThan(1_000);
    expect(condition(expired, 'Ready')?.status).toBe('False');
    // The transition time says when it really flipped.
    const flipped = new Date(condition(expired, 'Ready')?.lastTransitionTime ?? 0).getTime();
    expect(Math.abs(flipped - expiresAt.getTime())).toBeLessThan(1_500);
    await eventually('revocation logged', () => (revocations('grant-expired') > before ? true : undefined));
  });

  it('an administrator revocation is sticky and published; deleting an Active grant publishes too', async () => {
    await kubectl(cluster, [
      'annotate',
      'accessgrant',
      '-n',
      dev,
      'trainer',
      'strongroom.dev/revoked=leak suspected',
    ]);
    const revoked = await phase('trainer', 'Revoked');
    expect(revoked.status?.reason).toBe('RevokedByAdministrator');
    await eventually('revoked published', () => (revocations('grant-revoked') > 0 ? true : undefined));
    await kubectl(cluster, ['annotate', 'accessgrant', '-n', dev, 'trainer', 'strongroom.dev/revoked-']);
    await sleep(1_500);
    expect((await getGrant(admin.custom, dev, 'trainer')).status?.phase).toBe('Revoked');

    const before = revocations('grant-deleted');
    await kubectl(cluster, ['delete', 'accessgrant', '-n', dev, 'to-prod-approved']);
    await eventually('deleted published', () => (revocations('grant-deleted') > before ? true : undefined));
    const metrics = (await suite.operator.get('/metrics')).body;
    expect(metrics).toMatch(/strongroom_revocations_published_total\{reason="grant-deleted"\} [1-9]/);
    expect(metrics).toMatch(/strongroom_revocations_published_total\{reason="grant-expired"\} [1-9]/);
  });

  it('a grant binds to the artifact object: deleted and created again under the same name, it stays revoked', async () => {
    await createArtifact(admin.custom, dev, artifactBody('phoenix'));
    const first = await eventually('phoenix key', async () => {
      const x = await getArtifact(admin.custom, dev, 'phoenix');
      return x.status?.recipientPublicKey ? x : undefined;
    });
    await appendVersion(admin.custom, first, (await sealedVersion(first, 'v1')).version);
    await createGrant(
      admin.custom,
      dev,
      grantBody('phoenix-reader', 'phoenix', { subjects: [{ namespace: dev, serviceAccount: 'trainer' }] }),
    );
    const active = await phase('phoenix-reader', 'Active');
    expect(active.status?.artifactUid).toBe(first.metadata.uid);
    await kubectl(cluster, ['delete', 'modelartifact', '-n', dev, 'phoenix', '--timeout=30s']);
    await createArtifact(admin.custom, dev, artifactBody('phoenix'));
    const second = await eventually('new phoenix key', async () => {
      const x = await getArtifact(admin.custom, dev, 'phoenix');
      return x.status?.recipientPublicKey && x.metadata.uid !== first.metadata.uid ? x : undefined;
    });
    await appendVersion(admin.custom, second, (await sealedVersion(second, 'v1')).version);
    await eventually('new phoenix sealed', async () => {
      const x = await getArtifact(admin.custom, dev, 'phoenix');
      return x.status?.latestVersion === 'v1' ? x : undefined;
    });
    const replaced = await phase('phoenix-reader', 'Revoked');
    expect(replaced.status?.reason).toBe('ArtifactReplaced');
    expect(replaced.status?.artifactUid).toBe(first.metadata.uid);
  });

  it('withdrawing the only version a grant covers revokes it', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('pinned', 'later-model', {
        subjects: [{ namespace: dev, serviceAccount: 'trainer' }],
        versions: { match: 'named', names: ['v1'] },
      }),
    );
    await phase('pinned', 'Active');
    await kubectl(cluster, [
      'patch',
      'modelartifact',
      '-n',
      dev,
      'later-model',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { withdrawnVersions: ['v1'] } }),
    ]);
    expect((await phase('pinned', 'Revoked')).status?.reason).toBe('VersionsWithdrawn');
    await eventually('withdrawal published', () =>
      suite.operator.lines().some((l) => published(l) && l.name === 'pinned') ? true : undefined,
    );
  });
});

describe('the classification table', () => {
  async function applyTable(name: string, data: Record<string, string>): Promise<void> {
    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: opNs },
      data,
    });
    const applied = await kubectl(cluster, ['apply', '-f', '-'], { input: manifest });
    expect(applied.code, applied.stderr).toBe(0);
  }

  it('counts only approvals in an approver group by someone other than the requester, and records them', async () => {
    // vault is restricted: 2 approvals even within one environment (the default table).
    const own = { ...approval(TEST_ADMIN) };
    const outsider = { ...approval('outsider@example.com'), groups: ['ml-team'] };
    await createGrant(
      admin.custom,
      dev,
      grantBody('vault-local', 'vault', {
        subjects: [{ namespace: dev2, serviceAccount: 'trainer' }],
        approvals: [own, outsider, approval('a@example.com')],
      }),
    );
    const waiting = await phase('vault-local', 'Pending');
    expect(waiting.status).toMatchObject({
      reason: 'AwaitingApproval',
      classification: 'restricted',
      approvedBy: ['a@example.com'],
    });
    expect(waiting.status?.message).toContain(
      'waiting for 1 more approval from members of strongroom:approvers',
    );
    expect(waiting.status?.message).toContain(`${TEST_ADMIN} is the requester`);
    expect(waiting.status?.message).toContain('outsider@example.com is not approving as a member of');
    expect(condition(waiting, 'Approved')).toMatchObject({ status: 'False', reason: 'AwaitingApproval' });
    await kubectl(cluster, [
      'patch',
      'accessgrant',
      '-n',
      dev,
      'vault-local',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'add', path: '/spec/approvals/-', value: approval('b@example.com') }]),
    ]);
    const active = await phase('vault-local', 'Active');
    expect(active.status?.approvedBy).toEqual(['a@example.com', 'b@example.com']);
    expect(condition(active, 'Approved')).toMatchObject({ status: 'True', reason: 'Approved' });
  });

  it('a denial is final, and a namespace without an environment gets nothing above public', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('denied', 'resnet', {
        subjects: [{ namespace: dev, serviceAccount: 'trainer' }],
        denial: {
          deniedBy: 'carol@example.com',
          deniedAt: new Date().toISOString().replace(/\.\d+Z$/u, 'Z'),
          reason: 'no',
        },
      }),
    );
    const denied = await phase('denied', 'Denied');
    expect(denied.status?.reason).toBe('DeniedByApprover');
    expect(denied.status?.message).toContain('denied by carol@example.com');
    await createGrant(
      admin.custom,
      dev,
      grantBody('to-plain', 'resnet', {
        subjects: [{ namespace: plain, serviceAccount: 'trainer' }],
        crossEnvironment: true,
        approvals: [approval('a@example.com')],
      }),
    );
    const noEnv = await phase('to-plain', 'Denied');
    expect(noEnv.status?.reason).toBe('NoEnvironment');
    expect(noEnv.status?.message).toContain(`Namespace ${plain}`);
  });

  it('is re-read on change: a valid change re-evaluates grants, an invalid one is refused with a Warning event', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('table-watch', 'resnet', { subjects: [{ namespace: dev, serviceAccount: 'trainer' }] }),
    );
    await phase('table-watch', 'Active');
    const infoLine = async () =>
      (await suite.operator.get('/metrics')).body
        .split('\n')
        .find((l) => l.startsWith('strongroom_governance_config_info'));
    expect(await infoLine()).toMatch(/source="default"\} 1$/u);

    // internal grants now need an approval: the Active grant goes back to waiting, the metric names the new table.
    await applyTable('strongroom-governance', { 'internal.approvals': '1' });
    const waiting = await phase('table-watch', 'Pending');
    expect(waiting.status?.reason).toBe('AwaitingApproval');
    await eventually('metric follows', async () =>
      (await infoLine())?.includes('source="configmap"') ? true : undefined,
    );
    const hash = await infoLine();

    // An invalid change leaves the table in force and says why on the ConfigMap.
    await applyTable('strongroom-governance', { 'internal.approvals': 'one', 'internal.keylease': '1h' });
    const warning = await eventually('Warning event on the ConfigMap', async () => {
      const events = await kubectl(cluster, [
        'get',
        'events',
        '-n',
        opNs,
        '--field-selector',
        'involvedObject.name=strongroom-governance,reason=InvalidGovernanceConfig',
        '-o',
        'json',
      ]);
      const items = (JSON.parse(events.stdout) as { items: { type: string; message: string }[] }).items;
      return items[0];
    });
    expect(warning.type).toBe('Warning');
    expect(warning.message).toContain('internal.approvals="one" is invalid');
    expect(warning.message).toContain('internal.keylease="1h": unknown key');
    expect(
      suite.operator
        .lines()
        .some((l) => l.level === 'error' && String(l.message).includes('invalid governance ConfigMap')),
    ).toBe(true);
    expect(await infoLine()).toBe(hash);
    expect((await getGrant(admin.custom, dev, 'table-watch')).status?.reason).toBe('AwaitingApproval');

    // Deleting the ConfigMap brings back the defaults.
    await kubectl(cluster, ['delete', 'configmap', '-n', opNs, 'strongroom-governance']);
    await phase('table-watch', 'Active');
  });

  it('an invalid table at start-up stops the operator with every problem (exit 2)', async () => {
    await applyTable('broken-governance', { 'public.approvals': '-1', 'restricted.keyLease': '2d' });
    // The chart grants the operator its one table by name (operator/kube/permissions.ts): another name needs a
    // Role of its own, as it would in a cluster.
    const user = operatorUser(opNs);
    await must(
      cluster,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'Role',
            metadata: { name: 'read-broken-governance', namespace: opNs },
            rules: [
              {
                apiGroups: [''],
                resources: ['configmaps'],
                resourceNames: ['broken-governance'],
                verbs: ['get', 'list', 'watch'],
              },
            ],
          },
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'RoleBinding',
            metadata: { name: 'read-broken-governance', namespace: opNs },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-broken-governance' },
            subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
          },
        ],
      }),
    );
    const second = await startOperator({
      namespace: opNs,
      kubeconfig: suite.kubeconfig,
      identity: 'op-broken-table',
      args: ['--governance-config=broken-governance', '--no-leader-elect'],
    });
    const exit = await second.exited;
    expect(exit.code).toBe(2);
    const out = second.output();
    expect(out).toContain(`ConfigMap ${opNs}/broken-governance: the classification table has 2 problems:`);
    expect(out).toContain('public.approvals="-1" is invalid');
    expect(out).toContain('restricted.keyLease="2d" is invalid: expected a duration from 1m to 24h');
  });
});
