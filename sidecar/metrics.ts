/**
 * The sidecar's Prometheus metrics (docs/metrics.md § Sidecar), on a registry of their own, served at `/metrics` on
 * the probe port (probe.ts). Labels carry only fixed words (phases, reasons): never an artifact, a path, a token or a
 * key. No process metrics: the kubelet's container metrics already cover the sidecar's CPU and memory.
 */
import { Counter, Histogram, Registry } from 'prom-client';

/** The path of the metrics on the probe port. */
export const METRICS_PATH = '/metrics';

/**
 * Steps of the start-up path, in order (sidecar.ts, supervisor.ts, materialize.ts): `attest` (key pair, CSR and the
 * first certificate), `watch` (the revocation stream's first message), then per artifact `release` (ReleaseKey),
 * `decrypt` (reading the ciphertext, from the claim or by ranged GETs from S3, decrypting and hashing each file in the
 * same pass), `verify` (the tree digest against the planned one) and `install` (modes and renames into place).
 */
export type StartupPhase = 'attest' | 'watch' | 'release' | 'decrypt' | 'verify' | 'install';

/** Why the sidecar wiped an artifact's plaintext. */
export type WipeReason = 'revocation' | 'lease-expired' | 'renewal-denied' | 'shutdown';

/** Start-up phases take from a millisecond (verify) to minutes (decrypting a large model). */
const PHASE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** Every metric the sidecar exports. */
export class SidecarMetrics {
  readonly registry: Registry;
  /** `strongroom_sidecar_startup_phase_seconds{phase}`. */
  readonly startupPhase: Histogram<'phase'>;
  /** `strongroom_sidecar_decrypted_bytes_total`: plaintext bytes decrypted, verified and installed. */
  readonly decryptedBytes: Counter<never>;
  /** `strongroom_sidecar_wipes_total{reason}`: completed wipes of an artifact's plaintext directory. */
  readonly wipes: Counter<'reason'>;
  /** `strongroom_sidecar_wipe_failures_total{reason}`: wipes that left something behind (logged with the paths). */
  readonly wipeFailures: Counter<'reason'>;
  /** `strongroom_sidecar_wipe_reports_failed_total`: wipe reports the broker never acknowledged (after retries). */
  readonly wipeReportsFailed: Counter<never>;

  constructor() {
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    this.startupPhase = new Histogram({
      name: 'strongroom_sidecar_startup_phase_seconds',
      help: 'Duration of each start-up phase (attest, watch, release, decrypt, verify, install); per artifact for the last four.',
      labelNames: ['phase'],
      buckets: PHASE_BUCKETS,
      registers,
    });
    this.decryptedBytes = new Counter({
      name: 'strongroom_sidecar_decrypted_bytes_total',
      help: 'Plaintext bytes decrypted, verified against the planned digest and installed.',
      registers,
    });
    this.wipes = new Counter({
      name: 'strongroom_sidecar_wipes_total',
      help: "Completed wipes of an artifact's plaintext, by reason (revocation, lease-expired, renewal-denied, shutdown).",
      labelNames: ['reason'],
      registers,
    });
    this.wipeFailures = new Counter({
      name: 'strongroom_sidecar_wipe_failures_total',
      help: 'Wipes that could not remove every entry, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.wipeReportsFailed = new Counter({
      name: 'strongroom_sidecar_wipe_reports_failed_total',
      help: 'Wipe reports (ReportWipe) that the broker did not acknowledge after every retry.',
      registers,
    });
  }

  /** Records a phase that took `ms` milliseconds (a negative or non-finite duration is dropped). */
  phase(phase: StartupPhase, ms: number): void {
    if (Number.isFinite(ms) && ms >= 0) this.startupPhase.observe({ phase }, ms / 1000);
  }
}
