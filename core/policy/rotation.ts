/**
 * KEK rotation policy: how old the primary version of a classification's key-encryption key may get.
 */
import { CLASSIFICATIONS, type Classification } from '../api/index.ts';
import { PolicyError, formatDuration, parseDuration } from './duration.ts';

/** Maximum age of the KEK's primary version, in milliseconds, per classification. */
export type RotationTable = Readonly<Record<Classification, number>>;

const DAY = 86_400_000;
/** The shortest rotation period a table may set. */
/** Seconds are allowed so that tests and demos can watch a rotation happen; production tables use days. */
const MIN_PERIOD_MS = 1_000;

/** public 365d, internal 180d, confidential 90d, restricted 30d. */
export const DEFAULT_ROTATION_TABLE: RotationTable = Object.freeze({
  public: 365 * DAY,
  internal: 180 * DAY,
  confidential: 90 * DAY,
  restricted: 30 * DAY,
});

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
 * "restricted=30d,confidential=2160h" → the default table with those entries replaced. Blank text gives the
 * default table; whitespace around entries, names and values is ignored.
 * @throws {PolicyError} naming the bad part for an empty or malformed entry, an unknown classification, a
 *   duplicate, a bad duration, or a period under 1 second.
 */
export function parseRotationTable(text: string): RotationTable {
  const table: Record<Classification, number> = { ...DEFAULT_ROTATION_TABLE };
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
      period = parseDuration(value);
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
