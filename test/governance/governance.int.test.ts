/**
 * Issue 14's bypasses, each tried by the attacker with their own credentials through the real API server, with
 * Strongroom's admission policies (core/governance/admission-policies.ts) installed and the real operator running.
 * People and their RBAC: test/governance/people.ts. The list of these tests and the rule each proves is in
 * docs/policy.md ("Governance: the tests").
 */
import { join } from 'node:path';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import {
  ENVIRONMENT_LABEL,
  GOVERNANCE_CONFIGMAP,
  QUARANTINE_ANNOTATION,
  governancePolicies,
} from '../../core/governance/admission-policies.ts';
import { governanceDefaults } from '../../core/governance/defaults.ts';
import { kubectl, run, type CommandResult } from '../cluster/kubectl.ts';
import { clients, eventually, root } from '../harness/operator.ts';
import { getArtifact, getGrant, rawRecipientKey, sealedVersion } from '../harness/objects.ts';
import { grantWhen, operatorSuite } from '../harness/suite.ts';
import { farewell, meetThePeople, type Person } from './people.ts';

const cluster = inject('cluster');
// The namespaces get their environments from dave (below), and the operator starts once the policies are in.
const suite = operatorSuite(cluster, {
  operatorNamespace: 'strongroom-gov',
  namespaces: { dev: { name: 'gov-dev' }, prod: { name: 'gov-prod' }, bare: { name: 'gov-bare' } },
  operator: { identity: 'op-governance' },
  autostart: false,
  emptyOnTeardown: ['dev', 'prod', 'bare'],
});
const opNs = suite.operatorNamespace;
const { dev, prod, bare } = suite.namespaces;
const admin = clients(cluster.kubeconfig);
const adminAdmission = admin.kc.makeApiClient(AdmissionregistrationV1Api);
const policies = governancePolicies({
  operatorNamespace: opNs,
  operatorUser: `strongroom-operator-${opNs}`,
  defaults: governanceDefaults(),
});
let people: Awaited<ReturnType<typeof meetThePeople>>;

const expires = () => new Date(Date.now() + 7 * 24 * 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');

function grantYaml(name: string, ns: string, artifact: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: { name, namespace: ns },
    spec: {
      artifactRef: { name: artifact },
      versions: { match: 'latest' },
      mode: 'read',
      subjects: [{ namespace: ns, serviceAccount: 'trainer' }],
      purpose: 'governance test',
      expiresAt: expires(),
      ...extra,
    },
  });
}

function artifactYaml(name: string, ns: string, classification: string): string {
  return JSON.stringify({
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { name, namespace: ns },
    spec: {
      classification,
      owner: { team: 'vision' },
      storage: { persistentVolumeClaim: { claimName: 'models' }, path: name },
    },
  });
}

/** `kubectl patch accessgrant|modelartifact --type=json` as `person`. */
function patch(
  person: Person,
  kind: string,
  ns: string,
  name: string,
  ops: unknown[],
): Promise<CommandResult> {
  return person.kubectl(['patch', kind, name, '-n', ns, '--type=json', '-p', JSON.stringify(ops)]);
}

function refused(result: CommandResult, why: RegExp): void {
  expect(result.code, `expected a refusal, got: ${result.stdout}`).not.toBe(0);
  expect(result.stderr).toMatch(why);
}

function accepted(result: CommandResult): void {
  expect(result.code, result.stderr).toBe(0);
}

async function grantIn(
  ns: string,
  name: string,
  test: (g: AccessGrant) => boolean,
  what: string,
  timeoutMs = 30_000,
) {
  return grantWhen(admin.custom, ns, name, test, `grant ${ns}/${name}: ${what}`, timeoutMs);
}

const phaseIs = (phase: string, reason?: string) => (g: AccessGrant) =>
  g.status?.phase === phase && (reason === undefined || g.status.reason === reason);

/** `kubectl strongroom <args>` as `person`, through the kubectl plugin on PATH. */
function kubectlStrongroom(person: Person, args: readonly string[]): Promise<CommandResult> {
  return run(join(cluster.binDir, 'kubectl'), ['strongroom', ...args], {
    env: {
      ...process.env,
      KUBECONFIG: person.kubeconfig,
      PATH: `${join(root, 'cli')}:${process.env.PATH ?? ''}`,
    },
  });
}

/** Publishes a sealed version as `person`, with `publisher` written on it. */
async function addVersion(person: Person, ns: string, artifact: string, version: string, publisher: string) {
  const a = await eventually(`artifact ${artifact} recipient key`, async () => {
    const x = await getArtifact(admin.custom, ns, artifact);
    return x.status?.recipientPublicKey ? x : undefined;
  });
  const { version: v } = await sealedVersion(a, version, { publisher });
  const ops =
    a.spec.versions === undefined
      ? [{ op: 'add', path: '/spec/versions', value: [v] }]
      : [{ op: 'add', path: '/spec/versions/-', value: v }];
  return patch(person, 'modelartifact', ns, artifact, ops);
}

beforeAll(async () => {
  // The governance table: the defaults, but a pending grant expires after a minute so that a test can watch it.
  accepted(
    await kubectl(cluster, [
      'create',
      'configmap',
      GOVERNANCE_CONFIGMAP,
      '-n',
      opNs,
      '--from-literal=pendingApprovalTimeout=1m',
    ]),
  );
  people = await meetThePeople(cluster, [dev, prod, bare]);
  for (const { policy, binding } of policies) {
    await adminAdmission.createValidatingAdmissionPolicy({ body: policy });
    await adminAdmission.createValidatingAdmissionPolicyBinding({ body: binding });
  }
  // Policies take effect within a second or two; wait until each refuses a probe (server-side dry runs: nothing
  // is written even before they do).
  await eventually('the environment-label policy', async () => {
    const r = await people.alice.kubectl([
      'label',
      'namespace',
      dev,
      `${ENVIRONMENT_LABEL}=x`,
      '--dry-run=server',
    ]);
    return r.code !== 0 && /platform admins/.test(r.stderr) ? true : undefined;
  });
  await eventually('the grant-identity policy', async () => {
    const r = await people.alice.kubectl(
      ['create', '--dry-run=server', '-f', '-'],
      grantYaml('probe', dev, 'x', { requester: 'bob' }),
    );
    return r.code !== 0 && /spec.requester must be/.test(r.stderr) ? true : undefined;
  });
  // dave, a platform admin, sets the environments.
  accepted(await people.dave.kubectl(['label', 'namespace', dev, `${ENVIRONMENT_LABEL}=dev`]));
  accepted(await people.dave.kubectl(['label', 'namespace', prod, `${ENVIRONMENT_LABEL}=prod`]));
  await suite.startOperator();
  // alice's artifacts; frank (a publisher) publishes a sealed version of each that readers need.
  for (const [name, ns, classification] of [
    ['vision', dev, 'confidential'],
    ['tabular', dev, 'internal'],
    ['ledger', prod, 'restricted'],
    ['open', bare, 'public'],
    ['notes', bare, 'internal'],
  ] as const) {
    accepted(await people.alice.kubectl(['create', '-f', '-'], artifactYaml(name, ns, classification)));
  }
  for (const [name, ns] of [
    ['vision', dev],
    ['tabular', dev],
    ['open', bare],
    ['notes', bare],
  ] as const) {
    accepted(await addVersion(people.frank, ns, name, 'v1', 'frank'));
  }
  // A grant nobody will approve: it expires after pendingApprovalTimeout (checked last).
  accepted(
    await people.alice.kubectl(
      ['create', '-f', '-'],
      grantYaml('forgotten', dev, 'vision', { requester: 'alice' }),
    ),
  );
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

describe('approvals come from authenticated people', () => {
  it('a requester cannot write approvals in, nor name someone else as requester', async () => {
    const alice = people.alice;
    // The bypass of issue 14: two free-text approvers made a cross-environment confidential grant Approved.
    refused(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('forged', dev, 'vision', {
          requester: 'alice',
          crossEnvironment: true,
          subjects: [{ namespace: prod, serviceAccount: 'inference' }],
          approvals: [
            { approver: 'me', groups: ['strongroom:approvers'], approvedAt: '2026-12-01T00:00:00Z' },
            { approver: 'also-me', groups: ['strongroom:approvers'], approvedAt: '2026-12-01T00:00:00Z' },
          ],
        }),
      ),
      /created without approvals/,
    );
    refused(
      await alice.kubectl(['create', '-f', '-'], grantYaml('impostor', dev, 'vision', { requester: 'bob' })),
      /spec.requester must be the user creating the grant: set requester: "alice"/,
    );
    refused(
      await alice.kubectl(['create', '-f', '-'], grantYaml('anonymous', dev, 'vision')),
      /spec.requester must be.*missing/,
    );
  });

  it('bob and carol approve in person; forged, self- and wrong-group approvals are refused; then it is Active and frozen', async () => {
    const { alice, bob, carol, erin } = people;
    accepted(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('cross', dev, 'vision', {
          requester: 'alice',
          crossEnvironment: true,
          subjects: [{ namespace: prod, serviceAccount: 'inference' }],
        }),
      ),
    );
    const pending = await grantIn(dev, 'cross', phaseIs('Pending', 'AwaitingApproval'), 'awaiting approval');
    expect(pending.status?.classification).toBe('confidential');
    const add = (approver: string, groups: string[]) => [
      {
        op: 'add',
        path: '/spec/approvals',
        value: [{ approver, groups, approvedAt: '2026-12-06T10:00:00Z' }],
      },
    ];
    refused(
      await patch(alice, 'accessgrant', dev, 'cross', add('me', ['strongroom:approvers'])),
      /approver in person: you are "alice"/,
    );
    refused(
      await patch(alice, 'accessgrant', dev, 'cross', add('alice', ['ml-researchers'])),
      /requester \(alice\) cannot approve their own grant/,
    );
    refused(
      await patch(bob, 'accessgrant', dev, 'cross', add('carol', ['strongroom:approvers'])),
      /you are "bob" but the new approval names "carol"/,
    );
    refused(
      await patch(bob, 'accessgrant', dev, 'cross', add('bob', ['strongroom:security'])),
      /groups must list the approver group\(s\) you belong to/,
    );
    refused(
      await patch(erin, 'accessgrant', dev, 'cross', add('erin', ['strongroom:security'])),
      /approvers of confidential grants must be in one of the groups strongroom:approvers/,
    );

    const byBob = await kubectlStrongroom(bob, [
      'approve',
      'cross',
      '-n',
      dev,
      '--comment',
      'checked the purpose',
    ]);
    expect(byBob.code, byBob.stderr).toBe(0);
    expect(byBob.stdout).toContain(`approved AccessGrant ${dev}/cross as bob`);
    // One approval of the two a cross-environment confidential grant needs.
    await grantIn(
      dev,
      'cross',
      (g) => (g.status?.approvedBy ?? []).join() === 'bob' && g.status?.phase === 'Pending',
      'bob counted',
    );
    const again = await kubectlStrongroom(bob, ['approve', 'cross', '-n', dev]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('already has your approval');
    const byAliceCli = await kubectlStrongroom(alice, ['approve', 'cross', '-n', dev]);
    expect(byAliceCli.code).not.toBe(0);

    accepted(await kubectlStrongroom(carol, ['approve', 'cross', '-n', dev]));
    const active = await grantIn(dev, 'cross', phaseIs('Active'), 'Active after two approvals');
    expect(active.status?.approvedBy).toEqual(['bob', 'carol']);
    expect(active.spec.approvals?.map((a) => [a.approver, a.groups])).toEqual([
      ['bob', ['strongroom:approvers']],
      ['carol', ['strongroom:approvers']],
    ]);

    // Approved means frozen: alice can neither change what was approved nor take approvals away.
    refused(
      await patch(alice, 'accessgrant', dev, 'cross', [
        { op: 'replace', path: '/spec/purpose', value: 'something else' },
      ]),
      /cannot change/,
    );
    refused(
      await patch(alice, 'accessgrant', dev, 'cross', [{ op: 'remove', path: '/spec/approvals/0' }]),
      /approvals cannot be removed/,
    );
  });

  it('a denial is final', async () => {
    const { alice, bob, carol } = people;
    accepted(
      await alice.kubectl(['create', '-f', '-'], grantYaml('denied', dev, 'vision', { requester: 'alice' })),
    );
    await grantIn(dev, 'denied', phaseIs('Pending', 'AwaitingApproval'), 'awaiting approval');
    refused(
      await kubectlStrongroom(alice, ['deny', 'denied', '-n', dev, '--reason', 'changed my mind']),
      /requested/,
    );
    accepted(await kubectlStrongroom(bob, ['deny', 'denied', '-n', dev, '--reason', 'no business need']));
    const denied = await grantIn(dev, 'denied', phaseIs('Denied', 'DeniedByApprover'), 'denied by bob');
    expect(denied.status?.message).toContain('bob');
    refused(
      await patch(alice, 'accessgrant', dev, 'denied', [{ op: 'remove', path: '/spec/denial' }]),
      /a denial is final/,
    );
    // An approval added afterwards (by hand: the CLI refuses) changes nothing.
    accepted(
      await patch(carol, 'accessgrant', dev, 'denied', [
        {
          op: 'add',
          path: '/spec/approvals',
          value: [
            { approver: 'carol', groups: ['strongroom:approvers'], approvedAt: '2026-12-06T10:00:00Z' },
          ],
        },
      ]),
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getGrant(admin.custom, dev, 'denied')).status?.phase).toBe('Denied');
  });
});

describe('reserved labels and annotations', () => {
  it('only a platform admin sets, changes or removes a namespace environment', async () => {
    const { alice, dave } = people;
    // The bypass: relabelling a dev namespace prod released a restricted prod artifact to it.
    refused(
      await alice.kubectl(['label', 'namespace', dev, `${ENVIRONMENT_LABEL}=prod`, '--overwrite']),
      /only platform admins/,
    );
    refused(
      await alice.kubectl(['label', 'namespace', dev, `${ENVIRONMENT_LABEL}-`]),
      /only platform admins/,
    );
    refused(
      await alice.kubectl(['label', 'namespace', bare, `${ENVIRONMENT_LABEL}=prod`]),
      /only platform admins/,
    );
    // Her other labels are hers to set.
    accepted(await alice.kubectl(['label', 'namespace', dev, 'team=vision']));
    accepted(await dave.kubectl(['label', 'namespace', prod, `${ENVIRONMENT_LABEL}=prod`, 'audited=yes']));
    const ns = await admin.core.readNamespace({ name: dev });
    expect(ns.metadata?.labels?.[ENVIRONMENT_LABEL]).toBe('dev');
  });

  it('a namespace without an environment gets nothing above public', async () => {
    const { alice } = people;
    accepted(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('notes-reader', bare, 'notes', { requester: 'alice' }),
      ),
    );
    accepted(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('open-reader', bare, 'open', { requester: 'alice' }),
      ),
    );
    const internal = await grantIn(
      bare,
      'notes-reader',
      phaseIs('Denied', 'NoEnvironment'),
      'internal in an unlabelled namespace',
    );
    expect(internal.status?.message).toContain(bare);
    await grantIn(bare, 'open-reader', phaseIs('Active'), 'public in an unlabelled namespace');
  });

  it('only the security team quarantines a grant or lifts a quarantine', async () => {
    const { alice, erin } = people;
    refused(
      await alice.kubectl([
        'annotate',
        'accessgrant',
        'cross',
        '-n',
        dev,
        `${QUARANTINE_ANNOTATION}=self-inflicted`,
      ]),
      /only the security team.*add/,
    );
    accepted(
      await erin.kubectl([
        'annotate',
        'accessgrant',
        'cross',
        '-n',
        dev,
        `${QUARANTINE_ANNOTATION}=unusual reads from prod`,
      ]),
    );
    await grantIn(dev, 'cross', phaseIs('Denied', 'Quarantined'), 'quarantined');
    // The bypass: the grant's own author removed the quarantine.
    refused(
      await alice.kubectl(['annotate', 'accessgrant', 'cross', '-n', dev, `${QUARANTINE_ANNOTATION}-`]),
      /only the security team.*lift/,
    );
    refused(
      await alice.kubectl([
        'annotate',
        'accessgrant',
        'cross',
        '-n',
        dev,
        `${QUARANTINE_ANNOTATION}=fine now`,
        '--overwrite',
      ]),
      /only the security team.*change/,
    );
    await grantIn(dev, 'cross', phaseIs('Denied', 'Quarantined'), 'still quarantined');
    // Nor can she delete the quarantined grant to create it again without the annotation.
    refused(
      await alice.kubectl(['delete', 'accessgrant', 'cross', '-n', dev, '--wait=false']),
      /only the security team.*delete a grant under the quarantine annotation/,
    );
    accepted(
      await erin.kubectl(['annotate', 'accessgrant', 'cross', '-n', dev, `${QUARANTINE_ANNOTATION}-`]),
    );
    await grantIn(dev, 'cross', phaseIs('Active'), 'Active again after the lift');
  });
});

describe('the quarantine does not block namespace deletion', () => {
  it('the namespace controller may still delete a quarantined grant when its namespace goes', async () => {
    accepted(
      await people.erin.kubectl([
        'annotate',
        'accessgrant',
        'open-reader',
        '-n',
        bare,
        `${QUARANTINE_ANNOTATION}=under investigation`,
      ]),
    );
    accepted(await kubectl(cluster, ['delete', 'namespace', bare, '--wait=false']));
    await eventually(
      `namespace ${bare} gone`,
      async () => {
        const r = await kubectl(cluster, ['get', 'namespace', bare, '-o', 'name']);
        return r.code !== 0 && r.stderr.includes('NotFound') ? true : undefined;
      },
      90_000,
      500,
    );
  }, 120_000);
});

describe('versions only through publishing', () => {
  it('an editor cannot append a version; an allowed publisher can, in their own name only', async () => {
    const { alice, frank } = people;
    // The bypass: an editor appended a version with a sealedKey and a free-text publisher; readers of latest got it.
    refused(
      await addVersion(alice, dev, 'tabular', 'v2', `system:serviceaccount:${dev}:trainer`),
      /publisher of a new version must be you \("alice"\)/,
    );
    refused(
      await addVersion(alice, dev, 'tabular', 'v2', 'alice'),
      /may not add versions to a internal artifact directly \(only groups strongroom:publishers may\)/,
    );
    refused(await addVersion(frank, dev, 'tabular', 'v2', 'alice'), /must be you \("frank"\), not "alice"/);
    // Restricted artifacts: nobody publishes directly, only PublishVersion under a publish grant.
    refused(
      await addVersion(frank, prod, 'ledger', 'v1', 'frank'),
      /restricted artifact directly \(no group may\)/,
    );
    accepted(await addVersion(frank, dev, 'tabular', 'v2', 'frank'));
    const sealed = await eventually('v2 sealed', async () => {
      const a: ModelArtifact = await getArtifact(admin.custom, dev, 'tabular');
      return a.status?.keys?.find((k) => k.version === 'v2' && k.state === 'Sealed') ? a : undefined;
    });
    expect(sealed.spec.versions?.find((v) => v.name === 'v2')?.publisher).toBe('frank');
    expect(rawRecipientKey(sealed.status?.recipientPublicKey?.publicKeyPem ?? '')).not.toBe('');
  });
});

describe('without Strongroom running', () => {
  it('a pending grant expires after the configured time, and a late approval does not revive it', async () => {
    const expired = await grantIn(
      dev,
      'forgotten',
      phaseIs('Expired', 'ApprovalTimedOut'),
      'approval timed out',
      90_000,
    );
    expect(expired.status?.message).toMatch(/pendingApprovalTimeout/);
    accepted(await kubectlStrongroom(people.bob, ['approve', 'forgotten', '-n', dev]));
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getGrant(admin.custom, dev, 'forgotten')).status?.reason).toBe('ApprovalTimedOut');
  }, 120_000);

  it('the API server still refuses forged approvals, self-set requesters and relabelling while the operator is down', async () => {
    const { alice, bob } = people;
    const exit = await suite.operator.stop();
    expect(exit.code).toBe(0);
    refused(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('while-down', dev, 'vision', { requester: 'carol' }),
      ),
      /spec.requester must be/,
    );
    accepted(
      await alice.kubectl(
        ['create', '-f', '-'],
        grantYaml('while-down', dev, 'vision', { requester: 'alice' }),
      ),
    );
    // Not evaluated (no status.classification), so not even a real approver can approve it yet: fail closed.
    refused(
      await kubectlStrongroom(bob, ['approve', 'while-down', '-n', dev]),
      /has not evaluated this grant yet/,
    );
    refused(
      await patch(alice, 'accessgrant', dev, 'denied', [{ op: 'remove', path: '/spec/denial' }]),
      /a denial is final/,
    );
    refused(
      await alice.kubectl(['label', 'namespace', dev, `${ENVIRONMENT_LABEL}=prod`, '--overwrite']),
      /only platform admins/,
    );
    refused(await addVersion(alice, dev, 'tabular', 'v3', 'alice'), /may not add versions/);
    await suite.startOperator({ identity: 'op-governance-2' });
  });
});
