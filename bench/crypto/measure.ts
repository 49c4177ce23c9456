/**
 * How `npm run bench:crypto` times and checks: children timed from spawn to exit with their peak RSS (from
 * /usr/bin/time, or /proc/<pid>/status polling without it), in-process runs with this process's, file hashes, page
 * cache residency, and the file systems the inputs and outputs go to.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { statusKiB } from '../proc.ts';
import { formatSize, MiB } from '../report.ts';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export interface Sample {
  readonly seconds: number;
  /** Peak RSS of the process doing the work, KiB; in-process samples include the harness. */
  readonly rssKiB: number | null;
}

export function command(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return `unavailable (${r.error.message})`;
  return `${r.stdout}${r.stderr}`.trim();
}

/** Streams a file through SHA-256 with one reused buffer (a read stream's fresh chunks would inflate our RSS). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(4 * MiB);
  const handle = await open(path, 'r');
  try {
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return `sha256:${hash.digest('hex')}`;
}

export function residentPercent(path: string, size: number): number | null {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return (100 * Number(r.stdout.trim())) / size;
}

const running = new Set<ChildProcess>();
let haveTime: boolean | undefined;
/** Whether /usr/bin/time is there to report a child's peak RSS (else /proc/<pid>/status is polled). */
function hasTime(): boolean {
  haveTime ??= spawnSync('sh', ['-c', 'command -v /usr/bin/time'], { encoding: 'utf8' }).status === 0;
  return haveTime;
}

/** Where children's peak RSS comes from, for the report's machine line. */
export function peakRssSource(): string {
  return hasTime() ? '/usr/bin/time -f %M' : '/proc/<pid>/status VmHWM polled every 5 ms';
}

/** Kills every timed child still running, with its process group (an interrupted run). */
export function killRunning(): void {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export async function timeChild(
  workdir: string,
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Sample & { stdout: string }> {
  const rssFile = join(workdir, 'time-rss.txt');
  const [file, argv] = hasTime()
    ? ['/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args]]
    : [cmd, [...args]];
  const start = process.hrtime.bigint();
  // Own process group, so an interrupted run can kill the tool and /usr/bin/time together.
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let polled: number | null = null;
  const poll = hasTime()
    ? null
    : setInterval(() => {
        const v = child.pid === undefined ? null : statusKiB('VmHWM', child.pid);
        if (v !== null) polled = Math.max(polled ?? 0, v);
      }, 5);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  running.delete(child);
  if (poll) clearInterval(poll);
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
  let rssKiB: number | null = polled;
  if (hasTime()) {
    const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
    rssKiB = Number(lines[lines.length - 1]);
    rmSync(rssFile, { force: true });
  }
  return { seconds, rssKiB, stdout };
}

/** Runs `fn` in this process; peak RSS via /proc/self/clear_refs (resets VmHWM), so it includes the harness. */
export async function timeInProcess<T>(fn: () => Promise<T>): Promise<Sample & { result: T }> {
  let canReset = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canReset = false;
  }
  const start = process.hrtime.bigint();
  const result = await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { seconds, rssKiB: canReset ? statusKiB('VmHWM') : null, result };
}

/** Throws unless `path` is (or, with `wantTmpfs` false, is not) tmpfs and has `need` bytes free. */
export function checkFs(path: string, wantTmpfs: boolean, need: number, what: string): void {
  const s = statfsSync(path);
  const isRam = s.type === TMPFS_MAGIC || s.type === RAMFS_MAGIC;
  if (wantTmpfs && !isRam) throw new Error(`${path} is not tmpfs (type 0x${s.type.toString(16)}); ${what}`);
  if (!wantTmpfs && isRam)
    throw new Error(`${path} is tmpfs/ramfs, not a disk; set TMPDIR to a directory on a real disk (${what})`);
  const free = s.bavail * s.bsize;
  if (free < need)
    throw new Error(
      `${path} has ${formatSize(free)} free, the benchmark needs ${formatSize(need)} (${what})`,
    );
}
