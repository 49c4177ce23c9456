/**
 * Smoke check of bench/ghz.ts (and bench/proc.ts's cpuSecondsOf): builds (or finds) ghz, starts a stand-in mTLS KeyBroker server (grpc-js, the real
 * service definition from proto/keybroker.ts, a fixed ReleaseKey answer), and drives it with ghz:
 *
 *   - ReleaseKey at 200 rps for 3 s, and unlimited for 3 s: every call must succeed;
 *   - without a client certificate, and with the wrong server name: every call must fail;
 *   - Attest (UNIMPLEMENTED here): every call must come back Unimplemented;
 *   - bad options, an unknown method, a build without Go: typed errors.
 *
 * Prints rps, latencies and the CPU seconds of ghz and of this (server) process; exits non-zero on any failed
 * check. Run: `node bench/ghz.smoke.ts` (Linux, `go` and `openssl` on PATH).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { KEY_BROKER_PROTO, KEY_BROKER_SERVICE, PROTO_ROOT, loadKeyBroker } from '../proto/keybroker.ts';
import type { KeyBrokerHandlers } from '../proto/keybroker.ts';
import {
  GHZ_VERSION,
  GhzBuildError,
  GhzRunError,
  ensureGhz,
  runGhz,
  type GhzResult,
  type GhzRunOptions,
} from './ghz.ts';
import { cpuSecondsOf } from './proc.ts';
import { ms } from './report.ts';

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
}

/** Runs `body` and returns the error it throws, or undefined. */
async function thrown(body: () => Promise<unknown>): Promise<unknown> {
  try {
    await body();
    return undefined;
  } catch (error) {
    return error;
  }
}

const DEK = Buffer.alloc(32, 0xa5);
const REQUEST = { artifact: { namespace: 'team-a', name: 'llama-ft' }, version: 'v1' };
const dir = mkdtempSync(join(tmpdir(), 'strongroom-ghz-smoke-'));

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl. */
function makePki(): {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
} {
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '1',
    '-subj',
    '/CN=ghz smoke CA',
  );
  const leaf = (name: string, extensions: string): void => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=ghz smoke ${name}`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
    );
  };
  leaf('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf(
    'client',
    'subjectAltName=URI:spiffe://strongroom.test/ns/team-a/sa/trainer\nextendedKeyUsage=clientAuth\n',
  );
  const at = (file: string): string => join(dir, file);
  return {
    ca: at('ca.crt'),
    serverCert: at('server.crt'),
    serverKey: at('server.key'),
    clientCert: at('client.crt'),
    clientKey: at('client.key'),
  };
}

/** Starts the stand-in server on 127.0.0.1 (client certificate required); counts the ReleaseKey calls it answers. */
async function startServer(pki: ReturnType<typeof makePki>): Promise<{
  server: grpc.Server;
  port: number;
  released: () => number;
  malformed: () => number;
}> {
  let released = 0;
  let malformed = 0;
  const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: 'not in the ghz smoke server' };
  const handlers: KeyBrokerHandlers = {
    Attest: (_call, callback) => {
      callback(unimplemented);
    },
    PublishVersion: (_call, callback) => {
      callback(unimplemented);
    },
    ReportWipe: (_call, callback) => {
      callback(unimplemented);
    },
    WatchRevocations: (call) => {
      call.emit('error', unimplemented);
    },
    ReleaseKey: (call, callback) => {
      // Check that ghz encoded the request from its JSON: a wrong field would fail the run.
      const { artifact, version } = call.request;
      if (artifact?.namespace !== REQUEST.artifact.namespace || artifact.name !== REQUEST.artifact.name) {
        malformed++;
        callback({ code: grpc.status.INVALID_ARGUMENT, details: 'unexpected artifact' });
        return;
      }
      released++;
      callback(null, { dek: DEK, version });
    },
  };
  const server = new grpc.Server();
  server.addService(loadKeyBroker().service, handlers);
  const credentials = grpc.ServerCredentials.createSsl(
    readFileSync(pki.ca),
    [{ cert_chain: readFileSync(pki.serverCert), private_key: readFileSync(pki.serverKey) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, bound) => {
      if (error) reject(error);
      else resolve(bound);
    });
  });
  return { server, port, released: () => released, malformed: () => malformed };
}

function describe(label: string, result: GhzResult, serverCpu: number): void {
  console.log(
    `${label}: ${String(result.count)} calls, ${result.rps.toFixed(0)} rps, avg ${ms(result.averageMs)}, ` +
      `p50 ${ms(result.p50Ms)}, p90 ${ms(result.p90Ms)}, p99 ${ms(result.p99Ms)}, errors ${String(result.errorCount)}, ` +
      `status ${JSON.stringify(result.statusCodes)}; CPU ghz ${result.cpuSeconds.toFixed(2)} s, ` +
      `server ${serverCpu.toFixed(2)} s`,
  );
  if (result.errorCount > 0) console.log(`  errors: ${JSON.stringify(result.errors)}`);
}

/** Runs ghz and measures this process's CPU (the server's) over the same span. */
async function measured(options: GhzRunOptions): Promise<{ result: GhzResult; serverCpu: number }> {
  const before = process.cpuUsage();
  const result = await runGhz(options);
  const used = process.cpuUsage(before);
  return { result, serverCpu: (used.user + used.system) / 1e6 };
}

async function main(): Promise<void> {
  // ensureGhz fails closed, with a typed error, when it must build and Go is not on PATH.
  {
    const saved = { path: process.env.PATH, cache: process.env.STRONGROOM_CACHE_DIR };
    process.env.PATH = join(dir, 'empty-path');
    process.env.STRONGROOM_CACHE_DIR = join(dir, 'empty-cache');
    const error = await thrown(() => ensureGhz());
    process.env.PATH = saved.path;
    if (saved.cache === undefined) delete process.env.STRONGROOM_CACHE_DIR;
    else process.env.STRONGROOM_CACHE_DIR = saved.cache;
    check(
      error instanceof GhzBuildError &&
        /Go is not on PATH/.test(error.message) &&
        error.cause instanceof Error,
      'ensureGhz without Go rejects with GhzBuildError (with cause)',
    );
  }

  const started = Date.now();
  const ghz = await ensureGhz({
    log: (line) => {
      console.error(line);
    },
  });
  const probe = spawnSync(ghz, ['--version'], { encoding: 'utf8' });
  const version = `${probe.stdout}${probe.stderr}`.trim();
  check(version === GHZ_VERSION, `ghz --version is the pinned ${GHZ_VERSION}`);
  console.log(`ghz ${version} at ${ghz} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`);

  // cpuSecondsOf agrees with process.cpuUsage() for this process, and is undefined for a process that is gone.
  {
    const usage = process.cpuUsage();
    const own = cpuSecondsOf(process.pid);
    const expected = (usage.user + usage.system) / 1e6;
    check(
      own !== undefined && Math.abs(own - expected) < 0.1,
      `cpuSecondsOf(self) ${String(own)} s matches process.cpuUsage() ${expected.toFixed(2)} s`,
    );
    check(cpuSecondsOf(2 ** 22 + 1) === undefined, 'cpuSecondsOf(no such pid) is undefined');
  }

  const pki = makePki();
  const { server, port, released, malformed } = await startServer(pki);
  try {
    const base = {
      ghz,
      target: `127.0.0.1:${String(port)}`,
      protoFile: join(PROTO_ROOT, KEY_BROKER_PROTO),
      importPaths: [PROTO_ROOT],
      call: `${KEY_BROKER_SERVICE}.ReleaseKey`,
      data: REQUEST,
      tls: { cacert: pki.ca, cert: pki.clientCert, key: pki.clientKey, serverName: 'localhost' },
      concurrency: 10,
      connections: 1,
      // One Go thread for ghz, so that the client leaves the other core to the server.
      cpus: 1,
    } satisfies Omit<GhzRunOptions, 'rps'>;

    // Paced: 200 rps for 3 s.
    {
      const releasedBefore = released();
      const { result, serverCpu } = await measured({ ...base, rps: 200, durationSec: 3 });
      describe('ReleaseKey 200 rps x 3 s', result, serverCpu);
      check(result.count > 0 && result.errorCount === 0, 'paced run: calls made, none failed');
      check(result.statusCodes.OK === result.count, 'paced run: every status is OK');
      check(
        result.count <= 200 * 3 * 1.1,
        `paced run: ${String(result.count)} calls respect --rps=200 for 3 s`,
      );
      check(
        released() - releasedBefore === result.count,
        'paced run: the server answered exactly those calls',
      );
      check(
        result.p50Ms !== undefined && result.p99Ms !== undefined,
        'paced run: latency percentiles reported',
      );
      check(result.cpuSeconds > 0, 'paced run: ghz CPU time sampled');
      console.log(`  ghz flags: ${result.argv.slice(1).join(' ')}`);
    }

    // Unlimited: as fast as 10 workers on one connection go, for 3 s.
    {
      const { result, serverCpu } = await measured({ ...base, rps: 0, durationSec: 3 });
      describe('ReleaseKey unlimited x 3 s', result, serverCpu);
      check(result.count > 0 && result.errorCount === 0, 'unlimited run: calls made, none failed');
      check(result.statusCodes.OK === result.count, 'unlimited run: every status is OK');
    }
    check(malformed() === 0, 'the server never saw a malformed ReleaseKeyRequest');

    // Without a client certificate the server refuses the handshake: every call fails.
    {
      const releasedBefore = released();
      const { result } = await measured({
        ...base,
        tls: { cacert: pki.ca, serverName: 'localhost' },
        rps: 0,
        total: 20,
        concurrency: 2,
        timeoutSec: 5,
      });
      describe('ReleaseKey without client cert', result, 0);
      check(result.count === 20 && result.errorCount === 20, 'no client cert: all 20 calls fail');
      check(result.statusCodes.OK === undefined, 'no client cert: no OK status');
      check(released() === releasedBefore, 'no client cert: the server released nothing');
    }

    // A server name that the server certificate does not carry: ghz refuses the server, every call fails.
    {
      const { result } = await measured({
        ...base,
        tls: { ...base.tls, serverName: 'not-the-server.example' },
        rps: 0,
        total: 10,
        concurrency: 2,
        timeoutSec: 5,
      });
      console.log(`wrong server name: errors ${JSON.stringify(result.errors)}`);
      check(result.count === 10 && result.errorCount === 10, 'wrong --cname: all 10 calls fail');
    }

    // A method the server does not implement: every call comes back Unimplemented.
    {
      const { result } = await measured({
        ...base,
        call: `${KEY_BROKER_SERVICE}.Attest`,
        data: { serviceAccountToken: 'x', csrPem: 'y' },
        rps: 0,
        total: 10,
        concurrency: 2,
      });
      check(
        result.errorCount === 10 && result.statusCodes.Unimplemented === 10 && result.p99Ms === undefined,
        `Attest (unimplemented): all 10 Unimplemented, no latency percentiles (${JSON.stringify(result.statusCodes)})`,
      );
    }

    // Typed errors: a method the .proto lacks (ghz exits non-zero), and options that make no sense.
    {
      const error = await thrown(() =>
        runGhz({ ...base, call: `${KEY_BROKER_SERVICE}.NoSuchMethod`, rps: 0, total: 1 }),
      );
      check(
        error instanceof GhzRunError && /ghz failed/.test(error.message),
        `unknown method: GhzRunError (${error instanceof Error ? error.message : String(error)})`,
      );
      const both = await thrown(() => runGhz({ ...base, rps: 0, total: 1, durationSec: 1 }));
      check(both instanceof GhzRunError, 'durationSec and total together: GhzRunError');
      const halfTls = await thrown(() =>
        runGhz({ ...base, tls: { cacert: pki.ca, cert: pki.clientCert }, rps: 0, total: 1 }),
      );
      check(halfTls instanceof GhzRunError, 'cert without key: GhzRunError');
      const missingBinary = await thrown(() =>
        runGhz({ ...base, ghz: join(dir, 'no-ghz'), rps: 0, total: 1 }),
      );
      check(
        missingBinary instanceof GhzRunError && missingBinary.cause instanceof Error,
        'missing ghz binary: GhzRunError with cause',
      );
    }
  } finally {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }

  console.log(
    failures.length === 0 ? 'ghz smoke: all checks passed' : `ghz smoke: ${String(failures.length)} failed`,
  );
  process.exitCode = failures.length === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error('ghz smoke: aborted:', error);
  rmSync(dir, { recursive: true, force: true });
  process.exitCode = 1;
});
