/**
 * The receiving end of `strongroom publish` for an artifact on a PersistentVolumeClaim. It runs in a short-lived,
 * restricted pod that mounts the claim (the Strongroom image: `node /app/cli/receive.ts <version dir>`), reads one
 * version's ciphertext from stdin and installs it under its final name in one rename, complete and synced, or not at
 * all. It accepts only what a version directory holds (`manifest.sre` and `objects/NNNNNN.sre`), and only files that
 * begin with the envelope's magic: the pod cannot be used to put plaintext, or anything else, on the claim.
 *
 * The stream (docs/cli.md, "publish"), all lines UTF-8 JSON ending in `\n`:
 *   {"format":"strongroom-ciphertext-stream/v1","files":<n>,"bytes":<total>}
 *   then per file: {"path":"objects/000000.sre","size":<bytes>} followed by exactly <bytes> bytes
 *   then {"end":true,"sha256":"<hex SHA-256 of every file's bytes, in order>"}
 * On success it prints {"ok":true,"path":"<dir>","files":<n>,"bytes":<total>} and exits 0; on any failure it removes
 * what it wrote, prints the reason on stderr and exits 1.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const STREAM_FORMAT = 'strongroom-ciphertext-stream/v1';
/** The envelope's magic (core/envelope/format.ts MAGIC), repeated so this file needs nothing but Node. */
const MAGIC = Buffer.from('SRENVLP\x00', 'latin1');
const NAME = /^(manifest\.sre|objects\/\d{6}\.sre)$/;
const MAX_LINE = 4096;
const MAX_FILES = 1_000_000;

/** A stream that is not what publish sends, or a version that cannot be installed. */
export class ReceiveError extends Error {
  override readonly name = 'ReceiveError';
}

interface FileHeader {
  readonly path: string;
  readonly size: number;
}

/** Parses one header line of the stream; throws ReceiveError for anything else. */
export function parseFileHeader(line: string): FileHeader | { end: true; sha256: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (cause) {
    throw new ReceiveError(`not a JSON line: ${JSON.stringify(line.slice(0, 80))}`, { cause });
  }
  const v = value as Record<string, unknown>;
  if (v.end === true) {
    if (typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256))
      throw new ReceiveError('the end line has no sha256');
    return { end: true, sha256: v.sha256 };
  }
  if (typeof v.path !== 'string' || !NAME.test(v.path))
    throw new ReceiveError(
      `refusing ${JSON.stringify(v.path)}: only manifest.sre and objects/NNNNNN.sre belong in a version directory`,
    );
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < MAGIC.length)
    throw new ReceiveError(`${v.path}: bad size ${JSON.stringify(v.size)}`);
  return { path: v.path, size: v.size };
}

/** Reads the stream from `input` into `target` (which must not exist). Returns the files and bytes installed. */
export async function receive(
  input: AsyncIterable<Buffer> | Iterable<Buffer>,
  target: string,
): Promise<{ files: number; bytes: number }> {
  if (await exists(target)) throw new ReceiveError(`${target} already exists: versions are immutable`);
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });
  const staging = join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o755 });
  await mkdir(join(staging, 'objects'), { mode: 0o755 });
  try {
    const result = await readInto(input, staging);
    await syncDir(join(staging, 'objects'));
    await syncDir(staging);
    if (await exists(target))
      throw new ReceiveError(`${target} appeared while it was written: versions are immutable`);
    await rename(staging, target);
    await syncDir(dirname(target));
    return result;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function readInto(
  input: AsyncIterable<Buffer> | Iterable<Buffer>,
  staging: string,
): Promise<{ files: number; bytes: number }> {
  const hash = createHash('sha256');
  const seen = new Set<string>();
  let pending: Buffer = Buffer.alloc(0);
  let declared: { files: number; bytes: number } | undefined;
  let file: { header: FileHeader; handle: FileHandle; written: number; first: Buffer } | undefined;
  let files = 0;
  let bytes = 0;
  let ended: string | undefined;
  const line = (): string | undefined => {
    const nl = pending.indexOf(0x0a);
    if (nl < 0) {
      if (pending.length > MAX_LINE) throw new ReceiveError('a header line is too long');
      return undefined;
    }
    const text = pending.subarray(0, nl).toString('utf8');
    pending = pending.subarray(nl + 1);
    return text;
  };
  for await (const chunk of input) {
    if (ended !== undefined) throw new ReceiveError('data after the end line');
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      if (file !== undefined) {
        const take = Math.min(pending.length, file.header.size - file.written);
        if (take === 0) break;
        const part = pending.subarray(0, take);
        if (file.first.length < MAGIC.length)
          file.first = Buffer.concat([file.first, part.subarray(0, MAGIC.length - file.first.length)]);
        if (file.first.length >= MAGIC.length && !file.first.equals(MAGIC))
          throw new ReceiveError(`${file.header.path} is not Strongroom ciphertext (no envelope magic)`);
        await file.handle.write(part);
        hash.update(part);
        file.written += take;
        pending = pending.subarray(take);
        if (file.written === file.header.size) {
          await file.handle.sync();
          await file.handle.close();
          files++;
          bytes += file.header.size;
          file = undefined;
        }
        continue;
      }
      const text = line();
      if (text === undefined) break;
      if (declared === undefined) {
        const head = JSON.parse(text) as { format?: unknown; files?: unknown; bytes?: unknown };
        if (head.format !== STREAM_FORMAT) throw new ReceiveError(`not a ${STREAM_FORMAT} stream`);
        if (typeof head.files !== 'number' || typeof head.bytes !== 'number' || head.files > MAX_FILES)
          throw new ReceiveError('the first line must give files and bytes');
        declared = { files: head.files, bytes: head.bytes };
        continue;
      }
      const header = parseFileHeader(text);
      if ('end' in header) {
        ended = header.sha256;
        if (pending.length > 0) throw new ReceiveError('data after the end line');
        break;
      }
      if (seen.has(header.path)) throw new ReceiveError(`${header.path} sent twice`);
      seen.add(header.path);
      const handle = await open(join(staging, ...header.path.split('/')), 'wx', 0o644);
      file = { header, handle, written: 0, first: Buffer.alloc(0) };
    }
  }
  if (file !== undefined) {
    await file.handle.close();
    throw new ReceiveError(`the stream ended inside ${file.header.path}`);
  }
  if (declared === undefined || ended === undefined)
    throw new ReceiveError('the stream ended before its end line');
  if (!seen.has('manifest.sre')) throw new ReceiveError('no manifest.sre in the stream');
  if (files !== declared.files || bytes !== declared.bytes)
    throw new ReceiveError(
      `received ${String(files)} files and ${String(bytes)} bytes, the stream declared ${String(declared.files)} and ${String(declared.bytes)}`,
    );
  if (hash.digest('hex') !== ended)
    throw new ReceiveError('the SHA-256 of what arrived does not match the end line');
  return { files, bytes };
}

/**
 * The sending half: the stream of the version directory `dir` (as written by writeVersion), the manifest first and
 * the objects in order. `onBytes` is called with the file bytes sent so far.
 */
export async function* versionStream(
  dir: string,
  onBytes: (sent: number) => void = () => undefined,
): AsyncGenerator<Buffer> {
  const { readdir, stat } = await import('node:fs/promises');
  const objects = (await readdir(join(dir, 'objects'))).sort().map((o) => `objects/${o}`);
  const paths = ['manifest.sre', ...objects];
  const sizes: number[] = [];
  for (const p of paths) sizes.push((await stat(join(dir, ...p.split('/')))).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  yield Buffer.from(`${JSON.stringify({ format: STREAM_FORMAT, files: paths.length, bytes: total })}\n`);
  const hash = createHash('sha256');
  let sent = 0;
  for (const [i, path] of paths.entries()) {
    yield Buffer.from(`${JSON.stringify({ path, size: sizes[i] })}\n`);
    const handle = await open(join(dir, ...path.split('/')), 'r');
    try {
      let left = sizes[i] ?? 0;
      while (left > 0) {
        const buffer = Buffer.allocUnsafe(Math.min(left, 1 << 20));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) throw new ReceiveError(`${path} shrank while it was sent`);
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        left -= bytesRead;
        sent += bytesRead;
        onBytes(sent);
        yield chunk;
      }
    } finally {
      await handle.close();
    }
  }
  yield Buffer.from(`${JSON.stringify({ end: true, sha256: hash.digest('hex') })}\n`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

if (import.meta.main) {
  const target = process.argv[2];
  if (target === undefined || !target.startsWith('/')) {
    process.stderr.write('usage: receive.ts <absolute version directory> < stream\n');
    process.exitCode = 2;
  } else {
    try {
      const { files, bytes } = await receive(process.stdin, target);
      process.stdout.write(`${JSON.stringify({ ok: true, path: target, files, bytes })}\n`);
      // The stdin of an exec session may stay open: exit once the version is installed.
      process.exit(0);
    } catch (error) {
      process.stderr.write(`strongroom receive: ${(error as Error).message}\n`);
      process.exit(1);
    }
  }
}
