/**
 * Publish mode end to end on the real control plane: the real operator process runs the key broker, pods are created
 * through the API server, tokens come from TokenRequest and certificates from Attest, and publishOutput talks to the
 * broker over real mutual TLS. The published version is then read back as a reader would: the DEK from ReleaseKey
 * decrypts the ciphertext that publishOutput wrote into byte-identical files whose tree digest is the recorded one.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ModelArtifact } from '../../core/api/index.ts';
import { decryptDirectory, treeDigest } from '../../core/envelope/index.ts';
import { PUBLISH_COMPLETE_MARKER, type PlannedPublish } from '../../core/injection/contract.ts';
import { versionDirectory } from '../../core/storage/index.ts';
import { publishOutput, type PublishOutcome } from '../../sidecar/publish.ts';
import { attestedWorkload, release, type Workload } from '../harness/workload.ts';
import {
  appendVersion,
  createGrant,
  getArtifact,
  getGrant,
  grantBody,
  rawRecipientKey,
  sealedVersion,
} from '../harness/objects.ts';
import { clients, eventually } from '../harness/operator.ts';
import { memoryLogger } from '../harness/logger.ts';
import { keyedArtifact, operatorSuite } from '../harness/suite.ts';

const cluster = inject('cluster');
const TRUST_DOMAIN = 'strongroom.test';
const ARTIFACT = 'finetune';
const suite = operatorSuite(cluster, {
  operatorNamespace: 'pub-op',
  namespaces: {
    ns: { name: 'pub-ml', environment: 'prod', serviceAccounts: ['publisher', 'reader'] },
  },
  operator: { identity: 'op-publish', args: [`--trust-domain=${TRUST_DOMAIN}`], waitFor: 'broker' },
});
const { ns } = suite.namespaces;
const { core, custom } = clients(cluster.kubeconfig);

let artifact: ModelArtifact;
const workloads = new Map<'publisher' | 'reader', Workload>();
function client(who: 'publisher' | 'reader') {
  const w = workloads.get(who);
  if (w === undefined) throw new Error(`no ${who} workload`);
  return w.client;
}
/** The storage volume as the publishing sidecar sees it, and the job's output directories. */
let work: string;
const { logger, lines: logs } = memoryLogger();

const storageRoot = () => join(work, 'claim');
const artifactDir = () => join(storageRoot(), artifact.spec.storage.path);

/** The job's output: nested directories, a name with a space, a binary file; marked complete unless told. */
async function jobOutput(
  name: string,
  complete = true,
): Promise<{ dir: string; files: Map<string, Buffer> }> {
  const dir = join(work, name);
  const files = new Map<string, Buffer>([
    ['model.safetensors', randomBytes(1_500_000)],
    ['config.json', Buffer.from('{"arch":"resnet50","classes":10}\n')],
    ['eval/metrics report.txt', Buffer.from('top1 0.81\n')],
  ]);
  await mkdir(join(dir, 'eval'), { recursive: true });
  for (const [path, bytes] of files) await writeFile(join(dir, ...path.split('/')), bytes);
  if (complete) await writeFile(join(dir, PUBLISH_COMPLETE_MARKER), '');
  return { dir, files };
}

function plan(version: string, outputDir: string): PlannedPublish {
  const key = artifact.status?.recipientPublicKey;
  if (!key) throw new Error('no recipient key');
  return {
    namespace: ns,
    name: ARTIFACT,
    uid: artifact.metadata.uid ?? '',
    version,
    outputDir,
    ciphertextPath: versionDirectory(storageRoot(), artifact.spec, { name: version }),
    recipientPublicKey: rawRecipientKey(key.publicKeyPem),
    mountPath: '/output',
  };
}

async function versionNames(): Promise<string[]> {
  return ((await getArtifact(custom, ns, ARTIFACT)).spec.versions ?? []).map((v) => v.name);
}

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/strongroom-publish-int-');
  artifact = await keyedArtifact(custom, ns, ARTIFACT, 'internal');
  await createGrant(
    custom,
    ns,
    grantBody('finetune-publish', ARTIFACT, {
      subjects: [{ namespace: ns, serviceAccount: 'publisher' }],
      mode: 'publish',
      versions: { match: 'all' },
    }),
  );
  await createGrant(
    custom,
    ns,
    grantBody('finetune-read', ARTIFACT, {
      subjects: [{ namespace: ns, serviceAccount: 'reader' }],
      versions: { match: 'all' },
    }),
  );
  // (The read grant becomes Active only once a version exists; ReleaseKey below waits for it.)
  await eventually('the publish grant Active', async () =>
    (await getGrant(custom, ns, 'finetune-publish')).status?.phase === 'Active' ? true : undefined,
  );
  workloads.set('publisher', await attestedWorkload(core, suite.endpoint, ns, 'trainer-0', 'publisher'));
  workloads.set('reader', await attestedWorkload(core, suite.endpoint, ns, 'reader-0', 'reader'));
}, 180_000);

afterAll(async () => {
  for (const w of workloads.values()) w.client.close();
  await rm(work, { recursive: true, force: true });
});

describe('publishOutput against the real broker', () => {
  let published: Extract<PublishOutcome, { published: true }>;
  let files: Map<string, Buffer>;

  it('publishes a marked output as a new version that a reader decrypts into byte-identical files', async () => {
    const output = await jobOutput('out-v1');
    files = output.files;
    // The broker's informers may trail the grant's Active status by a moment: retry a refusal (each refused attempt
    // removes its ciphertext, so the next one can write it again).
    published = await eventually(
      'the publish',
      async () => {
        const outcome = await publishOutput(plan('v1', output.dir), client('publisher'), logger);
        if (!outcome.published) throw new Error(JSON.stringify(outcome));
        return outcome;
      },
      20_000,
      500,
    );
    expect(published.publisher).toBe(`spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/publisher`);
    expect(published.path).toBe(join(artifactDir(), 'v1'));
    expect(await readdir(artifactDir())).toEqual(['v1']);

    const stored = await getArtifact(custom, ns, ARTIFACT);
    const v1 = stored.spec.versions?.find((v) => v.name === 'v1');
    expect(v1).toBeDefined();
    expect(v1?.publisher).toBe(`spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/publisher`);
    expect(v1?.digest).toBe(published.digest);
    expect(v1?.size).toBe([...files.values()].reduce((n, b) => n + b.length, 0));
    expect(v1?.encryption.keyFingerprint).toBe(stored.status?.recipientPublicKey?.fingerprint);
    expect(v1?.lineage).toBeUndefined();

    const released = await eventually('the release of v1', async () => {
      const r = await release(client('reader'), ns, ARTIFACT, 'v1');
      return 'ok' in r ? r.ok : undefined;
    });
    expect(released.digest).toBe(v1?.digest);
    const dek = Buffer.from(released.dek);
    try {
      const manifest = await decryptDirectory(published.path, join(work, 'plain-v1'), {
        dek,
        keyId: '',
        context: { artifactUid: artifact.metadata.uid ?? '', artifactName: ARTIFACT, version: 'v1' },
      });
      expect(treeDigest(manifest)).toBe(v1?.digest);
      expect(manifest.files.map((f) => f.path).sort()).toEqual([...files.keys()].sort());
      for (const [path, bytes] of files)
        expect((await readFile(join(work, 'plain-v1', ...path.split('/')))).equals(bytes), path).toBe(true);
      // No key material in the sidecar's logs or the operator's.
      for (const text of [logs.join(''), suite.operator.output()]) {
        expect(text).not.toContain(dek.toString('base64'));
        expect(text).not.toContain(dek.toString('hex'));
      }
      expect(logs.join('')).toContain('published');
    } finally {
      dek.fill(0);
    }
  });

  it('does not publish an output without the completion marker: nothing written, no version', async () => {
    const output = await jobOutput('out-unmarked', false);
    const outcome = await publishOutput(plan('v2', output.dir), client('publisher'), logger);
    expect(outcome).toMatchObject({ published: false, reason: 'incomplete' });
    expect(await readdir(artifactDir())).toEqual(['v1']);
    expect(await versionNames()).toEqual(['v1']);
    expect(
      suite
        .auditEvents()
        .some((e) => e.operation === 'publish-version' && JSON.stringify(e).includes('"v2"')),
    ).toBe(false);
  });

  it('a pod without a publish grant is refused with PERMISSION_DENIED, audited, and its ciphertext removed', async () => {
    const output = await jobOutput('out-reader');
    const outcome = await publishOutput(plan('v3', output.dir), client('reader'), logger);
    expect(outcome).toMatchObject({
      published: false,
      reason: 'refused',
      code: grpc.status.PERMISSION_DENIED,
    });
    // The caller is told the reason and a generic sentence; the detail (which grants almost matched) is audited.
    expect(outcome.published ? '' : outcome.message).toMatch(
      /NoPublishGrant: no AccessGrant allows this workload to publish this version; details are in the broker's audit log/,
    );
    expect(outcome.published ? '' : outcome.message).not.toContain('finetune-publish');
    expect(await readdir(artifactDir())).toEqual(['v1']);
    expect(await versionNames()).toEqual(['v1']);
    await eventually(
      'the denial in the audit log',
      () =>
        suite
          .auditEvents()
          .find(
            (e) =>
              e.operation === 'publish-version' &&
              e.decision === 'deny' &&
              e.reason === 'no-publish-grant' &&
              JSON.stringify(e.artifact).includes('"v3"'),
          ),
      10_000,
    );
  });

  it('an existing version is refused: on disk before anything is written, in the artifact by the broker', async () => {
    // v1's directory exists: refused before writing, and the published ciphertext is untouched.
    const before = await readFile(join(published.path, 'manifest.sre'));
    const again = await jobOutput('out-again');
    const onDisk = await publishOutput(plan('v1', again.dir), client('publisher'), logger);
    expect(onDisk).toMatchObject({ published: false, reason: 'write-failed', storageError: 'exists' });
    expect((await readFile(join(published.path, 'manifest.sre'))).equals(before)).toBe(true);

    // v2 is recorded in the artifact (by another writer, elsewhere) but has no directory here: the broker refuses
    // it with ALREADY_EXISTS and the ciphertext just written is removed.
    const { version, dek } = await sealedVersion(await getArtifact(custom, ns, ARTIFACT), 'v2');
    dek.fill(0);
    await appendVersion(custom, artifact, version);
    const inArtifact = await publishOutput(plan('v2', again.dir), client('publisher'), logger);
    expect(inArtifact).toMatchObject({
      published: false,
      reason: 'refused',
      code: grpc.status.ALREADY_EXISTS,
    });
    expect(inArtifact.published ? '' : inArtifact.message).toMatch(/already published/);
    expect(await readdir(artifactDir())).toEqual(['v1']);
    const v2 = (await getArtifact(custom, ns, ARTIFACT)).spec.versions?.find((v) => v.name === 'v2');
    expect(v2?.digest).toBe(version.digest);
    expect(v2?.publisher).toBe(version.publisher);
  });
});
