/**
 * The AccessGrant controller fails closed on quarantines it cannot see: while the quarantines ConfigMap is not in the
 * cache, a grant is not judged at all (reconcile throws, the queue retries), so no grant of a quarantined identity
 * is evaluated as Active from a cache that does not know of its quarantine (operator/controllers/accessgrant.ts).
 */
import { describe, expect, it } from 'vitest';
import type { AccessGrant } from '../../core/api/index.ts';
import type { QuarantineSet } from '../../core/policy/quarantine.ts';
import { grant } from '../../core/policy/testdata/objects.ts';
import { AccessGrantController, type AccessGrantControllerOptions } from './accessgrant.ts';

function setup(quarantines: () => QuarantineSet | undefined) {
  const g: AccessGrant = grant({ subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }] });
  const calls: string[] = [];
  // Any call on these (a status write, an Event, an audit entry, a revocation) is recorded.
  const recording = (what: string) =>
    new Proxy(
      {},
      {
        get: (_target, property) => () => {
          calls.push(`${what}.${String(property)}`);
          return Promise.resolve({});
        },
      },
    );
  const controller = new AccessGrantController({
    grants: { get: () => g, list: () => [g] },
    artifacts: { get: () => undefined, list: () => [] },
    namespaces: { get: () => undefined, list: () => [] },
    custom: recording('custom'),
    events: recording('events'),
    bus: recording('bus'),
    audit: recording('audit'),
    quarantines,
  } as unknown as AccessGrantControllerOptions);
  return { controller, calls, key: `${g.metadata.namespace ?? ''}/${g.metadata.name}` };
}

describe('AccessGrantController with quarantines not yet cached', () => {
  it('refuses to judge a grant (throws, so the queue retries) and writes nothing', async () => {
    const s = setup(() => undefined);
    await expect(s.controller.reconcile(s.key)).rejects.toThrow(
      'the quarantines ConfigMap is not in the cache yet; the grant is judged once it is',
    );
    expect(s.calls).toEqual([]);
  });
});
