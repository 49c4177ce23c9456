import { describe, expect, it } from 'vitest';
import type { Revocation__Output } from '../proto/generated/strongroom/v1/Revocation.ts';
import type { WatchRevocationsResponse__Output } from '../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { advance, revocationConcerns } from './revocation.ts';

const planned = { namespace: 'ml', name: 'resnet', version: 'v3' };

function revocation(overrides: Partial<Revocation__Output> = {}): Revocation__Output {
  return {
    seq: '7',
    epoch: 'e1',
    reason: 'REVOCATION_REASON_GRANT_DELETED',
    artifact: { namespace: 'ml', name: 'resnet' },
    grant: { namespace: 'ml', name: 'readers', uid: 'g1' },
    versions: [],
    message: 'grant deleted',
    timestamp: null,
    endedAt: null,
    ...overrides,
  };
}

describe('revocationConcerns', () => {
  it('matches the same artifact with no versions (all) or with the planned version listed', () => {
    expect(revocationConcerns(revocation(), planned)).toBe(true);
    expect(revocationConcerns(revocation({ versions: ['v2', 'v3'] }), planned)).toBe(true);
  });

  it('ignores other versions, other artifacts and the same name in another namespace', () => {
    expect(revocationConcerns(revocation({ versions: ['v2'] }), planned)).toBe(false);
    expect(revocationConcerns(revocation({ artifact: { namespace: 'ml', name: 'bert' } }), planned)).toBe(
      false,
    );
    expect(revocationConcerns(revocation({ artifact: { namespace: 'dev', name: 'resnet' } }), planned)).toBe(
      false,
    );
  });

  it('fails closed: no artifact, or an unspecified reason, concerns everything', () => {
    expect(revocationConcerns(revocation({ artifact: null }), planned)).toBe(true);
    expect(
      revocationConcerns(
        revocation({ reason: 'REVOCATION_REASON_UNSPECIFIED', artifact: { namespace: 'x', name: 'y' } }),
        planned,
      ),
    ).toBe(true);
  });

  it('ignores the end of another grant than the one the key was released under, and fails closed when unsure', () => {
    // Released under g1: g2 ending leaves access in place (the next renewal re-authorizes anyway).
    expect(
      revocationConcerns(revocation({ grant: { namespace: 'ml', name: 'other', uid: 'g2' } }), planned, 'g1'),
    ).toBe(false);
    expect(revocationConcerns(revocation(), planned, 'g1')).toBe(true);
    // Not known what the key was released under, or no grant named (the artifact went away): it applies.
    expect(
      revocationConcerns(revocation({ grant: { namespace: 'ml', name: 'other', uid: 'g2' } }), planned),
    ).toBe(true);
    expect(
      revocationConcerns(
        revocation({ grant: null, reason: 'REVOCATION_REASON_ARTIFACT_DELETED' }),
        planned,
        'g1',
      ),
    ).toBe(true);
    expect(
      revocationConcerns(revocation({ grant: { namespace: 'ml', name: 'x', uid: '' } }), planned, 'g1'),
    ).toBe(true);
  });
});

describe('advance', () => {
  const heartbeat = (epoch: string, lastSeq: string): WatchRevocationsResponse__Output => ({
    event: 'heartbeat',
    heartbeat: { epoch, lastSeq, timestamp: null, interval: null },
  });

  it('takes the position from revocations, heartbeats and resyncs', () => {
    let p = advance(undefined, heartbeat('e1', '0'));
    expect(p).toEqual({ epoch: 'e1', seq: 0n });
    p = advance(p, { event: 'revocation', revocation: revocation({ seq: '12' }) });
    expect(p).toEqual({ epoch: 'e1', seq: 12n });
    p = advance(p, { event: 'resync', resync: { epoch: 'e2', lastSeq: '3', message: 'new epoch' } });
    expect(p).toEqual({ epoch: 'e2', seq: 3n });
  });

  it('never moves backwards within an epoch, and keeps the position for a message without an epoch', () => {
    const p = { epoch: 'e1', seq: 20n };
    expect(advance(p, heartbeat('e1', '5'))).toBe(p);
    expect(advance(p, heartbeat('', '99'))).toBe(p);
    expect(advance(p, heartbeat('e1', '18446744073709551615'))).toEqual({
      epoch: 'e1',
      seq: 18446744073709551615n,
    });
  });
});
