import { describe, expect, it } from 'vitest';
import type { ModelArtifact } from '../../core/api/index.ts';
import type { InformerEventType } from '../kube/informer.ts';
import { LineageIndex } from './lineage-index.ts';

function artifact(name: string, parents: { kind: string; name: string }[]): ModelArtifact {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { namespace: 'ml', name },
    spec: { versions: [{ name: 'v1', lineage: { parents } }] },
  } as unknown as ModelArtifact;
}

const event = (type: InformerEventType, object: ModelArtifact) => ({
  type,
  key: `ml/${object.metadata.name ?? ''}`,
  object,
});

describe('LineageIndex', () => {
  it('lists the artifacts whose lineage names a parent, until they are deleted', () => {
    const index = new LineageIndex();
    const child = artifact('child', [
      { kind: 'ModelArtifact', name: 'base' },
      { kind: 'Dataset', name: 'corpus' },
    ]);
    index.update(event('added', child));
    index.update(event('added', artifact('other', [{ kind: 'ModelArtifact', name: 'base' }])));
    expect(index.childrenOf('ml/base')).toEqual(['ml/child', 'ml/other']);
    expect(index.childrenOf('ml/corpus')).toEqual([]);
    expect(index.childrenOf('other/base')).toEqual([]);
    index.update(event('deleted', child));
    expect(index.childrenOf('ml/base')).toEqual(['ml/other']);
  });
});
