import { describe, expect, it } from 'vitest';
import winston from 'winston';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import type { InformerEvent } from '../kube/informer.ts';
import { RevocationBus, type Revocation } from './bus.ts';
import { RevocationDeriver } from './derive.ts';

class FakeInformer<T> {
  readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.handlers.push(handler);
  }
  emit(type: InformerEvent<T>['type'], key: string, object: T): void {
    for (const h of this.handlers) h({ type, key, object });
  }
}

function grant(phase: string | undefined, opts: { versions?: string[]; reason?: string; uid?: string } = {}) {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: { namespace: 'ml', name: 'g', uid: opts.uid ?? 'uid-1' },
    spec: {
      artifactRef: { name: 'resnet' },
      mode: 'read',
      subjects: [{ namespace: 'apps', serviceAccount: 'sa' }],
    },
    ...(phase === undefined
      ? {}
      : {
          status: {
            phase,
            ...(opts.reason === undefined ? {} : { reason: opts.reason }),
            resolvedVersions: opts.versions ?? ['v1', 'v2'],
          },
        }),
  } as unknown as AccessGrant;
}

function artifact(withdrawn: string[], deleting = false): ModelArtifact {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: {
      namespace: 'ml',
      name: 'resnet',
      uid: 'a-1',
      ...(deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { classification: 'internal', versions: [] },
    status: {
      keys: ['v1', 'v2', 'v3'].map((version) => ({
        version,
        state: withdrawn.includes(version) ? 'Withdrawn' : 'Sealed',
      })),
    },
  } as unknown as ModelArtifact;
}

function setup() {
  const bus = new RevocationBus();
  const seen: Revocation[] = [];
  bus.subscribe((r) => seen.push(r));
  const grants = new FakeInformer<AccessGrant>();
  const artifacts = new FakeInformer<ModelArtifact>();
  const derived: string[] = [];
  const deriver = new RevocationDeriver({
    bus,
    grants,
    artifacts,
    logger: winston.createLogger({ silent: true }),
    onDerived: (reason) => derived.push(reason),
  });
  return { bus, seen, grants, artifacts, deriver, derived };
}

describe('RevocationDeriver (a follower: informers only)', () => {
  it('publishes when a grant status leaves Active, with the reason of the new phase, once', () => {
    const { seen, grants, derived } = setup();
    grants.emit('added', 'ml/g', grant('Active'));
    expect(seen).toHaveLength(0); // the first sight is not a change
    grants.emit('modified', 'ml/g', grant('Expired', { reason: 'Expired' }));
    grants.emit('modified', 'ml/g', grant('Expired', { reason: 'Expired' })); // a relist shows it again
    expect(seen.map((r) => r.reason)).toEqual(['grant-expired']);
    expect(seen[0]).toMatchObject({
      artifact: { namespace: 'ml', name: 'resnet' },
      grant: { namespace: 'ml', name: 'g', uid: 'uid-1' },
      subjects: [{ namespace: 'apps', serviceAccount: 'sa' }],
      versions: [],
    });
    expect(derived).toEqual(['grant-expired']);
  });

  it('maps Revoked, Denied, Pending and Quarantined; a grant Active again can end again', () => {
    const { seen, grants } = setup();
    grants.emit('added', 'ml/g', grant('Active'));
    grants.emit('modified', 'ml/g', grant('Revoked'));
    grants.emit('modified', 'ml/g', grant('Active'));
    grants.emit('modified', 'ml/g', grant('Denied'));
    grants.emit('modified', 'ml/g', grant('Active'));
    grants.emit('modified', 'ml/g', grant('Pending', { reason: 'Quarantined' }));
    grants.emit('modified', 'ml/g', grant('Active'));
    grants.emit('modified', 'ml/g', grant('Pending'));
    expect(seen.map((r) => r.reason)).toEqual([
      'grant-revoked',
      'grant-denied',
      'grant-suspended',
      'grant-suspended',
    ]);
  });

  it('never publishes for a grant that was not Active', () => {
    const { seen, grants } = setup();
    grants.emit('added', 'ml/g', grant(undefined));
    grants.emit('modified', 'ml/g', grant('Pending'));
    grants.emit('modified', 'ml/g', grant('Denied'));
    grants.emit('deleted', 'ml/g', grant('Denied'));
    expect(seen).toHaveLength(0);
  });

  it('publishes grant-deleted for an Active grant deleted, once even with a deletionTimestamp first', () => {
    const { seen, grants } = setup();
    grants.emit('added', 'ml/g', grant('Active'));
    const deleting = grant('Active');
    deleting.metadata.deletionTimestamp = new Date();
    grants.emit('modified', 'ml/g', deleting);
    grants.emit('deleted', 'ml/g', deleting);
    expect(seen.map((r) => r.reason)).toEqual(['grant-deleted']);
  });

  it('publishes the versions a read grant no longer resolves to', () => {
    const { seen, grants } = setup();
    grants.emit('added', 'ml/g', grant('Active', { versions: ['v1', 'v2', 'v3'] }));
    grants.emit('modified', 'ml/g', grant('Active', { versions: ['v3'] }));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ reason: 'versions-removed', versions: ['v1', 'v2'] });
  });

  it('publishes newly withdrawn versions and the deletion of an artifact, each once', () => {
    const { seen, artifacts } = setup();
    artifacts.emit('added', 'ml/resnet', artifact(['v1']));
    artifacts.emit('modified', 'ml/resnet', artifact(['v1', 'v2']));
    artifacts.emit('modified', 'ml/resnet', artifact(['v1', 'v2']));
    artifacts.emit('modified', 'ml/resnet', artifact(['v1', 'v2'], true));
    artifacts.emit('deleted', 'ml/resnet', artifact(['v1', 'v2'], true));
    expect(seen.map((r) => [r.reason, r.versions])).toEqual([
      ['version-withdrawn', ['v2']],
      ['artifact-deleted', []],
    ]);
    // A new artifact of the same name starts afresh.
    artifacts.emit('added', 'ml/resnet', artifact([]));
    artifacts.emit('deleted', 'ml/resnet', artifact([]));
    expect(seen.map((r) => r.reason)).toEqual(['version-withdrawn', 'artifact-deleted', 'artifact-deleted']);
  });
});

describe('RevocationDeriver (the leader: controllers publish first, through the same ledger)', () => {
  it('lets a grant end through once: the controller before the status write, not again when it is seen', () => {
    const { seen, grants, deriver, derived } = setup();
    grants.emit('added', 'ml/g', grant('Active'));
    const input = {
      reason: 'grant-revoked' as const,
      artifact: { namespace: 'ml', name: 'resnet' },
      grant: { namespace: 'ml', name: 'g', uid: 'uid-1' },
      subjects: [{ namespace: 'apps', serviceAccount: 'sa' }],
      versions: [],
      message: 'Revoked',
    };
    expect(deriver.publish(input)).toBeDefined();
    // The reconcile is retried (the status write failed): not published again.
    expect(deriver.publish(input)).toBeUndefined();
    // An unrelated update still shows the old status: no reset.
    grants.emit('modified', 'ml/g', grant('Active'));
    grants.emit('modified', 'ml/g', grant('Revoked'));
    expect(seen).toHaveLength(1);
    expect(derived).toEqual([]);
    // Access resumes and ends again: a new revocation.
    grants.emit('modified', 'ml/g', grant('Active'));
    expect(deriver.publish(input)).toBeDefined();
    expect(seen).toHaveLength(2);
  });

  it('drops a controller grant-deleted that follows the deletion event (tombstone)', () => {
    const { seen, grants, deriver } = setup();
    grants.emit('added', 'ml/g', grant('Active'));
    grants.emit('deleted', 'ml/g', grant('Active'));
    const published = deriver.publish({
      reason: 'grant-deleted',
      artifact: { namespace: 'ml', name: 'resnet' },
      grant: { namespace: 'ml', name: 'g', uid: 'uid-1' },
      subjects: [],
      versions: [],
      message: 'the grant was deleted',
    });
    expect(published).toBeUndefined();
    expect(seen).toHaveLength(1);
  });

  it('deduplicates per version: only versions not yet announced go out', () => {
    const { seen, artifacts, deriver } = setup();
    artifacts.emit('added', 'ml/resnet', artifact([]));
    const withdraw = (versions: string[]) =>
      deriver.publish({
        reason: 'version-withdrawn',
        artifact: { namespace: 'ml', name: 'resnet' },
        subjects: [],
        versions,
        message: 'withdrawn',
      });
    expect(withdraw(['v1'])?.versions).toEqual(['v1']);
    artifacts.emit('modified', 'ml/resnet', artifact(['v1', 'v2']));
    expect(withdraw(['v1', 'v2'])).toBeUndefined();
    expect(seen.map((r) => r.versions)).toEqual([['v1'], ['v2']]);
  });

  it('drops the controller artifact-deleted after the deletionTimestamp was seen', () => {
    const { seen, artifacts, deriver } = setup();
    artifacts.emit('added', 'ml/resnet', artifact([]));
    artifacts.emit('modified', 'ml/resnet', artifact([], true));
    expect(
      deriver.publish({
        reason: 'artifact-deleted',
        artifact: { namespace: 'ml', name: 'resnet' },
        subjects: [],
        versions: [],
        message: 'shredded',
      }),
    ).toBeUndefined();
    expect(seen.map((r) => r.reason)).toEqual(['artifact-deleted']);
  });
});
