/**
 * C2SP checkpoints (c2sp.org/tlog-checkpoint): the body of a signed note that commits to a tree.
 *
 *   <origin>\n<tree size, decimal>\n<base64 root hash>\n[extension lines\n...]
 */
import { HASH_SIZE } from './merkle.ts';
import {
  hasControl,
  NoteError,
  openNote,
  signNote,
  signNoteAsync,
  type AnyNoteSigner,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
} from './note.ts';

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Buffer;
  readonly extensions: readonly string[];
}

/** The checkpoint body text. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (!isValidOrigin(cp.origin))
    throw new NoteError('malformed', `invalid origin ${JSON.stringify(cp.origin)}`);
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw new NoteError('malformed', 'invalid tree size');
  if (cp.rootHash.length !== HASH_SIZE) throw new NoteError('malformed', 'a root hash is 32 bytes');
  for (const ext of cp.extensions) {
    if (ext.length === 0 || ext.includes('\n')) throw new NoteError('malformed', 'invalid extension line');
  }
  return [cp.origin, String(cp.size), cp.rootHash.toString('base64'), ...cp.extensions].join('\n') + '\n';
}

/** Parses a checkpoint body strictly: decimal without leading zeros, canonical base64 of 32 bytes. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new NoteError('malformed', 'a checkpoint ends in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3)
    throw new NoteError('malformed', 'a checkpoint has an origin, a size and a root hash');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (!isValidOrigin(origin)) throw new NoteError('malformed', `invalid origin ${JSON.stringify(origin)}`);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new NoteError('malformed', `invalid tree size ${JSON.stringify(sizeText)}`);
  }
  const rootHash = Buffer.from(rootText, 'base64');
  if (rootHash.length !== HASH_SIZE || rootHash.toString('base64') !== rootText) {
    throw new NoteError('malformed', `invalid root hash ${JSON.stringify(rootText)}`);
  }
  if (extensions.some((e) => e.length === 0)) throw new NoteError('malformed', 'empty extension line');
  return { origin, size: Number(sizeText), rootHash, extensions };
}

/** An origin is a non-empty line of printable characters; we recommend `strongroom.audit/<cluster>/<writer>`. */
export function isValidOrigin(origin: string): boolean {
  return (
    origin.length > 0 &&
    origin.length <= 255 &&
    !hasControl(origin, false) &&
    !origin.includes(' ') &&
    origin.isWellFormed()
  );
}

/** Signs a checkpoint. The signer's key name is conventionally the origin. */
export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(cp), [signer]);
}

/** Signs a checkpoint with a signer that may sign asynchronously (a key in a KMS); see signNoteAsync. */
export async function signCheckpointAsync(cp: Checkpoint, signer: AnyNoteSigner): Promise<string> {
  return await signNoteAsync(formatCheckpoint(cp), [signer]);
}

export interface OpenedCheckpoint extends Checkpoint {
  readonly note: OpenedNote;
}

/** Opens a signed checkpoint note: its signatures (see openNote), then its body. */
export function openCheckpoint(note: string, verifiers: readonly NoteVerifier[]): OpenedCheckpoint {
  const opened = openNote(note, verifiers);
  return { ...parseCheckpoint(opened.text), note: opened };
}

/** The checkpoint body of a note without checking any signature (for diagnoses of untrusted notes only). */
export function peekCheckpoint(note: string): Checkpoint {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('malformed', 'no blank line separates the text from the signatures');
  return parseCheckpoint(note.slice(0, split + 1));
}

/** The origin naming one writer (operator replica) in one cluster. */
export function originFor(cluster: string, writer: string): string {
  const label = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
  if (!label.test(cluster))
    throw new NoteError('malformed', `invalid cluster name ${JSON.stringify(cluster)}`);
  if (!label.test(writer)) throw new NoteError('malformed', `invalid writer name ${JSON.stringify(writer)}`);
  return `strongroom.audit/${cluster}/${writer}`;
}

/**
 * The ConfigMap, in the operator's namespace, where every writer publishes its latest signed checkpoint: data key =
 * the writer name, value = the signed note (operator/broker/checkpoint-publisher.ts, docs/audit.md).
 */
export const AUDIT_CHECKPOINTS_CONFIGMAP = 'strongroom-audit-checkpoints';

/** The writer of an origin `strongroom.audit/<cluster>/<writer>` (its last segment), or undefined for another form. */
export function writerOf(origin: string): string | undefined {
  const match = /^strongroom\.audit\/[^/]+\/([a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?)$/.exec(origin);
  return match?.[1];
}
