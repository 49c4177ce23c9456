/**
 * A real S3-compatible server for the tests: the Versity S3 gateway (versitygw, built from the Go module proxy by
 * test/cluster/go/build.sh, part `versitygw`; docs/adr/0011-s3-test-server.md) serving a plain directory through its
 * posix backend, with one account, root, whose credentials are made up for each server.
 *
 * It listens on one address only: loopback by default (host-only tests), or the pod bridge's gateway
 * (DEFAULT_POD_NETWORK.gateway, 10.244.0.1) when pods must reach it, as the key broker does. Never an unspecified
 * address (0.0.0.0, ::), which would expose it on the outside interface. Its output goes to a log file whose tail
 * every start error carries.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { ensureBinaries, versitygwBinary } from '../cluster/binaries.ts';
import { freePort } from '../cluster/net.ts';
import { logTail, startComponent, waitUntil, type Component } from '../cluster/process.ts';

export interface S3ServerOptions {
  /** The one address to listen on: an IP literal, 127.0.0.1 unless pods must reach it (then the bridge's gateway). */
  readonly host?: string;
  /** 0 (the default): a free port on `host`. */
  readonly port?: number;
  /** The directory served as buckets (one subdirectory per bucket); default a fresh temporary directory. */
  readonly root?: string;
  /**
   * The directory of the cluster binaries holding versitygw (an integration test passes `inject('cluster').binDir`);
   * default: what test/cluster/go/build.sh --for demo prints (it builds the part on first use, then costs nothing).
   */
  readonly binDir?: string;
  /** How long to wait for the first successful S3 call; default 30 s. */
  readonly startTimeoutMs?: number;
}

export interface S3Server {
  /** `http://<host>:<port>` */
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly region: 'us-east-1';
  /** The root account's credentials, random per server. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The directory served: `<root>/<bucket>/<key>` is an object's file. */
  readonly root: string;
  /** The server's stdout and stderr (request lines and errors). */
  readonly logFile: string;
  readonly pid: number;
  /** A new client for this server (path-style addressing, the root credentials); stop() destroys it. */
  client(): S3Client;
  createBucket(name: string): Promise<void>;
  /** Kills the server and removes its temporary directories (a `root` given by the caller stays). Idempotent. */
  stop(): Promise<void>;
}

/** The S3 server could not be started, or a call to it failed. */
export class S3ServerError extends Error {
  override readonly name = 'S3ServerError';
}

const REGION = 'us-east-1';
/** Attempts when the port was picked here and another process took it between the pick and versitygw's bind. */
const PORT_ATTEMPTS = 3;

/** Starts versitygw and resolves once it answers a signed ListBuckets. */
export async function startS3Server(options: S3ServerOptions = {}): Promise<S3Server> {
  const host = options.host ?? '127.0.0.1';
  if (isIP(host) === 0)
    throw new S3ServerError(`S3 server host must be an IP address, not ${JSON.stringify(host)}`);
  if (host === '0.0.0.0' || host === '::')
    throw new S3ServerError(
      `S3 server host ${host} would listen on every interface, the outside one too: use 127.0.0.1, or the pod bridge's gateway for pods`,
    );
  let binary: string;
  try {
    binary = versitygwBinary(options.binDir ?? (await ensureBinaries(() => undefined, 'demo')));
  } catch (error) {
    throw new S3ServerError('cannot find the versitygw binary', { cause: error });
  }

  const work = mkdtempSync(join(tmpdir(), 'strongroom-s3-'));
  const root = options.root ?? join(work, 'data');
  mkdirSync(root, { recursive: true });
  const logFile = join(work, 'versitygw.log');
  const iamDir = join(work, 'iam');
  mkdirSync(iamDir);
  // Letters and digits as AWS's own keys look; the secret is 40 characters like theirs.
  const accessKeyId = `SRTEST${randomBytes(10).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(30).toString('base64url');
  const removeWork = (): void => {
    rmSync(work, { recursive: true, force: true });
  };

  const clients: S3Client[] = [];
  let component: Component | undefined;
  let port: number;
  let endpoint = '';
  const makeClient = (): S3Client =>
    new S3Client({
      endpoint,
      region: REGION,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      // The posix backend answers at once; a request that hangs means the server is gone.
      requestHandler: { requestTimeout: 60_000, connectionTimeout: 5_000 },
      maxAttempts: 1,
    });

  for (let attempt = 1; ; attempt++) {
    port = options.port && options.port !== 0 ? options.port : await freePort(host);
    endpoint = `http://${isIP(host) === 6 ? `[${host}]` : host}:${String(port)}`;
    const address = isIP(host) === 6 ? `[${host}]:${String(port)}` : `${host}:${String(port)}`;
    rmSync(logFile, { force: true }); // an earlier attempt's log would say "address already in use" again
    try {
      component = startComponent(
        'versitygw',
        binary,
        [
          '--port',
          address,
          '--region',
          REGION,
          '--keep-alive',
          // The internal IAM with no account but root: an unknown access key then gets 403 InvalidAccessKeyId, as
          // from AWS (without it, single-account mode answers 404 XAdminUserNotFound).
          '--iam-dir',
          iamDir,
          'posix',
          root,
        ],
        logFile,
        // Only the credentials: no VGW_* setting of the caller's environment can change the server.
        { ROOT_ACCESS_KEY: accessKeyId, ROOT_SECRET_KEY: secretAccessKey },
      );
    } catch (error) {
      removeWork();
      throw new S3ServerError(`cannot start ${binary}`, { cause: error });
    }
    const probe = makeClient();
    try {
      await waitUntil(
        `versitygw at ${endpoint} to answer ListBuckets`,
        async () => {
          await probe.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(2_000) });
          return true;
        },
        { timeoutMs: options.startTimeoutMs ?? 30_000, component, intervalMs: 100 },
      );
      break;
    } catch (error) {
      await component.stop(2_000);
      const portTaken = /address already in use/i.test(safeRead(logFile));
      if (portTaken && !options.port && attempt < PORT_ATTEMPTS) continue;
      removeWork();
      throw new S3ServerError(`the S3 server did not start at ${endpoint}`, { cause: error });
    } finally {
      probe.destroy();
    }
  }

  const server = component;
  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    host,
    port,
    region: REGION,
    accessKeyId,
    secretAccessKey,
    root,
    logFile,
    pid: server.pid,
    client() {
      const c = makeClient();
      clients.push(c);
      return c;
    },
    async createBucket(name) {
      const c = makeClient();
      try {
        await c.send(new CreateBucketCommand({ Bucket: name }));
      } catch (error) {
        throw new S3ServerError(
          `creating bucket ${name} on ${endpoint} failed; last log lines:\n${logTail(logFile, 10)}`,
          { cause: error },
        );
      } finally {
        c.destroy();
      }
    },
    stop() {
      stopping ??= (async () => {
        for (const c of clients.splice(0)) c.destroy();
        await server.stop(5_000);
        removeWork();
      })();
      return stopping;
    },
  };
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
