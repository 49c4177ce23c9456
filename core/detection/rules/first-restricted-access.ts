/**
 * first-restricted-access: the first allowed key release of a restricted artifact (any version) to an identity,
 * first relative to what this detector has seen. A denied attempt is not a touch (nothing was released; refusals are
 * denial-burst's and cross-environment's). One alert per identity per window: a first touch by the same identity
 * within the window raises nothing and is not remembered, so the next release of that pair after the window is a
 * first touch again and alerts (one harmless first touch cannot hide the others for the rest of the window;
 * bulk-access covers many at once).
 */
import { formatIdentity, type Alert } from '../alert.ts';
import type { DetectorLimits, FirstRestrictedAccessConfig } from '../config.ts';
import { artifactKey, identityKey, type Observation } from '../observation.ts';
import { Alerter, singleEntryFacts, type Rule } from '../rule.ts';
import { SubjectMap } from '../subjects.ts';

export class FirstRestrictedAccess implements Rule {
  readonly name = 'first-restricted-access' as const;
  readonly #config: FirstRestrictedAccessConfig;
  /** identity × artifact pairs already seen released. */
  readonly #pairs: SubjectMap<true>;
  readonly #alerter: Alerter;

  constructor(config: FirstRestrictedAccessConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#pairs = new SubjectMap(limits);
    this.#alerter = new Alerter(this.name, config, limits);
  }

  observe(o: Observation): Alert[] {
    if (o.source !== 'release' || o.decision !== 'allow' || o.identity === null || o.artifact === null)
      return [];
    const classification = o.artifact.classification ?? '';
    if (!this.#config.classifications.includes(classification)) return [];
    const identity = identityKey(o.identity);
    const pair = `${identity} ${artifactKey(o.artifact)}`;
    if (this.#pairs.has(pair)) {
      this.#pairs.touch(pair, o.time, () => true);
      return [];
    }
    // A first touch in the identity's cooldown is not remembered: it stays first until it can alert.
    if (!this.#alerter.ready(identity, o.time)) return [];
    this.#pairs.touch(pair, o.time, () => true);
    return [
      this.#alerter.raise(
        identity,
        o.time,
        singleEntryFacts(
          o,
          `${formatIdentity(o.identity)} was released a key of ${classification} artifact ${artifactKey(o.artifact)} (version ${o.artifact.version ?? 'unknown'}) for the first time this detector has seen`,
        ),
      ),
    ];
  }

  sweep(now: number): void {
    this.#pairs.sweep(now);
    this.#alerter.sweep(now);
  }

  lift(): void {
    // The pairs seen are not a window: a lifted identity's known artifacts stay known.
  }

  reset(now: number): void {
    this.#pairs.rebase(now);
    this.#alerter.reset();
  }
}
