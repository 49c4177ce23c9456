/**
 * What benchmarks read about processes from /proc: CPU seconds of a process, of a cluster's processes and of the
 * whole machine, and process start times.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`), read once. */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(value) || value <= 0) throw new Error(`getconf CLK_TCK returned ${String(value)}`);
    clockTicks = value;
  }
  return clockTicks;
}

/**
 * The user + system CPU time, in seconds, that process `pid` has used so far (its own threads, not its children),
 * from /proc/<pid>/stat. Undefined when there is no such process (it has exited and been reaped).
 *
 * @throws Error when /proc/<pid>/stat exists but cannot be parsed, or `getconf CLK_TCK` fails.
 */
export function cpuSecondsOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  } catch (error) {
    if (
      (error as NodeJS.ErrnoException).code === 'ENOENT' ||
      (error as NodeJS.ErrnoException).code === 'ESRCH'
    )
      return undefined;
    throw error;
  }
  // The command name (field 2) is in parentheses and may contain spaces or ')': split after the last ')'.
  // The remaining fields start at field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime))
    throw new Error(`/proc/${String(pid)}/stat has no utime/stime: ${stat.slice(0, 200)}`);
  return (utime + stime) / ticksPerSecond();
}

/** Busy (non-idle, non-iowait) CPU seconds of the whole machine so far, from /proc/stat. */
export function machineBusySeconds(): number {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = first.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.slice(0, 8).reduce((sum, t) => sum + t, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return (total - idle) / ticksPerSecond();
}

/**
 * CPU seconds so far of the processes that name a cluster's work directory on their command line (etcd,
 * kube-apiserver, the kubelet, ...), but not `exclude` (the operator names its kubeconfig there too) nor this process.
 */
export function controlPlaneCpu(workDir: string, exclude: number): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === exclude || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline.includes(workDir)) total += cpuSecondsOf(Number(entry)) ?? 0;
  }
  return total;
}

/** The host's boot time in ms since the epoch, from /proc/uptime (10 ms resolution; /proc/stat btime is whole s). */
export function bootTimeMs(): number {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - uptime * 1000;
}

/** When process `pid` started, in ms since the epoch (/proc/<pid>/stat starttime, clock-tick resolution). */
export function processStartMs(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTicks = Number(fields[19]); // field 22 (starttime), counted from field 3
  return bootTimeMs() + (startTicks / ticksPerSecond()) * 1000;
}

/** A memory figure of process `pid` from /proc/<pid>/status, in KiB: peak (VmHWM) or current (VmRSS) RSS. */
export function statusKiB(field: 'VmHWM' | 'VmRSS', pid: number | 'self' = 'self'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${String(pid)}/status`, 'utf8'),
    );
    return m?.[1] ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
