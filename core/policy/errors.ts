/**
 * The error of core/policy, and the policy reading of a duration: the syntax is core/api/validation.ts's
 * (Go's `time.ParseDuration` plus a day unit); a bad duration becomes a {@link PolicyError}.
 */
import { parseDuration } from '../api/validation.ts';

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

/** How many characters of a rejected duration are quoted in the message. */
const QUOTED_MAX = 128;

/**
 * Milliseconds of a duration written in a policy ("90d", "1h30m", "300ms"); see core/api/validation.ts's
 * parseDuration for the syntax.
 * @throws {PolicyError} `invalid duration "<text>": <problem>` for a duration that parseDuration rejects.
 */
export function policyDuration(text: string): number {
  const ms = parseDuration(text);
  if (typeof ms === 'number') return ms;
  const quoted = JSON.stringify(text.length > QUOTED_MAX ? `${text.slice(0, QUOTED_MAX)}…` : text);
  throw new PolicyError('invalid', `invalid duration ${quoted}: ${ms.join('; ')}`);
}
