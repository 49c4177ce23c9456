/**
 * What the parts of `npm run bench:injection` share: the namespaces and artifacts they use, the log, and how they
 * read a pod, a sidecar's log and a sidecar's process on the host.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { V1Pod } from '@kubernetes/client-node';
import { SIDECAR_CONTAINER } from '../../core/injection/contract.ts';
import type { ClusterInfo } from '../../test/harness/cluster.ts';
import { must } from '../../test/harness/kubectl.ts';
import { OPERATOR_NAMESPACE } from '../../test/harness/stack.ts';
import { processStartMs } from '../proc.ts';

export const APP_NS = 'bench-inject';
export const REVOKE_NS = 'bench-revoke';
export const SA = 'trainer';
export const SMALL = 'small';
export const BIG = 'big';
export const SMALL_MOUNT = '/models/small';
export const BIG_MOUNT = '/models/big';
/** A scheduler nobody runs: admission pods stay Pending with no scheduling work and no kubelet. */
export const NO_SCHEDULER = 'strongroom-bench-no-scheduler';
export const BROKER_SERVER_NAME = `strongroom-broker.${OPERATOR_NAMESPACE}.svc`;
export const SMALL_FILES = {
  'config.json': JSON.stringify({ arch: 'bench', layers: 4 }),
  'weights.bin': Buffer.alloc(64 * 1024, 7),
};

export const log = (line: string): void => {
  process.stderr.write(`[bench:injection] ${line}\n`);
};

export function ready(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

export function injected(pod: V1Pod): boolean {
  return (pod.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER);
}

/** The sidecar's JSON log lines (timestamp in ms since the epoch), from `kubectl logs`. */
export async function sidecarLog(
  cluster: ClusterInfo,
  namespace: string,
  pod: string,
): Promise<{ at: number; message: string; fields: Record<string, unknown> }[]> {
  const text = await must(cluster, ['-n', namespace, 'logs', pod, '-c', SIDECAR_CONTAINER]);
  const lines: { at: number; message: string; fields: Record<string, unknown> }[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as Record<string, unknown>;
    if (typeof entry.timestamp !== 'string' || typeof entry.message !== 'string') continue;
    lines.push({ at: Date.parse(entry.timestamp), message: entry.message, fields: entry });
  }
  return lines;
}

/**
 * The sidecar process of the pod with `uid` on this host (its cgroup names the pod, its command line contains
 * `marker`) and its start time in ms since the epoch, or undefined while it is not running.
 */
export function sidecarProcess(uid: string, marker: string): { pid: number; startedAt: number } | undefined {
  const keys = [uid, uid.replace(/-/g, '_')];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmdline.includes(marker)) continue;
      const cgroup = readFileSync(`/proc/${entry}/cgroup`, 'utf8');
      if (!keys.some((k) => cgroup.includes(k))) continue;
      return { pid: Number(entry), startedAt: processStartMs(Number(entry)) };
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}
