/**
 * denial-burst: refused key releases and refused broker calls (broker-access deny) for one verified identity, or
 * for one artifact, within a sliding window. Fires when the window holds perIdentity (perArtifact) denials, then
 * stays quiet for that subject for one window. Reasons in ignoreReasons (by default `quarantined` and
 * `quarantines-unknown`: refusals of the quarantine itself, not of the caller's behaviour) are not counted.
 */
import { formatIdentity, formatWindow, type Alert } from '../alert.ts';
import type { DenialBurstConfig, DetectorLimits } from '../config.ts';
import { artifactKey, identityKey, type Observation } from '../observation.ts';
import { Alerter, SlidingWindow, type Rule } from '../rule.ts';
import { SubjectMap } from '../subjects.ts';

export class DenialBurst implements Rule {
  readonly name = 'denial-burst' as const;
  readonly #config: DenialBurstConfig;
  readonly #identities: SubjectMap<SlidingWindow>;
  readonly #artifacts: SubjectMap<SlidingWindow>;
  readonly #alerter: Alerter;

  constructor(config: DenialBurstConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#identities = new SubjectMap(limits);
    this.#artifacts = new SubjectMap(limits);
    this.#alerter = new Alerter(this.name, config, limits);
  }

  observe(o: Observation): Alert[] {
    if (o.decision !== 'deny' || this.#config.ignoreReasons.includes(o.reason)) return [];
    const alerts: Alert[] = [];
    const w = this.#config.windowMs;
    const { perIdentity, perArtifact } = this.#config;
    if (o.identity !== null && perIdentity > 0) {
      const key = `identity:${identityKey(o.identity)}`;
      const window = this.#identities.touch(key, o.time, () => new SlidingWindow(w, perIdentity));
      window.add(o.time, o.ref);
      if (window.count >= perIdentity && this.#alerter.ready(key, o.time)) {
        alerts.push(
          this.#alerter.raise(key, o.time, {
            identity: o.identity,
            artifact: null,
            observed: window.count,
            baseline: 0,
            threshold: perIdentity,
            from: window.from,
            to: o.time,
            message: `${formatIdentity(o.identity)} was refused ${String(window.count)} times in ${formatWindow(w)} (threshold ${String(perIdentity)}); the last refusal: ${o.reason}`,
            evidence: window.refs,
          }),
        );
        window.clear();
      }
    }
    if (o.artifact !== null && perArtifact > 0) {
      const key = `artifact:${artifactKey(o.artifact)}`;
      const window = this.#artifacts.touch(key, o.time, () => new SlidingWindow(w, perArtifact));
      window.add(o.time, o.ref);
      if (window.count >= perArtifact && this.#alerter.ready(key, o.time)) {
        alerts.push(
          this.#alerter.raise(key, o.time, {
            identity: null,
            artifact: { namespace: o.artifact.namespace, name: o.artifact.name },
            observed: window.count,
            baseline: 0,
            threshold: perArtifact,
            from: window.from,
            to: o.time,
            message: `artifact ${artifactKey(o.artifact)} was refused to callers ${String(window.count)} times in ${formatWindow(w)} (threshold ${String(perArtifact)}); the last refusal: ${o.reason}`,
            evidence: window.refs,
          }),
        );
        window.clear();
      }
    }
    return alerts;
  }

  sweep(now: number): void {
    this.#identities.sweep(now);
    this.#artifacts.sweep(now);
    this.#alerter.sweep(now);
  }

  lift(identity: string): void {
    this.#identities.delete(`identity:${identity}`);
  }

  reset(): void {
    this.#identities.clear();
    this.#artifacts.clear();
    this.#alerter.reset();
  }
}
