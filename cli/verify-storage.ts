/**
 * The storage part of `strongroom verify`: does each version's ciphertext look like Strongroom ciphertext? A version
 * is a directory (docs/format.md, "Directory versions on disk"): `manifest.sre` and `objects/NNNNNN.sre`, every one
 * an envelope that starts with the magic `SRENVLP\0`. The check reads the first 8 bytes of every file or object of
 * the version (not the whole ciphertext, and it decrypts nothing): it finds plaintext copied where ciphertext should
 * be, a missing manifest and a missing version, not a tampered envelope (the sidecar's decrypt finds that).
 *
 * S3 (`spec.storage.s3`) is listed and read with core/storage/s3.ts. A PersistentVolumeClaim cannot be read from
 * the CLI: `--storage-dir` names a local copy or mount of the claim's volume; without it the check is skipped (and
 * reported as skipped, never as passed).
 */
import { lstat, readdir } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { ModelArtifact, ModelArtifactVersion } from '../core/api/index.ts';
import { MANIFEST_FILE } from '../core/envelope/index.ts';
import { S3_DEFAULT_REGION } from '../core/injection/contract.ts';
import { StorageError, versionDirectory } from '../core/storage/index.ts';
import {
  isCiphertextFile,
  isCiphertextObject,
  s3Client,
  versionKeyPrefix,
  type S3Credentials,
} from '../core/storage/s3.ts';

/** What a storage check found wrong with one version. */
export interface StorageProblem {
  readonly rule: 'ciphertext-missing' | 'ciphertext-manifest-missing' | 'ciphertext-not-envelope';
  readonly reason: string;
}

/** The outcome for one version: problems, or skipped with the reason, and how many files were read. */
export type StorageOutcome =
  | { readonly kind: 'checked'; readonly files: number; readonly problems: readonly StorageProblem[] }
  | { readonly kind: 'skipped'; readonly reason: string };

/** Reads one version's ciphertext wherever it is. */
export type StorageChecker = (
  artifact: ModelArtifact,
  version: ModelArtifactVersion,
) => Promise<StorageOutcome>;

/** At most this many offending files are named per version (the count is always given). */
const MAX_NAMED = 5;

function notEnvelope(where: string, offending: readonly string[], total: number): StorageProblem {
  const named = offending.slice(0, MAX_NAMED).join(', ');
  const more = offending.length > MAX_NAMED ? ` and ${String(offending.length - MAX_NAMED)} more` : '';
  return {
    rule: 'ciphertext-not-envelope',
    reason: `${String(offending.length)} of ${String(total)} files in ${where} do not start with the Strongroom envelope magic SRENVLP\\0 (not Strongroom ciphertext): ${named}${more}`,
  };
}

/** Every regular file under `dir`, relative and `/`-separated; anything else (a symlink, a device) counts as a file
 * that is not ciphertext. */
async function listFiles(dir: string): Promise<{ files: string[]; odd: string[] }> {
  const files: string[] = [];
  const odd: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      const rel = relative(dir, path).split(sep).join('/');
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) files.push(rel);
      else odd.push(`${rel} (not a regular file)`);
    }
  };
  await walk(dir);
  return { files: files.sort(), odd };
}

/** Checks a version directory on a local path (`--storage-dir`: the claim's volume, mounted or copied). */
export async function checkVersionDirectory(dir: string): Promise<StorageOutcome> {
  const exists = await lstat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists)
    return {
      kind: 'checked',
      files: 0,
      problems: [{ rule: 'ciphertext-missing', reason: `the version directory ${dir} does not exist` }],
    };
  const { files, odd } = await listFiles(dir);
  const problems: StorageProblem[] = [];
  if (files.length + odd.length === 0)
    problems.push({ rule: 'ciphertext-missing', reason: `the version directory ${dir} is empty` });
  else if (!files.includes(MANIFEST_FILE))
    problems.push({
      rule: 'ciphertext-manifest-missing',
      reason: `${dir} has no ${MANIFEST_FILE}: a reader cannot know the version's files`,
    });
  const offending = [...odd];
  for (const file of files) if (!(await isCiphertextFile(join(dir, file)))) offending.push(file);
  if (offending.length > 0) problems.push(notEnvelope(dir, offending, files.length + odd.length));
  return { kind: 'checked', files: files.length + odd.length, problems };
}

/** Checks the objects under a version's key prefix. */
export async function checkVersionObjects(
  client: S3Client,
  bucket: string,
  keyPrefix: string,
): Promise<StorageOutcome> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    let page;
    try {
      page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: keyPrefix,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
    } catch (error) {
      return { kind: 'skipped', reason: `cannot list s3://${bucket}/${keyPrefix}: ${s3Message(error)}` };
    }
    for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  const where = `s3://${bucket}/${keyPrefix}`;
  if (keys.length === 0)
    return {
      kind: 'checked',
      files: 0,
      problems: [{ rule: 'ciphertext-missing', reason: `no objects under ${where}` }],
    };
  const problems: StorageProblem[] = [];
  // A "directory marker" (a key ending in '/') holds nothing and is ignored.
  const objects = keys.filter((k) => !k.endsWith('/')).sort();
  if (!objects.includes(`${keyPrefix}${MANIFEST_FILE}`))
    problems.push({
      rule: 'ciphertext-manifest-missing',
      reason: `${where} has no ${MANIFEST_FILE}: a reader cannot know the version's files`,
    });
  const offending: string[] = [];
  for (const key of objects) {
    try {
      if (!(await isCiphertextObject({ client, bucket, key }))) offending.push(key.slice(keyPrefix.length));
    } catch (error) {
      return { kind: 'skipped', reason: `cannot read s3://${bucket}/${key}: ${s3Message(error)}` };
    }
  }
  if (offending.length > 0) problems.push(notEnvelope(where, offending, objects.length));
  return { kind: 'checked', files: objects.length, problems };
}

function s3Message(error: unknown): string {
  if (error instanceof StorageError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

/** `--storage-dir [<claim>=]<path>`: the volume of one claim, or (without a claim) of every claim. */
export interface StorageDirs {
  readonly byClaim: ReadonlyMap<string, string>;
  readonly any: string | undefined;
}

/** Parses the repeated `--storage-dir` values. */
export function parseStorageDirs(values: readonly string[]): StorageDirs {
  const byClaim = new Map<string, string>();
  let any: string | undefined;
  for (const value of values) {
    const eq = value.indexOf('=');
    // A claim name is a DNS-1123 subdomain: no '/', so `a=b` with a '/' before '=' is a path.
    if (eq > 0 && !value.slice(0, eq).includes('/'))
      byClaim.set(value.slice(0, eq), resolve(value.slice(eq + 1)));
    else any = resolve(value);
  }
  return { byClaim, any };
}

/** Where the CLI gets S3 credentials for an artifact: the Secret it names (read as the user), else the
 * environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; undefined with the reason when neither is available. */
export type S3CredentialSource = (
  artifact: ModelArtifact,
) => Promise<{ credentials: S3Credentials; from: string } | { reason: string }>;

/**
 * The storage checker: S3 artifacts through `credentials`, PVC artifacts under `dirs` (else skipped).
 * `clientFor` is replaceable for tests.
 */
export function storageChecker(options: {
  readonly dirs: StorageDirs;
  readonly credentials: S3CredentialSource;
  readonly clientFor?: typeof s3Client;
}): StorageChecker {
  const clientFor = options.clientFor ?? s3Client;
  return async (artifact, version) => {
    const storage = artifact.spec.storage;
    if (storage.s3 !== undefined) {
      const s3 = storage.s3;
      const found = await options.credentials(artifact);
      if ('reason' in found) return { kind: 'skipped', reason: found.reason };
      let keyPrefix: string;
      try {
        keyPrefix = versionKeyPrefix(artifact.spec, version);
      } catch (error) {
        return { kind: 'skipped', reason: s3Message(error) };
      }
      const client = clientFor(
        {
          ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
          region: s3.region ?? S3_DEFAULT_REGION,
          bucket: s3.bucket,
          prefix: s3.prefix ?? '',
          forcePathStyle: s3.forcePathStyle ?? true,
        },
        found.credentials,
      );
      try {
        return await checkVersionObjects(client, s3.bucket, keyPrefix);
      } finally {
        client.destroy();
      }
    }
    const claim = storage.persistentVolumeClaim?.claimName;
    if (claim === undefined) return { kind: 'skipped', reason: 'the artifact names no storage' };
    const root = options.dirs.byClaim.get(claim) ?? options.dirs.any;
    if (root === undefined)
      return {
        kind: 'skipped',
        reason: `its ciphertext is on PersistentVolumeClaim ${claim}, which the CLI cannot read; pass --storage-dir ${claim}=<path of a mounted copy of the volume>`,
      };
    let dir: string;
    try {
      dir = versionDirectory(root, artifact.spec, version);
    } catch (error) {
      return { kind: 'skipped', reason: s3Message(error) };
    }
    return checkVersionDirectory(dir);
  };
}
