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
 */
import { AdmissionregistrationV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
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
import { QuarantineStore } from '../../operator/quarantine/store.ts';
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

  it('lets the namespace controller delete it with the operator namespace', async () => {
    accepted(await kubectl(cluster, ['delete', 'namespace', opNs, '--wait=false']));
    const gone = await eventually(
      'the namespace controller to delete ConfigMap strongroom-quarantines',
      async () => {
        const r = await kubectl(cluster, ['-n', opNs, 'get', 'configmap', QUARANTINES_CONFIGMAP]);
        return r.code !== 0 && /NotFound/.test(r.stderr) ? true : undefined;
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
