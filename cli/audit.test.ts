import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyInclusion } from '../core/audit/index.ts';
import {
  buildLog,
  releaseEvent,
  lineOfSeq,
  readLines,
  writeLines,
  type BuiltLog,
} from '../core/audit/testdata/fixtures.ts';
import { kubeConfigFor } from '../test/harness/fake-kubeconfig.ts';

const CLI = join(import.meta.dirname, 'strongroom.ts');

function run(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

let dir: string;
let built: BuiltLog;
let vkeyFile: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'audit-cli-'));
  built = await buildLog(dir, { entries: 30, checkpointEvery: 7 });
  vkeyFile = join(dir, 'vkey');
  writeFileSync(vkeyFile, `# the writer's key\n${built.keys.verifierKey}\n`);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('strongroom audit (the CLI, on real logs)', { timeout: 30_000 }, () => {
  it('verify: exit 0 on an untouched log', async () => {
    const r = await run('audit', 'verify', built.path, '--public-key', vkeyFile);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^OK: 31 entries, \d+ signed checkpoints, latest size 31/);
    expect(r.code).toBe(0);
  });

  it('verify: exit 1 naming the edited entry', async () => {
    const path = join(dir, 'edited.log');
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 12);
    lines[i] = (lines[i] as string).replace('"allow"', '"deny"');
    writeLines(path, lines);
    const r = await run('audit', 'verify', path, '--public-key', vkeyFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERROR edited entry=12: entry 12 \(line \d+\) was edited/);
    expect(r.stdout).toMatch(/^FAILED/);
  });

  it('verify --json: machine-readable findings', async () => {
    const path = join(dir, 'deleted.log');
    const lines = readLines(built.path);
    lines.splice(lineOfSeq(lines, 3), 1);
    writeLines(path, lines);
    const r = await run('audit', 'verify', path, '--public-key', vkeyFile, '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; findings: { kind: string; entry?: number }[] };
    expect(report.ok).toBe(false);
    expect(report.findings).toContainEqual(expect.objectContaining({ kind: 'deleted', entry: 3 }));
  });

  it('verify --trusted-checkpoint: exit 1 on a rollback', async () => {
    const trusted = join(dir, 'trusted.cp');
    const saved = await run('audit', 'checkpoint', built.path, '--public-key', vkeyFile);
    expect(saved.code).toBe(0);
    expect(saved.stdout).toMatch(/^strongroom\.audit\/test-cluster\/replica-0\n31\n/);
    writeFileSync(trusted, saved.stdout);
    const old = join(dir, 'old.log');
    const lines = readLines(built.path);
    writeLines(old, lines.slice(0, lines.findIndex((l) => l.includes('\\n15\\n')) + 1));
    const ok = await run('audit', 'verify', old, '--public-key', vkeyFile);
    expect(ok.code).toBe(0);
    const r = await run('audit', 'verify', old, '--public-key', vkeyFile, '--trusted-checkpoint', trusted);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'ERROR rollback entry=15: the trusted checkpoint signs 31 entries but the log holds 15',
    );
  });

  it('verify: exit 1 under a wrong key', async () => {
    const other = join(dir, 'other.vkey');
    writeFileSync(other, 'strongroom.audit/test-cluster/replica-0+00000000+AQ==\n');
    const bad = await run('audit', 'verify', built.path, '--public-key', other);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/strongroom: .*other\.vkey/);
    const stranger = (await run('audit', 'keygen', '--name', 'strongroom.audit/test-cluster/replica-0'))
      .stdout;
    writeFileSync(other, (JSON.parse(stranger) as { verifierKey: string }).verifierKey);
    const r = await run('audit', 'verify', built.path, '--public-key', other);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERROR untrusted-signature');
  });

  it('verify: exit 2 on bad usage or a missing file', async () => {
    expect((await run('audit', 'verify')).code).toBe(2);
    const missing = await run('audit', 'verify', join(dir, 'nope.log'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read log');
    expect((await run('audit', 'frobnicate')).code).toBe(2);
  });

  it('prove --entry N: prints an inclusion proof that verifies against the signed checkpoint', async () => {
    const r = await run('audit', 'prove', built.path, '--entry', '17', '--public-key', vkeyFile);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout) as {
      entry: number;
      treeSize: number;
      leafHash: string;
      inclusionProof: string[];
      rootHash: string;
      checkpoint: string;
    };
    expect(p.entry).toBe(17);
    expect(p.treeSize).toBe(31);
    const hex = (s: string) => Buffer.from(s, 'hex');
    expect(verifyInclusion(17, 31, hex(p.leafHash), p.inclusionProof.map(hex), hex(p.rootHash))).toBe(true);
    expect(p.checkpoint).toContain(Buffer.from(p.rootHash, 'hex').toString('base64'));
    const beyond = await run('audit', 'prove', built.path, '--entry', '31');
    expect(beyond.code).toBe(1);
    expect(beyond.stderr).toContain('not covered');
  });

  it('tail --no-follow: prints every entry from --from', async () => {
    const r = await run('audit', 'tail', built.path, '--no-follow', '--from', '28');
    expect(r.code).toBe(0);
    const seqs = r.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs).toEqual([28, 29, 30]);
  });
});

/** A second replica's log: its own origin, the cluster's shared signer (as BrokerRunnable writes them). */
async function replicaLog(path: string, writer: string, entries: number): Promise<void> {
  const clock = { t: Date.UTC(2026, 0, 1) };
  const log = await AuditLog.open({
    path,
    origin: `strongroom.audit/test-cluster/${writer}`,
    signer: built.keys.signer,
    now: () => clock.t,
    checkpointIntervalMs: 1e12,
    heartbeatIntervalMs: 0,
  });
  for (let i = 0; i < entries; i++) {
    clock.t += 1000;
    await log.append(releaseEvent(i));
  }
  await log.checkpoint();
  await log.close();
}

describe('strongroom audit verify over one log per replica', { timeout: 30_000 }, () => {
  let replicas: string;
  beforeAll(async () => {
    // A directory of per-replica directories, as collected from each replica's volume.
    replicas = join(dir, 'replicas');
    mkdirSync(join(replicas, 'strongroom-0'), { recursive: true });
    mkdirSync(join(replicas, 'strongroom-1'), { recursive: true });
    copyFileSync(built.path, join(replicas, 'strongroom-0', 'replica-0.log'));
    await replicaLog(join(replicas, 'strongroom-1', 'replica-1.log'), 'replica-1', 12);
  });

  it('verifies each log independently and reports each origin', async () => {
    const r = await run('audit', 'verify', replicas, '--public-key', vkeyFile);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      /strongroom-0\/replica-0\.log: OK: 31 entries.*origin strongroom\.audit\/test-cluster\/replica-0\)/,
    );
    expect(r.stdout).toMatch(
      /strongroom-1\/replica-1\.log: OK: 13 entries.*origin strongroom\.audit\/test-cluster\/replica-1\)/,
    );
    expect(r.stdout).toMatch(/OK: 2 of 2 logs verified\n$/);
    expect(r.code).toBe(0);
    const both = await run(
      'audit',
      'verify',
      join(replicas, 'strongroom-0'),
      join(replicas, 'strongroom-1', 'replica-1.log'),
      '--json',
    );
    const report = JSON.parse(both.stdout) as { ok: boolean; logs: { origin: string; ok: boolean }[] };
    expect(report.ok).toBe(true);
    expect(report.logs.map((l) => l.origin)).toEqual([
      'strongroom.audit/test-cluster/replica-0',
      'strongroom.audit/test-cluster/replica-1',
    ]);
  });

  it("fails when one replica's log is tampered with, naming it; the other still verifies", async () => {
    const tampered = join(dir, 'tampered');
    mkdirSync(join(tampered, 'a'), { recursive: true });
    mkdirSync(join(tampered, 'b'), { recursive: true });
    copyFileSync(join(replicas, 'strongroom-0', 'replica-0.log'), join(tampered, 'a', 'replica-0.log'));
    const lines = readLines(join(replicas, 'strongroom-1', 'replica-1.log'));
    const i = lineOfSeq(lines, 7);
    lines[i] = (lines[i] as string).replace('"allow"', '"deny"');
    writeLines(join(tampered, 'b', 'replica-1.log'), lines);
    const r = await run('audit', 'verify', tampered, '--public-key', vkeyFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/a\/replica-0\.log: OK/);
    expect(r.stdout).toMatch(/b\/replica-1\.log: FAILED/);
    expect(r.stderr).toMatch(/entry 7 .* was edited/);
    expect(r.stdout).toMatch(/FAILED: 1 of 2 logs verified/);
  });

  it('fails when two logs claim the same origin, and refuses --origin with several logs', async () => {
    const twice = join(dir, 'twice');
    mkdirSync(twice, { recursive: true });
    copyFileSync(built.path, join(twice, 'one.log'));
    copyFileSync(built.path, join(twice, 'two.log'));
    const r = await run('audit', 'verify', twice);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/more than one log claims origin strongroom\.audit\/test-cluster\/replica-0/);
    const usage = await run('audit', 'verify', replicas, '--origin', 'x');
    expect(usage.code).toBe(2);
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    expect((await run('audit', 'verify', empty)).code).toBe(2);
  });
});

describe(
  'strongroom audit verify: a rolled-back log, and the published checkpoint',
  { timeout: 60_000 },
  () => {
    /** A live log: 10 entries, the auditor saves its checkpoint, then 10 more entries; checkpoints every 3 entries. */
    let live: string;
    let saved: string;
    let rolledBack: string;
    const clock = { t: Date.UTC(2026, 0, 1) };
    beforeAll(async () => {
      live = join(dir, 'live.log');
      const log = await AuditLog.open({
        path: live,
        origin: 'strongroom.audit/test-cluster/replica-0',
        signer: built.keys.signer,
        now: () => clock.t,
        checkpointIntervalMs: 1e12,
        heartbeatIntervalMs: 0,
      });
      const append = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          clock.t += 1000;
          await log.append(releaseEvent(i));
          if (log.size % 3 === 0) await log.checkpoint();
        }
      };
      await append(10);
      await log.checkpoint();
      // The auditor (or a witness) keeps the checkpoint the log had then.
      const cp = await run('audit', 'checkpoint', live, '--public-key', vkeyFile);
      expect(cp.code).toBe(0);
      expect(cp.stdout).toMatch(/^strongroom\.audit\/test-cluster\/replica-0\n11\n/);
      saved = join(dir, 'saved.checkpoint');
      writeFileSync(saved, cp.stdout);
      await append(10);
      await log.close();
      // Rolled back: cut just after the checkpoint of size 6, an earlier state the writer really signed.
      rolledBack = join(dir, 'rolled-back.log');
      const lines = readLines(live);
      writeLines(rolledBack, lines.slice(0, lines.findIndex((l) => l.includes('replica-0\\n6\\n')) + 1));
    });

    it('plain verify passes the rolled-back copy: a valid prefix that verifies alone with the pinned key', async () => {
      const r = await run('audit', 'verify', rolledBack, '--public-key', vkeyFile);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^OK: 6 entries, \d+ signed checkpoints, latest size 6/);
      expect(r.code).toBe(0);
    });

    it('--trusted-checkpoint refuses it (rollback, exit 1) and accepts the live log', async () => {
      const r = await run(
        'audit',
        'verify',
        rolledBack,
        '--public-key',
        vkeyFile,
        '--trusted-checkpoint',
        saved,
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        'ERROR rollback entry=6: the trusted checkpoint signs 11 entries but the log holds 6 (6 signed): rolled back or truncated',
      );
      expect(r.stdout).toMatch(/^FAILED: 6 entries/);
      const ok = await run('audit', 'verify', live, '--public-key', vkeyFile, '--trusted-checkpoint', saved);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
    });

    it('--max-checkpoint-age: stale-checkpoint, a warning, an error under --strict', async () => {
      // The live log's newest checkpoint covers its last entry, written at 2026-01-01T00:00:20Z: long ago.
      const r = await run('audit', 'verify', live, '--public-key', vkeyFile, '--max-checkpoint-age', '24h');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(
        /WARNING stale-checkpoint entry=20: the newest signed checkpoint \(size 21\) covers entries up to 2026-01-01T00:00:20\.000Z/,
      );
      const strict = await run(
        'audit',
        'verify',
        live,
        '--public-key',
        vkeyFile,
        '--max-checkpoint-age',
        '24h',
        '--strict',
      );
      expect(strict.code).toBe(1);
      expect(strict.stderr).toMatch(/ERROR stale-checkpoint entry=20/);
      const bad = await run('audit', 'verify', live, '--max-checkpoint-age', 'soon');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--max-checkpoint-age.*not a duration/);
    });

    describe('--fetch-checkpoint (the API server stood in for by a local HTTP server)', () => {
      let server: Server;
      let kubeconfig: string;
      let answer: { status: number; body: unknown } = { status: 404, body: {} };
      const requests: string[] = [];
      beforeAll(async () => {
        server = createServer((req, res) => {
          requests.push(`${req.method ?? ''} ${req.url ?? ''}`);
          res.writeHead(answer.status, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify(answer.body));
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        const { port } = server.address() as AddressInfo;
        kubeconfig = join(dir, 'kubeconfig');
        writeFileSync(kubeconfig, kubeConfigFor(`http://127.0.0.1:${port}`).exportConfig());
      });
      afterAll(async () => {
        await new Promise((resolve) => server.close(resolve));
      });
      const configMap = (data: Record<string, string>) => ({
        status: 200,
        body: {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'strongroom-audit-checkpoints' },
          data,
        },
      });
      const latest = (): string => readFileSync(saved, 'utf8');

      it("checks each log against its writer's published checkpoint, from -n's ConfigMap", async () => {
        answer = configMap({ 'replica-0': latest(), 'replica-1': 'another writer' });
        requests.length = 0;
        const args = [
          '--kubeconfig',
          kubeconfig,
          '-n',
          'strongroom-system',
          'audit',
          'verify',
          '--fetch-checkpoint',
        ];
        const refused = await run(...args, rolledBack, '--public-key', vkeyFile);
        expect(requests).toEqual([
          'GET /api/v1/namespaces/strongroom-system/configmaps/strongroom-audit-checkpoints',
        ]);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('ERROR rollback entry=6: the trusted checkpoint signs 11 entries');
        const ok = await run(...args, live, '--public-key', vkeyFile);
        expect(ok.stderr).toBe('');
        expect(ok.code).toBe(0);
        // A writer that published nothing cannot be checked: that fails too.
        answer = configMap({ 'replica-1': 'another writer' });
        const none = await run(...args, live, '--public-key', vkeyFile);
        expect(none.code).toBe(1);
        expect(none.stderr).toContain(
          'ERROR no-trusted-checkpoint: no checkpoint of writer replica-0 in ConfigMap strongroom-system/strongroom-audit-checkpoints',
        );
      });

      it('exit 3 when RBAC refuses the read, 4 without the ConfigMap, 2 with --trusted-checkpoint too', async () => {
        const args = ['--kubeconfig', kubeconfig, '-n', 'ops', 'audit', 'verify', '--fetch-checkpoint', live];
        answer = {
          status: 403,
          body: {
            kind: 'Status',
            apiVersion: 'v1',
            status: 'Failure',
            reason: 'Forbidden',
            code: 403,
            message:
              'configmaps "strongroom-audit-checkpoints" is forbidden: User "eve" cannot get resource "configmaps" in API group "" in the namespace "ops"',
          },
        };
        const forbidden = await run(...args);
        expect(forbidden.code).toBe(3);
        expect(forbidden.stderr).toMatch(/strongroom-audit-checkpoints/);
        answer = {
          status: 404,
          body: {
            kind: 'Status',
            apiVersion: 'v1',
            status: 'Failure',
            reason: 'NotFound',
            code: 404,
            message: 'not found',
          },
        };
        const missing = await run(...args);
        expect(missing.code).toBe(4);
        expect(missing.stderr).toContain('ConfigMap ops/strongroom-audit-checkpoints');
        const both = await run(...args, '--trusted-checkpoint', saved);
        expect(both.code).toBe(2);
        expect(both.stderr).toMatch(/--fetch-checkpoint and --trusted-checkpoint/);
      });
    });
  },
);
