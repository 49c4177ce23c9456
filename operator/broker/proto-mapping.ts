/**
 * The broker's domain results and refusals as the KeyBroker proto messages and gRPC statuses (docs/broker.md):
 * timestamps as google.protobuf.Timestamp, 64-bit integers as decimal strings, a BrokerError as its status code and
 * the message the caller may see, anything else as INTERNAL with no detail.
 */
import * as grpc from '@grpc/grpc-js';
import type { AttestResponse } from '../../proto/generated/strongroom/v1/AttestResponse.ts';
import type { PublishVersionResponse } from '../../proto/generated/strongroom/v1/PublishVersionResponse.ts';
import type { ReleaseKeyRequest__Output } from '../../proto/generated/strongroom/v1/ReleaseKeyRequest.ts';
import type { ReleaseKeyResponse } from '../../proto/generated/strongroom/v1/ReleaseKeyResponse.ts';
import type { ReportWipeRequest__Output } from '../../proto/generated/strongroom/v1/ReportWipeRequest.ts';
import type { ReportWipeResponse } from '../../proto/generated/strongroom/v1/ReportWipeResponse.ts';
import type { AttestResult } from './attest.ts';
import { BrokerError, NOT_LEADER, RETRY_METADATA_KEY } from './errors.ts';
import type { PublishResult } from './publish.ts';
import type { ReleaseRequestInput, ReleaseResult } from './release.ts';
import type { WipeReportInput, WipeReportResult } from './wipe-report.ts';

/** A google.protobuf.Timestamp, to the millisecond. */
export function protoTimestamp(date: Date): { seconds: string; nanos: number } {
  const ms = date.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** The certificate Attest issued; its notAfter in whole seconds (as in the certificate). */
export function attestResponse(result: AttestResult): AttestResponse {
  return {
    certificateChainPem: result.certificateChainPem,
    caBundlePem: result.caBundlePem,
    notAfter: { seconds: String(Math.floor(result.notAfter.getTime() / 1000)), nanos: 0 },
    spiffeId: result.spiffeId,
    podUid: result.podUid,
  };
}

/** What ReleaseKey decides on; absent fields read as empty (and are refused as such). */
export function releaseRequestInput(r: ReleaseKeyRequest__Output): ReleaseRequestInput {
  return {
    artifactNamespace: r.artifact?.namespace ?? '',
    artifactName: r.artifact?.name ?? '',
    version: r.version,
    fileDigest: r.auditContext?.fileDigest ?? '',
  };
}

/** The released key; `dek` is the result's own buffer, which the caller zeroes once it is sent. */
export function releaseKeyResponse(result: ReleaseResult): ReleaseKeyResponse & { dek: Buffer } {
  return {
    dek: result.dek,
    version: result.version,
    leaseExpiresAt: protoTimestamp(result.leaseExpiresAt),
    grant: result.grant,
    auditIndex: String(result.auditIndex),
    digest: result.digest,
  };
}

/** A google.protobuf.Timestamp or Duration as milliseconds; NaN when absent or out of range. */
function protoMs(value: { seconds: string; nanos: number } | null | undefined): number {
  if (value === null || value === undefined || !/^-?\d{1,15}$/.test(value.seconds)) return NaN;
  return Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
}

/** What ReportWipe checks; absent fields read as empty (and are refused as such). */
export function wipeReportInput(r: ReportWipeRequest__Output): WipeReportInput {
  const endedMs = protoMs(r.revocation?.endedAt);
  return {
    seq: r.revocation?.seq ?? '',
    epoch: r.revocation?.epoch ?? '',
    reportedEndedAt: Number.isFinite(endedMs) ? new Date(endedMs) : undefined,
    artifactNamespace: r.artifact?.namespace ?? '',
    artifactName: r.artifact?.name ?? '',
    version: r.version,
    filesRemoved: r.filesRemoved,
    wipeMs: protoMs(r.wipeDuration),
    trigger: r.trigger,
  };
}

/** The recorded report. */
export function reportWipeResponse(result: WipeReportResult): ReportWipeResponse {
  return { recorded: result.recorded, auditIndex: String(result.auditIndex) };
}

/** The version PublishVersion added. */
export function publishVersionResponse(result: PublishResult): PublishVersionResponse {
  const v = result.version;
  return {
    version: {
      name: v.name,
      digest: v.digest,
      size: String(v.size),
      keyFingerprint: v.encryption.keyFingerprint,
      publisher: v.publisher,
      publishedAt: protoTimestamp(new Date(v.publishedAt)),
    },
    resourceVersion: result.resourceVersion,
  };
}

/**
 * The status a failed call answers with: a BrokerError's status and the message the caller may see (the public
 * message when there is one: no other grant, service account or namespace); anything else is INTERNAL.
 */
export function callerStatus(error: unknown): {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata;
} {
  if (error instanceof BrokerError && error.reason === NOT_LEADER) {
    // Tells the client that nothing was written, so that retrying (on another connection) is safe.
    const metadata = new grpc.Metadata();
    metadata.set(RETRY_METADATA_KEY, NOT_LEADER);
    return { code: grpc.status[error.status], details: error.callerMessage, metadata };
  }
  if (error instanceof BrokerError) return { code: grpc.status[error.status], details: error.callerMessage };
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}
