import { existsSync, readFileSync, readdirSync, readlinkSync, rmdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './kubectl.ts';

/** A process on this host, seen through /proc. */
export interface HostProcess {
  readonly pid: number;
  /** The program's base name (argv[0]), e.g. kubelet: match on this, never on the whole command line. */
  readonly program: string;
  readonly command: string;
}

function isZombieOrGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Live processes whose command line contains `needle` (a cluster's work directory names all of its processes). */
export function processesMatching(needle: string): HostProcess[] {
  const found: HostProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const command = argv.join(' ').trim();
    if (command.includes(needle) && !isZombieOrGone(pid))
      found.push({ pid, program: basename(argv[0] ?? ''), command });
  }
  return found;
}

/**
 * The TCP ports that process `pid` listens on, from the kernel: the LISTEN rows of its network namespace's socket
 * tables (/proc/<pid>/net/tcp and tcp6) whose socket is one of the process's own descriptors. Empty once it is gone.
 */
export function listeningPorts(pid: number): Set<number> {
  const sockets = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return new Set();
  }
  for (const fd of fds) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode !== undefined) sockets.add(inode);
    } catch {
      // Closed between the listing and the read.
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    let rows: string[];
    try {
      rows = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1);
    } catch {
      continue;
    }
    for (const row of rows) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
      const [, local, , state, , , , , , inode] = row.trim().split(/\s+/);
      if (state !== '0A' || inode === undefined || !sockets.has(inode)) continue;
      ports.add(Number.parseInt(local?.slice(local.lastIndexOf(':') + 1) ?? '', 16));
    }
  }
  return ports;
}

/** SIGTERM every matching process, wait up to `graceMs`, then SIGKILL the rest. */
export async function stopProcesses(processes: readonly HostProcess[], graceMs: number): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const p of processes) signal(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (processes.some((p) => !isZombieOrGone(p.pid)) && Date.now() < deadline) await sleep(100);
  for (const p of processes) if (!isZombieOrGone(p.pid)) signal(p.pid, 'SIGKILL');
  while (processes.some((p) => !isZombieOrGone(p.pid))) await sleep(50);
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

export async function unmountAll(dir: string): Promise<void> {
  for (const mount of mountsUnder(dir)) await run('umount', ['-l', mount]);
}

export async function linkExists(name: string): Promise<boolean> {
  return (await run('ip', ['link', 'show', name])).code === 0;
}

/** Network namespaces that CNI made for pods (containerd names them cni-<uuid>). */
export function cniNetworkNamespaces(): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('cni-')) : [];
}

/** veth interfaces on the host. */
export async function vethInterfaces(): Promise<string[]> {
  const r = await run('ip', ['-o', 'link', 'show', 'type', 'veth']);
  return r.stdout
    .split('\n')
    .map((l) => /^\d+: ([^@:]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined);
}

/** Chains the kubelet creates in iptables on start and never removes. */
export async function removeKubeletChains(): Promise<void> {
  for (const ipt of ['iptables', 'ip6tables']) {
    if ((await run('sh', ['-c', `command -v ${ipt}`])).code !== 0) continue;
    await run(ipt, ['-D', 'INPUT', '-j', 'KUBE-FIREWALL']);
    await run(ipt, ['-D', 'OUTPUT', '-j', 'KUBE-FIREWALL']);
    await run(ipt, ['-F', 'KUBE-FIREWALL']);
    await run(ipt, ['-X', 'KUBE-FIREWALL']);
    for (const table of ['filter', 'nat', 'mangle'])
      await run(ipt, ['-t', table, '-X', 'KUBE-KUBELET-CANARY']);
    await run(ipt, ['-t', 'mangle', '-X', 'KUBE-IPTABLES-HINT']);
  }
}

/** The kubelet's pod cgroups (cgroupfs driver, cgroup v1 or v2). Removed bottom-up once their pods are gone. */
export function kubeletCgroups(): string[] {
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? ['/sys/fs/cgroup']
    : readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c));
  const found: string[] = [];
  const walk = (dir: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      try {
        if (statSync(p).isDirectory()) walk(p);
      } catch {
        // raced with removal
      }
    }
    found.push(dir);
  };
  for (const root of roots) {
    const kubepods = join(root, 'kubepods');
    if (existsSync(kubepods)) walk(kubepods);
  }
  return found;
}

export async function removeKubeletCgroups(): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const left = kubeletCgroups();
    if (left.length === 0) return;
    for (const dir of left) {
      try {
        rmdirSync(dir);
      } catch {
        // still busy (a process is exiting): try again shortly
      }
    }
    await sleep(250);
  }
}
