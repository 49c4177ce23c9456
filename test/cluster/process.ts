import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** A long-running cluster component (etcd, kube-apiserver, kubelet, ...) whose output goes to a log file. */
export interface Component {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** True until the process has exited. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** A component failed to start or become ready. The message carries the tail of its log. */
export class ComponentError extends Error {
  override readonly name = 'ComponentError';
}

export function logTail(logFile: string, lines = 25): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function startComponent(
  name: string,
  file: string,
  args: readonly string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Component {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // stdin closed, output to the log: a component must never hold the caller's pipes open.
    child = spawn(file, args, { stdio: ['ignore', fd, fd], env });
  } finally {
    closeSync(fd);
  }
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', () => {
      exited = true;
      resolve();
    });
  });
  if (child.pid === undefined) throw new ComponentError(`${name}: could not start ${file}`);
  const pid = child.pid;
  return {
    name,
    pid,
    logFile,
    running: () => !exited,
    async stop(graceMs = 10_000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = sleep(graceMs).then(() => 'timeout' as const);
      if ((await Promise.race([gone.then(() => 'gone' as const), timer])) === 'timeout') {
        child.kill('SIGKILL');
        await gone;
      }
    },
  };
}

/**
 * Polls `probe` until it returns true. Fails with the component's log tail when the component dies first or the
 * time runs out, so a broken start says why at once.
 */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean> | boolean,
  options: { readonly timeoutMs: number; readonly component?: Component; readonly intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (options.component && !options.component.running()) {
      throw new ComponentError(
        `${options.component.name} exited before ${what}; last log lines (${options.component.logFile}):\n${logTail(options.component.logFile)}`,
      );
    }
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const log = options.component
        ? `\nlast log lines (${options.component.logFile}):\n${logTail(options.component.logFile)}`
        : '';
      throw new ComponentError(`timed out after ${options.timeoutMs} ms waiting for ${what}${log}`, {
        cause: lastError,
      });
    }
    await sleep(options.intervalMs ?? 250);
  }
}
