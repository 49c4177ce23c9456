/**
 * Audit checkpoints that leave the disk (docs/audit.md#published-checkpoints), on a real API server with the real
 * operator: it publishes every checkpoint of its log into ConfigMap strongroom-audit-checkpoints (and serves the
 * latest at GET /audit/checkpoint); `strongroom audit verify --fetch-checkpoint`, run as an auditor who may only get
 * that ConfigMap, refuses a rolled-back copy of the log; and an operator restarted on a rolled-back log refuses to
 * open it but stays up, failing closed (not ready, no broker, not leading) while /metrics exports the rollback for the
 * alert, and starts again once the real log is back.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { openCheckpoint, parseVerifierKey, verifyLog } from '../../core/audit/index.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { must } from '../harness/kubectl.ts';
import { sample, scrape } from '../harness/metrics.ts';
import { clients, eventually, root, startOperator } from '../harness/operator.ts';
import { auditVerifierKey, operatorSuite } from '../harness/suite.ts';

const cluster = inject('cluster');
const IDENTITY = 'op-checkpoint';
const ORIGIN = `strongroom.audit/kubernetes/${IDENTITY}`;
const CONFIGMAP = 'strongroom-audit-checkpoints';
/** The operator's audit log directory, kept across the restarts below. */
const auditLogDir = mkdtempSync(join(tmpdir(), 'strongroom-audit-checkpoint-'));
const logPath = join(auditLogDir, `${IDENTITY}.log`);
const suite = operatorSuite(cluster, {
  operatorNamespace: 'strongroom-ckpt',
  namespaces: { labelled: { name: 'ckpt-labelled', environment: 'dev' } },
  operator: { identity: IDENTITY, auditLogDir },
  expectCleanExit: true,
});
const opNs = suite.operatorNamespace;
const { labelled } = suite.namespaces;
const admin = clients(cluster.kubeconfig);
const work = mkdtempSync(join(tmpdir(), 'strongroom-checkpoint-test-'));
let vkeyFile: string;
let auditor: string;
let stranger: string;

/** The note published for the operator's writer, or undefined. */
async function published(): Promise<string | undefined> {
  try {
    const cm = await admin.core.readNamespacedConfigMap({ namespace: opNs, name: CONFIGMAP });
    return cm.data?.[IDENTITY];
  } catch {
    return undefined;
  }
}

const sizeOf = (note: string): number => Number(note.split('\n')[1]);

function cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'cli', 'strongroom.ts'), ...args], (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The log's lines cut just after its checkpoint of `size` (an earlier state the writer really signed). */
function cutAt(lines: readonly string[], size: number): string {
  const i = lines.findIndex((l) => l.startsWith('{"checkpoint":') && l.includes(`\\n${size}\\n`));
  if (i < 0) throw new Error(`no checkpoint of size ${size} in the log`);
  return lines.slice(0, i + 1).join('\n') + '\n';
}

/** The sizes of the signed checkpoints in the log, in file order. */
function checkpointSizes(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{"checkpoint":'))
    .map((l) => sizeOf((JSON.parse(l) as { checkpoint: string }).checkpoint));
}

beforeAll(async () => {
  vkeyFile = join(work, 'audit.vkey');
  writeFileSync(vkeyFile, await auditVerifierKey(admin.core, opNs));
  // An auditor who may read the published checkpoints and nothing else; and someone who may not.
  auditor = userKubeconfig(cluster, `auditor-${suite.suffix || 'x'}`);
  stranger = userKubeconfig(cluster, `stranger-${suite.suffix || 'x'}`);
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
          metadata: { name: 'audit-checkpoint-reader', namespace: opNs },
          rules: [{ apiGroups: [''], resources: ['configmaps'], resourceNames: [CONFIGMAP], verbs: ['get'] }],
        },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'audit-checkpoint-reader', namespace: opNs },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'audit-checkpoint-reader' },
          subjects: [
            { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: `auditor-${suite.suffix || 'x'}` },
          ],
        },
      ],
    }),
  );
});

describe('published audit checkpoints', () => {
  let early: number;

  it('the running operator publishes each checkpoint to the ConfigMap, its metrics and GET /audit/checkpoint', async () => {
    const first = await eventually('a published checkpoint', published, 30_000, 200);
    const verifier = parseVerifierKey(readFileSync(vkeyFile, 'utf8').trim());
    const opened = openCheckpoint(first, [verifier]);
    expect(opened.origin).toBe(ORIGIN);
    early = opened.size;
    // More entries: each label change is an environment-changed entry, then a checkpoint within a second.
    for (const env of ['staging', 'prod', 'test']) {
      await must(cluster, [
        'label',
        'namespace',
        labelled,
        `strongroom.dev/environment=${env}`,
        '--overwrite',
      ]);
      await eventually(
        `a larger published checkpoint after ${env}`,
        async () => {
          const note = await published();
          return note !== undefined && sizeOf(note) > early ? note : undefined;
        },
        30_000,
        200,
      );
      early = Math.max(early, sizeOf((await published()) ?? ''));
    }
    // The published note is one the log holds, and the latest the operator serves is at least as large.
    const note = (await published()) ?? '';
    expect(readFileSync(logPath, 'utf8')).toContain(JSON.stringify(note));
    const served = await suite.operator.get('/audit/checkpoint');
    expect(served.status).toBe(200);
    expect(openCheckpoint(served.body, [verifier]).size).toBeGreaterThanOrEqual(sizeOf(note));
    const metrics = (await suite.operator.get('/metrics')).body;
    expect(metrics).toMatch(new RegExp(`strongroom_audit_checkpoint_size\\{writer="${IDENTITY}"\\} \\d+`));
    expect(metrics).toMatch(
      new RegExp(`strongroom_audit_checkpoint_published_timestamp_seconds\\{writer="${IDENTITY}"\\} \\d+`),
    );
    expect(metrics).toContain(`strongroom_audit_rollback_detected{writer="${IDENTITY}"} 0`);
    expect(metrics).toContain(`strongroom_audit_checkpoint_publishing{writer="${IDENTITY}"} 1`);
  }, 120_000);

  it('`audit verify --fetch-checkpoint`, as an auditor who may only get the ConfigMap, refuses a rolled-back copy', async () => {
    const note = (await published()) ?? '';
    const size = sizeOf(note);
    // A copy of the live log (holding the published checkpoint), and one rolled back to its first checkpoint.
    const live = join(work, 'live.log');
    copyFileSync(logPath, live);
    const lines = readFileSync(live, 'utf8').split('\n');
    const first = checkpointSizes(readFileSync(live, 'utf8'))[0] ?? 0;
    expect(first).toBeLessThan(size);
    const rolledBack = join(work, 'rolled-back.log');
    writeFileSync(rolledBack, cutAt(lines, first));
    const args = ['--kubeconfig', auditor, '-n', opNs, 'audit', 'verify', '--public-key', vkeyFile];
    // Alone, the rolled-back copy verifies: a valid prefix, signed by the real key.
    const alone = verifyLog(readFileSync(rolledBack), {
      verifiers: [parseVerifierKey(readFileSync(vkeyFile, 'utf8').trim())],
    });
    expect(alone.ok).toBe(true);
    const refused = await cli([...args, '--fetch-checkpoint', rolledBack]);
    expect(refused.code, refused.stdout + refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `ERROR rollback entry=${first}: the trusted checkpoint signs \\d+ entries but the log holds ${first}`,
      ),
    );
    // The live log keeps growing (heartbeats, governance events), so a copy can be older than the checkpoint
    // published by the time the CLI fetches it; that copy is rightly refused. Copy again until one is current.
    let ok = { code: -1, stdout: '', stderr: '' };
    for (let attempt = 0; attempt < 5 && ok.code !== 0; attempt++) {
      copyFileSync(logPath, live);
      ok = await cli([...args, '--fetch-checkpoint', live]);
      if (ok.code !== 0) expect(ok.stderr, ok.stdout + ok.stderr).toMatch(/ERROR rollback entry=/);
    }
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^OK: /m);
    // Someone without get on the ConfigMap is refused by RBAC (exit 3), not told the log is fine.
    const forbidden = await cli([
      '--kubeconfig',
      stranger,
      '-n',
      opNs,
      'audit',
      'verify',
      '--public-key',
      vkeyFile,
      '--fetch-checkpoint',
      live,
    ]);
    expect(forbidden.code, forbidden.stderr).toBe(3);
  }, 60_000);

  it('an operator restarted on a rolled-back log refuses to open it and stays up failing closed, exporting the rollback; it starts once the real log is back', async () => {
    expect((await suite.operator.stop()).code).toBe(0);
    const real = readFileSync(logPath, 'utf8');
    const note = (await published()) ?? '';
    // The final checkpoint written on close is published before the process exits.
    expect(sizeOf(note)).toBe(checkpointSizes(real).at(-1));
    const rolledBack = cutAt(real.split('\n'), checkpointSizes(real)[0] ?? 0);
    writeFileSync(logPath, rolledBack);
    /** Starts the operator on the log as it is now and waits until it refused it; it stays up, failing closed. */
    const refusedStart = async (reason: RegExp) => {
      const op = await startOperator({
        namespace: opNs,
        kubeconfig: suite.kubeconfig,
        identity: IDENTITY,
        auditLogDir,
      });
      await op.waitForLog((l) => /^the audit log was rolled back/.test(l.message ?? ''), 60_000);
      expect(op.output()).toMatch(reason);
      // Prometheus can scrape the alert's series (the process is up, its health listener serves /metrics).
      const metricsUrl = `http://127.0.0.1:${String(op.ports.health)}/metrics`;
      const text = await eventually(
        'strongroom_audit_rollback_detected 1 on /metrics',
        async () => {
          const body = await scrape(metricsUrl).catch(() => undefined);
          return body !== undefined &&
            sample(body, 'strongroom_audit_rollback_detected', { writer: IDENTITY }) === 1
            ? body
            : undefined;
        },
        15_000,
        200,
      );
      expect(sample(text, 'strongroom_audit_checkpoint_publishing', { writer: IDENTITY })).toBe(1);
      expect(sample(text, 'strongroom_leader')).toBe(0);
      // Not ready: no broker, and it never campaigns for the Lease (so no controllers run on it).
      const ready = await fetch(`http://127.0.0.1:${String(op.ports.health)}/readyz?verbose`);
      const body = await ready.text();
      expect(ready.status, body).toBe(503);
      expect(body).toMatch(/^\[-\]broker/m);
      expect(body).toMatch(/^\[-\]leader-election/m);
      expect(op.output()).not.toContain('key broker ready');
      expect(op.output()).not.toContain('leading: starting controllers');
      // Still up a while later (no crash loop).
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const early = await Promise.race([op.exited, Promise.resolve('running')]);
      expect(early, op.output().slice(-4000)).toBe('running');
      const stopped = await op.stop();
      expect(stopped.signal, op.output().slice(-4000)).toBeNull();
      return op;
    };
    await refusedStart(/does not extend the published checkpoint \(size \d+\): it was rolled back/);
    // Nothing was appended to, or cut from, the rolled-back file; the published checkpoint is unchanged.
    expect(readFileSync(logPath, 'utf8')).toBe(rolledBack);
    expect(await published()).toBe(note);
    const event = await eventually(
      'a Warning Event AuditRollbackDetected',
      async () => {
        const events = await admin.core.listNamespacedEvent({ namespace: opNs });
        return events.items.find((e) => e.reason === 'AuditRollbackDetected');
      },
      15_000,
      200,
    );
    expect(event.type).toBe('Warning');
    expect(event.involvedObject.name).toBe(CONFIGMAP);
    // A deleted log (started anew, empty) is refused too.
    writeFileSync(logPath, '');
    await refusedStart(/is empty but a checkpoint of size \d+ was published for it/);
    expect(readFileSync(logPath, 'utf8')).toBe('');
    // The real log back: the operator opens it, extends it, and publishes further.
    writeFileSync(logPath, real);
    await suite.startOperator();
    await eventually(
      'a checkpoint beyond the one before the restarts',
      async () => {
        const now = await published();
        return now !== undefined && sizeOf(now) > sizeOf(note) ? now : undefined;
      },
      30_000,
      200,
    );
    expect(readdirSync(auditLogDir)).toEqual([`${IDENTITY}.log`]);
  }, 180_000);

  it('an operator whose published checkpoint was removed warns with an Event, opens unchecked and publishes it again', async () => {
    expect((await suite.operator.stop()).code).toBe(0);
    const before = (await published()) ?? '';
    expect(before).not.toBe('');
    const cm = await admin.core.readNamespacedConfigMap({ namespace: opNs, name: CONFIGMAP });
    const data = Object.fromEntries(Object.entries(cm.data ?? {}).filter(([writer]) => writer !== IDENTITY));
    await admin.core.replaceNamespacedConfigMap({
      namespace: opNs,
      name: CONFIGMAP,
      body: { metadata: cm.metadata ?? {}, data },
    });
    expect(await published()).toBeUndefined();
    await suite.startOperator();
    await suite.operator.waitForLog(
      (l) => /^no published checkpoint for this audit log/.test(l.message ?? ''),
      30_000,
    );
    const event = await eventually(
      'a Warning Event AuditCheckpointMissing',
      async () => {
        const events = await admin.core.listNamespacedEvent({ namespace: opNs });
        return events.items.find((e) => e.reason === 'AuditCheckpointMissing');
      },
      15_000,
      200,
    );
    expect(event.type).toBe('Warning');
    expect(event.message).toContain(IDENTITY);
    await eventually(
      'the checkpoint published again, at least as large as before',
      async () => {
        const now = await published();
        return now !== undefined && sizeOf(now) >= sizeOf(before) ? now : undefined;
      },
      30_000,
      200,
    );
  }, 120_000);
});
