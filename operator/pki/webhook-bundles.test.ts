import { describe, expect, it } from 'vitest';
import { needsCaBundle, setCaBundle, type WebhookConfigurationLike } from './webhook-bundles.ts';

function config(...bundles: (string | undefined)[]): WebhookConfigurationLike {
  return {
    metadata: { name: 'strongroom' },
    webhooks: bundles.map((caBundle) => ({ clientConfig: caBundle === undefined ? {} : { caBundle } })),
  };
}

describe('webhook caBundle decisions', () => {
  it('needs a write when any webhook lacks or differs from the bundle, and not when all carry it', () => {
    expect(needsCaBundle(config('A', 'A'), 'A')).toBe(false);
    expect(needsCaBundle(config('A', 'B'), 'A')).toBe(true);
    expect(needsCaBundle(config(undefined), 'A')).toBe(true);
    expect(needsCaBundle(config(), 'A')).toBe(false);
  });

  it('sets the bundle on every webhook', () => {
    const c = config('old', undefined, 'A');
    setCaBundle(c, 'A');
    expect(c.webhooks?.map((w) => w.clientConfig.caBundle)).toEqual(['A', 'A', 'A']);
    expect(needsCaBundle(c, 'A')).toBe(false);
  });
});
