/**
 * The key broker's gRPC server (docs/broker.md). Two TLS 1.3 listeners feed one grpc-js server each, by connection
 * injection (tls-listener.ts):
 *   - attest: server-authenticated TLS, serves only `Attest` (a pod has no client certificate yet);
 *   - broker: mutual TLS, a client certificate chaining to the operator CA bundle is required at the handshake;
 *     serves `ReleaseKey`, `WatchRevocations` and `PublishVersion`.
 * The serving certificate (Secret `strongroom-broker-tls`) and the CA bundle (Secret `strongroom-ca`) are re-read
 * every `credentialRefreshMs` and swapped into both listeners without a restart. Connections live at most
 * `maxConnectionAgeMs` (default 10 minutes), so certificate expiry and CA rollover take effect. Every decision,
 * including refused handshakes, is audited before the answer.
 */
import * as grpc from '@grpc/grpc-js';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import { type AuthenticationV1Api, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import type winston from 'winston';
import type { Classification } from '../../core/api/index.ts';
import type { ExpectedSidecar } from '../../core/injection/verify.ts';
import type { KmsProvider } from '../../core/kms/provider.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import type { PublishVersionRequest__Output } from '../../proto/generated/strongroom/v1/PublishVersionRequest.ts';
import type { PublishVersionResponse } from '../../proto/generated/strongroom/v1/PublishVersionResponse.ts';
import type { ReleaseKeyRequest__Output } from '../../proto/generated/strongroom/v1/ReleaseKeyRequest.ts';
import type { ReleaseKeyResponse } from '../../proto/generated/strongroom/v1/ReleaseKeyResponse.ts';
import type { WatchRevocationsRequest__Output } from '../../proto/generated/strongroom/v1/WatchRevocationsRequest.ts';
import type { WatchRevocationsResponse } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { loadKeyBroker, type KeyBrokerHandlers } from '../../proto/keybroker.ts';
import type { ArtifactKeyring, KekScope } from '../keys/artifact-keys.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import type { RevocationBus } from '../revocation/bus.ts';
import { attest, AttestError } from './attest.ts';
import type { BrokerAuditTrail } from './audit-trail.ts';
import { DekCache } from './dek-cache.ts';
import { BrokerError } from './errors.ts';
import { checkTrustDomain } from './identity.ts';
import { readServingCertificate } from '../pki/serving-secret.ts';
import { peerFromCertificate, podOf, workloadOf, type Peer, type PeerCertificate } from './peer.ts';
import { publishVersion } from './publish.ts';
import { releaseKey } from './release.ts';
import { LeaseTracker, RevocationFeed } from './revocation-feed.ts';
import { TlsListener, type RefusedHandshake, type TlsIdentity } from './tls-listener.ts';
import type { BrokerView } from './view.ts';

/** Observations for metrics. */
export interface BrokerObserver {
  call?(method: string, code: string, seconds: number): void;
  streams?(delta: number): void;
}

/** How the broker server is configured. */
export interface BrokerServerOptions {
  readonly attestAddress: { readonly host: string; readonly port: number };
  readonly brokerAddress: { readonly host: string; readonly port: number };
  /** The operator namespace, which holds the serving Secret. */
  readonly namespace: string;
  /** Default `strongroom-broker-tls`. */
  readonly servingSecretName?: string;
  readonly core: CoreV1Api;
  readonly authentication: AuthenticationV1Api;
  readonly custom: CustomObjectsApi;
  readonly ca: Pick<InternalCa, 'signLeaf' | 'load'>;
  readonly trustDomain: string;
  /** The configured sidecar image and command: Attest certifies only pods as injection makes them with it. */
  readonly sidecar: ExpectedSidecar;
  readonly logger: winston.Logger;
  readonly view: BrokerView;
  readonly kms: KmsProvider;
  readonly keyring: Pick<ArtifactKeyring, 'recipientKey' | 'sealVersion'>;
  readonly scopes: Readonly<Record<Classification, KekScope>>;
  /** The classification table in force, read at each decision (it can change while the broker runs). */
  readonly policy: () => ClassificationTable;
  readonly audit: BrokerAuditTrail;
  readonly bus: RevocationBus;
  /** Default 5000 ms; 0 disables the cache. */
  readonly dekCacheTtlMs?: number;
  /** Default 10 minutes. */
  readonly maxConnectionAgeMs?: number;
  /** Default 30 000 ms. */
  readonly credentialRefreshMs?: number;
  /** The longest life of a pod certificate; default (and at most) 1 hour. */
  readonly podCertificateValidityMs?: number;
  /** Default 5000 ms. */
  readonly heartbeatMs?: number;
  readonly observer?: BrokerObserver;
  /**
   * Told of every refused ReleaseKey whose caller is a known pod, so the refusal shows in `kubectl describe pod`
   * (the operator records a Warning Event `KeyReleaseDenied`). Called after the refusal is audited.
   */
  readonly onRefusedRelease?: (
    pod: { namespace: string; name: string; uid: string },
    message: string,
  ) => void;
  readonly now?: () => Date;
}

/** Failure to start the broker server. */
export class BrokerServerError extends Error {
  override readonly name = 'BrokerServerError';
}

const SHUTDOWN_GRACE_MS = 5000;
const CALL_GRACE_MS = 30_000;

/** The key broker. */
export class BrokerServer {
  readonly #o: BrokerServerOptions;
  readonly #log: winston.Logger;
  readonly #now: () => Date;
  readonly #cache: DekCache;
  readonly #leases = new LeaseTracker();
  readonly #feed: RevocationFeed;
  /** Open WatchRevocations streams: each entry ends its stream (with UNAVAILABLE when the broker stops). */
  readonly #streams = new Map<() => void, () => void>();
  #listeners: { attest: TlsListener; broker: TlsListener } | undefined;
  #servers: grpc.Server[] = [];
  #identity: TlsIdentity | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;
  #ports = { attest: 0, broker: 0 };
  /**
   * The verified identity of each open mTLS connection, keyed by the remote `ip:port` that grpc-js reports as the
   * call's peer: the client certificate is parsed once per connection, not once per call (it cannot change within a
   * TLS session). Validity is still checked on every call.
   */
  readonly #connections = new Map<string, { certificate: PeerCertificate }>();
  readonly #identities = new WeakMap<object, { peer?: Peer; error?: BrokerError }>();

  constructor(options: BrokerServerOptions) {
    checkTrustDomain(options.trustDomain);
    this.#o = options;
    this.#log = options.logger.child({ component: 'broker' });
    this.#now = options.now ?? (() => new Date());
    this.#cache = new DekCache({ ttlMs: options.dekCacheTtlMs ?? 5000 });
    this.#feed = new RevocationFeed({
      bus: options.bus,
      leases: this.#leases,
      ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }),
    });
  }

  /** The epoch of this process's revocation sequence numbers. */
  get epoch(): string {
    return this.#feed.epoch;
  }

  /** True while both listeners are up and the caches are synced. */
  ready(): boolean {
    return this.#listeners !== undefined && this.#o.view.ready();
  }

  /**
   * Waits for the serving certificate (retrying every 500 ms until `stop()`), then listens on both addresses.
   * Throws BrokerServerError when an address cannot be bound, or when stopped before starting.
   */
  async start(): Promise<{ attestPort: number; brokerPort: number }> {
    if (this.#listeners !== undefined) throw new BrokerServerError('the broker server is already started');
    let identity: TlsIdentity | undefined;
    let lastProblem = '';
    while (identity === undefined) {
      if (this.#stopped) throw new BrokerServerError('stopped before the serving certificate was available');
      try {
        identity = await this.#readIdentity();
      } catch (error) {
        const problem = error instanceof Error ? error.message : String(error);
        if (problem !== lastProblem) this.#log.info('waiting for the serving certificate', { problem });
        lastProblem = problem;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    this.#identity = identity;
    const broker = loadKeyBroker();
    const age = this.#o.maxConnectionAgeMs ?? 10 * 60 * 1000;
    const serverOptions = {
      'grpc.max_connection_age_ms': age,
      'grpc.max_connection_age_grace_ms': Math.min(CALL_GRACE_MS, age),
      'grpc.max_receive_message_length': 64 * 1024,
      'grpc.max_concurrent_streams': 1000,
      // Channelz (grpc-js's introspection service) is not served; its per-call bookkeeping is pure overhead.
      'grpc.enable_channelz': 0,
    };
    const attestServer = new grpc.Server(serverOptions);
    attestServer.addService(broker.service, this.#attestHandlers());
    const brokerServer = new grpc.Server(serverOptions);
    brokerServer.addService(broker.service, this.#brokerHandlers());
    this.#servers = [attestServer, brokerServer];
    const insecure = grpc.ServerCredentials.createInsecure();
    const attestInjector = attestServer.createConnectionInjector(insecure);
    const brokerInjector = brokerServer.createConnectionInjector(insecure);
    const listeners = {
      attest: new TlsListener({
        ...this.#o.attestAddress,
        mutual: false,
        onConnection: (socket) => {
          attestInjector.injectConnection(socket);
        },
        onRefused: (refused) => {
          this.#auditRefused('attest', refused);
        },
      }),
      broker: new TlsListener({
        ...this.#o.brokerAddress,
        mutual: true,
        onConnection: (socket) => {
          const address = `${socket.remoteAddress ?? 'unknown'}:${String(socket.remotePort ?? 0)}`;
          this.#connections.set(address, { certificate: socket.getPeerCertificate() });
          socket.once('close', () => {
            this.#connections.delete(address);
          });
          brokerInjector.injectConnection(socket);
        },
        onRefused: (refused) => {
          this.#auditRefused('broker', refused);
        },
      }),
    };
    try {
      this.#ports = {
        attest: await listeners.attest.start(identity),
        broker: await listeners.broker.start(identity),
      };
    } catch (error) {
      await Promise.all([listeners.attest.stop(), listeners.broker.stop()]);
      throw new BrokerServerError('cannot listen', { cause: error });
    }
    this.#listeners = listeners;
    this.#timers.push(
      setInterval(() => {
        this.refreshIdentity().catch((error: unknown) => {
          this.#log.warn('could not refresh the serving certificate; keeping the current one', {
            error: error instanceof Error ? error.message : String(error),
          });
        });
      }, this.#o.credentialRefreshMs ?? 30_000).unref(),
      setInterval(() => {
        this.#leases.prune();
      }, 60_000).unref(),
    );
    this.#log.info('broker listening', {
      attest: `${this.#o.attestAddress.host}:${String(this.#ports.attest)}`,
      broker: `${this.#o.brokerAddress.host}:${String(this.#ports.broker)}`,
    });
    return { attestPort: this.#ports.attest, brokerPort: this.#ports.broker };
  }

  /**
   * Re-reads the serving certificate and CA bundle and, when either changed, uses them for new handshakes. Returns
   * true when something changed.
   */
  async refreshIdentity(): Promise<boolean> {
    const next = await this.#readIdentity();
    const current = this.#identity;
    if (
      current !== undefined &&
      current.cert.equals(next.cert) &&
      current.key.equals(next.key) &&
      current.ca.equals(next.ca)
    )
      return false;
    this.#identity = next;
    this.#listeners?.attest.setIdentity(next);
    this.#listeners?.broker.setIdentity(next);
    this.#log.info('serving certificate or CA bundle changed; new handshakes use it');
    return true;
  }

  /** Stops listening, ends revocation streams, waits up to 5 s for calls in flight, and zeroes cached keys. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const listeners = this.#listeners;
    this.#listeners = undefined;
    // Streams never end on their own: close each with UNAVAILABLE so that clients resume elsewhere at once and
    // the server does not wait out its shutdown grace for them.
    const open = [...this.#streams.values()];
    for (const close of open) close();
    this.#streams.clear();
    // Let the status frames go out before the sessions are closed.
    if (open.length > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    await Promise.all(
      this.#servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              server.forceShutdown();
              resolve();
            }, SHUTDOWN_GRACE_MS);
            server.tryShutdown(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    this.#servers = [];
    if (listeners !== undefined) await Promise.all([listeners.attest.stop(), listeners.broker.stop()]);
    this.#cache.clear();
    this.#log.info('broker stopped');
  }

  async #readIdentity(): Promise<TlsIdentity> {
    const name = this.#o.servingSecretName ?? 'strongroom-broker-tls';
    const { cert, key } = await readServingCertificate(this.#o.core, this.#o.namespace, name).catch(
      (error: unknown) => {
        throw new BrokerServerError((error as Error).message, { cause: error });
      },
    );
    const { bundlePem } = await this.#o.ca.load();
    return { cert, key, ca: Buffer.from(bundlePem) };
  }

  #auditRefused(listener: 'attest' | 'broker', refused: RefusedHandshake): void {
    const reason =
      refused.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'
        ? 'no-client-certificate'
        : refused.code === 'CERT_HAS_EXPIRED' || refused.code.includes('CERTIFICATE_EXPIRED')
          ? 'certificate-expired'
          : /UNABLE_TO_GET_ISSUER|SELF_SIGNED|UNKNOWN_CA|CERT_SIGNATURE_FAILURE|UNABLE_TO_VERIFY/i.test(
                refused.code,
              )
            ? 'untrusted-certificate'
            : 'tls-handshake-failed';
    this.#log.info('refused a TLS connection', { listener, peer: refused.peer, code: refused.code, reason });
    this.#o.audit
      .access({
        operation: 'connect',
        decision: 'deny',
        reason,
        peer: refused.peer,
        verified: false,
        workload: {
          ...(refused.claimed.subjectAltName === undefined
            ? {}
            : { claimedSubjectAltName: refused.claimed.subjectAltName.slice(0, 1024) }),
          ...(refused.claimed.serial === undefined ? {} : { claimedSerial: refused.claimed.serial }),
        },
        artifact: null,
        detail: `${listener} listener: ${refused.code}: ${refused.message}`,
      })
      .catch((error: unknown) => {
        this.#log.error('could not audit a refused TLS connection', {
          error: error instanceof Error ? error.message : String(error),
        });
      });
  }

  /** The peer of an mTLS call, from its connection's verified certificate. */
  #peer(call: ServerSurfaceCall): Peer {
    const address = call.getPeer();
    const now = this.#now();
    const known = this.#connections.get(address);
    if (known === undefined)
      return peerFromCertificate(call.getAuthContext().sslPeerCertificate, this.#o.trustDomain, address, now);
    let cached = this.#identities.get(known);
    if (cached === undefined) {
      try {
        cached = { peer: peerFromCertificate(known.certificate, this.#o.trustDomain, address, now) };
      } catch (error) {
        if (!(error instanceof BrokerError)) throw error;
        cached = { error };
      }
      this.#identities.set(known, cached);
    }
    if (cached.error !== undefined) throw cached.error;
    const peer = cached.peer;
    if (peer === undefined || now.getTime() >= peer.notAfter.getTime())
      throw new BrokerError(
        'UNAUTHENTICATED',
        'certificate-expired',
        'the client certificate has expired; attest again',
      );
    return peer;
  }

  #answerError(
    method: string,
    started: number,
    error: unknown,
  ): grpc.ServiceError | Partial<grpc.StatusObject> {
    if (error instanceof BrokerError) {
      this.#o.observer?.call?.(method, error.status, (performance.now() - started) / 1000);
      const log = error.status === 'UNAVAILABLE' || error.status === 'INTERNAL' ? 'warn' : 'info';
      this.#log[log](`${method} refused`, {
        status: error.status,
        reason: error.reason,
        detail: error.message,
      });
      // The caller gets the public message when there is one: no other grant, service account or namespace.
      return { code: grpc.status[error.status], details: error.callerMessage };
    }
    this.#o.observer?.call?.(method, 'INTERNAL', (performance.now() - started) / 1000);
    this.#log.error(`${method} failed unexpectedly`, {
      error: error instanceof Error ? `${error.name}: ${error.message}` : 'unknown',
    });
    return { code: grpc.status.INTERNAL, details: 'internal error' };
  }

  /** A refusal the pod's owner can act on (not a transient one) becomes an Event on the pod. */
  #tellPod(peer: Peer | undefined, error: unknown, request: ReleaseKeyRequest__Output): void {
    if (peer === undefined || !(error instanceof BrokerError) || this.#o.onRefusedRelease === undefined)
      return;
    if (error.status === 'UNAVAILABLE' || error.status === 'INTERNAL' || error.status === 'UNAUTHENTICATED')
      return;
    const pod = this.#o.view.pod(peer.podUid);
    if (pod === undefined || pod === 'deleted') return;
    const artifact = `${request.artifact?.namespace ?? ''}/${request.artifact?.name ?? ''}@${request.version}`;
    this.#o.onRefusedRelease(
      { namespace: pod.namespace, name: pod.name, uid: pod.uid },
      `Strongroom refused the key of ${artifact} to ${peer.spiffeId}: ${error.status} (${error.reason}): ${error.message}`,
    );
  }

  #attestHandlers(): KeyBrokerHandlers {
    const onlyOnBroker = (method: string) => (_call: unknown, callback: grpc.sendUnaryData<never>) => {
      callback({
        code: grpc.status.UNAUTHENTICATED,
        details: `${method} needs mutual TLS: call the broker port with a certificate from Attest`,
      });
    };
    return {
      Attest: (call, callback) => {
        const started = performance.now();
        const token = call.request.serviceAccountToken;
        const deps = {
          authentication: this.#o.authentication,
          core: this.#o.core,
          ca: this.#o.ca,
          trustDomain: this.#o.trustDomain,
          sidecar: this.#o.sidecar,
          logger: this.#log,
          ...(this.#o.podCertificateValidityMs === undefined
            ? {}
            : { maxValidityMs: this.#o.podCertificateValidityMs }),
        };
        const audited = (
          decision: 'allow' | 'deny',
          reason: string,
          detail: string,
          workload: Record<string, string>,
        ) =>
          this.#o.audit.access({
            operation: 'attest',
            decision,
            reason,
            peer: call.getPeer(),
            verified: decision === 'allow',
            workload,
            artifact: null,
            detail,
            ...(token === '' ? {} : { secrets: { token } }),
          });
        attest({ token, csrPem: call.request.csrPem }, deps)
          .then(async (result) => {
            try {
              await audited('allow', 'attested', `certificate until ${result.notAfter.toISOString()}`, {
                spiffeId: result.spiffeId,
                podUid: result.podUid,
              });
            } catch (error) {
              throw new BrokerError(
                'UNAVAILABLE',
                'audit-unavailable',
                'the audit log is unavailable; retry',
                {
                  cause: error,
                },
              );
            }
            const seconds = Math.floor(result.notAfter.getTime() / 1000);
            this.#o.observer?.call?.('Attest', 'OK', (performance.now() - started) / 1000);
            callback(null, {
              certificateChainPem: result.certificateChainPem,
              caBundlePem: result.caBundlePem,
              notAfter: { seconds: String(seconds), nanos: 0 },
              spiffeId: result.spiffeId,
              podUid: result.podUid,
            });
          })
          .catch(async (error: unknown) => {
            let refusal = error;
            if (error instanceof AttestError) {
              refusal = new BrokerError(error.status, attestReason(error), error.message, {
                cause: error,
                ...(error.publicMessage === undefined ? {} : { publicMessage: error.publicMessage }),
              });
              try {
                await audited('deny', attestReason(error), error.message, {});
              } catch (auditError) {
                refusal = new BrokerError(
                  'UNAVAILABLE',
                  'audit-unavailable',
                  'the audit log is unavailable; retry',
                  {
                    cause: auditError,
                  },
                );
              }
            }
            callback(this.#answerError('Attest', started, refusal));
          });
      },
      ReleaseKey: onlyOnBroker('ReleaseKey'),
      PublishVersion: onlyOnBroker('PublishVersion'),
      WatchRevocations: (call) => {
        call.emit('error', {
          code: grpc.status.UNAUTHENTICATED,
          details: 'WatchRevocations needs mutual TLS: call the broker port with a certificate from Attest',
        });
      },
    };
  }

  #brokerHandlers(): KeyBrokerHandlers {
    const deps = {
      view: this.#o.view,
      policy: this.#o.policy,
      now: this.#now,
    };
    return {
      Attest: (_call, callback) => {
        callback({
          code: grpc.status.UNAUTHENTICATED,
          details: 'Attest is served on the attest port (server-authenticated TLS)',
        });
      },
      ReleaseKey: (call: grpc.ServerUnaryCall<ReleaseKeyRequest__Output, ReleaseKeyResponse>, callback) => {
        const started = performance.now();
        let caller: Peer | undefined;
        const run = async (): Promise<ReleaseKeyResponse> => {
          const peer = await this.#peerOrAudit(call, 'release-key');
          caller = peer;
          const r = call.request;
          const result = await releaseKey(
            peer,
            {
              artifactNamespace: r.artifact?.namespace ?? '',
              artifactName: r.artifact?.name ?? '',
              version: r.version,
              fileDigest: r.auditContext?.fileDigest ?? '',
            },
            { ...deps, kms: this.#o.kms, audit: this.#o.audit, cache: this.#cache, leases: this.#leases },
          );
          const ms = result.leaseExpiresAt.getTime();
          return {
            dek: result.dek,
            version: result.version,
            leaseExpiresAt: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
            grant: result.grant,
            auditIndex: String(result.auditIndex),
            digest: result.digest,
          };
        };
        run().then(
          (response) => {
            this.#o.observer?.call?.('ReleaseKey', 'OK', (performance.now() - started) / 1000);
            callback(null, response);
            // The serializer has copied the key into the HTTP/2 frame; drop ours.
            (response.dek as Buffer).fill(0);
          },
          (error: unknown) => {
            callback(this.#answerError('ReleaseKey', started, error));
            this.#tellPod(caller, error, call.request);
          },
        );
      },
      PublishVersion: (
        call: grpc.ServerUnaryCall<PublishVersionRequest__Output, PublishVersionResponse>,
        callback,
      ) => {
        const started = performance.now();
        const run = async (): Promise<PublishVersionResponse> => {
          const peer = await this.#peerOrAudit(call, 'publish-version');
          const result = await publishVersion(peer, call.request, {
            ...deps,
            custom: this.#o.custom,
            keyring: this.#o.keyring,
            scopes: this.#o.scopes,
            audit: this.#o.audit,
          });
          const v = result.version;
          const ms = new Date(v.publishedAt).getTime();
          return {
            version: {
              name: v.name,
              digest: v.digest,
              size: String(v.size),
              keyFingerprint: v.encryption.keyFingerprint,
              publisher: v.publisher,
              publishedAt: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
            },
            resourceVersion: result.resourceVersion,
          };
        };
        run().then(
          (response) => {
            this.#o.observer?.call?.('PublishVersion', 'OK', (performance.now() - started) / 1000);
            callback(null, response);
          },
          (error: unknown) => {
            callback(this.#answerError('PublishVersion', started, error));
          },
        );
      },
      WatchRevocations: (
        call: grpc.ServerWritableStream<WatchRevocationsRequest__Output, WatchRevocationsResponse>,
      ) => {
        const started = performance.now();
        const run = async (): Promise<void> => {
          const peer = await this.#peerOrAudit(call, 'watch-revocations');
          try {
            await podOf(peer, this.#o.view);
          } catch (error) {
            if (error instanceof BrokerError)
              await this.#auditWatch(peer, 'deny', error.reason, error.message);
            throw error;
          }
          if (this.#stopped)
            throw new BrokerError('UNAVAILABLE', 'shutting-down', 'the broker is shutting down');
          await this.#auditWatch(peer, 'allow', 'stream-opened', `epoch ${this.#feed.epoch}`);
          const end = this.#feed.open(
            peer,
            { afterSeq: call.request.afterSeq ?? null, epoch: call.request.epoch },
            { write: (message) => call.write(message) },
          );
          const finish = (): void => {
            end();
            if (this.#streams.delete(finish)) this.#o.observer?.streams?.(-1);
          };
          this.#streams.set(finish, () => {
            finish();
            call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the broker is shutting down' });
          });
          this.#o.observer?.streams?.(1);
          call.on('cancelled', finish);
          call.on('close', finish);
          call.on('error', finish);
        };
        run().catch((error: unknown) => {
          const answer = this.#answerError('WatchRevocations', started, error);
          call.emit('error', answer);
        });
      },
    };
  }

  async #auditWatch(peer: Peer, decision: 'allow' | 'deny', reason: string, detail: string): Promise<void> {
    try {
      await this.#o.audit.access({
        operation: 'watch-revocations',
        decision,
        reason,
        peer: peer.address,
        verified: true,
        workload: workloadOf(peer),
        artifact: null,
        detail,
      });
    } catch (error) {
      throw new BrokerError('UNAVAILABLE', 'audit-unavailable', 'the audit log is unavailable; retry', {
        cause: error,
      });
    }
  }

  /** The verified peer; a refusal (for example the certificate's pod is gone) is audited before it is thrown. */
  async #peerOrAudit(
    call: ServerSurfaceCall,
    operation: 'release-key' | 'publish-version' | 'watch-revocations',
  ): Promise<Peer> {
    try {
      return this.#peer(call);
    } catch (error) {
      if (!(error instanceof BrokerError)) throw error;
      try {
        await this.#o.audit.access({
          operation: operation === 'release-key' ? 'connect' : operation,
          decision: 'deny',
          reason: error.reason,
          peer: call.getPeer(),
          verified: false,
          workload: {},
          artifact: null,
          detail: `${operation}: ${error.message}`,
        });
      } catch (auditError) {
        throw new BrokerError('UNAVAILABLE', 'audit-unavailable', 'the audit log is unavailable; retry', {
          cause: auditError,
        });
      }
      throw error;
    }
  }
}

function attestReason(error: AttestError): string {
  if (error.reason !== undefined) return error.reason;
  const statusReason: Record<string, string> = {
    INVALID_ARGUMENT: 'invalid-csr',
    UNAUTHENTICATED: 'token-rejected',
    PERMISSION_DENIED: 'pod-mismatch',
    UNAVAILABLE: 'api-unavailable',
    INTERNAL: 'internal',
  };
  return statusReason[error.status] ?? 'refused';
}
