/**
 * Runs the real operator (`node operator/main.ts`) as a child process against the test cluster, with exactly the
 * least privilege the Helm chart grants (the rules of operator/kube/permissions.ts, bound to a user of its own instead
 * of the chart's ServiceAccount), and gives tests its logs, its health port and its metrics. Every integration test
 * that runs the operator therefore also checks that the chart's RBAC is enough.
 *
 * Its ports come from the harness, not from its logs: the harness picks free ports and passes them as flags, then
 * learns that a server is up from the process itself (the kernel's table of the sockets it listens on, see
 * listeningPorts) and that the operator has started from its readiness checks (/readyz?verbose).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../operator/kube/kubeconfig.ts';
import { PERMISSIONS } from '../../operator/kube/permissions.ts';
import { rule } from '../../charts/generate.ts';
import { listeningPorts } from '../cluster/host.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { kubectl, must, type ClusterInfo } from './kubectl.ts';
import { freePort } from '../cluster/net.ts';

export const root = join(import.meta.dirname, '..', '..');

export type LogLine = Record<string, unknown> & { level?: string; message?: string; component?: string };

/** The ports the harness gave the operator (--health-address, --broker-address, --attest-address, --webhook-address). */
export interface OperatorPorts {
  readonly health: number;
  readonly broker: number;
  readonly attest: number;
  readonly webhook: number;
}

export interface OperatorProcess {
  readonly identity: string;
  readonly pid: number;
  readonly ports: OperatorPorts;
  /** Every stdout line so far, parsed (non-JSON lines become { message }). */
  lines(): LogLine[];
  /** The raw stdout and stderr so far. */
  output(): string;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The health server's port, once the operator has started (from its readiness checks, see `started`). */
  healthPort(): Promise<number>;
  /** The key broker's ports, once it listens (every replica serves it, once the serving certificate exists). */
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
  await must(cluster, ['apply', '-f', join(root, 'crds')]);
  await must(cluster, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/modelartifacts.strongroom.dev',
    'crd/accessgrants.strongroom.dev',
  ]);
}

/** The user the operator authenticates as in the tests, for its namespace. */
export function operatorUser(namespace: string): string {
  return `strongroom-operator-${namespace}`;
}

/**
 * The chart's RBAC (operator/kube/permissions.ts, the rules charts/generate.ts renders into templates/rbac.yaml) for
 * the operator in `namespace`, bound to `user`.
 */
export function operatorRbac(namespace: string, user: string): object[] {
  const granted = PERMISSIONS.filter((p) => p.granted !== false);
  const name = `strongroom-operator-${namespace}`;
  const subjects = [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }];
  const api = 'rbac.authorization.k8s.io/v1';
  return [
    {
      apiVersion: api,
      kind: 'ClusterRole',
      metadata: { name },
      rules: granted.filter((p) => !p.namespaced).map(rule),
    },
    {
      apiVersion: api,
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects,
    },
    {
      apiVersion: api,
      kind: 'Role',
      metadata: { name, namespace },
      rules: granted.filter((p) => p.namespaced).map(rule),
    },
    {
      apiVersion: api,
      kind: 'RoleBinding',
      metadata: { name, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects,
    },
  ];
}

/** Creates the operator's namespace and the chart's RBAC and returns a kubeconfig that has exactly those rights. */
export async function installOperatorIdentity(cluster: ClusterInfo, namespace: string): Promise<string> {
  const user = operatorUser(namespace);
  await kubectl(cluster, ['create', 'namespace', namespace]);
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: operatorRbac(namespace, user) }),
  );
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
  /** The address the key broker and the attestation server listen on; default 127.0.0.1. */
  readonly brokerHost?: string;
  /** Ports to use instead of free ones picked by the harness (on 127.0.0.1, the broker's on brokerHost). */
  readonly ports?: Partial<OperatorPorts>;
}

export async function startOperator(options: StartOptions): Promise<OperatorProcess> {
  const brokerHost = options.brokerHost ?? '127.0.0.1';
  const ports: OperatorPorts = {
    health: options.ports?.health ?? (await freePort()),
    broker: options.ports?.broker ?? (await freePort(brokerHost)),
    attest: options.ports?.attest ?? (await freePort(brokerHost)),
    webhook: options.ports?.webhook ?? (await freePort()),
  };
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
      `--health-address=127.0.0.1:${String(ports.health)}`,
      '--log-level=debug',
      '--lease-duration=4s',
      '--renew-deadline=3s',
      '--retry-period=500ms',
      `--broker-address=${brokerHost}:${String(ports.broker)}`,
      `--attest-address=${brokerHost}:${String(ports.attest)}`,
      `--webhook-address=127.0.0.1:${String(ports.webhook)}`,
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
  const pid = child.pid;
  /** Resolves with what `probe` finds, re-probing on new output and every `intervalMs`; fails if the process ends. */
  const until = async <T>(
    what: string,
    probe: () => Promise<T | undefined> | T | undefined,
    timeoutMs: number,
    intervalMs = 500,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = await probe();
      if (found !== undefined) return found;
      if (!alive) throw new Error(`operator exited before ${what}:\n${all.slice(-4000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}:\n${all.slice(-4000)}`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, intervalMs));
        waiters.add(wake);
      });
    }
  };
  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> =>
    until('the expected log line', () => parsed.find(predicate), timeoutMs);
  /** Resolves once the process listens on every one of `wanted` (never by connecting: the broker audits those). */
  const listening = (what: string, wanted: readonly number[], timeoutMs: number): Promise<true> =>
    until(
      what,
      () => {
        const open = listeningPorts(pid);
        return wanted.every((port) => open.has(port)) ? true : undefined;
      },
      timeoutMs,
      50,
    );
  /**
   * Started, as the operator logs 'operator started': every readiness check passes but the key broker's and the
   * webhook's, which come up after the start (on every replica, once their certificates exist); the
   * leader-election check passes once the operator campaigns, its last step of starting.
   */
  const started = async (): Promise<true | undefined> => {
    if (!listeningPorts(pid).has(ports.health)) return undefined;
    const response = await fetch(`http://127.0.0.1:${ports.health}/readyz?verbose`).catch(() => undefined);
    const body = (await response?.text().catch(() => undefined)) ?? '';
    const failing = body.split('\n').filter((line) => line.startsWith('[-]'));
    return body.includes('[+]leader-election ok') &&
      failing.every((line) => line.startsWith('[-]broker:') || line.startsWith('[-]webhook:'))
      ? true
      : undefined;
  };
  let hasStarted = false;
  const healthPort = async (): Promise<number> => {
    if (!hasStarted) await until('the operator to start (its readiness checks)', started, 60_000, 100);
    hasStarted = true;
    return ports.health;
  };
  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const response = await fetch(`http://127.0.0.1:${String(await healthPort())}${path}`);
    return { status: response.status, body: await response.text() };
  };
  return {
    identity: options.identity,
    pid,
    ports,
    lines: () => parsed,
    output: () => all,
    waitForLog,
    healthPort,
    auditLogDir,
    async brokerPorts(timeoutMs = 60_000) {
      await listening('the key broker', [ports.broker, ports.attest], timeoutMs);
      return { attestPort: ports.attest, brokerPort: ports.broker };
    },
    async webhookPort(timeoutMs = 60_000) {
      await listening('the admission webhook', [ports.webhook], timeoutMs);
      return ports.webhook;
    },
    get,
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
