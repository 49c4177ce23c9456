import type { AuthorityRecord, CurrentAuthority, RetiredAuthority } from './authority-secret.ts';

/** Pure time decisions of the internal CA: when to renew, roll over, drop; what to trust. No I/O, no clock. */

/** Lifetimes the decisions depend on, in milliseconds. */
export interface AuthorityPolicy {
  /** Roll the CA over when less than this is left of its life. */
  readonly caRolloverBeforeMs: number;
  /** The longest life of any leaf the CA signs. */
  readonly leafValidityMs: number;
  /** Extra time a retired CA stays trusted after its last leaf's expiry (replica clock skew, in-flight signing). */
  readonly retiredGraceMs: number;
}

/** What every replica needs from the CA Secret at one instant. */
export interface PkiState {
  /** Every CA that must be trusted now, newest first, PEM blocks separated by newlines. */
  readonly bundlePem: string;
  readonly caNotAfter: Date;
  /** The earliest time the CA Secret needs attention (rollover or dropping a retired CA). */
  readonly nextCheckAt: Date;
}

/** What ensureAuthority must do with the CA Secret. */
export type AuthorityPlan =
  | { readonly action: 'keep' }
  /** Make a new CA and retire the current one (retired CAs past their trust are dropped at the same time). */
  | { readonly action: 'rollover'; readonly keepRetired: readonly RetiredAuthority[] }
  /** Only drop retired CAs whose leaves have all expired. */
  | { readonly action: 'prune'; readonly keepRetired: readonly RetiredAuthority[] };

/** A leaf is renewed at 2/3 of its lifetime. */
export function leafRenewAt(notBefore: Date, notAfter: Date): Date {
  const life = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + Math.floor((life * 2) / 3));
}

/** When the CA must be replaced: `rolloverBeforeMs` before it expires. */
export function authorityRolloverAt(ca: CurrentAuthority, policy: AuthorityPolicy): Date {
  return new Date(ca.cert.validToDate.getTime() - policy.caRolloverBeforeMs);
}

/** Decides what the CA Secret needs at `now`. */
export function planAuthority(record: AuthorityRecord, now: Date, policy: AuthorityPolicy): AuthorityPlan {
  const keepRetired = record.retired.filter((r) => r.trustUntil.getTime() > now.getTime());
  if (now.getTime() >= authorityRolloverAt(record.current, policy).getTime())
    return { action: 'rollover', keepRetired };
  if (keepRetired.length !== record.retired.length) return { action: 'prune', keepRetired };
  return { action: 'keep' };
}

/**
 * The retired form of `current` after a rollover at `now`: trusted until the last leaf it can have signed expires
 * (now + leaf validity + grace), but never past its own expiry, since no leaf outlives its CA.
 */
export function retireAuthority(
  current: CurrentAuthority,
  now: Date,
  policy: AuthorityPolicy,
): RetiredAuthority {
  const lastLeafExpiry = now.getTime() + policy.leafValidityMs + policy.retiredGraceMs;
  const trustUntil = new Date(Math.min(lastLeafExpiry, current.cert.validToDate.getTime()));
  return { certPem: current.certPem, cert: current.cert, trustUntil };
}

/** The PEM bundle to trust at `now`: the current CA first, then retired CAs still trusted, newest first. */
export function trustedBundle(record: AuthorityRecord, now: Date): string {
  const retired = record.retired
    .filter((r) => r.trustUntil.getTime() > now.getTime())
    .toSorted((a, b) => b.cert.validFromDate.getTime() - a.cert.validFromDate.getTime());
  return [record.current.certPem, ...retired.map((r) => r.certPem)].map((pem) => `${pem.trim()}\n`).join('');
}

/** Bundle, CA expiry and next check time of `record` at `now`. */
export function trustState(record: AuthorityRecord, now: Date, policy: AuthorityPolicy): PkiState {
  const times = [
    authorityRolloverAt(record.current, policy).getTime(),
    ...record.retired.map((r) => r.trustUntil.getTime()),
  ];
  return {
    bundlePem: trustedBundle(record, now),
    caNotAfter: record.current.cert.validToDate,
    nextCheckAt: new Date(Math.min(...times)),
  };
}

/**
 * The end of a leaf's validity: `validityMs` from now, cut to the CA's own expiry. Null when the CA has no usable
 * life left (expired, or less than a minute).
 */
export function leafNotAfter(now: Date, validityMs: number, caNotAfter: Date): Date | null {
  const end = Math.min(now.getTime() + validityMs, caNotAfter.getTime());
  return end - now.getTime() < 60_000 ? null : new Date(end);
}
