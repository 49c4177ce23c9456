import type { ClusterInfo } from './kubectl.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared real cluster started by test/cluster/global-setup.ts. */
    cluster: ClusterInfo;
  }
}
