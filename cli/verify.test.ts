import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { AccessGrant, ModelArtifact } from '../core/api/index.ts';
import { generateRecipientKeyPair } from '../core/envelope/index.ts';
import { DEFAULT_CLASSIFICATION_TABLE } from '../core/policy/classification.ts';
import type { NamespaceFacts } from '../core/policy/grant.ts';
import { writeVersion } from '../core/storage/index.ts';
import { EXIT, type CliIo } from './io.ts';
import { loadManifests, parseManifests, type ManifestObject } from './manifests.ts';
import { main } from './strongroom.ts';
import {
  formatVerifyTable,
  readTableFile,
  RULES,
  verify,
  type ClusterSnapshot,
  type Lookup,
  type VerifyReport,
} from './verify.ts';
import {
  checkVersionDirectory,
  parseStorageDirs,
  storageChecker,
  type StorageChecker,
} from './verify-storage.ts';

const TESTDATA = join(import.meta.dirname, 'testdata', 'verify');
const now = new Date('2026-12-06T10:00:00Z');

/** The in-memory cluster of cluster-state.yaml. */
function clusterState(overrides: { artifacts?: ModelArtifact[] } = {}): ClusterSnapshot {
  const state = parseYaml(readFileSync(join(TESTDATA, 'cluster-state.yaml'), 'utf8')) as {
    items: (
      ModelArtifact | { kind: 'Namespace'; metadata: { name: string; labels?: Record<string, string> } }
    )[];
  };
  const artifacts = new Map<string, ModelArtifact>();
  const namespaces = new Map<string, NamespaceFacts>();
  for (const item of [...state.items, ...(overrides.artifacts ?? [])]) {
    if (item.kind === 'Namespace')
      namespaces.set(item.metadata.name, {
        exists: true,
        environment: item.metadata.labels?.['strongroom.dev/environment'],
      });
    else artifacts.set(`${item.metadata.namespace ?? ''}/${item.metadata.name ?? ''}`, item);
  }
  const found = <T>(value: T | undefined): Lookup<T> =>
    value === undefined ? { state: 'missing' } : { state: 'found', object: value };
  return {
    namespace: 'ml-dev',
    now,
    artifact: (ns, name) => found(artifacts.get(`${ns}/${name}`)),
    namespaceFacts: (name) => found(namespaces.get(name)),
    table: { table: DEFAULT_CLASSIFICATION_TABLE, source: 'built-in defaults' },
  };
}

/** Storage is checked in its own tests; here every version reads as skipped. */
const noStorage: StorageChecker = () => Promise.resolve({ kind: 'skipped', reason: 'not in this test' });

async function verifyFiles(paths: string[], snapshot = clusterState()): Promise<VerifyReport> {
  return verify(await loadManifests(paths), snapshot, noStorage);
}

describe('verify: good manifests', () => {
  it('passes sealed versions, @latest resolving to a sealed version, a grant within the table, and skips workloads that did not opt in', async () => {
    const report = await verifyFiles([join(TESTDATA, 'good')]);
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checked).toMatchObject({ workloads: 1, artifactReferences: 2, grants: 1 });
    // resnet50@v1 is referenced twice (by name and as @latest): its storage is one target, skipped here.
    expect(report.skipped).toEqual([
      expect.objectContaining({ check: 'storage', reason: 'version v1: not in this test' }),
    ]);
  });
});

/** Each bad fixture, the rule it must break and words of the reason. */
const BAD: readonly {
  file: string;
  rule: keyof typeof RULES;
  severity?: string;
  reason: RegExp;
  object: string;
}[] = [
  {
    file: 'annotation-invalid.yaml',
    rule: 'annotation-invalid',
    object: 'Pod ml-dev/typo',
    reason: /annotation strongroom\.dev\/artifacts: entry "resnet50:\/models" has no '@'/,
  },
  {
    file: 'inject-label-missing.yaml',
    rule: 'inject-label-missing',
    object: 'Pod ml-dev/unlabelled',
    reason: /not the label strongroom\.dev\/inject: "true"/,
  },
  {
    file: 'artifact-missing.yaml',
    rule: 'artifact-missing',
    object: 'Job ml-dev/scorer',
    reason: /^"nosuch@v1:\/models": ModelArtifact ml-dev\/nosuch does not exist$/,
  },
  {
    file: 'version-missing.yaml',
    rule: 'version-missing',
    object: 'StatefulSet ml-dev/server',
    reason: /ModelArtifact ml-dev\/resnet50 has no version v9 \(live versions: v1, v2\)/,
  },
  {
    file: 'version-withdrawn.yaml',
    rule: 'version-withdrawn',
    object: 'CronJob ml-dev/nightly',
    reason: /version v0 of ModelArtifact ml-dev\/resnet50 is withdrawn/,
  },
  {
    file: 'version-unsealed.yaml',
    rule: 'version-unsealed',
    object: 'DaemonSet ml-dev/edge',
    reason: /version v2 of ModelArtifact ml-dev\/resnet50 is not sealed: status\.keys has no entry for it/,
  },
  {
    file: 'latest-unresolved.yaml',
    rule: 'latest-unresolved',
    object: 'ReplicaSet ml-dev/canary',
    reason: /@latest of ModelArtifact ml-dev\/fresh resolves to nothing: status\.latestVersion is not set/,
  },
  {
    file: 'list.json',
    rule: 'artifact-missing',
    object: 'Pod ml-dev/listed',
    reason: /ModelArtifact ml-prod\/resnet50 does not exist/,
  },
  {
    file: 'grant-duration.yaml',
    rule: 'grant-duration',
    object: 'AccessGrant ml-dev/patients-long',
    reason:
      /more than 30d, the longest a grant for a confidential artifact may last \(confidential\.maxGrantDuration\)/,
  },
  {
    file: 'grant-cross-environment.yaml',
    rule: 'grant-cross-environment',
    object: 'AccessGrant ml-dev/genome-prod',
    reason:
      /never releases restricted artifacts across environments .*ml-prod\/server \(environment "prod"\)/,
  },
  {
    file: 'grant-approvals.yaml',
    rule: 'grant-approvals',
    severity: 'warning',
    object: 'AccessGrant ml-dev/patients-eval',
    reason:
      /waiting for 1 more approval from members of strongroom:approvers: a grant for a confidential artifact needs 1 \(confidential\.approvals\).*strongroom approve/,
  },
];

describe('verify: bad manifests', () => {
  for (const bad of BAD) {
    it(`${bad.file}: ${bad.rule}`, async () => {
      const file = join(TESTDATA, 'bad', bad.file);
      const report = await verifyFiles([file]);
      const finding = report.findings.find((f) => f.rule === bad.rule);
      expect(finding, JSON.stringify(report.findings, null, 2)).toBeDefined();
      expect(finding?.severity).toBe(bad.severity ?? 'error');
      expect(finding?.reason).toMatch(bad.reason);
      expect(finding?.file).toBe(file);
      const { kind, namespace, name } = finding?.object ?? { kind: '', name: '' };
      expect(`${kind} ${namespace ?? ''}/${name}`).toBe(bad.object);
      expect(report.ok).toBe((bad.severity ?? 'error') !== 'error');
      // Nothing else is wrong with the fixture but what it is about (the 60-day grant also awaits its approval).
      const others = report.findings.filter((f) => f.rule !== bad.rule && f.rule !== 'grant-approvals');
      expect(others).toEqual([]);
    });
  }

  it('every rule id is documented once in RULES, and the fixtures cover every workload and grant rule', () => {
    const covered = new Set(BAD.map((b) => b.rule));
    for (const rule of [
      'annotation-invalid',
      'inject-label-missing',
      'artifact-missing',
      'version-missing',
      'version-withdrawn',
      'version-unsealed',
      'latest-unresolved',
      'grant-duration',
      'grant-cross-environment',
      'grant-approvals',
    ] as const)
      expect(covered.has(rule), rule).toBe(true);
  });

  it('reads the whole bad directory at once, one finding (or more) per file, table and summary', async () => {
    const report = await verifyFiles([join(TESTDATA, 'bad')]);
    expect(new Set(report.findings.map((f) => f.file)).size).toBe(BAD.length);
    const table = formatVerifyTable(report);
    expect(table).toMatch(/^RULE\s+SEVERITY\s+OBJECT\s+REASON$/m);
    expect(table).toMatch(
      /^version-unsealed\s+error\s+DaemonSet ml-dev\/edge \(.*version-unsealed\.yaml\)\s+"resnet50@v2/m,
    );
    expect(table).toMatch(
      /^FAIL: 10 errors, 2 warnings, 1 skipped; checked 8 workloads, 7 artifact references, 3 grants/m,
    );
  });
});

describe('verify: other judgements', () => {
  it('a version with an Invalid key is unsealed, with the Ready condition in the reason', async () => {
    const snapshot = clusterState();
    const resnet = (snapshot.artifact('ml-dev', 'resnet50') as { object: ModelArtifact }).object;
    const invalid: ModelArtifact = {
      ...resnet,
      status: {
        ...resnet.status,
        keys: [{ version: 'v1', keyFingerprint: `sha256:${'1'.repeat(64)}`, state: 'Invalid' }],
        conditions: [
          {
            type: 'Ready',
            status: 'False',
            reason: 'KeyError',
            message: 'the header of v1 does not verify',
            lastTransitionTime: '2026-12-01T00:00:00Z',
          },
        ],
      },
    };
    const report = await verifyFiles(
      [join(TESTDATA, 'good', 'trainer.yaml')],
      clusterState({ artifacts: [invalid] }),
    );
    expect(report.findings.map((f) => [f.rule, f.reason])).toEqual([
      [
        'version-unsealed',
        expect.stringMatching(
          /status\.keys says Invalid; Ready: KeyError: the header of v1 does not verify/,
        ) as string,
      ],
      // @latest is v1 (status.latestVersion), whose key is Invalid: unsealed too.
      [
        'version-unsealed',
        expect.stringMatching(/^"resnet50@latest:\/models\/latest": version v1 .* says Invalid/) as string,
      ],
    ]);
  });

  it('an artifact only in the manifests (not in the cluster) has nothing sealed yet', async () => {
    const manifests = parseManifests(
      `apiVersion: v1
kind: Pod
metadata: { name: p, labels: { strongroom.dev/inject: "true" }, annotations: { strongroom.dev/artifacts: "new@v1:/m" } }
spec: { containers: [{ name: c, image: i }] }
`,
      'p.yaml',
    );
    const base = clusterState();
    const newArtifact = {
      apiVersion: 'strongroom.dev/v1alpha1',
      kind: 'ModelArtifact',
      metadata: { name: 'new', namespace: 'ml-dev' },
      spec: {
        classification: 'internal',
        owner: { team: 't' },
        storage: { path: 'new', persistentVolumeClaim: { claimName: 'models' } },
        versions: [{ name: 'v1' }],
      },
    } as unknown as ModelArtifact;
    const snapshot: ClusterSnapshot = {
      ...base,
      artifact: (ns, name) =>
        name === 'new' ? { state: 'found', object: newArtifact } : base.artifact(ns, name),
    };
    const report = await verify(manifests, snapshot, noStorage);
    expect(report.findings[0]).toMatchObject({
      rule: 'version-unsealed',
      reason: expect.stringContaining('only in the manifests, not in the cluster') as string,
    });
  });

  it('an artifact the user may not read is skipped, not passed', async () => {
    const base = clusterState();
    const snapshot: ClusterSnapshot = {
      ...base,
      artifact: () => ({ state: 'unknown', reason: 'refused by the API server: forbidden' }),
    };
    const report = await verifyFiles([join(TESTDATA, 'good', 'trainer.yaml')], snapshot);
    expect(report.ok).toBe(true);
    expect(report.findings).toEqual([]);
    expect(report.skipped.map((s) => s.check)).toEqual(['artifact', 'artifact']);
  });

  it('a live grant the cluster calls Active but the table now refuses is an error; a Pending one is not', async () => {
    const live = (phase: 'Active' | 'Pending'): AccessGrant => ({
      apiVersion: 'strongroom.dev/v1alpha1',
      kind: 'AccessGrant',
      metadata: {
        name: `g-${phase}`,
        namespace: 'ml-dev',
        creationTimestamp: new Date('2026-12-05T00:00:00Z'),
      },
      spec: {
        requester: 'alice',
        artifactRef: { name: 'patients' },
        versions: { match: 'latest' },
        mode: 'read',
        subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }],
        expiresAt: '2026-12-20T00:00:00Z',
        purpose: 'p',
      },
      status: { phase },
    });
    const report = await verify([], clusterState(), noStorage, {
      clusterGrants: [live('Active'), live('Pending')],
    });
    expect(report.findings).toEqual([
      expect.objectContaining({
        rule: 'grant-approvals',
        severity: 'error',
        object: { kind: 'AccessGrant', namespace: 'ml-dev', name: 'g-Active' },
        reason: expect.stringMatching(
          /^the cluster says it is Active, but under the classification table in force/,
        ) as string,
      }),
    ]);
    expect(report.ok).toBe(false);
  });

  it('the classification table comes from a file (a ConfigMap or a mapping); a stricter table refuses the good grant', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verify-table-'));
    try {
      const file = join(dir, 'table.yaml');
      writeFileSync(
        file,
        'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: strongroom-governance }\ndata:\n  internal.maxGrantDuration: 7d\n',
      );
      const table = await readTableFile(file);
      const snapshot: ClusterSnapshot = { ...clusterState(), table };
      const report = await verifyFiles([join(TESTDATA, 'good', 'grant.json')], snapshot);
      expect(report.findings).toEqual([
        expect.objectContaining({
          rule: 'grant-duration',
          reason: expect.stringContaining('more than 7d') as string,
        }),
      ]);
      expect(report.checked.classificationTable).toBe(`file ${file}`);
      writeFileSync(file, 'internal.approvals: "many"\n');
      const bad = await readTableFile(file);
      const refused = await verifyFiles([join(TESTDATA, 'good', 'grant.json')], {
        ...clusterState(),
        table: bad,
      });
      expect(refused.findings).toEqual([
        expect.objectContaining({
          rule: 'classification-table-invalid',
          reason: expect.stringContaining('internal.approvals="many" is invalid') as string,
        }),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('verify: manifests', () => {
  it('reads multi-document YAML, skips empty documents, flattens Lists and refuses what is not an object', () => {
    const objects = parseManifests(
      '---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n',
      'x.yaml',
    );
    expect(objects.map((o: ManifestObject) => o.object.kind)).toEqual(['ConfigMap', 'Secret']);
    expect(() => parseManifests('- a\n- b\n', 'y.yaml')).toThrow(
      /y\.yaml: document 1 is not a Kubernetes object/,
    );
    expect(() => parseManifests('kind: Pod\n', 'z.yaml')).toThrow(/no apiVersion or kind/);
  });
});

describe('verify: storage', () => {
  let root: string;
  const artifact = {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { name: 'resnet50', namespace: 'ml-dev', uid: '7f0c1e52-0000-4000-8000-000000000001' },
    spec: {
      classification: 'internal',
      owner: { team: 'vision' },
      storage: { persistentVolumeClaim: { claimName: 'models' }, path: 'resnet50' },
    },
  } as unknown as ModelArtifact;
  const version = (name: string) =>
    ({
      name,
      digest: '',
      size: 1,
      encryption: { format: 'v1', keyFingerprint: '' },
      publisher: 'a',
      publishedAt: '',
    }) as const;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'verify-storage-'));
    const source = join(root, 'plain');
    mkdirSync(join(source, 'sub'), { recursive: true });
    writeFileSync(join(source, 'weights.bin'), 'not really weights');
    writeFileSync(join(source, 'sub', 'config.json'), '{}');
    const keys = generateRecipientKeyPair();
    const volume = join(root, 'volume');
    mkdirSync(volume);
    for (const v of ['v1', 'v2', 'v3'])
      await writeVersion({
        source,
        storageRoot: volume,
        storagePath: 'resnet50',
        artifact: { uid: artifact.metadata.uid ?? '', name: 'resnet50' },
        version: v,
        recipientPublicKey: (await keys).publicKey,
      });
    // v2: plaintext copied in beside the ciphertext; v3: its manifest lost.
    writeFileSync(join(volume, 'resnet50', 'v2', 'weights.bin'), 'plaintext weights');
    rmSync(join(volume, 'resnet50', 'v3', 'manifest.sre'));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('real ciphertext passes; plaintext, a missing manifest and a missing version are refused', async () => {
    const volume = join(root, 'volume');
    expect(await checkVersionDirectory(join(volume, 'resnet50', 'v1'))).toEqual({
      kind: 'checked',
      files: 3,
      problems: [],
    });
    expect(await checkVersionDirectory(join(volume, 'resnet50', 'v2'))).toEqual({
      kind: 'checked',
      files: 4,
      problems: [
        {
          rule: 'ciphertext-not-envelope',
          reason: expect.stringMatching(
            /^1 of 4 files in .*v2 do not start with the Strongroom envelope magic SRENVLP\\0 \(not Strongroom ciphertext\): weights\.bin$/,
          ) as string,
        },
      ],
    });
    expect(await checkVersionDirectory(join(volume, 'resnet50', 'v3'))).toMatchObject({
      problems: [{ rule: 'ciphertext-manifest-missing' }],
    });
    expect(await checkVersionDirectory(join(volume, 'resnet50', 'v4'))).toMatchObject({
      problems: [{ rule: 'ciphertext-missing', reason: expect.stringContaining('does not exist') as string }],
    });
  });

  it('a PVC artifact is checked under --storage-dir (by claim, or for any claim), and skipped without it', async () => {
    const noS3 = () => Promise.resolve({ reason: 'none' });
    const withDir = storageChecker({
      dirs: parseStorageDirs([`models=${join(root, 'volume')}`]),
      credentials: noS3,
    });
    expect(await withDir(artifact, version('v2'))).toMatchObject({
      kind: 'checked',
      problems: [{ rule: 'ciphertext-not-envelope' }],
    });
    const other = storageChecker({
      dirs: parseStorageDirs([`other=${join(root, 'volume')}`]),
      credentials: noS3,
    });
    expect(await other(artifact, version('v1'))).toEqual({
      kind: 'skipped',
      reason: expect.stringContaining(
        'PersistentVolumeClaim models, which the CLI cannot read; pass --storage-dir models=<path',
      ) as string,
    });
    const any = storageChecker({ dirs: parseStorageDirs([join(root, 'volume')]), credentials: noS3 });
    expect(await any(artifact, version('v1'))).toMatchObject({ kind: 'checked', problems: [] });

    // Through verify: the referenced versions' storage becomes findings on the artifact.
    const manifests = parseManifests(
      `apiVersion: v1
kind: Pod
metadata: { name: p, namespace: ml-dev, labels: { strongroom.dev/inject: "true" }, annotations: { strongroom.dev/artifacts: "resnet50@v1:/m" } }
spec: { containers: [{ name: c, image: i }] }
`,
      'p.yaml',
    );
    const base = clusterState();
    const resnet = (base.artifact('ml-dev', 'resnet50') as { object: ModelArtifact }).object;
    const report = await verify(manifests, base, withDir, { storageArtifacts: [resnet] });
    // --storage: v1 and v2 (v0 is withdrawn); v2 of the test volume holds plaintext.
    expect(report.findings).toEqual([
      expect.objectContaining({
        rule: 'ciphertext-not-envelope',
        object: { kind: 'ModelArtifact', namespace: 'ml-dev', name: 'resnet50' },
        reason: expect.stringMatching(/^version v2: 1 of 4 files/) as string,
      }),
    ]);
    expect(report.checked).toMatchObject({ storageVersions: 2, storageFiles: 7 });
  });
});

describe('verify: the command', () => {
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    let code = 0;
    const io: CliIo = {
      out: (t) => (out += t),
      err: (t) => (err += t),
      setExitCode: (c) => (code = c),
    };
    await main(io, ['node', 'strongroom', ...args]);
    return { code, out, err };
  };

  it('exit 2 with nothing to verify or an unreadable path; exit 5 when the cluster cannot be reached', async () => {
    expect((await run(['verify'])).code).toBe(EXIT.usage);
    const missing = await run(['verify', '/nonexistent/manifests']);
    expect(missing).toMatchObject({
      code: EXIT.usage,
      err: expect.stringContaining('cannot read /nonexistent/manifests') as string,
    });
    const dir = mkdtempSync(join(tmpdir(), 'verify-kubeconfig-'));
    try {
      const kubeconfig = join(dir, 'config');
      writeFileSync(
        kubeconfig,
        `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:1" } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: x, context: { cluster: c, user: u, namespace: ml-dev } }]
current-context: x
`,
      );
      const unreachable = await run(['--kubeconfig', kubeconfig, 'verify', join(TESTDATA, 'good')]);
      expect(unreachable.code).toBe(EXIT.unavailable);
      expect(unreachable.err).toMatch(/cannot reach the cluster/);
      // A manifest that refers to nothing in the cluster needs no connection: clean, exit 0, JSON report.
      const nothing = join(dir, 'plain.yaml');
      writeFileSync(nothing, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n');
      const clean = await run(['--kubeconfig', kubeconfig, 'verify', nothing, '-o', 'json']);
      expect(clean.code).toBe(EXIT.ok);
      expect(JSON.parse(clean.out)).toEqual({
        ok: true,
        findings: [],
        checked: { workloads: 0, artifactReferences: 0, grants: 0, storageVersions: 0, storageFiles: 0 },
        skipped: [],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
