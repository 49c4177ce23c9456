/**
 * Offline verification of an audit log file: rebuild the tree from the entries and check every claim the
 * file makes, producing findings that name the entry and the kind of tampering.
 */
import { openCheckpoint, peekCheckpoint, type Checkpoint, type OpenedCheckpoint } from './checkpoint.ts';
import { MerkleTree, leafHash, verifyConsistency } from './merkle.ts';
import { NoteError, parseVerifierKey, type NoteVerifier } from './note.ts';
import { CHECKPOINT_PREFIX, HEADER_PREFIX, LOG_FORMAT, readEntryFields, type LogHeader } from './record.ts';

export type FindingKind =
  /** The header line is missing or not ours. */
  | 'header'
  /** A line is not a well-formed record. */
  | 'malformed'
  /** An entry's content was changed. */
  | 'edited'
  /** Entries are missing. */
  | 'deleted'
  /** An entry that the writer never wrote is present. */
  | 'inserted'
  /** Entries are out of order. */
  | 'reordered'
  /** An entry's time is earlier than its predecessor's. */
  | 'time-regression'
  /** A signed checkpoint's root does not match the entries it covers. */
  | 'root-mismatch'
  /** A signed checkpoint covers more entries than the file holds: the tail was cut off. */
  | 'truncated'
  /** A signature by the trusted key does not verify. */
  | 'bad-signature'
  /** A checkpoint carries no signature by a trusted key (e.g. re-signed by another key). */
  | 'untrusted-signature'
  /** A checkpoint names another log. */
  | 'origin-mismatch'
  /** A later checkpoint is smaller than an earlier one. */
  | 'checkpoint-regression'
  /** Two checkpoints of the same size with different roots. */
  | 'fork'
  /** The log is older (smaller) than the trusted checkpoint. */
  | 'rollback'
  /** The log's history differs from what the trusted checkpoint committed to. */
  | 'inconsistent'
  /** The writer was silent for longer than its heartbeat interval allows. */
  | 'heartbeat-gap'
  /** A gap that ends with the writer restarting (warning). */
  | 'writer-restart'
  /** Entries after the last checkpoint are not yet signed (warning). */
  | 'unsigned-tail'
  /** Entries exist but no checkpoint signs any of them. */
  | 'no-checkpoint'
  /** An incomplete last line, as a crash leaves behind; the writer cuts it off on open (warning). */
  | 'torn-tail'
  /** Signatures were checked against the key the log names for itself, not a pinned key (warning). */
  | 'key-not-pinned'
  /**
   * The newest signed checkpoint covers no entry younger than `maxCheckpointAgeMs` (warning): the writer stopped, or
   * this copy is old. C2SP checkpoints carry no time; the age is that of the last entry the checkpoint covers.
   */
  | 'stale-checkpoint'
  /** A trusted checkpoint was asked for (`--fetch-checkpoint`) but none is published for this log's writer. */
  | 'no-trusted-checkpoint';

export interface Finding {
  readonly kind: FindingKind;
  readonly severity: 'error' | 'warning';
  /** The entry (its position in the file, which is its leaf index and its rightful seq), when one is named. */
  readonly entry?: number | undefined;
  /** The 1-based line of the file. */
  readonly line?: number | undefined;
  readonly message: string;
}

export interface VerifyOptions {
  /** Trusted verifier keys. Without them the header's key is used and 'key-not-pinned' is reported. */
  readonly verifiers?: readonly NoteVerifier[];
  /** A signed checkpoint trusted from earlier (a witness, a saved copy): the log must extend it. */
  readonly trustedCheckpoint?: string;
  /** The origin the log must have (default: the header's). */
  readonly origin?: string;
  /** Largest silence allowed between entries, in ms. Default: twice the latest heartbeat interval. */
  readonly maxGapMs?: number;
  /** Skip the heartbeat-gap check (the writer uses this on open). */
  readonly skipGaps?: boolean;
  /** Treat warnings as errors. */
  readonly strict?: boolean;
  /**
   * Warn `stale-checkpoint` when the last entry the newest signed checkpoint covers is older than this (ms) at `now`.
   * A live writer checkpoints every second and writes a heartbeat every minute, so this should exceed the heartbeat
   * interval plus the checkpoint interval.
   */
  readonly maxCheckpointAgeMs?: number;
  /** The time `maxCheckpointAgeMs` is measured at, ms since the epoch (default: the clock). */
  readonly now?: number;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly origin: string | undefined;
  readonly entries: number;
  readonly checkpoints: number;
  /** The largest valid signed checkpoint. */
  readonly latest: (Checkpoint & { readonly note: string }) | undefined;
  readonly findings: readonly Finding[];
  /** The tree rebuilt from the entries, in file order. */
  readonly tree: MerkleTree;
  /** Bytes of complete lines; anything after is a torn tail. */
  readonly completeLength: number;
  /** The last entry's prev-chain value and time, for a writer resuming the log. */
  readonly lastTime: string | undefined;
  /**
   * With a trusted checkpoint: true when the log extends it (no finding about it), false when it does not (rolled
   * back, inconsistent, forked, or the trusted checkpoint itself does not verify). Undefined without one.
   */
  readonly trustedVerified: boolean | undefined;
}

interface ParsedEntry {
  readonly seq: number;
  readonly timeMs: number;
  readonly prev: string | undefined;
}

const NO_SEQ = -1;

/** Verifies the bytes of a log file. Never throws on bad content: every problem is a finding. */
export function verifyLog(bytes: Buffer, options: VerifyOptions = {}): VerifyReport {
  const findings: Finding[] = [];
  const add = (f: Finding): void => {
    findings.push(
      options.strict === true && f.severity === 'warning' && f.kind !== 'key-not-pinned'
        ? { ...f, severity: 'error' }
        : f,
    );
  };
  const tree = new MerkleTree();
  const entries: ParsedEntry[] = [];
  const entryLines: number[] = [];
  const heartbeatIntervals = new Map<number, number>();
  const restarts = new Set<number>();
  let lastTime: string | undefined;

  // --- header
  let pos = 0;
  let lineNo = 0;
  let header: LogHeader | undefined;
  const firstEnd = bytes.indexOf(10);
  if (firstEnd >= 0 && bytes.subarray(0, HEADER_PREFIX.length).toString() === HEADER_PREFIX) {
    try {
      const h = JSON.parse(bytes.toString('utf8', 0, firstEnd)) as Partial<LogHeader>;
      if (h.format === LOG_FORMAT && typeof h.origin === 'string' && typeof h.vkey === 'string') {
        header = h as LogHeader;
      }
    } catch {
      // reported below
    }
    pos = firstEnd + 1;
    lineNo = 1;
  }
  if (header === undefined) {
    add({ kind: 'header', severity: 'error', line: 1, message: `line 1 is not a ${LOG_FORMAT} header` });
  }
  const origin = options.origin ?? header?.origin;
  let verifiers = options.verifiers;
  if (verifiers === undefined || verifiers.length === 0) {
    verifiers = [];
    if (header !== undefined) {
      try {
        verifiers = [parseVerifierKey(header.vkey)];
        add({
          kind: 'key-not-pinned',
          severity: 'warning',
          message: `signatures were checked against the log's own key ${header.vkey}; pin it with --public-key`,
        });
      } catch (err) {
        add({
          kind: 'header',
          severity: 'error',
          line: 1,
          message: `the header's key is invalid: ${String(err)}`,
        });
      }
    }
  }

  // --- records
  interface SeenCheckpoint {
    readonly cp: OpenedCheckpoint;
    readonly line: number;
    readonly note: string;
  }
  const signed: SeenCheckpoint[] = [];
  const mismatched: SeenCheckpoint[] = [];
  const deferred: SeenCheckpoint[] = [];
  let completeLength = pos;
  for (;;) {
    const end = bytes.indexOf(10, pos);
    if (end < 0) break;
    lineNo++;
    completeLength = end + 1;
    // {"checkpoint": vs {"event": — one byte tells them apart; the record parser checks the rest.
    const isCheckpoint = end - pos > CHECKPOINT_PREFIX.length && bytes[pos + 2] === 0x63;
    if (isCheckpoint) {
      const note = parseCheckpointRecord(bytes.toString('utf8', pos, end));
      if (note === undefined) {
        add({
          kind: 'malformed',
          severity: 'error',
          line: lineNo,
          message: `line ${lineNo}: malformed checkpoint record`,
        });
      } else {
        const seen = checkCheckpoint(note, lineNo);
        if (seen !== undefined) {
          if (seen.cp.size === tree.size) compareRoot(seen, tree.root());
          else deferred.push(seen);
          signed.push(seen);
        }
      }
    } else {
      const index = tree.size;
      const line = bytes.subarray(pos, end);
      tree.push(leafHash(line));
      entryLines.push(lineNo);
      entries.push(parseEntry(line, index, lineNo));
    }
    pos = end + 1;
  }
  if (pos < bytes.length) {
    add({
      kind: 'torn-tail',
      severity: 'warning',
      line: lineNo + 1,
      message: `${bytes.length - pos} bytes after the last complete line (a crashed write); the writer cuts them off on open`,
    });
  }

  function parseEntry(line: Buffer, index: number, ln: number): ParsedEntry {
    const r = readEntryFields(line);
    const timeMs = r === undefined ? NaN : Date.parse(r.time);
    if (r === undefined || Number.isNaN(timeMs) || !Number.isSafeInteger(r.seq)) {
      add({
        kind: 'malformed',
        severity: 'error',
        entry: index,
        line: ln,
        message: `entry ${index} (line ${ln}) is not a well-formed entry record`,
      });
      return { seq: NO_SEQ, timeMs: NaN, prev: undefined };
    }
    if (r.special === 'heartbeat' && r.intervalMs !== undefined) heartbeatIntervals.set(index, r.intervalMs);
    else if (r.special === 'writer-started') restarts.add(index);
    lastTime = r.time;
    return { seq: r.seq, timeMs, prev: r.prev };
  }

  function checkCheckpoint(note: string, ln: number): SeenCheckpoint | undefined {
    let cp: OpenedCheckpoint;
    try {
      cp = openCheckpoint(note, verifiers ?? []);
    } catch (err) {
      const kind: FindingKind =
        err instanceof NoteError && err.kind === 'bad-signature'
          ? 'bad-signature'
          : err instanceof NoteError && err.kind === 'unverified'
            ? 'untrusted-signature'
            : 'malformed';
      let claim = '';
      try {
        const body = peekCheckpoint(note);
        claim = ` (it claims size ${body.size})`;
      } catch {
        // the body is unreadable too; the error says why
      }
      add({
        kind,
        severity: 'error',
        line: ln,
        message: `checkpoint at line ${ln}${claim}: ${(err as Error).message}`,
      });
      return undefined;
    }
    if (origin !== undefined && cp.origin !== origin) {
      add({
        kind: 'origin-mismatch',
        severity: 'error',
        line: ln,
        message: `checkpoint at line ${ln} is for origin ${JSON.stringify(cp.origin)}, not ${JSON.stringify(origin)}`,
      });
      return undefined;
    }
    const prev = signed.at(-1);
    if (prev !== undefined && cp.size < prev.cp.size) {
      add({
        kind: 'checkpoint-regression',
        severity: 'error',
        line: ln,
        message: `checkpoint at line ${ln} has size ${cp.size}, smaller than the checkpoint of size ${prev.cp.size} at line ${prev.line} before it`,
      });
    }
    for (const other of signed) {
      if (other.cp.size === cp.size && !other.cp.rootHash.equals(cp.rootHash)) {
        add({
          kind: 'fork',
          severity: 'error',
          line: ln,
          message: `checkpoints at lines ${other.line} and ${ln} both sign size ${cp.size} with different roots: a forked log`,
        });
      }
    }
    return { cp, line: ln, note };
  }

  function compareRoot(seen: SeenCheckpoint, root: Buffer): void {
    if (!root.equals(seen.cp.rootHash)) mismatched.push(seen);
  }

  // Checkpoints whose size differs from the entries before them in the file.
  for (const seen of deferred) {
    if (seen.cp.size > tree.size) {
      add({
        kind: 'truncated',
        severity: 'error',
        entry: tree.size,
        line: seen.line,
        message: `checkpoint at line ${seen.line} signs ${seen.cp.size} entries but the log holds ${tree.size}: entries ${tree.size}..${seen.cp.size - 1} were removed`,
      });
    } else {
      compareRoot(seen, tree.root(seen.cp.size));
    }
  }

  // --- sequence numbers: deleted, inserted, reordered
  const located = new Set<number>();
  const positionOf = new Map<number, number>();
  let duplicates = false;
  for (let i = 0; i < entries.length; i++) {
    const s = (entries[i] as ParsedEntry).seq;
    if (s === NO_SEQ) continue;
    const first = positionOf.get(s);
    if (first !== undefined) {
      duplicates = true;
      located.add(i);
      add({
        kind: 'inserted',
        severity: 'error',
        entry: i,
        line: entryLines[i],
        message: `entry at position ${i} (line ${entryLines[i]}) repeats seq ${s} of position ${first}: an entry was inserted`,
      });
    } else {
      positionOf.set(s, i);
    }
  }
  if (!duplicates) {
    let ascending = true;
    for (let i = 1; i < entries.length; i++) {
      const a = (entries[i - 1] as ParsedEntry).seq;
      const b = (entries[i] as ParsedEntry).seq;
      if (a !== NO_SEQ && b !== NO_SEQ && b < a) {
        ascending = false;
        located.add(i - 1).add(i);
        add({
          kind: 'reordered',
          severity: 'error',
          entry: i,
          line: entryLines[i],
          message: `entries are out of order: seq ${b} at position ${i} (line ${entryLines[i]}) comes after seq ${a}`,
        });
        break;
      }
    }
    if (ascending) {
      let expected = 0;
      for (let i = 0; i < entries.length; i++) {
        const s = (entries[i] as ParsedEntry).seq;
        if (s === NO_SEQ) {
          expected++;
          continue;
        }
        if (s > expected) {
          located.add(i);
          const range = s - 1 === expected ? `seq ${expected} is` : `seq ${expected}..${s - 1} are`;
          add({
            kind: 'deleted',
            severity: 'error',
            entry: expected,
            line: entryLines[i],
            message: `${range} missing before line ${entryLines[i]}: deleted`,
          });
        } else if (s < expected) {
          located.add(i);
          add({
            kind: 'inserted',
            severity: 'error',
            entry: i,
            line: entryLines[i],
            message: `entry at position ${i} (line ${entryLines[i]}) has seq ${s}, expected ${expected}: an entry was inserted`,
          });
        }
        expected = s + 1;
      }
    }
  }

  // --- the prev chain: names an edited (or inserted) entry
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as ParsedEntry;
    if (e.prev === undefined) continue;
    const want = i === 0 ? '' : tree.leaf(i - 1).toString('base64');
    if (e.prev === want || located.has(i) || located.has(i - 1)) continue;
    if (i >= 2 && e.prev === tree.leaf(i - 2).toString('base64')) {
      located.add(i - 1);
      add({
        kind: 'inserted',
        severity: 'error',
        entry: i - 1,
        line: entryLines[i - 1],
        message: `entry at position ${i - 1} (line ${entryLines[i - 1]}) was inserted: its successor links past it`,
      });
    } else if (i > 0) {
      located.add(i - 1);
      add({
        kind: 'edited',
        severity: 'error',
        entry: i - 1,
        line: entryLines[i - 1],
        message: `entry ${i - 1} (line ${entryLines[i - 1]}) was edited: it no longer hashes to what entry ${i} recorded`,
      });
    }
  }

  // --- roots: report mismatches, naming the last entry of the range when nothing else explains it
  const good = signed.filter((s) => !mismatched.includes(s) && s.cp.size <= tree.size);
  for (const seen of mismatched) {
    const below = good.filter((g) => g.cp.size < seen.cp.size).at(-1)?.cp.size ?? 0;
    add({
      kind: 'root-mismatch',
      severity: 'error',
      line: seen.line,
      message: `checkpoint at line ${seen.line} (size ${seen.cp.size}) does not match the entries: something in entries ${below}..${seen.cp.size - 1} changed`,
    });
    let explained = false;
    for (let i = below; i < seen.cp.size; i++) if (located.has(i)) explained = true;
    if (!explained && seen.cp.size > 0) {
      const last = seen.cp.size - 1;
      located.add(last);
      add({
        kind: 'edited',
        severity: 'error',
        entry: last,
        line: entryLines[last],
        message: `entry ${last} (line ${entryLines[last]}) was edited: the entries before it are intact, the checkpoint of size ${seen.cp.size} is not`,
      });
    }
  }

  // --- time
  for (let i = 1; i < entries.length; i++) {
    const a = (entries[i - 1] as ParsedEntry).timeMs;
    const b = (entries[i] as ParsedEntry).timeMs;
    if (b < a) {
      add({
        kind: 'time-regression',
        severity: 'error',
        entry: i,
        line: entryLines[i],
        message: `entry ${i} (line ${entryLines[i]}) is ${a - b} ms earlier than entry ${i - 1}`,
      });
    }
  }

  // --- heartbeat gaps
  if (options.skipGaps !== true) {
    let interval: number | undefined;
    for (let i = 1; i < entries.length; i++) {
      interval = heartbeatIntervals.get(i - 1) ?? interval;
      const limit = options.maxGapMs ?? (interval === undefined ? undefined : 2 * interval);
      if (limit === undefined) continue;
      const gap = (entries[i] as ParsedEntry).timeMs - (entries[i - 1] as ParsedEntry).timeMs;
      if (gap > limit) {
        const restart = restarts.has(i);
        add({
          kind: restart ? 'writer-restart' : 'heartbeat-gap',
          severity: restart ? 'warning' : 'error',
          entry: i,
          line: entryLines[i],
          message: `${gap} ms of silence between entries ${i - 1} and ${i} (limit ${limit} ms)${restart ? ': the writer was down and restarted' : ': entries may have been removed'}`,
        });
      }
    }
  }

  // --- coverage
  const latestSeen = good.reduce<SeenCheckpoint | undefined>(
    (a, b) => (a === undefined || b.cp.size >= a.cp.size ? b : a),
    undefined,
  );
  const latest = latestSeen === undefined ? undefined : { ...latestSeen.cp, note: latestSeen.note };
  if (tree.size > 0 && signed.length === 0) {
    add({
      kind: 'no-checkpoint',
      severity: 'error',
      message: `${tree.size} entries and no checkpoint signed by a trusted key`,
    });
  } else if (latest !== undefined && tree.size > latest.size) {
    add({
      kind: 'unsigned-tail',
      severity: 'warning',
      entry: latest.size,
      message: `entries ${latest.size}..${tree.size - 1} come after the last signed checkpoint and are not yet covered by a signature`,
    });
  }

  // --- the age of the newest checkpoint: C2SP checkpoints have no timestamp, so the time of the last entry it covers
  if (options.maxCheckpointAgeMs !== undefined && latest !== undefined && latest.size > 0) {
    const covered = entries[latest.size - 1]?.timeMs;
    const now = options.now ?? Date.now();
    if (covered !== undefined && !Number.isNaN(covered) && now - covered > options.maxCheckpointAgeMs) {
      add({
        kind: 'stale-checkpoint',
        severity: 'warning',
        entry: latest.size - 1,
        message: `the newest signed checkpoint (size ${latest.size}) covers entries up to ${new Date(covered).toISOString()}, ${now - covered} ms ago (limit ${options.maxCheckpointAgeMs} ms): the writer stopped checkpointing, or this copy is old`,
      });
    }
  }

  // --- the trusted checkpoint
  let trustedVerified: boolean | undefined;
  if (options.trustedCheckpoint !== undefined) {
    const before = findings.length;
    checkTrusted(options.trustedCheckpoint);
    trustedVerified = findings.length === before;
  }
  function checkTrusted(note: string): void {
    let trusted: OpenedCheckpoint;
    try {
      trusted = openCheckpoint(note, verifiers ?? []);
    } catch (err) {
      add({
        kind:
          err instanceof NoteError && err.kind === 'bad-signature' ? 'bad-signature' : 'untrusted-signature',
        severity: 'error',
        message: `the trusted checkpoint does not verify: ${(err as Error).message}`,
      });
      return;
    }
    if (origin !== undefined && trusted.origin !== origin) {
      add({
        kind: 'origin-mismatch',
        severity: 'error',
        message: `the trusted checkpoint is for origin ${JSON.stringify(trusted.origin)}, not ${JSON.stringify(origin)}`,
      });
      return;
    }
    const signedSize = signed.reduce((m, s) => Math.max(m, s.cp.size), 0);
    if (trusted.size > tree.size || trusted.size > signedSize) {
      add({
        kind: 'rollback',
        severity: 'error',
        entry: Math.min(tree.size, signedSize),
        message: `the trusted checkpoint signs ${trusted.size} entries but the log holds ${tree.size} (${signedSize} signed): rolled back or truncated`,
      });
      return;
    }
    const same = signed.find((s) => s.cp.size === trusted.size && !s.cp.rootHash.equals(trusted.rootHash));
    if (!tree.root(trusted.size).equals(trusted.rootHash)) {
      if (same !== undefined) {
        add({
          kind: 'fork',
          severity: 'error',
          line: same.line,
          message: `the trusted checkpoint and the checkpoint at line ${same.line} both sign size ${trusted.size} with different roots: a forked log`,
        });
      } else {
        add({
          kind: 'inconsistent',
          severity: 'error',
          message: `the first ${trusted.size} entries do not hash to the trusted checkpoint's root: history was rewritten`,
        });
      }
      return;
    }
    if (latest !== undefined && latest.size >= trusted.size) {
      const proof = tree.consistencyProof(trusted.size, latest.size);
      if (!verifyConsistency(trusted.size, latest.size, proof, trusted.rootHash, latest.rootHash)) {
        add({
          kind: 'inconsistent',
          severity: 'error',
          message: `no consistency from the trusted checkpoint (size ${trusted.size}) to the latest (size ${latest.size})`,
        });
      }
    }
  }

  return {
    ok: !findings.some((f) => f.severity === 'error'),
    origin,
    entries: tree.size,
    checkpoints: signed.length,
    latest,
    findings,
    tree,
    completeLength,
    lastTime,
    trustedVerified,
  };
}

function parseCheckpointRecord(line: string): string | undefined {
  try {
    const r = JSON.parse(line) as { checkpoint?: unknown };
    return typeof r.checkpoint === 'string' && Object.keys(r).length === 1 ? r.checkpoint : undefined;
  } catch {
    return undefined;
  }
}

/** One line per finding, for humans. */
export function formatFindings(report: VerifyReport): string {
  return report.findings
    .map(
      (f) =>
        `${f.severity.toUpperCase()} ${f.kind}${f.entry === undefined ? '' : ` entry=${f.entry}`}: ${f.message}`,
    )
    .join('\n');
}
