import { describe, expect, it } from 'vitest';
import { DEFAULT_CLASSIFICATION_TABLE } from '../policy/classification.ts';
import { governanceDefaults } from './defaults.ts';

describe('governanceDefaults', () => {
  it('are the operator table’s defaults, so the admission policies and the operator agree on a missing key', () => {
    const d = governanceDefaults();
    const t = DEFAULT_CLASSIFICATION_TABLE;
    expect(d.platformAdminGroups.split(',')).toEqual(t.platformAdminGroups);
    expect(d.securityGroups.split(',')).toEqual(t.securityGroups);
    for (const c of ['public', 'internal', 'confidential', 'restricted'] as const) {
      expect(d.approverGroups[c].split(',').filter(Boolean)).toEqual(t.classifications[c].approverGroups);
      expect(d.publisherGroups[c].split(',').filter(Boolean)).toEqual(t.classifications[c].publisherGroups);
    }
    expect(d.publisherGroups.restricted).toBe('');
  });
});
