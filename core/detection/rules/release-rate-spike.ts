/**
 * release-rate-spike: allowed key releases to one identity in a window, against that identity's own baseline.
 *
 * Windows are tumbling and aligned to the epoch (window k covers [k·W, (k+1)·W)). The baseline b is an
 * exponentially weighted moving average of the identity's completed windows: the first completed window sets
 * b = its count; every later one sets b = α·count + (1 − α)·b; each empty window in between counts as a window of
 * 0 (b decays by (1 − α) per empty window). The window in progress is never part of its own baseline. Windows of
 * history are counted from the identity's first release. The rule fires once per window, when the window's count
 * reaches threshold = max(minCount, ⌈factor · b⌉), and only once the identity has minHistory completed windows.
 */
import { formatIdentity, formatWindow, type Alert, type EvidenceRef } from '../alert.ts';
import type { DetectorLimits, ReleaseRateSpikeConfig } from '../config.ts';
import { identityKey, type Observation } from '../observation.ts';
import { Alerter, type Rule } from '../rule.ts';
import { SubjectMap } from '../subjects.ts';
import { MAX_EVIDENCE } from '../../audit/event.ts';

interface IdentityRate {
  /** The index of the window in progress. */
  window: number;
  count: number;
  /** The first entries of the window in progress (the trigger is added when the rule fires). */
  evidence: EvidenceRef[];
  alerted: boolean;
  baseline: number;
  /** Completed windows since the identity's first release (capped). */
  history: number;
}

const HISTORY_CAP = 1_000_000;

export class ReleaseRateSpike implements Rule {
  readonly name = 'release-rate-spike' as const;
  readonly #config: ReleaseRateSpikeConfig;
  readonly #identities: SubjectMap<IdentityRate>;
  readonly #alerter: Alerter;

  constructor(config: ReleaseRateSpikeConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#identities = new SubjectMap(limits);
    this.#alerter = new Alerter(this.name, config, limits);
  }

  /** The threshold for a baseline: max(minCount, ⌈factor · baseline⌉). */
  threshold(baseline: number): number {
    // Rounded to 1e-9 first so that 5 × 1.2 is 6, not 7.
    return Math.max(this.#config.minCount, Math.ceil(Math.round(this.#config.factor * baseline * 1e9) / 1e9));
  }

  observe(o: Observation): Alert[] {
    if (o.source !== 'release' || o.decision !== 'allow' || o.identity === null) return [];
    const w = this.#config.windowMs;
    const index = Math.floor(o.time / w);
    const key = identityKey(o.identity);
    const state = this.#identities.touch(key, o.time, () => ({
      window: index,
      count: 0,
      evidence: [],
      alerted: false,
      baseline: 0,
      history: 0,
    }));
    if (index > state.window) {
      const alpha = this.#config.smoothing;
      state.baseline = state.history === 0 ? state.count : alpha * state.count + (1 - alpha) * state.baseline;
      const empty = index - state.window - 1;
      if (empty > 0) state.baseline *= (1 - alpha) ** empty;
      state.history = Math.min(HISTORY_CAP, state.history + 1 + empty);
      state.window = index;
      state.count = 0;
      state.evidence = [];
      state.alerted = false;
    }
    state.count += 1;
    if (state.evidence.length < MAX_EVIDENCE - 1) state.evidence.push(o.ref);
    const threshold = this.threshold(state.baseline);
    if (state.alerted || state.history < this.#config.minHistory || state.count < threshold) return [];
    if (!this.#alerter.ready(key, o.time)) return [];
    state.alerted = true;
    const from = index * w;
    const evidence = state.evidence.includes(o.ref) ? state.evidence : [...state.evidence, o.ref];
    return [
      this.#alerter.raise(key, o.time, {
        identity: o.identity,
        artifact: null,
        observed: state.count,
        baseline: Math.round(state.baseline),
        threshold,
        from,
        to: o.time,
        message:
          `${formatIdentity(o.identity)} was released ${String(state.count)} keys in ${formatWindow(w)}; ` +
          `its baseline is ${state.baseline.toFixed(1)} per ${formatWindow(w)} ` +
          `(threshold ${String(this.#config.factor)}x, at least ${String(this.#config.minCount)})`,
        evidence,
      }),
    ];
  }

  sweep(now: number): void {
    this.#identities.sweep(now);
    this.#alerter.sweep(now);
  }

  /** The identity starts again with no history (it needs minHistory windows before it can fire). */
  lift(identity: string): void {
    this.#identities.delete(identity);
  }

  reset(): void {
    this.#identities.clear();
    this.#alerter.reset();
  }
}
