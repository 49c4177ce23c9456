/**
 * bulk-access: many distinct artifacts, or many distinct versions, released to one identity within a sliding
 * window. Fires when the window holds distinctArtifacts artifacts (namespace/name) or distinctVersions versions
 * (namespace/name@version), then stays quiet for that identity for one window.
 *
 * Lifting a quarantine (an identity-lifted entry) empties the identity's windows and opens a grace period of
 * liftGrace: within it, a release of an artifact or version the identity had been released before (those of its
 * last alert and those still in its windows at the lift) does not count, so its wiped workloads fetching their keys
 * again do not quarantine it again; anything new counts as usual.
 */
import { formatIdentity, formatWindow, type Alert, type EvidenceRef } from '../alert.ts';
import type { BulkAccessConfig, DetectorLimits } from '../config.ts';
import { artifactKey, identityKey, type Observation } from '../observation.ts';
import { Alerter, type Rule } from '../rule.ts';
import { SubjectMap } from '../subjects.ts';

/** Distinct keys within a window: the latest release of each, in order of that release. */
class DistinctWindow {
  readonly #items = new Map<string, { time: number; ref: EvidenceRef }>();
  readonly #windowMs: number;
  readonly #cap: number;

  constructor(windowMs: number, cap: number) {
    this.#windowMs = windowMs;
    this.#cap = Math.max(1, cap);
  }

  add(key: string, time: number, ref: EvidenceRef): void {
    this.#items.delete(key);
    this.#items.set(key, { time, ref });
    for (const [k, item] of this.#items) {
      if (item.time > time - this.#windowMs && this.#items.size <= this.#cap) break;
      this.#items.delete(k);
    }
  }

  clear(): void {
    this.#items.clear();
  }

  get count(): number {
    return this.#items.size;
  }

  get from(): number {
    return this.#items.values().next().value?.time ?? 0;
  }

  get refs(): EvidenceRef[] {
    return [...this.#items.values()].map((i) => i.ref);
  }

  /** The keys held, whatever their time. */
  get keys(): string[] {
    return [...this.#items.keys()];
  }
}

interface IdentityBulk {
  readonly artifacts: DistinctWindow;
  readonly versions: DistinctWindow;
}

/** What an identity had been released (artifact and version keys) and, once lifted, until when it is forgiven. */
interface IdentityHeld {
  keys: Set<string>;
  graceUntil: number;
}

export class BulkAccess implements Rule {
  readonly name = 'bulk-access' as const;
  readonly #config: BulkAccessConfig;
  readonly #identities: SubjectMap<IdentityBulk>;
  /**
   * The keys of each identity's last alert, and the grace after a lift. Not forgotten when idle (a quarantine may
   * last longer than detector.idle, and a quarantined identity is only refused); bounded by maxSubjects.
   */
  readonly #held: SubjectMap<IdentityHeld>;
  readonly #alerter: Alerter;

  constructor(config: BulkAccessConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#identities = new SubjectMap(limits);
    this.#held = new SubjectMap({ maxSubjects: limits.maxSubjects, idleMs: Number.POSITIVE_INFINITY });
    this.#alerter = new Alerter(this.name, config, limits);
  }

  observe(o: Observation): Alert[] {
    if (o.source !== 'release' || o.decision !== 'allow' || o.identity === null || o.artifact === null)
      return [];
    const { windowMs, distinctArtifacts, distinctVersions } = this.#config;
    if (distinctArtifacts === 0 && distinctVersions === 0) return [];
    const key = identityKey(o.identity);
    const artifact = artifactKey(o.artifact);
    const version = `${artifact}@${o.artifact.version ?? ''}`;
    const held = this.#held.get(key);
    if (held !== undefined && o.time < held.graceUntil && held.keys.has(artifact) && held.keys.has(version))
      return [];
    const state = this.#identities.touch(key, o.time, () => ({
      artifacts: new DistinctWindow(windowMs, distinctArtifacts),
      versions: new DistinctWindow(windowMs, distinctVersions),
    }));
    state.artifacts.add(artifact, o.time, o.ref);
    state.versions.add(version, o.time, o.ref);
    const byArtifacts = distinctArtifacts > 0 && state.artifacts.count >= distinctArtifacts;
    const byVersions = !byArtifacts && distinctVersions > 0 && state.versions.count >= distinctVersions;
    if ((!byArtifacts && !byVersions) || !this.#alerter.ready(key, o.time)) return [];
    const window = byArtifacts ? state.artifacts : state.versions;
    const what = byArtifacts ? 'artifacts' : 'artifact versions';
    const threshold = byArtifacts ? distinctArtifacts : distinctVersions;
    const alert = this.#alerter.raise(key, o.time, {
      identity: o.identity,
      artifact: null,
      observed: window.count,
      baseline: 0,
      threshold,
      from: window.from,
      to: o.time,
      message: `${formatIdentity(o.identity)} was released keys of ${String(window.count)} distinct ${what} in ${formatWindow(windowMs)} (threshold ${String(threshold)})`,
      evidence: window.refs,
    });
    this.#held.touch(key, o.time, () => ({ keys: new Set(), graceUntil: 0 })).keys = new Set([
      ...state.artifacts.keys,
      ...state.versions.keys,
    ]);
    state.artifacts.clear();
    state.versions.clear();
    return [alert];
  }

  sweep(now: number): void {
    this.#identities.sweep(now);
    this.#alerter.sweep(now);
  }

  lift(identity: string, now: number): void {
    const state = this.#identities.get(identity);
    const held = this.#held.touch(identity, now, () => ({ keys: new Set(), graceUntil: 0 }));
    held.keys = new Set([...held.keys, ...(state?.artifacts.keys ?? []), ...(state?.versions.keys ?? [])]);
    held.graceUntil = now + this.#config.liftGraceMs;
    this.#identities.delete(identity);
  }

  reset(): void {
    this.#identities.clear();
    this.#held.clear();
    this.#alerter.reset();
  }
}
