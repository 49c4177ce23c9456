/**
 * `ReleaseKey` from the sidecar's side: one planned artifact version's DEK, its key lease and the digest the broker
 * recorded. A refusal is a {@link ReleaseError} with the gRPC status and the broker's reason (the status message,
 * which never holds key material); whether it is final (a denial) or worth retrying is {@link isDenial}.
 */
import * as grpc from '@grpc/grpc-js';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import type { KeyBrokerClient } from '../proto/keybroker.ts';

const RELEASE_DEADLINE_MS = 15_000;
const DEK_BYTES = 32;

/** A released key. The caller zeroes `dek` as soon as it is used. */
export interface ReleasedKey {
  readonly dek: Buffer;
  readonly version: string;
  /** When the DEK must be forgotten and the release renewed. */
  readonly leaseExpiresAt: Date;
  readonly grant: { readonly namespace: string; readonly name: string; readonly uid: string } | undefined;
  readonly auditIndex: string;
  readonly digest: string;
}

/** The broker refused, the call failed, or the answer does not fit the plan. */
export class ReleaseError extends Error {
  override readonly name = 'ReleaseError';
  /** The gRPC status; `INTERNAL` when the answer itself was unusable. */
  readonly code: grpc.status;
  /** The broker's reason (the status details), or what was wrong with its answer. */
  readonly reason: string;
  constructor(code: grpc.status, reason: string, options?: ErrorOptions) {
    super(`${grpc.status[code]}: ${reason}`, options);
    this.code = code;
    this.reason = reason;
  }
  /** The status name, e.g. `PERMISSION_DENIED`. */
  get codeName(): string {
    return grpc.status[this.code];
  }
}

/** Statuses that are an answer about access (not a transport or capacity problem): the plaintext must go. */
const DENIALS: ReadonlySet<grpc.status> = new Set([
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.NOT_FOUND,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.INVALID_ARGUMENT,
]);

/** Whether `error` is the broker saying no (as opposed to a failure to ask, which is retried until the lease ends). */
export function isDenial(error: unknown): boolean {
  return error instanceof ReleaseError && DENIALS.has(error.code);
}

/**
 * Asks the broker for the DEK of `artifact.version` and checks the answer against the plan: a 32-byte DEK, the
 * planned version and digest, a lease in the future. On a mismatch the DEK is zeroed and a ReleaseError (INTERNAL)
 * thrown.
 */
export function releaseKey(client: KeyBrokerClient, artifact: PlannedArtifact): Promise<ReleasedKey> {
  return new Promise<ReleasedKey>((resolve, reject) => {
    client.ReleaseKey(
      {
        artifact: { namespace: artifact.namespace, name: artifact.name },
        version: artifact.version,
        auditContext: { fileDigest: artifact.digest },
      },
      { deadline: Date.now() + RELEASE_DEADLINE_MS },
      (error, response) => {
        if (error) {
          reject(new ReleaseError(error.code, error.details || error.message, { cause: error }));
          return;
        }
        if (response === undefined) {
          reject(new ReleaseError(grpc.status.INTERNAL, 'the broker answered with nothing'));
          return;
        }
        const dek = response.dek;
        const lease =
          Number(response.leaseExpiresAt?.seconds ?? 0) * 1000 +
          Math.floor((response.leaseExpiresAt?.nanos ?? 0) / 1e6);
        const problem =
          dek.length !== DEK_BYTES
            ? `the DEK has ${dek.length} bytes, not ${DEK_BYTES}`
            : response.version !== artifact.version
              ? `the key is for version ${response.version}, not ${artifact.version}`
              : response.digest !== artifact.digest
                ? `the broker's digest ${response.digest} differs from the planned ${artifact.digest}`
                : !(lease > Date.now())
                  ? 'the key lease has already ended'
                  : undefined;
        if (problem !== undefined) {
          dek.fill(0);
          reject(new ReleaseError(grpc.status.INTERNAL, problem));
          return;
        }
        resolve({
          dek,
          version: response.version,
          leaseExpiresAt: new Date(lease),
          grant: response.grant ?? undefined,
          auditIndex: response.auditIndex,
          digest: response.digest,
        });
      },
    );
  });
}
