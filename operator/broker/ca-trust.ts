/**
 * The operator CA certificates the broker trusts right now, as a set a pod check can read synchronously: a wrapper
 * around the CA that records the trusted bundle every time it is loaded (at start and at every credential refresh).
 * verifyInjectedPod uses it to refuse a sidecar whose CA bundle is not the operator's (core/injection/verify.ts).
 */
import { pemBodies } from '../../core/injection/verify.ts';
import type { InternalCa } from '../pki/internal-ca.ts';

export type BrokerCa = Pick<InternalCa, 'signLeaf' | 'load'>;

export function trackTrustedCa(ca: BrokerCa): {
  ca: BrokerCa;
  trusted: () => ReadonlySet<string> | undefined;
} {
  let trusted: ReadonlySet<string> | undefined;
  return {
    ca: {
      signLeaf: ca.signLeaf.bind(ca),
      load: async () => {
        const state = await ca.load();
        trusted = new Set(pemBodies(state.bundlePem));
        return state;
      },
    },
    trusted: () => trusted,
  };
}
