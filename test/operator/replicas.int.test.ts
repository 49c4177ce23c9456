/**
 * A key broker on every replica, with real processes: two operator replicas against the real control plane. The
 * follower (it does not hold the Lease) serves Attest and ReleaseKey from its own caches and audits them in its own
 * log; a revocation reaches a WatchRevocations stream on the follower (derived from its informers); PublishVersion
 * on the follower is refused with a retryable UNAVAILABLE naming the leader; after the leader is SIGKILLed the
 * follower still attests and releases before it takes the Lease; `strongroom audit verify` over both replicas' logs
 * passes, and fails when one of them is tampered with.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { approval, createGrant, deleteGrant, grantBody } from '../harness/objects.ts';
import { clients, eventually, root, startOperator, type OperatorProcess } from '../harness/operator.ts';
import {
  auditVerifierKey,
  grantWhen,
  operatorSuite,
  readAuditEvents,
  sealedArtifact,
} from '../harness/suite.ts';
import {
  attest,
  attestedWorkload,
  createPod,
  keyAndCsr,
  mtlsClient,
  podToken,
  release,
  watch,
  type BrokerEndpoint,
  type Workload,
} from '../harness/workload.ts';

const cluster = inject('cluster');
const logs = mkdtempSync(join(tmpdir(), 'strongroom-replicas-'));
const TRUST_DOMAIN = 'strongroom.test';
const args = [`--trust-domain=${TRUST_DOMAIN}`, '--broker-credential-refresh=1s'];
const suite = operatorSuite(cluster, {
  operatorNamespace: 'rep-op',
  namespaces: { prod: { name: 'rep-prod', environment: 'prod', serviceAccounts: ['reader', 'late'] } },
  operator: { identity: 'rep-leader', args, auditLogDir: join(logs, 'rep-leader'), waitFor: 'broker' },
});
const { core, custom } = clients(cluster.kubeconfig);
const LEADING = (l: { message?: string }) => l.message === 'leading: starting controllers';

let leader: OperatorProcess;
let follower: OperatorProcess;
let onFollower: BrokerEndpoint;
const workloads: Workload[] = [];

function cli(...argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'cli', 'strongroom.ts'), ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  leader = suite.operator;
  await leader.waitForLog(LEADING);
  follower = await startOperator({
    namespace: suite.operatorNamespace,
    kubeconfig: suite.kubeconfig,
    identity: 'rep-follower',
    args,
    auditLogDir: join(logs, 'rep-follower'),
  });
  const ports = await follower.brokerPorts();
  onFollower = { ...suite.endpoint, ...ports };
  // A follower is ready once its broker listens and its caches are synced.
  await eventually('the follower ready', async () => {
    const r = await follower.get('/readyz');
    return r.status === 200 ? true : undefined;
  });
}, 180_000);

afterAll(async () => {
  for (const w of workloads) w.client.close();
  await follower.stop();
  rmSync(logs, { recursive: true, force: true });
});

describe('a key broker on every replica', { timeout: 180_000 }, () => {
  const prod = suite.namespaces.prod;

  it('the follower attests and releases from its own caches, and audits it in its own log only', async () => {
    expect(follower.lines().some(LEADING)).toBe(false);
    const { deks } = await sealedArtifact(custom, prod, 'resnet', { classification: 'confidential' });
    await createGrant(
      custom,
      prod,
      grantBody('readers', 'resnet', {
        subjects: [
          { namespace: prod, serviceAccount: 'reader' },
          { namespace: prod, serviceAccount: 'late' },
        ],
        approvals: [approval('security@example.com')],
      }),
    );
    await grantWhen(custom, prod, 'readers', (g) => g.status?.phase === 'Active', 'readers Active');
    const w = await attestedWorkload(core, onFollower, prod, 'reader-0', 'reader');
    workloads.push(w);
    const released = await eventually('a key from the follower', async () => {
      const r = await release(w.client, prod, 'resnet');
      return 'ok' in r ? r.ok : undefined;
    });
    expect(Buffer.from(released.dek).equals(deks.get('v1') ?? Buffer.alloc(0))).toBe(true);
    expect(follower.lines().some(LEADING)).toBe(false);

    const mine = (e: Record<string, unknown>): boolean =>
      e.type === 'key-release' &&
      e.decision === 'allow' &&
      (e.workload as { podUid?: string } | undefined)?.podUid === w.uid;
    const attested = (e: Record<string, unknown>): boolean =>
      e.type === 'broker-access' &&
      e.operation === 'attest' &&
      (e.workload as { podUid?: string } | undefined)?.podUid === w.uid;
    await eventually('the release in the follower log', () =>
      readAuditEvents(follower.auditLogDir).some(mine) ? true : undefined,
    );
    expect(readAuditEvents(follower.auditLogDir).some(attested)).toBe(true);
    expect(readAuditEvents(leader.auditLogDir).some(mine)).toBe(false);
    expect(readAuditEvents(leader.auditLogDir).some(attested)).toBe(false);
    // Each replica writes under its own origin.
    const origin = (dir: string): string => {
      const file = readdirSync(dir).find((f) => f.endsWith('.log')) ?? '';
      return readFileSync(join(dir, file), 'utf8').match(/strongroom\.audit\/[^\s"\\]+/)?.[0] ?? '';
    };
    expect(origin(follower.auditLogDir)).toMatch(/\/rep-follower$/);
    expect(origin(leader.auditLogDir)).toMatch(/\/rep-leader$/);
  });

  it('refuses PublishVersion on the follower with UNAVAILABLE naming the leader (retryable)', async () => {
    const [w] = workloads;
    if (w === undefined) throw new Error('no workload');
    const error = await new Promise<grpc.ServiceError | undefined>((resolve) => {
      w.client.PublishVersion(
        { artifact: { namespace: prod, name: 'resnet' }, version: 'v9' },
        { deadline: Date.now() + 10_000 },
        (e) => {
          resolve(e ?? undefined);
        },
      );
    });
    expect(error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(error?.details).toMatch(/this replica is not the leader \(the leader is rep-leader\).*retry/);
    expect(error?.metadata.get('strongroom-retry').map(String)).toEqual(['not-leader']);
    await eventually('the refusal in the follower log', () =>
      readAuditEvents(follower.auditLogDir).some(
        (e) => e.operation === 'publish-version' && e.reason === 'not-leader' && e.decision === 'deny',
      )
        ? true
        : undefined,
    );
  });

  it('a revocation reaches a WatchRevocations stream on the follower', async () => {
    const [w] = workloads;
    if (w === undefined) throw new Error('no workload');
    await createGrant(
      custom,
      prod,
      grantBody('reader-only', 'resnet', {
        subjects: [{ namespace: prod, serviceAccount: 'reader' }],
        approvals: [approval('security@example.com')],
      }),
    );
    await grantWhen(custom, prod, 'reader-only', (g) => g.status?.phase === 'Active', 'reader-only Active');
    const stream = watch(w.client);
    try {
      await eventually('the stream opened', () => (stream.messages.length > 0 ? true : undefined));
      await deleteGrant(custom, prod, 'reader-only');
      const revocation = await eventually(
        'the revocation on the follower stream',
        () =>
          stream.messages.find(
            (m) =>
              m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_DELETED' &&
              m.message.revocation.grant?.name === 'reader-only',
          ),
        15_000,
      );
      expect(revocation.message.revocation?.artifact?.name).toBe('resnet');
      // Derived by the follower from its informers: it never led.
      expect(follower.lines().some(LEADING)).toBe(false);
      expect(
        follower.lines().some((l) => l.message === 'derived revocation' && l.reason === 'grant-deleted'),
      ).toBe(true);
      // Exactly once on the follower, and once on the leader although its controller published it too.
      await new Promise((r) => setTimeout(r, 1000));
      const once = (p: OperatorProcess): number =>
        p
          .lines()
          .filter(
            (l) =>
              (l.message === 'derived revocation' || l.message === 'published revocation') &&
              l.reason === 'grant-deleted' &&
              l.name === 'reader-only',
          ).length;
      expect(once(follower)).toBe(1);
      expect(once(leader)).toBe(1);
      expect(stream.messages.filter((m) => m.message.revocation?.grant?.name === 'reader-only')).toHaveLength(
        1,
      );
    } finally {
      stream.cancel();
    }
  });

  it('while the leader is SIGKILLed, the follower attests a new pod and releases before it takes the Lease', async () => {
    const pod = await createPod(core, prod, 'late-0', 'late');
    const token = await podToken(core, pod);
    const { keyPem, csrPem } = keyAndCsr();
    // The pod is in the follower's cache before the leader goes.
    await new Promise((r) => setTimeout(r, 500));
    leader.kill('SIGKILL');
    await leader.exited;
    const killedAt = Date.now();
    const certificate = await attest(onFollower, token, csrPem);
    if (certificate instanceof Error) throw certificate;
    const client = mtlsClient(onFollower, { certPem: certificate.certPem, keyPem });
    try {
      const released = await release(client, prod, 'resnet');
      if ('error' in released) throw new Error(`refused: ${released.error.details}`);
      // Still a follower when it answered: the Lease is not free before its duration (4 s) has passed.
      expect(Date.now() - killedAt).toBeLessThan(3000);
      expect(follower.lines().some(LEADING)).toBe(false);
      expect(
        readAuditEvents(follower.auditLogDir).some(
          (e) =>
            e.type === 'key-release' &&
            e.decision === 'allow' &&
            (e.workload as { podUid?: string } | undefined)?.podUid === pod.metadata?.uid,
        ),
      ).toBe(true);
    } finally {
      client.close();
    }
    // Then it takes over.
    await follower.waitForLog(LEADING, 30_000);
  });

  it("`strongroom audit verify` checks both replicas' logs, and fails when one is tampered with", async () => {
    const vkey = join(logs, 'audit.vkey');
    writeFileSync(vkey, `${await auditVerifierKey(core, suite.operatorNamespace)}\n`);
    const good = await cli(
      'audit',
      'verify',
      join(logs, 'rep-leader'),
      join(logs, 'rep-follower'),
      '--public-key',
      vkey,
    );
    expect(good.stderr).toBe('');
    expect(good.stdout).toMatch(/rep-leader\.log: OK: .*origin strongroom\.audit\/[^/]+\/rep-leader\)/);
    expect(good.stdout).toMatch(/rep-follower\.log: OK: .*origin strongroom\.audit\/[^/]+\/rep-follower\)/);
    expect(good.stdout).toMatch(/OK: 2 of 2 logs verified/);
    expect(good.code).toBe(0);

    // A copy of both, the follower's with one release decision turned around.
    const copy = join(logs, 'tampered');
    for (const replica of ['rep-leader', 'rep-follower']) {
      mkdirSync(join(copy, replica), { recursive: true });
      for (const f of readdirSync(join(logs, replica)).filter((n) => n.endsWith('.log')))
        copyFileSync(join(logs, replica, f), join(copy, replica, f));
    }
    const followerLog = join(copy, 'rep-follower', 'rep-follower.log');
    const lines = readFileSync(followerLog, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"type":"key-release"') && l.includes('"decision":"allow"'));
    expect(i).toBeGreaterThanOrEqual(0);
    lines[i] = (lines[i] ?? '').replace('"decision":"allow"', '"decision":"deny"');
    writeFileSync(followerLog, lines.join('\n'));
    const bad = await cli('audit', 'verify', copy, '--public-key', vkey);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/rep-leader\.log: OK/);
    expect(bad.stdout).toMatch(/rep-follower\.log: FAILED/);
    expect(bad.stdout).toMatch(/FAILED: 1 of 2 logs verified/);
  });
});
