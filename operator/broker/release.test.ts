/**
 * releaseKey with real parts where they exist outside a cluster: a real local KMS (file key set), a real durable
 * audit log on disk, real wrapped DEKs bound to the artifact by their associated data. The cluster view is plain
 * data (the pure decision is table-tested in core/policy/release.test.ts; the broker end to end runs on the real
 * control plane in test/broker/broker.int.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { AuditKey, AuditLog, generateNoteKey, parseSignerKey } from '../../core/audit/index.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import type { KmsProvider } from '../../core/kms/provider.ts';
import { DEFAULT_CLASSIFICATION_TABLE } from '../../core/policy/classification.ts';
import type { NamespaceFacts } from '../../core/policy/grant.ts';
import { formatQuarantineRecord, parseQuarantines, quarantineOf } from '../../core/policy/quarantine.ts';
import type { QuarantineLookup } from '../quarantine/store.ts';
import { artifact as fixtureArtifact, grant, NAMESPACES, NOW } from '../../core/policy/testdata/objects.ts';
import { dekAad, encodeWrapped } from '../keys/artifact-keys.ts';
import { BrokerAuditTrail } from './audit-trail.ts';
import { DekCache } from './dek-cache.ts';
import { BrokerError } from './errors.ts';
import type { Peer } from './peer.ts';
import { releaseKey, type ReleaseDeps, type ReleaseRequestInput } from './release.ts';
import { LeaseTracker } from './revocation-feed.ts';
import type { BrokerView, PodFacts } from './view.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-release-'));
const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'kms.json')));
const noteKey = generateNoteKey('strongroom.audit/unit');
let log: AuditLog;
let trail: BrokerAuditTrail;
const deks = new Map<string, Buffer>();
let artifact: ModelArtifact;

const peer: Peer = {
  namespace: 'ml-dev',
  serviceAccount: 'trainer',
  podUid: '11111111-2222-3333-4444-555555555555',
  spiffeId: 'spiffe://test/ns/ml-dev/sa/trainer',
  certificateSerial: 'abcd',
  notAfter: new Date(NOW.getTime() + 30 * 60_000),
  address: '127.0.0.1:1234',
};
const livePod: PodFacts = {
  uid: peer.podUid,
  namespace: 'ml-dev',
  name: 'trainer-0',
  serviceAccount: 'trainer',
  labels: { app: 'resnet' },
  terminating: false,
};
const request: ReleaseRequestInput = {
  artifactNamespace: 'ml-dev',
  artifactName: 'resnet50',
  version: 'v2',
  fileDigest: '',
};

/** The fixture grant as the API server returns it (with uid and resourceVersion), its status Active. */
function liveGrant(status: AccessGrant['status'] | null = { phase: 'Active' }): AccessGrant {
  const g = grant();
  return {
    ...g,
    metadata: Object.assign({}, g.metadata, { uid: 'grant-uid-1', resourceVersion: '7' }),
    ...(status === null ? {} : { status }),
  };
}

function view(
  overrides: {
    ready?: boolean;
    pod?: PodFacts | 'deleted' | undefined;
    grants?: AccessGrant[];
    artifact?: ModelArtifact | undefined;
  } = {},
): BrokerView {
  return {
    ready: () => overrides.ready ?? true,
    artifact: (ns, name) => {
      const a = 'artifact' in overrides ? overrides.artifact : artifact;
      return a?.metadata.namespace === ns && a.metadata.name === name ? a : undefined;
    },
    grants: () => overrides.grants ?? [liveGrant()],
    namespaces: (names) => {
      const facts = new Map<string, NamespaceFacts>();
      for (const n of names) facts.set(n, NAMESPACES.get(n) ?? { exists: false, environment: undefined });
      return facts;
    },
    pod: () => ('pod' in overrides ? overrides.pod : livePod),
  };
}

function deps(overrides: Partial<ReleaseDeps> = {}): ReleaseDeps {
  return {
    view: view(),
    kms,
    audit: trail,
    cache: new DekCache({ ttlMs: 5000 }),
    policy: () => DEFAULT_CLASSIFICATION_TABLE,
    leases: new LeaseTracker(() => NOW.getTime()),
    now: () => NOW,
    podWaitMs: 100,
    ...overrides,
  };
}

/** The audit entries written so far. */
function entries(): Record<string, unknown>[] {
  return readFileSync(join(dir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"event":'))
    .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event)
    .filter((e) => e.type === 'key-release');
}

async function refusal(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BrokerError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

beforeAll(async () => {
  await kms.createKey('strongroom-internal');
  const base = fixtureArtifact({ latest: 'v3' });
  artifact = { ...base, metadata: Object.assign({}, base.metadata, { uid: 'artifact-uid-1' }) };
  const keys = [];
  for (const key of artifact.status?.keys ?? []) {
    const dek = randomBytes(32);
    deks.set(key.version, dek);
    const wrapped = await kms.wrap('strongroom-internal', dek, dekAad(artifact, key.version));
    keys.push({
      ...key,
      wrappedKey: encodeWrapped(wrapped),
      kekId: wrapped.keyId,
      kekVersion: wrapped.keyVersion,
    });
  }
  artifact = { ...artifact, status: { ...artifact.status, keys } };
  log = await AuditLog.open({
    path: join(dir, 'audit.log'),
    origin: 'strongroom.audit/unit/release',
    signer: parseSignerKey(noteKey.signerKey),
  });
  trail = new BrokerAuditTrail();
  trail.attach(log, new AuditKey(randomBytes(32)));
});

afterAll(async () => {
  await log.close();
});

describe('releaseKey', () => {
  it('releases the unwrapped DEK with the grant, a lease bounded by the certificate, and a durable audit entry first', async () => {
    const leases = new LeaseTracker(() => NOW.getTime());
    const result = await releaseKey(peer, request, deps({ leases }));
    expect(result.dek.equals(deks.get('v2') ?? Buffer.alloc(0))).toBe(true);
    expect(result.version).toBe('v2');
    expect(result.grant.name).toBe('g1');
    // keyLeaseDuration defaults to 1 h, but the client certificate ends in 30 min.
    expect(result.leaseExpiresAt).toEqual(peer.notAfter);
    const last = entries().at(-1);
    expect(last).toMatchObject({
      decision: 'allow',
      reason: 'granted',
      workload: { namespace: 'ml-dev', serviceAccount: 'trainer', podUid: peer.podUid, environment: 'dev' },
      artifact: { name: 'resnet50', version: 'v2', classification: 'internal', environment: 'dev' },
      key: { id: 'strongroom-internal', version: '1' },
      grant: { name: 'g1' },
    });
    expect(result.auditIndex).toBeGreaterThan(0);
    expect(leases.holds(peer.podUid, { namespace: 'ml-dev', name: 'resnet50' })).toBe(true);
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).not.toContain(result.dek.toString('base64'));
  });

  it('unwraps once per TTL: the second release comes from the cache', async () => {
    let unwraps = 0;
    const counting: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, {
      unwrap: (...args: Parameters<KmsProvider['unwrap']>) => {
        unwraps += 1;
        return kms.unwrap(...args);
      },
    });
    const d = deps({ kms: counting });
    const a = await releaseKey(peer, request, d);
    const b = await releaseKey(peer, request, d);
    expect(a.dek.equals(b.dek)).toBe(true);
    expect(unwraps).toBe(1);
  });

  const denials: [string, Partial<ReleaseDeps>, Partial<ReleaseRequestInput>, string, string][] = [
    ['no grant names the workload', { view: view({ grants: [] }) }, {}, 'PERMISSION_DENIED', 'no-grant'],
    [
      'the grant has no status yet (the leader has not evaluated it)',
      { view: view({ grants: [liveGrant(null)] }) },
      {},
      'PERMISSION_DENIED',
      'grant-not-active',
    ],
    [
      'the grant status records Expired',
      { view: view({ grants: [liveGrant({ phase: 'Expired' })] }) },
      {},
      'PERMISSION_DENIED',
      'grant-not-active',
    ],
    [
      'the artifact does not exist',
      { view: view({ artifact: undefined }) },
      {},
      'NOT_FOUND',
      'artifact-not-found',
    ],
    ['the version is not published', {}, { version: 'v9' }, 'NOT_FOUND', 'version-not-found'],
    ['the pod is deleted', { view: view({ pod: 'deleted' }) }, {}, 'UNAUTHENTICATED', 'pod-deleted'],
    ['the pod never appears', { view: view({ pod: undefined }) }, {}, 'UNAUTHENTICATED', 'pod-not-found'],
    [
      'the pod runs as another service account',
      { view: view({ pod: { ...livePod, serviceAccount: 'other' } }) },
      {},
      'UNAUTHENTICATED',
      'pod-identity-mismatch',
    ],
    [
      'the pod is terminating',
      { view: view({ pod: { ...livePod, terminating: true } }) },
      {},
      'PERMISSION_DENIED',
      'pod-terminating',
    ],
    ['the caches are not synced', { view: view({ ready: false }) }, {}, 'UNAVAILABLE', 'broker-not-ready'],
    ['the version name is malformed', {}, { version: '../etc' }, 'INVALID_ARGUMENT', 'invalid-request'],
    ['the namespace is malformed', {}, { artifactNamespace: 'A_B' }, 'INVALID_ARGUMENT', 'invalid-request'],
    ['the file digest is malformed', {}, { fileDigest: 'md5:x' }, 'INVALID_ARGUMENT', 'invalid-request'],
  ];
  it.each(denials)('refuses, and audits the refusal, when %s', async (_what, d, r, status, reason) => {
    const before = entries().length;
    const error = await refusal(releaseKey(peer, { ...request, ...r }, deps(d)));
    expect(error.status).toBe(status);
    expect(error.reason).toBe(reason);
    const written = entries();
    expect(written).toHaveLength(before + 1);
    expect(written.at(-1)).toMatchObject({ decision: 'deny', reason, grant: null });
  });

  describe('a workload of another namespace', () => {
    const dev2: Peer = { ...peer, namespace: 'ml-dev-2', spiffeId: 'spiffe://test/ns/ml-dev-2/sa/trainer' };
    const dev2Pod: PodFacts = { ...livePod, namespace: 'ml-dev-2' };
    const naming = (): AccessGrant => {
      const g = liveGrant();
      return { ...g, spec: { ...g.spec, subjects: [{ namespace: 'ml-dev-2', serviceAccount: 'trainer' }] } };
    };
    it.each([
      ['the artifact does not exist', { artifact: undefined }, {}, 'artifact-not-found'],
      ['the version does not exist', {}, { version: 'v9' }, 'version-not-found'],
      ['no grant names it', {}, {}, 'no-grant'],
    ] as const)(
      'is told NoGrant alike when %s, unless a grant there names it; the audit keeps the truth',
      async (_what, v, r, reason) => {
        const hidden = await refusal(
          releaseKey(dev2, { ...request, ...r }, deps({ view: view({ ...v, pod: dev2Pod, grants: [] }) })),
        );
        expect(hidden.status).toBe('PERMISSION_DENIED');
        expect(hidden.callerMessage).toMatch(
          /^NoGrant: no AccessGrant allows this workload to read this version/,
        );
        expect(hidden.reason).toBe(reason);
        expect(entries().at(-1)).toMatchObject({ decision: 'deny', reason });
        if (reason === 'no-grant') return;
        // A grant for this artifact naming the workload: it may learn that the artifact or version is missing.
        const told = await refusal(
          releaseKey(
            dev2,
            { ...request, ...r },
            deps({ view: view({ ...v, pod: dev2Pod, grants: [naming()] }) }),
          ),
        );
        expect(told.status).toBe('NOT_FOUND');
        expect(told.callerMessage).not.toMatch(/^NoGrant/);
      },
    );
  });

  it('denies with UNAVAILABLE and zeroes the unwrapped DEK when the allow cannot be audited', async () => {
    let handedOut: Buffer | undefined;
    const spying: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, {
      unwrap: async (...args: Parameters<KmsProvider['unwrap']>) => {
        handedOut = await kms.unwrap(...args);
        return handedOut;
      },
    });
    const broken = new BrokerAuditTrail();
    broken.attach({ append: () => Promise.reject(new Error('disk full')) }, new AuditKey(randomBytes(32)));
    const error = await refusal(releaseKey(peer, request, deps({ kms: spying, audit: broken })));
    expect(error.status).toBe('UNAVAILABLE');
    expect(error.reason).toBe('audit-unavailable');
    expect(handedOut?.equals(Buffer.alloc(32))).toBe(true);
  });

  it('denies with UNAVAILABLE when not even a denial can be audited, and with no audit log at all', async () => {
    const broken = new BrokerAuditTrail();
    broken.attach({ append: () => Promise.reject(new Error('disk full')) }, new AuditKey(randomBytes(32)));
    const error = await refusal(
      releaseKey(peer, request, deps({ audit: broken, view: view({ grants: [] }) })),
    );
    expect(error.status).toBe('UNAVAILABLE');
    const detached = await refusal(releaseKey(peer, request, deps({ audit: new BrokerAuditTrail() })));
    expect(detached.status).toBe('UNAVAILABLE');
  });

  it('denies with UNAVAILABLE, audited, when the KMS cannot unwrap (a wrapped key bound to another artifact)', async () => {
    const other = { ...artifact, metadata: Object.assign({}, artifact.metadata, { uid: 'another-uid' }) };
    const error = await refusal(releaseKey(peer, request, deps({ view: view({ artifact: other }) })));
    expect(error.status).toBe('UNAVAILABLE');
    expect(error.reason).toBe('kms-unwrap-failed');
    expect(entries().at(-1)).toMatchObject({ decision: 'deny', reason: 'kms-unwrap-failed' });
  });
});

describe('releaseKey for a quarantined identity (docs/detection.md#automatic-quarantine)', () => {
  const held = parseQuarantines({
    'ml-dev.trainer': formatQuarantineRecord({
      since: '2026-12-10T11:00:00.000Z',
      alertId: 'a-0123456789abcdef',
      rule: 'bulk-access',
      severity: 'high',
      reason: 'bulk reading',
    }),
  });
  const lookup = (identity: { namespace: string; serviceAccount: string }): QuarantineLookup => {
    const quarantine = quarantineOf(held, identity);
    return quarantine === undefined ? { state: 'free' } : { state: 'quarantined', quarantine };
  };

  it('refuses it (quarantined), audited as a deny, although its grant is still Active', async () => {
    const error = await refusal(releaseKey(peer, request, deps({ quarantine: lookup })));
    expect(error.status).toBe('PERMISSION_DENIED');
    expect(error.reason).toBe('quarantined');
    expect(error.message).toContain('anomaly alert a-0123456789abcdef (rule bulk-access, severity high)');
    expect(error.callerMessage).not.toContain('ml-dev');
    expect(entries().at(-1)).toMatchObject({
      decision: 'deny',
      reason: 'quarantined',
      workload: { namespace: 'ml-dev', serviceAccount: 'trainer' },
      artifact: { name: 'resnet50', classification: 'internal' },
      grant: null,
    });
  });

  it('releases to other identities, and refuses everyone (UNAVAILABLE) while the quarantines are unknown', async () => {
    const elsewhere = (identity: { namespace: string; serviceAccount: string }) =>
      lookup({ ...identity, serviceAccount: `${identity.serviceAccount}-not` });
    const released = await releaseKey(peer, request, deps({ quarantine: elsewhere }));
    expect(released.version).toBe('v2');
    const unknown = await refusal(
      releaseKey(peer, request, deps({ quarantine: () => ({ state: 'unknown' }) })),
    );
    expect(unknown.status).toBe('UNAVAILABLE');
    expect(unknown.reason).toBe('quarantines-unknown');
    expect(entries().at(-1)).toMatchObject({ decision: 'deny', reason: 'quarantines-unknown' });
  });
});
