/**
 * The anomaly detector (docs/detection.md): fed the audit entries of one log in order, it returns the alerts each
 * entry raises. It is pure and deterministic: no clock (time is the entries'), no I/O, no Kubernetes. Its state is
 * in memory and bounded (detector.maxSubjects per map, subjects idle for detector.idle forgotten); a new detector
 * knows nothing until it is fed, so a caller that wants history replays the log through {@link seed} first.
 */
import type { Alert } from './alert.ts';
import { RULE_NAMES, type DetectionConfig, type RuleName } from './config.ts';
import { entryTime, identityKey, observationOf, type DetectorEntry } from './observation.ts';
import type { Rule } from './rule.ts';
import { BulkAccess } from './rules/bulk-access.ts';
import { CrossEnvironment } from './rules/cross-environment.ts';
import { DenialBurst } from './rules/denial-burst.ts';
import { FirstRestrictedAccess } from './rules/first-restricted-access.ts';
import { OffHours } from './rules/off-hours.ts';
import { ReleaseRateSpike } from './rules/release-rate-spike.ts';

/** How many observations between two sweeps of idle subjects. */
const SWEEP_EVERY = 256;

export class AnomalyDetector {
  readonly config: DetectionConfig;
  readonly #rules: readonly Rule[];
  /** How far an entry's time may fall behind the latest one and still count as that latest time (a small skew). */
  readonly #toleranceMs: number;
  #now = 0;
  #sinceSweep = 0;

  constructor(config: DetectionConfig) {
    this.config = config;
    const { rules, detector: limits } = config;
    const all: Record<RuleName, Rule> = {
      'release-rate-spike': new ReleaseRateSpike(rules['release-rate-spike'], limits),
      'denial-burst': new DenialBurst(rules['denial-burst'], limits),
      'first-restricted-access': new FirstRestrictedAccess(rules['first-restricted-access'], limits),
      'bulk-access': new BulkAccess(rules['bulk-access'], limits),
      'cross-environment': new CrossEnvironment(rules['cross-environment'], limits),
      'off-hours': new OffHours(rules['off-hours'], limits),
    };
    const enabled = RULE_NAMES.filter((name) => rules[name].enabled);
    this.#rules = enabled.map((name) => all[name]);
    this.#toleranceMs = Math.min(...enabled.map((name) => rules[name].windowMs));
  }

  /**
   * The alerts `entry` raises, in the order of RULE_NAMES. Only key-release and broker-access events are looked at;
   * the detector's own anomaly-alert and identity-quarantined events, grants, heartbeats and the rest raise nothing.
   * An identity-lifted entry raises nothing either, but starts the identity's windows again (see Rule.lift).
   *
   * Time: an entry whose time is earlier than the latest seen by at most the smallest window of the enabled rules
   * (a small skew, e.g. between two writers' clocks) counts as that latest time. An entry further back means the
   * clock was stepped back: pinning every later entry to the old latest time would stop the windows from moving
   * and turn steady traffic into a spike, so instead every window and cooldown is dropped and time goes on from the
   * entry's. An entry without a usable time is ignored.
   */
  observe(entry: DetectorEntry): Alert[] {
    const time = entryTime(entry.time);
    if (time === undefined) return [];
    if (time < this.#now - this.#toleranceMs) {
      this.#now = time;
      for (const rule of this.#rules) rule.reset(time);
    } else {
      this.#now = Math.max(this.#now, time);
    }
    if (entry.event.type === 'identity-lifted') {
      const identity = identityKey(entry.event.identity);
      for (const rule of this.#rules) rule.lift(identity, this.#now);
      return [];
    }
    const o = observationOf({ origin: entry.origin, seq: entry.seq }, this.#now, entry.event);
    if (o === undefined) return [];
    const alerts = this.#rules.flatMap((rule) => rule.observe(o));
    if (++this.#sinceSweep >= SWEEP_EVERY) {
      this.#sinceSweep = 0;
      for (const rule of this.#rules) rule.sweep(this.#now);
    }
    return alerts;
  }

  /**
   * Feeds history without raising anything: the state (baselines, first touches seen, cooldowns) is built as by
   * observe, and the alerts are dropped. For replaying a log on start.
   */
  seed(entry: DetectorEntry): void {
    this.observe(entry);
  }
}
