/**
 * A version's ciphertext on the artifact's storage (docs/format.md, "Directory versions on disk"): where it lives,
 * `<storage root>/<spec.storage.path>/<version.path ?? version.name>`, and how a publisher writes it without any
 * secret of the operator's: a fresh DEK encrypts the plaintext tree in the directory-artifact format, the DEK is
 * sealed to the artifact's recipient public key and zeroed, and the directory appears under its final name in one
 * rename, complete and synced, or not at all. The tree itself is written by `encryptDirectory` (leaving the publish
 * marker out, public modes, durable).
 */
import { createHash, createPublicKey } from 'node:crypto';
import { lstat, mkdir, rm } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { ModelArtifactSpec, ModelArtifactVersion } from '../api/index.ts';
import { isDns1123Label, isRelativePath } from '../api/validation.ts';
import {
  EnvelopeError,
  assertDigestablePath,
  encryptDirectory,
  listTree,
  newDek,
  sealDek,
  treeDigest,
  type Manifest,
  type SealedDek,
  type SegmentPool,
} from '../envelope/index.ts';
import { StorageError } from './errors.ts';

/** Published ciphertext is readable by every reader's sidecar, whatever its UID: it is ciphertext, names hidden. */
const DIR_MODE = 0o755;
const FILE_MODE = 0o644;

/** The artifact a version belongs to; both are bound into every envelope and into the sealed DEK. */
export interface ArtifactIdentity {
  readonly uid: string;
  readonly name: string;
}

export interface WriteVersionOptions {
  /** The plaintext directory. Only regular files and directories; symlinks and devices are refused. */
  readonly source: string;
  /** Absolute path where the artifact's volume is mounted. */
  readonly storageRoot: string;
  /** The artifact's `spec.storage.path` inside the volume, or `''` when `storageRoot` is the artifact's directory. */
  readonly storagePath: string;
  readonly artifact: ArtifactIdentity;
  /** The new version's name: a DNS-1123 label, not "latest". Its directory is named after it. */
  readonly version: string;
  /** The artifact's recipient public key: raw X25519, base64 (the key behind `status.recipientPublicKey`). */
  readonly recipientPublicKey: string;
  readonly pool?: SegmentPool;
  /** Relative paths (`/`-separated) in `source` to leave out, for example the publish marker. */
  readonly exclude?: readonly string[];
}

/** What PublishVersion and a `spec.versions[]` entry need. No secret: the DEK is sealed and zeroed. */
export interface WrittenVersion {
  /** The version's ciphertext directory (absolute). */
  readonly path: string;
  /** The tree digest of the plaintext, `sha256:<hex>` (`treeDigest`). */
  readonly digest: string;
  /** Total plaintext bytes. */
  readonly size: number;
  /** The DEK sealed to the recipient key, bound to the artifact's uid and name and the version. */
  readonly sealedKey: SealedDek;
  /** `sha256:<hex>` of the recipient key's DER SubjectPublicKeyInfo (`status.recipientPublicKey.fingerprint`). */
  readonly keyFingerprint: string;
}

function checkRoot(storageRoot: string): string {
  if (!isAbsolute(storageRoot))
    throw new StorageError(
      'invalid',
      `the storage root must be absolute, got ${JSON.stringify(storageRoot)}`,
    );
  return resolve(storageRoot);
}

/** Joins relative `/`-separated segments under `root`, and fails if the result is not strictly inside it. */
function inside(root: string, ...segments: string[]): string {
  const path = resolve(root, ...segments.flatMap((s) => (s === '' ? [] : s.split('/'))));
  const rel = relative(root, path);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || !path.startsWith(root + sep))
    throw new StorageError('unsafe-path', `${segments.join('/')} is not inside ${root}`);
  return path;
}

/**
 * The ciphertext directory of a version: `<storageRoot>/<spec.storage.path>/<version.path ?? version.name>`.
 *
 * @throws StorageError kind 'invalid' for a relative root, a malformed storage path, version path or version name;
 *   'unsafe-path' for anything that would resolve outside the root.
 */
export function versionDirectory(
  storageRoot: string,
  spec: Pick<ModelArtifactSpec, 'storage'>,
  version: Pick<ModelArtifactVersion, 'name' | 'path'>,
): string {
  const root = checkRoot(storageRoot);
  const storagePath = spec.storage.path;
  const storageProblem = isRelativePath(storagePath)[0];
  if (storageProblem !== undefined)
    throw new StorageError('invalid', `spec.storage.path ${JSON.stringify(storagePath)} ${storageProblem}`);
  if (version.path !== undefined) {
    const problem = isRelativePath(version.path)[0];
    if (problem !== undefined)
      throw new StorageError('invalid', `the path of version ${version.name} ${problem}`);
    return inside(root, storagePath, version.path);
  }
  if (isDns1123Label(version.name).length > 0)
    throw new StorageError('invalid', `version name ${JSON.stringify(version.name)} is not a DNS-1123 label`);
  return inside(root, storagePath, version.name);
}

/** `sha256:<hex>` of the DER SubjectPublicKeyInfo of a raw X25519 public key (base64), as the operator computes it. */
export function recipientKeyFingerprint(rawBase64: string): string {
  const raw = Buffer.from(rawBase64, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== rawBase64)
    throw new StorageError('invalid', 'the recipient public key is not a base64 32-byte X25519 key');
  const der = createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new StorageError('io', `cannot inspect ${path}`, { cause: error });
    },
  );
}

function asStorageError(error: unknown, what: string): StorageError {
  if (error instanceof StorageError) return error;
  if (error instanceof EnvelopeError && error.kind === 'invalid')
    return new StorageError('invalid', `${what}: ${error.message}`, { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError('io', `${what}: ${message}`, { cause: error });
}

function checkOptions(options: WriteVersionOptions): void {
  const { version, storagePath, artifact } = options;
  if (isDns1123Label(version).length > 0 || version === 'latest')
    throw new StorageError(
      'invalid',
      `version ${JSON.stringify(version)} must be a DNS-1123 label of at most 63 characters, and not "latest"`,
    );
  if (storagePath !== '') {
    const problem = isRelativePath(storagePath)[0];
    if (problem !== undefined)
      throw new StorageError('invalid', `storage path ${JSON.stringify(storagePath)} ${problem}`);
  }
  if (artifact.uid === '' || artifact.name === '')
    throw new StorageError(
      'invalid',
      'the artifact uid and name are required (they are bound into the ciphertext)',
    );
}

/** The files of `source` minus `exclude`, refused unless each can be part of a tree digest. */
async function sourceFiles(source: string, exclude: readonly string[]): Promise<string[]> {
  const files = await listTree(source, exclude).catch((error: unknown) => {
    if (error instanceof EnvelopeError && error.kind === 'invalid')
      throw new StorageError('unsafe-path', `cannot publish ${source}: ${error.message}`, { cause: error });
    throw asStorageError(error, `cannot read ${source}`);
  });
  for (const path of files) {
    try {
      assertDigestablePath(path);
    } catch (error) {
      throw new StorageError('unsafe-path', (error as Error).message, { cause: error });
    }
  }
  return files;
}

/** The written version's digest and size; throws 'empty' or 'unsafe-path' for a tree that is not a version. */
function measure(manifest: Manifest, source: string): { digest: string; size: number } {
  const size = manifest.files.reduce((sum, f) => sum + f.size, 0);
  if (size === 0)
    throw new StorageError('empty', `${source} holds no bytes to publish (a version is at least 1 byte)`);
  try {
    return { digest: treeDigest(manifest), size };
  } catch (error) {
    // The tree changed after it was checked: a name sha256sum would escape.
    throw new StorageError('unsafe-path', (error as Error).message, { cause: error });
  }
}

/**
 * Encrypts the plaintext directory `source` with a fresh DEK into `<storageRoot>/<storagePath>/<version>` with
 * `encryptDirectory`: into a sibling staging directory (`.<version>.partial-<random>`, mode 0700 while written),
 * every file and directory synced, then renamed into place (directories 0755, files 0644: ciphertext with hidden
 * names) and the parent synced. A tree of no bytes is removed again after it was written. The DEK is sealed to the
 * recipient key (HPKE info: artifact uid, name, version) and zeroed before this returns or throws.
 *
 * @throws StorageError kind 'exists' if the version's directory exists (checked first, and again by the rename,
 *   which never replaces a non-empty directory); 'invalid', 'unsafe-path', 'empty' or 'io' otherwise. On any
 *   failure nothing is left at the target or in staging.
 */
export async function writeVersion(options: WriteVersionOptions): Promise<WrittenVersion> {
  checkOptions(options);
  const root = checkRoot(options.storageRoot);
  const parent = options.storagePath === '' ? root : inside(root, options.storagePath);
  const target = inside(parent, options.version);
  if (await exists(target))
    throw new StorageError('exists', `${target} already exists: versions are immutable`);
  const keyFingerprint = recipientKeyFingerprint(options.recipientPublicKey);
  const exclude = options.exclude ?? [];
  await sourceFiles(options.source, exclude);
  const context = {
    artifactUid: options.artifact.uid,
    artifactName: options.artifact.name,
    version: options.version,
  };
  const dek = newDek();
  try {
    const sealedKey = await sealDek(options.recipientPublicKey, dek, context).catch((error: unknown) => {
      throw asStorageError(error, 'cannot seal the DEK to the recipient key');
    });
    await mkdir(parent, { recursive: true, mode: DIR_MODE }).catch((error: unknown) => {
      throw asStorageError(error, `cannot create the version's directory under ${parent}`);
    });
    const manifest = await encryptDirectory(options.source, target, {
      dek,
      keyId: `${options.artifact.uid}/${options.version}`,
      context,
      exclude,
      modes: { file: FILE_MODE, dir: DIR_MODE },
      durable: true,
      ...(options.pool ? { pool: options.pool } : {}),
    }).catch(async (error: unknown) => {
      // encryptDirectory leaves nothing of its own behind: a target there now is another writer's.
      if (await exists(target).catch(() => false))
        throw new StorageError('exists', `${target} appeared while it was written: versions are immutable`, {
          cause: error,
        });
      throw asStorageError(error, `cannot write ${options.version} to ${target}`);
    });
    try {
      return { path: target, ...measure(manifest, options.source), sealedKey, keyFingerprint };
    } catch (error) {
      await rm(target, { recursive: true, force: true });
      throw error;
    }
  } finally {
    dek.fill(0);
  }
}
