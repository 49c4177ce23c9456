import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachNode, findLeftovers, type Node } from './cluster.ts';
import { kubeProxyTables } from './hostnet.ts';
import { BUSYBOX_IMAGE } from './image.ts';
import { kubectl } from './kubectl.ts';

const cluster = inject('cluster');
const ns = 'node-smoke';

/**
 * A real node: kubelet + containerd + runc + CNI, running a real pod in a namespace that enforces Pod Security
 * "restricted". A native sidecar (init container with restartPolicy Always and a startup probe) writes into a
 * memory emptyDir; the app container starts only after the probe passes and reads the file.
 */
describe('a real node', () => {
  let node: Node;
  let networkBaseline: { netns: number; veths: number };

  beforeAll(async () => {
    const before = await findLeftovers(cluster.workDir);
    networkBaseline = { netns: before.cniNetns.length, veths: before.veths.length };
    node = await attachNode(cluster, { log: (l) => process.stderr.write(`[node] ${l}\n`) });
    process.stderr.write(`[node] kubelet version: ${node.kubeletVersion}\n`);
  });
  afterAll(async () => {
    await node.stop();
  });

  it('registers as Ready with the kubelet version that was built', async () => {
    const r = await kubectl(cluster, [
      'get',
      'node',
      node.name,
      '-o',
      'jsonpath={.status.nodeInfo.kubeletVersion}',
    ]);
    expect(r.stdout).toBe('v1.35.4');
    expect(node.kubeletVersion).toBe('Kubernetes v1.35.4');
  });

  it('rejects a pod that breaks the restricted profile, through the real API server', async () => {
    await kubectl(cluster, ['create', 'namespace', ns]);
    await kubectl(cluster, ['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
    const r = await kubectl(cluster, [
      '-n',
      ns,
      'run',
      'rooty',
      `--image=${BUSYBOX_IMAGE}`,
      '--image-pull-policy=Never',
      '--',
      'sleep',
      '1',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('violates PodSecurity "restricted:latest"');
  });

  it('runs a native sidecar that gates the app container, and kubectl logs shows what the app read', async () => {
    const restricted = {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    };
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'gated', namespace: ns },
      spec: {
        securityContext: {
          runAsNonRoot: true,
          runAsUser: 65534,
          runAsGroup: 65534,
          seccompProfile: { type: 'RuntimeDefault' },
        },
        volumes: [
          { name: 'plain', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
          {
            name: 'token',
            projected: {
              sources: [
                { serviceAccountToken: { audience: 'strongroom', expirationSeconds: 600, path: 'token' } },
              ],
            },
          },
        ],
        initContainers: [
          {
            name: 'sidecar',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            restartPolicy: 'Always',
            // Writes after a delay so that an app that started early would find nothing.
            command: [
              '/bin/sh',
              '-c',
              'sleep 3; echo "secret-model-bytes" > /plain/model.txt; touch /plain/.ready; while :; do sleep 1; done',
            ],
            startupProbe: {
              exec: { command: ['test', '-f', '/plain/.ready'] },
              periodSeconds: 1,
              failureThreshold: 60,
            },
            securityContext: restricted,
            volumeMounts: [
              { name: 'plain', mountPath: '/plain' },
              { name: 'token', mountPath: '/var/run/strongroom' },
            ],
          },
        ],
        containers: [
          {
            name: 'app',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            command: [
              '/bin/sh',
              '-c',
              'cat /models/model.txt; grep -c tmpfs /proc/mounts >/dev/null && grep " /models " /proc/mounts | cut -d" " -f3; test -e /var/run/strongroom/token || echo no-token; sleep 3600',
            ],
            securityContext: restricted,
            volumeMounts: [{ name: 'plain', mountPath: '/models', readOnly: true }],
          },
        ],
      },
    };
    const created = await kubectl(cluster, ['apply', '-f', '-'], { input: JSON.stringify(pod) });
    expect(created.stderr).toBe('');
    const wait = await kubectl(
      cluster,
      ['-n', ns, 'wait', 'pod/gated', '--for=condition=Ready', '--timeout=90s'],
      { timeoutMs: 100_000 },
    );
    expect(wait.code, wait.stderr).toBe(0);

    const status = JSON.parse(
      (await kubectl(cluster, ['-n', ns, 'get', 'pod', 'gated', '-o', 'json'])).stdout,
    ) as {
      status: {
        podIP: string;
        initContainerStatuses: {
          name: string;
          started: boolean;
          state: { running?: { startedAt: string } };
        }[];
        containerStatuses: { name: string; state: { running?: { startedAt: string } } }[];
      };
    };
    const sidecar = status.status.initContainerStatuses.find((c) => c.name === 'sidecar');
    const app = status.status.containerStatuses.find((c) => c.name === 'app');
    expect(sidecar?.started).toBe(true);
    expect(status.status.podIP).toMatch(/^10\.244\.0\.\d+$/);
    // The app started after the sidecar had written the file (the sidecar sleeps 3 s before writing).
    const sidecarStart = Date.parse(sidecar?.state.running?.startedAt ?? '');
    const appStart = Date.parse(app?.state.running?.startedAt ?? '');
    expect(appStart - sidecarStart).toBeGreaterThanOrEqual(3000);

    let logs = '';
    for (let i = 0; i < 20 && !logs.includes('no-token'); i++) {
      logs = (await kubectl(cluster, ['-n', ns, 'logs', 'gated', '-c', 'app'])).stdout;
      if (!logs.includes('no-token')) await new Promise((r) => setTimeout(r, 500));
    }
    // The app read the sidecar's file from a memory-backed volume, and has no token of its own.
    expect(logs.split('\n')).toEqual(['secret-model-bytes', 'tmpfs', 'no-token', '']);
  });

  it('lets pods reach a host server at the bridge gateway, and gives them no default route', async () => {
    const body = `weights-${Date.now()}`;
    const server = createServer((_req, res) => {
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, node.network.gateway, resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'fetch', namespace: ns },
        spec: {
          restartPolicy: 'Never',
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65534,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'fetch',
              image: BUSYBOX_IMAGE,
              imagePullPolicy: 'Never',
              command: [
                '/bin/sh',
                '-c',
                `wget -q -O - http://${node.network.gateway}:${port}/; echo; ip route`,
              ],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      };
      expect((await kubectl(cluster, ['apply', '-f', '-'], { input: JSON.stringify(pod) })).code).toBe(0);
      const done = await kubectl(
        cluster,
        ['-n', ns, 'wait', 'pod/fetch', '--for=jsonpath={.status.phase}=Succeeded', '--timeout=60s'],
        {
          timeoutMs: 70_000,
        },
      );
      expect(done.code, done.stderr).toBe(0);
      const lines = (await kubectl(cluster, ['-n', ns, 'logs', 'fetch'])).stdout.trim().split('\n');
      expect(lines[0]).toBe(body);
      // Only the pod subnet and the Service range are routed, both through the gateway.
      expect(lines.slice(1).some((l) => l.startsWith('default'))).toBe(false);
      expect(lines.slice(1).join('\n')).toContain('10.244.0.0/24');
      expect(lines.slice(1).join('\n')).toContain('10.0.0.0/24 via 10.244.0.1');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('stops cleanly: no kubelet, containerd, kube-proxy (or its rules), mount, pod namespace or veth left', async () => {
    await node.stop();
    const left = await findLeftovers(cluster.workDir);
    const nodeProcesses = left.processes.filter((p) => /kubelet|containerd|kube-proxy/.test(p));
    expect(nodeProcesses).toEqual([]);
    expect(left.mounts).toEqual([]);
    expect(await kubeProxyTables()).toEqual([]);
    // The bridge and the guard belong to the cluster, whose API server listens on the bridge: they stay.
    expect(left.bridgeExists).toBe(true);
    expect(left.cniNetns.length).toBe(networkBaseline.netns);
    expect(left.veths.length).toBe(networkBaseline.veths);
    // The control plane is untouched.
    const ready = await kubectl(cluster, ['get', '--raw', '/readyz']);
    expect(ready.stdout, ready.stderr).toBe('ok');
    const nodes = await kubectl(cluster, ['get', 'node', '127.0.0.1', '-o', 'jsonpath={.metadata.name}']);
    expect(nodes.stdout).toBe('127.0.0.1');
  });
});
