import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** What a running test cluster offers to tests, the demo and scripts. Serializable, so vitest can `provide` it. */
export interface ClusterInfo {
  /** Directory with the cluster's binaries (kubectl, helm, kube-apiserver, ...). */
  readonly binDir: string;
  /** Admin (system:masters) kubeconfig. */
  readonly kubeconfig: string;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  /** The cluster's temporary working directory; removed on teardown. */
  readonly workDir: string;
  /** Name of the node when one runs (always "127.0.0.1"), else null. */
  readonly nodeName: string | null;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface KubectlOptions {
  /** Text written to kubectl's standard input (for `-f -`). */
  readonly input?: string;
  /** Kubeconfig to use instead of the admin one (for acting as another user). */
  readonly kubeconfig?: string;
  readonly timeoutMs?: number;
}

/** Runs the cluster's own kubectl. Never throws on a non-zero exit: the caller asserts on the result. */
export function kubectl(
  cluster: Pick<ClusterInfo, 'binDir' | 'kubeconfig'>,
  args: readonly string[],
  options: KubectlOptions = {},
): Promise<CommandResult> {
  return run(
    join(cluster.binDir, 'kubectl'),
    ['--kubeconfig', options.kubeconfig ?? cluster.kubeconfig, ...args],
    {
      ...(options.input === undefined ? {} : { input: options.input }),
      timeoutMs: options.timeoutMs ?? 60_000,
    },
  );
}

/** Runs a command to completion, collecting its output. */
export function run(
  file: string,
  args: readonly string[],
  options: { readonly input?: string; readonly timeoutMs?: number; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 120_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n[killed by ${signal}]` : ''),
      });
    });
    if (options.input !== undefined && child.stdin) {
      // A child that exits without reading its input must not crash the caller with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}
