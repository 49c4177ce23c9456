/**
 * Publish mode (docs/injection.md): when the job's containers have ended, the sidecar encrypts what the job wrote
 * into its output directory and registers it as a new version with `PublishVersion`. Only an output the app marked
 * complete ({@link PUBLISH_COMPLETE_MARKER}) is published; the marker itself is not part of the version.
 *
 * Nothing is half-published: the ciphertext appears on the artifact's storage in one rename (core/storage), and if
 * the broker refuses the version it is removed again. Only when the answer is unknown (the call timed out or the
 * connection broke after the request left) is the ciphertext kept, because the broker may have recorded the version:
 * removing it then could orphan a published version. Logs carry names, digests and sizes, never key material.
 */
import { lstat, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type winston from 'winston';
import { PUBLISH_COMPLETE_MARKER, type PlannedPublish } from '../core/injection/contract.ts';
import { StorageError, writeVersion, type WrittenVersion } from '../core/storage/index.ts';
import type { PublishVersionRequest } from '../proto/generated/strongroom/v1/PublishVersionRequest.ts';
import type { PublishVersionResponse__Output } from '../proto/generated/strongroom/v1/PublishVersionResponse.ts';
import type { KeyBrokerClient } from '../proto/keybroker.ts';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';

const PUBLISH_DEADLINE_MS = 60_000;
/** ABORTED means the artifact changed under the broker's guarded patch and nothing was written: retried. */
const MAX_ATTEMPTS = 4;
const RETRY_DELAY_MS = 250;
/**
 * UNAVAILABLE is retried with backoff, each time on a new connection when the caller can make one: a follower replica
 * of the operator refuses PublishVersion with UNAVAILABLE (marked {@link NOT_LEADER}: nothing was written), and
 * behind a Service a new connection may reach the leader. At most this many retries, about 8 s in all, so that the
 * pod's termination grace period is not spent waiting.
 */
const MAX_UNAVAILABLE_RETRIES = 5;
const UNAVAILABLE_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 4000 };
/**
 * A follower's refusal costs it nothing and wrote nothing, and the next connection reaches the leader with
 * probability 1/replicas (a Service spreads connections at random): so these are retried more often and sooner,
 * after {@link NOT_LEADER_DELAY_MS} each, up to this many (with 2 replicas all of them miss with probability 2^-16).
 */
const MAX_NOT_LEADER_RETRIES = 15;
const NOT_LEADER_DELAY_MS = 200;
/** The trailing metadata of a refusal that wrote nothing and may be retried (operator/broker/errors.ts). */
const RETRY_METADATA_KEY = 'strongroom-retry';
const NOT_LEADER = 'not-leader';

/** How publishOutput retries. */
export interface PublishRetry {
  /** A client on a new connection, for a retry after UNAVAILABLE; absent, the same client is used again. */
  readonly reconnect?: () => KeyBrokerClient;
  readonly backoff?: BackoffPolicy;
}

/**
 * Statuses after which the version was certainly not recorded (the broker refuses before it writes, and ABORTED is
 * its failed guarded patch): the ciphertext is removed. Any other failure leaves the outcome unknown.
 */
const REFUSALS: ReadonlySet<grpc.status> = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ABORTED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
]);

/** The version is recorded in the ModelArtifact and its ciphertext is on the storage. */
export interface Published {
  readonly published: true;
  readonly version: string;
  /** The tree digest of the plaintext, as recorded. */
  readonly digest: string;
  readonly size: number;
  /** The publisher the broker recorded: this pod's SPIFFE ID. */
  readonly publisher: string;
  /** The ciphertext directory. */
  readonly path: string;
  /** The ModelArtifact's resourceVersion after the update. */
  readonly resourceVersion: string;
}

/** Why nothing was published. */
export type NotPublishedReason =
  /** The output has no marker: the job did not finish its output. Nothing was written. */
  | 'incomplete'
  /** The ciphertext could not be written (see `storageError`), for example because the version directory exists.
   * Nothing was written. */
  | 'write-failed'
  /** The broker refused the version (`code`); the ciphertext was removed again. */
  | 'refused'
  /** The call failed without an answer (`code`); the version may or may not be recorded, so the ciphertext was kept
   * at `path`. */
  | 'unknown';

/** Nothing was published, and why. */
export interface NotPublished {
  readonly published: false;
  readonly reason: NotPublishedReason;
  readonly message: string;
  /** The gRPC status of a refused or failed PublishVersion. */
  readonly code?: grpc.status;
  /** The kind of the core/storage failure, for 'write-failed'. */
  readonly storageError?: StorageError['kind'];
  /** Where the ciphertext was kept: for 'unknown', or for 'refused' when removing it failed (logged). */
  readonly path?: string;
}

export type PublishOutcome = Published | NotPublished;

type CallResult = { ok: PublishVersionResponse__Output } | { error: grpc.ServiceError };

function callPublish(client: KeyBrokerClient, request: PublishVersionRequest): Promise<CallResult> {
  return new Promise((resolvePromise) => {
    client.PublishVersion(request, { deadline: Date.now() + PUBLISH_DEADLINE_MS }, (error, response) => {
      if (error) resolvePromise({ error });
      else if (response) resolvePromise({ ok: response });
      else
        resolvePromise({
          error: Object.assign(new Error('PublishVersion returned no response'), {
            code: grpc.status.INTERNAL,
            details: 'PublishVersion returned no response',
            metadata: new grpc.Metadata(),
          }),
        });
    });
  });
}

/** A follower replica's refusal: UNAVAILABLE marked not-leader, nothing was written. */
function isNotLeader(error: grpc.ServiceError): boolean {
  return (
    error.code === grpc.status.UNAVAILABLE &&
    error.metadata.get(RETRY_METADATA_KEY).some((v) => v.toString() === NOT_LEADER)
  );
}

function requestOf(publish: PlannedPublish, written: WrittenVersion): PublishVersionRequest {
  return {
    artifact: { namespace: publish.namespace, name: publish.name },
    version: publish.version,
    digest: written.digest,
    size: String(written.size),
    sealedKey: {
      suite: 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM',
      enc: Buffer.from(written.sealedKey.enc, 'base64'),
      ciphertext: Buffer.from(written.sealedKey.ciphertext, 'base64'),
    },
    keyFingerprint: written.keyFingerprint,
  };
}

async function isMarked(outputDir: string): Promise<{ marked: true } | { marked: false; why: string }> {
  const marker = join(outputDir, PUBLISH_COMPLETE_MARKER);
  try {
    const info = await lstat(marker);
    if (info.isFile()) return { marked: true };
    return { marked: false, why: `${marker} is not a regular file` };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      marked: false,
      why:
        code === 'ENOENT'
          ? `the job did not write ${PUBLISH_COMPLETE_MARKER} into ${outputDir}`
          : `${marker} cannot be read (${String(code)})`,
    };
  }
}

/**
 * Publishes the job's output as the planned new version: checks the completion marker, writes the ciphertext to
 * `publish.ciphertextPath` (writeVersion, marker left out), and calls PublishVersion (no lineage). Never throws for a
 * refusal or an I/O failure: the outcome says what happened; it throws only for a programming error.
 */
export async function publishOutput(
  publish: PlannedPublish,
  client: KeyBrokerClient,
  logger: winston.Logger,
  retry: PublishRetry = {},
): Promise<PublishOutcome> {
  const subject = { artifact: `${publish.namespace}/${publish.name}`, version: publish.version };
  const marked = await isMarked(publish.outputDir);
  if (!marked.marked) {
    logger.warn('not publishing: the output is not marked complete', { ...subject, why: marked.why });
    return { published: false, reason: 'incomplete', message: marked.why };
  }
  const target = resolve(publish.ciphertextPath);
  if (basename(target) !== publish.version) {
    const message = `the plan's ciphertext path ${publish.ciphertextPath} is not named after version ${publish.version}`;
    logger.error('not publishing: inconsistent plan', { ...subject, why: message });
    return { published: false, reason: 'write-failed', message, storageError: 'invalid' };
  }

  let written: WrittenVersion;
  try {
    written = await writeVersion({
      source: publish.outputDir,
      storageRoot: dirname(target),
      storagePath: '',
      artifact: { uid: publish.uid, name: publish.name },
      version: publish.version,
      recipientPublicKey: publish.recipientPublicKey,
      exclude: [PUBLISH_COMPLETE_MARKER],
    });
  } catch (error) {
    if (!(error instanceof StorageError)) throw error;
    logger.error('not publishing: the ciphertext could not be written', {
      ...subject,
      kind: error.kind,
      error,
    });
    return { published: false, reason: 'write-failed', message: error.message, storageError: error.kind };
  }
  const facts = { ...subject, digest: written.digest, size: written.size, path: written.path };
  logger.info('ciphertext written; publishing the version', {
    ...facts,
    fingerprint: written.keyFingerprint,
  });

  const request = requestOf(publish, written);
  let current = client;
  let result = await callPublish(current, request);
  /** An earlier attempt failed in a way that may have recorded the version. */
  let ambiguous = false;
  for (let aborted = 1, unavailable = 1, followers = 1; 'error' in result;) {
    const error = result.error;
    if (error.code === grpc.status.ABORTED && aborted < MAX_ATTEMPTS) {
      logger.info('the artifact changed concurrently; retrying PublishVersion', {
        ...subject,
        attempt: aborted,
      });
      await new Promise((done) => setTimeout(done, RETRY_DELAY_MS * aborted));
      aborted += 1;
    } else if (
      error.code === grpc.status.UNAVAILABLE &&
      (isNotLeader(error) ? followers <= MAX_NOT_LEADER_RETRIES : unavailable <= MAX_UNAVAILABLE_RETRIES)
    ) {
      const notLeader = isNotLeader(error);
      if (!notLeader) ambiguous = true;
      logger.info('the broker is unavailable; retrying PublishVersion on a new connection', {
        ...subject,
        attempt: notLeader ? followers : unavailable,
        notLeader,
        details: error.details,
      });
      const delay = notLeader
        ? NOT_LEADER_DELAY_MS
        : backoffDelay(unavailable, retry.backoff ?? UNAVAILABLE_BACKOFF);
      await new Promise((done) => setTimeout(done, delay));
      if (notLeader) followers += 1;
      else unavailable += 1;
      if (retry.reconnect !== undefined) {
        if (current !== client) current.close();
        current = retry.reconnect();
      }
    } else break;
    result = await callPublish(current, request);
  }
  if (current !== client) current.close();

  if ('ok' in result) {
    const recorded = result.ok.version;
    logger.info('published', { ...facts, publisher: recorded?.publisher ?? '' });
    return {
      published: true,
      version: publish.version,
      digest: written.digest,
      size: written.size,
      publisher: recorded?.publisher ?? '',
      path: written.path,
      resourceVersion: result.ok.resourceVersion,
    };
  }
  const { code, details } = result.error;
  const status = grpc.status[code];
  // A refusal is certain only if no earlier attempt may have recorded the version: ALREADY_EXISTS after a lost
  // answer may be this very version. A follower's "not the leader" wrote nothing.
  const refused = (REFUSALS.has(code) && !ambiguous) || (isNotLeader(result.error) && !ambiguous);
  if (refused) {
    try {
      await rm(written.path, { recursive: true, force: true });
    } catch (error) {
      logger.error('the broker refused the version, and its ciphertext could not be removed', {
        ...facts,
        status,
        details,
        error,
      });
      return { published: false, reason: 'refused', code, message: details, path: written.path };
    }
    logger.warn('the broker refused the version; its ciphertext was removed', { ...facts, status, details });
    return { published: false, reason: 'refused', code, message: details };
  }
  logger.error(
    'PublishVersion failed without an answer; the ciphertext is kept, the version may be recorded',
    {
      ...facts,
      status,
      details,
    },
  );
  return { published: false, reason: 'unknown', code, message: details, path: written.path };
}
