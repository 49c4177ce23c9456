/**
 * The AccessGrant controller's watch on the quarantines ConfigMap: a change queues exactly the grants naming an
 * identity that was quarantined or lifted (operator/controllers/accessgrant.ts, grantsOfChangedQuarantines).
 */
import { describe, expect, it } from 'vitest';
import type { AccessGrant } from '../../core/api/index.ts';
import {
  formatQuarantineRecord,
  parseQuarantines,
  type QuarantineSet,
} from '../../core/policy/quarantine.ts';
import { grant } from '../../core/policy/testdata/objects.ts';
import { AccessGrantController, type AccessGrantControllerOptions } from '../controllers/accessgrant.ts';

const value = formatQuarantineRecord({
  since: '2026-12-07T10:00:00.000Z',
  alertId: 'a-1',
  rule: 'bulk-access',
  severity: 'high',
  reason: 'bulk',
});

function named(name: string, subjects: AccessGrant['spec']['subjects']): AccessGrant {
  const g = grant({ subjects });
  return { ...g, metadata: Object.assign({}, g.metadata, { name }) };
}

function controller(grants: AccessGrant[], current: () => QuarantineSet | undefined): AccessGrantController {
  return new AccessGrantController({
    grants: { list: () => grants },
    quarantines: current,
  } as unknown as AccessGrantControllerOptions);
}

describe('grantsOfChangedQuarantines', () => {
  const grants = [
    named('reader', [{ namespace: 'ml-dev', serviceAccount: 'reader' }]),
    named('both', [
      { namespace: 'ml-dev', serviceAccount: 'trainer' },
      { namespace: 'ml-prod', serviceAccount: 'reader' },
    ]),
    named('other', [{ namespace: 'ml-dev', serviceAccount: 'other' }]),
  ];

  it('queues the grants of identities added, removed or changed, and nothing when nothing changed', () => {
    let set: QuarantineSet | undefined = parseQuarantines({});
    const c = controller(grants, () => set);
    expect(c.grantsOfChangedQuarantines()).toEqual([]);
    set = parseQuarantines({ 'ml-dev.reader': value });
    expect(c.grantsOfChangedQuarantines()).toEqual(['ml-dev/reader']);
    set = parseQuarantines({ 'ml-dev.reader': value, 'ml-prod.reader': value });
    expect(c.grantsOfChangedQuarantines()).toEqual(['ml-dev/both']);
    // A record rewritten (the grants' message names it) queues its grants; the same set again queues nothing.
    set = parseQuarantines({ 'ml-dev.reader': value, 'ml-prod.reader': '{' });
    expect(c.grantsOfChangedQuarantines()).toEqual(['ml-dev/both']);
    expect(c.grantsOfChangedQuarantines()).toEqual([]);
    set = parseQuarantines({});
    expect(c.grantsOfChangedQuarantines()).toEqual(['ml-dev/reader', 'ml-dev/both']);
  });

  it('queues every grant while the quarantines are not known', () => {
    const c = controller(grants, () => undefined);
    expect(c.grantsOfChangedQuarantines()).toEqual(['ml-dev/reader', 'ml-dev/both', 'ml-dev/other']);
  });
});
