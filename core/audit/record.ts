/**
 * The log file: newline-delimited canonical JSON, one record a line (docs/audit.md).
 *
 *   line 1   {"format":"strongroom-audit/v1","origin":"…","vkey":"…"}        header (not a leaf)
 *   entries  {"event":{…},"prev":"<b64 leaf hash of seq-1>","seq":N,"time":"<RFC 3339 ms>"}   leaf N
 *   …        {"checkpoint":"<C2SP signed note>"}                              not a leaf
 *
 * An entry's leaf is its line's bytes without the newline: the Merkle tree commits to seq, time, prev and
 * event exactly as written. `prev` chains each entry to its predecessor so that a verifier can name the
 * altered entry instead of only the checkpoint range it falls in.
 */
import { canonicalize } from './canonical-json.ts';
import type { AuditEvent } from './event.ts';

export const LOG_FORMAT = 'strongroom-audit/v1';
export const CHECKPOINT_PREFIX = '{"checkpoint":';
export const HEADER_PREFIX = '{"format":';

export interface LogHeader {
  readonly format: string;
  readonly origin: string;
  /** The writer's verifier key: a hint only; pin the key with --public-key to trust it. */
  readonly vkey: string;
}

export interface EntryRecord {
  readonly seq: number;
  readonly time: string;
  readonly prev: string;
  readonly event: AuditEvent;
}

export function headerLine(origin: string, vkey: string): string {
  return canonicalize({ format: LOG_FORMAT, origin, vkey });
}

export function entryLine(entry: EntryRecord): string {
  return canonicalize(entry);
}

export function checkpointLine(note: string): string {
  return canonicalize({ checkpoint: note });
}

export interface EntryFields {
  readonly seq: number;
  readonly time: string;
  readonly prev: string;
  /** The event's type, when it is one the verifier needs (heartbeat, writer-started). */
  readonly special: 'heartbeat' | 'writer-started' | undefined;
  readonly intervalMs: number | undefined;
}

const TAIL_MARK = Buffer.from(',"prev":"');
const TAIL = /^,"prev":"([A-Za-z0-9+/=]{0,44})","seq":(0|[1-9][0-9]{0,15}),"time":"([0-9TZ:.+-]{1,40})"\}$/;
const HEARTBEAT = /^\{"event":\{"intervalMs":([0-9]{1,15}),"type":"heartbeat"\}$/;
const STARTED =
  /^\{"event":\{"previousSize":[0-9]{1,16},"repairedBytes":[0-9]{1,16},"type":"writer-started"\}$/;

/**
 * Reads seq, time, prev (and the type of heartbeat / writer-started events) from an entry line without parsing
 * the whole event: entries are canonical JSON, so the top-level `prev`, `seq` and `time` keys come last, after
 * the event object. Returns undefined for anything that is not shaped like an entry. The line's bytes are still
 * hashed whole, so an event altered in any way is caught by the tree even though it is not parsed here.
 */
export function readEntryFields(line: Buffer): EntryFields | undefined {
  if (line.length < 12 || line[0] !== 0x7b || line[1] !== 0x22 || line[2] !== 0x65) return undefined; // {"e
  const at = line.lastIndexOf(TAIL_MARK);
  if (at < 0) return undefined;
  const m = TAIL.exec(line.toString('latin1', at));
  if (m === null) return undefined;
  // Heartbeat and writer-started events are short; anything long is some other event.
  const head = at < 200 ? line.toString('latin1', 0, at) : '';
  const hb = HEARTBEAT.exec(head);
  return {
    prev: m[1] as string,
    seq: Number(m[2]),
    time: m[3] as string,
    special: hb !== null ? 'heartbeat' : STARTED.test(head) ? 'writer-started' : undefined,
    intervalMs: hb === null ? undefined : Number(hb[1]),
  };
}
