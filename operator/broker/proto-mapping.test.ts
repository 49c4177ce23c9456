/** The broker's results and refusals as proto messages and gRPC statuses. */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { BrokerError, notLeaderError } from './errors.ts';
import { attestResponse, callerStatus, protoTimestamp, releaseKeyResponse } from './proto-mapping.ts';

describe('proto mapping', () => {
  it('writes timestamps to the millisecond, and the attested notAfter in whole seconds', () => {
    expect(protoTimestamp(new Date('2025-03-01T12:00:00.250Z'))).toEqual({
      seconds: String(Date.parse('2025-03-01T12:00:00Z') / 1000),
      nanos: 250_000_000,
    });
    const notAfter = new Date('2025-03-01T13:00:00.999Z');
    expect(
      attestResponse({ certificateChainPem: 'c', caBundlePem: 'b', notAfter, spiffeId: 's', podUid: 'u' })
        .notAfter,
    ).toEqual({ seconds: String(Date.parse('2025-03-01T13:00:00Z') / 1000), nanos: 0 });
  });

  it('hands out the release result’s own key buffer (the caller zeroes it) and the audit index as a string', () => {
    const dek = Buffer.alloc(32, 7);
    const response = releaseKeyResponse({
      dek,
      version: 'v1',
      leaseExpiresAt: new Date(0),
      grant: { namespace: 'n', name: 'g', uid: 'x' },
      auditIndex: 42,
      digest: 'sha256:00',
    });
    expect(response.dek).toBe(dek);
    expect(response.auditIndex).toBe('42');
  });

  it('answers a BrokerError with its status and the public message, anything else with a bare INTERNAL', () => {
    expect(
      callerStatus(
        new BrokerError('PERMISSION_DENIED', 'no-grant', 'grant g in n', { publicMessage: 'NoGrant' }),
      ),
    ).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'NoGrant' });
    expect(
      callerStatus(new BrokerError('NOT_FOUND', 'artifact-not-found', 'the artifact does not exist')),
    ).toEqual({
      code: grpc.status.NOT_FOUND,
      details: 'the artifact does not exist',
    });
    expect(callerStatus(new TypeError('x is undefined'))).toEqual({
      code: grpc.status.INTERNAL,
      details: 'internal error',
    });
  });

  it("marks a follower's refusal of PublishVersion as retryable (nothing was written), naming the leader", () => {
    const answer = callerStatus(notLeaderError('op-0'));
    expect(answer.code).toBe(grpc.status.UNAVAILABLE);
    expect(answer.details).toMatch(/^this replica is not the leader \(the leader is op-0\);.*retry$/);
    expect(answer.metadata?.get('strongroom-retry')).toEqual(['not-leader']);
    expect(callerStatus(notLeaderError(undefined)).details).toMatch(/no leader is known yet/);
    // Any other UNAVAILABLE carries no such mark: its outcome may be unknown.
    expect(callerStatus(new BrokerError('UNAVAILABLE', 'audit-unavailable', 'x')).metadata).toBeUndefined();
  });
});
