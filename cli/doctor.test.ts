import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import {
  assessCaBundle,
  assessClockSkew,
  assessLeaf,
  assessProbe,
  CHECKS,
  formatDoctorTable,
  parseBundle,
  parseWarnWithin,
  type DoctorReport,
} from './doctor.ts';

const DAY = 24 * 3600_000;
const now = new Date('2026-12-06T10:00:00Z');
const keys = forge.pki.rsa.generateKeyPair(1024);

function certificate(options: {
  cn: string;
  from: Date;
  days: number;
  ca: boolean;
  issuer?: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey };
}): { pem: string; cert: forge.pki.Certificate } {
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '0' + String(Math.floor(Math.random() * 1e9));
  cert.validity.notBefore = options.from;
  cert.validity.notAfter = new Date(options.from.getTime() + options.days * DAY);
  cert.setSubject([{ name: 'commonName', value: options.cn }]);
  cert.setIssuer(options.issuer?.cert.subject.attributes ?? [{ name: 'commonName', value: options.cn }]);
  cert.setExtensions([{ name: 'basicConstraints', cA: options.ca }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { pem: forge.pki.certificateToPem(cert), cert };
}

const ca = certificate({
  cn: 'Strongroom CA test',
  from: new Date(now.getTime() - 10 * DAY),
  days: 365,
  ca: true,
});
const issuer = { cert: ca.cert, key: keys.privateKey };
const bundle = () => {
  const parsed = parseBundle(ca.pem);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed.certificates;
};

describe('doctor: the webhook CA bundle', () => {
  it('accepts a valid CA, warns within --warn-within, fails when none is valid or it does not parse', () => {
    expect(assessCaBundle(ca.pem, now, 168 * 3600_000)).toEqual({
      status: 'ok',
      detail: expect.stringMatching(
        /^1 CA; the newest, Strongroom CA test, expires .* \(in 355d\)$/,
      ) as string,
    });
    expect(assessCaBundle(ca.pem, now, 400 * DAY).status).toBe('warn');
    const expired = certificate({
      cn: 'old',
      from: new Date(now.getTime() - 400 * DAY),
      days: 365,
      ca: true,
    });
    expect(assessCaBundle(expired.pem, now, DAY)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('no CA of the caBundle is valid now') as string,
    });
    // A retired CA about to expire beside a fresh one is fine: the newest counts.
    expect(assessCaBundle(`${expired.pem}${ca.pem}`, now, DAY).status).toBe('ok');
    expect(assessCaBundle('garbage', now, DAY)).toEqual({
      status: 'fail',
      detail: 'the caBundle does not parse: it holds no PEM certificate',
    });
    const leafOnly = certificate({ cn: 'leaf', from: now, days: 7, ca: false });
    expect(assessCaBundle(leafOnly.pem, now, DAY).status).toBe('fail');
  });
});

describe('doctor: serving certificates', () => {
  it('ok for a fresh leaf of the bundle; warns when renewal is overdue; fails when expired or from another CA', () => {
    const fresh = certificate({
      cn: 'strongroom-webhook',
      from: new Date(now.getTime() - DAY),
      days: 7,
      ca: false,
      issuer,
    });
    expect(assessLeaf('strongroom-webhook-tls', fresh.pem, bundle(), now, 168 * 3600_000)).toEqual({
      status: 'ok',
      detail: expect.stringMatching(
        /^strongroom-webhook-tls: strongroom-webhook, by Strongroom CA test, expires .* \(in 6d\)$/,
      ) as string,
    });
    // 7-day leaves are renewed at 2/3 of their life: with 1 day left the renewal is overdue, --warn-within or not.
    const stale = certificate({
      cn: 'strongroom-broker',
      from: new Date(now.getTime() - 6 * DAY),
      days: 7,
      ca: false,
      issuer,
    });
    expect(assessLeaf('strongroom-broker-tls', stale.pem, bundle(), now, 168 * 3600_000)).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('its renewal (at 2/3 of its life) is overdue') as string,
    });
    const expired = certificate({
      cn: 'x',
      from: new Date(now.getTime() - 8 * DAY),
      days: 7,
      ca: false,
      issuer,
    });
    expect(assessLeaf('s', expired.pem, bundle(), now, DAY)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('expired at') as string,
    });
    const otherCa = certificate({
      cn: 'Another CA',
      from: new Date(now.getTime() - DAY),
      days: 365,
      ca: true,
    });
    const foreign = certificate({
      cn: 'y',
      from: new Date(now.getTime() - DAY),
      days: 7,
      ca: false,
      issuer: { cert: otherCa.cert, key: keys.privateKey },
    });
    expect(assessLeaf('s', foreign.pem, bundle(), now, DAY)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('not signed by any CA of the bundle') as string,
    });
  });
});

describe('doctor: the webhook probe', () => {
  it("is ok only when the webhook's own refusal comes back", () => {
    const denied = {
      kind: 'refused' as const,
      code: 400,
      message:
        'admission webhook "inject.strongroom.dev" denied the request: strongroom: the pod is labelled strongroom.dev/inject=true but has neither annotation',
    };
    expect(assessProbe(denied, 'ml-dev', undefined).status).toBe('ok');
    const down = {
      kind: 'refused' as const,
      code: 500,
      message:
        'Internal error occurred: failed calling webhook "inject.strongroom.dev": failed to call webhook: Post "https://127.0.0.1:1/mutate-pods?timeout=5s": dial tcp 127.0.0.1:1: connect: connection refused',
    };
    expect(assessProbe(down, 'ml-dev', undefined)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('the API server could not call the webhook') as string,
    });
    expect(assessProbe({ kind: 'admitted' }, 'ml-dev', undefined).status).toBe('fail');
    expect(
      assessProbe({ kind: 'admitted' }, 'strongroom-system', "it is the operator's namespace").status,
    ).toBe('warn');
    expect(
      assessProbe({ kind: 'refused', code: 403, message: 'pods is forbidden' }, 'ml-dev', undefined).status,
    ).toBe('warn');
  });
});

describe('doctor: clock skew', () => {
  const serverDate = new Date('2026-12-06T10:00:00Z');
  const base = { serverDate, holder: 'strongroom-0', leaseDurationSeconds: 15 };
  it('ok within a second and the renew period; warn or fail when the leader is ahead; warn when stale', () => {
    expect(assessClockSkew({ ...base, renewTime: new Date('2026-12-06T09:59:59.400Z') }).status).toBe('ok');
    // The Date header is truncated to the second: up to 1 s ahead is not skew.
    expect(assessClockSkew({ ...base, renewTime: new Date('2026-12-06T10:00:00.900Z') }).status).toBe('ok');
    expect(assessClockSkew({ ...base, renewTime: new Date('2026-12-06T10:00:04Z') })).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('ahead of the API server') as string,
    });
    expect(assessClockSkew({ ...base, renewTime: new Date('2026-12-06T10:01:00Z') }).status).toBe('fail');
    expect(assessClockSkew({ ...base, renewTime: new Date('2026-12-06T09:59:00Z') })).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('it stopped renewing, or its clock is behind') as string,
    });
    expect(
      assessClockSkew({ serverDate, renewTime: undefined, holder: undefined, leaseDurationSeconds: 15 })
        .status,
    ).toBe('fail');
  });
});

describe('doctor: flags and output', () => {
  it('parses --warn-within', () => {
    expect(parseWarnWithin('168h')).toBe(7 * DAY);
    expect(parseWarnWithin('30m')).toBe(30 * 60_000);
    expect(() => parseWarnWithin('a week')).toThrow(/not a duration/);
  });

  it('prints one row per check, the remedies, and a summary line', () => {
    const report: DoctorReport = {
      ok: false,
      operatorNamespace: 'strongroom-system',
      checks: [
        { id: 'crds', status: 'ok', detail: 'both Established', method: 'm' },
        {
          id: 'webhook-admission',
          status: 'fail',
          detail: 'could not call it',
          remedy: 'start the operator',
          method: 'm',
        },
      ],
    };
    expect(formatDoctorTable(report)).toBe(
      'CHECK               STATUS   DETAIL\n' +
        'crds                ok       both Established\n' +
        'webhook-admission   fail     could not call it\n' +
        '\nRemedies:\n  webhook-admission: start the operator\n' +
        '\nUNHEALTHY: 1 ok, 0 warn, 1 fail (operator namespace strongroom-system)\n',
    );
    expect(CHECKS.map((c) => c.id)).toEqual([
      'crds',
      'admission-policies',
      'webhook-configuration',
      'webhook-ca',
      'webhook-admission',
      'operator-pods',
      'broker-endpoints',
      'broker-mtls',
      'kms',
      'certificates',
      'clock-skew',
    ]);
  });
});
