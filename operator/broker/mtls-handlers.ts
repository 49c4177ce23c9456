/**
 * The broker listener's service (mutual TLS): `ReleaseKey` (release.ts), `PublishVersion` (publish.ts) and
 * `WatchRevocations` (revocation-feed.ts), each for the peer of its connection's verified client certificate
 * (connection-peers.ts). A peer that cannot be established (expired certificate, pod gone) is audited before the
 * refusal; so is the opening or refusal of a revocation stream. `Attest` is refused here: it is served on the attest
 * port. Open revocation streams are tracked so that `closeStreams` can end them when the broker stops.
 */
import * as grpc from '@grpc/grpc-js';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { KmsProvider } from '../../core/kms/provider.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import type { PublishVersionRequest__Output } from '../../proto/generated/strongroom/v1/PublishVersionRequest.ts';
import type { PublishVersionResponse } from '../../proto/generated/strongroom/v1/PublishVersionResponse.ts';
import type { ReleaseKeyRequest__Output } from '../../proto/generated/strongroom/v1/ReleaseKeyRequest.ts';
import type { ReleaseKeyResponse } from '../../proto/generated/strongroom/v1/ReleaseKeyResponse.ts';
import type { ReportWipeRequest__Output } from '../../proto/generated/strongroom/v1/ReportWipeRequest.ts';
import type { ReportWipeResponse } from '../../proto/generated/strongroom/v1/ReportWipeResponse.ts';
import type { WatchRevocationsRequest__Output } from '../../proto/generated/strongroom/v1/WatchRevocationsRequest.ts';
import type { WatchRevocationsResponse } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import type { KeyBrokerHandlers } from '../../proto/keybroker.ts';
import type { BrokerAuditTrail } from './audit-trail.ts';
import type { CallReporter } from './call-report.ts';
import type { CallOrigin, ConnectionPeers } from './connection-peers.ts';
import type { DekCache } from './dek-cache.ts';
import { BrokerError, notLeaderError } from './errors.ts';
import { podOf, workloadOf, type Peer } from './peer.ts';
import {
  publishVersionResponse,
  releaseKeyResponse,
  releaseRequestInput,
  reportWipeResponse,
  wipeReportInput,
} from './proto-mapping.ts';
import { publishVersion, type PublishDeps } from './publish.ts';
import { releaseKey, type ReleaseDeps, type ReleaseRequestInput } from './release.ts';
import type { LeaseTracker, RevocationFeed } from './revocation-feed.ts';
import type { BrokerView } from './view.ts';
import { reportWipe } from './wipe-report.ts';

/** What the broker listener's service needs. */
export interface MtlsHandlerDeps {
  readonly view: BrokerView;
  /** The classification table in force, read at each decision. */
  readonly policy: () => ClassificationTable;
  /** Whether an identity is quarantined (ReleaseKey refuses it). */
  readonly quarantine?: ReleaseDeps['quarantine'] | undefined;
  readonly now: () => Date;
  readonly kms: KmsProvider;
  readonly custom: CustomObjectsApi;
  readonly keyring: PublishDeps['keyring'];
  readonly audit: BrokerAuditTrail;
  readonly cache: DekCache;
  readonly leases: LeaseTracker;
  readonly feed: RevocationFeed;
  readonly peers: ConnectionPeers;
  readonly report: CallReporter;
  /** Whether this replica leads now (PublishVersion is served only by the leader). */
  readonly leadership: () => Leadership;
  /** Told of every refused ReleaseKey the pod's owner can act on, after the refusal is audited. */
  readonly onRefusedRelease?:
    ((pod: { namespace: string; name: string; uid: string }, message: string) => void) | undefined;
}

type Operation = 'release-key' | 'publish-version' | 'watch-revocations' | 'report-wipe';

/** Whether this replica leads, and the identity of the leader when one has been observed. */
export interface Leadership {
  readonly leading: boolean;
  readonly leader?: string | undefined;
}

/** See the module comment. */
export class MtlsService {
  readonly #d: MtlsHandlerDeps;
  /** Open WatchRevocations streams: each entry ends its stream (with UNAVAILABLE when the broker stops). */
  readonly #streams = new Map<() => void, () => void>();
  #closing = false;

  constructor(deps: MtlsHandlerDeps) {
    this.#d = deps;
  }

  /** The handlers of the broker listener's grpc-js server. */
  handlers(): KeyBrokerHandlers {
    return {
      Attest: (_call, callback) => {
        callback({
          code: grpc.status.UNAUTHENTICATED,
          details: 'Attest is served on the attest port (server-authenticated TLS)',
        });
      },
      ReleaseKey: (call, callback) => {
        this.#releaseKey(call, callback);
      },
      PublishVersion: (call, callback) => {
        this.#publishVersion(call, callback);
      },
      WatchRevocations: (call) => {
        this.#watchRevocations(call);
      },
      ReportWipe: (call, callback) => {
        this.#reportWipe(call, callback);
      },
    };
  }

  /**
   * Refuses revocation streams from now on and ends the open ones with UNAVAILABLE, so that clients resume elsewhere
   * at once. Returns how many were open.
   */
  closeStreams(): number {
    this.#closing = true;
    const open = [...this.#streams.values()];
    for (const close of open) close();
    this.#streams.clear();
    return open.length;
  }

  #releaseKey(
    call: grpc.ServerUnaryCall<ReleaseKeyRequest__Output, ReleaseKeyResponse>,
    callback: grpc.sendUnaryData<ReleaseKeyResponse>,
  ): void {
    const d = this.#d;
    let caller: Peer | undefined;
    let released: { peer: Peer; input: ReleaseRequestInput; version: string; until: Date } | undefined;
    const run = async () => {
      const peer = await this.#peerOrAudit(call, 'release-key');
      caller = peer;
      const input = releaseRequestInput(call.request);
      const result = await releaseKey(peer, input, {
        view: d.view,
        policy: d.policy,
        now: d.now,
        kms: d.kms,
        audit: d.audit,
        cache: d.cache,
        leases: d.leases,
        ...(d.quarantine === undefined ? {} : { quarantine: d.quarantine }),
      });
      released = { peer, input, version: result.version, until: result.leaseExpiresAt };
      return releaseKeyResponse(result);
    };
    d.report.answer('ReleaseKey', callback, run, {
      // The serializer has copied the key into the HTTP/2 frame; drop ours. Counted here, where the key left, as
      // returned and, against an allow entry the audit log made durable, as audited (OperatorMetrics.recordKeyRelease):
      // strongroom_audit_coverage_ratio compares the two. The version is what a wipe report of the pod may name.
      sent: (response) => {
        response.dek.fill(0);
        d.report.released('allow');
        if (released !== undefined)
          d.leases.released(
            released.peer.podUid,
            { namespace: released.input.artifactNamespace, name: released.input.artifactName },
            released.version,
            released.until,
          );
      },
      refused: (error) => {
        d.report.released(releaseDecision(error));
        this.#tellPod(caller, error, call.request);
      },
    });
  }

  #publishVersion(
    call: grpc.ServerUnaryCall<PublishVersionRequest__Output, PublishVersionResponse>,
    callback: grpc.sendUnaryData<PublishVersionResponse>,
  ): void {
    const d = this.#d;
    d.report.answer('PublishVersion', callback, async (): Promise<PublishVersionResponse> => {
      const peer = await this.#peerOrAudit(call, 'publish-version');
      const leadership = d.leadership();
      if (!leadership.leading) {
        const refusal = notLeaderError(leadership.leader);
        await d.audit.access({
          operation: 'publish-version',
          decision: 'deny',
          reason: refusal.reason,
          peer: peer.address,
          verified: true,
          workload: workloadOf(peer),
          artifact: null,
          detail: refusal.message,
        });
        throw refusal;
      }
      const result = await publishVersion(peer, call.request, {
        view: d.view,
        policy: d.policy,
        now: d.now,
        custom: d.custom,
        keyring: d.keyring,
        audit: d.audit,
      });
      return publishVersionResponse(result);
    });
  }

  #watchRevocations(
    call: grpc.ServerWritableStream<WatchRevocationsRequest__Output, WatchRevocationsResponse>,
  ): void {
    const d = this.#d;
    const started = performance.now();
    const run = async (): Promise<void> => {
      const peer = await this.#peerOrAudit(call, 'watch-revocations');
      try {
        await podOf(peer, d.view);
      } catch (error) {
        if (error instanceof BrokerError) await this.#auditWatch(peer, 'deny', error.reason, error.message);
        throw error;
      }
      if (this.#closing) throw new BrokerError('UNAVAILABLE', 'shutting-down', 'the broker is shutting down');
      await this.#auditWatch(peer, 'allow', 'stream-opened', `epoch ${d.feed.epoch}`);
      const end = d.feed.open(
        peer,
        { afterSeq: call.request.afterSeq ?? null, epoch: call.request.epoch },
        { write: (message) => call.write(message) },
      );
      const finish = (): void => {
        end();
        if (this.#streams.delete(finish)) d.report.streams(-1);
      };
      this.#streams.set(finish, () => {
        finish();
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the broker is shutting down' });
      });
      d.report.streams(1);
      call.on('cancelled', finish);
      call.on('close', finish);
      call.on('error', finish);
    };
    run().catch((error: unknown) => {
      call.emit('error', d.report.refused('WatchRevocations', started, error));
    });
  }

  #reportWipe(
    call: grpc.ServerUnaryCall<ReportWipeRequest__Output, ReportWipeResponse>,
    callback: grpc.sendUnaryData<ReportWipeResponse>,
  ): void {
    const d = this.#d;
    d.report.answer('ReportWipe', callback, async (): Promise<ReportWipeResponse> => {
      let peer: Peer;
      try {
        peer = await this.#peerOrAudit(call, 'report-wipe');
        await this.#reportingPod(peer);
      } catch (error) {
        d.report.wipeReport('refused');
        throw error;
      }
      const result = await reportWipe(peer, wipeReportInput(call.request), {
        audit: d.audit,
        delivered: d.feed.delivered,
        epoch: d.feed.epoch,
        now: d.now,
        observe: (outcome, seconds) => {
          d.report.wipeReport(outcome, seconds);
        },
      });
      return reportWipeResponse(result);
    });
  }

  /**
   * The pod behind a wipe report must still exist as the certificate says; unlike the other calls a terminating pod
   * may report (it wipes on its way out). A refusal is audited before it is thrown.
   */
  async #reportingPod(peer: Peer): Promise<void> {
    try {
      await podOf(peer, this.#d.view);
    } catch (error) {
      if (!(error instanceof BrokerError)) throw error;
      if (error.reason === 'pod-terminating') return;
      await this.#d.audit.access({
        operation: 'report-wipe',
        decision: 'deny',
        reason: error.reason,
        peer: peer.address,
        verified: true,
        workload: workloadOf(peer),
        artifact: null,
        detail: error.message,
      });
      throw error;
    }
  }

  /** Rejects with AuditUnavailableError when the decision cannot be audited. */
  async #auditWatch(peer: Peer, decision: 'allow' | 'deny', reason: string, detail: string): Promise<void> {
    await this.#d.audit.access({
      operation: 'watch-revocations',
      decision,
      reason,
      peer: peer.address,
      verified: true,
      workload: workloadOf(peer),
      artifact: null,
      detail,
    });
  }

  /** The verified peer; a refusal (for example the certificate's pod is gone) is audited before it is thrown. */
  async #peerOrAudit(call: CallOrigin, operation: Operation): Promise<Peer> {
    try {
      return this.#d.peers.peer(call);
    } catch (error) {
      if (!(error instanceof BrokerError)) throw error;
      await this.#d.audit.access({
        operation: operation === 'release-key' ? 'connect' : operation,
        decision: 'deny',
        reason: error.reason,
        peer: call.getPeer(),
        verified: false,
        workload: {},
        artifact: null,
        detail: `${operation}: ${error.message}`,
      });
      throw error;
    }
  }

  /** A refusal the pod's owner can act on (not a transient one) becomes an Event on the pod. */
  #tellPod(peer: Peer | undefined, error: unknown, request: ReleaseKeyRequest__Output): void {
    const tell = this.#d.onRefusedRelease;
    if (peer === undefined || !(error instanceof BrokerError) || tell === undefined) return;
    if (error.status === 'UNAVAILABLE' || error.status === 'INTERNAL' || error.status === 'UNAUTHENTICATED')
      return;
    const pod = this.#d.view.pod(peer.podUid);
    if (pod === undefined || pod === 'deleted') return;
    const artifact = `${request.artifact?.namespace ?? ''}/${request.artifact?.name ?? ''}@${request.version}`;
    tell(
      { namespace: pod.namespace, name: pod.name, uid: pod.uid },
      `Strongroom refused the key of ${artifact} to ${peer.spiffeId}: ${error.status} (${error.reason}): ${error.message}`,
    );
  }
}

/**
 * The `decision` label of strongroom_key_releases_total for a refused ReleaseKey: `deny` for a refusal the broker
 * decided (audited), `error` when no decision was made (the audit log or the KMS unavailable, an internal failure).
 */
export function releaseDecision(error: unknown): 'deny' | 'error' {
  return error instanceof BrokerError && error.status !== 'UNAVAILABLE' && error.status !== 'INTERNAL'
    ? 'deny'
    : 'error';
}
