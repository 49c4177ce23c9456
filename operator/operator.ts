/**
 * The composition root: builds every part of the operator from its configuration and hands them to the manager
 * (manager/manager.ts) in start order. Only the work queues (the controllers) and the audit of quarantine changes
 * need the leader: they run only while this replica holds the Lease, one leadership term at a time: they start when
 * it acquires the Lease (with a full resync) and stop when it loses it, and the replica campaigns again. Everything else runs on every replica: the
 * informers, the injection webhook, and the key broker, which serves Attest, ReleaseKey and WatchRevocations from
 * this replica's own caches and audits into this replica's own log (PublishVersion only while leading); every
 * replica also derives revocations from its informers (revocation/derive.ts), and runs the anomaly detector over its
 * own audit log, quarantining identities through ConfigMap strongroom-quarantines (detection/runnable.ts; the leader
 * audits lifts, quarantine/auditor.ts). Start order: health/metrics server → KMS → informers → webhook, key broker
 * and timers → leader election → (when leading) the work queues. Shutdown
 * order, each step waiting for the previous (the manager stops the parts in reverse):
 *   1. readiness turns false (load balancers stop sending traffic), the injection webhook stops listening;
 *   2. the key broker stops (connections closed, cached DEKs zeroed, audit log closed), then the work queues stop
 *      taking keys and wait for in-flight reconciles;
 *   3. the Lease is released, so another replica takes over at once instead of after the lease duration;
 *   4. the informers stop;
 *   5. pending Events are flushed, the KMS is closed;
 *   6. the health server closes.
 */
import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1ConfigMap,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Pod,
  type V1Secret,
  type V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import type winston from 'winston';
import {
  ACCESS_GRANT_PLURAL,
  GROUP,
  MODEL_ARTIFACT_PLURAL,
  VERSION,
  type AccessGrant,
  type ModelArtifact,
} from '../core/api/index.ts';
import { expectedSidecar } from '../core/injection/verify.ts';
import { CHECKPOINT_SIGNING_KEY_ID } from '../core/kms/signing.ts';
import { parseKekRotationOverrides } from '../core/policy/rotation.ts';
import { trackTrustedCa } from './broker/ca-trust.ts';
import { BrokerRunnable } from './broker/runnable.ts';
import { InformerBrokerView, slimPod } from './broker/view.ts';
import type { OperatorConfig } from './config.ts';
import { AccessGrantController } from './controllers/accessgrant.ts';
import { EnvironmentAuditor } from './controllers/environment-audit.ts';
import { GovernanceAuditTrail } from './controllers/governance-audit.ts';
import { KekRotationController } from './controllers/kek-rotation.ts';
import { ModelArtifactController } from './controllers/modelartifact.ts';
import { PkiController } from './controllers/pki.ts';
import { GovernanceTable } from './governance/table.ts';
import { AnomalyDetection } from './detection/runnable.ts';
import { DETECTION_CONFIGMAP, DetectionSettings } from './detection/settings.ts';
import { DetectionTrail } from './detection/trail.ts';
import { QuarantineAuditor } from './quarantine/auditor.ts';
import { QUARANTINES_CONFIGMAP, QuarantineStore } from './quarantine/store.ts';
import { ArtifactKeyring } from './keys/artifact-keys.ts';
import { KEYSET_SECRET, KmsRunnable, openKms } from './keys/open-kms.ts';
import { EventRecorder } from './kube/events.ts';
import type { ResourceRef } from './kube/informer.ts';
import { InformerFactory } from './kube/informer-factory.ts';
import { PooledKubeConfig } from './kube/kubeconfig.ts';
import { LeaderElector } from './kube/leader.ts';
import { componentLogger } from './log.ts';
import { ControllerRunnable, Signal, type Controller } from './manager/controller.ts';
import { Manager, type ElectorCallbacks } from './manager/manager.ts';
import { Periodic, runnable, RunnableGroup } from './manager/runnable.ts';
import { BackgroundServer } from './manager/server.ts';
import { domainGauges } from './observability/domain-gauges.ts';
import { HealthRunnable, readinessCheck } from './observability/health.ts';
import { OperatorMetrics } from './observability/metrics.ts';
import { InternalCa } from './pki/internal-ca.ts';
import { CA_BUNDLE_SELECTOR } from './pki/webhook-bundles.ts';
import { RevocationBus } from './revocation/bus.ts';
import { RevocationDeriver } from './revocation/derive.ts';
import { SidecarInjector } from './webhook/injector.ts';

export { KEYSET_SECRET } from './keys/open-kms.ts';

const COMPONENT = 'strongroom-operator';

export class Operator {
  readonly #config: OperatorConfig;
  readonly #root: winston.Logger;
  readonly #log: winston.Logger;
  readonly metrics = new OperatorMetrics();
  readonly bus = new RevocationBus();
  readonly #manager: Manager;
  #kc: PooledKubeConfig | undefined;
  /** The identity of the leader last observed (named in a follower's refusal of PublishVersion). */
  #leader: string | undefined;
  /** Called when the process must stop: a part failed for good (main exits non-zero). */
  onFatal: (reason: string) => void = () => undefined;

  constructor(config: OperatorConfig, root: winston.Logger) {
    this.#config = config;
    this.#root = root;
    this.#log = componentLogger(root, 'operator');
    this.#manager = new Manager({
      logger: this.#log,
      identity: config.identity,
      onFatal: (reason) => {
        this.onFatal(reason);
      },
      onLeading: (leading) => {
        this.metrics.leader.set(leading ? 1 : 0);
      },
      ...(config.leaderElection.enabled
        ? {
            elector: (callbacks: ElectorCallbacks) => this.#elector(callbacks),
          }
        : {}),
    });
  }

  /** The elector of one campaign for the Lease: the manager makes a new one each time it campaigns again. */
  #elector(callbacks: ElectorCallbacks): LeaderElector {
    const { leaderElection: election, namespace, identity } = this.#config;
    if (this.#kc === undefined) throw new Error('the operator campaigns only once started');
    return new LeaderElector({
      kubeConfig: this.#kc,
      namespace,
      name: election.leaseName,
      identity,
      leaseDurationMs: election.leaseDurationMs,
      renewDeadlineMs: election.renewDeadlineMs,
      retryPeriodMs: election.retryPeriodMs,
      logger: componentLogger(this.#root, 'leader-election'),
      ...callbacks,
      onNewLeader: (leader) => {
        this.#leader = leader;
        this.#log.info('leader observed', { leader });
      },
    });
  }

  /** Starts everything; resolves once the health server listens and the informers have synced. */
  async start(): Promise<{ healthPort: number }> {
    const config = this.#config;
    const log = (component: string, fields?: Record<string, unknown>): winston.Logger =>
      componentLogger(this.#root, component, fields);
    const kc = new PooledKubeConfig();
    this.#kc = kc;
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromCluster();
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const events = new EventRecorder({
      core,
      component: COMPONENT,
      instance: config.identity,
      logger: log('events'),
    });

    // The classification table (ConfigMap --governance-config): read once now, so an invalid one stops the start;
    // then kept current by its informer below. Controllers and the broker read it at every decision.
    const table = new GovernanceTable({
      namespace: config.namespace,
      name: config.governanceConfig,
      logger: log('governance-config'),
      registry: this.metrics.registry,
      rotationOverrides: parseKekRotationOverrides(config.rotation),
      warn: (configMap, reason, message) => {
        events.record(
          { apiVersion: 'v1', kind: 'ConfigMap', metadata: configMap.metadata ?? {} },
          'Warning',
          reason,
          message,
        );
      },
    });
    await table.load(core);

    // The caches, on every replica: one informer per resource and selector.
    const informers = new InformerFactory({
      kubeConfig: kc,
      logger: this.#root,
      observer: this.metrics.watchObserver(),
      relistIntervalMs: config.resyncPeriodMs,
      stallTimeoutMs: config.watchStallTimeoutMs,
    });
    const v1 = (
      plural: string,
      only: Omit<ResourceRef, 'group' | 'version' | 'plural'> = {},
    ): ResourceRef => ({
      group: '',
      version: 'v1',
      plural,
      ...only,
    });
    const strongroom = (plural: string): ResourceRef => ({ group: GROUP, version: VERSION, plural });
    const managed = (plural: string): ResourceRef => ({
      group: 'admissionregistration.k8s.io',
      version: 'v1',
      plural,
      labelSelector: CA_BUNDLE_SELECTOR,
    });
    const own = { namespace: config.namespace };
    const artifacts = informers.for<ModelArtifact>(strongroom(MODEL_ARTIFACT_PLURAL));
    const grants = informers.for<AccessGrant>(strongroom(ACCESS_GRANT_PLURAL));
    const namespaces = informers.for<V1Namespace>(v1('namespaces'));
    const keyset = informers.for<V1Secret>(
      v1('secrets', { ...own, fieldSelector: `metadata.name=${KEYSET_SECRET}` }),
    );
    const governanceConfig = informers.for<V1ConfigMap>(
      v1('configmaps', { ...own, fieldSelector: `metadata.name=${config.governanceConfig}` }),
    );
    const quarantinesConfig = informers.for<V1ConfigMap>(
      v1('configmaps', { ...own, fieldSelector: `metadata.name=${QUARANTINES_CONFIGMAP}` }),
    );
    const detectionConfig = informers.for<V1ConfigMap>(
      v1('configmaps', { ...own, fieldSelector: `metadata.name=${DETECTION_CONFIGMAP}` }),
    );
    const webhookConfigurations = [
      informers.for<V1MutatingWebhookConfiguration>(managed('mutatingwebhookconfigurations')),
      informers.for<V1ValidatingWebhookConfiguration>(managed('validatingwebhookconfigurations')),
    ];
    const pods = informers.for<V1Pod>(v1('pods'), { transform: slimPod });
    const recipientKeys = informers.for<V1Secret>(
      v1('secrets', { ...own, labelSelector: 'strongroom.dev/role=recipient-key' }),
    );
    // A valid change of the classification table re-evaluates everything (the controllers watch tableChanged); an
    // invalid one changes nothing.
    const tableChanged = new Signal();
    governanceConfig.onEvent((event) => {
      if (table.update(event.type === 'deleted' ? undefined : event.object)) tableChanged.emit();
    });

    const kms = new KmsRunnable(config.kms.provider, () => openKms(config, core, keyset));
    const keyring = new ArtifactKeyring({
      kms: kms.provider,
      core,
      namespace: config.namespace,
      logger: log('keys'),
      cachedSecret: (name) =>
        recipientKeys.hasSynced() ? (recipientKeys.get(`${config.namespace}/${name}`) ?? null) : undefined,
    });
    /** The controllers' audit sink: attached to the broker's audit log while it is open (docs/audit.md). */
    const governance = new GovernanceAuditTrail();

    // Identity quarantine and anomaly detection (docs/detection.md): the quarantined identities from their
    // ConfigMap's informer (read by the grant controller and the broker); the detector on every replica, fed by this
    // replica's audit log; lifts audited by the leader.
    const quarantines = new QuarantineStore({
      core,
      namespace: config.namespace,
      informer: quarantinesConfig,
    });
    const detectionTrail = new DetectionTrail();
    const quarantineAuditor = new QuarantineAuditor({
      store: quarantines,
      informer: quarantinesConfig,
      audit: detectionTrail,
      metrics: this.metrics,
      logger: log('quarantine'),
    });
    const detection = new AnomalyDetection({
      trail: detectionTrail,
      audit: detectionTrail,
      settings: new DetectionSettings({
        namespace: config.namespace,
        logger: log('detection-config'),
        warn: (configMap, reason, message) => {
          events.record(
            { apiVersion: 'v1', kind: 'ConfigMap', metadata: configMap.metadata ?? {} },
            'Warning',
            reason,
            message,
          );
        },
      }),
      config: detectionConfig,
      quarantines,
      events,
      metrics: this.metrics,
      logger: log('detection'),
    });

    // Revocations on every replica: derived from this replica's informers, and the ledger through which the leader's
    // controllers publish too, so that each revocation goes out once (revocation/derive.ts).
    const revocations = new RevocationDeriver({
      bus: this.bus,
      grants,
      artifacts,
      logger: log('revocations'),
      onDerived: (reason) => {
        this.metrics.revocations.inc({ reason });
      },
    });

    // The controllers, each with its own work queue (alive for one leadership term) and its own watches.
    const common = { custom, events, bus: revocations, metrics: this.metrics };
    const artifactController = new ModelArtifactController({
      ...common,
      kms: kms.provider,
      keyring,
      artifacts,
      logger: log('modelartifact-controller'),
      rotation: table.rotation,
      retention: (c) => table.current.classifications[c].kekVersionRetentionMs,
      scopes: table.kekScopes,
      audit: governance,
    });
    const grantController = new AccessGrantController({
      ...common,
      grants,
      artifacts,
      namespaces,
      logger: log('accessgrant-controller'),
      policy: () => table.current,
      audit: governance,
      quarantines: () => quarantines.current(),
    });
    const rotationController = new KekRotationController({
      kms: kms.provider,
      artifacts,
      recipientKeys,
      rotation: table.rotation,
      retention: (c) => table.current.classifications[c].kekVersionRetentionMs,
      scopes: table.kekScopes,
      metrics: this.metrics,
      logger: log('kek-rotation'),
      ensureKek: (keyId) => keyring.ensureKek(keyId),
      destroyRetiredVersions: (keyId, options) => keyring.destroyRetiredVersions(keyId, options),
      enqueueArtifact: (key) => {
        artifactQueue.enqueue(key);
      },
    });
    const pki = new PkiController({
      kubeConfig: kc,
      namespace: config.namespace,
      metrics: this.metrics,
      logger: log('pki'),
    });
    const environmentAuditor = new EnvironmentAuditor({
      core,
      namespace: config.namespace,
      namespaces,
      audit: governance,
      logger: log('environment-audit'),
    });
    const queueObserver = this.metrics.queueObserver();
    const queue = (controller: Controller): ControllerRunnable =>
      new ControllerRunnable(controller, {
        logger: log('queue', { queue: controller.name }),
        observer: queueObserver,
      });
    const artifactQueue = queue(
      artifactController.controller({ workers: config.workers, keyset, recipientKeys, tableChanged }),
    );
    const controllers = [
      artifactQueue,
      queue(
        grantController.controller({
          workers: config.workers,
          tableChanged,
          quarantinesChanged: quarantinesConfig,
        }),
      ),
      queue(rotationController.controller({ tableChanged })),
      queue(pki.controller({ webhookConfigurations })),
      queue(environmentAuditor.controller()),
    ];

    // Only pods as injection makes them with the configured sidecar get certificates and keys (docs/broker.md).
    // The CA bundle a sidecar trusts must be the operator's own (it would hand its token to any server its bundle
    // trusts): the set is refreshed whenever the broker reads the CA (at start and every credential refresh).
    const brokerLog = log('broker');
    const { ca, trusted } = trackTrustedCa(
      new InternalCa(kc, { namespace: config.namespace, logger: brokerLog }),
    );
    const sidecar = expectedSidecar(config.injection, trusted);
    const broker = new BrokerRunnable({
      server: {
        attestAddress: config.broker.attestAddress,
        brokerAddress: config.broker.address,
        namespace: config.namespace,
        core,
        authentication: kc.makeApiClient(AuthenticationV1Api),
        custom,
        ca,
        trustDomain: config.broker.trustDomain,
        sidecar,
        logger: brokerLog,
        view: new InformerBrokerView({ artifacts, grants, namespaces, pods, sidecar }),
        kms: kms.provider,
        keyring,
        policy: () => table.current,
        quarantine: (identity) => quarantines.lookup(identity),
        bus: this.bus,
        dekCacheTtlMs: config.broker.dekCacheTtlMs,
        maxConnectionAgeMs: config.broker.maxConnectionAgeMs,
        credentialRefreshMs: config.broker.credentialRefreshMs,
        podCertificateValidityMs: config.broker.podCertificateValidityMs,
        leadership: () => ({ leading: this.#manager.leading(), leader: this.#leader }),
      },
      metrics: this.metrics,
      events,
      clusterName: config.broker.clusterName,
      auditLogDir: config.auditLogDir,
      identity: config.identity,
      governance,
      // --audit-signer kms: checkpoints are signed by an Ed25519 key in the KMS (docs/kms.md#checkpoint-signing-keys).
      ...(config.auditSigner === 'kms'
        ? { auditSigningKey: () => kms.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID) }
        : {}),
      publishCheckpoints: config.broker.auditCheckpointConfigMap,
      tap: detectionTrail,
    });

    // The webhook runs on every replica: its decisions read only the caches. It waits for the serving certificate,
    // which the leader issues, so it is started without being awaited; readiness reports it.
    const webhook = new BackgroundServer('webhook', 'the injection webhook', () => {
      const webhookLog = log('webhook');
      return new SidecarInjector({
        config: config.injection,
        namespace: config.namespace,
        core,
        artifacts,
        grants,
        ca: new InternalCa(kc, { namespace: config.namespace, logger: webhookLog }),
        credentialRefreshMs: config.broker.credentialRefreshMs,
        logLevel: config.logLevel,
        logger: webhookLog,
        observe: (outcome, seconds) => {
          this.metrics.webhookAdmissions.observe({ outcome }, seconds);
        },
      });
    });

    const health = new HealthRunnable({
      host: config.healthAddress.host,
      port: config.healthAddress.port,
      registry: this.metrics.registry,
      logger: log('health'),
      auditCheckpoint: () => broker.latestCheckpoint(),
      readiness: () => [
        ...informers
          .all()
          .map((i) =>
            readinessCheck(`watch:${i.resourceName}`, () => i.healthy(), 'not synced or disconnected'),
          ),
        readinessCheck('webhook', () => webhook.ready(), 'the injection webhook is not listening yet'),
        readinessCheck('broker', () => broker.ready(), 'the key broker is not listening yet'),
        { name: 'leader-election', check: () => ({ ok: this.#manager.electing() }) },
      ],
    });

    // The parts, in start order (leader-only ones wait for the Lease); shutdown runs this list backwards.
    this.#manager.add(
      runnable('connections', { stop: () => kc.closePools() }),
      health,
      kms,
      runnable('events', { stop: () => events.flush() }),
      informers,
      runnable('governance-table', {
        // A change between the start-up GET and the first list (a deletion above all) emits no event: catch up once.
        start: () => {
          table.update(governanceConfig.get(`${config.namespace}/${config.governanceConfig}`));
        },
      }),
      new RunnableGroup('queues', controllers), // leader only
      quarantineAuditor, // leader only
      broker, // every replica (stops before the queues)
      // Every replica. Started after the broker (which seeds it, then feeds it; alerts before start wait for it) so
      // that it stops first: it drains its last writes into the still-open audit log (docs/detection.md).
      detection,
      webhook,
      new Periodic('resync', config.resyncPeriodMs, () => {
        for (const c of controllers) c.resync();
      }),
      domainGauges(this.metrics, { artifacts, grants }),
    );
    await this.#manager.start();
    return { healthPort: health.port };
  }

  /** Graceful shutdown in the order documented at the top of this file. Safe to call more than once. */
  stop(): Promise<void> {
    return this.#manager.stop();
  }
}
