import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import winston from 'winston';
import { InternalCa, type PkiOptions } from './internal-ca.ts';

const DAY = 24 * 3600_000;
const logger = winston.createLogger({ silent: true });

function construct(options: Partial<PkiOptions>): unknown {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  try {
    return new InternalCa(kubeConfig, { namespace: 'strongroom', logger, ...options });
  } catch (error) {
    return error;
  }
}

describe('InternalCa options', () => {
  it('accepts the defaults and consistent lifetimes', () => {
    expect(construct({})).toBeInstanceOf(InternalCa);
    expect(
      construct({ caValidityMs: 30 * DAY, caRolloverBeforeMs: 10 * DAY, leafValidityMs: DAY }),
    ).toBeInstanceOf(InternalCa);
  });

  it.each([
    ['a leaf validity as long as the rollover window', { caValidityMs: 30 * DAY, leafValidityMs: 10 * DAY }],
    ['a rollover window as long as the CA life', { caValidityMs: 30 * DAY, caRolloverBeforeMs: 30 * DAY }],
    ['a zero leaf validity', { leafValidityMs: 0 }],
    ['a fractional lifetime', { caValidityMs: 30 * DAY + 0.5 }],
    ['an invalid namespace', { namespace: 'Not A Namespace' }],
  ])('refuses %s with PkiError(invalid)', (_, options) => {
    expect(construct(options)).toMatchObject({ name: 'PkiError', code: 'invalid' });
  });
});
