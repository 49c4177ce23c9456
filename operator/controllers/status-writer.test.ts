import { describe, expect, it } from 'vitest';
import { statusPatch } from './status-writer.ts';

describe('statusPatch', () => {
  it('sends the new status and nulls for fields that disappeared, so a merge patch really removes them', () => {
    expect(
      statusPatch({ phase: 'Active', latestVersion: 'v1', keys: [] }, { phase: 'Expired', keys: [] }),
    ).toEqual({
      status: { phase: 'Expired', keys: [], latestVersion: null },
    });
  });
  it('with no previous status sends the new one as is', () => {
    expect(statusPatch(undefined, { phase: 'Pending' })).toEqual({ status: { phase: 'Pending' } });
  });
});
