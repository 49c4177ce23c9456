/**
 * The composition root: builds every part of the operator from its configuration, starts them in order and stops
 * them in the reverse order. Start order: metrics/health server → informers (on every replica, so a follower's cache
 * is warm) → leader election → (when leading) the work queues. Shutdown order, each step waiting for the previous:
 *   1. readiness turns false (load balancers stop sending traffic);
 *   2. the key broker stops (connections closed, cached DEKs zeroed, audit log closed), then the work queues stop
 *      taking keys and wait for in-flight reconciles;
 *   3. the Lease is released, so another replica takes over at once instead of after the lease duration;
 *   4. the informers stop;
 *   5. pending Events are flushed, the KMS is closed;
 *   6. the health server closes.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1ConfigMap,
  type V1Namespace,
  type V1Pod,
  type V1Secret,
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
import { AuditLog, originFor } from '../core/audit/index.ts';
import { LocalKmsProvider } from '../core/kms/local.ts';
import type { KmsProvider } from '../core/kms/provider.ts';
import { expectedSidecar } from '../core/injection/verify.ts';
import { trackTrustedCa } from './broker/ca-trust.ts';
import { parseKekRotationOverrides } from '../core/policy/rotation.ts';
import { ensureAuditKeys } from './broker/audit-keys.ts';
import { BrokerAuditTrail } from './broker/audit-trail.ts';
import { BrokerServer } from './broker/server.ts';
import { InformerBrokerView, slimPod } from './broker/view.ts';
import type { OperatorConfig } from './config.ts';
import { AccessGrantController } from './controllers/accessgrant.ts';
import { EnvironmentAuditor } from './controllers/environment-audit.ts';
import { GovernanceAuditTrail } from './controllers/governance-audit.ts';
import { KekRotationController } from './controllers/kek-rotation.ts';
import { ModelArtifactController } from './controllers/modelartifact.ts';
import { PkiController } from './controllers/pki.ts';
import { GovernanceTable } from './governance/table.ts';
import { ArtifactKeyring } from './keys/artifact-keys.ts';
import { SecretKeySetStore } from './keys/secret-keyset-store.ts';
import { EventRecorder } from './kube/events.ts';
import { Informer, objectKey } from './kube/informer.ts';
import { PooledKubeConfig } from './kube/kubeconfig.ts';
import { LeaderElector } from './kube/leader.ts';
import { WorkQueue, type WorkQueueOptions } from './kube/workqueue.ts';
import { componentLogger } from './log.ts';
import { HealthServer } from './observability/health-server.ts';
import { OperatorMetrics } from './observability/metrics.ts';
import { InternalCa } from './pki/internal-ca.ts';
import { SidecarInjector } from './webhook/injector.ts';
import { RevocationBus } from './revocation/bus.ts';

/** The work queues of one leadership term. */
interface Term {
  readonly artifacts: WorkQueue;
  readonly grants: WorkQueue;
  readonly singletons: WorkQueue;
}

export const KEYSET_SECRET = 'strongroom-kms-local';
const COMPONENT = 'strongroom-operator';

async function openKms(
  config: OperatorConfig,
  core: CoreV1Api,
  keyset: Informer<V1Secret>,
): Promise<KmsProvider> {
  const kms = config.kms;
  switch (kms.provider) {
    case 'local':
      return new LocalKmsProvider(
        new SecretKeySetStore({
          core,
          namespace: config.namespace,
          name: KEYSET_SECRET,
          cached: () => (keyset.hasSynced() ? keyset.get(`${config.namespace}/${KEYSET_SECRET}`) : undefined),
        }),
      );
    case 'gcp': {
      // Loaded only when chosen: the Cloud KMS client and its protos cost ~25 MiB of memory.
      const { GcpKmsProvider } = await import('../core/kms/gcp.ts');
      return new GcpKmsProvider({
        keyRing: kms.keyRing,
        ...(kms.endpoint ? { clientOptions: { apiEndpoint: kms.endpoint } } : {}),
      });
    }
    case 'pkcs11': {
      const { Pkcs11KmsProvider } = await import('../core/kms/pkcs11.ts');
      return Pkcs11KmsProvider.open({
        module: kms.module,
        tokenLabel: kms.tokenLabel ?? '',
        pin: readFileSync(kms.pinFile, 'utf8').trim(),
      });
    }
  }
}

/** The key broker of one leadership term. */
interface BrokerRun {
  readonly server: BrokerServer;
  audit: AuditLog | undefined;
  started: Promise<void>;
}

/** A replica identity as an audit log writer name: lower-case letters, digits, "." and "-", at most 63. */
function writerName(identity: string): string {
  const name = identity
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
    .slice(0, 63)
    .replace(/[^a-z0-9]+$/, '');
  return name === '' ? 'operator' : name;
}

export class Operator {
  readonly #config: OperatorConfig;
  readonly #root: winston.Logger;
  readonly #log: winston.Logger;
  readonly metrics = new OperatorMetrics();
  readonly bus = new RevocationBus();
  #health: HealthServer | undefined;
  #informers: Informer<never>[] = [];
  #kc: PooledKubeConfig | undefined;
  #term: Term | undefined;
  #termEnded: Promise<void> = Promise.resolve();
  #elector: LeaderElector | undefined;
  #events: EventRecorder | undefined;
  #kms: KmsProvider | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopping: Promise<void> | undefined;
  /** The key broker and its audit log; they run only while this replica leads (the revocation bus lives here). */
  #broker: BrokerRun | undefined;
  #startBroker: (() => void) | undefined;
  /** The controllers' audit sink: attached to the broker's audit log while it is open (docs/audit.md). */
  readonly #governance = new GovernanceAuditTrail();
  #injector: SidecarInjector | undefined;
  #injectorStarted: Promise<void> = Promise.resolve();
  readonly #abort = new AbortController();
  /** Called when leadership is lost: the process must stop reconciling (main exits non-zero). */
  onFatal: (reason: string) => void = () => undefined;

  constructor(config: OperatorConfig, root: winston.Logger) {
    this.#config = config;
    this.#root = root;
    this.#log = componentLogger(root, 'operator');
  }

  /** Starts everything; resolves once the health server listens and the informers have synced. */
  async start(): Promise<{ healthPort: number }> {
    const config = this.#config;
    const kc = new PooledKubeConfig();
    this.#kc = kc;
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromCluster();
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    // The classification table (ConfigMap --governance-config): read once now, so an invalid one stops the start;
    // then kept current by the informer below. Controllers and the broker read it at every decision.
    const table = new GovernanceTable({
      namespace: config.namespace,
      name: config.governanceConfig,
      logger: componentLogger(this.#root, 'governance-config'),
      registry: this.metrics.registry,
      rotationOverrides: parseKekRotationOverrides(config.rotation),
      warn: (configMap, reason, message) => {
        this.#events?.record(
          { apiVersion: 'v1', kind: 'ConfigMap', metadata: configMap.metadata ?? {} },
          'Warning',
          reason,
          message,
        );
      },
    });
    await table.load(core);
    const rotation = table.rotation;
    const observer = this.metrics.watchObserver();
    const informer = <T extends object>(
      group: string,
      version: string,
      plural: string,
      extra: { namespace?: string; labelSelector?: string; fieldSelector?: string } = {},
    ): Informer<T & { metadata?: object }> => {
      const i = new Informer<T & { metadata?: object }>({
        kubeConfig: kc,
        resource: { group, version, plural, ...extra },
        logger: componentLogger(this.#root, 'watch', { resource: plural }),
        observer,
        relistIntervalMs: config.resyncPeriodMs,
        stallTimeoutMs: config.watchStallTimeoutMs,
      });
      this.#informers.push(i as unknown as Informer<never>);
      return i;
    };
    const artifacts = informer<ModelArtifact>(
      GROUP,
      VERSION,
      MODEL_ARTIFACT_PLURAL,
    ) as unknown as Informer<ModelArtifact>;
    const grants = informer<AccessGrant>(
      GROUP,
      VERSION,
      ACCESS_GRANT_PLURAL,
    ) as unknown as Informer<AccessGrant>;
    const namespaces = informer<V1Namespace>('', 'v1', 'namespaces') as unknown as Informer<V1Namespace>;
    const keyset = informer<V1Secret>('', 'v1', 'secrets', {
      namespace: config.namespace,
      fieldSelector: `metadata.name=${KEYSET_SECRET}`,
    }) as unknown as Informer<V1Secret>;
    const governanceConfig = informer<V1ConfigMap>('', 'v1', 'configmaps', {
      namespace: config.namespace,
      fieldSelector: `metadata.name=${config.governanceConfig}`,
    }) as unknown as Informer<V1ConfigMap>;
    const managed = { labelSelector: 'app.kubernetes.io/managed-by=strongroom' };
    const webhookConfigs = [
      informer<object>('admissionregistration.k8s.io', 'v1', 'mutatingwebhookconfigurations', managed),
      informer<object>('admissionregistration.k8s.io', 'v1', 'validatingwebhookconfigurations', managed),
    ];
    const pods = new Informer<V1Pod>({
      kubeConfig: kc,
      resource: { group: '', version: 'v1', plural: 'pods' },
      logger: componentLogger(this.#root, 'watch', { resource: 'pods' }),
      observer,
      relistIntervalMs: config.resyncPeriodMs,
      stallTimeoutMs: config.watchStallTimeoutMs,
      transform: slimPod,
    });
    this.#informers.push(pods as unknown as Informer<never>);
    const recipientKeys = informer<V1Secret>('', 'v1', 'secrets', {
      namespace: config.namespace,
      labelSelector: 'strongroom.dev/role=recipient-key',
    }) as unknown as Informer<V1Secret>;

    this.#health = new HealthServer({
      host: config.healthAddress.host,
      port: config.healthAddress.port,
      registry: this.metrics.registry,
      logger: componentLogger(this.#root, 'health'),
      liveness: [{ name: 'event-loop', check: () => ({ ok: true }) }],
      readiness: [
        ...this.#informers.map((i) => ({
          name: `watch:${i.resourceName}`,
          check: () => ({
            ok: i.healthy(),
            ...(i.healthy() ? {} : { detail: 'not synced or disconnected' }),
          }),
        })),
        {
          name: 'webhook',
          check: () => {
            const ok = this.#injector?.ready() === true;
            return { ok, ...(ok ? {} : { detail: 'the injection webhook is not listening yet' }) };
          },
        },
        {
          name: 'broker',
          check: () => {
            const ok = this.#broker === undefined || this.#broker.server.ready();
            return { ok, ...(ok ? {} : { detail: 'the key broker is not listening yet' }) };
          },
        },
        {
          name: 'leader-election',
          check: () => ({ ok: this.#elector !== undefined || !config.leaderElection.enabled }),
        },
      ],
    });
    const { port } = await this.#health.start();

    this.#kms = await openKms(config, core, keyset);
    this.#events = new EventRecorder({
      core,
      component: COMPONENT,
      instance: config.identity,
      logger: componentLogger(this.#root, 'events'),
    });
    const keyring = new ArtifactKeyring({
      kms: this.#kms,
      core,
      namespace: config.namespace,
      logger: componentLogger(this.#root, 'keys'),
      cachedSecret: (name) =>
        recipientKeys.hasSynced() ? (recipientKeys.get(`${config.namespace}/${name}`) ?? null) : undefined,
    });
    const common = { custom, events: this.#events, bus: this.bus, metrics: this.metrics };
    const artifactController = new ModelArtifactController({
      ...common,
      kms: this.#kms,
      keyring,
      artifacts,
      logger: componentLogger(this.#root, 'modelartifact-controller'),
      rotation,
      scopes: table.kekScopes,
      audit: this.#governance,
    });
    const grantController = new AccessGrantController({
      ...common,
      grants,
      artifacts,
      namespaces,
      logger: componentLogger(this.#root, 'accessgrant-controller'),
      policy: () => table.current,
      audit: this.#governance,
    });
    const environmentAuditor = new EnvironmentAuditor({
      core,
      namespace: config.namespace,
      namespaces,
      audit: this.#governance,
      logger: componentLogger(this.#root, 'environment-audit'),
    });
    const queueObserver = this.metrics.queueObserver();
    // Queues live for one leadership term: made when this replica starts leading, shut down (waiting for in-flight
    // reconciles) when it stops. Informer handlers only enqueue while a term is running; a new term starts with a
    // full resync, so nothing seen in between is lost.
    const newTerm = (): Term => {
      const make = (name: string, workers: number, handler: WorkQueueOptions['handler']): WorkQueue =>
        new WorkQueue({
          name,
          workers,
          handler,
          observer: queueObserver,
          logger: componentLogger(this.#root, 'queue', { queue: name }),
        });
      return {
        artifacts: make('modelartifact', config.workers, (key) => artifactController.reconcile(key)),
        grants: make('accessgrant', config.workers, (key) => grantController.reconcile(key)),
        singletons: make('singleton', 1, (key) =>
          key === KekRotationController.KEY
            ? rotationController.reconcile()
            : key === EnvironmentAuditor.KEY
              ? environmentAuditor.reconcile().then(() => undefined)
              : pki.reconcile(),
        ),
      };
    };
    const enqueue = {
      artifact: (key: string): void => {
        this.#term?.artifacts.add(key);
      },
      grant: (key: string): void => {
        this.#term?.grants.add(key);
      },
      singleton: (key: string): void => {
        this.#term?.singletons.add(key);
      },
    };
    const rotationController = new KekRotationController({
      kms: this.#kms,
      artifacts,
      rotation,
      scopes: table.kekScopes,
      metrics: this.metrics,
      logger: componentLogger(this.#root, 'kek-rotation'),
      ensureKek: (keyId) => keyring.ensureKek(keyId),
      enqueueArtifact: enqueue.artifact,
    });
    const pki = new PkiController({
      kubeConfig: kc,
      namespace: config.namespace,
      metrics: this.metrics,
      logger: componentLogger(this.#root, 'pki'),
    });

    // Only pods as injection makes them with the configured sidecar get certificates and keys (docs/broker.md).
    // The CA bundle a sidecar trusts must be the operator's own (it would hand its token to any server its bundle
    // trusts): the set is refreshed whenever the broker reads the CA (at start and every credential refresh).
    const { ca, trusted } = trackTrustedCa(
      new InternalCa(kc, { namespace: config.namespace, logger: componentLogger(this.#root, 'broker') }),
    );
    const sidecar = expectedSidecar(config.injection, trusted);
    const view = new InformerBrokerView({
      artifacts,
      grants,
      namespaces,
      pods,
      sidecar,
    });
    const kms = this.#kms;
    this.#startBroker = () => {
      const brokerLog = componentLogger(this.#root, 'broker');
      const trail = new BrokerAuditTrail((operation, decision, reason) => {
        this.metrics.brokerDecisions.inc({ operation, decision, reason });
      });
      const server = new BrokerServer({
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
        view,
        kms,
        keyring,
        scopes: table.kekScopes,
        policy: () => table.current,
        audit: trail,
        bus: this.bus,
        dekCacheTtlMs: config.broker.dekCacheTtlMs,
        maxConnectionAgeMs: config.broker.maxConnectionAgeMs,
        credentialRefreshMs: config.broker.credentialRefreshMs,
        podCertificateValidityMs: config.broker.podCertificateValidityMs,
        onRefusedRelease: (pod, message) => {
          this.#events?.record(
            { apiVersion: 'v1', kind: 'Pod', metadata: pod },
            'Warning',
            'KeyReleaseDenied',
            message,
          );
        },
        observer: {
          call: (method, code, seconds) => {
            this.metrics.brokerCalls.observe({ method, code }, seconds);
          },
          streams: (delta) => {
            this.metrics.brokerStreams.inc(delta);
          },
        },
      });
      const record: BrokerRun = { server, audit: undefined, started: Promise.resolve() };
      record.started = (async () => {
        const keys = await ensureAuditKeys(
          core,
          config.namespace,
          `strongroom.audit/${config.broker.clusterName}`,
        );
        mkdirSync(config.auditLogDir, { recursive: true, mode: 0o700 });
        const writer = writerName(config.identity);
        const audit = await AuditLog.open({
          path: join(config.auditLogDir, `${writer}.log`),
          origin: originFor(config.broker.clusterName, writer),
          signer: keys.signer,
          metrics: {
            onFailure: (error, stage) => {
              brokerLog.error('audit append failed', { stage, error: error.message });
            },
          },
        });
        trail.attach(audit, keys.hmac);
        this.#governance.attach(audit);
        record.audit = audit;
        if (this.#broker !== record) return;
        const ports = await server.start();
        brokerLog.info('key broker ready', { ...ports, auditLog: audit.path });
      })().catch((error: unknown) => {
        if (this.#broker !== record) return;
        brokerLog.error('the key broker could not start; keys are not released', {
          error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        });
        this.onFatal(`the key broker could not start: ${String(error)}`);
      });
      this.#broker = record;
    };

    // parent artifact key → artifacts whose lineage names it, so a parent appearing re-checks its children.
    const children = new Map<string, Set<string>>();
    artifacts.onEvent((event) => {
      enqueue.artifact(event.key);
      const ns = event.object.metadata.namespace ?? '';
      for (const version of event.object.spec.versions ?? [])
        for (const parent of version.lineage?.parents ?? [])
          if (parent.kind === 'ModelArtifact') {
            const set = children.get(`${ns}/${parent.name}`) ?? new Set<string>();
            if (event.type === 'deleted') set.delete(event.key);
            else set.add(event.key);
            children.set(`${ns}/${parent.name}`, set);
          }
      for (const child of children.get(event.key) ?? []) enqueue.artifact(child);
      for (const g of grantController.grantsFor(event.key)) enqueue.grant(g);
    });
    grants.onEvent((event) => {
      grantController.indexGrant(event.key, event.object, event.type === 'deleted');
      enqueue.grant(event.key);
    });
    namespaces.onEvent(() => {
      for (const g of grants.list()) enqueue.grant(objectKey(g));
      enqueue.singleton(EnvironmentAuditor.KEY);
    });
    for (const w of webhookConfigs)
      w.onEvent(() => {
        enqueue.singleton(PkiController.KEY);
      });
    keyset.onEvent(() => {
      // A KEK created or rotated (by this leader or by an administrator): every artifact re-checks its wraps.
      for (const a of artifacts.list()) enqueue.artifact(objectKey(a));
    });
    governanceConfig.onEvent((event) => {
      // A valid change of the classification table re-evaluates everything; an invalid one changes nothing.
      if (!table.update(event.type === 'deleted' ? undefined : event.object)) return;
      for (const a of artifacts.list()) enqueue.artifact(objectKey(a));
      for (const g of grants.list()) enqueue.grant(objectKey(g));
      enqueue.singleton(KekRotationController.KEY);
    });
    recipientKeys.onEvent((event) => {
      const labels = event.object.metadata?.labels ?? {};
      const ns = labels['strongroom.dev/artifact-namespace'];
      const name = labels['strongroom.dev/artifact-name'];
      if (ns && name) enqueue.artifact(`${ns}/${name}`);
    });

    await Promise.all(this.#informers.map((i) => i.start()));
    // A change between the start-up GET and the first list (a deletion above all) emits no event: catch up once.
    table.update(governanceConfig.get(`${config.namespace}/${config.governanceConfig}`));
    this.#log.info('caches synced', { informers: this.#informers.map((i) => i.resourceName) });

    // The webhook runs on every replica: its decisions read only the caches. It waits for the serving certificate,
    // which the leader issues, so it is started without being awaited; readiness reports it.
    const webhookLog = componentLogger(this.#root, 'webhook');
    const injector = new SidecarInjector({
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
    this.#injector = injector;
    this.#injectorStarted = injector.start(this.#abort.signal).then(
      () => undefined,
      (error: unknown) => {
        if (this.#abort.signal.aborted) return;
        this.onFatal(`the injection webhook could not start: ${String(error)}`);
      },
    );

    const resyncAll = (): void => {
      for (const a of artifacts.list()) enqueue.artifact(objectKey(a));
      for (const g of grants.list()) enqueue.grant(objectKey(g));
      enqueue.singleton(KekRotationController.KEY);
      enqueue.singleton(PkiController.KEY);
      enqueue.singleton(EnvironmentAuditor.KEY);
    };
    const startLeading = (): void => {
      if (this.#stopping) return;
      this.#term = newTerm();
      this.metrics.leader.set(1);
      this.#log.info('leading: starting controllers', { identity: config.identity });
      resyncAll();
      for (const q of [this.#term.artifacts, this.#term.grants, this.#term.singletons]) q.start();
      this.#startBroker?.();
    };
    this.#timers.push(
      setInterval(resyncAll, config.resyncPeriodMs).unref(),
      setInterval(() => {
        this.#domainGauges(artifacts, grants);
      }, 5_000).unref(),
    );
    if (config.leaderElection.enabled) {
      const campaign = (): void => {
        const elector = new LeaderElector({
          kubeConfig: kc,
          namespace: config.namespace,
          name: config.leaderElection.leaseName,
          identity: config.identity,
          leaseDurationMs: config.leaderElection.leaseDurationMs,
          renewDeadlineMs: config.leaderElection.renewDeadlineMs,
          retryPeriodMs: config.leaderElection.retryPeriodMs,
          logger: componentLogger(this.#root, 'leader-election'),
          onStartedLeading: startLeading,
          onStoppedLeading: () => {
            this.metrics.leader.set(0);
            if (this.#stopping) return;
            // Lost the Lease (API server unreachable, or someone else holds it): stop reconciling at once, then
            // campaign again. renewDeadline < leaseDuration leaves the queues time to drain before another replica
            // can acquire.
            this.#log.warn('lost the Lease: stopping controllers and campaigning again', {
              identity: config.identity,
            });
            this.#termEnded = this.#endTerm().then(
              () => {
                if (!this.#stopping) campaign();
              },
              (error: unknown) => {
                this.onFatal(`could not stop the controllers after losing the Lease: ${String(error)}`);
              },
            );
          },
          onNewLeader: (identity) => {
            this.#log.info('leader observed', { leader: identity });
          },
        });
        this.#elector = elector;
        elector.start();
      };
      campaign();
    } else startLeading();
    return { healthPort: port };
  }

  #domainGauges(artifacts: Informer<ModelArtifact>, grants: Informer<AccessGrant>): void {
    const a = new Map<string, { namespace: string; classification: string; ready: string; n: number }>();
    for (const item of artifacts.list()) {
      const ready = item.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
      const labels = {
        namespace: item.metadata.namespace ?? '',
        classification: item.spec.classification,
        ready,
      };
      const k = JSON.stringify(labels);
      a.set(k, { ...labels, n: (a.get(k)?.n ?? 0) + 1 });
    }
    this.metrics.artifacts.reset();
    for (const { n, ...labels } of a.values()) this.metrics.artifacts.set(labels, n);
    const g = new Map<string, { namespace: string; phase: string; n: number }>();
    for (const item of grants.list()) {
      const labels = { namespace: item.metadata.namespace ?? '', phase: item.status?.phase ?? 'Unknown' };
      const k = JSON.stringify(labels);
      g.set(k, { ...labels, n: (g.get(k)?.n ?? 0) + 1 });
    }
    this.metrics.grants.reset();
    for (const { n, ...labels } of g.values()) this.metrics.grants.set(labels, n);
  }

  async #stopBroker(): Promise<void> {
    const broker = this.#broker;
    this.#broker = undefined;
    if (broker === undefined) return;
    await broker.server.stop();
    await broker.started;
    this.#governance.detach();
    await broker.audit?.close();
  }

  async #endTerm(): Promise<void> {
    await this.#stopBroker();
    const term = this.#term;
    this.#term = undefined;
    if (term) await Promise.all([term.artifacts, term.grants, term.singletons].map((q) => q.shutdown()));
  }

  /** Graceful shutdown in the order documented at the top of this file. Safe to call more than once. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
        this.#log.info('shutdown step done', { step: name });
      } catch (error) {
        this.#log.error('shutdown step failed', { step: name, error });
      }
    };
    this.#log.info('shutting down');
    this.#health?.setShuttingDown();
    for (const t of this.#timers) clearInterval(t);
    this.#abort.abort();
    await step('webhook', async () => {
      await this.#injectorStarted;
      await this.#injector?.stop();
    });
    await step('queues', async () => {
      await this.#termEnded;
      await this.#endTerm();
    });
    await step('lease', async () => this.#elector?.stop());
    await step('informers', () => Promise.all(this.#informers.map((i) => i.stop())));
    await step('events', async () => this.#events?.flush());
    await step('kms', async () => this.#kms?.close());
    await step('health', async () => this.#health?.stop());
    await step('connections', async () => this.#kc?.closePools());
  }
}
