/**
 * Test objects shared by the policy tests: a ModelArtifact "resnet50" and an AccessGrant "g1" in ml-dev, the
 * namespaces they refer to, and approvals. Each test file sets its own defaults on top (for example whether the
 * artifact has a latest version).
 */
import type {
  AccessGrant,
  AccessGrantSpec,
  AccessGrantStatus,
  Classification,
  ModelArtifact,
  ModelArtifactStatusKey,
} from '../../api/index.ts';
import type { NamespaceFacts } from '../grant.ts';

export const NOT_BEFORE = '2026-12-08T00:00:00Z';
export const EXPIRES = '2026-12-15T00:00:00Z';
export const NOW = new Date('2026-12-10T12:00:00.500Z');
export const FP = `sha256:${'a'.repeat(64)}`;

export interface ArtifactOptions {
  classification?: Classification;
  versions?: string[];
  withdrawn?: string[];
  /** Versions with a Sealed key (default: every version not withdrawn). */
  sealed?: string[];
  keyState?: Partial<Record<string, ModelArtifactStatusKey['state'] | 'absent' | 'stateless'>>;
  /** status.latestVersion; undefined or null: none. */
  latest?: string | null;
  deleting?: boolean;
  name?: string;
  namespace?: string;
  generation?: number;
}

/** resnet50 in ml-dev with versions v1..v3 (by default all sealed). */
export function artifact(opts: ArtifactOptions = {}): ModelArtifact {
  const versions = opts.versions ?? ['v1', 'v2', 'v3'];
  const withdrawn = opts.withdrawn ?? [];
  const sealed = opts.sealed ?? versions;
  const keys: ModelArtifactStatusKey[] = [];
  for (const v of versions) {
    const state =
      opts.keyState?.[v] ?? (withdrawn.includes(v) ? 'Withdrawn' : sealed.includes(v) ? 'Sealed' : 'absent');
    if (state === 'absent') continue;
    keys.push({
      version: v,
      keyFingerprint: FP,
      wrappedKey: 'AAAA',
      ...(state === 'stateless' ? {} : { state }),
    });
  }
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: {
      name: opts.name ?? 'resnet50',
      namespace: opts.namespace ?? 'ml-dev',
      ...(opts.generation === undefined ? {} : { generation: opts.generation }),
      ...(opts.deleting === true ? { deletionTimestamp: new Date('2026-12-09T00:00:00Z') } : {}),
    },
    spec: {
      classification: opts.classification ?? 'internal',
      owner: { team: 'vision' },
      storage: { persistentVolumeClaim: { claimName: 'store' }, path: 'vision/resnet50' },
      versions: versions.map((name) => ({
        name,
        digest: `sha256:${'b'.repeat(64)}`,
        size: 10,
        encryption: { format: 'v1', keyFingerprint: FP },
        publisher: 'system:serviceaccount:ml-dev:trainer',
        publishedAt: '2026-10-01T00:00:00Z',
      })),
      withdrawnVersions: withdrawn,
    },
    status: {
      keys,
      ...(opts.latest === undefined || opts.latest === null ? {} : { latestVersion: opts.latest }),
    },
  };
}

export interface GrantOptions {
  name?: string;
  namespace?: string;
  annotations?: Record<string, string>;
  status?: AccessGrantStatus;
  generation?: number;
}

/** Who created the test grants (spec.requester). */
export const REQUESTER = 'requester@example.com';
/** The default approver group of every classification. */
export const APPROVERS = 'strongroom:approvers';

/** g1 in ml-dev: read v2 of resnet50 for ml-dev/trainer, from NOT_BEFORE to EXPIRES, requested by REQUESTER. */
export function grant(spec: Partial<AccessGrantSpec> = {}, opts: GrantOptions = {}): AccessGrant {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: {
      name: opts.name ?? 'g1',
      namespace: opts.namespace ?? 'ml-dev',
      ...(opts.generation === undefined ? {} : { generation: opts.generation }),
      ...(opts.annotations === undefined ? {} : { annotations: opts.annotations }),
    },
    spec: {
      requester: REQUESTER,
      artifactRef: { name: 'resnet50' },
      versions: { match: 'named', names: ['v2'] },
      mode: 'read',
      subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }],
      notBefore: NOT_BEFORE,
      expiresAt: EXPIRES,
      purpose: 'tests',
      ...spec,
    },
    ...(opts.status === undefined ? {} : { status: opts.status }),
  };
}

/** Two dev namespaces, a prod one, two unlabelled ones and one that does not exist. */
export const NAMESPACES: ReadonlyMap<string, NamespaceFacts> = new Map([
  ['ml-dev', { exists: true, environment: 'dev' }],
  ['ml-dev-2', { exists: true, environment: 'dev' }],
  ['ml-prod', { exists: true, environment: 'prod' }],
  ['plain', { exists: true, environment: undefined }],
  ['plain-2', { exists: true, environment: undefined }],
  ['gone', { exists: false, environment: 'dev' }],
]);

export const prodSubject = { namespace: 'ml-prod', serviceAccount: 'inference' };

/** n approvals by approver-0@example.com, approver-1@example.com, …, each in the approver group. */
export const approvals = (n: number, groups: string[] = [APPROVERS]) =>
  Array.from({ length: n }, (_, i) => ({
    approver: `approver-${String(i)}@example.com`,
    groups,
    approvedAt: NOT_BEFORE,
  }));
