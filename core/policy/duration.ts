/**
 * Durations as people write them in flags and specs: Go's `time.ParseDuration` syntax ("1h30m", "15m", "1.5h",
 * "300ms") plus a day unit ("90d" = 2160h). Values are milliseconds.
 */

/** Why a policy input was rejected. */
export type PolicyErrorCode =
  /** The input (a duration, a rotation table, a timestamp) is malformed or out of range. */
  'invalid';

/** A policy input that cannot be used. The message names the bad part; nothing is guessed. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code: PolicyErrorCode;
  constructor(code: PolicyErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

const NS_PER_MS = 1_000_000n;
/** Nanoseconds per unit. "µs" (U+00B5) and "μs" (U+03BC) are Go's spellings of microseconds. */
const UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n],
  ['\u03bcs', 1_000n],
  ['ms', NS_PER_MS],
  ['s', 1_000n * NS_PER_MS],
  ['m', 60_000n * NS_PER_MS],
  ['h', 3_600_000n * NS_PER_MS],
  ['d', 86_400_000n * NS_PER_MS],
]);
/** Go's limit: a duration is an int64 count of nanoseconds (about 292 years). */
const MAX_NS = 2n ** 63n - 1n;
/** Longer inputs are rejected before parsing; no sensible duration needs more. */
const MAX_LENGTH = 128;
const SEGMENT = /^(\d*)(?:\.(\d*))?([^\d.]+)/u;

/**
 * Parses a Go duration ("1h30m", "15m", "720h", "1.5h", "300ms", "0") or a day count ("90d", "1d12h") into
 * milliseconds. Sub-millisecond units give a fractional result ("1500us" → 1.5). Units are case-sensitive;
 * signs other than a leading "+" are rejected.
 * @throws {PolicyError} for an empty, negative, unit-less (other than "0"), unknown-unit, malformed or
 *   overflowing (more than 2^63-1 ns, Go's limit) duration.
 */
export function parseDuration(text: string): number {
  const quoted = JSON.stringify(text.length > MAX_LENGTH ? `${text.slice(0, MAX_LENGTH)}…` : text);
  function fail(why: string): never {
    throw new PolicyError('invalid', `invalid duration ${quoted}: ${why}`);
  }
  if (text.length > MAX_LENGTH) fail(`longer than ${String(MAX_LENGTH)} characters`);
  let rest = text.startsWith('+') ? text.slice(1) : text;
  if (rest.startsWith('-')) fail('negative durations are not allowed');
  if (rest === '') fail('empty');
  if (rest === '0') return 0;
  let total = 0n;
  while (rest !== '') {
    const match = SEGMENT.exec(rest);
    if (match === null)
      fail(/^[\d.]+$/u.test(rest) ? `missing unit after "${rest}"` : `unexpected "${rest}"`);
    const [whole, intDigits = '', fracDigits = '', unitText = ''] = match;
    if (intDigits === '' && fracDigits === '') fail(`a number is needed before "${unitText}"`);
    const unit = UNITS.get(unitText);
    if (unit === undefined) fail(`unknown unit "${unitText}" (expected one of ns, us, ms, s, m, h, d)`);
    total += BigInt(intDigits === '' ? '0' : intDigits) * unit;
    if (fracDigits !== '') total += (BigInt(fracDigits) * unit) / 10n ** BigInt(fracDigits.length);
    if (total > MAX_NS) fail('too large (the maximum is 2562047h47m16.854775807s, about 292 years)');
    rest = rest.slice(whole.length);
  }
  return Number(total / NS_PER_MS) + Number(total % NS_PER_MS) / 1e6;
}

const PARTS: readonly (readonly [string, number])[] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];

/**
 * Formats milliseconds for messages, largest units first and zero parts left out: 5_400_000 → "1h30m",
 * 7_776_000_000 → "90d", 0 → "0s", 1.5 → "1ms500us". Sub-millisecond parts are rounded to the nanosecond.
 * The result parses back with {@link parseDuration} to the same value for every non-negative whole number of
 * milliseconds up to Go's limit. Negative values get a leading "-"; non-finite values are printed as numbers.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return `${String(ms)}ms`;
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let whole = Math.trunc(ms);
  let ns = Math.round((ms - whole) * 1e6);
  if (ns >= 1_000_000) {
    whole += 1;
    ns -= 1_000_000;
  }
  let text = '';
  for (const [unit, size] of PARTS) {
    const count = Math.floor(whole / size);
    if (count > 0) text += `${String(count)}${unit}`;
    whole -= count * size;
  }
  if (ns >= 1_000) text += `${String(Math.floor(ns / 1_000))}us`;
  if (ns % 1_000 > 0) text += `${String(ns % 1_000)}ns`;
  return text === '' ? '0s' : text;
}
