/**
 * Governance decisions in the audit log, through the real operator (docs/audit.md#governance-events): a version
 * published with kubectl and sealed, a grant created, activated, quarantined, lifted and expired, approved, denied
 * by an approver and by policy,
 * and a namespace's environment label added, changed and removed, including a change made while the operator was
 * down, audited once across the restart. The log then verifies with `strongroom audit verify`.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import type { AccessGrant } from '../../core/api/index.ts';
import { kubectl, must } from '../harness/kubectl.ts';
import { clients, eventually } from '../harness/operator.ts';
import { createGrant, getArtifact, getGrant, grantBody } from '../harness/objects.ts';
import {
  auditVerifierKey,
  auditVerifyCli,
  grantWhen,
  operatorSuite,
  readAuditEvents,
  sealedArtifact,
  type AuditEvent,
} from '../harness/suite.ts';

const cluster = inject('cluster');
/** The operator's audit log, kept across the restart below. */
const auditLogDir = mkdtempSync(join(tmpdir(), `strongroom-audit-gov-`));
const suite = operatorSuite(cluster, {
  operatorNamespace: 'strongroom-op',
  namespaces: {
    dev: { name: 'ml-dev', environment: 'dev' },
    prod: { name: 'ml-prod', environment: 'prod' },
    relabel: { name: 'ml-relabel', environment: 'dev' },
  },
  operator: { identity: 'op-audit', auditLogDir },
  emptyOnTeardown: ['dev'],
  expectCleanExit: true,
});
const opNs = suite.operatorNamespace;
const { dev, prod, relabel } = suite.namespaces;
const admin = clients(cluster.kubeconfig);
/** The admin's user name, as the API server authenticates it (the requester and the publisher). */
let user: string;

function auditEvents(): AuditEvent[] {
  return readAuditEvents(auditLogDir);
}

function audited(
  predicate: (e: AuditEvent) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<AuditEvent> {
  return eventually(what, () => auditEvents().find(predicate), timeoutMs, 100);
}

function ofGrant(grant: AccessGrant): AuditEvent[] {
  return auditEvents().filter(
    (e) => e.type.startsWith('grant-') && (e.grant as { uid?: string }).uid === grant.metadata.uid,
  );
}

function environmentEvents(namespace: string): AuditEvent[] {
  return auditEvents().filter((e) => e.type === 'environment-changed' && e.namespace === namespace);
}

function phase(name: string, expected: string, timeoutMs = 30_000): Promise<AccessGrant> {
  const test = (g: AccessGrant) => g.status?.phase === expected;
  return grantWhen(admin.custom, dev, name, test, `grant ${name} ${expected}`, timeoutMs);
}

beforeAll(async () => {
  const whoami = await kubectl(cluster, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
  user = whoami.stdout.trim();
  expect(user).not.toBe('');
  for (const [name, classification] of [
    ['resnet', 'internal'],
    ['vault', 'restricted'],
  ] as const)
    await sealedArtifact(admin.custom, dev, name, { classification, version: { publisher: user } });
}, 120_000);

describe('governance audit', () => {
  it('records a version added with kubectl as published by its publisher, then sealed under the KEK', async () => {
    const artifact = await getArtifact(admin.custom, dev, 'resnet');
    const match = (type: string) => (e: AuditEvent) =>
      e.type === type && (e.artifact as { uid?: string }).uid === artifact.metadata.uid && e.version === 'v1';
    const published = await audited(match('version-published'), 'version-published');
    const version = artifact.spec.versions?.[0];
    expect(published).toMatchObject({
      artifact: { namespace: dev, name: 'resnet', uid: artifact.metadata.uid },
      actor: user,
      publisher: user,
      digest: version?.digest,
      publishedAt: version?.publishedAt,
      reason: 'published-directly',
    });
    const sealed = await audited(match('version-sealed'), 'version-sealed');
    const key = artifact.status?.keys?.find((k) => k.version === 'v1');
    expect(sealed).toMatchObject({
      actor: 'strongroom-operator',
      publisher: user,
      key: { id: key?.kekId, version: key?.kekVersion },
    });
    // Sealed once, audited once.
    expect(auditEvents().filter(match('version-sealed'))).toHaveLength(1);
  });

  it('records a grant created, activated, quarantined, lifted and expired, with the requester as its creator', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('lifecycle', 'resnet', {
        subjects: [{ namespace: dev, serviceAccount: 'trainer' }],
        requester: user,
        expiresAt: new Date(Date.now() + 25_000).toISOString(),
      }),
    );
    const active = await phase('lifecycle', 'Active');
    await must(cluster, [
      'annotate',
      'accessgrant',
      '-n',
      dev,
      'lifecycle',
      'strongroom.dev/quarantined=INC-4712',
    ]);
    await eventually('quarantined', async () => {
      const g = await getGrant(admin.custom, dev, 'lifecycle');
      return g.status?.reason === 'Quarantined' ? g : undefined;
    });
    await must(cluster, ['annotate', 'accessgrant', '-n', dev, 'lifecycle', 'strongroom.dev/quarantined-']);
    await eventually('lifted', async () => {
      const g = await getGrant(admin.custom, dev, 'lifecycle');
      return g.status?.phase === 'Active' && g.status.reason === 'Granted' ? g : undefined;
    });
    await phase('lifecycle', 'Expired', 40_000);
    await audited((e) => e.type === 'grant-expired' && e.reason === 'Expired', 'grant-expired');
    const events = ofGrant(active).map((e) => [e.type, e.actor, e.reason]);
    expect(events).toEqual([
      ['grant-created', user, 'Created'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
      ['grant-quarantined', 'unknown', 'Quarantined'],
      ['grant-lifted', 'unknown', 'QuarantineLifted'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
      ['grant-expired', 'strongroom-operator', 'Expired'],
    ]);
    expect(ofGrant(active)[2]).toMatchObject({
      detail: 'INC-4712',
      previousPhase: 'Active',
      phase: 'Denied',
      grant: { namespace: dev, name: 'lifecycle', uid: active.metadata.uid },
    });
  }, 90_000);

  it('records a policy denial with the operator as actor and the policy reason', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('crossing', 'vault', {
        subjects: [{ namespace: prod, serviceAccount: 'inference' }],
        crossEnvironment: true,
        requester: user,
      }),
    );
    const denied = await phase('crossing', 'Denied');
    await audited(
      (e) => e.type === 'grant-denied' && (e.grant as { uid: string }).uid === denied.metadata.uid,
      'denied',
    );
    expect(ofGrant(denied).map((e) => [e.type, e.actor, e.reason])).toEqual([
      ['grant-created', user, 'Created'],
      ['grant-denied', 'strongroom-operator', denied.status?.reason],
    ]);
  });

  it('records each approval with the approver as actor and their groups, then the activation', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('approved', 'resnet', {
        subjects: [{ namespace: prod, serviceAccount: 'inference' }],
        crossEnvironment: true,
        requester: user,
      }),
    );
    const pending = await phase('approved', 'Pending');
    const approval = {
      approver: 'bob@example.com',
      groups: ['strongroom:approvers'],
      approvedAt: new Date().toISOString().replace(/\.\d+Z$/u, 'Z'),
      comment: 'ticket SEC-12',
    };
    await must(cluster, [
      'patch',
      'accessgrant',
      '-n',
      dev,
      'approved',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'add', path: '/spec/approvals', value: [approval] }]),
    ]);
    await phase('approved', 'Active');
    await audited(
      (e) => e.type === 'grant-activated' && (e.grant as { uid: string }).uid === pending.metadata.uid,
      'activated after approval',
    );
    const events = ofGrant(pending);
    expect(events.map((e) => [e.type, e.actor, e.reason])).toEqual([
      ['grant-created', user, 'Created'],
      ['grant-approved', 'bob@example.com', 'Approved'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
    ]);
    expect(events[1]).toMatchObject({ groups: ['strongroom:approvers'], detail: 'ticket SEC-12' });
  });

  it('records a denial by an approver with the denier as actor', async () => {
    await createGrant(
      admin.custom,
      dev,
      grantBody('refused', 'resnet', {
        subjects: [{ namespace: dev, serviceAccount: 'trainer' }],
        requester: user,
        denial: {
          deniedBy: 'carol@example.com',
          groups: ['strongroom:approvers'],
          deniedAt: new Date().toISOString().replace(/\.\d+Z$/u, 'Z'),
          reason: 'not for this team',
        },
      }),
    );
    const denied = await phase('refused', 'Denied');
    expect(denied.status?.reason).toBe('DeniedByApprover');
    await audited(
      (e) => e.type === 'grant-denied' && (e.grant as { uid: string }).uid === denied.metadata.uid,
      'denied by carol',
    );
    const events = ofGrant(denied);
    expect(events.map((e) => [e.type, e.actor, e.reason])).toEqual([
      ['grant-created', user, 'Created'],
      ['grant-denied', 'carol@example.com', 'DeniedByApprover'],
    ]);
    expect(events[1]).toMatchObject({ groups: ['strongroom:approvers'], detail: 'not for this team' });
  });

  it('records environment label changes with old and new, once, including a change made while the operator was down', async () => {
    await audited((e) => e.type === 'environment-changed' && e.namespace === relabel, 'label added');
    await must(cluster, ['label', 'namespace', relabel, 'strongroom.dev/environment=prod', '--overwrite']);
    await audited(
      (e) => e.type === 'environment-changed' && e.namespace === relabel && e.new === 'prod',
      'label changed',
    );
    await must(cluster, ['label', 'namespace', relabel, 'strongroom.dev/environment-']);
    await audited(
      (e) => e.type === 'environment-changed' && e.namespace === relabel && e.new === null,
      'label removed',
    );
    const stored = await admin.core.readNamespacedConfigMap({
      namespace: opNs,
      name: 'strongroom-environments',
    });
    await eventually('ConfigMap without the label', async () => {
      const c = await admin.core.readNamespacedConfigMap({
        namespace: opNs,
        name: 'strongroom-environments',
      });
      return c.data?.[relabel] === undefined && c.data?.[dev] === 'dev' ? c : undefined;
    });
    expect(stored.metadata?.name).toBe('strongroom-environments');

    // Down: the label changes, then the operator comes back with the same log.
    expect((await suite.operator.stop()).code).toBe(0);
    await must(cluster, ['label', 'namespace', relabel, 'strongroom.dev/environment=staging']);
    await suite.startOperator();
    await audited(
      (e) => e.type === 'environment-changed' && e.namespace === relabel && e.new === 'staging',
      'label changed while down',
      30_000,
    );
    expect(environmentEvents(relabel).map((e) => [e.old, e.new, e.reason])).toEqual([
      [null, 'dev', 'label-added'],
      ['dev', 'prod', 'label-changed'],
      ['prod', null, 'label-removed'],
      [null, 'staging', 'label-added'],
    ]);
    // Nothing already recorded was audited again after the restart.
    expect(environmentEvents(dev)).toHaveLength(1);
    expect(environmentEvents(prod)).toHaveLength(1);
  }, 90_000);

  it('the log verifies with `strongroom audit verify` and the published verifier key', async () => {
    const vkey = await auditVerifierKey(admin.core, opNs);
    const files = readdirSync(auditLogDir);
    expect(files).toHaveLength(1);
    // Let a checkpoint cover the latest entries (written every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const cli = await auditVerifyCli(join(auditLogDir, files[0] ?? ''), vkey);
    expect(cli.code, cli.out).toBe(0);
    const types = new Set(auditEvents().map((e) => e.type));
    for (const t of [
      'grant-created',
      'grant-activated',
      'grant-quarantined',
      'grant-lifted',
      'grant-expired',
      'grant-denied',
      'grant-approved',
      'version-published',
      'version-sealed',
      'environment-changed',
    ])
      expect(types, t).toContain(t);
  });
});
