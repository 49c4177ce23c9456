import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../core/api/index.ts';
import { AuditLog } from '../core/audit/index.ts';
import { makeKeys, releaseEvent } from '../core/audit/testdata/fixtures.ts';
import {
  AUDIT_HINT,
  describeArtifactDocument,
  describeArtifactText,
  describeGrantDocument,
  describeGrantText,
  loadAuditSources,
} from './describe.ts';
import {
  approvalsText,
  artifactColumns,
  grantColumns,
  grantVersionsText,
  shortDigest,
  versionRows,
} from './get.ts';
import { formatTable } from './output.ts';

const now = new Date('2026-12-06T12:00:00Z');
const digest = `sha256:${'3b'.repeat(32)}`;

const artifact: ModelArtifact = {
  apiVersion: 'strongroom.dev/v1alpha1',
  kind: 'ModelArtifact',
  metadata: {
    name: 'llama',
    namespace: 'models',
    creationTimestamp: '2026-12-01T12:00:00Z' as unknown as Date,
  },
  spec: {
    classification: 'confidential',
    owner: { team: 'vision', contact: 'vision@example.com' },
    storage: { persistentVolumeClaim: { claimName: 'model-store' }, path: 'llama' },
    versions: ['v1', 'v2', 'v3'].map((name) => ({
      name,
      digest,
      size: 1536,
      encryption: { format: 'v1' as const, keyFingerprint: digest },
      publisher: 'frank',
      publishedAt: '2026-12-02T00:00:00Z',
    })),
    withdrawnVersions: ['v1'],
  },
  status: {
    latestVersion: 'v3',
    keys: [
      { version: 'v1', keyFingerprint: digest, wrappedKey: 'AA==', state: 'Withdrawn' },
      { version: 'v3', keyFingerprint: digest, wrappedKey: 'AA==', state: 'Sealed' },
    ],
    conditions: [
      {
        type: 'Ready',
        status: 'False',
        reason: 'VersionNotSealed',
        message: 'v2 is not sealed',
        lastTransitionTime: '2026-12-06T11:00:00Z',
      },
    ],
  },
};

function grant(
  name: string,
  status: AccessGrant['status'],
  spec: Partial<AccessGrant['spec']> = {},
): AccessGrant {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: { name, namespace: 'team-a', creationTimestamp: '2026-12-05T12:00:00Z' as unknown as Date },
    spec: {
      requester: 'alice',
      artifactRef: { name: 'llama' },
      versions: { match: 'latest' },
      mode: 'read',
      subjects: [
        { namespace: 'team-a', serviceAccount: 'trainer' },
        { namespace: 'team-b', serviceAccount: 'eval', podSelector: { matchLabels: { app: 'x' } } },
      ],
      expiresAt: '2027-01-01T00:00:00Z',
      purpose: 'eval',
      ...spec,
    },
    ...(status === undefined ? {} : { status }),
  };
}

const active = grant(
  'g1',
  {
    phase: 'Active',
    reason: 'Granted',
    resolvedVersions: ['v3'],
    approvedBy: ['bob', 'carol'],
    conditions: [
      {
        type: 'Approved',
        status: 'True',
        reason: 'Approved',
        message: 'Cross-environment access approved by bob, carol (2 required for confidential).',
        lastTransitionTime: '2026-12-06T11:30:00Z',
      },
    ],
  },
  {
    approvals: [
      {
        approver: 'bob',
        groups: ['strongroom:approvers'],
        approvedAt: '2026-12-06T11:00:00Z',
        comment: 'ok',
      },
      { approver: 'carol', groups: ['strongroom:approvers'], approvedAt: '2026-12-06T11:30:00Z' },
    ],
  },
);
const waiting = grant('g2', {
  phase: 'Pending',
  reason: 'AwaitingApproval',
  approvedBy: [],
  conditions: [
    {
      type: 'Approved',
      status: 'False',
      reason: 'AwaitingApproval',
      message:
        'AccessGrant team-a/g2 is waiting for 1 more approval from members of strongroom:approvers: a grant for a confidential artifact needs 1 (confidential.approvals), by approvers other than the requester alice; it has none.',
      lastTransitionTime: '2026-12-06T11:30:00Z',
    },
  ],
});
const open = grant('g3', {
  phase: 'Active',
  reason: 'Granted',
  conditions: [
    {
      type: 'Approved',
      status: 'True',
      reason: 'NotRequired',
      message: 'no',
      lastTransitionTime: '2026-12-06T11:30:00Z',
    },
  ],
});

describe('get rows', () => {
  it('versions: short digest, sealed, withdrawn, latest', () => {
    expect(shortDigest(digest)).toBe('sha256:3b3b3b3b3b3b');
    expect(versionRows(artifact).map((v) => [v.name, v.sealed, v.keyState, v.withdrawn, v.latest])).toEqual([
      ['v1', false, 'Withdrawn', true, false],
      ['v2', false, undefined, false, false],
      ['v3', true, 'Sealed', false, true],
    ]);
  });

  it('grants: approvals counted/needed from the Approved condition, versions with what they resolved to', () => {
    expect(approvalsText(active)).toBe('2/2');
    expect(approvalsText(waiting)).toBe('0/1');
    expect(approvalsText(open)).toBe('-');
    expect(approvalsText(grant('new', undefined))).toBe('0/?');
    expect(grantVersionsText(active)).toBe('latest (v3)');
    expect(
      grantVersionsText(grant('n', undefined, { versions: { match: 'named', names: ['v1', 'v2'] } })),
    ).toBe('v1,v2');
  });

  it('tables have the printer columns and the extra ones', () => {
    const table = formatTable([active, waiting], grantColumns(true, now));
    expect(table.split('\n')[0]).toMatch(
      /^NAMESPACE\s+NAME\s+ARTIFACT\s+MODE\s+VERSIONS\s+SUBJECTS\s+PHASE\s+APPROVALS\s+EXPIRES\s+AGE$/,
    );
    expect(table).toMatch(/g2 .* Pending \(AwaitingApproval\)\s+0\/1/);
    const artifacts = formatTable([artifact], artifactColumns(false, now));
    expect(artifacts).toMatch(
      /^NAME\s+CLASSIFICATION\s+LATEST\s+VERSIONS\s+READY\s+AGE\nllama\s+confidential\s+v3\s+3 \(1 withdrawn\)\s+False\s+5d\n$/,
    );
  });
});

describe('describe', () => {
  let dir: string;
  let vkey: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'strongroom-describe-'));
    const keys = makeKeys();
    const log = await AuditLog.open({
      path: join(dir, 'replica-0.log'),
      origin: 'strongroom.audit/test-cluster/replica-0',
      signer: keys.signer,
      heartbeatIntervalMs: 0,
    });
    for (let i = 0; i < 14; i++) await log.append(releaseEvent(i));
    await log.close();
    vkey = join(dir, 'audit.vkey');
    writeFileSync(vkey, `${keys.verifierKey}\n`);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('an artifact: spec, conditions, versions, the grants naming it with every subject, and a hint for the audit log', () => {
    const text = describeArtifactText(
      { artifact, grants: [active, waiting, grant('other', undefined, { artifactRef: { name: 'x' } })] },
      now,
    );
    expect(text).toMatch(/^Name:\s+llama$/m);
    expect(text).toMatch(/^Owner:\s+vision <vision@example.com>$/m);
    expect(text).toMatch(/^Storage:\s+PersistentVolumeClaim model-store, path llama$/m);
    expect(text).toMatch(/Ready\s+False\s+VersionNotSealed\s+60m\s+v2 is not sealed/);
    expect(text).toMatch(
      /v3 \(latest\)\s+sha256:3b3b3b3b3b3b\s+1.50 KiB\s+frank\s+2026-12-02T00:00:00Z\s+yes\s+no/,
    );
    expect(text).toMatch(
      /g1\s+read\s+latest \(v3\)\s+Active\s+2\/2\s+2027-01-01T00:00:00Z\s+team-a\/trainer/,
    );
    expect(text).toMatch(/^\s+team-b\/eval pods app=x$/m);
    expect(text).not.toContain('other');
    expect(text).toContain(AUDIT_HINT);
  });

  it('reads, verifies and filters the audit log: the last N releases of the artifact, allowed and denied', async () => {
    const sources = await loadAuditSources(dir, vkey);
    expect(sources).toHaveLength(1);
    expect(sources[0]?.verified).toBe(true);
    const text = describeArtifactText(
      {
        artifact,
        grants: [],
        sources,
        releases: 5,
      },
      now,
    );
    expect(text).toMatch(/replica-0.log: verified, origin strongroom.audit\/test-cluster\/replica-0/);
    const rows = text.split('\n').filter((l) => /release (allow|deny)/.test(l));
    expect(rows).toHaveLength(5);
    expect(rows.at(-1)).toMatch(
      /release allow\s+granted\s+team-a\/trainer pod pod-13\s+v3\s+g1\s+replica-0#14/,
    );
    expect(rows.some((r) => /release deny\s+no-grant/.test(r))).toBe(true);
    const doc = describeArtifactDocument({ artifact, grants: [active], sources, releases: 2 });
    expect(doc['releases']).toMatchObject({ available: true, logs: [{ verified: true, pinned: true }] });
    expect((doc['releases'] as { records: unknown[] }).records).toHaveLength(2);
  });

  it('flags a log that does not verify', async () => {
    const tampered = join(dir, 'tampered');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(tampered);
    writeFileSync(
      join(tampered, 'r.log'),
      readFileSync(join(dir, 'replica-0.log'), 'utf8').replace('pod-3', 'pod-X'),
    );
    const sources = await loadAuditSources(tampered, vkey);
    expect(sources[0]?.verified).toBe(false);
    expect(describeArtifactText({ artifact, grants: [], sources }, now)).toMatch(/DOES NOT VERIFY/);
  });

  it('a grant: requester, subjects, approvals (counted), denial, and its own audit entries', async () => {
    const sources = await loadAuditSources(join(dir, 'replica-0.log'));
    const denied = grant('g1', active.status, {
      ...active.spec,
      denial: {
        deniedBy: 'dave',
        groups: ['strongroom:approvers'],
        deniedAt: '2026-12-06T11:40:00Z',
        reason: 'no',
      },
    });
    const text = describeGrantText({ grant: denied, artifact, sources, releases: 5 }, now);
    expect(text).toMatch(/^Requester:\s+alice$/m);
    expect(text).toMatch(/^Artifact:\s+llama \(confidential\)$/m);
    expect(text).toMatch(/Approvals \(2 of 2 counted\):/);
    expect(text).toMatch(/bob\s+strongroom:approvers\s+2026-12-06T11:00:00Z\s+yes\s+ok/);
    expect(text).toMatch(/Denial:\n\s+By:\s+dave/);
    expect(text).toMatch(/^\s+team-b\/eval pods app=x$/m);
    expect(text).toMatch(/verified against its own header key \(not pinned\)/);
    // g1's releases only: every fifth event is a denial without a grant.
    expect(text.split('\n').filter((l) => /release allow/.test(l))).toHaveLength(5);
    expect(text).not.toMatch(/release deny/);
    const doc = describeGrantDocument({ grant: denied, artifact });
    expect(doc).toMatchObject({
      approvals: { counted: 2, required: 2 },
      denial: { deniedBy: 'dave' },
      releases: { available: false },
    });
  });
});
