/** The broker's audit trail fails closed with one typed error: UNAVAILABLE, `audit-unavailable`, with the cause. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditError, AuditKey, type AppendReceipt, type BrokerAccessInput } from '../../core/audit/index.ts';
import { AuditUnavailableError, BrokerAuditTrail } from './audit-trail.ts';
import { BrokerError } from './errors.ts';

const access: BrokerAccessInput = {
  operation: 'connect',
  decision: 'deny',
  reason: 'no-client-certificate',
  peer: '10.0.0.7:51234',
  verified: false,
  workload: {},
  artifact: null,
  detail: 'broker listener: no certificate',
};

describe('BrokerAuditTrail', () => {
  it('rejects with AuditUnavailableError, caused by the closed log, until a log is attached', async () => {
    const error = await new BrokerAuditTrail().access(access).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditUnavailableError);
    expect(error).toBeInstanceOf(BrokerError);
    expect(error).toMatchObject({
      status: 'UNAVAILABLE',
      reason: 'audit-unavailable',
      message: 'the audit log is unavailable; retry later',
    });
    expect((error as Error).cause).toBeInstanceOf(AuditError);
  });

  it('rejects with AuditUnavailableError caused by the failed append, and counts only durable decisions', async () => {
    const decisions: string[] = [];
    const trail = new BrokerAuditTrail((operation, decision) => decisions.push(`${operation}:${decision}`));
    const failure = new Error('disk full');
    trail.attach({ append: () => Promise.reject(failure) }, new AuditKey(randomBytes(32)));
    const error = await trail.access(access).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditUnavailableError);
    expect((error as Error).cause).toBe(failure);
    expect(decisions).toEqual([]);

    const receipt: AppendReceipt = { seq: 7, time: '2025-01-01T00:00:00Z', leafHash: '00' };
    trail.attach({ append: () => Promise.resolve(receipt) }, new AuditKey(randomBytes(32)));
    await expect(trail.access(access)).resolves.toBe(receipt);
    expect(decisions).toEqual(['connect:deny']);
  });
});
