import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signCheckpoint } from './checkpoint.ts';
import { AuditLog } from './log.ts';
import { MerkleTree, leafHash } from './merkle.ts';
import { checkpointLine } from './record.ts';
import {
  buildLog,
  lineOfSeq,
  makeKeys,
  ORIGIN,
  readLines,
  writeLines,
  type BuiltLog,
} from './testdata/fixtures.ts';
import { verifyLog, type Finding, type FindingKind, type VerifyOptions } from './verify.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'audit-verify-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function check(built: BuiltLog, options: VerifyOptions = {}) {
  return verifyLog(readFileSync(built.path), { verifiers: [built.keys.verifier], ...options });
}

function errors(findings: readonly Finding[]): { kind: FindingKind; entry: number | undefined }[] {
  return findings.filter((f) => f.severity === 'error').map((f) => ({ kind: f.kind, entry: f.entry }));
}

/** Entries 0..20 (0 is writer-started); checkpoints at sizes 1, 6, 11, 16, 21. */
const build = (name?: string) =>
  buildLog(dir, { entries: 20, checkpointEvery: 5, ...(name === undefined ? {} : { name }) });

describe('verifyLog on an untouched log', () => {
  it('verifies with no findings at all', async () => {
    const built = await build();
    const report = check(built);
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.entries).toBe(21);
    expect(report.latest?.size).toBe(21);
    expect(report.checkpoints).toBe(built.notes.length);
  });

  it('without a pinned key, verifies against the header key but says so', async () => {
    const built = await build();
    const report = verifyLog(readFileSync(built.path));
    expect(report.ok).toBe(true);
    expect(report.findings.map((f) => f.kind)).toEqual(['key-not-pinned']);
  });
});

describe('verifyLog detects each kind of tampering and names the entry', () => {
  it('an edited entry', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 7);
    lines[i] = (lines[i] as string).replace('"decision":"allow"', '"decision":"deny"');
    writeLines(built.path, lines);
    const report = check(built);
    expect(report.ok).toBe(false);
    // Every checkpoint from size 8 on (11, 16, 21) no longer matches.
    expect(errors(report.findings)).toEqual([
      { kind: 'edited', entry: 7 },
      { kind: 'root-mismatch', entry: undefined },
      { kind: 'root-mismatch', entry: undefined },
      { kind: 'root-mismatch', entry: undefined },
    ]);
    expect(report.findings[0]?.message).toMatch(/entry 7 \(line \d+\) was edited/);
  });

  it('an edited last entry of a checkpoint range (no successor vouches for it)', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 20);
    lines[i] = (lines[i] as string).replace('"podUid":"pod-19"', '"podUid":"pod-evil"');
    writeLines(built.path, lines);
    expect(errors(check(built).findings)).toEqual([
      { kind: 'root-mismatch', entry: undefined },
      { kind: 'edited', entry: 20 },
    ]);
  });

  it('a deleted entry', async () => {
    const built = await build();
    const lines = readLines(built.path);
    lines.splice(lineOfSeq(lines, 9), 1);
    writeLines(built.path, lines);
    const report = check(built);
    expect(errors(report.findings).map((f) => f.kind)).toContain('deleted');
    expect(report.findings.find((f) => f.kind === 'deleted')).toMatchObject({
      entry: 9,
      message: expect.stringContaining('seq 9 is missing') as string,
    });
    expect(report.ok).toBe(false);
  });

  it('an inserted entry (a copy with a forged decision)', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 12);
    lines.splice(i + 1, 0, (lines[i] as string).replace('"reason":"granted"', '"reason":"forged"'));
    writeLines(built.path, lines);
    const report = check(built);
    expect(report.ok).toBe(false);
    expect(report.findings.find((f) => f.kind === 'inserted')).toMatchObject({
      entry: 13,
      message: expect.stringContaining('repeats seq 12') as string,
    });
  });

  it('an inserted entry renumbered to look seamless (the prev chain names it)', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const at = lineOfSeq(lines, 3);
    const prevOf = (line: string) => leafHash(Buffer.from(line)).toString('base64');
    const forged = (lines[at] as string)
      .replace('"pod-2"', '"pod-forged"')
      .replace('"seq":3,', '"seq":4,')
      .replace(/"prev":"[^"]*"/, `"prev":"${prevOf(lines[at] as string)}"`);
    lines.splice(at + 1, 0, forged);
    // Renumber everything after the forged entry, leaving its own prev links as the writer wrote them.
    for (let j = at + 2; j < lines.length; j++) {
      lines[j] = (lines[j] as string).replace(/"seq":(\d+),/, (_, n: string) => `"seq":${Number(n) + 1},`);
    }
    writeLines(built.path, lines);
    const report = check(built);
    expect(report.ok).toBe(false);
    expect(report.findings.find((f) => f.kind === 'inserted')).toMatchObject({
      entry: 4,
      message: expect.stringContaining('links past it') as string,
    });
  });

  it('reordered entries', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const a = lineOfSeq(lines, 13);
    const b = lineOfSeq(lines, 14);
    [lines[a], lines[b]] = [lines[b] as string, lines[a] as string];
    writeLines(built.path, lines);
    const report = check(built);
    expect(report.ok).toBe(false);
    expect(errors(report.findings).map((f) => f.kind)).toEqual(
      expect.arrayContaining(['reordered', 'root-mismatch', 'time-regression']),
    );
    expect(report.findings.find((f) => f.kind === 'reordered')?.message).toMatch(
      /seq 13 at position 14 .* comes after seq 14/,
    );
  });

  it('a truncated tail (the checkpoint that covered it remains)', async () => {
    const built = await build();
    const lines = readLines(built.path);
    writeLines(built.path, lines.slice(0, lineOfSeq(lines, 18)).concat(lines.at(-1) as string));
    const report = check(built);
    expect(errors(report.findings)).toEqual([{ kind: 'truncated', entry: 18 }]);
    expect(report.findings[0]?.message).toContain('entries 18..20 were removed');
  });

  it('a truncated tail with a checkpoint re-signed by the wrong key', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const kept = lines.slice(0, lineOfSeq(lines, 18));
    const tree = new MerkleTree();
    for (const l of kept) if (l.startsWith('{"event"')) tree.push(leafHash(Buffer.from(l)));
    const attacker = makeKeys(ORIGIN); // same name, different key
    kept.push(
      checkpointLine(
        signCheckpoint(
          { origin: ORIGIN, size: tree.size, rootHash: tree.root(), extensions: [] },
          attacker.signer,
        ),
      ),
    );
    writeLines(built.path, kept);
    const report = check(built);
    expect(report.ok).toBe(false);
    expect(errors(report.findings)).toEqual([{ kind: 'untrusted-signature', entry: undefined }]);
    expect(report.findings[0]?.message).toMatch(/claims size 18.*no signature by a trusted key/);
  });

  it('a rollback to an older state, judged against a trusted checkpoint', async () => {
    const built = await build();
    const old = readFileSync(built.path);
    const trusted = built.notes.at(-1) as string; // size 21, saved by an auditor
    // The attacker restores an older copy of the file: internally consistent, signed by the real key.
    const lines = readLines(built.path);
    const cut = lines.findIndex((l) =>
      l.startsWith('{"checkpoint":"strongroom.audit/test-cluster/replica-0\\n11\\n'),
    );
    writeLines(built.path, lines.slice(0, cut + 1));
    expect(check(built).ok).toBe(true); // without the trusted checkpoint nothing is wrong
    const report = check(built, { trustedCheckpoint: trusted });
    expect(errors(report.findings)).toEqual([{ kind: 'rollback', entry: 11 }]);
    expect(report.findings.at(-1)?.message).toContain('signs 21 entries but the log holds 11');
    // And the real log is consistent with an older trusted checkpoint.
    writeFileSync(built.path, old);
    expect(check(built, { trustedCheckpoint: built.notes[2] as string }).ok).toBe(true);
  });

  it('a fork: two checkpoints of the same size with different roots', async () => {
    const keys = makeKeys();
    const a = await buildLog(dir, { entries: 20, checkpointEvery: 5, keys, name: 'a.log' });
    // The same writer key signs a different history (a split view).
    const b = await buildLog(dir, {
      entries: 20,
      checkpointEvery: 5,
      keys,
      name: 'b.log',
      event: (i) => ({
        type: 'grant-revoked',
        grant: { namespace: 'n', name: 'g', uid: `u${i}`, resourceVersion: '1' },
        actor: 'mallory',
        reason: 'fork',
      }),
    });
    const report = check(a, { trustedCheckpoint: b.notes.at(-1) as string });
    expect(errors(report.findings)).toEqual([{ kind: 'fork', entry: undefined }]);
    expect(report.findings.at(-1)?.message).toContain('both sign size 21 with different roots');
    // A forked checkpoint spliced into the file itself.
    const lines = readLines(a.path);
    lines.push(checkpointLine(b.notes.at(-1) as string));
    writeLines(a.path, lines);
    const spliced = check(a);
    expect(spliced.findings.filter((f) => f.kind === 'fork')).toHaveLength(1);
    expect(spliced.ok).toBe(false);
  });

  it('a history rewritten below a trusted checkpoint', async () => {
    const built = await build();
    const trusted = built.notes[3] as string; // size 16
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 2);
    lines[i] = (lines[i] as string).replace('"granted"', '"GRANTED"');
    writeLines(built.path, lines);
    const kinds = errors(check(built, { trustedCheckpoint: trusted }).findings).map((f) => f.kind);
    expect(kinds).toEqual(expect.arrayContaining(['edited', 'inconsistent']));
  });

  it('a wrong signature key', async () => {
    const built = await build();
    const stranger = makeKeys(ORIGIN);
    const report = verifyLog(readFileSync(built.path), { verifiers: [stranger.verifier] });
    expect(report.ok).toBe(false);
    const kinds = new Set(errors(report.findings).map((f) => f.kind));
    expect([...kinds]).toEqual(['untrusted-signature', 'no-checkpoint']);
    expect(report.findings.filter((f) => f.kind === 'untrusted-signature')).toHaveLength(built.notes.length);
  });

  it('a checkpoint altered under the right key', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const i = lines.findIndex((l) => l.includes('\\n16\\n'));
    lines[i] = (lines[i] as string).replace('\\n16\\n', '\\n15\\n');
    writeLines(built.path, lines);
    expect(errors(check(built).findings)).toEqual([{ kind: 'bad-signature', entry: undefined }]);
  });

  it('a time that goes backwards', async () => {
    const built = await build();
    const lines = readLines(built.path);
    const i = lineOfSeq(lines, 5);
    lines[i] = (lines[i] as string).replace(/"time":"[^"]*"/, '"time":"2025-01-01T00:00:00.000Z"');
    writeLines(built.path, lines);
    const found = errors(check(built).findings);
    expect(found).toContainEqual({ kind: 'time-regression', entry: 5 });
    expect(found).toContainEqual({ kind: 'edited', entry: 5 });
  });

  it('a malformed line', async () => {
    const built = await build();
    const lines = readLines(built.path);
    lines[lineOfSeq(lines, 4)] = 'garbage';
    writeLines(built.path, lines);
    expect(errors(check(built).findings)).toContainEqual({ kind: 'malformed', entry: 4 });
  });

  it('a log of another origin', async () => {
    const built = await build();
    const report = check(built, { origin: 'strongroom.audit/test-cluster/replica-1' });
    expect(new Set(report.findings.map((f) => f.kind))).toEqual(
      new Set(['origin-mismatch', 'no-checkpoint']),
    );
  });

  it('a heartbeat gap, and a restart gap as a warning', async () => {
    const keys = makeKeys();
    const path = join(dir, 'hb.log');
    const clock = { t: Date.UTC(2026, 0, 1) };
    const open = () =>
      AuditLog.open({
        path,
        origin: ORIGIN,
        signer: keys.signer,
        now: () => clock.t,
        heartbeatIntervalMs: 0,
        checkpointIntervalMs: 1e12,
      });
    let log = await open();
    for (let i = 0; i < 3; i++) {
      clock.t += 1000;
      await log.append({ type: 'heartbeat', intervalMs: 1000 });
    }
    await log.close();
    const built = { path, keys, notes: [] };
    expect(check(built).findings).toEqual([]);
    // The writer is down for a minute, then restarts: visible, but as a restart.
    clock.t += 60_000;
    log = await open();
    clock.t += 1000;
    await log.append({ type: 'heartbeat', intervalMs: 1000 });
    // Then it goes silent for 5 s while running: entries may have been removed.
    clock.t += 5000;
    await log.append({ type: 'heartbeat', intervalMs: 1000 });
    await log.close();
    const report = check(built);
    expect(report.findings.map((f) => [f.kind, f.severity, f.entry])).toEqual([
      ['writer-restart', 'warning', 4],
      ['heartbeat-gap', 'error', 6],
    ]);
    expect(report.findings[1]?.message).toContain(
      '5000 ms of silence between entries 5 and 6 (limit 2000 ms)',
    );
    expect(check(built, { maxGapMs: 120_000 }).ok).toBe(true);
  });

  it('reports a torn tail and an unsigned tail as warnings, errors under --strict', async () => {
    const built = await build();
    const lines = readLines(built.path);
    lines.pop(); // drop the final checkpoint: entries 16..20 are unsigned
    writeFileSync(built.path, lines.join('\n') + '\n{"event":{"type":"hea');
    const report = check(built);
    expect(report.ok).toBe(true);
    expect(report.findings.map((f) => [f.kind, f.severity])).toEqual([
      ['torn-tail', 'warning'],
      ['unsigned-tail', 'warning'],
    ]);
    expect(check(built, { strict: true }).ok).toBe(false);
  });

  it('refuses a file without our header', async () => {
    const built = await build();
    writeLines(built.path, readLines(built.path).slice(1));
    expect(errors(check(built).findings)[0]?.kind).toBe('header');
  });
});

describe('verifyLog against a trusted checkpoint: trustedVerified', () => {
  it('is undefined without one, true when the log extends it, false when rolled back, forked or unverifiable', async () => {
    const built = await build();
    expect(check(built).trustedVerified).toBeUndefined();
    expect(check(built, { trustedCheckpoint: built.notes[2] as string }).trustedVerified).toBe(true);
    expect(check(built, { trustedCheckpoint: built.notes.at(-1) as string }).trustedVerified).toBe(true);
    const other = await buildLog(dir, { entries: 20, checkpointEvery: 5, name: 'other.log' });
    // Signed by another key: the trusted checkpoint itself does not verify.
    const unverifiable = check(built, { trustedCheckpoint: other.notes.at(-1) as string });
    expect(unverifiable.trustedVerified).toBe(false);
    expect(errors(unverifiable.findings)).toEqual([{ kind: 'untrusted-signature', entry: undefined }]);
    const lines = readLines(built.path);
    const cut = lines.findIndex((l) =>
      l.includes('"checkpoint":"strongroom.audit/test-cluster/replica-0\\n6\\n'),
    );
    writeLines(built.path, lines.slice(0, cut + 1));
    const rolledBack = check(built, { trustedCheckpoint: built.notes[2] as string });
    expect(rolledBack.trustedVerified).toBe(false);
    expect(errors(rolledBack.findings)).toEqual([{ kind: 'rollback', entry: 6 }]);
    // A finding that has nothing to do with the trusted checkpoint leaves it verified.
    expect(
      check(built, { trustedCheckpoint: built.notes[1] as string, strict: true, maxGapMs: 0 })
        .trustedVerified,
    ).toBe(true);
  });
});

describe('verifyLog --max-checkpoint-age: stale-checkpoint', () => {
  /** buildLog's entry i is written at 2026-01-01T00:00:00Z + i s; entries 0..20, checkpoints at 1, 6, 11, 16, 21. */
  const start = Date.UTC(2026, 0, 1);

  it('warns when the last entry the newest checkpoint covers is older than the limit, an error under --strict', async () => {
    const built = await build();
    // The newest checkpoint (size 21) covers entry 20, written at start + 20 s.
    const fresh = check(built, { maxCheckpointAgeMs: 60_000, now: start + 20_000 + 60_000 });
    expect(fresh.findings).toEqual([]);
    const stale = check(built, { maxCheckpointAgeMs: 60_000, now: start + 20_000 + 60_001 });
    expect(stale.ok).toBe(true);
    expect(stale.findings).toEqual([
      expect.objectContaining({ kind: 'stale-checkpoint', severity: 'warning', entry: 20 }),
    ]);
    expect(stale.findings[0]?.message).toContain(
      'covers entries up to 2026-01-01T00:00:20.000Z, 60001 ms ago',
    );
    const strict = check(built, { maxCheckpointAgeMs: 60_000, now: start + 20_000 + 60_001, strict: true });
    expect(strict.ok).toBe(false);
    expect(errors(strict.findings)).toEqual([{ kind: 'stale-checkpoint', entry: 20 }]);
  });

  it('measures the newest checkpoint, not the newest entry: fresh entries after an old checkpoint are still stale', async () => {
    const built = await build();
    const lines = readLines(built.path);
    // Drop the last checkpoint (size 21): the newest now covers entries 0..15 (entry 15 at start + 15 s).
    const last = lines.findLastIndex((l) => l.startsWith('{"checkpoint"'));
    writeLines(built.path, lines.slice(0, last));
    const report = check(built, { maxCheckpointAgeMs: 10_000, now: start + 26_000 });
    expect(report.findings.map((f) => [f.kind, f.entry])).toEqual([
      ['unsigned-tail', 16],
      ['stale-checkpoint', 15],
    ]);
  });
});
