/**
 * A compiled gRPC load generator for the key broker benchmark (issue 7): ghz (https://ghz.sh), built from the Go
 * module proxy into a cache outside the repo, run as a child process, with the CPU time it used sampled from /proc
 * so that a benchmark can report what the client and the server each cost.
 *
 *   const ghz = await ensureGhz({ log: console.error });
 *   const result = await runGhz({ ghz, target: '127.0.0.1:8443', protoFile, call, data, tls, rps: 0, durationSec: 3 });
 *
 * Linux only (/proc). See bench/ghz.smoke.ts for a run against a stand-in mTLS server.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSecondsOf } from './proc.ts';

/**
 * The pinned ghz release. The Go module proxy lists only v0.93.0 for `go list -m -versions`, but serves the newer
 * tags by exact version; v0.93.0's proto parser rejects proto3 `optional` fields, which keybroker.proto uses.
 */
export const GHZ_VERSION = 'v0.120.0';

const GHZ_MODULE = 'github.com/bojand/ghz';

/** Building ghz failed: Go is missing, `go install` failed, or the binary it produced is not the pinned version. */
export class GhzBuildError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'GhzBuildError';
  }
}

/** A ghz run could not be made or its report could not be read: bad options, ghz exited non-zero, bad JSON. */
export class GhzRunError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'GhzRunError';
  }
}

/** The cache root, as test/cluster/go/build.sh computes it: `$STRONGROOM_CACHE_DIR` or `~/.cache/strongroom`. */
function cacheRoot(): string {
  const explicit = process.env.STRONGROOM_CACHE_DIR;
  if (explicit) return explicit;
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'strongroom');
}

/**
 * Returns the path of the pinned ghz binary, `~/.cache/strongroom/tools/ghz-<GHZ_VERSION>/ghz`, building it with the
 * `go` on PATH (`go install`, CGO_ENABLED=0, GOTOOLCHAIN=local) when it is missing (about 30 s the first time). The
 * build goes to a temporary directory and is checked (`ghz --version`) before it is renamed into place, so a
 * half-built binary is never used and concurrent callers do not see each other's partial output.
 *
 * @throws GhzBuildError when Go is not on PATH, the build fails, or the built binary reports another version.
 */
export async function ensureGhz(options: { log?: (line: string) => void } = {}): Promise<string> {
  const log = options.log ?? (() => undefined);
  const dir = join(cacheRoot(), 'tools', `ghz-${GHZ_VERSION}`);
  const binary = join(dir, 'ghz');
  if (existsSync(binary)) return binary;

  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, '.build-'));
  try {
    const bin = join(work, 'bin');
    const started = Date.now();
    log(`ghz: building ${GHZ_MODULE}/cmd/ghz@${GHZ_VERSION} (go install, CGO_ENABLED=0)`);
    await runGo(
      [
        'install',
        '-trimpath',
        `-ldflags=-s -w -X main.version=${GHZ_VERSION}`,
        `${GHZ_MODULE}/cmd/ghz@${GHZ_VERSION}`,
      ],
      {
        cwd: work,
        env: { ...process.env, GOBIN: bin, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '' },
        log,
      },
    );
    const built = join(bin, 'ghz');
    const reported = ghzVersion(built);
    if (reported !== GHZ_VERSION)
      throw new GhzBuildError(
        `the built ghz reports version ${JSON.stringify(reported)}, not ${GHZ_VERSION}`,
      );
    renameSync(built, binary);
    log(`ghz: built ${GHZ_VERSION} in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${binary}`);
    return binary;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What `ghz --version` prints (kingpin writes it to stderr). */
function ghzVersion(binary: string): string {
  const run = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (run.error || run.status !== 0)
    throw new GhzBuildError(`the built ghz at ${binary} does not run (status ${String(run.status)})`, {
      cause: run.error,
    });
  return `${run.stdout}${run.stderr}`.trim();
}

/** Runs `go` with the given arguments, forwarding its output lines to `log`; rejects with a GhzBuildError. */
function runGo(
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; log: (line: string) => void },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('go', args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const forward = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.trimEnd().split('\n')) if (line) options.log(`go: ${line}`);
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.on('error', (error: NodeJS.ErrnoException) => {
      const message =
        error.code === 'ENOENT'
          ? 'Go is not on PATH: it is needed to build ghz from the Go module proxy'
          : 'could not start go';
      reject(new GhzBuildError(message, { cause: error }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new GhzBuildError(
            `go ${args.join(' ')} failed (${signal ? `signal ${signal}` : `exit ${String(code)}`}):\n${tail}`,
          ),
        );
    });
  });
}

/** TLS for a ghz run. Plaintext is deliberately not offered: the broker only speaks TLS. */
export interface GhzTls {
  /** PEM file of the CA that signed the server certificate (ghz `--cacert`). */
  readonly cacert: string;
  /** PEM file of the client certificate (ghz `--cert`); give it with `key`, or neither to send no certificate. */
  readonly cert?: string;
  /** PEM file of the client private key (ghz `--key`). */
  readonly key?: string;
  /** The name to verify the server certificate against, when it differs from the target's host (`--cname`). */
  readonly serverName?: string;
}

/** What one ghz run does. Give exactly one of `durationSec` and `total`. */
export interface GhzRunOptions {
  /** Path of the ghz binary, from {@link ensureGhz}. */
  readonly ghz: string;
  /** `host:port` of the server. */
  readonly target: string;
  /** The service's .proto file (for example proto/strongroom/v1/keybroker.proto). */
  readonly protoFile: string;
  /** Directories that the .proto's imports are resolved against (the google/protobuf ones are built into ghz). */
  readonly importPaths?: readonly string[];
  /** The fully qualified method, `package.Service.Method` (for example `strongroom.v1.KeyBroker.ReleaseKey`). */
  readonly call: string;
  /** The request message, in the protobuf JSON mapping (field names camelCase or as in the .proto). */
  readonly data: Readonly<Record<string, unknown>>;
  /** TLS settings; see {@link GhzTls}. */
  readonly tls: GhzTls;
  /** Requests per second across all workers; 0 = as fast as the workers go. */
  readonly rps: number;
  /** Run for this many seconds (ghz `-z`); calls in flight at the end complete and are counted. */
  readonly durationSec?: number;
  /** Send this many requests (ghz `-n`). */
  readonly total?: number;
  /** Concurrent request workers (ghz `-c`). */
  readonly concurrency: number;
  /** TCP connections that the workers share (ghz `--connections`); at most `concurrency`. Default 1. */
  readonly connections?: number;
  /** Go runtime threads for ghz (`--cpus`); default: every core. Lower it to leave cores to the server. */
  readonly cpus?: number;
  /** Per-request timeout in seconds (ghz `-t`); default 20. */
  readonly timeoutSec?: number;
}

/** The summary of a ghz run. Latencies count successful calls only (ghz's default). */
export interface GhzResult {
  /** Calls made, successful or not. */
  readonly count: number;
  /** Calls per second over the run, as ghz reports it. */
  readonly rps: number;
  /** Mean latency of the successful calls, ms. */
  readonly averageMs: number;
  /** Latency percentiles of the successful calls, ms; undefined when no call succeeded. */
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  /** Calls that ended with an error (any status but OK). */
  readonly errorCount: number;
  /** Calls per gRPC status name (`OK`, `Unavailable`, ...). */
  readonly statusCodes: Readonly<Record<string, number>>;
  /** Distinct error messages with their counts (for diagnosis; empty when every call succeeded). */
  readonly errors: Readonly<Record<string, number>>;
  /**
   * User + system CPU seconds that the ghz process used, sampled from /proc every 100 ms while it ran (the last
   * sample, so up to 100 ms of its final work can be missing).
   */
  readonly cpuSeconds: number;
  /** The command line that ran (ghz path and arguments), for reports. */
  readonly argv: readonly string[];
}

const SAMPLE_INTERVAL_MS = 100;

/** Builds ghz's argument list from the options; throws GhzRunError on options that make no sense. */
function ghzArgs(options: GhzRunOptions, reportFile: string): string[] {
  const bad = (message: string): never => {
    throw new GhzRunError(`runGhz: ${message}`);
  };
  const positiveInt = (name: string, value: number | undefined): void => {
    if (value !== undefined && (!Number.isInteger(value) || value < 1))
      bad(`${name} must be a positive integer`);
  };
  if ((options.durationSec === undefined) === (options.total === undefined))
    bad('give exactly one of durationSec and total');
  if (!Number.isInteger(options.rps) || options.rps < 0)
    bad('rps must be a non-negative integer (0 = unlimited)');
  positiveInt('durationSec', options.durationSec);
  positiveInt('total', options.total);
  positiveInt('concurrency', options.concurrency);
  positiveInt('connections', options.connections);
  positiveInt('cpus', options.cpus);
  positiveInt('timeoutSec', options.timeoutSec);
  const connections = options.connections ?? 1;
  if (connections > options.concurrency) bad('connections must not exceed concurrency');
  if ((options.tls.cert === undefined) !== (options.tls.key === undefined))
    bad('tls.cert and tls.key go together');
  if (!/^[\w.]+\.\w+$/.test(options.call))
    bad(`call ${JSON.stringify(options.call)} is not package.Service.Method`);

  const args = [
    `--proto=${options.protoFile}`,
    `--call=${options.call}`,
    `--data=${JSON.stringify(options.data)}`,
    `--cacert=${options.tls.cacert}`,
    `--rps=${String(options.rps)}`,
    `--concurrency=${String(options.concurrency)}`,
    `--connections=${String(connections)}`,
    '--format=json',
    `--output=${reportFile}`,
  ];
  if (options.importPaths && options.importPaths.length > 0)
    args.push(`--import-paths=${options.importPaths.join(',')}`);
  if (options.tls.cert !== undefined && options.tls.key !== undefined)
    args.push(`--cert=${options.tls.cert}`, `--key=${options.tls.key}`);
  if (options.tls.serverName !== undefined) args.push(`--cname=${options.tls.serverName}`);
  // `wait`: calls in flight when the duration ends complete and count (ghz's default, `close`, fails them).
  if (options.durationSec !== undefined)
    args.push(`--duration=${String(options.durationSec)}s`, '--duration-stop=wait');
  if (options.total !== undefined) args.push(`--total=${String(options.total)}`);
  if (options.cpus !== undefined) args.push(`--cpus=${String(options.cpus)}`);
  if (options.timeoutSec !== undefined) args.push(`--timeout=${String(options.timeoutSec)}s`);
  args.push(options.target);
  return args;
}

/**
 * Runs ghz once against `options.target` over TLS and returns its summary plus the CPU time ghz used. Calls that
 * fail do not reject: they are counted in `errorCount` and `statusCodes`, and the caller decides.
 *
 * @throws GhzRunError on invalid options, when ghz cannot start or exits non-zero (for example: the .proto does not
 *   parse, the method does not exist, a certificate file is unreadable), or when its report is not what ghz writes.
 */
export async function runGhz(options: GhzRunOptions): Promise<GhzResult> {
  const work = mkdtempSync(join(tmpdir(), 'strongroom-ghz-'));
  try {
    const reportFile = join(work, 'report.json');
    const args = ghzArgs(options, reportFile);
    const cpuSeconds = await runSampled(options.ghz, args);
    let text: string;
    try {
      text = readFileSync(reportFile, 'utf8');
    } catch (error) {
      throw new GhzRunError('ghz exited 0 but wrote no report', { cause: error });
    }
    return { ...parseReport(text), cpuSeconds, argv: [options.ghz, ...args] };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Runs the binary, sampling its CPU time every 100 ms; resolves with the last sample when it exits 0. */
function runSampled(file: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let cpu = 0;
    let stderr = '';
    const sample = (): void => {
      if (child.pid === undefined) return;
      try {
        cpu = cpuSecondsOf(child.pid) ?? cpu;
      } catch {
        // A racing exit can leave /proc/<pid>/stat half-gone; keep the previous sample.
      }
    };
    const timer = setInterval(sample, SAMPLE_INTERVAL_MS);
    sample();
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    child.on('error', (error) => {
      clearInterval(timer);
      reject(new GhzRunError(`could not start ghz at ${file}`, { cause: error }));
    });
    child.on('close', (code, signal) => {
      clearInterval(timer);
      if (code === 0) resolve(cpu);
      else
        reject(
          new GhzRunError(
            `ghz failed (${signal ? `signal ${signal}` : `exit ${String(code)}`}): ${stderr.trim() || '(no output)'}`,
          ),
        );
    });
  });
}

const NS_PER_MS = 1e6;

/** Reads the fields of ghz's JSON report that GhzResult needs, checking their types (durations are ns). */
function parseReport(text: string): Omit<GhzResult, 'cpuSeconds' | 'argv'> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new GhzRunError('ghz wrote a report that is not JSON', { cause: error });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new GhzRunError('ghz report is not a JSON object');
  const report = raw as Record<string, unknown>;
  const num = (name: string): number => {
    const value = report[name];
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new GhzRunError(`ghz report field ${name} is not a number`);
    return value;
  };
  const counts = (name: string): Record<string, number> => {
    const value = report[name];
    if (value === null || value === undefined) return {};
    if (typeof value !== 'object' || Array.isArray(value))
      throw new GhzRunError(`ghz report field ${name} is not an object`);
    const out: Record<string, number> = {};
    for (const [key, n] of Object.entries(value)) {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
        throw new GhzRunError(`ghz report field ${name}.${key} is not a count`);
      out[key] = n;
    }
    return out;
  };
  const latencies = report.latencyDistribution;
  if (latencies !== null && latencies !== undefined && !Array.isArray(latencies))
    throw new GhzRunError('ghz report field latencyDistribution is not an array');
  const percentile = (p: number): number | undefined => {
    const entry: unknown = (latencies ?? []).find(
      (item: unknown) =>
        typeof item === 'object' && item !== null && (item as { percentage?: unknown }).percentage === p,
    );
    const latency = (entry as { latency?: unknown } | undefined)?.latency;
    return typeof latency === 'number' && Number.isFinite(latency) ? latency / NS_PER_MS : undefined;
  };
  const errors = counts('errorDistribution');
  const statusCodes = counts('statusCodeDistribution');
  const count = num('count');
  return {
    count,
    rps: num('rps'),
    averageMs: num('average') / NS_PER_MS,
    p50Ms: percentile(50),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    // Fail closed: a call that ghz counted under a non-OK status but not under an error message is still an error.
    errorCount: Math.max(
      Object.values(errors).reduce((sum, n) => sum + n, 0),
      count - (statusCodes.OK ?? 0),
    ),
    statusCodes,
    errors,
  };
}
