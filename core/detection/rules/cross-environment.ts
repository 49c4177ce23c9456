/**
 * cross-environment: an attempt to cross environments. A refusal (key-release or broker-access deny) whose reason
 * is one of `reasons` (by default the policy's `cross-environment-not-allowed` and
 * `restricted-cannot-cross-environments`), or — when the event records the workload's environment — any attempt
 * where it differs from the artifact's: refused always, allowed only with includeAllowed (an allowed crossing went
 * through a cross-environment grant with its extra approvals). One alert per subject (the identity, else the
 * artifact) and target artifact per window: an attempt on one artifact does not hide an attempt on another.
 */
import { formatIdentity, type Alert } from '../alert.ts';
import type { CrossEnvironmentConfig, DetectorLimits } from '../config.ts';
import { artifactKey, identityKey, type Observation } from '../observation.ts';
import { Alerter, singleEntryFacts, type Rule } from '../rule.ts';

export class CrossEnvironment implements Rule {
  readonly name = 'cross-environment' as const;
  readonly #config: CrossEnvironmentConfig;
  readonly #alerter: Alerter;

  constructor(config: CrossEnvironmentConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#alerter = new Alerter(this.name, config, limits);
  }

  observe(o: Observation): Alert[] {
    const artifactEnv = o.artifact?.environment;
    const differs =
      o.workloadEnvironment !== undefined &&
      artifactEnv !== undefined &&
      artifactEnv !== 'none' &&
      o.workloadEnvironment !== artifactEnv;
    const byReason = o.decision === 'deny' && this.#config.reasons.includes(o.reason);
    const byEnvironment = differs && (o.decision === 'deny' || this.#config.includeAllowed);
    if (!byReason && !byEnvironment) return [];
    const subject =
      o.identity !== null
        ? `identity:${identityKey(o.identity)}`
        : o.artifact !== null
          ? `artifact:${artifactKey(o.artifact)}`
          : undefined;
    if (subject === undefined) return [];
    const key =
      o.artifact !== null && o.identity !== null ? `${subject} ${artifactKey(o.artifact)}` : subject;
    if (!this.#alerter.ready(key, o.time)) return [];
    const who = o.identity !== null ? formatIdentity(o.identity) : 'an unverified caller';
    const from = o.workloadEnvironment !== undefined ? ` from environment ${o.workloadEnvironment}` : '';
    const target =
      o.artifact !== null
        ? `artifact ${artifactKey(o.artifact)}${artifactEnv !== undefined ? ` (environment ${artifactEnv})` : ''}`
        : 'an artifact';
    const outcome = o.decision === 'deny' ? `refused: ${o.reason}` : 'allowed by a cross-environment grant';
    return [
      this.#alerter.raise(
        key,
        o.time,
        singleEntryFacts(o, `${who} asked for ${target}${from} across environments (${outcome})`),
      ),
    ];
  }

  sweep(now: number): void {
    this.#alerter.sweep(now);
  }

  lift(): void {
    // No window: nothing to reset.
  }

  reset(): void {
    this.#alerter.reset();
  }
}
