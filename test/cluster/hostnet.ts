/**
 * The host side of the test cluster's network: the pod bridge, the Service range's routing and the host guard.
 *
 * The API server listens on the bridge's address (pods cannot reach the host's loopback), so all of this exists
 * before the control plane starts and goes only after it has stopped. It is host-wide state with fixed names
 * (bridge srbr0, routing table 1010, rule preferences 1010 and 1011, nft table `inet srguard`), so several clusters of
 * this machine share it: each holder is recorded under {@link HOSTNET_STATE_DIR}, the first one sets it up and the
 * last one to release it takes it down and restores the sysctls it changed.
 *
 * The guard makes sure that no packet for the Service range (10.0.0.0/24) or the pod range ever leaves by another
 * interface, whatever kube-proxy does or has not done yet:
 * - `blackhole 10.0.0.0/24` in the main table, and `blackhole <pod subnet> metric 4242` behind the bridge's own route;
 * - table 1010 routes the Service range to the bridge, for the host's own connections (rule 1010, `iif lo`: the API
 *   server calling a webhook Service; a blackhole would fail their connect() before kube-proxy's OUTPUT DNAT) and for
 *   pod traffic kube-proxy did not translate (rule 1011, `iif <bridge>`: a Service without endpoints is then rejected
 *   by kube-proxy, "connection refused", instead of vanishing);
 * - nft table `inet srguard` drops anything forwarded between the bridge and another interface, and anything to the
 *   pod or Service range, or from the pod range, that would leave by anything but the bridge or loopback;
 * - `send_redirects=0` (all and the bridge): otherwise the host's ICMP redirects for pod -> Service -> pod flows use
 *   up the ICMP rate limit and kube-proxy's "port unreachable" for a Service without endpoints is never sent.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, type CommandResult } from './kubectl.ts';

/** The pods' own network: a bridge on the host, its gateway the only host address pods can reach. */
export interface PodNetwork {
  readonly bridge: string;
  /** e.g. 10.244.0.0/24 */
  readonly subnet: string;
  /** e.g. 10.244.0.1: the API server, and any host server that pods must reach, listens here. */
  readonly gateway: string;
}

export const DEFAULT_POD_NETWORK: PodNetwork = {
  bridge: 'srbr0',
  subnet: '10.244.0.0/24',
  gateway: '10.244.0.1',
};

/** The Service cluster IP range (--service-cluster-ip-range); 10.0.0.1 is the `kubernetes` Service. */
export const SERVICE_CIDR = '10.0.0.0/24';
/** The `kube-dns` Service's cluster IP, the kubelet's clusterDNS. */
export const DNS_SERVICE_IP = '10.0.0.10';
export const CLUSTER_DOMAIN = 'cluster.local';
/** The policy-routing table and rule preferences of the guard. */
export const GUARD_ROUTE_TABLE = 1010;
export const GUARD_RULE_PREFS = [1010, 1011] as const;
/** The nft table of the guard (family inet). */
export const GUARD_NFT_TABLE = 'srguard';
const BLACKHOLE_METRIC = 4242;

/** Where holders and the saved sysctls are recorded (tmpfs: gone after a reboot, like the bridge itself). */
export const HOSTNET_STATE_DIR = '/run/strongroom-hostnet';
const LOCK = join(HOSTNET_STATE_DIR, 'lock');
const HOLDERS = join(HOSTNET_STATE_DIR, 'holders');
const SAVED = join(HOSTNET_STATE_DIR, 'saved.json');

/** The host network could not be set up, checked or taken down. */
export class HostNetworkError extends Error {
  override readonly name = 'HostNetworkError';
}

interface Saved {
  readonly network: PodNetwork;
  readonly ipForward: string;
  readonly sendRedirectsAll: string;
}

async function must(file: string, args: readonly string[]): Promise<CommandResult> {
  let r: CommandResult;
  try {
    r = await run(file, args);
  } catch (error) {
    throw new HostNetworkError(`cannot run ${file}`, { cause: error });
  }
  if (r.code !== 0)
    throw new HostNetworkError(
      `${file} ${args.join(' ')} failed (exit ${String(r.code)}): ${r.stderr.trim()}`,
    );
  return r;
}

/** The guard's nft ruleset (replaces the table atomically when loaded with `nft -f -`). */
export function guardRuleset(network: PodNetwork): string {
  const b = JSON.stringify(network.bridge);
  return [
    `table inet ${GUARD_NFT_TABLE}`,
    `delete table inet ${GUARD_NFT_TABLE}`,
    `table inet ${GUARD_NFT_TABLE} {`,
    '  chain guard_forward {',
    // Before kube-proxy's forward chains (priority 0).
    '    type filter hook forward priority -10; policy accept;',
    `    iifname ${b} oifname != ${b} counter drop`,
    `    oifname ${b} iifname != ${b} counter drop`,
    '  }',
    '  chain guard_postrouting {',
    '    type filter hook postrouting priority 10; policy accept;',
    `    oifname != { ${b}, "lo" } ip daddr { ${SERVICE_CIDR}, ${network.subnet} } counter drop`,
    `    oifname != { ${b}, "lo" } ip saddr ${network.subnet} counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** A process-safe lock around changes to the shared state: an exclusive file naming its owner's pid. */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(HOLDERS, { recursive: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const fd = openSync(LOCK, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new HostNetworkError('cannot lock the host network', { cause: error });
      let owner: number;
      try {
        owner = Number(readFileSync(LOCK, 'utf8').trim());
      } catch {
        continue; // released between the two calls
      }
      if (!pidAlive(owner)) {
        rmSync(LOCK, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new HostNetworkError(`the host network is locked by process ${String(owner)}`);
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { force: true });
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Holders whose cluster still exists (its work directory); the others are forgotten. */
function liveHolders(): string[] {
  const live: string[] = [];
  for (const entry of existsSync(HOLDERS) ? readdirSync(HOLDERS) : []) {
    const file = join(HOLDERS, entry);
    const workDir = readFileSync(file, 'utf8').trim();
    if (workDir && existsSync(workDir)) live.push(workDir);
    else rmSync(file, { force: true });
  }
  return live;
}

const holderFile = (workDir: string): string => join(HOLDERS, basename(workDir));

const readSysctl = (path: string): string => readFileSync(path, 'utf8').trim();

async function setUp(network: PodNetwork): Promise<void> {
  // The guard first: its rules name the bridge, so they hold from the moment it exists.
  const nft = await run('nft', ['-f', '-'], { input: guardRuleset(network) });
  if (nft.code !== 0) throw new HostNetworkError(`loading the nft guard failed: ${nft.stderr.trim()}`);
  await must('ip', ['route', 'replace', 'blackhole', SERVICE_CIDR]);
  await must('ip', ['route', 'replace', 'blackhole', network.subnet, 'metric', String(BLACKHOLE_METRIC)]);
  const prefix = network.subnet.split('/')[1] ?? '24';
  await must('ip', ['link', 'add', network.bridge, 'type', 'bridge']);
  writeFileSync('/proc/sys/net/ipv4/conf/all/send_redirects', '0');
  writeFileSync(`/proc/sys/net/ipv4/conf/${network.bridge}/send_redirects`, '0');
  await must('ip', ['addr', 'add', `${network.gateway}/${prefix}`, 'dev', network.bridge]);
  await must('ip', ['link', 'set', network.bridge, 'up']);
  const table = String(GUARD_ROUTE_TABLE);
  await must('ip', [
    'route',
    'replace',
    SERVICE_CIDR,
    'dev',
    network.bridge,
    'src',
    network.gateway,
    'table',
    table,
  ]);
  const [local, fromPods] = GUARD_RULE_PREFS;
  await must('ip', ['rule', 'add', 'pref', String(local), 'iif', 'lo', 'to', SERVICE_CIDR, 'lookup', table]);
  const bridge = network.bridge;
  await must('ip', [
    'rule',
    'add',
    'pref',
    String(fromPods),
    'iif',
    bridge,
    'to',
    SERVICE_CIDR,
    'lookup',
    table,
  ]);
}

/** Takes down whatever of the host network exists (each step on its own, so one failure does not stop the rest). */
async function takeDown(network: PodNetwork): Promise<void> {
  if ((await run('ip', ['link', 'show', network.bridge])).code === 0)
    await run('ip', ['link', 'del', network.bridge]);
  for (const pref of GUARD_RULE_PREFS) {
    // A preference may hold more than one rule (a half-done earlier set-up): delete until none is left.
    for (let i = 0; i < 10; i++)
      if ((await run('ip', ['rule', 'del', 'pref', String(pref)])).code !== 0) break;
  }
  await run('ip', ['route', 'flush', 'table', String(GUARD_ROUTE_TABLE)]);
  await run('ip', ['route', 'del', 'blackhole', SERVICE_CIDR]);
  await run('ip', ['route', 'del', 'blackhole', network.subnet, 'metric', String(BLACKHOLE_METRIC)]);
  await run('nft', ['delete', 'table', 'inet', GUARD_NFT_TABLE]);
}

/**
 * Records `workDir`'s cluster as a holder of the host network, setting it up if nobody holds it. Fails closed when
 * the bridge exists without a holder (another tool uses it) or a held network lacks its guard.
 */
export async function acquireHostNetwork(
  workDir: string,
  network: PodNetwork = DEFAULT_POD_NETWORK,
): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new HostNetworkError('the pod network needs root (a bridge, routes, nftables)');
  await withLock(async () => {
    const holders = liveHolders();
    if (holders.length === 0) {
      if (existsSync(SAVED)) {
        // A holder died without releasing it: ours to take down before setting it up again.
        const old = JSON.parse(readFileSync(SAVED, 'utf8')) as Saved;
        await takeDown(old.network);
        restore(old);
      }
      const present = Object.entries(await hostNetworkParts(network))
        .filter(([, exists]) => exists)
        .map(([part]) => part);
      if (present.length > 0)
        throw new HostNetworkError(
          `${present.join(', ')} exist(s) but no Strongroom test cluster holds them: another tool uses them (a spike script?); remove them or stop it first`,
        );
      const saved: Saved = {
        network,
        ipForward: readSysctl('/proc/sys/net/ipv4/ip_forward'),
        sendRedirectsAll: readSysctl('/proc/sys/net/ipv4/conf/all/send_redirects'),
      };
      writeFileSync(SAVED, JSON.stringify(saved, null, 2));
      try {
        await setUp(network);
      } catch (error) {
        await takeDown(network);
        restore(saved);
        throw error;
      }
    } else {
      const saved = JSON.parse(readFileSync(SAVED, 'utf8')) as Saved;
      if (JSON.stringify(saved.network) !== JSON.stringify(network))
        throw new HostNetworkError(
          `the host network is held with another pod network: ${JSON.stringify(saved.network)}`,
        );
      const missing = await hostNetworkParts(network);
      const absent = Object.entries(missing)
        .filter(([, present]) => !present)
        .map(([part]) => part);
      if (absent.length > 0)
        throw new HostNetworkError(
          `the host network held by ${holders.join(', ')} lacks ${absent.join(', ')}`,
        );
    }
    writeFileSync(holderFile(workDir), workDir);
  });
}

function restore(saved: Saved): void {
  writeFileSync('/proc/sys/net/ipv4/ip_forward', saved.ipForward);
  writeFileSync('/proc/sys/net/ipv4/conf/all/send_redirects', saved.sendRedirectsAll);
  rmSync(SAVED, { force: true });
}

/**
 * Forgets `workDir`'s cluster as a holder; the last holder takes the bridge, routes, rules and guard down and
 * restores ip_forward and send_redirects. Call it only once nothing of the cluster runs any more.
 */
export async function releaseHostNetwork(workDir: string): Promise<void> {
  await withLock(async () => {
    rmSync(holderFile(workDir), { force: true });
    if (liveHolders().filter((w) => w !== workDir).length > 0 || !existsSync(SAVED)) return;
    const saved = JSON.parse(readFileSync(SAVED, 'utf8')) as Saved;
    await takeDown(saved.network);
    restore(saved);
  });
}

/** True when a live cluster other than `workDir`'s holds the host network (its parts are then not leftovers). */
export function heldByOthers(workDir: string): boolean {
  return liveHolders().some((w) => w !== workDir);
}

/** Which parts of the host network exist now. */
export async function hostNetworkParts(
  network: PodNetwork = DEFAULT_POD_NETWORK,
): Promise<Record<string, boolean>> {
  const out = async (args: string[]) => (await run('ip', args)).stdout;
  const blackholes = await out(['route', 'show', 'type', 'blackhole']);
  const rules = await out(['rule', 'show']);
  const table = await out(['route', 'show', 'table', String(GUARD_ROUTE_TABLE)]);
  return {
    [`bridge ${network.bridge}`]: (await run('ip', ['link', 'show', network.bridge])).code === 0,
    [`blackhole route ${SERVICE_CIDR}`]: blackholes
      .split('\n')
      .some((l) => l.startsWith(`blackhole ${SERVICE_CIDR}`)),
    [`blackhole route ${network.subnet}`]: blackholes
      .split('\n')
      .some((l) => l.startsWith(`blackhole ${network.subnet}`)),
    [`routing table ${String(GUARD_ROUTE_TABLE)}`]: table.trim() !== '',
    ...Object.fromEntries(
      GUARD_RULE_PREFS.map((p) => [
        `ip rule ${String(p)}`,
        rules.split('\n').some((l) => l.startsWith(`${String(p)}:`)),
      ]),
    ),
    [`nft table inet ${GUARD_NFT_TABLE}`]:
      (await run('nft', ['list', 'table', 'inet', GUARD_NFT_TABLE])).code === 0,
  };
}

/** The nft tables kube-proxy (nftables mode) creates; `kube-proxy --cleanup` removes them. */
export async function kubeProxyTables(): Promise<string[]> {
  const r = await run('nft', ['list', 'tables']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^table (ip|ip6) kube-proxy$/.test(l));
}
