import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditError } from './errors.ts';
import {
  AuditKey,
  brokerAccessEvent,
  validateEvent,
  type AuditEvent,
  type BrokerAccessEvent,
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
