/**
 * A docker-archive read without a daemon or a tar binary: `manifest.json`, the image configuration it names and the
 * entries of every layer, applied in order (whiteouts included), as the root filesystem a container would see. Used
 * by dockerfile-layout.test.ts to compare the daemonless image (test/cluster/app-image.ts) with the Dockerfile.
 */
import { readFileSync } from 'node:fs';

/** One entry of the image's root filesystem; `path` is absolute (`/` for the root). */
export interface ImageEntry {
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  /** The permission bits, with setuid, setgid and sticky (07777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** A regular file's content (a view into the archive); empty for other types. */
  readonly data: Buffer;
  /** A symbolic or hard link's target. */
  readonly linkname: string;
}

/** The part of the image configuration a container's start depends on. */
export interface ImageRunConfig {
  readonly user: string;
  readonly workingDir: string;
  readonly entrypoint: readonly string[] | null;
  readonly cmd: readonly string[] | null;
  readonly env: readonly string[];
}

export interface ImageView {
  readonly config: ImageRunConfig;
  readonly entries: ReadonlyMap<string, ImageEntry>;
}

const BLOCK = 512;

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

function octal(block: Buffer, start: number, length: number): number {
  const first = block[start] ?? 0;
  if (first & 0x80) {
    // GNU base-256 for numbers that do not fit the octal field.
    let value = 0;
    for (let i = 1; i < length; i++) value = value * 256 + (block[start + i] ?? 0);
    return value;
  }
  const text = cString(block, start, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (!Number.isFinite(length) || length <= 0) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq !== -1) records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

/** An absolute, normalised path for a tar member name: `./etc/passwd` and `etc/passwd/` are `/etc/passwd`. */
export function memberPath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return `/${parts.join('/')}`;
}

interface RawEntry extends ImageEntry {
  readonly name: string;
}

/** The members of a tar file (ustar, GNU long names and pax headers), in archive order. */
export function readTar(tar: Buffer): RawEntry[] {
  const entries: RawEntry[] = [];
  let at = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  while (at + BLOCK <= tar.length) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    const typeflag = String.fromCharCode(header[156] ?? 0x30);
    const size = pax.has('size') ? Number(pax.get('size')) : octal(header, 124, 12);
    const data = tar.subarray(at + BLOCK, at + BLOCK + size);
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'L') {
      longName = cString(data, 0, data.length);
      continue;
    }
    if (typeflag === 'K') {
      longLink = cString(data, 0, data.length);
      continue;
    }
    if (typeflag === 'x') {
      pax = paxRecords(data);
      continue;
    }
    if (typeflag === 'g') continue;
    const magic = cString(header, 257, 6);
    const prefix = magic.startsWith('ustar') ? cString(header, 345, 155) : '';
    const plain = cString(header, 0, 100);
    const name = pax.get('path') ?? longName ?? (prefix === '' ? plain : `${prefix}/${plain}`);
    const linkname = pax.get('linkpath') ?? longLink ?? cString(header, 157, 100);
    const type =
      typeflag === '0' || typeflag === '\0' || typeflag === '7'
        ? 'file'
        : typeflag === '5'
          ? 'dir'
          : typeflag === '2'
            ? 'symlink'
            : typeflag === '1'
              ? 'hardlink'
              : 'other';
    entries.push({
      name,
      path: memberPath(name),
      type,
      mode: octal(header, 100, 8) & 0o7777,
      uid: octal(header, 108, 8),
      gid: octal(header, 116, 8),
      data: type === 'file' ? data : Buffer.alloc(0),
      linkname,
    });
    longName = undefined;
    longLink = undefined;
    pax = new Map();
  }
  return entries;
}

interface ManifestEntry {
  readonly Config: string;
  readonly RepoTags?: readonly string[] | null;
  readonly Layers: readonly string[];
}

interface ConfigFile {
  readonly config?: {
    readonly User?: string;
    readonly WorkingDir?: string;
    readonly Entrypoint?: string[] | null;
    readonly Cmd?: string[] | null;
    readonly Env?: string[] | null;
  };
}

/** The first image of a docker-archive: its run configuration and its layers applied in order. */
export function readDockerArchive(file: string): ImageView {
  const members = new Map(readTar(readFileSync(file)).map((m) => [m.name.replace(/^\.\//, ''), m]));
  const member = (name: string): Buffer => {
    const m = members.get(name.replace(/^\.\//, ''));
    if (m === undefined) throw new Error(`${file} has no ${name}`);
    return m.data;
  };
  const manifest = JSON.parse(member('manifest.json').toString('utf8')) as ManifestEntry[];
  const image = manifest[0];
  if (image === undefined) throw new Error(`${file} has an empty manifest.json`);
  const config = (JSON.parse(member(image.Config).toString('utf8')) as ConfigFile).config ?? {};
  const entries = new Map<string, ImageEntry>();
  for (const layer of image.Layers) {
    for (const { path, type, mode, uid, gid, data, linkname } of readTar(member(layer))) {
      const entry: ImageEntry = { path, type, mode, uid, gid, data, linkname };
      const base = entry.path.slice(entry.path.lastIndexOf('/') + 1);
      const parent = entry.path.slice(0, entry.path.lastIndexOf('/'));
      if (base === '.wh..wh..opq') {
        for (const p of [...entries.keys()]) if (p.startsWith(`${parent}/`)) entries.delete(p);
      } else if (base.startsWith('.wh.')) {
        const gone = `${parent}/${base.slice(4)}`;
        for (const p of [...entries.keys()]) if (p === gone || p.startsWith(`${gone}/`)) entries.delete(p);
      } else {
        entries.set(entry.path, entry);
      }
    }
  }
  return {
    config: {
      user: config.User ?? '',
      workingDir: config.WorkingDir ?? '',
      entrypoint: config.Entrypoint ?? null,
      cmd: config.Cmd ?? null,
      env: config.Env ?? [],
    },
    entries,
  };
}
