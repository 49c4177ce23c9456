/**
 * KEK rotation policy: how old the primary version of a classification's key-encryption key may get. The periods
 * come from the classification table (`<classification>.kekRotation`, core/policy/classification.ts); the
 * operator's `--kek-rotation` flag overrides some of them (see {@link parseKekRotationOverrides}).
 */
import { CLASSIFICATIONS, type Classification } from '../api/index.ts';
import type { ClassificationTable } from './classification.ts';
import { formatDuration } from '../api/validation.ts';
import { PolicyError, policyDuration } from './errors.ts';

/** Maximum age of the KEK's primary version, in milliseconds, per classification. */
export type RotationTable = Readonly<Record<Classification, number>>;

/** Rotation periods that replace the classification table's, per classification named. */
export type RotationOverrides = Readonly<Partial<Record<Classification, number>>>;

/**
 * The shortest rotation period an override may set. Seconds are allowed so that tests and demos can watch a
 * rotation happen (the classification table itself demands at least 1m); production tables use days.
 */
const MIN_PERIOD_MS = 1_000;

/** The rotation period of every classification in the table. */
export function rotationPeriods(table: ClassificationTable): RotationTable {
  const periods = {} as Record<Classification, number>;
  for (const c of CLASSIFICATIONS) periods[c] = table.classifications[c].kekRotationMs;
  return Object.freeze(periods);
}

/** One version of a KEK and its age, as a KMS provider reports it. */
export interface KekVersionAge {
  version: string;
  createdAt: Date;
  primary: boolean;
}

function isClassification(name: string): name is Classification {
  return (CLASSIFICATIONS as readonly string[]).includes(name);
}

/**
 * "restricted=30d,confidential=2160h" → `{ restricted: 30d, confidential: 90d }` in milliseconds: the periods that
 * replace the classification table's. Blank text gives no overrides; whitespace around entries, names and values
 * is ignored.
 * @throws {PolicyError} naming the bad part for an empty or malformed entry, an unknown classification, a
 *   duplicate, a bad duration, or a period under 1 second.
 */
export function parseKekRotationOverrides(text: string): RotationOverrides {
  const table: Partial<Record<Classification, number>> = {};
  if (text.trim() === '') return Object.freeze(table);
  const seen = new Set<string>();
  for (const [index, raw] of text.split(',').entries()) {
    const entry = raw.trim();
    const where = `rotation table entry ${String(index + 1)}`;
    if (entry === '') throw new PolicyError('invalid', `${where} is empty in ${JSON.stringify(text)}`);
    const eq = entry.indexOf('=');
    if (eq < 0) {
      throw new PolicyError(
        'invalid',
        `${where} ${JSON.stringify(entry)} must have the form classification=duration, for example restricted=30d`,
      );
    }
    const name = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    if (!isClassification(name)) {
      throw new PolicyError(
        'invalid',
        `${where} names unknown classification ${JSON.stringify(name)}; expected one of ${CLASSIFICATIONS.join(', ')}`,
      );
    }
    if (seen.has(name)) throw new PolicyError('invalid', `${where} sets ${name} a second time`);
    seen.add(name);
    let period: number;
    try {
      period = policyDuration(value);
    } catch (error) {
      throw new PolicyError('invalid', `${where}: rotation period of ${name}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (period < MIN_PERIOD_MS) {
      throw new PolicyError(
        'invalid',
        `${where}: rotation period of ${name} is ${formatDuration(period)}; it must be at least 1s`,
      );
    }
    table[name] = period;
  }
  return Object.freeze(table);
}

/**
 * Is the KEK's primary version younger than the period? When is rotation due? Fails closed: an invalid date
 * or a non-positive or NaN period is never compliant. A creation time in the future (clock skew) counts as
 * age 0.
 */
export function rotationStatus(
  primaryCreatedAt: Date,
  periodMs: number,
  now: Date,
): { compliant: boolean; ageMs: number; dueAt: Date } {
  const created = primaryCreatedAt.getTime();
  const ageMs = Math.max(0, now.getTime() - created);
  const dueAt = new Date(created + periodMs);
  const compliant = periodMs > 0 && ageMs < periodMs;
  return { compliant, ageMs, dueAt };
}

/** The retention of retired KEK versions of every classification in the table (`<c>.kekVersionRetention`). */
export function retentionPeriods(table: ClassificationTable): RotationTable {
  const periods = {} as Record<Classification, number>;
  for (const c of CLASSIFICATIONS) periods[c] = table.classifications[c].kekVersionRetentionMs;
  return Object.freeze(periods);
}

/** One version of a KEK as a provider lists it (core/kms/provider.ts KeyVersionInfo). */
export interface KekVersionState {
  readonly version: string;
  readonly state: 'enabled' | 'destroyed';
  readonly primary: boolean;
  /** RFC 3339. */
  readonly createdAt: string;
}

/** What {@link retiredVersionsDue} decided for one KEK. */
export interface RetirementPlan {
  /** Versions to destroy now, oldest first. */
  readonly destroy: readonly string[];
  /**
   * Why nothing may be destroyed, when that is so: `in-use` (a wrapped key still uses a version that is not the
   * primary: the rewrap has not finished), `unknown` (nobody can say which versions are in use, e.g. a cache not
   * synced), `no-primary`, `bad-retention`. Undefined when the plan is made.
   */
  readonly blocked?: 'in-use' | 'unknown' | 'no-primary' | 'bad-retention';
  /** When the next retired version falls due (to come back then), if one is waiting for its retention. */
  readonly nextDueAt?: Date;
}

/**
 * The destruction rule for retired KEK versions (docs/kms.md, "Rotation, retention, destruction"):
 *
 * - A version is *retired* from the moment the version that replaced it as primary was created: the next version in
 *   the provider's list (versions are listed oldest first and each rotation adds one and makes it primary).
 * - Nothing is destroyed unless every wrapped key known to use this KEK is on its primary version (`inUse` holds only
 *   the primary, or nothing): a rotation's rewrap must have finished everywhere first. `inUse` undefined means the
 *   caller cannot tell (fail closed: nothing is destroyed).
 * - Then each enabled, non-primary version retired at least `retentionMs` ago is destroyed.
 *
 * Fails closed: a non-positive or NaN retention, an unreadable creation time, a version in use or a missing primary
 * destroys nothing (for that version, or at all).
 */
export function retiredVersionsDue(input: {
  readonly versions: readonly KekVersionState[];
  readonly inUse: ReadonlySet<string> | undefined;
  readonly retentionMs: number;
  readonly now: Date;
}): RetirementPlan {
  const { versions, inUse, retentionMs, now } = input;
  if (!(retentionMs > 0) || Number.isNaN(now.getTime())) return { destroy: [], blocked: 'bad-retention' };
  const primary = versions.find((v) => v.primary && v.state === 'enabled');
  if (!primary) return { destroy: [], blocked: 'no-primary' };
  if (inUse === undefined) return { destroy: [], blocked: 'unknown' };
  if ([...inUse].some((v) => v !== primary.version)) return { destroy: [], blocked: 'in-use' };
  const destroy: string[] = [];
  let next: number | undefined;
  for (const [i, v] of versions.entries()) {
    if (v.primary || v.state !== 'enabled') continue;
    const successor = versions[i + 1];
    const retiredAt = successor ? new Date(successor.createdAt).getTime() : Number.NaN;
    if (Number.isNaN(retiredAt)) continue;
    const dueAt = retiredAt + retentionMs;
    if (now.getTime() >= dueAt) destroy.push(v.version);
    else next = next === undefined ? dueAt : Math.min(next, dueAt);
  }
  return next === undefined ? { destroy } : { destroy, nextDueAt: new Date(next) };
}
