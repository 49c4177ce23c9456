import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalize, CanonicalJsonError } from './canonical-json.ts';
import { AuditError } from './errors.ts';
import {
  AuditKey,
  brokerAccessEvent,
  validateEvent,
  type AnomalyAlertEvent,
  type AuditEvent,
  type BrokerAccessEvent,
  type IdentityLiftedEvent,
  type IdentityQuarantinedEvent,
  type KeyReleaseEvent,
  type EnvironmentEvent,
  type GrantEvent,
  type VersionEvent,
} from './event.ts';
import { GOVERNANCE_EVENTS } from './testdata/fixtures.ts';

const key = new AuditKey(randomBytes(32));
const base = {
  operation: 'attest' as const,
  decision: 'deny' as const,
  reason: 'token-rejected',
  peer: '10.0.0.1:4000',
  verified: false,
  workload: {},
  artifact: null,
  detail: 'the API server did not accept the token',
};

describe('broker-access events', () => {
  it('record secrets only as HMACs and bound the detail', () => {
    const event = brokerAccessEvent(
      { ...base, detail: 'x'.repeat(5000), secrets: { token: 'eyJhbGciOi.secret' } },
      key,
    );
    expect(event.secrets.token).toMatch(/^hmac-sha256:/);
    expect(JSON.stringify(event)).not.toContain('eyJhbGciOi.secret');
    expect(event.detail.length).toBe(1024);
    expect(() => {
      validateEvent(event);
    }).not.toThrow();
  });

  it('fill an empty peer and detail instead of writing empty strings', () => {
    const event = brokerAccessEvent({ ...base, peer: '', detail: '' }, key);
    expect(event.peer).toBe('unknown');
    expect(event.detail).toBe('-');
    validateEvent(event);
  });

  const bad: [string, Partial<Record<keyof BrokerAccessEvent, unknown>>][] = [
    ['an unknown operation', { operation: 'release-everything' }],
    ['a decision other than allow or deny', { decision: 'maybe' }],
    ['an empty reason', { reason: '' }],
    ['a non-boolean verified', { verified: 'yes' }],
    ['a workload with a non-string value', { workload: { namespace: 1 } }],
    ['an artifact that is a list', { artifact: ['a'] }],
    ['a secret in clear', { secrets: { token: 'eyJ...' } }],
  ];
  it.each(bad)('are refused with %s', (_what, change) => {
    const event = { ...brokerAccessEvent(base, key), ...change } as unknown as BrokerAccessEvent;
    expect(() => {
      validateEvent(event);
    }).toThrow(AuditError);
  });
});

describe('governance events', () => {
  it.each(GOVERNANCE_EVENTS.map((e) => [e.type, e] as const))('accept a well-formed %s', (_type, event) => {
    expect(() => {
      validateEvent(event);
    }).not.toThrow();
  });

  const grant = GOVERNANCE_EVENTS[0] as GrantEvent;
  const published = GOVERNANCE_EVENTS.find((e) => e.type === 'version-published') as VersionEvent;
  const sealed = GOVERNANCE_EVENTS.find((e) => e.type === 'version-sealed') as VersionEvent;
  const environment = GOVERNANCE_EVENTS.find((e) => e.type === 'environment-changed') as EnvironmentEvent;
  const bad: [string, object][] = [
    ['a grant event of an unknown type', { ...grant, type: 'grant-forgiven' }],
    ['a grant event without an actor', { ...grant, actor: '' }],
    ['a grant event without a reason', { ...grant, reason: undefined }],
    ['a grant event without the grant uid', { ...grant, grant: { ...grant.grant, uid: '' } }],
    ['groups that are not a list of names', { ...grant, groups: 'ml-approvers' }],
    ['groups with an empty name', { ...grant, groups: [''] }],
    ['a detail longer than 1024 characters', { ...grant, detail: 'x'.repeat(1025) }],
    ['an empty phase', { ...grant, phase: '' }],
    ['a version event without its digest', { ...published, digest: '' }],
    ['a version event without its publisher', { ...published, publisher: undefined }],
    ['a version event without the artifact uid', { ...published, artifact: { namespace: 'a', name: 'b' } }],
    ['a version-sealed event without its key', { ...sealed, key: undefined }],
    ['an environment change to the same value', { ...environment, old: 'dev', new: 'dev' }],
    ['an environment change from null to null', { ...environment, old: null, new: null }],
    ['an environment change with an empty value', { ...environment, new: '' }],
    ['an environment change with a missing value', { ...environment, new: undefined }],
    ['an environment change without a namespace', { ...environment, namespace: '' }],
  ];
  it.each(bad)('refuse %s', (_what, event) => {
    expect(() => {
      validateEvent(event as AuditEvent);
    }).toThrow(AuditError);
  });
});

describe('detection events', () => {
  const alert: AnomalyAlertEvent = {
    type: 'anomaly-alert',
    alert: {
      id: 'a-0123456789abcdef',
      rule: 'release-rate-spike',
      severity: 'high',
      identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
      artifact: null,
      observed: 14,
      baseline: 1,
      threshold: 6,
      windowMs: 60_000,
      from: 1_765_000_000_000,
      to: 1_765_000_042_000,
      message: 'sa ml-prod/trainer was released 14 keys in 60 s; its baseline is 1.2 per 60 s (threshold 5x)',
    },
    evidence: [{ origin: 'strongroom.audit/op-0', seq: 41 }],
  };
  const quarantined: IdentityQuarantinedEvent = {
    type: 'identity-quarantined',
    identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
    actor: 'strongroom-operator',
    reason: 'AnomalyAlert',
    alertId: 'a-0123456789abcdef',
    severity: 'high',
    detail: '',
  };
  const lifted: IdentityLiftedEvent = {
    type: 'identity-lifted',
    identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
    actor: 'unknown',
    reason: 'QuarantineLifted',
  };
  const good: [string, AuditEvent][] = [
    ['an anomaly alert', alert],
    [
      'an alert about an artifact only',
      { ...alert, alert: { ...alert.alert, identity: null, artifact: { namespace: 'a', name: 'b' } } },
    ],
    [
      '32 pieces of evidence',
      { ...alert, evidence: Array.from({ length: 32 }, (_, seq) => ({ origin: 'o', seq })) },
    ],
    ['an automatic quarantine', quarantined],
    [
      'a manual quarantine (no alert id)',
      { ...quarantined, alertId: '', actor: 'unknown', detail: 'by hand' },
    ],
    ['a lifted quarantine', lifted],
  ];
  it.each(good)('accept %s', (_what, event) => {
    expect(() => {
      validateEvent(event);
    }).not.toThrow();
  });

  const withAlert = (change: Record<string, unknown>) => ({ ...alert, alert: { ...alert.alert, ...change } });
  const bad: [string, object][] = [
    ['a float count (canonical JSON has none)', withAlert({ baseline: 1.2 })],
    ['a negative count', withAlert({ observed: -1 })],
    ['an unsafe integer', withAlert({ to: 2 ** 53 })],
    ['a window that ends before it starts', withAlert({ from: 2, to: 1 })],
    ['a string where a count goes', withAlert({ threshold: '6' })],
    ['an unknown severity', withAlert({ severity: 'severe' })],
    ['a rule name that is not kebab-case', withAlert({ rule: 'Release Rate' })],
    ['no message', withAlert({ message: '' })],
    ['no id', withAlert({ id: undefined })],
    ['neither identity nor artifact', withAlert({ identity: null })],
    ['an identity without a service account', withAlert({ identity: { namespace: 'a' } })],
    ['no evidence', { ...alert, evidence: [] }],
    [
      '33 pieces of evidence',
      { ...alert, evidence: Array.from({ length: 33 }, (_, seq) => ({ origin: 'o', seq })) },
    ],
    ['evidence with a float seq', { ...alert, evidence: [{ origin: 'o', seq: 1.5 }] }],
    ['evidence without an origin', { ...alert, evidence: [{ seq: 1 }] }],
    ['a quarantine without an identity', { ...quarantined, identity: undefined }],
    ['a quarantine with an unknown severity', { ...quarantined, severity: 'urgent' }],
    ['a quarantine with a null alert id', { ...quarantined, alertId: null }],
    ['a quarantine with a detail over 1024 characters', { ...quarantined, detail: 'x'.repeat(1025) }],
    ['a quarantine without an actor', { ...quarantined, actor: '' }],
    ['a lift without a reason', { ...lifted, reason: undefined }],
    ['a lift with an empty namespace', { ...lifted, identity: { namespace: '', serviceAccount: 'x' } }],
  ];
  it.each(bad)('refuse %s', (_what, event) => {
    expect(() => {
      validateEvent(event as AuditEvent);
    }).toThrow(AuditError);
  });

  it('cannot be written with a float count: canonical JSON refuses it too', () => {
    expect(() => canonicalize(withAlert({ baseline: 1.2 }))).toThrow(CanonicalJsonError);
  });
});

describe('key-release workload environment', () => {
  const release: KeyReleaseEvent = {
    type: 'key-release',
    decision: 'deny',
    reason: 'cross-environment-not-allowed',
    workload: { namespace: 'dev', serviceAccount: 'reader', podUid: 'u', certificateSerial: '01' },
    artifact: {
      namespace: 'prod',
      name: 'm',
      version: 'v1',
      classification: 'internal',
      environment: 'prod',
    },
    key: { id: 'none', version: 'none' },
    grant: null,
    secrets: {},
  };
  it('is optional', () => {
    validateEvent(release);
    validateEvent({ ...release, workload: { ...release.workload, environment: 'dev' } });
  });
  it('is a non-empty string when present', () => {
    expect(() => {
      validateEvent({ ...release, workload: { ...release.workload, environment: '' } });
    }).toThrow(/workload.environment/);
  });
});
