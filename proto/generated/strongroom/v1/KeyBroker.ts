// Original file: proto/strongroom/v1/keybroker.proto

import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type {
  AttestRequest as _strongroom_v1_AttestRequest,
  AttestRequest__Output as _strongroom_v1_AttestRequest__Output,
} from '../../strongroom/v1/AttestRequest.ts';
import type {
  AttestResponse as _strongroom_v1_AttestResponse,
  AttestResponse__Output as _strongroom_v1_AttestResponse__Output,
} from '../../strongroom/v1/AttestResponse.ts';
import type {
  PublishVersionRequest as _strongroom_v1_PublishVersionRequest,
  PublishVersionRequest__Output as _strongroom_v1_PublishVersionRequest__Output,
} from '../../strongroom/v1/PublishVersionRequest.ts';
import type {
  PublishVersionResponse as _strongroom_v1_PublishVersionResponse,
  PublishVersionResponse__Output as _strongroom_v1_PublishVersionResponse__Output,
} from '../../strongroom/v1/PublishVersionResponse.ts';
import type {
  ReleaseKeyRequest as _strongroom_v1_ReleaseKeyRequest,
  ReleaseKeyRequest__Output as _strongroom_v1_ReleaseKeyRequest__Output,
} from '../../strongroom/v1/ReleaseKeyRequest.ts';
import type {
  ReleaseKeyResponse as _strongroom_v1_ReleaseKeyResponse,
  ReleaseKeyResponse__Output as _strongroom_v1_ReleaseKeyResponse__Output,
} from '../../strongroom/v1/ReleaseKeyResponse.ts';
import type {
  ReportWipeRequest as _strongroom_v1_ReportWipeRequest,
  ReportWipeRequest__Output as _strongroom_v1_ReportWipeRequest__Output,
} from '../../strongroom/v1/ReportWipeRequest.ts';
import type {
  ReportWipeResponse as _strongroom_v1_ReportWipeResponse,
  ReportWipeResponse__Output as _strongroom_v1_ReportWipeResponse__Output,
} from '../../strongroom/v1/ReportWipeResponse.ts';
import type {
  WatchRevocationsRequest as _strongroom_v1_WatchRevocationsRequest,
  WatchRevocationsRequest__Output as _strongroom_v1_WatchRevocationsRequest__Output,
} from '../../strongroom/v1/WatchRevocationsRequest.ts';
import type {
  WatchRevocationsResponse as _strongroom_v1_WatchRevocationsResponse,
  WatchRevocationsResponse__Output as _strongroom_v1_WatchRevocationsResponse__Output,
} from '../../strongroom/v1/WatchRevocationsResponse.ts';

/**
 * The key broker. Every RPC except Attest requires mutual TLS with a client certificate issued by Attest; the
 * caller's identity is taken only from that certificate (its SPIFFE URI SAN and pod UID URI SAN), never from a
 * request field and never from the certificate's CN.
 */
export interface KeyBrokerClient extends grpc.Client {
  /**
   * Exchanges a pod's projected service-account token (audience "strongroom") and a CSR for a short-lived
   * (at most 1 hour) client certificate signed by the operator CA. Called over server-authenticated TLS, since
   * the pod has no certificate yet.
   */
  Attest(
    argument: _strongroom_v1_AttestRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  Attest(
    argument: _strongroom_v1_AttestRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  Attest(
    argument: _strongroom_v1_AttestRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  Attest(
    argument: _strongroom_v1_AttestRequest,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  /**
   * Exchanges a pod's projected service-account token (audience "strongroom") and a CSR for a short-lived
   * (at most 1 hour) client certificate signed by the operator CA. Called over server-authenticated TLS, since
   * the pod has no certificate yet.
   */
  attest(
    argument: _strongroom_v1_AttestRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  attest(
    argument: _strongroom_v1_AttestRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  attest(
    argument: _strongroom_v1_AttestRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;
  attest(
    argument: _strongroom_v1_AttestRequest,
    callback: grpc.requestCallback<_strongroom_v1_AttestResponse__Output>,
  ): grpc.ClientUnaryCall;

  /**
   * Registers a new version of an artifact with its HPKE-sealed DEK (the encrypting sidecar's path). Requires a
   * grant with the publish verb.
   */
  PublishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  PublishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  PublishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  PublishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  /**
   * Registers a new version of an artifact with its HPKE-sealed DEK (the encrypting sidecar's path). Requires a
   * grant with the publish verb.
   */
  publishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  publishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  publishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;
  publishVersion(
    argument: _strongroom_v1_PublishVersionRequest,
    callback: grpc.requestCallback<_strongroom_v1_PublishVersionResponse__Output>,
  ): grpc.ClientUnaryCall;

  /**
   * Releases the DEK of one version of an artifact to the calling pod, if an active grant allows it. Every
   * decision, allow or deny, is appended to the audit log before the answer is sent.
   */
  ReleaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReleaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReleaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReleaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  /**
   * Releases the DEK of one version of an artifact to the calling pod, if an active grant allows it. Every
   * decision, allow or deny, is appended to the audit log before the answer is sent.
   */
  releaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  releaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  releaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;
  releaseKey(
    argument: _strongroom_v1_ReleaseKeyRequest,
    callback: grpc.requestCallback<_strongroom_v1_ReleaseKeyResponse__Output>,
  ): grpc.ClientUnaryCall;

  /**
   * Confirms that the sidecar wiped an artifact's plaintext in answer to a revocation this stream sent it, so the
   * broker can measure the time from the end of access to the confirmed wipe (docs/metrics.md). Audited. The wipe
   * never waits for this call: a sidecar reports after wiping, with a bounded retry, and never re-wipes for it.
   */
  ReportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  ReportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  /**
   * Confirms that the sidecar wiped an artifact's plaintext in answer to a revocation this stream sent it, so the
   * broker can measure the time from the end of access to the confirmed wipe (docs/metrics.md). Audited. The wipe
   * never waits for this call: a sidecar reports after wiping, with a bounded retry, and never re-wipes for it.
   */
  reportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  reportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  reportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;
  reportWipe(
    argument: _strongroom_v1_ReportWipeRequest,
    callback: grpc.requestCallback<_strongroom_v1_ReportWipeResponse__Output>,
  ): grpc.ClientUnaryCall;

  /**
   * Streams the revocations that concern the calling identity, interleaved with periodic heartbeats so the
   * client can tell a quiet stream from a dead one.
   */
  WatchRevocations(
    argument: _strongroom_v1_WatchRevocationsRequest,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_strongroom_v1_WatchRevocationsResponse__Output>;
  WatchRevocations(
    argument: _strongroom_v1_WatchRevocationsRequest,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_strongroom_v1_WatchRevocationsResponse__Output>;
  /**
   * Streams the revocations that concern the calling identity, interleaved with periodic heartbeats so the
   * client can tell a quiet stream from a dead one.
   */
  watchRevocations(
    argument: _strongroom_v1_WatchRevocationsRequest,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_strongroom_v1_WatchRevocationsResponse__Output>;
  watchRevocations(
    argument: _strongroom_v1_WatchRevocationsRequest,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_strongroom_v1_WatchRevocationsResponse__Output>;
}

/**
 * The key broker. Every RPC except Attest requires mutual TLS with a client certificate issued by Attest; the
 * caller's identity is taken only from that certificate (its SPIFFE URI SAN and pod UID URI SAN), never from a
 * request field and never from the certificate's CN.
 */
export interface KeyBrokerHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Exchanges a pod's projected service-account token (audience "strongroom") and a CSR for a short-lived
   * (at most 1 hour) client certificate signed by the operator CA. Called over server-authenticated TLS, since
   * the pod has no certificate yet.
   */
  Attest: grpc.handleUnaryCall<_strongroom_v1_AttestRequest__Output, _strongroom_v1_AttestResponse>;

  /**
   * Registers a new version of an artifact with its HPKE-sealed DEK (the encrypting sidecar's path). Requires a
   * grant with the publish verb.
   */
  PublishVersion: grpc.handleUnaryCall<
    _strongroom_v1_PublishVersionRequest__Output,
    _strongroom_v1_PublishVersionResponse
  >;

  /**
   * Releases the DEK of one version of an artifact to the calling pod, if an active grant allows it. Every
   * decision, allow or deny, is appended to the audit log before the answer is sent.
   */
  ReleaseKey: grpc.handleUnaryCall<
    _strongroom_v1_ReleaseKeyRequest__Output,
    _strongroom_v1_ReleaseKeyResponse
  >;

  /**
   * Confirms that the sidecar wiped an artifact's plaintext in answer to a revocation this stream sent it, so the
   * broker can measure the time from the end of access to the confirmed wipe (docs/metrics.md). Audited. The wipe
   * never waits for this call: a sidecar reports after wiping, with a bounded retry, and never re-wipes for it.
   */
  ReportWipe: grpc.handleUnaryCall<
    _strongroom_v1_ReportWipeRequest__Output,
    _strongroom_v1_ReportWipeResponse
  >;

  /**
   * Streams the revocations that concern the calling identity, interleaved with periodic heartbeats so the
   * client can tell a quiet stream from a dead one.
   */
  WatchRevocations: grpc.handleServerStreamingCall<
    _strongroom_v1_WatchRevocationsRequest__Output,
    _strongroom_v1_WatchRevocationsResponse
  >;
}

export interface KeyBrokerDefinition extends grpc.ServiceDefinition {
  Attest: MethodDefinition<
    _strongroom_v1_AttestRequest,
    _strongroom_v1_AttestResponse,
    _strongroom_v1_AttestRequest__Output,
    _strongroom_v1_AttestResponse__Output
  >;
  PublishVersion: MethodDefinition<
    _strongroom_v1_PublishVersionRequest,
    _strongroom_v1_PublishVersionResponse,
    _strongroom_v1_PublishVersionRequest__Output,
    _strongroom_v1_PublishVersionResponse__Output
  >;
  ReleaseKey: MethodDefinition<
    _strongroom_v1_ReleaseKeyRequest,
    _strongroom_v1_ReleaseKeyResponse,
    _strongroom_v1_ReleaseKeyRequest__Output,
    _strongroom_v1_ReleaseKeyResponse__Output
  >;
  ReportWipe: MethodDefinition<
    _strongroom_v1_ReportWipeRequest,
    _strongroom_v1_ReportWipeResponse,
    _strongroom_v1_ReportWipeRequest__Output,
    _strongroom_v1_ReportWipeResponse__Output
  >;
  WatchRevocations: MethodDefinition<
    _strongroom_v1_WatchRevocationsRequest,
    _strongroom_v1_WatchRevocationsResponse,
    _strongroom_v1_WatchRevocationsRequest__Output,
    _strongroom_v1_WatchRevocationsResponse__Output
  >;
}
