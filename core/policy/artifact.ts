/**
 * The ModelArtifact conditions: Ready, KeysReady and RotationCompliant, from facts the controller gathered
 * (which versions have a KEK-wrapped DEK, under which KEK version) and the artifact's lineage. Pure.
 */
import type {
  ModelArtifact,
  ModelArtifactStatus,
  ModelArtifactStatusCondition,
  ModelArtifactStatusKey,
  ModelArtifactStatusRecipientPublicKey,
} from '../api/index.ts';
import { setCondition, type Condition, type ConditionInput } from './conditions.ts';
import { formatDuration } from '../api/validation.ts';
import { rotationStatus } from './rotation.ts';

/** What the controller found out about one version's key. */
export interface VersionKeyFacts {
  version: string;
  /** A KEK-wrapped DEK exists. */
  sealed: boolean;
  kekVersion: string | undefined;
  /** For example "sealed key does not open". A fact for a version not in spec.versions may carry an artifact-wide error. */
  error: string | undefined;
}

/** Everything {@link evaluateArtifact} looks at. */
export interface ArtifactInput {
  artifact: ModelArtifact;
  /** Other artifacts in the same namespace by name, for lineage. */
  siblings: ReadonlyMap<string, ModelArtifact>;
  recipientKeyReady: boolean;
  keys: readonly VersionKeyFacts[];
  /** The KEK of the artifact's classification; undefined when the KMS could not say. */
  kek: { primaryVersion: string; primaryCreatedAt: Date } | undefined;
  rotationPeriodMs: number;
  now: Date;
}

/** The outcome for one artifact. */
export interface ArtifactDecision {
  /** Ready, KeysReady, RotationCompliant, in this order. */
  conditions: ConditionInput[];
  /** The last entry of spec.versions that is not withdrawn, is sealed and has no key error. */
  latestVersion: string | undefined;
  lineageProblems: string[];
  /** When the KEK's primary version is due for rotation (primaryCreatedAt + period); undefined without a KEK. */
  rotationDueAt: Date | undefined;
}

/** Decides the artifact's conditions; see docs/policy.md. Messages never depend on `now`. */
export function evaluateArtifact(input: ArtifactInput): ArtifactDecision {
  const { artifact } = input;
  const ref = `ModelArtifact ${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`;
  const versions = (artifact.spec.versions ?? []).map((v) => v.name);
  const withdrawn = new Set(artifact.spec.withdrawnVersions ?? []);
  const live = versions.filter((v) => !withdrawn.has(v));
  const facts = mergeFacts(input.keys);

  const lineageProblems = checkLineage(artifact, input.siblings, withdrawn);
  const keysReady = judgeKeys(input.recipientKeyReady, versions, live, withdrawn, facts, ref);
  const rotation = judgeRotation(input, live, facts, ref);
  const ready: ConditionInput =
    lineageProblems.length > 0
      ? {
          type: 'Ready',
          status: 'False',
          reason: 'LineageInvalid',
          message: [
            `${ref} has invalid lineage: ${lineageProblems.join('; ')}.`,
            ...(keysReady.status === 'True' ? [] : [keysReady.message]),
          ].join(' '),
        }
      : { ...keysReady, type: 'Ready' };
  const latestVersion = live.findLast((v) => {
    const fact = facts.get(v);
    return fact !== undefined && fact.sealed && fact.error === undefined;
  });
  const rotationDueAt =
    input.kek === undefined
      ? undefined
      : new Date(input.kek.primaryCreatedAt.getTime() + input.rotationPeriodMs);
  return { conditions: [ready, keysReady, rotation], latestVersion, lineageProblems, rotationDueAt };
}

/**
 * The full status to write: observedGeneration, the decision's conditions applied with setCondition (other
 * condition types in `previous` are kept), latestVersion, recipientPublicKey and keys. Absent optional values
 * are left out of the object.
 */
export function artifactStatus(
  previous: ModelArtifactStatus | undefined,
  decision: ArtifactDecision,
  artifact: ModelArtifact,
  extra: { recipientPublicKey?: ModelArtifactStatusRecipientPublicKey; keys: ModelArtifactStatusKey[] },
  now: Date,
): ModelArtifactStatus & { conditions: ModelArtifactStatusCondition[]; keys: ModelArtifactStatusKey[] } {
  const generation = artifact.metadata.generation;
  let conditions: Condition[] | undefined = previous?.conditions;
  for (const condition of decision.conditions)
    conditions = setCondition(conditions, condition, generation, now);
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    conditions: conditions ?? [],
    ...(decision.latestVersion === undefined ? {} : { latestVersion: decision.latestVersion }),
    ...(extra.recipientPublicKey === undefined ? {} : { recipientPublicKey: extra.recipientPublicKey }),
    keys: [...extra.keys],
  };
}

/** One entry per version; duplicates merge to the worse fact (unsealed wins, the first error is kept). */
function mergeFacts(keys: readonly VersionKeyFacts[]): Map<string, VersionKeyFacts> {
  const facts = new Map<string, VersionKeyFacts>();
  for (const fact of keys) {
    const seen = facts.get(fact.version);
    facts.set(
      fact.version,
      seen === undefined
        ? fact
        : {
            version: fact.version,
            sealed: seen.sealed && fact.sealed,
            kekVersion: seen.kekVersion === fact.kekVersion ? seen.kekVersion : undefined,
            error: seen.error ?? fact.error,
          },
    );
  }
  return facts;
}

function checkLineage(
  artifact: ModelArtifact,
  siblings: ReadonlyMap<string, ModelArtifact>,
  withdrawn: ReadonlySet<string>,
): string[] {
  const namespace = artifact.metadata.namespace ?? '';
  const problems: string[] = [];
  for (const version of artifact.spec.versions ?? []) {
    if (withdrawn.has(version.name)) continue; // never released again: its lineage no longer gates Ready
    for (const parent of version.lineage?.parents ?? []) {
      if (parent.kind !== 'ModelArtifact') continue;
      const self = parent.name === artifact.metadata.name;
      if (self && parent.version === version.name) {
        problems.push(`version ${version.name} names itself as its parent`);
        continue;
      }
      const found = self ? artifact : siblings.get(parent.name);
      const parentRef = `ModelArtifact ${namespace}/${parent.name}`;
      if (found === undefined) {
        problems.push(`version ${version.name}: parent ${parentRef} does not exist`);
      } else if (!(found.spec.versions ?? []).some((v) => v.name === parent.version)) {
        problems.push(`version ${version.name}: parent ${parentRef} has no version ${parent.version}`);
      }
    }
  }
  return problems;
}

function plural(names: readonly string[], one: string, many: string): string {
  return `${names.length === 1 ? one : many} ${names.join(', ')}`;
}

function judgeKeys(
  recipientKeyReady: boolean,
  versions: readonly string[],
  live: readonly string[],
  withdrawn: ReadonlySet<string>,
  facts: ReadonlyMap<string, VersionKeyFacts>,
  ref: string,
): ConditionInput {
  const known = new Set(versions);
  const errors = [...facts.values()]
    .filter((f) => f.error !== undefined && !withdrawn.has(f.version))
    .map((f) => (known.has(f.version) ? `version ${f.version}: ${f.error ?? ''}` : (f.error ?? '')));
  if (!recipientKeyReady) {
    return {
      type: 'KeysReady',
      status: 'False',
      reason: 'RecipientKeyMissing',
      message: `${ref} has no usable recipient key yet, so no version can be sealed.${errors.length > 0 ? ` ${errors.join('; ')}.` : ''}`,
    };
  }
  if (errors.length > 0) {
    return {
      type: 'KeysReady',
      status: 'False',
      reason: 'KeyError',
      message: `${ref} has key errors: ${errors.join('; ')}.`,
    };
  }
  const unsealed = live.filter((v) => facts.get(v)?.sealed !== true);
  if (unsealed.length > 0) {
    return {
      type: 'KeysReady',
      status: 'False',
      reason: 'VersionNotSealed',
      message: `${ref} has ${plural(unsealed, 'version', 'versions')} without a sealed key yet.`,
    };
  }
  return {
    type: 'KeysReady',
    status: 'True',
    reason: 'AllVersionsSealed',
    message:
      live.length === 0
        ? `${ref} has its recipient key and no releasable versions yet.`
        : `${ref} has its recipient key and every releasable version is sealed (${live.join(', ')}).`,
  };
}

function judgeRotation(
  input: ArtifactInput,
  live: readonly string[],
  facts: ReadonlyMap<string, VersionKeyFacts>,
  ref: string,
): ConditionInput {
  const { kek } = input;
  if (kek === undefined) {
    return {
      type: 'RotationCompliant',
      status: 'Unknown',
      reason: 'KekUnknown',
      message: `The key-encryption key of ${ref} could not be read, so its age is unknown.`,
    };
  }
  const period = formatDuration(input.rotationPeriodMs);
  const { compliant, dueAt } = rotationStatus(kek.primaryCreatedAt, input.rotationPeriodMs, input.now);
  const created = isoOrUnknown(kek.primaryCreatedAt);
  const due = isoOrUnknown(dueAt);
  if (!compliant) {
    return {
      type: 'RotationCompliant',
      status: 'False',
      reason: 'KekRotationOverdue',
      message: `The primary version ${kek.primaryVersion} of the key-encryption key of ${ref}, created at ${created}, was due for rotation at ${due} (period ${period}).`,
    };
  }
  const behind = live.filter((v) => {
    const fact = facts.get(v);
    return fact?.sealed === true && fact.kekVersion !== kek.primaryVersion;
  });
  if (behind.length > 0) {
    return {
      type: 'RotationCompliant',
      status: 'False',
      reason: 'RewrapPending',
      message: `${ref} has ${plural(behind, 'version', 'versions')} still wrapped under an older key-encryption key version than the primary ${kek.primaryVersion}.`,
    };
  }
  return {
    type: 'RotationCompliant',
    status: 'True',
    reason: 'Compliant',
    message: `Every sealed version of ${ref} is wrapped under key-encryption key version ${kek.primaryVersion}, due for rotation at ${due} (period ${period}).`,
  };
}

function isoOrUnknown(date: Date): string {
  return Number.isNaN(date.getTime()) ? 'an unknown time' : date.toISOString();
}
