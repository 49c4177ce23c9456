/**
 * Runs the real operator (`node operator/main.ts`) as a child process against the test cluster, with the least
 * privilege of test/operator/rbac.yaml, and gives tests its logs, its health port and its metrics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../operator/kube/kubeconfig.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { kubectl, type ClusterInfo } from '../cluster/kubectl.ts';

export const root = join(import.meta.dirname, '..', '..');

export type LogLine = Record<string, unknown> & { level?: string; message?: string; component?: string };

export interface OperatorProcess {
  readonly identity: string;
  readonly pid: number;
  /** Every stdout line so far, parsed (non-JSON lines become { message }). */
  lines(): LogLine[];
  /** The raw stdout and stderr so far. */
  output(): string;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  healthPort(): Promise<number>;
  /** The key broker's ports, once it listens (it listens only while this replica leads). */
  brokerPorts(timeoutMs?: number): Promise<{ attestPort: number; brokerPort: number }>;
  /** The sidecar-injecting webhook's port, once it listens (every replica serves it). */
  webhookPort(timeoutMs?: number): Promise<number>;
  /** The directory of this replica's audit log. */
  readonly auditLogDir: string;
  get(path: string): Promise<{ status: number; body: string }>;
  kill(signal: NodeJS.Signals): void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function clients(kubeconfig: string): { core: CoreV1Api; custom: CustomObjectsApi; kc: KubeConfig } {
  const kc = new PooledKubeConfig();
  kc.loadFromFile(kubeconfig);
  return { core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), kc };
}

/** Applies the CRDs (idempotent) and waits until they are served. */
export async function installCrds(cluster: ClusterInfo): Promise<void> {
  const applied = await kubectl(cluster, ['apply', '-f', join(root, 'crds')]);
  if (applied.code !== 0) throw new Error(`kubectl apply crds: ${applied.stderr}`);
  const ready = await kubectl(cluster, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/modelartifacts.strongroom.dev',
    'crd/accessgrants.strongroom.dev',
  ]);
  if (ready.code !== 0) throw new Error(`CRDs not established: ${ready.stderr}`);
}

/** Creates the operator's namespace and RBAC and returns a kubeconfig that has exactly those rights. */
export async function installOperatorIdentity(cluster: ClusterInfo, namespace: string): Promise<string> {
  const user = `strongroom-operator-${namespace}`;
  await kubectl(cluster, ['create', 'namespace', namespace]);
  const rbac = readFileSync(join(root, 'test', 'operator', 'rbac.yaml'), 'utf8')
    .replaceAll('${NAMESPACE}', namespace)
    .replaceAll('${USER}', user);
  const applied = await kubectl(cluster, ['apply', '-f', '-'], { input: rbac });
  if (applied.code !== 0) throw new Error(`kubectl apply rbac: ${applied.stderr}`);
  return userKubeconfig(cluster, user);
}

export interface StartOptions {
  readonly namespace: string;
  readonly kubeconfig: string;
  readonly identity: string;
  readonly args?: readonly string[];
  /** Options for node itself (V8 flags), before the script. */
  readonly nodeArgs?: readonly string[];
  /** Where the audit log goes; default a fresh directory under the system temp directory. */
  readonly auditLogDir?: string;
}

export function startOperator(options: StartOptions): OperatorProcess {
  const auditLogDir =
    options.auditLogDir ?? mkdtempSync(join(tmpdir(), `strongroom-audit-${options.identity}-`));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      join(root, 'operator', 'main.ts'),
      `--namespace=${options.namespace}`,
      `--kubeconfig=${options.kubeconfig}`,
      `--identity=${options.identity}`,
      '--health-address=127.0.0.1:0',
      '--log-level=debug',
      '--lease-duration=4s',
      '--renew-deadline=3s',
      '--retry-period=500ms',
      '--broker-address=127.0.0.1:0',
      '--attest-address=127.0.0.1:0',
      '--webhook-address=127.0.0.1:0',
      `--audit-log-dir=${auditLogDir}`,
      ...(options.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: root },
  );
  if (child.pid === undefined) throw new Error('could not start the operator');
  let out = '';
  let all = '';
  const parsed: LogLine[] = [];
  const waiters = new Set<() => void>();
  const consume = (chunk: Buffer): void => {
    out += chunk.toString('utf8');
    all += chunk.toString('utf8');
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.trim() === '') continue;
      try {
        parsed.push(JSON.parse(line) as LogLine);
      } catch {
        parsed.push({ message: line });
      }
    }
    for (const w of waiters) w();
  };
  child.stdout?.on('data', consume);
  child.stderr?.on('data', (chunk: Buffer) => {
    all += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters) w();
    });
  });
  let alive = true;
  void exited.then(() => (alive = false));
  const waitForLog = async (predicate: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = parsed.find(predicate);
      if (found) return found;
      if (!alive) throw new Error(`operator exited before the expected log line:\n${all.slice(-4000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a log line:\n${all.slice(-4000)}`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 500));
        waiters.add(wake);
      });
    }
  };
  const healthPort = async (): Promise<number> => {
    const line = await waitForLog((l) => l.message === 'operator started', 60_000);
    return Number(line.healthPort);
  };
  return {
    identity: options.identity,
    pid: child.pid,
    lines: () => parsed,
    output: () => all,
    waitForLog,
    healthPort,
    auditLogDir,
    async brokerPorts(timeoutMs = 60_000) {
      const line = await waitForLog((l) => l.message === 'key broker ready', timeoutMs);
      return { attestPort: Number(line.attestPort), brokerPort: Number(line.brokerPort) };
    },
    async webhookPort(timeoutMs = 60_000) {
      const line = await waitForLog((l) => l.message === 'admission webhook listening', timeoutMs);
      return Number(line.port);
    },
    async get(path) {
      const port = await healthPort();
      const response = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: response.status, body: await response.text() };
    },
    kill: (signal) => {
      if (alive) child.kill(signal);
    },
    exited,
    async stop() {
      if (alive) child.kill('SIGTERM');
      // The SIGKILL timer is cancelled once the process has exited, so it never keeps the caller alive.
      const cancel = new AbortController();
      const timeout = sleep(30_000, undefined, { signal: cancel.signal }).then(
        () => {
          child.kill('SIGKILL');
          return exited;
        },
        () => exited,
      );
      const result = await Promise.race([exited, timeout]);
      cancel.abort();
      // The audit log directory this harness made goes with the process (read it before stopping).
      if (options.auditLogDir === undefined) rmSync(auditLogDir, { recursive: true, force: true });
      return result;
    },
  };
}

/** Polls `probe` until it returns a value (not undefined), or fails with the last observation. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: last });
    await sleep(intervalMs);
  }
}
