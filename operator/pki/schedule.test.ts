import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuthorityRecord, CurrentAuthority, RetiredAuthority } from './authority-secret.ts';
import { createAuthorityCertificate, generateRsaKey, type RsaKeyPem } from './certificates.ts';
import {
  authorityRolloverAt,
  leafNotAfter,
  leafRenewAt,
  planAuthority,
  retireAuthority,
  trustedBundle,
  trustState,
  type AuthorityPolicy,
} from './schedule.ts';

const DAY = 24 * 3600_000;
const t0 = new Date('2027-01-01T00:00:00Z');
const at = (days: number): Date => new Date(+t0 + days * DAY);
const policy: AuthorityPolicy = {
  caRolloverBeforeMs: 120 * DAY,
  leafValidityMs: 7 * DAY,
  retiredGraceMs: 600_000,
};

let key: RsaKeyPem;
beforeAll(async () => {
  key = await generateRsaKey(2048);
});

/** A CA valid from day `from` for `days` days. */
function ca(from: number, days: number, name = `CA ${from}`): CurrentAuthority {
  const certPem = createAuthorityCertificate(key, {
    commonName: name,
    notBefore: at(from),
    notAfter: at(from + days),
  });
  return { certPem, privateKeyPem: key.privateKeyPem, cert: new X509Certificate(certPem) };
}

function retired(authority: CurrentAuthority, trustUntil: Date): RetiredAuthority {
  return { certPem: authority.certPem, cert: authority.cert, trustUntil };
}

describe('leaf renewal', () => {
  it('is due at 2/3 of the lifetime', () => {
    expect(leafRenewAt(at(0), at(3))).toEqual(at(2));
    expect(leafRenewAt(at(0), at(7))).toEqual(new Date(+t0 + Math.floor((7 * DAY * 2) / 3)));
  });

  it('never outlives the CA, and is refused when the CA has under a minute left', () => {
    expect(leafNotAfter(at(0), 7 * DAY, at(30))).toEqual(at(7));
    expect(leafNotAfter(at(0), 7 * DAY, at(2))).toEqual(at(2));
    expect(leafNotAfter(at(0), 7 * DAY, new Date(+t0 + 59_000))).toBeNull();
    expect(leafNotAfter(at(3), 7 * DAY, at(2))).toBeNull();
  });
});

describe('CA rollover', () => {
  it('keeps the CA until less than the rollover window is left, then rolls over', () => {
    const record: AuthorityRecord = { current: ca(0, 365), retired: [] };
    expect(authorityRolloverAt(record.current, policy)).toEqual(at(245));
    expect(planAuthority(record, at(0), policy)).toEqual({ action: 'keep' });
    expect(planAuthority(record, new Date(+at(245) - 1), policy)).toEqual({ action: 'keep' });
    expect(planAuthority(record, at(245), policy)).toEqual({ action: 'rollover', keepRetired: [] });
    expect(planAuthority(record, at(400), policy)).toEqual({ action: 'rollover', keepRetired: [] });
  });

  it('keeps a retired CA trusted until its last leaf expires (plus grace), never past its own expiry', () => {
    const old = ca(0, 365);
    expect(retireAuthority(old, at(245), policy).trustUntil).toEqual(new Date(+at(252) + 600_000));
    expect(retireAuthority(old, at(362), policy).trustUntil).toEqual(at(365));
  });

  it('drops a retired CA once its leaves have expired, and not before', () => {
    const old = retired(ca(0, 365, 'old'), at(252));
    const record: AuthorityRecord = { current: ca(245, 365, 'new'), retired: [old] };
    expect(planAuthority(record, at(251), policy)).toEqual({ action: 'keep' });
    expect(planAuthority(record, at(252), policy)).toEqual({ action: 'prune', keepRetired: [] });
  });

  it('drops expired retired CAs in the same write as a rollover, keeping the still-trusted ones', () => {
    const older = retired(ca(0, 365, 'older'), at(200));
    const old = retired(ca(100, 365, 'old'), at(500));
    const record: AuthorityRecord = { current: ca(200, 365, 'current'), retired: [older, old] };
    expect(planAuthority(record, at(445), policy)).toEqual({ action: 'rollover', keepRetired: [old] });
  });
});

describe('the bundle', () => {
  it('holds the current CA first, then still-trusted retired CAs newest first, and drops the rest', () => {
    const current = ca(300, 365, 'current');
    const older = retired(ca(0, 365, 'older'), at(260));
    const old = retired(ca(200, 365, 'old'), at(310));
    const record: AuthorityRecord = { current, retired: [older, old] };
    const pems = (bundle: string): string[] =>
      bundle.match(/-----BEGIN[^]*?-----END CERTIFICATE-----\n/g) ?? [];
    expect(pems(trustedBundle(record, at(250)))).toEqual([current.certPem, old.certPem, older.certPem]);
    expect(pems(trustedBundle(record, at(260)))).toEqual([current.certPem, old.certPem]);
    expect(trustedBundle(record, at(310))).toBe(current.certPem);
  });

  it('reports the CA expiry and the earliest time anything needs attention', () => {
    const current = ca(245, 365, 'current');
    const withRetired: AuthorityRecord = { current, retired: [retired(ca(0, 365), at(252))] };
    expect(trustState(withRetired, at(246), policy)).toMatchObject({
      caNotAfter: at(610),
      nextCheckAt: at(252),
    });
    const alone: AuthorityRecord = { current, retired: [] };
    expect(trustState(alone, at(252), policy)).toEqual({
      bundlePem: current.certPem,
      caNotAfter: at(610),
      nextCheckAt: at(490),
    });
  });
});
