/**
 * The key broker's gRPC server (docs/broker.md), assembled from its parts. Two TLS 1.3 listeners (listeners.ts) feed
 * one grpc-js server each, by connection injection:
 *   - attest: server-authenticated TLS, serves only `Attest` (attest-handler.ts; a pod has no client certificate
 *     yet);
 *   - broker: mutual TLS, a client certificate chaining to the operator CA bundle is required at the handshake;
 *     serves `ReleaseKey`, `WatchRevocations` and `PublishVersion` (mtls-handlers.ts) for the peer of each
 *     connection's certificate (connection-peers.ts). Every replica serves; PublishVersion only while it leads.
 * The serving certificate (Secret `strongroom-broker-tls`) and the CA bundle (Secret `strongroom-ca`) are re-read
 * every `credentialRefreshMs` and swapped into both listeners without a restart. Connections live at most
 * `maxConnectionAgeMs` (default 10 minutes), so certificate expiry and CA rollover take effect. Every decision,
 * including refused handshakes (tls-refusal.ts), is audited before the answer.
 */
import * as grpc from '@grpc/grpc-js';
import { type AuthenticationV1Api, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import type winston from 'winston';
import type { ExpectedSidecar } from '../../core/injection/verify.ts';
import type { KmsProvider } from '../../core/kms/provider.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import { loadKeyBroker } from '../../proto/keybroker.ts';
import type { ArtifactKeyring } from '../keys/artifact-keys.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import type { RevocationBus } from '../revocation/bus.ts';
import { attestPortHandlers } from './attest-handler.ts';
import type { BrokerAuditTrail } from './audit-trail.ts';
import { CallReporter, type BrokerObserver } from './call-report.ts';
import { ConnectionPeers } from './connection-peers.ts';
import { DekCache } from './dek-cache.ts';
import { BrokerServerError } from './errors.ts';
import { checkTrustDomain } from './identity.ts';
import { BrokerListeners } from './listeners.ts';
import { MtlsService, type Leadership } from './mtls-handlers.ts';
import { accessEndedAt, LeaseTracker, RevocationFeed } from './revocation-feed.ts';
import { auditRefusedHandshake } from './tls-refusal.ts';
import type { ReleaseDeps } from './release.ts';
import type { BrokerView } from './view.ts';

export type { BrokerObserver } from './call-report.ts';
export { BrokerServerError } from './errors.ts';
export type { Leadership } from './mtls-handlers.ts';

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
  readonly keyring: Pick<ArtifactKeyring, 'recipientKey' | 'openSealed'>;
  /** The classification table in force, read at each decision (it can change while the broker runs). */
  readonly policy: () => ClassificationTable;
  /** Whether an identity is quarantined (ReleaseKey refuses it, `quarantined`); absent: none. */
  readonly quarantine?: ReleaseDeps['quarantine'];
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
   * Whether this replica leads now, and which replica does when known: PublishVersion is served only by the leader
   * (a follower answers UNAVAILABLE `not-leader`, naming the leader). Absent: this replica always serves it.
   */
  readonly leadership?: () => Leadership;
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

const SHUTDOWN_GRACE_MS = 5000;
const CALL_GRACE_MS = 30_000;

/** The key broker. */
export class BrokerServer {
  readonly #o: BrokerServerOptions;
  readonly #log: winston.Logger;
  readonly #cache: DekCache;
  readonly #leases = new LeaseTracker();
  readonly #feed: RevocationFeed;
  readonly #peers: ConnectionPeers;
  readonly #report: CallReporter;
  readonly #mtls: MtlsService;
  readonly #listeners: BrokerListeners;
  #servers: grpc.Server[] = [];
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;

  constructor(options: BrokerServerOptions) {
    checkTrustDomain(options.trustDomain);
    this.#o = options;
    this.#log = options.logger.child({ component: 'broker' });
    const now = options.now ?? (() => new Date());
    this.#cache = new DekCache({ ttlMs: options.dekCacheTtlMs ?? 5000 });
    this.#feed = new RevocationFeed({
      bus: options.bus,
      leases: this.#leases,
      ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }),
      endedAt: (revocation) => accessEndedAt(revocation, (namespace) => options.view.grants(namespace)),
    });
    this.#peers = new ConnectionPeers(options.trustDomain, now);
    this.#report = new CallReporter(this.#log, options.observer);
    this.#mtls = new MtlsService({
      view: options.view,
      policy: options.policy,
      quarantine: options.quarantine,
      now,
      kms: options.kms,
      custom: options.custom,
      keyring: options.keyring,
      audit: options.audit,
      cache: this.#cache,
      leases: this.#leases,
      feed: this.#feed,
      peers: this.#peers,
      report: this.#report,
      onRefusedRelease: options.onRefusedRelease,
      leadership: options.leadership ?? (() => ({ leading: true })),
    });
    this.#listeners = new BrokerListeners({
      attestAddress: options.attestAddress,
      brokerAddress: options.brokerAddress,
      namespace: options.namespace,
      servingSecretName: options.servingSecretName,
      core: options.core,
      ca: options.ca,
      credentialRefreshMs: options.credentialRefreshMs,
      logger: this.#log,
      onRefused: (listener, refused) => {
        auditRefusedHandshake({ audit: options.audit, log: this.#log }, listener, refused);
      },
    });
  }

  /** The epoch of this process's revocation sequence numbers. */
  get epoch(): string {
    return this.#feed.epoch;
  }

  /** True while both listeners are up and the caches are synced. */
  ready(): boolean {
    return !this.#stopped && this.#listeners.listening && this.#o.view.ready();
  }

  /**
   * Waits for the serving certificate (retrying every 500 ms until `stop()`), then listens on both addresses.
   * Throws BrokerServerError when an address cannot be bound, or when stopped before starting.
   */
  async start(): Promise<{ attestPort: number; brokerPort: number }> {
    if (this.#listeners.listening) throw new BrokerServerError('the broker server is already started');
    await this.#listeners.waitForCredentials();
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
    attestServer.addService(
      broker.service,
      attestPortHandlers({
        attest: {
          authentication: this.#o.authentication,
          core: this.#o.core,
          ca: this.#o.ca,
          trustDomain: this.#o.trustDomain,
          sidecar: this.#o.sidecar,
          logger: this.#log,
          ...(this.#o.podCertificateValidityMs === undefined
            ? {}
            : { maxValidityMs: this.#o.podCertificateValidityMs }),
        },
        audit: this.#o.audit,
        report: this.#report,
      }),
    );
    const brokerServer = new grpc.Server(serverOptions);
    brokerServer.addService(broker.service, this.#mtls.handlers());
    this.#servers = [attestServer, brokerServer];
    const insecure = grpc.ServerCredentials.createInsecure();
    const attestInjector = attestServer.createConnectionInjector(insecure);
    const brokerInjector = brokerServer.createConnectionInjector(insecure);
    const ports = await this.#listeners.listen({
      attest: (socket) => {
        attestInjector.injectConnection(socket);
      },
      broker: (socket) => {
        this.#peers.track(socket);
        brokerInjector.injectConnection(socket);
      },
    });
    this.#timers.push(
      setInterval(() => {
        this.#leases.prune();
      }, 60_000).unref(),
    );
    this.#log.info('broker listening', {
      attest: `${this.#o.attestAddress.host}:${String(ports.attest)}`,
      broker: `${this.#o.brokerAddress.host}:${String(ports.broker)}`,
    });
    return { attestPort: ports.attest, brokerPort: ports.broker };
  }

  /**
   * Re-reads the serving certificate and CA bundle and, when either changed, uses them for new handshakes. Returns
   * true when something changed.
   */
  async refreshIdentity(): Promise<boolean> {
    return this.#listeners.refreshIdentity();
  }

  /** Stops listening, ends revocation streams, waits up to 5 s for calls in flight, and zeroes cached keys. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    // Streams never end on their own: close each with UNAVAILABLE so that clients resume elsewhere at once and
    // the server does not wait out its shutdown grace for them.
    const open = this.#mtls.closeStreams();
    // Let the status frames go out before the sessions are closed.
    if (open > 0) await new Promise((resolve) => setTimeout(resolve, 100));
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
    await this.#listeners.stop();
    this.#cache.clear();
    this.#log.info('broker stopped');
  }
}
