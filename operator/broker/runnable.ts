/**
 * The key broker as a runnable on every replica (operator/manager/runnable.ts): Attest, ReleaseKey and
 * WatchRevocations are served by every ready replica from its own informer caches, so a pod can start while the
 * leader changes; PublishVersion answers only on the leader (a follower refuses it with a retryable UNAVAILABLE,
 * mtls-handlers.ts). One BrokerServer for the life of the process. Start-up, awaited by the manager (so this replica
 * campaigns for the Lease only once its log is open): read (or create) the audit keys in Secret
 * `strongroom-audit-keys`, read the checkpoint published for this writer in ConfigMap `strongroom-audit-checkpoints`
 * (--audit-checkpoint-configmap; checkpoint-publisher.ts), open this replica's own audit log
 * `<audit-log-dir>/<writer>.log` (origin `strongroom.audit/<cluster>/<writer>`, writer = this replica's identity),
 * refusing one that does not extend the published checkpoint (a rolled-back log), publish every checkpoint it writes
 * from then on, attach it to the broker's audit trail and to the controllers' governance trail (the controllers run
 * only while this replica leads, so governance events land in the leader's log). Then, in the background (the server
 * waits for its certificate, which the leader issues), listen. No key is ever released unaudited:
 * - a log refused on open as rolled back: the process stays up, failing closed, so that /metrics keeps exporting
 *   `strongroom_audit_rollback_detected{writer}` 1 for the alert: start() does not return until stop(), so the
 *   manager starts nothing after the broker and never campaigns (no controllers, no webhook), the broker never
 *   listens and readiness stays false. A restart (once the log is restored) opens it again;
 * - any other failure: the process exits non-zero (context.fatal).
 * Stop: the server stops (connections closed, cached DEKs zeroed), the start-up is waited for, the governance trail
 * is detached, the audit log closed and its final checkpoint published.
 */
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AuditError, AuditLog, originFor, type AppendedEntry } from '../../core/audit/index.ts';
import type { GovernanceAuditTrail } from '../controllers/governance-audit.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { RunContext, Runnable } from '../manager/runnable.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { CheckpointSigningKey } from '../../core/kms/signing.ts';
import { ensureAuditKeys } from './audit-keys.ts';
import {
  AUDIT_CHECKPOINTS_CONFIGMAP,
  CheckpointPublisher,
  readPublishedCheckpoint,
  ROLLBACK_EVENT_REASON,
} from './checkpoint-publisher.ts';
import { BrokerAuditTrail } from './audit-trail.ts';
import { BrokerServer, type BrokerServerOptions } from './server.ts';

export interface BrokerRunnableOptions {
  /**
   * The server's options but those this runnable fills in: its audit trail (attached to this replica's log once it
   * is open), its observer (metrics) and onRefusedRelease (a Warning Event `KeyReleaseDenied` on the pod).
   */
  readonly server: Omit<BrokerServerOptions, 'audit' | 'observer' | 'onRefusedRelease'>;
  /** strongroom_broker_calls, strongroom_broker_streams and strongroom_broker_decisions_total. */
  readonly metrics: Pick<
    OperatorMetrics,
    | 'brokerCalls'
    | 'brokerStreams'
    | 'brokerDecisions'
    | 'recordBrokerDecision'
    | 'recordKeyRelease'
    | 'recordWipeReport'
    | 'auditCheckpointSize'
    | 'auditCheckpointPublished'
    | 'auditRollbackDetected'
    | 'auditCheckpointPublishing'
    | 'auditSignFailures'
  >;
  readonly events: Pick<EventRecorder, 'record'>;
  /** --cluster-name: in the audit keys' name and the log's origin `strongroom.audit/<cluster>/<writer>`. */
  readonly clusterName: string;
  /** --audit-log-dir. */
  readonly auditLogDir: string;
  /** This replica's identity: its log is `<auditLogDir>/<writerName(identity)>.log`. */
  readonly identity: string;
  /** The controllers' audit sink, attached to the log while it is open (docs/audit.md). */
  readonly governance: GovernanceAuditTrail;
  /**
   * --audit-signer kms: the checkpoint signing key in the KMS (docs/kms.md#checkpoint-signing-keys). Unset: the
   * signer key in Secret strongroom-audit-keys.
   */
  readonly auditSigningKey?: () => Promise<CheckpointSigningKey>;
  /**
   * --audit-checkpoint-configmap: publish every checkpoint to ConfigMap strongroom-audit-checkpoints, and refuse to
   * open a log that does not extend the checkpoint published for this writer (docs/audit.md#published-checkpoints).
   */
  readonly publishCheckpoints: boolean;
  /**
   * Anomaly detection (operator/detection/): told of every entry this replica's log makes durable, and attached to
   * the log while it is open so that it can append alerts and quarantines.
   */
  readonly tap?: AuditTap;
}

/** Something that reads every durable entry of this replica's log and may append to it while it is open. */
export interface AuditTap {
  /** Reads the log file as it is before the writer opens it (detector state across restarts). */
  seed?(path: string): Promise<number>;
  observe(entry: AppendedEntry): void;
  attach(log: Pick<AuditLog, 'append'>): void;
  detach(): void;
}

/** True when `path` is a file with at least one byte (a missing file is an empty log). */
function nonEmpty(path: string): boolean {
  try {
    return statSync(path).size > 0;
  } catch {
    return false;
  }
}

/** A replica identity as an audit log writer name: lower-case letters, digits, "." and "-", at most 63. */
export function writerName(identity: string): string {
  const name = identity
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
    .slice(0, 63)
    .replace(/[^a-z0-9]+$/, '');
  return name === '' ? 'operator' : name;
}

/** The key broker of this process. */
interface BrokerRun {
  readonly server: BrokerServer;
  audit: AuditLog | undefined;
  publisher: CheckpointPublisher | undefined;
  started: Promise<void>;
  /** Ends a start() that is holding the manager back after a failed open (called by stop()). */
  readonly halt: () => void;
}

export class BrokerRunnable implements Runnable {
  readonly name = 'broker';
  readonly needsLeader = false;
  readonly #o: BrokerRunnableOptions;
  #run: BrokerRun | undefined;

  constructor(options: BrokerRunnableOptions) {
    this.#o = options;
  }

  /** The readiness check `broker`: both listeners up and the caches synced, on every replica. */
  ready(): boolean {
    return this.#run?.server.ready() === true;
  }

  start(context: RunContext): Promise<void> {
    const o = this.#o;
    const log = o.server.logger;
    const { metrics, events } = o;
    const trail = new BrokerAuditTrail((operation, decision, reason) => {
      // strongroom_broker_decisions_total, and strongroom_key_releases_audited_total for an allowed release.
      metrics.recordBrokerDecision(operation, decision, reason);
    });
    const server = new BrokerServer({
      ...o.server,
      audit: trail,
      onRefusedRelease: (pod, message) => {
        events.record(
          { apiVersion: 'v1', kind: 'Pod', metadata: pod },
          'Warning',
          'KeyReleaseDenied',
          message,
        );
      },
      observer: {
        call: (method, code, seconds) => {
          metrics.brokerCalls.observe({ method, code }, seconds);
        },
        streams: (delta) => {
          metrics.brokerStreams.inc(delta);
        },
        released: metrics.recordKeyRelease,
        wipeReport: metrics.recordWipeReport,
      },
    });
    const writer = writerName(o.identity);
    metrics.auditCheckpointPublishing.set({ writer }, o.publishCheckpoints ? 1 : 0);
    let halt: () => void = () => undefined;
    const halted = new Promise<void>((resolve) => {
      halt = resolve;
    });
    const run: BrokerRun = {
      server,
      audit: undefined,
      publisher: undefined,
      started: Promise.resolve(),
      halt,
    };
    const opened = (async () => {
      const keys = await ensureAuditKeys(
        o.server.core,
        o.server.namespace,
        `strongroom.audit/${o.clusterName}`,
        await o.auditSigningKey?.(),
      );
      mkdirSync(o.auditLogDir, { recursive: true, mode: 0o700 });
      const { core, namespace } = o.server;
      // The checkpoint published for this writer: the file must extend it (a rolled-back log is refused).
      const published = o.publishCheckpoints
        ? await readPublishedCheckpoint(core, namespace, writer)
        : undefined;
      const publisher = o.publishCheckpoints
        ? new CheckpointPublisher({
            core,
            namespace,
            writer,
            logger: log,
            metrics,
            events,
            ...(published === undefined ? {} : { trusted: published }),
          })
        : undefined;
      run.publisher = publisher;
      const logPath = join(o.auditLogDir, `${writer}.log`);
      if (o.publishCheckpoints && published === undefined && nonEmpty(logPath)) {
        // Nothing to check the file against: the first start after publishing was turned on, or someone removed
        // this writer's key (only the security groups may). Say so loudly; the publisher writes the key again.
        log.warn('no published checkpoint for this audit log; it is opened unchecked against a rollback', {
          writer,
          configMap: AUDIT_CHECKPOINTS_CONFIGMAP,
        });
        events.record(
          { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: AUDIT_CHECKPOINTS_CONFIGMAP, namespace } },
          'Warning',
          'AuditCheckpointMissing',
          `replica ${o.identity} found no published checkpoint for its non-empty audit log (writer ${writer}); ` +
            'it was opened without a rollback check and its checkpoint is published again',
        );
      }
      if (o.tap?.seed !== undefined) {
        // Detection only: a log that cannot be read back seeds nothing (the detector starts empty, which alerts
        // more, never less); the open below still verifies the file and refuses a bad one.
        try {
          const seeded = await o.tap.seed(logPath);
          log.info('anomaly detector seeded from the audit log', { entries: seeded });
        } catch (error) {
          log.warn('could not seed the anomaly detector from the audit log; it starts empty', {
            error: error instanceof Error ? error.message : String(error),
          });
        }
      }
      const audit = await AuditLog.open({
        path: logPath,
        origin: originFor(o.clusterName, writer),
        signer: keys.signer,
        ...(published === undefined ? {} : { trustedCheckpoint: published }),
        observers: {
          ...(o.tap === undefined
            ? {}
            : {
                onAppended: (entry: AppendedEntry) => {
                  o.tap?.observe(entry);
                },
              }),
          ...(publisher === undefined
            ? {}
            : {
                onCheckpoint: (note: string) => {
                  publisher.publish(note);
                },
              }),
        },
        metrics: {
          onFailure: (error, stage) => {
            if (stage === 'sign') {
              // The entries are durable without a checkpoint; the log signs again at the next interval.
              metrics.auditSignFailures.inc();
              log.warn('audit checkpoint not signed; retrying at the next interval', {
                error: error.message,
                cause: error.cause instanceof Error ? error.cause.message : String(error.cause),
              });
              return;
            }
            log.error('audit append failed', { stage, error: error.message });
          },
        },
      }).catch((error: unknown) => {
        if (error instanceof AuditError && error.kind === 'rollback') {
          metrics.auditRollbackDetected.set({ writer }, 1);
          events.record(
            {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: AUDIT_CHECKPOINTS_CONFIGMAP, namespace },
            },
            'Warning',
            ROLLBACK_EVENT_REASON,
            `replica ${o.identity} refuses to extend its audit log: ${error.message.split('\n')[0] ?? ''}`,
          );
        }
        throw error;
      });
      trail.attach(audit, keys.hmac);
      o.governance.attach(audit);
      o.tap?.attach(audit);
      run.audit = audit;
      return audit;
    })();
    run.started = (async () => {
      const audit = await opened;
      if (this.#run !== run) return;
      const ports = await server.start();
      log.info('key broker ready', { ...ports, auditLog: audit.path });
    })().catch((error: unknown) => {
      if (this.#run !== run) return;
      const described = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      if (error instanceof AuditError && error.kind === 'rollback') {
        // Fail closed but stay up: the gauge set above is scraped and the alert fires (docs/audit.md).
        log.error(
          'the audit log was rolled back: keys are not released and this replica does not lead until it is restarted on a log that extends the published checkpoint',
          { writer, error: described },
        );
        return;
      }
      log.error('the key broker could not start; keys are not released', { error: described });
      context.fatal(`the key broker could not start: ${String(error)}`);
    });
    this.#run = run;
    // The manager goes on once the log is open; after a failed open it is held here until stop().
    return opened.then(
      () => undefined,
      () => halted,
    );
  }

  async stop(): Promise<void> {
    const run = this.#run;
    this.#run = undefined;
    if (run === undefined) return;
    run.halt();
    await run.server.stop();
    await run.started;
    this.#o.governance.detach();
    this.#o.tap?.detach();
    await run.audit?.close();
    // The final checkpoint (written by close) is tried once more even during a backoff; nothing is retried after.
    await run.publisher?.stop();
  }

  /** The latest signed checkpoint of this replica's audit log (GET /audit/checkpoint), once it is open. */
  latestCheckpoint(): string | undefined {
    const note = this.#run?.audit?.latestCheckpoint;
    return note === undefined || note === '' ? undefined : note;
  }
}
