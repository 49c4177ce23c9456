/**
 * Integration test of the ModelArtifact and AccessGrant CRDs against a real API server: every rule is
 * enforced by the API server itself (OpenAPI schema and CEL), no operator or webhook is involved.
 *
 * Invalid fixtures live in test/crds/invalid/, one object per file; adding a file adds a test. Their header
 * comments drive the test:
 *
 *   # expect: <exact substring of the API server's error message>      (required)
 *   # update-of: <file in test/crds/base/>                               (optional)
 *
 * Without `update-of`, the fixture is created and must be rejected. With `update-of: artifact.yaml`, the base
 * object is created first under the fixture's name, the fixture must be valid on its own (a server-side dry-run
 * create under another name succeeds), and replacing the base with the fixture must be rejected: this is how
 * transition rules (immutability, classification only rising, append-only lists) are tested. The test sets
 * metadata.namespace of fixtures to its own namespace, so fixtures carry none.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { kubectl, type CommandResult } from '../cluster/kubectl.ts';
import {
  exampleFiles,
  loadBase,
  loadInvalidFixtures,
  resourceOf,
  root,
  type KubeObject,
} from './fixtures.ts';
import { WAIT_CRDS_ESTABLISHED } from '../harness/suite.ts';
import { isS3BucketName, isS3Endpoint } from '../../core/api/validation.ts';

const cluster = inject('cluster');
const NS = 'strongroom-crds-test';
const FIELD_MANAGER = 'strongroom-crds-test';

const invalidFixtures = loadInvalidFixtures();

function inNamespace(object: KubeObject, name = object.metadata.name): KubeObject {
  return { ...object, metadata: { ...object.metadata, name, namespace: NS } };
}

function k(args: readonly string[], input?: string): Promise<CommandResult> {
  return kubectl(cluster, args, input === undefined ? {} : { input });
}

/** Runs kubectl and fails with its output unless it exits 0. */
async function ok(args: readonly string[], input?: string): Promise<string> {
  const result = await k(args, input);
  expect(result.code, `kubectl ${args.join(' ')}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

function create(object: KubeObject, ...extra: string[]): Promise<CommandResult> {
  return k(['create', '--validate=strict', ...extra, '-f', '-'], JSON.stringify(object));
}

beforeAll(async () => {
  await ok(['apply', '-f', join(root, 'crds')]);
  await ok(WAIT_CRDS_ESTABLISHED);
  await ok(
    ['apply', '--server-side', '--field-manager', FIELD_MANAGER, '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS, labels: { 'strongroom.dev/environment': 'test' } },
    }),
  );
});

describe('CRD installation', () => {
  it.each(['modelartifacts.strongroom.dev', 'accessgrants.strongroom.dev'])(
    '%s is Established with accepted names and no warnings',
    async (crd) => {
      const status = JSON.parse(await ok(['get', 'crd', crd, '-o', 'jsonpath={.status}'])) as {
        conditions: { type: string; status: string; message: string }[];
      };
      const byType = new Map(status.conditions.map((c) => [c.type, c]));
      expect(byType.get('Established')?.status).toBe('True');
      expect(byType.get('NamesAccepted')?.status).toBe('True');
      expect(byType.get('NonStructuralSchema')).toBeUndefined();
    },
  );

  it('registers short names and the strongroom category', async () => {
    const out = await ok(['api-resources', '--api-group=strongroom.dev', '-o', 'wide', '--no-headers']);
    const rows = out
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/));
    const ma = rows.find((r) => r[0] === 'modelartifacts');
    const ag = rows.find((r) => r[0] === 'accessgrants');
    expect(ma).toEqual(expect.arrayContaining(['ma,mart', 'ModelArtifact', 'true', 'strongroom']));
    expect(ag).toEqual(expect.arrayContaining(['ag,grant', 'AccessGrant', 'true', 'strongroom']));
  });
});

describe('docs/examples', () => {
  it.each(exampleFiles)('%s applies with strict validation and reads back', async (file) => {
    // Apply every example up to and including this one (in file-name order), so each test stands alone.
    for (const prior of exampleFiles.slice(0, exampleFiles.indexOf(file) + 1)) {
      await ok([
        'apply',
        '--server-side',
        '--validate=strict',
        '--field-manager',
        FIELD_MANAGER,
        '-f',
        join(root, 'docs', 'examples', prior),
      ]);
    }
    const docs = parseAllDocuments(readFileSync(join(root, 'docs', 'examples', file), 'utf8'))
      .map((d) => d.toJS() as KubeObject | null)
      .filter((d): d is KubeObject => d !== null);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) {
      const ns = doc.metadata.namespace ? ['-n', doc.metadata.namespace] : [];
      const back = JSON.parse(
        await ok(['get', resourceOf(doc), doc.metadata.name, ...ns, '-o', 'json']),
      ) as KubeObject;
      // Subset match: the server only adds defaults (e.g. keyLeaseDuration, crossEnvironment, algorithm).
      expect(back).toMatchObject(doc as unknown as Record<string, unknown>);
    }
  });
});

describe('invalid manifests are rejected by the API server', () => {
  it('has at least 18 fixtures', () => {
    expect(invalidFixtures.length).toBeGreaterThanOrEqual(18);
  });

  it.each(invalidFixtures.filter((f) => f.updateOf === undefined))('$file: $expect', async (fixture) => {
    const result = await create(inNamespace(fixture.object));
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toContain(fixture.expect);
  });

  it.each(invalidFixtures.filter((f) => f.updateOf !== undefined))(
    '$file (update of $updateOf): $expect',
    async (fixture) => {
      const name = fixture.object.metadata.name;
      // The fixture is a valid object in its own right: only the transition from the base is forbidden.
      const alone = await create(inNamespace(fixture.object, `${name}-alone`), '--dry-run=server');
      expect(alone.code, alone.stderr).toBe(0);

      await k(['delete', resourceOf(fixture.object), name, '-n', NS, '--ignore-not-found', '--wait']);
      const base = await create(inNamespace(loadBase(fixture.updateOf ?? '', name)));
      expect(base.code, base.stderr).toBe(0);

      const result = await k(
        ['replace', '--validate=strict', '-f', '-'],
        JSON.stringify(inNamespace(fixture.object)),
      );
      expect(result.code, result.stdout).not.toBe(0);
      expect(result.stderr).toContain(fixture.expect);
    },
  );

  it('allows the permitted transitions: raising classification, appending and withdrawing versions', async () => {
    const name = 'transition-allowed';
    await k(['delete', 'modelartifact.strongroom.dev', name, '-n', NS, '--ignore-not-found', '--wait']);
    const base = inNamespace(loadBase('artifact.yaml', name));
    await ok(['create', '--validate=strict', '-f', '-'], JSON.stringify(base));
    const spec = base.spec as {
      classification: string;
      versions: { name: string }[];
      withdrawnVersions: string[];
    };
    const v2 = spec.versions[1] as Record<string, unknown>;
    const updated: KubeObject = {
      ...base,
      spec: {
        ...spec,
        classification: 'restricted',
        versions: [...spec.versions, { ...v2, name: 'v3', publishedAt: '2026-10-03T00:00:00Z' }],
        withdrawnVersions: ['v1', 'v2'],
      },
    };
    await ok(['replace', '--validate=strict', '-f', '-'], JSON.stringify(updated));
    const back = JSON.parse(await ok(['get', 'ma', name, '-n', NS, '-o', 'json'])) as KubeObject;
    expect(back.spec).toMatchObject({ classification: 'restricted', withdrawnVersions: ['v1', 'v2'] });
  });

  it('allows shortening and adding approvals to an approved grant', async () => {
    const name = 'grant-transition-allowed';
    await k(['delete', 'accessgrant.strongroom.dev', name, '-n', NS, '--ignore-not-found', '--wait']);
    const base = inNamespace(loadBase('grant.yaml', name));
    await ok(['create', '--validate=strict', '-f', '-'], JSON.stringify(base));
    const spec = base.spec as { approvals: unknown[] };
    const updated: KubeObject = {
      ...base,
      spec: {
        ...spec,
        expiresAt: '2026-12-15T00:00:00Z',
        approvals: [
          ...spec.approvals,
          {
            approver: 'carol@example.com',
            groups: ['strongroom:approvers'],
            approvedAt: '2026-11-26T09:00:00Z',
          },
        ],
      },
    };
    await ok(['replace', '--validate=strict', '-f', '-'], JSON.stringify(updated));
  });

  it('allows an approver to deny a pending grant (the denial is then final)', async () => {
    const name = 'grant-denial-allowed';
    await k(['delete', 'accessgrant.strongroom.dev', name, '-n', NS, '--ignore-not-found', '--wait']);
    const base = inNamespace(loadBase('grant.yaml', name));
    const pending = { ...(base.spec as Record<string, unknown>) };
    delete pending.approvals;
    await ok(['create', '--validate=strict', '-f', '-'], JSON.stringify({ ...base, spec: pending }));
    const denial = {
      deniedBy: 'bob@example.com',
      groups: ['strongroom:approvers'],
      deniedAt: '2026-11-26T09:00:00Z',
      reason: 'No business need.',
    };
    await ok(
      ['replace', '--validate=strict', '-f', '-'],
      JSON.stringify({ ...base, spec: { ...pending, denial } }),
    );
    const back = JSON.parse(await ok(['get', 'ag', name, '-n', NS, '-o', 'json'])) as KubeObject;
    expect(back.spec).toMatchObject({ requester: 'alice@example.com', denial });
  });
});

describe('S3 storage', () => {
  it('accepts an S3 artifact with every field set, and defaults region and forcePathStyle when left out', async () => {
    const full = inNamespace(loadBase('artifact-s3.yaml', 's3-full'));
    await k(['delete', 'ma', 's3-full', '-n', NS, '--ignore-not-found', '--wait']);
    await ok(['create', '--validate=strict', '-f', '-'], JSON.stringify(full));
    const back = JSON.parse(await ok(['get', 'ma', 's3-full', '-n', NS, '-o', 'json'])) as KubeObject;
    expect(back.spec?.storage).toEqual(full.spec?.storage);

    const spec = full.spec as { storage: { s3: Record<string, unknown>; path: string } };
    const minimal = inNamespace(
      {
        ...full,
        spec: {
          ...spec,
          storage: {
            s3: { bucket: 'ml-models', credentialsSecretRef: { name: 'minio-reader' } },
            path: spec.storage.path,
          },
        },
      },
      's3-minimal',
    );
    await k(['delete', 'ma', 's3-minimal', '-n', NS, '--ignore-not-found', '--wait']);
    await ok(['create', '--validate=strict', '-f', '-'], JSON.stringify(minimal));
    const defaulted = JSON.parse(await ok(['get', 'ma', 's3-minimal', '-n', NS, '-o', 'json'])) as KubeObject;
    expect(defaulted.spec?.storage).toEqual({
      s3: {
        bucket: 'ml-models',
        region: 'us-east-1',
        forcePathStyle: true,
        credentialsSecretRef: { name: 'minio-reader' },
      },
      path: spec.storage.path,
    });
  });

  /** Whether the API server accepts `s3` (merged into a valid S3 spec) in a server-side dry run. */
  async function accepts(s3: Record<string, unknown>): Promise<boolean> {
    const base = inNamespace(loadBase('artifact-s3.yaml', 's3-probe'));
    const spec = base.spec as { storage: { s3: Record<string, unknown>; path: string } };
    const object = {
      ...base,
      spec: { ...spec, storage: { ...spec.storage, s3: { ...spec.storage.s3, ...s3 } } },
    };
    return (await create(object, '--dry-run=server')).code === 0;
  }

  it.each([
    'abc',
    'ml-models',
    'models.example.com',
    '1bucket',
    'a'.repeat(63),
    'a'.repeat(64),
    'ab',
    'ML-Models',
    'ml_models',
    '-models',
    'models-',
    'ml..models',
    '192.168.5.4',
    '192.168.5.4a',
    '1.2.3',
  ])('agrees with isS3BucketName on bucket %j', async (bucket) => {
    expect(await accepts({ bucket })).toBe(isS3BucketName(bucket).length === 0);
  });

  it.each([
    'https://s3.amazonaws.com',
    'https://minio.storage.svc:9000',
    'http://minio.storage.svc.cluster.local:9000/',
    'http://10.96.0.15:9000',
    'http://[fd00::1]:9000',
    'ftp://s3.example.com',
    's3.example.com',
    'HTTPS://s3.example.com',
    'https://user:pass@s3.example.com',
    'https://s3.example.com/?x=1',
    'https://s3.example.com#f',
    'https://s3.example.com/bucket',
    'https://s3.example.com//',
    'https://',
    'https://-bad.example.com',
    'https://s3.example.com:123456',
    'https://s3 example.com',
  ])('agrees with isS3Endpoint on endpoint %j', async (endpoint) => {
    expect(await accepts({ endpoint })).toBe(isS3Endpoint(endpoint).length === 0);
  });

  it('documents spec.storage.s3 in kubectl explain', async () => {
    const out = (await ok(['explain', 'ma.spec.storage.s3', '--recursive'])).replace(/\s+/g, ' ');
    expect(out).toContain('bucket <string> -required-');
    expect(out).toContain('credentialsSecretRef <Object> -required-');
    const field = (await ok(['explain', 'ma.spec.storage.s3.credentialsSecretRef'])).replace(/\s+/g, ' ');
    expect(field).toContain('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    expect(field).toContain('in the namespace of the pod that reads the artifact');
  });
});

describe('kubectl explain', () => {
  it('documents modelartifact.spec.versions', async () => {
    const out = await ok(['explain', 'modelartifact.spec.versions']);
    expect(out).toContain('FIELD: versions <[]Object>');
    for (const text of [
      'Published versions, oldest first.',
      'SHA-256 digest of the plaintext',
      'Size of the plaintext in bytes',
      'How this version was sealed.',
      'Where this version came from',
      'Identity that published the version',
    ]) {
      expect(out.replace(/\s+/g, ' ')).toContain(text);
    }
  });

  it('documents accessgrant.spec.subjects', async () => {
    const out = (await ok(['explain', 'accessgrant.spec.subjects'])).replace(/\s+/g, ' ');
    expect(out).toContain('The workloads the grant covers');
    expect(out).toContain('Namespace of the pods.');
    expect(out).toContain('Name of the service account the pods run as.');
    expect(out).toContain('Optional standard label selector that pods must also match.');
  });

  it('documents the encryption metadata recursively', async () => {
    const out = (await ok(['explain', 'ma.spec.versions.encryption', '--recursive'])).replace(/\s+/g, ' ');
    expect(out).toContain('keyFingerprint <string> -required-');
    expect(out).toContain('metadataPath <string>');
  });
});

describe('kubectl get', () => {
  it('shows the artifact printer columns', async () => {
    const name = 'printer-columns';
    await k(['delete', 'ma', name, '-n', NS, '--ignore-not-found', '--wait']);
    await ok(['create', '-f', '-'], JSON.stringify(inNamespace(loadBase('artifact.yaml', name))));
    const status = {
      latestVersion: 'v2',
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Sealed',
          message: 'all versions sealed',
          lastTransitionTime: '2026-11-26T00:00:00Z',
        },
      ],
    };
    await ok([
      'patch',
      'ma',
      name,
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    const out = await ok(['get', 'ma', name, '-n', NS]);
    const [header, row] = out.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'CLASSIFICATION', 'LATEST', 'READY', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 4)).toEqual([name, 'internal', 'v2', 'True']);
  });

  it('shows the grant printer columns', async () => {
    const name = 'printer-columns';
    await k(['delete', 'ag', name, '-n', NS, '--ignore-not-found', '--wait']);
    await ok(['create', '-f', '-'], JSON.stringify(inNamespace(loadBase('grant.yaml', name))));
    const status = { phase: 'Active', subjectSummary: 'ml-prod/inference' };
    await ok([
      'patch',
      'ag',
      name,
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    const out = await ok(['get', 'grant', name, '-n', NS]);
    const [header, row] = out.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'ARTIFACT', 'MODE', 'SUBJECTS', 'PHASE', 'EXPIRES', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 6)).toEqual([
      name,
      'base',
      'read',
      'ml-prod/inference',
      'Active',
      '2027-01-01T00:00:00Z',
    ]);
  });

  it('lists both kinds through short names and the strongroom category', async () => {
    const artifact = 'category-artifact';
    const grant = 'category-grant';
    await k(['delete', 'ma', artifact, '-n', NS, '--ignore-not-found', '--wait']);
    await k(['delete', 'ag', grant, '-n', NS, '--ignore-not-found', '--wait']);
    await ok(['create', '-f', '-'], JSON.stringify(inNamespace(loadBase('artifact.yaml', artifact))));
    await ok(['create', '-f', '-'], JSON.stringify(inNamespace(loadBase('grant.yaml', grant))));
    for (const short of ['ma', 'mart']) {
      expect(await ok(['get', short, artifact, '-n', NS, '-o', 'name'])).toBe(
        `modelartifact.strongroom.dev/${artifact}\n`,
      );
    }
    for (const short of ['ag', 'grant']) {
      expect(await ok(['get', short, grant, '-n', NS, '-o', 'name'])).toBe(
        `accessgrant.strongroom.dev/${grant}\n`,
      );
    }
    const names = (await ok(['get', 'strongroom', '-n', NS, '-o', 'name'])).trim().split('\n');
    expect(names).toEqual(
      expect.arrayContaining([
        `modelartifact.strongroom.dev/${artifact}`,
        `accessgrant.strongroom.dev/${grant}`,
      ]),
    );
  });
});
