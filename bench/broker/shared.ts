/** What the parts of `npm run bench:broker` share: the names it uses, its log, and waiting for a grant or a release. */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { AccessGrant } from '../../core/api/index.ts';
import { getGrant } from '../../test/harness/objects.ts';
import { eventually } from '../../test/harness/operator.ts';
import { release, type Workload } from '../../test/harness/workload.ts';

export const OPERATOR_NS = 'strongroom-system';
export const APP_NS = 'bench-prod';
export const SERVICE_ACCOUNT = 'reader';
export const ARTIFACT = 'model';
export const SERVER_NAME = `strongroom-broker.${OPERATOR_NS}.svc`;
export const REQUEST = { artifact: { namespace: APP_NS, name: ARTIFACT }, version: 'v1' };
/** A revocation that has not reached its stream this long after the delete counts as missed. */
export const REVOCATION_TIMEOUT_MS = 5_000;

export const log = (line: string): void => {
  process.stderr.write(`[bench:broker] ${line}\n`);
};

/** Resolves with grant `name` in APP_NS once it is Active. */
export function waitActive(custom: CustomObjectsApi, name: string, intervalMs = 100): Promise<AccessGrant> {
  return eventually(
    `grant ${name} Active`,
    async () => {
      const g = await getGrant(custom, APP_NS, name);
      return g.status?.phase === 'Active' ? g : undefined;
    },
    30_000,
    intervalMs,
  );
}

/** Releases once through grpc-js until it succeeds (the broker's caches may still be filling); checks the DEK. */
export async function firstRelease(c: Workload['client']): Promise<void> {
  const ok = await eventually('a first ReleaseKey', async () => {
    const r = await release(c, APP_NS, ARTIFACT, REQUEST.version);
    return 'ok' in r ? r.ok : undefined;
  });
  if (ok.dek.length !== 32) throw new Error(`ReleaseKey returned a ${String(ok.dek.length)}-byte DEK`);
}
