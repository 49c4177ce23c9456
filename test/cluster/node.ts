import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubectl, run, type CommandResult } from './kubectl.ts';
import { renderKubeconfig, pkiPath } from './kubeconfig.ts';
import { buildBaseImages, writeImageArchive, PAUSE_IMAGE } from './image.ts';
import {
  CLUSTER_DOMAIN,
  DNS_SERVICE_IP,
  hostNetworkParts,
  SERVICE_CIDR,
  type PodNetwork,
} from './hostnet.ts';
import { freePort, httpGet } from './net.ts';
import { issueCertificate, type KeyPair } from './pki.ts';
import { ComponentError, startComponent, waitUntil, type Component } from './process.ts';

export { DEFAULT_POD_NETWORK, type PodNetwork } from './hostnet.ts';

/** The CoreDNS image, built from the static binary of the cluster's bin directory. */
export const COREDNS_IMAGE = 'localhost/coredns:test';

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
  /** kube-proxy's health endpoint (http://127.0.0.1:<port>/healthz). */
  readonly kubeProxyHealthz: string;
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
    resolvConf: join(dir, 'resolv.conf'),
    kubeProxyConfig: join(dir, 'kube-proxy.yaml'),
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

/** Writes a kubeconfig for `user` (in `groups`) with a fresh client certificate from the cluster's client CA. */
function componentKubeconfig(
  workDir: string,
  server: string,
  name: string,
  user: string,
  groups: readonly string[],
): string {
  const clientCa: KeyPair = {
    certPem: readFileSync(pkiPath(workDir, 'client-ca.crt'), 'utf8'),
    keyPem: readFileSync(pkiPath(workDir, 'client-ca.key'), 'utf8'),
  };
  const cert = issueCertificate(clientCa, { commonName: user, organizations: groups, usage: 'client' });
  const path = join(workDir, `${name}.kubeconfig`);
  writeFileSync(
    path,
    renderKubeconfig(server, readFileSync(pkiPath(workDir, 'ca.crt'), 'utf8'), user, cert),
    {
      mode: 0o600,
    },
  );
  return path;
}

/** The CNI network: the bridge, the pod subnet and the Service range routed through the gateway, no default route. */
export function cniConflist(network: PodNetwork, stateDir: string): object {
  return {
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
          dataDir: stateDir,
          ranges: [[{ subnet: network.subnet, gateway: network.gateway }]],
          routes: [{ dst: network.subnet }, { dst: SERVICE_CIDR, gw: network.gateway }],
        },
      },
      { type: 'loopback' },
    ],
  };
}

/**
 * kube-proxy's configuration: nftables mode on the host, NodePorts only on the bridge address, health and metrics
 * on loopback, and the host's conntrack sysctls left alone (zero means "do not set").
 */
export function kubeProxyConfiguration(options: {
  readonly kubeconfig: string;
  readonly network: PodNetwork;
  readonly healthzPort: number;
  readonly metricsPort: number;
}): object {
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: options.kubeconfig },
    hostnameOverride: NODE_NAME,
    mode: 'nftables',
    clusterCIDR: options.network.subnet,
    detectLocalMode: 'ClusterCIDR',
    nodePortAddresses: [`${options.network.gateway}/32`],
    healthzBindAddress: `127.0.0.1:${String(options.healthzPort)}`,
    metricsBindAddress: `127.0.0.1:${String(options.metricsPort)}`,
    // Root on this machine cannot lower its OOM score.
    oomScoreAdj: 0,
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
  };
}

/**
 * CoreDNS as a real pod in kube-system: non-root (65532) on port 1053 behind the Service kube-dns (53 -> 1053), with
 * the RBAC its kubernetes plugin needs. The Corefile has no `forward`: names outside the cluster get SERVFAIL, and
 * nothing is ever sent to an upstream server.
 */
export function coreDnsManifests(): object {
  const labels = { 'k8s-app': 'kube-dns' };
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'system:coredns' },
        rules: [
          {
            apiGroups: [''],
            resources: ['endpoints', 'services', 'pods', 'namespaces'],
            verbs: ['list', 'watch'],
          },
          { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
        ],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'system:coredns' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
        subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
      },
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'coredns', namespace: 'kube-system' },
        data: {
          Corefile: [
            '.:1053 {',
            '    errors',
            '    log',
            '    health :8080',
            '    ready :8181',
            `    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {`,
            '        pods insecure',
            '        fallthrough in-addr.arpa ip6.arpa',
            '        ttl 30',
            '    }',
            '    cache 30',
            '    loadbalance',
            '}',
            '',
          ].join('\n'),
        },
      },
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'coredns', namespace: 'kube-system', labels },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              serviceAccountName: 'coredns',
              priorityClassName: 'system-cluster-critical',
              // The kubelet's resolvConf: no upstream server at all.
              dnsPolicy: 'Default',
              securityContext: {
                runAsNonRoot: true,
                runAsUser: 65532,
                runAsGroup: 65532,
                seccompProfile: { type: 'RuntimeDefault' },
              },
              volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
              containers: [
                {
                  name: 'coredns',
                  image: COREDNS_IMAGE,
                  imagePullPolicy: 'Never',
                  args: ['-conf', '/etc/coredns/Corefile'],
                  ports: [
                    { name: 'dns', containerPort: 1053, protocol: 'UDP' },
                    { name: 'dns-tcp', containerPort: 1053, protocol: 'TCP' },
                  ],
                  readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 1 },
                  livenessProbe: {
                    httpGet: { path: '/health', port: 8080 },
                    periodSeconds: 10,
                    failureThreshold: 5,
                  },
                  resources: { limits: { memory: '170Mi' }, requests: { cpu: '50m', memory: '70Mi' } },
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    readOnlyRootFilesystem: true,
                    capabilities: { drop: ['ALL'] },
                  },
                  volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'kube-dns', namespace: 'kube-system', labels },
        spec: {
          selector: labels,
          clusterIP: DNS_SERVICE_IP,
          ports: [
            { name: 'dns', port: 53, targetPort: 1053, protocol: 'UDP' },
            { name: 'dns-tcp', port: 53, targetPort: 1053, protocol: 'TCP' },
          ],
        },
      },
    ],
  };
}

/** The CoreDNS image: the static binary, /etc/passwd with the non-root user, an empty /tmp. */
async function buildCoreDnsImage(binDir: string, dir: string): Promise<string> {
  const rootfs = join(dir, 'coredns-rootfs');
  for (const d of ['tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(join(binDir, 'coredns'), join(rootfs, 'coredns'));
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'nonroot:x:65532:65532::/:/nonexistent\n');
  const archive = join(dir, 'coredns.tar');
  await writeImageArchive(rootfs, COREDNS_IMAGE, archive, { entrypoint: ['/coredns'], user: '65532' });
  return archive;
}

/**
 * Starts a real node: containerd (its own root, state and socket), runc, the Debian CNI plugins on the pod bridge,
 * the kubelet (cluster DNS at 10.0.0.10, node IP on the bridge), kube-proxy on the host (nftables mode) and CoreDNS
 * as a pod, with locally built images imported (never pulled). Resolves when the node is Ready and DNS answers
 * through the kube-dns Service. The bridge and the host guard must exist already (see hostnet.ts): without them it
 * refuses to start anything.
 */
export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const { binDir, workDir, network } = options;
  const paths = nodePaths(workDir);
  for (const d of [paths.dir, paths.cniConf, paths.cniState, paths.images, paths.kubeletRoot])
    mkdirSync(d, { recursive: true });
  for (const tool of ['containerd', 'runc', 'ctr', 'nft', '/usr/lib/cni/bridge', '/bin/busybox']) {
    if (
      tool.startsWith('/') ? !existsSync(tool) : (await run('sh', ['-c', `command -v ${tool}`])).code !== 0
    ) {
      throw new Error(
        `${tool} is missing: run 'npm run host-setup' (it installs containerd, runc, CNI plugins, nftables and busybox)`,
      );
    }
  }
  // Fail closed: no pod may start, and no Service IP be programmed, without the guard in place.
  const absent = Object.entries(await hostNetworkParts(network))
    .filter(([, present]) => !present)
    .map(([part]) => part);
  if (absent.length > 0)
    throw new Error(
      `the host network is not set up (missing: ${absent.join(', ')}); start the cluster with pods`,
    );
  const components: Component[] = [];
  const started = (c: Component): Component => {
    components.push(c);
    options.onStarted(c);
    return c;
  };

  const defaults = (await must('containerd', ['config', 'default'])).stdout;
  const configFile = join(paths.dir, 'containerd.toml');
  writeFileSync(configFile, containerdConfig(defaults, paths));
  // Pods get routes to their subnet and the Service range only (no default route, no masquerade).
  writeFileSync(
    join(paths.cniConf, '10-strongroom-test.conflist'),
    JSON.stringify(cniConflist(network, paths.cniState)),
  );
  // What pods with dnsPolicy Default (CoreDNS itself) get: no upstream server, so the host's never shows in a pod.
  writeFileSync(paths.resolvConf, 'nameserver 127.0.0.1\noptions ndots:1\n');

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
  const coredns = await buildCoreDnsImage(binDir, paths.images);
  await waitUntil(
    'containerd socket',
    async () => (await run('ctr', ['-a', paths.socket, 'version'])).code === 0,
    {
      timeoutMs: 30_000,
      component: containerd,
    },
  );
  for (const archive of [images.pause, images.busybox, coredns]) await importImage(paths.socket, archive);

  const kubeletKubeconfig = componentKubeconfig(
    workDir,
    options.server,
    'kubelet',
    `system:node:${NODE_NAME}`,
    ['system:nodes'],
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
      // The API server reaches the kubelet (logs, exec) over loopback: the node is named 127.0.0.1.
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
      clusterDNS: [DNS_SERVICE_IP],
      clusterDomain: CLUSTER_DOMAIN,
      resolvConf: paths.resolvConf,
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
        // The Node's InternalIP (and kube-proxy's node IP) is the bridge address, never eth0's.
        `--node-ip=${network.gateway}`,
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

  // kube-proxy on the host, with a client certificate of its own (the default binding system:node-proxier).
  const [healthzPort, metricsPort] = [await freePort(), await freePort()];
  const kubeProxyKubeconfig = componentKubeconfig(
    workDir,
    options.server,
    'kube-proxy',
    'system:kube-proxy',
    [],
  );
  writeFileSync(
    paths.kubeProxyConfig,
    JSON.stringify(
      kubeProxyConfiguration({ kubeconfig: kubeProxyKubeconfig, network, healthzPort, metricsPort }),
    ),
  );
  const kubeProxyHealthz = `http://127.0.0.1:${String(healthzPort)}/healthz`;
  const kubeProxy = started(
    startComponent(
      'kube-proxy',
      join(binDir, 'kube-proxy'),
      [`--config=${paths.kubeProxyConfig}`, '--v=1'],
      join(workDir, 'logs', 'kube-proxy.log'),
    ),
  );
  // healthz answers 200 once the rules are programmed.
  await waitUntil('kube-proxy /healthz', async () => (await httpGet(kubeProxyHealthz)).status === 200, {
    timeoutMs: 60_000,
    component: kubeProxy,
  });

  const applied = await kubectl(options, ['apply', '-f', '-'], { input: JSON.stringify(coreDnsManifests()) });
  if (applied.code !== 0) throw new ComponentError(`applying CoreDNS failed: ${applied.stderr.trim()}`);
  const rollout = await kubectl(
    options,
    ['-n', 'kube-system', 'rollout', 'status', 'deployment/coredns', '--timeout=120s'],
    { timeoutMs: 130_000 },
  );
  if (rollout.code !== 0) {
    const pods = await kubectl(options, ['-n', 'kube-system', 'describe', 'pods', '-l', 'k8s-app=kube-dns']);
    throw new ComponentError(
      `CoreDNS did not become ready: ${rollout.stderr.trim()}\n${pods.stdout.slice(-3000)}`,
    );
  }
  // Ready in the API is not yet "answering through the Service": kube-proxy programs the endpoint a moment later.
  await waitUntil(
    `DNS answering at ${DNS_SERVICE_IP} (through the kube-dns Service)`,
    async () => (await lookUp(`kubernetes.default.svc.${CLUSTER_DOMAIN}`)).code === 0,
    { timeoutMs: 60_000, component: kubeProxy, intervalMs: 250 },
  );
  return { containerdSocket: paths.socket, kubeProxyHealthz, components };
}

/** Asks the cluster's DNS from the host, through the kube-dns Service (busybox's own resolver, no NSS involved). */
export function lookUp(name: string): Promise<CommandResult> {
  return run('/bin/busybox', ['nslookup', name, DNS_SERVICE_IP], { timeoutMs: 10_000 });
}

/** Imports a docker-archive tarball into the node's containerd, where the kubelet finds it (namespace k8s.io). */
export async function importImage(containerdSocket: string, archive: string): Promise<void> {
  await must('ctr', ['-a', containerdSocket, '-n', 'k8s.io', 'images', 'import', archive]);
}
