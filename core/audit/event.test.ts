import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditError } from './errors.ts';
import { AuditKey, brokerAccessEvent, validateEvent, type BrokerAccessEvent } from './event.ts';

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
