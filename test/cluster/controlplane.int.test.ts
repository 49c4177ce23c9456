import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { DEFAULT_POD_NETWORK } from './hostnet.ts';
import { userKubeconfig } from './kubeconfig.ts';
import { kubectl, run } from './kubectl.ts';

const cluster = inject('cluster');
const ns = 'controlplane-checks';

describe('the real control plane', () => {
  it('is kube-apiserver v1.35.4 with RBAC, Node authorization and Pod Security admission', async () => {
    const version = JSON.parse((await kubectl(cluster, ['version', '-o', 'json'])).stdout) as {
      serverVersion: { gitVersion: string };
      clientVersion: { gitVersion: string };
    };
    process.stderr.write(
      `[controlplane] server ${version.serverVersion.gitVersion}, kubectl ${version.clientVersion.gitVersion}\n`,
    );
    expect(version.serverVersion.gitVersion).toBe('v1.35.4');
    expect(version.clientVersion.gitVersion).toBe('v1.35.4');
    const apis = (await kubectl(cluster, ['api-versions'])).stdout.split('\n');
    expect(apis).toContain('rbac.authorization.k8s.io/v1');
    expect(apis).toContain('authentication.k8s.io/v1');
  });

  it('listens on the pod bridge address only, and is the kubernetes Service endpoint', async () => {
    const url = new URL(cluster.server);
    expect(url.hostname).toBe(DEFAULT_POD_NETWORK.gateway);
    // Not on loopback (nor on 0.0.0.0, which would include eth0): the same port there is refused.
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(Number(url.port), '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        resolve(error.code ?? error.message);
      });
    });
    expect(refused).toBe('ECONNREFUSED');
    const endpoint = await kubectl(cluster, [
      '-n',
      'default',
      'get',
      'endpointslices',
      '-l',
      'kubernetes.io/service-name=kubernetes',
      '-o',
      'jsonpath={.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}',
    ]);
    expect(endpoint.stdout).toBe(`${DEFAULT_POD_NETWORK.gateway}:${url.port}`);
    const svc = await kubectl(cluster, [
      '-n',
      'default',
      'get',
      'svc',
      'kubernetes',
      '-o',
      'jsonpath={.spec.clusterIP}',
    ]);
    expect(svc.stdout).toBe('10.0.0.1');
  });

  it('comes with Helm 3 and Helm 4 built for it', async () => {
    const helm3 = await run(join(cluster.binDir, 'helm'), ['version', '--short']);
    const helm4 = await run(join(cluster.binDir, 'helm4'), ['version', '--short']);
    expect(helm3.stdout).toMatch(/^v3\.21\.4\b/);
    expect(helm4.stdout).toMatch(/^v4\.3\.2\b/);
  });

  it('mints users in groups who act through the real API server under real RBAC', async () => {
    expect((await kubectl(cluster, ['create', 'namespace', ns])).code).toBe(0);
    await kubectl(cluster, ['-n', ns, 'create', 'configmap', 'hyperparams', '--from-literal=lr=0.01']);
    await kubectl(cluster, [
      '-n',
      ns,
      'create',
      'role',
      'read-config',
      '--verb=get,list',
      '--resource=configmaps',
    ]);
    await kubectl(cluster, [
      '-n',
      ns,
      'create',
      'rolebinding',
      'researchers',
      '--role=read-config',
      '--group=ml-researchers',
    ]);

    const alice = userKubeconfig(cluster, 'alice', ['ml-researchers']);
    const whoami = JSON.parse(
      (await kubectl(cluster, ['auth', 'whoami', '-o', 'json'], { kubeconfig: alice })).stdout,
    ) as {
      status: { userInfo: { username: string; groups: string[] } };
    };
    expect(whoami.status.userInfo.username).toBe('alice');
    expect(whoami.status.userInfo.groups).toEqual(['ml-researchers', 'system:authenticated']);
    const read = await kubectl(
      cluster,
      ['-n', ns, 'get', 'configmap', 'hyperparams', '-o', 'jsonpath={.data.lr}'],
      { kubeconfig: alice },
    );
    expect(read.stdout).toBe('0.01');
    const write = await kubectl(cluster, ['-n', ns, 'delete', 'configmap', 'hyperparams'], {
      kubeconfig: alice,
    });
    expect(write.code).not.toBe(0);
    expect(write.stderr).toContain('User "alice" cannot delete resource "configmaps"');

    const bob = userKubeconfig(cluster, 'bob', ['data-engineers']);
    const denied = await kubectl(cluster, ['-n', ns, 'get', 'configmap', 'hyperparams'], { kubeconfig: bob });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain(
      'User "bob" cannot get resource "configmaps" in API group "" in the namespace "controlplane-checks"',
    );
  });

  it('signs service-account tokens for an audience, and TokenReview checks the audience', async () => {
    await kubectl(cluster, ['-n', ns, 'create', 'serviceaccount', 'trainer']);
    const token = (
      await kubectl(cluster, [
        '-n',
        ns,
        'create',
        'token',
        'trainer',
        '--audience=strongroom',
        '--duration=10m',
      ])
    ).stdout.trim();
    expect(token.split('.')).toHaveLength(3);
    const review = async (audience: string) => {
      const r = await kubectl(cluster, ['create', '-o', 'json', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: [audience] },
        }),
      });
      return (
        JSON.parse(r.stdout) as {
          status: { authenticated?: boolean; user?: { username: string }; audiences?: string[] };
        }
      ).status;
    };
    const ok = await review('strongroom');
    expect(ok.authenticated).toBe(true);
    expect(ok.user?.username).toBe(`system:serviceaccount:${ns}:trainer`);
    expect(ok.audiences).toEqual(['strongroom']);
    const wrongAudience = await review('someone-else');
    expect(wrongAudience.authenticated).toBeFalsy();
  });
});
