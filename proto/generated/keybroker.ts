import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type {
  Duration as _google_protobuf_Duration,
  Duration__Output as _google_protobuf_Duration__Output,
} from './google/protobuf/Duration.ts';
import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from './google/protobuf/Timestamp.ts';
import type {
  ArtifactRef as _strongroom_v1_ArtifactRef,
  ArtifactRef__Output as _strongroom_v1_ArtifactRef__Output,
} from './strongroom/v1/ArtifactRef.ts';
import type {
  AttestRequest as _strongroom_v1_AttestRequest,
  AttestRequest__Output as _strongroom_v1_AttestRequest__Output,
} from './strongroom/v1/AttestRequest.ts';
import type {
  AttestResponse as _strongroom_v1_AttestResponse,
  AttestResponse__Output as _strongroom_v1_AttestResponse__Output,
} from './strongroom/v1/AttestResponse.ts';
import type {
  AuditContext as _strongroom_v1_AuditContext,
  AuditContext__Output as _strongroom_v1_AuditContext__Output,
} from './strongroom/v1/AuditContext.ts';
import type {
  GrantRef as _strongroom_v1_GrantRef,
  GrantRef__Output as _strongroom_v1_GrantRef__Output,
} from './strongroom/v1/GrantRef.ts';
import type {
  Heartbeat as _strongroom_v1_Heartbeat,
  Heartbeat__Output as _strongroom_v1_Heartbeat__Output,
} from './strongroom/v1/Heartbeat.ts';
import type {
  KeyBrokerClient as _strongroom_v1_KeyBrokerClient,
  KeyBrokerDefinition as _strongroom_v1_KeyBrokerDefinition,
} from './strongroom/v1/KeyBroker.ts';
import type {
  Lineage as _strongroom_v1_Lineage,
  Lineage__Output as _strongroom_v1_Lineage__Output,
} from './strongroom/v1/Lineage.ts';
import type {
  LineageParent as _strongroom_v1_LineageParent,
  LineageParent__Output as _strongroom_v1_LineageParent__Output,
} from './strongroom/v1/LineageParent.ts';
import type {
  LineageSource as _strongroom_v1_LineageSource,
  LineageSource__Output as _strongroom_v1_LineageSource__Output,
} from './strongroom/v1/LineageSource.ts';
import type {
  PublishVersionRequest as _strongroom_v1_PublishVersionRequest,
  PublishVersionRequest__Output as _strongroom_v1_PublishVersionRequest__Output,
} from './strongroom/v1/PublishVersionRequest.ts';
import type {
  PublishVersionResponse as _strongroom_v1_PublishVersionResponse,
  PublishVersionResponse__Output as _strongroom_v1_PublishVersionResponse__Output,
} from './strongroom/v1/PublishVersionResponse.ts';
import type {
  PublishedVersion as _strongroom_v1_PublishedVersion,
  PublishedVersion__Output as _strongroom_v1_PublishedVersion__Output,
} from './strongroom/v1/PublishedVersion.ts';
import type {
  ReleaseKeyRequest as _strongroom_v1_ReleaseKeyRequest,
  ReleaseKeyRequest__Output as _strongroom_v1_ReleaseKeyRequest__Output,
} from './strongroom/v1/ReleaseKeyRequest.ts';
import type {
  ReleaseKeyResponse as _strongroom_v1_ReleaseKeyResponse,
  ReleaseKeyResponse__Output as _strongroom_v1_ReleaseKeyResponse__Output,
} from './strongroom/v1/ReleaseKeyResponse.ts';
import type {
  ReportWipeRequest as _strongroom_v1_ReportWipeRequest,
  ReportWipeRequest__Output as _strongroom_v1_ReportWipeRequest__Output,
} from './strongroom/v1/ReportWipeRequest.ts';
import type {
  ReportWipeResponse as _strongroom_v1_ReportWipeResponse,
  ReportWipeResponse__Output as _strongroom_v1_ReportWipeResponse__Output,
} from './strongroom/v1/ReportWipeResponse.ts';
import type {
  Resync as _strongroom_v1_Resync,
  Resync__Output as _strongroom_v1_Resync__Output,
} from './strongroom/v1/Resync.ts';
import type {
  Revocation as _strongroom_v1_Revocation,
  Revocation__Output as _strongroom_v1_Revocation__Output,
} from './strongroom/v1/Revocation.ts';
import type {
  RevocationRef as _strongroom_v1_RevocationRef,
  RevocationRef__Output as _strongroom_v1_RevocationRef__Output,
} from './strongroom/v1/RevocationRef.ts';
import type {
  SealedKey as _strongroom_v1_SealedKey,
  SealedKey__Output as _strongroom_v1_SealedKey__Output,
} from './strongroom/v1/SealedKey.ts';
import type {
  WatchRevocationsRequest as _strongroom_v1_WatchRevocationsRequest,
  WatchRevocationsRequest__Output as _strongroom_v1_WatchRevocationsRequest__Output,
} from './strongroom/v1/WatchRevocationsRequest.ts';
import type {
  WatchRevocationsResponse as _strongroom_v1_WatchRevocationsResponse,
  WatchRevocationsResponse__Output as _strongroom_v1_WatchRevocationsResponse__Output,
} from './strongroom/v1/WatchRevocationsResponse.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new (...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Duration: MessageTypeDefinition<_google_protobuf_Duration, _google_protobuf_Duration__Output>;
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>;
    };
  };
  strongroom: {
    v1: {
      ArtifactRef: MessageTypeDefinition<_strongroom_v1_ArtifactRef, _strongroom_v1_ArtifactRef__Output>;
      AttestRequest: MessageTypeDefinition<
        _strongroom_v1_AttestRequest,
        _strongroom_v1_AttestRequest__Output
      >;
      AttestResponse: MessageTypeDefinition<
        _strongroom_v1_AttestResponse,
        _strongroom_v1_AttestResponse__Output
      >;
      AuditContext: MessageTypeDefinition<_strongroom_v1_AuditContext, _strongroom_v1_AuditContext__Output>;
      GrantRef: MessageTypeDefinition<_strongroom_v1_GrantRef, _strongroom_v1_GrantRef__Output>;
      Heartbeat: MessageTypeDefinition<_strongroom_v1_Heartbeat, _strongroom_v1_Heartbeat__Output>;
      HpkeSuite: EnumTypeDefinition;
      /**
       * The key broker. Every RPC except Attest requires mutual TLS with a client certificate issued by Attest; the
       * caller's identity is taken only from that certificate (its SPIFFE URI SAN and pod UID URI SAN), never from a
       * request field and never from the certificate's CN.
       */
      KeyBroker: SubtypeConstructor<typeof grpc.Client, _strongroom_v1_KeyBrokerClient> & {
        service: _strongroom_v1_KeyBrokerDefinition;
      };
      Lineage: MessageTypeDefinition<_strongroom_v1_Lineage, _strongroom_v1_Lineage__Output>;
      LineageParent: MessageTypeDefinition<
        _strongroom_v1_LineageParent,
        _strongroom_v1_LineageParent__Output
      >;
      LineageSource: MessageTypeDefinition<
        _strongroom_v1_LineageSource,
        _strongroom_v1_LineageSource__Output
      >;
      ParentKind: EnumTypeDefinition;
      PublishVersionRequest: MessageTypeDefinition<
        _strongroom_v1_PublishVersionRequest,
        _strongroom_v1_PublishVersionRequest__Output
      >;
      PublishVersionResponse: MessageTypeDefinition<
        _strongroom_v1_PublishVersionResponse,
        _strongroom_v1_PublishVersionResponse__Output
      >;
      PublishedVersion: MessageTypeDefinition<
        _strongroom_v1_PublishedVersion,
        _strongroom_v1_PublishedVersion__Output
      >;
      ReleaseKeyRequest: MessageTypeDefinition<
        _strongroom_v1_ReleaseKeyRequest,
        _strongroom_v1_ReleaseKeyRequest__Output
      >;
      ReleaseKeyResponse: MessageTypeDefinition<
        _strongroom_v1_ReleaseKeyResponse,
        _strongroom_v1_ReleaseKeyResponse__Output
      >;
      ReportWipeRequest: MessageTypeDefinition<
        _strongroom_v1_ReportWipeRequest,
        _strongroom_v1_ReportWipeRequest__Output
      >;
      ReportWipeResponse: MessageTypeDefinition<
        _strongroom_v1_ReportWipeResponse,
        _strongroom_v1_ReportWipeResponse__Output
      >;
      Resync: MessageTypeDefinition<_strongroom_v1_Resync, _strongroom_v1_Resync__Output>;
      Revocation: MessageTypeDefinition<_strongroom_v1_Revocation, _strongroom_v1_Revocation__Output>;
      RevocationReason: EnumTypeDefinition;
      RevocationRef: MessageTypeDefinition<
        _strongroom_v1_RevocationRef,
        _strongroom_v1_RevocationRef__Output
      >;
      SealedKey: MessageTypeDefinition<_strongroom_v1_SealedKey, _strongroom_v1_SealedKey__Output>;
      WatchRevocationsRequest: MessageTypeDefinition<
        _strongroom_v1_WatchRevocationsRequest,
        _strongroom_v1_WatchRevocationsRequest__Output
      >;
      WatchRevocationsResponse: MessageTypeDefinition<
        _strongroom_v1_WatchRevocationsResponse,
        _strongroom_v1_WatchRevocationsResponse__Output
      >;
    };
  };
}
