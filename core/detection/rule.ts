/**
 * What every rule shares: the interface the detector calls, and the alert builder with its de-duplication (one
 * alert per rule and subject per window).
 */
import type { IdentityRef } from '../audit/event.ts';
import { alertId, boundedEvidence, boundedMessage, type Alert, type EvidenceRef } from './alert.ts';
import type { DetectorLimits, RuleConfig, RuleName } from './config.ts';
import type { Observation } from './observation.ts';
import { SubjectMap } from './subjects.ts';

export interface Rule {
  readonly name: RuleName;
  /** The alerts this observation raises (usually none). */
  observe(o: Observation): Alert[];
  /** Forgets subjects idle since before `now - idle`. */
  sweep(now: number): void;
  /**
   * A quarantine of the identity (`namespace/serviceAccount`) was lifted at `now`: its windows start again empty
   * (cooldowns stay), so what it did before and during the quarantine does not count towards a new alert.
   */
  lift(identity: string, now: number): void;
  /**
   * The entries' clock stepped back to `now` by more than the detector tolerates: every window and cooldown is
   * dropped (they were measured on the other clock); what is not time-based (first touches seen) is kept.
   */
  reset(now: number): void;
}

export interface AlertFacts {
  readonly identity: IdentityRef | null;
  readonly artifact: { readonly namespace: string; readonly name: string } | null;
  readonly observed: number;
  readonly baseline: number;
  readonly threshold: number;
  readonly from: number;
  readonly to: number;
  readonly message: string;
  /** In order; the last one is the entry that triggered the alert. */
  readonly evidence: readonly EvidenceRef[];
}

/**
 * The facts of an alert that one entry raises on its own (first restricted access, a cross-environment attempt, an
 * off-hours release): observed 1 against threshold 1, no baseline, the window is that entry's instant, and the
 * entry is the whole evidence.
 */
export function singleEntryFacts(o: Observation, message: string): AlertFacts {
  return {
    identity: o.identity,
    artifact: o.artifact === null ? null : { namespace: o.artifact.namespace, name: o.artifact.name },
    observed: 1,
    baseline: 0,
    threshold: 1,
    from: o.time,
    to: o.time,
    message,
    evidence: [o.ref],
  };
}

/**
 * Builds a rule's alerts and keeps its cooldowns: after an alert for a subject at time t, the same rule raises no
 * other alert for that subject before t + window.
 */
export class Alerter {
  readonly #name: RuleName;
  readonly #config: RuleConfig;
  readonly #last: SubjectMap<{ at: number }>;

  constructor(name: RuleName, config: RuleConfig, limits: DetectorLimits) {
    this.#name = name;
    this.#config = config;
    this.#last = new SubjectMap(limits);
  }

  /** False while `subject` is in its cooldown at `now`. */
  ready(subject: string, now: number): boolean {
    const last = this.#last.get(subject);
    return last === undefined || now >= last.at + this.#config.windowMs;
  }

  /** The alert, and the start of the subject's cooldown. The caller checked {@link ready}. */
  raise(subject: string, now: number, facts: AlertFacts): Alert {
    this.#last.touch(subject, now, () => ({ at: now })).at = now;
    const trigger = facts.evidence[facts.evidence.length - 1] as EvidenceRef;
    return {
      id: alertId(this.#name, subject, trigger),
      rule: this.#name,
      severity: this.#config.severity,
      identity: facts.identity,
      artifact: facts.artifact,
      observed: facts.observed,
      baseline: facts.baseline,
      threshold: facts.threshold,
      windowMs: this.#config.windowMs,
      from: facts.from,
      to: facts.to,
      message: boundedMessage(facts.message),
      evidence: boundedEvidence(facts.evidence),
    };
  }

  sweep(now: number): void {
    this.#last.sweep(now);
  }

  /** Drops every cooldown. */
  reset(): void {
    this.#last.clear();
  }
}

/**
 * The entries of one subject within a sliding window, oldest first, keeping at most `cap` (the newest): enough to
 * tell whether `cap` of them fall within the window.
 */
export class SlidingWindow {
  readonly #items: { time: number; ref: EvidenceRef }[] = [];
  readonly #windowMs: number;
  readonly #cap: number;

  constructor(windowMs: number, cap: number) {
    this.#windowMs = windowMs;
    this.#cap = Math.max(1, cap);
  }

  /** Adds an entry at `time` and drops what fell out of the window (t <= time - window) or over the cap. */
  add(time: number, ref: EvidenceRef): void {
    this.#items.push({ time, ref });
    this.prune(time);
    if (this.#items.length > this.#cap) this.#items.splice(0, this.#items.length - this.#cap);
  }

  prune(now: number): void {
    let drop = 0;
    while (drop < this.#items.length && (this.#items[drop] as { time: number }).time <= now - this.#windowMs)
      drop++;
    if (drop > 0) this.#items.splice(0, drop);
  }

  clear(): void {
    this.#items.length = 0;
  }

  get count(): number {
    return this.#items.length;
  }

  get from(): number {
    return this.#items[0]?.time ?? 0;
  }

  get refs(): EvidenceRef[] {
    return this.#items.map((i) => i.ref);
  }
}
