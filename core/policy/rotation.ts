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
