/**
 * Turning one planned artifact version into plain files the application can read:
 *
 * 1. whatever is in the plaintext directory is wiped (leftovers of an earlier, interrupted attempt);
 * 2. the version's ciphertext directory is decrypted (core/envelope `decryptDirectory`; for an artifact stored in S3,
 *    `decryptDirectoryFromSource` reading the objects by ranged GETs, credentials from the environment variables the
 *    plan names, nothing of the ciphertext written to disk) into a staging directory
 *    INSIDE the plaintext directory, so the final moves stay on one file system (the memory volume) and are
 *    renames, never copies; every file is hashed in the same pass (`checkDigests`) and must match the manifest's
 *    size and SHA-256;
 * 3. the tree digest (`treeDigest`) of the manifest, now proven to describe the files, must equal the planned
 *    digest (the ModelArtifact's);
 * 4. files become 0444 and directories 0555, then each top-level entry is renamed into the plaintext directory's
 *    root (one atomic rename per entry; nothing partial is ever visible under its final name).
 *
 * Any failure wipes everything written so far and throws a {@link MaterializeError}. The DEK is zeroed when this
 * returns, whatever happened.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  EnvelopeError,
  decryptDirectory,
  decryptDirectoryFromSource,
  type CiphertextDirectorySource,
  type Manifest,
} from '../core/envelope/index.ts';
import type { SegmentPool } from '../core/envelope/pool.ts';
import { treeDigest } from '../core/envelope/tree-digest.ts';
import type { PlannedArtifact, PlannedS3Source } from '../core/injection/contract.ts';
import { s3Client, s3DirectorySource } from '../core/storage/s3.ts';
import { wipeDirectory } from './wipe.ts';

/** Staging directories start with this; no artifact may have a top-level entry of that name. */
export const STAGING_PREFIX = '.strongroom-staging-';

/** Why materializing failed (the `cause` has the details). */
export type MaterializeStep = 'decrypt' | 'verify' | 'install' | 'aborted';

/** Materializing failed at `step`; the plaintext directory was wiped. */
export class MaterializeError extends Error {
  override readonly name = 'MaterializeError';
  readonly step: MaterializeStep;
  constructor(step: MaterializeStep, message: string, options?: ErrorOptions) {
    super(message, options);
    this.step = step;
  }
}

/** What was installed. */
export interface Materialized {
  readonly files: number;
  readonly bytes: number;
  readonly digest: string;
}

/**
 * Checks the manifest (whose digests `decryptDirectory` has proven against the files) against the planned tree
 * digest, and that no top-level name collides with a staging directory.
 */
function verify(manifest: Manifest, expected: string): void {
  for (const entry of manifest.files) {
    if (entry.path.split('/')[0]?.startsWith(STAGING_PREFIX))
      throw new MaterializeError(
        'verify',
        `${entry.path}: a top-level name starting with ${STAGING_PREFIX} is reserved`,
      );
  }
  const digest = treeDigest(manifest);
  if (digest !== expected)
    throw new MaterializeError(
      'verify',
      `the decrypted tree's digest ${digest} is not the planned ${expected}`,
    );
}

/** Makes every file 0444 and every directory below the top level 0555; returns the top-level directory names. */
async function seal(dir: string, depth = 0): Promise<string[]> {
  const topDirs: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      await seal(path, depth + 1);
      // A directory renamed to a new parent must stay writable until it has moved (its `..` entry changes).
      if (depth === 0) topDirs.push(entry.name);
      else await chmod(path, 0o555);
    } else if (entry.isFile()) await chmod(path, 0o444);
    else throw new MaterializeError('install', `${path}: not a regular file or directory`);
  }
  return topDirs;
}

/**
 * The S3 client and directory source of an artifact stored in S3, with the credentials read now from the sidecar's
 * environment variables the plan names. Missing or empty credentials fail closed (step `decrypt`) before any request.
 */
function s3Reader(planned: PlannedS3Source): { client: S3Client; source: CiphertextDirectorySource } {
  const where = `s3://${planned.bucket}/${planned.keyPrefix}`;
  const env = (name: string): string => {
    const value = process.env[name];
    if (value === undefined || value === '')
      throw new MaterializeError(
        'decrypt',
        `cannot read ${where}: the S3 credentials are missing (environment variable ${name} is not set)`,
      );
    return value;
  };
  const credentials = {
    accessKeyId: env(planned.credentialsEnv.accessKeyId),
    secretAccessKey: env(planned.credentialsEnv.secretAccessKey),
  };
  try {
    const client = s3Client(
      {
        ...(planned.endpoint === undefined ? {} : { endpoint: planned.endpoint }),
        region: planned.region,
        bucket: planned.bucket,
        prefix: '',
        forcePathStyle: planned.forcePathStyle,
      },
      credentials,
    );
    try {
      return {
        client,
        source: s3DirectorySource({ client, bucket: planned.bucket, keyPrefix: planned.keyPrefix }),
      };
    } catch (error) {
      client.destroy();
      throw error;
    }
  } catch (cause) {
    throw new MaterializeError('decrypt', `cannot read ${where}: ${(cause as Error).message}`, { cause });
  }
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/**
 * Decrypts, verifies and installs `artifact` into `artifact.plaintextDir` with `dek` (see the module comment).
 * When `signal` aborts (a revocation arrived meanwhile) nothing is installed and the directory is wiped. `observe`
 * is told how long each step that completed took (steps 1–2 are `decrypt`, 3 `verify`, 4 `install`).
 */
export async function materialize(
  artifact: PlannedArtifact,
  dek: Buffer,
  signal?: AbortSignal,
  pool?: SegmentPool,
  observe?: (step: 'decrypt' | 'verify' | 'install', ms: number) => void,
): Promise<Materialized> {
  const root = artifact.plaintextDir;
  let stepStarted = Date.now();
  const done = (step: 'decrypt' | 'verify' | 'install'): void => {
    const now = Date.now();
    observe?.(step, now - stepStarted);
    stepStarted = now;
  };
  const staging = join(root, `${STAGING_PREFIX}${randomBytes(6).toString('hex')}`);
  const tree = join(staging, 'tree');
  try {
    await wipeDirectory(root);
    await mkdir(staging, { mode: 0o700 });
    let manifest: Manifest;
    const context = { artifactUid: artifact.uid, artifactName: artifact.name, version: artifact.version };
    const s3 = artifact.s3 === undefined ? null : s3Reader(artifact.s3);
    try {
      manifest =
        s3 === null
          ? await decryptDirectory(artifact.ciphertextPath, tree, {
              dek,
              keyId: '',
              context,
              ...(pool === undefined ? {} : { pool }),
              checkDigests: true,
            })
          : await decryptDirectoryFromSource(s3.source, tree, {
              dek,
              context,
              checkDigests: true,
              ...(signal === undefined ? {} : { signal }),
            });
    } catch (cause) {
      if (cause instanceof EnvelopeError && cause.kind === 'digest')
        throw new MaterializeError('verify', cause.message, { cause });
      if (isAborted(signal))
        throw new MaterializeError('aborted', 'access ended while decrypting', { cause });
      const from = s3 === null ? artifact.ciphertextPath : s3.source.name;
      const detail = cause instanceof Error ? `: ${cause.message}` : '';
      throw new MaterializeError('decrypt', `cannot decrypt ${from}${s3 === null ? '' : detail}`, { cause });
    } finally {
      dek.fill(0);
      s3?.client.destroy();
    }
    done('decrypt');
    verify(manifest, artifact.digest);
    if (isAborted(signal)) throw new MaterializeError('aborted', 'access ended while decrypting');
    done('verify');
    const topDirs = await seal(tree);
    try {
      for (const name of await readdir(tree)) await rename(join(tree, name), join(root, name));
      for (const name of topDirs) await chmod(join(root, name), 0o555);
      await rmdir(tree);
      await rmdir(staging);
    } catch (cause) {
      throw new MaterializeError('install', `cannot move the plaintext into ${root}`, { cause });
    }
    if (isAborted(signal)) throw new MaterializeError('aborted', 'access ended while installing');
    done('install');
    return {
      files: manifest.files.length,
      bytes: manifest.files.reduce((sum, f) => sum + f.size, 0),
      digest: artifact.digest,
    };
  } catch (error) {
    dek.fill(0);
    await wipeDirectory(root).catch(() => undefined);
    if (error instanceof MaterializeError) throw error;
    throw new MaterializeError('install', `cannot materialize into ${root}`, { cause: error });
  }
}
