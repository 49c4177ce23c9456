/**
 * Lifting an identity quarantine takes the security team (issue 18, item 4): the ValidatingAdmissionPolicy
 * strongroom-identity-quarantine (core/governance/admission-policies.ts) guards ConfigMap strongroom-quarantines in
 * the operator namespace, tried through the real API server by distinct users, each with RBAC that would let them
 * write the ConfigMap, so that only the policy decides:
 * - the operator (its own user, through the QuarantineStore the operator uses) creates it and adds keys, and may not
 *   remove or change a key or delete the ConfigMap;
 * - alice (a requester) may not lift her own quarantine, nor write the ConfigMap at all;
 * - erin (strongroom:security) lifts a quarantine and may delete the ConfigMap;
 * - other ConfigMaps of the operator namespace are not concerned;
 * - the namespace controller deletes it with the operator namespace (with a binding that denied without its
 *   parameter, the governance ConfigMap, deleted first, would leave it stuck: tried, it times out).
 * And the same for the published audit checkpoints (review finding 4 of issue 18): the policy
 * strongroom-audit-checkpoints guards ConfigMap strongroom-audit-checkpoints, where the operator (through the
 * CheckpointPublisher it uses) may create it, add keys and replace a checkpoint only by a larger one of the same
 * origin; rewinding, forking or removing a writer's checkpoint or deleting the ConfigMap takes the security team.
 * (In this file rather than one of its own: it needs the governance policies on a control plane of its own.)
 */
import { randomBytes } from 'node:crypto';
import { AdmissionregistrationV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCheckpoint } from '../../core/audit/index.ts';
import { makeKeys } from '../../core/audit/testdata/fixtures.ts';
import {
  AUDIT_CHECKPOINTS_CONFIGMAP,
  GOVERNANCE_CONFIGMAP,
  QUARANTINES_CONFIGMAP,
  governancePolicies,
} from '../../core/governance/admission-policies.ts';
import { governanceDefaults } from '../../core/governance/defaults.ts';
import {
  formatQuarantineRecord,
  parseQuarantines,
  type QuarantineRecord,
} from '../../core/policy/quarantine.ts';
import { CheckpointPublisher } from '../../operator/broker/checkpoint-publisher.ts';
import { OperatorMetrics } from '../../operator/observability/metrics.ts';
import { QuarantineStore } from '../../operator/quarantine/store.ts';
import { memoryLogger } from '../harness/logger.ts';
import { startCluster } from '../cluster/cluster.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { kubectl, must, type CommandResult } from '../harness/kubectl.ts';
import { clients, eventually, operatorUser } from '../harness/operator.ts';
import { farewell, meetThePeople, type Person } from './people.ts';

// A control plane of its own: this file installs the governance policies (parameterized ValidatingAdmissionPolicies)
// with their params ConfigMap in its own operator namespace, and Kubernetes 1.35.4 answers "no params found" when
// several namespaces on one API server do so (docs/install.md, Troubleshooting). Registered first: stopped last.
const cluster = await startCluster({ log: () => undefined, binaries: 'test', pods: false });
afterAll(async () => {
  await cluster.stop();
}, 120_000);

const opNs = 'qg-system';
const appNs = 'qg-apps';
const admin = clients(cluster.kubeconfig);
const operator = clients(userKubeconfig(cluster, operatorUser(opNs)));
let people: Awaited<ReturnType<typeof meetThePeople>>;

const why = (alertId: string): QuarantineRecord => ({
  since: '2026-12-07T10:00:00.000Z',
  alertId,
  rule: alertId === '' ? '' : 'bulk-access',
  severity: alertId === '' ? '' : 'high',
  reason: 'test',
});
const record = (alertId: string): string => formatQuarantineRecord(why(alertId));
const store = new QuarantineStore({
  core: operator.core,
  namespace: opNs,
  informer: { get: () => undefined, hasSynced: () => false },
});

function refused(result: CommandResult, why: RegExp): void {
  expect(result.code, `expected a refusal, got: ${result.stdout}`).not.toBe(0);
  expect(result.stderr).toMatch(why);
}

function accepted(result: CommandResult): void {
  expect(result.code, result.stderr).toBe(0);
}

/** A JSON patch of the quarantines ConfigMap as `person`. */
function patchAs(person: Person, ops: unknown[]): Promise<CommandResult> {
  return person.kubectl([
    'patch',
    'configmap',
    QUARANTINES_CONFIGMAP,
    '-n',
    opNs,
    '--type=json',
    '-p',
    JSON.stringify(ops),
  ]);
}

async function data(): Promise<Record<string, string>> {
  const cm = await admin.core.readNamespacedConfigMap({ namespace: opNs, name: QUARANTINES_CONFIGMAP });
  return cm.data ?? {};
}

/** The data of ConfigMap strongroom-audit-checkpoints. */
async function checkpoints(): Promise<Record<string, string>> {
  const cm = await admin.core.readNamespacedConfigMap({ namespace: opNs, name: AUDIT_CHECKPOINTS_CONFIGMAP });
  return cm.data ?? {};
}

/** The operator's own write: the ConfigMap as read, with `change` applied, replaced at its resourceVersion. */
async function operatorReplace(change: (cm: V1ConfigMap) => void): Promise<unknown> {
  const cm = await operator.core.readNamespacedConfigMap({ namespace: opNs, name: QUARANTINES_CONFIGMAP });
  change(cm);
  return operator.core
    .replaceNamespacedConfigMap({ namespace: opNs, name: QUARANTINES_CONFIGMAP, body: cm })
    .then(
      () => 'accepted',
      (error: unknown) => error,
    );
}

beforeAll(async () => {
  await must(cluster, ['create', 'namespace', opNs]);
  await must(cluster, ['create', 'namespace', appNs]);
  // The governance table with its defaults (securityGroups strongroom:security).
  await must(cluster, ['create', 'configmap', GOVERNANCE_CONFIGMAP, '-n', opNs]);
  people = await meetThePeople(cluster, [appNs]);
  // RBAC that lets alice, erin and the operator write ConfigMaps in the operator namespace: only the policy decides.
  await must(cluster, [
    'create',
    'role',
    'qg-configmaps',
    '-n',
    opNs,
    '--verb=get,list,watch,create,update,patch,delete',
    '--resource=configmaps',
  ]);
  await must(cluster, [
    'create',
    'rolebinding',
    'qg-configmaps',
    '-n',
    opNs,
    '--role=qg-configmaps',
    '--group=ml-researchers',
    '--group=strongroom:security',
    `--user=${operatorUser(opNs)}`,
  ]);
  const admission = admin.kc.makeApiClient(AdmissionregistrationV1Api);
  for (const { policy, binding } of governancePolicies({
    operatorNamespace: opNs,
    operatorUser: operatorUser(opNs),
    defaults: governanceDefaults(),
  })) {
    await admission.createValidatingAdmissionPolicy({ body: policy });
    await admission.createValidatingAdmissionPolicyBinding({ body: binding });
  }
  // Policies take effect within a second or two: wait until a server-side dry run by alice is refused.
  await eventually('the identity-quarantine policy', async () => {
    const r = await people.alice.kubectl([
      'create',
      'configmap',
      QUARANTINES_CONFIGMAP,
      '-n',
      opNs,
      '--from-literal=x.y={}',
      '--dry-run=server',
    ]);
    return r.code !== 0 && /only the security team and the operator/.test(r.stderr) ? true : undefined;
  });
}, 300_000);

afterAll(async () => {
  await farewell(cluster);
});

describe('ConfigMap strongroom-audit-checkpoints', () => {
  const keys = makeKeys();
  const origin = (writer: string): string => `strongroom.audit/kubernetes/${writer}`;
  /** A signed checkpoint note of `writer`'s log, as the operator publishes them. */
  const note = (size: number, writer = 'strongroom-0', root: Buffer = randomBytes(32)): string =>
    signCheckpoint({ origin: origin(writer), size, rootHash: root, extensions: [] }, keys.signer);
  /** The operator's publisher for `writer`, with the operator's own credentials. */
  const publisher = (writer: string): CheckpointPublisher =>
    new CheckpointPublisher({
      core: operator.core,
      namespace: opNs,
      writer,
      logger: memoryLogger().logger,
      metrics: new OperatorMetrics(),
      events: { record: () => undefined },
    });
  /** The operator's own write of the ConfigMap as read, with `change` applied. */
  const operatorWrites = async (change: (data: Record<string, string>) => void): Promise<unknown> => {
    const cm = await operator.core.readNamespacedConfigMap({
      namespace: opNs,
      name: AUDIT_CHECKPOINTS_CONFIGMAP,
    });
    cm.data ??= {};
    change(cm.data);
    return operator.core
      .replaceNamespacedConfigMap({ namespace: opNs, name: AUDIT_CHECKPOINTS_CONFIGMAP, body: cm })
      .then(
        () => 'accepted',
        (error: unknown) => error,
      );
  };
  const operatorRefused =
    /the operator may only add keys to ConfigMap strongroom-audit-checkpoints and replace a checkpoint by a larger one of the same origin; removing a key, rewinding or rewriting a checkpoint or deleting the ConfigMap is for the security team \(groups strongroom:security\)/;
  const patchCheckpointsAs = (person: Person, ops: unknown[]): Promise<CommandResult> =>
    person.kubectl([
      'patch',
      'configmap',
      AUDIT_CHECKPOINTS_CONFIGMAP,
      '-n',
      opNs,
      '--type=json',
      '-p',
      JSON.stringify(ops),
    ]);
  let latest: string;

  beforeAll(async () => {
    await eventually('the audit-checkpoints policy', async () => {
      const r = await people.alice.kubectl([
        'create',
        'configmap',
        AUDIT_CHECKPOINTS_CONFIGMAP,
        '-n',
        opNs,
        '--from-literal=x=y',
        '--dry-run=server',
      ]);
      return r.code !== 0 &&
        /only the security team and the operator may write ConfigMap strongroom-audit-checkpoints/.test(
          r.stderr,
        )
        ? true
        : undefined;
    });
  });

  it('the operator creates it and publishes growing checkpoints of each writer through its publisher', async () => {
    const zero = publisher('strongroom-0');
    const one = publisher('strongroom-1');
    for (const [p, n] of [
      [zero, note(5)],
      [one, note(3, 'strongroom-1')],
      [zero, note(9)],
    ] as const) {
      p.publish(n);
      await p.idle();
      expect(p.refused).toBeUndefined();
    }
    latest = note(12);
    zero.publish(latest);
    await zero.stop();
    await one.stop();
    const data = await checkpoints();
    expect(Object.keys(data).sort()).toEqual(['strongroom-0', 'strongroom-1']);
    expect(data['strongroom-0']).toBe(latest);
  });

  it('the operator may not rewind, fork, re-origin, garble or remove a checkpoint, nor delete the ConfigMap', async () => {
    const root = Buffer.from(latest.split('\n')[2] ?? '', 'base64');
    expect(root).toHaveLength(32);
    for (const [what, change] of [
      ['a smaller checkpoint', (d: Record<string, string>) => (d['strongroom-0'] = note(4))],
      ['the same size with another root', (d: Record<string, string>) => (d['strongroom-0'] = note(12))],
      ['another origin', (d: Record<string, string>) => (d['strongroom-0'] = note(40, 'strongroom-1'))],
      ['garbage', (d: Record<string, string>) => (d['strongroom-0'] = 'not a checkpoint')],
      ['a removed key', (d: Record<string, string>) => delete d['strongroom-1']],
    ] as const) {
      const result = await operatorWrites(change);
      expect(result, what).toMatchObject({ code: 403 });
      expect(String((result as { body?: unknown }).body), what).toMatch(operatorRefused);
    }
    const deleted = await operator.core
      .deleteNamespacedConfigMap({ namespace: opNs, name: AUDIT_CHECKPOINTS_CONFIGMAP })
      .then(
        () => 'accepted',
        (error: unknown) => error,
      );
    expect(deleted).toMatchObject({ code: 403 });
    expect((await checkpoints())['strongroom-0']).toBe(latest);
    // The same tree re-signed (same size and root), and a larger one, are what the operator may write.
    expect(await operatorWrites((d) => (d['strongroom-0'] = note(12, 'strongroom-0', root)))).toBe(
      'accepted',
    );
    latest = note(13);
    expect(await operatorWrites((d) => (d['strongroom-0'] = latest))).toBe('accepted');
  });

  it('alice (a requester) may not write it at all', async () => {
    for (const ops of [
      [{ op: 'replace', path: '/data/strongroom-0', value: note(99) }],
      [{ op: 'add', path: '/data/strongroom-9', value: note(1, 'strongroom-9') }],
      [{ op: 'remove', path: '/data/strongroom-1' }],
    ])
      refused(
        await patchCheckpointsAs(people.alice, ops),
        /only the security team and the operator may write ConfigMap strongroom-audit-checkpoints/,
      );
    refused(
      await people.alice.kubectl(['delete', 'configmap', AUDIT_CHECKPOINTS_CONFIGMAP, '-n', opNs]),
      /only the security team/,
    );
    expect((await checkpoints())['strongroom-0']).toBe(latest);
  });

  it('erin (security) may rewind or remove a checkpoint and delete the ConfigMap; the operator creates it again', async () => {
    accepted(
      await patchCheckpointsAs(people.erin, [{ op: 'replace', path: '/data/strongroom-0', value: note(2) }]),
    );
    accepted(await patchCheckpointsAs(people.erin, [{ op: 'remove', path: '/data/strongroom-1' }]));
    expect(Object.keys(await checkpoints())).toEqual(['strongroom-0']);
    accepted(await people.erin.kubectl(['delete', 'configmap', AUDIT_CHECKPOINTS_CONFIGMAP, '-n', opNs]));
    const again = publisher('strongroom-0');
    again.publish(note(14));
    await again.stop();
    expect(again.refused).toBeUndefined();
    expect(Object.keys(await checkpoints())).toEqual(['strongroom-0']);
  });
});

describe('ConfigMap strongroom-quarantines', () => {
  it('the operator creates it and adds keys through its store', async () => {
    await expect(store.add({ namespace: appNs, serviceAccount: 'trainer' }, why('a-1'))).resolves.toBe(
      'added',
    );
    await expect(store.add({ namespace: appNs, serviceAccount: 'bulk' }, why('a-2'))).resolves.toBe('added');
    // Idempotent: a key that is there is left as it is.
    await expect(store.add({ namespace: appNs, serviceAccount: 'bulk' }, why('a-3'))).resolves.toBe(
      'present',
    );
    const keys = parseQuarantines(await data());
    expect([...keys.byKey.keys()]).toEqual([`${appNs}.bulk`, `${appNs}.trainer`]);
    expect(keys.byKey.get(`${appNs}.bulk`)?.record.alertId).toBe('a-2');
  });

  it('the operator may not remove a key, change one, or delete the ConfigMap', async () => {
    const removed = await operatorReplace((cm) => {
      delete cm.data?.[`${appNs}.trainer`];
    });
    expect(removed).toMatchObject({ code: 403 });
    expect(String((removed as { body?: unknown }).body)).toMatch(/the operator may only add keys/);
    const changed = await operatorReplace((cm) => {
      if (cm.data) cm.data[`${appNs}.trainer`] = record('');
    });
    expect(changed).toMatchObject({ code: 403 });
    const deleted = await operator.core
      .deleteNamespacedConfigMap({ namespace: opNs, name: QUARANTINES_CONFIGMAP })
      .then(
        () => 'accepted',
        (error: unknown) => error,
      );
    expect(deleted).toMatchObject({ code: 403 });
    expect(Object.keys(await data())).toEqual([`${appNs}.bulk`, `${appNs}.trainer`]);
  });

  it('alice (a requester) cannot lift her quarantine, add one, or delete the ConfigMap', async () => {
    refused(
      await patchAs(people.alice, [{ op: 'remove', path: `/data/${appNs}.trainer` }]),
      /only the security team and the operator may write ConfigMap strongroom-quarantines; removing a key \(lifting a quarantine\).*strongroom:security/,
    );
    refused(
      await patchAs(people.alice, [{ op: 'add', path: `/data/${appNs}.other`, value: record('') }]),
      /only the security team/,
    );
    refused(
      await people.alice.kubectl(['delete', 'configmap', QUARANTINES_CONFIGMAP, '-n', opNs]),
      /only the security team/,
    );
    expect(Object.keys(await data())).toEqual([`${appNs}.bulk`, `${appNs}.trainer`]);
  });

  it('erin (security) lifts a quarantine and adds one by hand', async () => {
    accepted(await patchAs(people.erin, [{ op: 'remove', path: `/data/${appNs}.trainer` }]));
    accepted(await patchAs(people.erin, [{ op: 'add', path: `/data/${appNs}.manual`, value: record('') }]));
    expect(Object.keys(await data())).toEqual([`${appNs}.bulk`, `${appNs}.manual`]);
    // The operator can quarantine the lifted identity again (adding is all it may do).
    await expect(store.add({ namespace: appNs, serviceAccount: 'trainer' }, why('a-4'))).resolves.toBe(
      'added',
    );
  });

  it('leaves the other ConfigMaps of the operator namespace alone', async () => {
    accepted(
      await people.alice.kubectl(['create', 'configmap', 'unrelated', '-n', opNs, '--from-literal=a=b']),
    );
    accepted(await people.alice.kubectl(['delete', 'configmap', 'unrelated', '-n', opNs]));
  });

  it('erin may delete the ConfigMap (every quarantine lifted); the operator creates it again', async () => {
    accepted(await people.erin.kubectl(['delete', 'configmap', QUARANTINES_CONFIGMAP, '-n', opNs]));
    await expect(store.add({ namespace: appNs, serviceAccount: 'trainer' }, why('a-5'))).resolves.toBe(
      'added',
    );
    expect(Object.keys(await data())).toEqual([`${appNs}.trainer`]);
  });

  it('lets the namespace controller delete it (and strongroom-audit-checkpoints) with the operator namespace', async () => {
    expect((await checkpoints())['strongroom-0']).toBeDefined();
    accepted(await kubectl(cluster, ['delete', 'namespace', opNs, '--wait=false']));
    const gone = await eventually(
      'the namespace controller to delete ConfigMaps strongroom-quarantines and strongroom-audit-checkpoints',
      async () => {
        const r = await kubectl(cluster, [
          '-n',
          opNs,
          'get',
          'configmap',
          QUARANTINES_CONFIGMAP,
          AUDIT_CHECKPOINTS_CONFIGMAP,
        ]);
        return r.code !== 0 && (r.stderr.match(/NotFound/g) ?? []).length === 2 ? true : undefined;
      },
      90_000,
      1000,
    ).catch(async (error: unknown) => {
      // Say why: the namespace controller records what it could not delete in the namespace's conditions.
      const ns = await kubectl(cluster, ['get', 'namespace', opNs, '-o', 'jsonpath={.status.conditions}']);
      throw new Error(`${String(error)}; namespace conditions: ${ns.stdout}`);
    });
    expect(gone).toBe(true);
  }, 120_000);
});
