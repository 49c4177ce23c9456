/**
 * `strongroom publish ARTIFACT DIR`: a platform engineer's laptop to a published, sealed version.
 *
 * 1. Encrypt DIR locally, in the directory format, under a fresh DEK sealed to the artifact's recipient public key
 *    (`status.recipientPublicKey`): the write path needs no KMS and no secret of the operator's. The ciphertext is
 *    staged in a private temporary directory; no plaintext leaves the machine.
 * 2. Ask the API server, as a dry run, whether the user may add this version (the publisher rule of the governance
 *    policies decides), before a byte is written to storage.
 * 3. Write the ciphertext to the artifact's storage: for S3, a multipart upload straight to the bucket (the manifest
 *    last); for a PersistentVolumeClaim, a stream of ciphertext only into a short-lived restricted pod that mounts
 *    the claim and installs the version in one rename (cli/receive.ts).
 * 4. Record the version in the user's own name, then wait until the operator has sealed its key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import {
  AppsV1Api,
  Exec,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
  type V1Status,
} from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import type { ModelArtifact, ModelArtifactVersion } from '../core/api/index.ts';
import { isDns1123Label } from '../core/api/validation.ts';
import { listTree, recipientKeyFromPem } from '../core/envelope/index.ts';
import { s3Client, uploadVersion, versionKeyPrefix, writeVersion } from '../core/storage/index.ts';
import { connect, explainApiError, GROUP, VERSION, type Cluster, type ClusterFlags } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { CliError, EXIT, usageError, type CliIo } from './io.ts';
import { outputOption, printDocument, type OutputFormat } from './output.ts';
import { formatBytes, startProgress } from './progress.ts';
import { versionStream } from './receive.ts';

interface PublishFlags extends ClusterFlags {
  version?: string;
  parent: string[];
  sourceRepository?: string;
  sourceCommit?: string;
  sourceRun?: string;
  operatorNamespace: string;
  image?: string;
  wait: boolean;
  timeout: number;
  progress: boolean;
  output: OutputFormat;
}

/** The uid and gid the receiving pod runs as (the image's "nonroot" user, like the sidecar). */
const RECEIVER_UID = 65532;
const RECEIVER_MOUNT = '/ciphertext';

export function publishCommand(io: CliIo): Command {
  return example(
    new Command('publish')
      .description(
        "encrypt a directory locally to an artifact's public key, write the ciphertext to its storage (S3 or a PersistentVolumeClaim), and record the version in your name",
      )
      .argument('<artifact>', 'the ModelArtifact (in --namespace)')
      .argument('<dir>', 'the plaintext directory to publish')
      .option('--version <name>', 'the new version (a DNS-1123 label; default: v<N+1>)')
      .option(
        '--parent <kind/name@version>',
        'lineage: a parent, e.g. ModelArtifact/resnet50@v1 or Dataset/imagenet@2024-01 (repeatable)',
        collect,
        [],
      )
      .option('--source-repository <url>', 'lineage: the repository of the code that produced it')
      .option('--source-commit <sha>', 'lineage: the commit of that code')
      .option('--source-run <id>', 'lineage: the training or pipeline run')
      .option(
        '--operator-namespace <ns>',
        "Strongroom's namespace (to find its image for a claim)",
        'strongroom-system',
      )
      .option(
        '--image <ref>',
        "the image of the pod that writes into a claim (default: the operator's own image)",
      )
      .option('--no-wait', 'do not wait for the operator to seal the version')
      .addOption(
        new Option('--timeout <seconds>', 'how long to wait for the receiving pod and for the seal')
          .default(120)
          .argParser(positiveInt),
      )
      .option('--no-progress', 'no progress bar')
      .addOption(outputOption())
      .action(
        action(io, async (artifact: string, dir: string, _o: unknown, command: Command) => {
          await publish(io, artifact, dir, flagsOf<PublishFlags>(command));
        }),
      ),
    'strongroom publish resnet50 ./model --version v2 -n ml-dev --parent Dataset/imagenet@2024-01',
  );
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n <= 0)
    throw usageError(`--timeout must be a positive number of seconds, not ${value}`);
  return n;
}

/** `--parent` values to the lineage's parents. */
export function parseParents(values: readonly string[]): { kind: string; name: string; version: string }[] {
  return values.map((value) => {
    const m = /^(ModelArtifact|Dataset)\/([^@/]+)@(.+)$/.exec(value);
    if (m === null)
      throw usageError(
        `--parent ${JSON.stringify(value)}: expected ModelArtifact/<name>@<version> or Dataset/<name>@<version>`,
      );
    return { kind: m[1] ?? '', name: m[2] ?? '', version: m[3] ?? '' };
  });
}

/** The next free `v<N>` name. */
export function nextVersionName(artifact: ModelArtifact): string {
  const names = new Set((artifact.spec.versions ?? []).map((v) => v.name));
  let n = names.size + 1;
  while (names.has(`v${String(n)}`)) n++;
  return `v${String(n)}`;
}

async function publish(io: CliIo, name: string, dir: string, flags: PublishFlags): Promise<void> {
  const lineage = lineageOf(flags);
  const cluster = connect(flags);
  const namespace = cluster.namespace;
  const ref = `ModelArtifact ${namespace}/${name}`;
  const source = await checkSource(dir);
  const [caller, artifact] = await Promise.all([
    cluster.whoAmI(),
    cluster.getArtifact(namespace, name),
  ]).catch((error: unknown) => {
    throw explainApiError(error, ref);
  });
  const version = flags.version ?? nextVersionName(artifact);
  if (isDns1123Label(version).length > 0 || version === 'latest')
    throw usageError(`--version ${JSON.stringify(version)} must be a DNS-1123 label other than "latest"`);
  if ((artifact.spec.versions ?? []).some((v) => v.name === version))
    throw new CliError(EXIT.refused, `${ref} already has a version ${version}; versions are immutable`);
  const key = artifact.status?.recipientPublicKey;
  if (key === undefined)
    throw new CliError(
      EXIT.unavailable,
      `${ref} has no recipient public key yet: is the operator running? (strongroom doctor)`,
    );

  const staging = await mkdtemp(join(tmpdir(), 'strongroom-publish-'));
  try {
    const encrypting = startProgress(io, `encrypt ${name}@${version}`, source.bytes, flags.progress);
    const polling = pollSize(staging, (n) => {
      encrypting.update(n);
    });
    let written;
    try {
      written = await writeVersion({
        source: dir,
        storageRoot: staging,
        storagePath: '',
        artifact: { uid: artifact.metadata.uid ?? '', name },
        version,
        recipientPublicKey: recipientKeyFromPem(key.publicKeyPem),
      });
    } catch (error) {
      encrypting.stop();
      throw new CliError(EXIT.usage, `cannot encrypt ${dir}: ${(error as Error).message}`, { cause: error });
    } finally {
      polling.stop();
    }
    encrypting.update(written.size);
    encrypting.finish();
    if (written.keyFingerprint !== key.fingerprint)
      throw new CliError(
        EXIT.failed,
        `${ref}'s recipient key does not match its fingerprint ${key.fingerprint}`,
      );
    const entry: ModelArtifactVersion = {
      name: version,
      digest: written.digest,
      size: written.size,
      encryption: { format: 'v1', keyFingerprint: written.keyFingerprint, sealedKey: written.sealedKey },
      ...(lineage === undefined ? {} : { lineage }),
      publisher: caller.username,
      publishedAt: `${new Date().toISOString().slice(0, 19)}Z`,
    };
    await appendVersion(cluster, artifact, entry, true);
    const where = await writeStorage(io, cluster, artifact, version, written.path, flags);
    await appendVersion(cluster, artifact, entry, false).catch((error: unknown) => {
      throw new CliError(
        error instanceof CliError ? error.exitCode : EXIT.unavailable,
        `${(error as Error).message}\nthe ciphertext was written to ${where} but the version was not recorded; remove it before publishing ${version} again`,
        { cause: error },
      );
    });
    const sealed = flags.wait ? await waitSealed(cluster, namespace, name, version, flags.timeout) : false;
    if (flags.output === 'table') {
      io.out(
        `published ${namespace}/${name}@${version} as ${caller.username}: ${formatBytes(written.size)}, ${written.digest}\n` +
          `  ciphertext: ${where}\n` +
          `  key: ${sealed ? 'sealed by the operator' : flags.wait ? 'not sealed yet' : 'not waited for (--no-wait)'}\n`,
      );
    } else
      printDocument(io, flags.output, { namespace, artifact: name, version: entry, storage: where, sealed });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function lineageOf(flags: PublishFlags): ModelArtifactVersion['lineage'] {
  const parents = parseParents(flags.parent);
  const source = {
    ...(flags.sourceRepository === undefined ? {} : { repository: flags.sourceRepository }),
    ...(flags.sourceCommit === undefined ? {} : { commit: flags.sourceCommit }),
    ...(flags.sourceRun === undefined ? {} : { run: flags.sourceRun }),
  };
  if (parents.length === 0 && Object.keys(source).length === 0) return undefined;
  return {
    ...(parents.length === 0 ? {} : { parents }),
    ...(Object.keys(source).length === 0 ? {} : { source }),
  } as ModelArtifactVersion['lineage'];
}

async function checkSource(dir: string): Promise<{ files: number; bytes: number }> {
  const info = await stat(dir).catch((cause: unknown) => {
    throw usageError(`cannot read ${dir}: ${(cause as Error).message}`, { cause });
  });
  if (!info.isDirectory()) throw usageError(`${dir} is not a directory`);
  const files = await listTree(dir).catch((cause: unknown) => {
    throw usageError(`cannot publish ${dir}: ${(cause as Error).message}`, { cause });
  });
  if (files.length === 0) throw usageError(`${dir} holds no file`);
  let bytes = 0;
  for (const f of files) bytes += (await stat(join(dir, ...f.split('/')))).size;
  return { files: files.length, bytes };
}

/** Calls `update` with the bytes under `root` every 200 ms (the encryption's progress). */
function pollSize(root: string, update: (bytes: number) => void): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async (): Promise<void> => {
    let total = 0;
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (entry.isFile())
        total += await stat(join(entry.parentPath, entry.name)).then(
          (s) => s.size,
          () => 0,
        );
    }
    if (!stopped) {
      update(total);
      timer = setTimeout(() => void tick(), 200);
    }
  };
  timer = setTimeout(() => void tick(), 200);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Adds `entry` to the artifact's versions in the user's name (or only asks whether it would be allowed). */
async function appendVersion(
  cluster: Cluster,
  artifact: ModelArtifact,
  entry: ModelArtifactVersion,
  dryRun: boolean,
): Promise<void> {
  const namespace = artifact.metadata.namespace ?? '';
  const name = artifact.metadata.name ?? '';
  // The operator writes status concurrently, which moves resourceVersion: retry a conflict with a fresh read.
  for (let attempt = 1; ; attempt++) {
    try {
      const fresh = await cluster.getArtifact(namespace, name);
      if ((fresh.spec.versions ?? []).some((v) => v.name === entry.name))
        throw new CliError(
          EXIT.refused,
          `ModelArtifact ${namespace}/${name} already has a version ${entry.name}`,
        );
      await cluster.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: 'modelartifacts',
          name,
          body: {
            metadata: { resourceVersion: fresh.metadata.resourceVersion },
            spec: { versions: [...(fresh.spec.versions ?? []), entry] },
          },
          ...(dryRun ? { dryRun: 'All' } : {}),
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 409 && attempt < 20) continue;
      throw explainApiError(
        error,
        dryRun
          ? `you may not publish to ModelArtifact ${namespace}/${name} (checked before writing anything)`
          : `recording ${entry.name} on ModelArtifact ${namespace}/${name}`,
      );
    }
  }
}

async function waitSealed(
  cluster: Cluster,
  namespace: string,
  name: string,
  version: string,
  timeoutSeconds: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    const a = await cluster.getArtifact(namespace, name).catch((error: unknown) => {
      throw explainApiError(error, `ModelArtifact ${namespace}/${name}`);
    });
    if ((a.status?.keys ?? []).some((k) => k.version === version)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/** Writes the staged version directory to the artifact's storage; returns where it went, for people. */
async function writeStorage(
  io: CliIo,
  cluster: Cluster,
  artifact: ModelArtifact,
  version: string,
  local: string,
  flags: PublishFlags,
): Promise<string> {
  const storage = artifact.spec.storage;
  const total = await dirBytes(local);
  if (storage.s3 !== undefined) {
    const s3 = storage.s3;
    const keyPrefix = versionKeyPrefix(artifact.spec, { name: version });
    const credentials = await s3Credentials(cluster, artifact);
    const client = s3Client(
      {
        ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
        region: s3.region ?? 'us-east-1',
        bucket: s3.bucket,
        prefix: s3.prefix ?? '',
        forcePathStyle: s3.forcePathStyle ?? true,
      },
      credentials,
    );
    const progress = startProgress(io, `upload s3://${s3.bucket}/${keyPrefix}`, total, flags.progress);
    try {
      await uploadVersion({
        client,
        bucket: s3.bucket,
        keyPrefix,
        directory: local,
        onProgress: (n) => {
          progress.update(n);
        },
      });
    } catch (error) {
      progress.stop();
      throw new CliError(
        EXIT.unavailable,
        `cannot upload to s3://${s3.bucket}/${keyPrefix}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    } finally {
      client.destroy();
    }
    progress.finish();
    return `s3://${s3.bucket}/${keyPrefix}`;
  }
  const claim = storage.persistentVolumeClaim?.claimName;
  if (claim === undefined) throw new CliError(EXIT.failed, 'the artifact names no storage this CLI knows');
  const path = `${RECEIVER_MOUNT}/${storage.path}/${version}`;
  await streamIntoClaim(io, cluster, artifact.metadata.namespace ?? '', claim, path, local, total, flags);
  return `pvc://${claim}/${storage.path}/${version}`;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  return total;
}

/** The bucket's credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in the environment, else the artifact's
 * Secret, read as the user. */
async function s3Credentials(
  cluster: Cluster,
  artifact: ModelArtifact,
): Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }> {
  const env = process.env;
  if ((env.AWS_ACCESS_KEY_ID ?? '') !== '' && (env.AWS_SECRET_ACCESS_KEY ?? '') !== '')
    return {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? '',
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? '',
      ...((env.AWS_SESSION_TOKEN ?? '') === '' ? {} : { sessionToken: env.AWS_SESSION_TOKEN ?? '' }),
    };
  const namespace = artifact.metadata.namespace ?? '';
  const secretName = artifact.spec.storage.s3?.credentialsSecretRef.name ?? '';
  const secret = await cluster.core
    .readNamespacedSecret({ name: secretName, namespace })
    .catch((error: unknown) => {
      throw explainApiError(
        error,
        `reading the bucket's credentials from Secret ${namespace}/${secretName} (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)`,
      );
    });
  const read = (k: string): string | undefined => {
    const v = secret.data?.[k];
    return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
  };
  const accessKeyId = read('AWS_ACCESS_KEY_ID');
  const secretAccessKey = read('AWS_SECRET_ACCESS_KEY');
  if (accessKeyId === undefined || secretAccessKey === undefined)
    throw new CliError(
      EXIT.failed,
      `Secret ${namespace}/${secretName} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY`,
    );
  return { accessKeyId, secretAccessKey };
}

/** The receiving pod: restricted, no service-account token, the claim read-write, nothing else. */
export function receiverPod(namespace: string, claim: string, image: string, deadlineSeconds: number): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `strongroom-publish-${randomBytes(4).toString('hex')}`,
      namespace,
      labels: {
        'app.kubernetes.io/name': 'strongroom-publish',
        'app.kubernetes.io/managed-by': 'strongroom-cli',
      },
    },
    spec: {
      restartPolicy: 'Never',
      activeDeadlineSeconds: deadlineSeconds,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: RECEIVER_UID,
        runAsGroup: RECEIVER_UID,
        fsGroup: RECEIVER_UID,
        fsGroupChangePolicy: 'OnRootMismatch',
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'receive',
          image,
          imagePullPolicy: 'IfNotPresent',
          // Waits for the exec; the pod ends by its deadline if the CLI goes away.
          command: ['/usr/local/bin/node', '-e', `setTimeout(() => {}, ${String(deadlineSeconds * 1000)})`],
          securityContext: {
            allowPrivilegeEscalation: false,
            privileged: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
          resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
          volumeMounts: [{ name: 'ciphertext', mountPath: RECEIVER_MOUNT }],
        },
      ],
      volumes: [{ name: 'ciphertext', persistentVolumeClaim: { claimName: claim } }],
    },
  };
}

async function operatorImage(cluster: Cluster, flags: PublishFlags): Promise<string> {
  if (flags.image !== undefined) return flags.image;
  const apps = cluster.kc.makeApiClient(AppsV1Api);
  const set = await apps
    .readNamespacedStatefulSet({ name: 'strongroom', namespace: flags.operatorNamespace })
    .catch((error: unknown) => {
      throw explainApiError(
        error,
        `finding Strongroom's image (StatefulSet ${flags.operatorNamespace}/strongroom; or pass --image)`,
      );
    });
  const image =
    set.spec?.template.spec?.containers.find((c) => c.name === 'operator')?.image ??
    set.spec?.template.spec?.containers[0]?.image;
  if (image === undefined)
    throw new CliError(EXIT.failed, 'the operator StatefulSet names no image; pass --image');
  return image;
}

async function streamIntoClaim(
  io: CliIo,
  cluster: Cluster,
  namespace: string,
  claim: string,
  path: string,
  local: string,
  total: number,
  flags: PublishFlags,
): Promise<void> {
  const image = await operatorImage(cluster, flags);
  const pod = receiverPod(namespace, claim, image, Math.max(flags.timeout * 5, 600));
  const podName = pod.metadata?.name ?? '';
  await cluster.core.createNamespacedPod({ namespace, body: pod }).catch((error: unknown) => {
    throw explainApiError(error, `creating the pod that writes into claim ${namespace}/${claim}`);
  });
  try {
    await waitRunning(cluster, namespace, podName, claim, flags.timeout);
    const progress = startProgress(io, `stream into pvc ${claim}`, total, flags.progress);
    try {
      await execReceive(cluster.kc, namespace, podName, path, local, (n) => {
        progress.update(n);
      });
    } catch (error) {
      progress.stop();
      throw error;
    }
    progress.finish();
  } finally {
    await cluster.core
      .deleteNamespacedPod({ namespace, name: podName, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  }
}

async function waitRunning(
  cluster: Cluster,
  namespace: string,
  name: string,
  claim: string,
  timeoutSeconds: number,
): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let last = '';
  while (Date.now() < deadline) {
    const pod = await cluster.core.readNamespacedPod({ namespace, name });
    const phase = pod.status?.phase ?? 'Pending';
    if (phase === 'Running' && pod.status?.containerStatuses?.[0]?.started === true) return;
    if (phase === 'Failed' || phase === 'Succeeded')
      throw new CliError(
        EXIT.unavailable,
        `the pod ${namespace}/${name} that writes into claim ${claim} ended (${phase})`,
      );
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    last = waiting?.reason
      ? `${waiting.reason}: ${waiting.message ?? ''}`
      : scheduled?.status === 'False'
        ? `not scheduled: ${scheduled.message ?? ''}`
        : phase;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new CliError(
    EXIT.unavailable,
    `the pod ${namespace}/${name} that writes into claim ${claim} did not start within ${String(timeoutSeconds)} s (${last})`,
  );
}

async function execReceive(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  path: string,
  local: string,
  onBytes: (n: number) => void,
): Promise<void> {
  const stdin = Readable.from(versionStream(local, onBytes));
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const status = await new Promise<V1Status>((resolve, reject) => {
    new Exec(kc)
      .exec(
        namespace,
        pod,
        'receive',
        ['/usr/local/bin/node', '/app/cli/receive.ts', path],
        stdout,
        stderr,
        stdin,
        false,
        resolve,
      )
      .then((ws: { on(event: 'close', listener: () => void): unknown }) => {
        ws.on('close', () => {
          setTimeout(() => {
            reject(new Error('the exec session closed without a status'));
          }, 2000);
        });
      })
      .catch(reject);
  }).catch((error: unknown) => {
    throw explainApiError(error, `streaming into pod ${namespace}/${pod}`);
  });
  if (status.status !== 'Success')
    throw new CliError(
      EXIT.failed,
      `the claim refused the version: ${Buffer.concat(err).toString('utf8').trim() || status.message || 'unknown error'}`,
    );
  const reply = Buffer.concat(out).toString('utf8').trim();
  if (!reply.includes('"ok":true'))
    throw new CliError(EXIT.failed, `the receiving pod did not confirm the version (${reply})`);
}
