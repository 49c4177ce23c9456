/**
 * What a broker decision reads about its caller and the artifact, gathered from the caches in one place for
 * ReleaseKey and PublishVersion: the caches must be synced, the certificate's pod must be live (its labels feed
 * podSelectors), and the namespaces of the caller, the artifact and every grant subject are looked up.
 */
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import type { NamespaceFacts } from '../../core/policy/grant.ts';
import { BrokerError } from './errors.ts';
import { podOf, type Peer } from './peer.ts';
import type { BrokerView } from './view.ts';

export interface DecisionFacts {
  readonly podLabels: Readonly<Record<string, string>>;
  readonly artifact: ModelArtifact | undefined;
  /** The grants in the artifact's namespace. */
  readonly grants: readonly AccessGrant[];
  readonly namespaces: Map<string, NamespaceFacts>;
}

/** Throws BrokerError (UNAVAILABLE when the caches are not synced; the pod checks of podOf). */
export async function decisionFacts(
  peer: Peer,
  view: BrokerView,
  artifact: { namespace: string; name: string },
  podWaitMs?: number,
): Promise<DecisionFacts> {
  if (!view.ready())
    throw new BrokerError(
      'UNAVAILABLE',
      'broker-not-ready',
      'the broker has not synced its caches yet; retry',
    );
  const { labels } = await podOf(peer, view, podWaitMs);
  const grants = view.grants(artifact.namespace);
  const names = new Set([peer.namespace, artifact.namespace]);
  for (const g of grants) for (const s of g.spec.subjects) names.add(s.namespace);
  return {
    podLabels: labels,
    artifact: view.artifact(artifact.namespace, artifact.name),
    grants,
    namespaces: view.namespaces(names),
  };
}
