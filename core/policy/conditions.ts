/**
 * Standard Kubernetes conditions (metav1.Condition) and status comparison. Pure: the caller passes the clock.
 */
import { PolicyError } from './errors.ts';

/** The status of a condition. */
export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** A condition as stored in a status (the shape of metav1.Condition and of the generated CRD types). */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** What a controller decides about one condition; {@link setCondition} adds the bookkeeping. */
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * `now` as a metav1.Time: RFC 3339 in UTC, truncated to whole seconds ("2026-11-26T09:07:12Z"), which is exactly
 * what the API server stores and returns, so a status read back compares equal to the one written.
 * @throws {PolicyError} if `now` is an invalid Date.
 */
export function kubeTime(now: Date): string {
  const ms = now.getTime();
  if (Number.isNaN(ms)) throw new PolicyError('invalid', 'the current time is an invalid Date');
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/u, 'Z');
}

/**
 * Returns a new array: the condition is replaced/added with observedGeneration = generation (left out when
 * generation is undefined); lastTransitionTime is kept from the existing condition unless status flipped (or it
 * is new), in which case it is now.toISOString() truncated to whole seconds (metav1.Time precision). Order of
 * other conditions preserved; new types appended. Later duplicates of the same type are dropped. The input
 * array and its objects are not modified.
 * @throws {PolicyError} if `now` is an invalid Date and a transition time is needed.
 */
export function setCondition(
  existing: readonly Condition[] | undefined,
  input: ConditionInput,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const prior = findCondition(existing, input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime:
      prior !== undefined && prior.status === input.status ? prior.lastTransitionTime : kubeTime(now),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
  const result: Condition[] = [];
  let placed = false;
  for (const condition of existing ?? []) {
    if (condition.type !== input.type) result.push({ ...condition });
    else if (!placed) {
      result.push(next);
      placed = true;
    }
  }
  if (!placed) result.push(next);
  return result;
}

/** The first condition of the given type, if any. */
export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Deep equality for status objects (key-order independent), used to skip writes that would change nothing.
 * JSON semantics: a property whose value is undefined equals a missing property (neither is serialized), array
 * order matters, and an array never equals an object.
 */
export function statusEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item: unknown, i) => statusEqual(item, b[i]));
  }
  const left = definedEntries(a);
  const right = new Map(definedEntries(b));
  if (left.length !== right.size) return false;
  return left.every(([key, value]) => right.has(key) && statusEqual(value, right.get(key)));
}

function definedEntries(o: object): [string, unknown][] {
  return Object.entries(o).filter(([, value]) => value !== undefined);
}
