import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  NoSuchKey,
  PutBucketPolicyCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachNode, type Node } from '../cluster/cluster.ts';
import { processesMatching } from '../cluster/host.ts';
import { DEFAULT_POD_NETWORK } from '../cluster/hostnet.ts';
import { BUSYBOX_IMAGE } from '../cluster/image.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { startS3Server, S3ServerError, type S3Server } from './s3.ts';

const cluster = inject('cluster');
const MiB = 1024 * 1024;

async function body(client: S3Client, bucket: string, key: string, range?: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
  if (!r.Body) throw new Error(`no body for ${bucket}/${key}`);
  return Buffer.from(await r.Body.transformToByteArray());
}

/** The error a call fails with (the test fails if it succeeds). */
async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  throw new Error('the call succeeded');
}

/** The real Versity S3 gateway (test/harness/s3.ts) on loopback, driven by the AWS SDK. */
describe('the S3 test server (versitygw)', () => {
  let server: S3Server;
  let client: S3Client;
  const bucket = 'ciphertext';

  beforeAll(async () => {
    server = await startS3Server({ binDir: cluster.binDir });
    client = server.client();
    await server.createBucket(bucket);
  });
  afterAll(async () => {
    await server.stop();
  });

  it('listens on loopback with credentials of its own, and lists the bucket it created', async () => {
    expect(server.endpoint).toBe(`http://127.0.0.1:${String(server.port)}`);
    expect(server.region).toBe('us-east-1');
    expect(server.accessKeyId).toMatch(/^[A-Z0-9]{20,}$/);
    expect(server.secretAccessKey.length).toBeGreaterThanOrEqual(40);
    const list = await client.send(new ListBucketsCommand({}));
    expect(list.Buckets?.map((b) => b.Name)).toEqual([bucket]);
  });

  it('stores a 20 MiB object and answers a ranged GET with exactly those bytes', async () => {
    const data = randomBytes(20 * MiB);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'models/big.bin', Body: data }));
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'models/big.bin' }));
    expect(head.ContentLength).toBe(20 * MiB);

    const r = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'models/big.bin', Range: `bytes=${MiB}-${2 * MiB - 1}` }),
    );
    expect(r.ContentRange).toBe(`bytes ${MiB}-${2 * MiB - 1}/${20 * MiB}`);
    expect(r.ContentLength).toBe(MiB);
    const part = Buffer.from((await r.Body?.transformToByteArray()) ?? []);
    expect(part.equals(data.subarray(MiB, 2 * MiB))).toBe(true);
    // A range at the very end, and a suffix range.
    const tail = await body(client, bucket, 'models/big.bin', `bytes=${20 * MiB - 17}-`);
    expect(tail.equals(data.subarray(20 * MiB - 17))).toBe(true);
    const suffix = await body(client, bucket, 'models/big.bin', 'bytes=-4096');
    expect(suffix.equals(data.subarray(20 * MiB - 4096))).toBe(true);
    // The posix backend keeps the object as a plain file under the root.
    expect(readFileSync(join(server.root, bucket, 'models', 'big.bin')).equals(data)).toBe(true);
  });

  it('takes a multipart upload (lib-storage Upload, 5 MiB parts) and reads it back byte for byte', async () => {
    const data = randomBytes(12 * MiB + 12345); // parts of 5, 5 and 2 MiB + 12345 bytes
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: 'models/multipart.bin', Body: data },
      partSize: 5 * MiB,
      queueSize: 2,
      leavePartsOnError: false,
    });
    const parts: number[] = [];
    upload.on('httpUploadProgress', (p) => {
      if (p.part !== undefined) parts.push(p.part);
    });
    const done = await upload.done();
    // An S3 multipart object's ETag is "<md5 of the part md5s>-<number of parts>".
    expect(done.ETag).toMatch(/-3"$/);
    expect(new Set(parts)).toEqual(new Set([1, 2, 3]));
    const back = await body(client, bucket, 'models/multipart.bin');
    expect(back.length).toBe(data.length);
    expect(back.equals(data)).toBe(true);
  });

  it('fails a GET of a missing key with NoSuchKey', async () => {
    const error = await failure(body(client, bucket, 'models/absent.bin'));
    expect(error).toBeInstanceOf(NoSuchKey);
    expect((error as NoSuchKey).$metadata.httpStatusCode).toBe(404);
  });

  it('refuses a wrong secret and an unknown access key (403)', async () => {
    const withCredentials = (accessKeyId: string, secretAccessKey: string): S3Client =>
      new S3Client({
        endpoint: server.endpoint,
        region: server.region,
        forcePathStyle: true,
        credentials: { accessKeyId, secretAccessKey },
        maxAttempts: 1,
      });
    const wrongSecret = withCredentials(server.accessKeyId, `${server.secretAccessKey}x`);
    const unknownKey = withCredentials('AKIASTRONGROOMNOBODY', server.secretAccessKey);
    try {
      const e1 = await failure(body(wrongSecret, bucket, 'models/big.bin', 'bytes=0-0'));
      expect(e1).toBeInstanceOf(S3ServiceException);
      expect((e1 as S3ServiceException).name).toBe('SignatureDoesNotMatch');
      expect((e1 as S3ServiceException).$metadata.httpStatusCode).toBe(403);
      const e2 = await failure(unknownKey.send(new ListBucketsCommand({})));
      expect(e2).toBeInstanceOf(S3ServiceException);
      // As from AWS (versitygw's internal IAM; its single-account mode would say 404 XAdminUserNotFound).
      expect((e2 as S3ServiceException).name).toBe('InvalidAccessKeyId');
      expect((e2 as S3ServiceException).$metadata.httpStatusCode).toBe(403);
      // Anonymous requests are refused too.
      const anonymous = await fetch(`${server.endpoint}/${bucket}/models/big.bin`);
      expect(anonymous.status).toBe(403);
      expect(await anonymous.text()).toContain('<Code>AccessDenied</Code>');
    } finally {
      wrongSecret.destroy();
      unknownKey.destroy();
    }
  });

  it('never listens on every interface', async () => {
    for (const host of ['0.0.0.0', '::', 'localhost']) {
      await expect(startS3Server({ host, binDir: cluster.binDir })).rejects.toBeInstanceOf(S3ServerError);
    }
  });

  it('stops: the process is gone and its temporary directory removed', async () => {
    const other = await startS3Server({ binDir: cluster.binDir });
    const { pid, root } = other;
    expect(existsSync(root)).toBe(true);
    await other.stop();
    await other.stop(); // idempotent
    expect(existsSync(root)).toBe(false);
    expect(processesMatching(root).map((p) => p.pid)).not.toContain(pid);
    expect(existsSync(`/proc/${String(pid)}`)).toBe(false);
  });
});

/**
 * Pods reach a host server on the pod bridge's gateway (10.244.0.1), as sidecars reach the key broker: the server
 * listens there and nowhere else, and the host guard needs no rule for it (it filters forwarded and outgoing traffic,
 * not what pods send to the host itself).
 */
describe('the S3 test server, from a pod', () => {
  const ns = 's3-reach';
  const gateway = DEFAULT_POD_NETWORK.gateway;
  let node: Node;
  let server: S3Server;

  beforeAll(async () => {
    node = await attachNode(cluster, { log: (l) => process.stderr.write(`[s3-node] ${l}\n`) });
    server = await startS3Server({ host: gateway, binDir: cluster.binDir });
  });
  afterAll(async () => {
    await server.stop();
    await node.stop();
  });

  it('serves an object to a pod in a restricted namespace through the cluster network', async () => {
    expect(server.endpoint).toBe(`http://${gateway}:${String(server.port)}`);
    // It listens on the gateway only: not on loopback (nor, therefore, on a wildcard address).
    const onLoopback = await failure(fetch(`http://127.0.0.1:${String(server.port)}/`));
    expect((onLoopback as Error & { cause?: { code?: string } }).cause?.code).toBe('ECONNREFUSED');
    const client = server.client();
    const bucket = 'pod-reach';
    const content = `ciphertext-${randomBytes(8).toString('hex')}`;
    await server.createBucket(bucket);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'public.txt', Body: content }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'private.txt', Body: 'not for you' }));
    // busybox cannot sign requests: one key is readable anonymously, the other is not.
    await client.send(
      new PutBucketPolicyCommand({
        Bucket: bucket,
        Policy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: '*',
              Action: 's3:GetObject',
              Resource: `arn:aws:s3:::${bucket}/public.txt`,
            },
          ],
        }),
      }),
    );

    await kubectl(cluster, ['create', 'namespace', ns]);
    await kubectl(cluster, ['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
    const base = `${server.endpoint}/${bucket}`;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 's3-get', namespace: ns },
      spec: {
        restartPolicy: 'Never',
        securityContext: {
          runAsNonRoot: true,
          runAsUser: 65534,
          runAsGroup: 65534,
          seccompProfile: { type: 'RuntimeDefault' },
        },
        containers: [
          {
            name: 'get',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            command: [
              '/bin/sh',
              '-c',
              `wget -q -O - ${base}/public.txt; echo; wget -q -O - ${base}/private.txt 2>&1 || echo refused`,
            ],
            securityContext: {
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ['ALL'] },
            },
          },
        ],
      },
    };
    const applied = await kubectl(cluster, ['apply', '-f', '-'], { input: JSON.stringify(pod) });
    expect(applied.code, applied.stderr).toBe(0);
    const done = await kubectl(
      cluster,
      ['-n', ns, 'wait', 'pod/s3-get', '--for=jsonpath={.status.phase}=Succeeded', '--timeout=90s'],
      { timeoutMs: 100_000 },
    );
    expect(done.code, done.stderr).toBe(0);
    const lines = (await kubectl(cluster, ['-n', ns, 'logs', 's3-get'])).stdout.trim().split('\n');
    expect(lines[0]).toBe(content);
    expect(lines.join('\n')).toContain('403');
    expect(lines.at(-1)).toBe('refused');
    // The server saw the pod's own address (no NAT on the way).
    const log = readFileSync(server.logFile, 'utf8');
    const from = /\| (10\.244\.0\.\d+) \| GET \| \/pod-reach\/public\.txt/.exec(log)?.[1];
    expect(from).toBeDefined();
    expect(from).not.toBe(gateway);
    await kubectl(cluster, ['delete', 'namespace', ns, '--wait=false']);
  });
});
