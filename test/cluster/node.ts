import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubectl, run, type CommandResult } from './kubectl.ts';
import { renderKubeconfig, pkiPath } from './kubeconfig.ts';
import { buildBaseImages, PAUSE_IMAGE } from './image.ts';
import { freePort } from './net.ts';
import { issueCertificate } from './pki.ts';
import { startComponent, waitUntil, type Component } from './process.ts';

/** The pods' own network: a bridge on the host, its gateway the only host address pods can reach. */
export interface PodNetwork {
  readonly bridge: string;
  /** e.g. 10.244.0.0/24 */
  readonly subnet: string;
  /** e.g. 10.244.0.1: where a host server must listen for pods to reach it. */
  readonly gateway: string;
}

export const DEFAULT_POD_NETWORK: PodNetwork = {
  bridge: 'srbr0',
  subnet: '10.244.0.0/24',
  gateway: '10.244.0.1',
};

/** The node is named 127.0.0.1 so that the API server reaches its kubelet over loopback for logs and exec. */
export const NODE_NAME = '127.0.0.1';

export interface NodeOptions {
  readonly binDir: string;
  readonly workDir: string;
  readonly kubeconfig: string;
  readonly server: string;
  readonly network: PodNetwork;
  readonly onStarted: (component: Component) => void;
}

export interface RunningNode {
  readonly containerdSocket: string;
  readonly components: readonly Component[];
}

async function must(file: string, args: readonly string[]): Promise<CommandResult> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r;
}

/** The paths of one node's state, all under the cluster's work directory. */
export function nodePaths(workDir: string) {
  const dir = join(workDir, 'node');
  return {
    dir,
    socket: join(dir, 'containerd.sock'),
    cniConf: join(dir, 'cni'),
    cniState: join(dir, 'cni-state'),
    images: join(dir, 'images'),
    kubeletRoot: join(dir, 'kubelet'),
  };
}

/**
 * containerd's own default config, changed where this machine needs it. Each change is checked, so a containerd
 * whose defaults moved fails here with a clear message instead of later with a cryptic pod error.
 */
function containerdConfig(defaults: string, paths: ReturnType<typeof nodePaths>): string {
  const edits: [RegExp, string, string][] = [
    // Images are imported, never pulled: the sandbox image too.
    [/sandbox_image = ".*"/, `sandbox_image = "${PAUSE_IMAGE}"`, 'sandbox_image'],
    // Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj to -998, so clamp instead of failing.
    [/restrict_oom_score_adj = false/, 'restrict_oom_score_adj = true', 'restrict_oom_score_adj'],
    // cgroup v1 without systemd.
    [/SystemdCgroup = true/g, 'SystemdCgroup = false', 'SystemdCgroup'],
    // Debian's CNI plugins, and a network config of our own.
    [/bin_dir = "\/opt\/cni\/bin"/, 'bin_dir = "/usr/lib/cni"', 'cni bin_dir'],
    [/conf_dir = "\/etc\/cni\/net\.d"/, `conf_dir = "${paths.cniConf}"`, 'cni conf_dir'],
  ];
  let config = defaults;
  for (const [pattern, replacement, what] of edits) {
    if (what !== 'SystemdCgroup' && !pattern.test(config)) {
      throw new Error(
        `containerd's default config has no ${what} setting to change; this containerd version is not supported`,
      );
    }
    config = config.replace(pattern, replacement);
  }
  return config;
}

async function ensureBridge(network: PodNetwork): Promise<void> {
  if ((await run('ip', ['link', 'show', network.bridge])).code === 0) return;
  const prefix = network.subnet.split('/')[1] ?? '24';
  await must('ip', ['link', 'add', network.bridge, 'type', 'bridge']);
  await must('ip', ['addr', 'add', `${network.gateway}/${prefix}`, 'dev', network.bridge]);
  await must('ip', ['link', 'set', network.bridge, 'up']);
}

/**
 * Starts a real node: containerd (its own root, state and socket), runc, the Debian CNI plugins on a bridge of its
 * own, and the kubelet, with locally built images imported (never pulled). Resolves when the node is Ready.
 */
export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const { binDir, workDir, network } = options;
  const paths = nodePaths(workDir);
  for (const d of [paths.dir, paths.cniConf, paths.cniState, paths.images, paths.kubeletRoot])
    mkdirSync(d, { recursive: true });
  for (const tool of ['containerd', 'runc', 'ctr', '/usr/lib/cni/bridge', '/bin/busybox']) {
    if (
      tool.startsWith('/') ? !existsSync(tool) : (await run('sh', ['-c', `command -v ${tool}`])).code !== 0
    ) {
      throw new Error(
        `${tool} is missing: run 'npm run host-setup' (it installs containerd, runc, CNI plugins and busybox)`,
      );
    }
  }
  const components: Component[] = [];
  const started = (c: Component): Component => {
    components.push(c);
    options.onStarted(c);
    return c;
  };

  const defaults = (await must('containerd', ['config', 'default'])).stdout;
  const configFile = join(paths.dir, 'containerd.toml');
  writeFileSync(configFile, containerdConfig(defaults, paths));
  // Pods get a route to their own subnet only (no default route, no masquerade): the gateway is all they reach.
  writeFileSync(
    join(paths.cniConf, '10-strongroom-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'strongroom-test',
      plugins: [
        {
          type: 'bridge',
          bridge: network.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: paths.cniState,
            ranges: [[{ subnet: network.subnet, gateway: network.gateway }]],
            routes: [{ dst: network.subnet }],
          },
        },
        { type: 'loopback' },
      ],
    }),
  );
  // Made now, so a host server can bind the gateway before the first pod exists.
  await ensureBridge(network);

  const containerd = started(
    startComponent(
      'containerd',
      'containerd',
      [
        '--config',
        configFile,
        '--root',
        join(paths.dir, 'root'),
        '--state',
        join(paths.dir, 'state'),
        '--address',
        paths.socket,
      ],
      join(workDir, 'logs', 'containerd.log'),
    ),
  );
  const images = await buildBaseImages(paths.images);
  await waitUntil(
    'containerd socket',
    async () => (await run('ctr', ['-a', paths.socket, 'version'])).code === 0,
    {
      timeoutMs: 30_000,
      component: containerd,
    },
  );
  for (const archive of [images.pause, images.busybox]) await importImage(paths.socket, archive);

  const clientCa = {
    certPem: readFileSync(pkiPath(workDir, 'client-ca.crt'), 'utf8'),
    keyPem: readFileSync(pkiPath(workDir, 'client-ca.key'), 'utf8'),
  };
  const nodeCert = issueCertificate(clientCa, {
    commonName: `system:node:${NODE_NAME}`,
    organizations: ['system:nodes'],
    usage: 'client',
  });
  const kubeletKubeconfig = join(workDir, 'kubelet.kubeconfig');
  writeFileSync(
    kubeletKubeconfig,
    renderKubeconfig(
      options.server,
      readFileSync(pkiPath(workDir, 'ca.crt'), 'utf8'),
      `system:node:${NODE_NAME}`,
      nodeCert,
    ),
    {
      mode: 0o600,
    },
  );
  const kubeletConfig = join(paths.dir, 'kubelet.yaml');
  writeFileSync(
    kubeletConfig,
    JSON.stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // This machine has cgroup v1 and no systemd.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      containerRuntimeEndpoint: `unix://${paths.socket}`,
      failSwapOn: false,
      address: '127.0.0.1',
      port: await freePort(),
      healthzBindAddress: '127.0.0.1',
      healthzPort: await freePort(),
      readOnlyPort: 0,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: pkiPath(workDir, 'client-ca.crt') },
      },
      authorization: { mode: 'AlwaysAllow' },
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
    }),
  );
  const kubelet = started(
    startComponent(
      'kubelet',
      join(binDir, 'kubelet'),
      [
        `--config=${kubeletConfig}`,
        `--kubeconfig=${kubeletKubeconfig}`,
        `--hostname-override=${NODE_NAME}`,
        `--root-dir=${paths.kubeletRoot}`,
        '--v=1',
      ],
      join(workDir, 'logs', 'kubelet.log'),
    ),
  );
  await waitUntil(
    'node Ready',
    async () => {
      const r = await kubectl(options, [
        'get',
        'node',
        NODE_NAME,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      return r.stdout.trim() === 'True';
    },
    { timeoutMs: 120_000, component: kubelet, intervalMs: 500 },
  );
  return { containerdSocket: paths.socket, components };
}

/** Imports a docker-archive tarball into the node's containerd, where the kubelet finds it (namespace k8s.io). */
export async function importImage(containerdSocket: string, archive: string): Promise<void> {
  await must('ctr', ['-a', containerdSocket, '-n', 'k8s.io', 'images', 'import', archive]);
}
