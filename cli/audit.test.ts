import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
