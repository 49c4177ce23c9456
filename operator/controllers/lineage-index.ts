/**
 * The ModelArtifact controller's secondary index: parent artifact key → keys of the artifacts whose lineage names it
 * (spec.versions[].lineage.parents of kind ModelArtifact, in the same namespace), so that a parent appearing,
 * changing or going away re-checks its children. Fed by every artifact event, on every replica.
 */
import type { ModelArtifact } from '../../core/api/index.ts';
import type { InformerEvent } from '../kube/informer.ts';

export class LineageIndex {
  readonly #children = new Map<string, Set<string>>();

  /**
   * Records the parents the event's artifact names (a deleted artifact is taken out under each parent it names).
   * A child that stops naming a parent stays listed under it until the child is deleted: it is then only
   * re-checked once more than needed.
   */
  update(event: InformerEvent<ModelArtifact>): void {
    const ns = event.object.metadata.namespace ?? '';
    for (const version of event.object.spec.versions ?? [])
      for (const parent of version.lineage?.parents ?? [])
        if (parent.kind === 'ModelArtifact') {
          const set = this.#children.get(`${ns}/${parent.name}`) ?? new Set<string>();
          if (event.type === 'deleted') set.delete(event.key);
          else set.add(event.key);
          this.#children.set(`${ns}/${parent.name}`, set);
        }
  }

  /** The keys of the artifacts whose lineage names the artifact `key`. */
  childrenOf(key: string): readonly string[] {
    return [...(this.#children.get(key) ?? [])];
  }
}
