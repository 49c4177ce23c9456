/**
 * The sidecar runtime, wired: probe server first (so the kubelet gets 503s rather than refused connections), then
 * attestation, the revocation stream (opened before any key is released, so no revocation can fall between a
 * release and the stream), then every planned artifact in parallel, each under its {@link ArtifactSupervisor}.
 * {@link Sidecar.shutdown} wipes every plaintext directory and the output directory. Metrics (metrics.ts) are served at
 * `/metrics` on the probe port; a wipe that answered a revocation is reported to the broker in the background
 * (wipe-report.ts).
 */
import { SegmentPool } from '../core/envelope/pool.ts';
import type winston from 'winston';
import { componentLogger } from '../core/logging/index.ts';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import type { KeyBroker, KeyBrokerClient } from '../proto/keybroker.ts';
import type { SidecarConfig } from './config.ts';
import { WorkloadIdentity, type WorkloadKeyPair } from './identity.ts';
import { SidecarMetrics } from './metrics.ts';
import { startProbeServer, type ProbeServer, type ProbeState } from './probe.ts';
import { revocationConcerns, RevocationWatcher } from './revocation.ts';
import { ArtifactSupervisor } from './supervisor.ts';
import { wipeDirectory } from './wipe.ts';
import { WipeReporter } from './wipe-report.ts';

export interface SidecarOptions {
  readonly config: SidecarConfig;
  readonly keyBroker: KeyBroker;
  /** The root logger; the sidecar makes its component children. */
  readonly logger: winston.Logger;
  /** A key pair generated ahead for the first attestation (main.ts starts it while the sidecar loads). */
  readonly firstKeyPair?: Promise<WorkloadKeyPair>;
}

/** The running sidecar. */
export class Sidecar {
  readonly #o: SidecarOptions;
  readonly #log: winston.Logger;
  readonly #identity: WorkloadIdentity;
  readonly #watcher: RevocationWatcher;
  readonly #supervisors: readonly ArtifactSupervisor[];
  #probe: ProbeServer | undefined;
  #started = false;
  readonly #pool: SegmentPool | undefined;
  readonly #reporter: WipeReporter;
  /** This sidecar's metrics (served at /metrics on the probe port). */
  readonly metrics = new SidecarMetrics();

  constructor(options: SidecarOptions) {
    this.#o = options;
    const { config, logger } = options;
    this.#log = componentLogger(logger, 'sidecar');
    this.#identity = new WorkloadIdentity({
      config,
      keyBroker: options.keyBroker,
      logger: componentLogger(logger, 'sidecar/identity'),
      ...(options.firstKeyPair === undefined ? {} : { firstKeyPair: options.firstKeyPair }),
    });
    const client = (): KeyBrokerClient => this.#identity.client();
    // One pool of decrypting worker threads for every artifact, so that parallel artifacts share the cores.
    this.#pool = config.plan.artifacts.length > 0 ? new SegmentPool() : undefined;
    const pool = this.#pool;
    const reporter = new WipeReporter({
      client,
      logger: componentLogger(logger, 'sidecar/wipe-report'),
      metrics: this.metrics,
    });
    this.#reporter = reporter;
    this.#supervisors = config.plan.artifacts.map(
      (artifact) =>
        new ArtifactSupervisor({
          artifact,
          client,
          ...(pool === undefined ? {} : { pool }),
          logger: componentLogger(logger, 'sidecar/artifact', { mountPath: artifact.mountPath }),
          onChange: () => {
            this.#onChange();
          },
          metrics: this.metrics,
          onWipe: (wipe) => {
            reporter.report(artifact, wipe);
          },
        }),
    );
    this.#watcher = new RevocationWatcher({
      client,
      logger: componentLogger(logger, 'sidecar/revocation'),
      onRevocation: (revocation) => {
        this.#onRevocation(revocation);
      },
      onResync: (why) => {
        for (const s of this.#supervisors) s.recheck(why);
      },
    });
    this.#identity.onRenewed(() => {
      this.#watcher.reconnect();
    });
  }

  /** The probe port (useful when configured as 0). */
  get probePort(): number | undefined {
    return this.#probe?.port;
  }

  /** What the probes answer from. */
  state(): ProbeState {
    if (this.#supervisors.length === 0) return { started: true, ready: true, detail: '' };
    const waiting = this.#supervisors.filter((s) => s.phase !== 'materialized');
    const detail = waiting
      .map((s) => {
        const a = s.artifact;
        const error = s.lastError;
        return `${a.namespace}/${a.name}@${a.version} ${s.phase}${error ? ` (${error.codeName})` : ''}`;
      })
      .join('; ');
    return { started: this.#started, ready: this.#started && waiting.length === 0, detail };
  }

  /** Starts everything; resolves once the artifacts' work has begun (not when they are in place). */
  async start(): Promise<void> {
    this.#probe = await startProbeServer({
      port: this.#o.config.probePort,
      state: () => this.state(),
      metrics: this.metrics.registry,
    });
    this.#log.info('sidecar starting', {
      probePort: this.#probe.port,
      artifacts: this.#o.config.plan.artifacts.map((a) => `${a.namespace}/${a.name}@${a.version}`),
      publish: this.#o.config.plan.publish
        ? `${this.#o.config.plan.publish.namespace}/${this.#o.config.plan.publish.name}@${this.#o.config.plan.publish.version}`
        : undefined,
    });
    const attesting = Date.now();
    await this.#identity.start();
    this.metrics.phase('attest', Date.now() - attesting);
    if (this.#supervisors.length === 0) return;
    const watching = Date.now();
    await this.#watcher.start();
    this.metrics.phase('watch', Date.now() - watching);
    for (const s of this.#supervisors) s.start();
  }

  /** The current mutual-TLS client (for publish mode). */
  client(): KeyBrokerClient {
    return this.#identity.client();
  }

  /** A client of the current certificate on a new connection (publish mode retries on one; the caller closes it). */
  freshClient(): KeyBrokerClient {
    return this.#identity.freshClient();
  }

  /** Stops the revocation stream and every supervisor, wipes all plaintext and the output directory, closes. */
  async shutdown(): Promise<void> {
    await this.#watcher.stop();
    this.#reporter.stop();
    const dirs = this.#o.config.plan.publish ? [this.#o.config.plan.publish.outputDir] : [];
    const results = await Promise.allSettled([
      ...this.#supervisors.map((s) => s.wipeForShutdown()),
      ...dirs.map(async (dir) => {
        const report = await wipeDirectory(dir);
        this.#log.info('wiped the output directory', { dir, ...report });
      }),
    ]);
    this.#identity.stop();
    await this.#pool?.close();
    await this.#probe?.close();
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length > 0)
      throw new AggregateError(
        failed.map((r) => r.reason as unknown),
        'wiping on shutdown failed',
      );
  }

  #onChange(): void {
    if (!this.#started && this.#supervisors.every((s) => s.phase === 'materialized')) {
      this.#started = true;
      this.#log.info('every artifact is decrypted and verified; started');
    }
  }

  #onRevocation(revocation: Revocation__Output): void {
    const hit = this.#supervisors.filter((s) => revocationConcerns(revocation, s.artifact, s.heldUnder));
    const fields = {
      reason: revocation.reason,
      artifact: revocation.artifact
        ? `${revocation.artifact.namespace}/${revocation.artifact.name}`
        : undefined,
      versions: revocation.versions,
      grant: revocation.grant?.name,
      seq: revocation.seq,
      detail: revocation.message,
    };
    if (hit.length === 0) {
      this.#log.info('revocation does not concern a planned artifact', fields);
      return;
    }
    this.#log.warn('revocation', { ...fields, affected: hit.length });
    for (const s of hit)
      s.revoke(`${revocation.reason}: ${revocation.message}`, { reason: 'revocation', revocation });
  }
}
