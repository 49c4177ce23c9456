import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubectl } from './kubectl.ts';
import { renderKubeconfig, pkiPath } from './kubeconfig.ts';
import { freePort, httpGet, httpsGet } from './net.ts';
import { createCertificateAuthority, createSigningKey, issueCertificate, type KeyPair } from './pki.ts';
import { startComponent, waitUntil, type Component } from './process.ts';
import { SERVICE_CIDR } from './hostnet.ts';

export interface ControlPlaneOptions {
  readonly binDir: string;
  readonly workDir: string;
  /**
   * The address the API server listens on and advertises; default 127.0.0.1. A cluster with pods uses the pod
   * bridge's gateway (which must exist already): pods reach the API server there through the `kubernetes` Service,
   * whose endpoint the API server's lease reconciler keeps at this address. On loopback there is no such endpoint.
   */
  readonly bindAddress?: string;
  /**
   * Another kube-apiserver binary (say an older release, for compatibility tests). The controller manager and
   * scheduler are then not started: they must never be newer than the API server.
   */
  readonly apiserverBinary?: string;
  /** Called with each component as soon as it has started, so a caller can record it for teardown. */
  readonly onStarted: (component: Component) => void;
}

export interface ControlPlane {
  readonly server: string;
  readonly kubeconfig: string;
  /** Components in start order: etcd, kube-apiserver, and (without apiserverBinary) controller manager, scheduler. */
  readonly components: readonly Component[];
}

/** The issuer of service-account tokens, as a real cluster names it. */
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const SERVICE_CLUSTER_IP_RANGE = SERVICE_CIDR;
/** The `kubernetes` Service's cluster IP (the first address of the range). */
export const KUBERNETES_SERVICE_IP = '10.0.0.1';

function writePair(workDir: string, name: string, pair: KeyPair): void {
  writeFileSync(pkiPath(workDir, `${name}.crt`), pair.certPem);
  writeFileSync(pkiPath(workDir, `${name}.key`), pair.keyPem, { mode: 0o600 });
}

/** Fresh PKI for one cluster: serving CA, client CA, the API server's certs, and the token signing key. */
function createPki(workDir: string, bindAddress: string): { ca: KeyPair; clientCa: KeyPair } {
  mkdirSync(join(workDir, 'pki'), { recursive: true });
  const ca = createCertificateAuthority('strongroom-test-serving-ca');
  const clientCa = createCertificateAuthority('strongroom-test-client-ca');
  writePair(workDir, 'ca', ca);
  writePair(workDir, 'client-ca', clientCa);
  writePair(
    workDir,
    'apiserver',
    issueCertificate(ca, {
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      // 10.0.0.1: the `kubernetes` Service, which in-cluster clients verify.
      ipAddresses: [...new Set(['127.0.0.1', KUBERNETES_SERVICE_IP, bindAddress])],
    }),
  );
  // The API server's own client certificate for kubelet calls (logs, exec): without it they answer Unauthorized.
  writePair(
    workDir,
    'apiserver-kubelet-client',
    issueCertificate(clientCa, {
      commonName: 'kube-apiserver-kubelet-client',
      organizations: ['system:masters'],
      usage: 'client',
    }),
  );
  const sa = createSigningKey();
  writeFileSync(pkiPath(workDir, 'sa.key'), sa.privatePem, { mode: 0o600 });
  writeFileSync(pkiPath(workDir, 'sa.pub'), sa.publicPem);
  return { ca, clientCa };
}

/**
 * Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler on random ports with fresh PKI: etcd on
 * loopback, the API server on `bindAddress`.
 * The API server runs RBAC and Node authorization, signs service-account tokens (so TokenRequest and TokenReview
 * work) and has Pod Security admission on.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { binDir, workDir } = options;
  const logs = join(workDir, 'logs');
  mkdirSync(logs, { recursive: true });
  const bindAddress = options.bindAddress ?? '127.0.0.1';
  const onLoopback = bindAddress === '127.0.0.1';
  const { ca, clientCa } = createPki(workDir, bindAddress);
  const components: Component[] = [];
  const started = (c: Component): Component => {
    components.push(c);
    options.onStarted(c);
    return c;
  };

  const [etcdPort, etcdPeerPort] = [await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const etcd = started(
    startComponent(
      'etcd',
      join(binDir, 'etcd'),
      [
        '--name=strongroom-test',
        `--data-dir=${join(workDir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=strongroom-test=${peerUrl}`,
        '--initial-cluster-state=new',
        // A throwaway test store: durability buys nothing here and fsync costs seconds on a busy disk.
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      join(logs, 'etcd.log'),
    ),
  );
  await waitUntil('etcd /health', async () => (await httpGet(`${etcdUrl}/health`)).status === 200, {
    timeoutMs: 30_000,
    component: etcd,
  });

  const apiPort = await freePort(bindAddress);
  const server = `https://${bindAddress}:${String(apiPort)}`;
  const apiserver = started(
    startComponent(
      'kube-apiserver',
      options.apiserverBinary ?? join(binDir, 'kube-apiserver'),
      [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${bindAddress}`,
        `--advertise-address=${bindAddress}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(workDir, 'pki', 'generated')}`,
        `--tls-cert-file=${pkiPath(workDir, 'apiserver.crt')}`,
        `--tls-private-key-file=${pkiPath(workDir, 'apiserver.key')}`,
        `--client-ca-file=${pkiPath(workDir, 'client-ca.crt')}`,
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${pkiPath(workDir, 'sa.pub')}`,
        `--service-account-signing-key-file=${pkiPath(workDir, 'sa.key')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction,PodSecurity',
        '--allow-privileged=false',
        // A loopback address cannot be the `kubernetes` Service's endpoint; elsewhere the default lease reconciler
        // keeps it at the bind address.
        ...(onLoopback ? ['--endpoint-reconciler-type=none'] : []),
        '--profiling=false',
        `--kubelet-client-certificate=${pkiPath(workDir, 'apiserver-kubelet-client.crt')}`,
        `--kubelet-client-key=${pkiPath(workDir, 'apiserver-kubelet-client.key')}`,
        '--v=1',
      ],
      join(logs, 'kube-apiserver.log'),
    ),
  );
  await waitUntil(
    'kube-apiserver /readyz',
    async () => (await httpsGet(`${server}/readyz`, ca.certPem)).status === 200,
    {
      timeoutMs: 180_000,
      component: apiserver,
    },
  );

  const admin = issueCertificate(clientCa, {
    commonName: 'strongroom-test-admin',
    organizations: ['system:masters'],
    usage: 'client',
  });
  const kubeconfig = join(workDir, 'admin.kubeconfig');
  writeFileSync(kubeconfig, renderKubeconfig(server, ca.certPem, 'strongroom-test-admin', admin), {
    mode: 0o600,
  });

  if (options.apiserverBinary) return { server, kubeconfig, components };
  started(
    startComponent(
      'kube-controller-manager',
      join(binDir, 'kube-controller-manager'),
      [
        `--kubeconfig=${kubeconfig}`,
        '--leader-elect=false',
        `--service-account-private-key-file=${pkiPath(workDir, 'sa.key')}`,
        `--root-ca-file=${pkiPath(workDir, 'ca.crt')}`,
        '--use-service-account-credentials=false',
        '--controllers=*,-nodeipam',
        '--bind-address=127.0.0.1',
        '--secure-port=0',
      ],
      join(logs, 'kube-controller-manager.log'),
    ),
  );
  started(
    startComponent(
      'kube-scheduler',
      join(binDir, 'kube-scheduler'),
      [`--kubeconfig=${kubeconfig}`, '--leader-elect=false', '--bind-address=127.0.0.1', '--secure-port=0'],
      join(logs, 'kube-scheduler.log'),
    ),
  );
  // The controller manager is working once it has given the default namespace its ServiceAccount.
  const [, kcm] = components.slice(1);
  await waitUntil(
    'the default ServiceAccount (kube-controller-manager running)',
    async () =>
      (await kubectl({ binDir, kubeconfig }, ['-n', 'default', 'get', 'serviceaccount', 'default'])).code ===
      0,
    { timeoutMs: 60_000, ...(kcm ? { component: kcm } : {}) },
  );
  return { server, kubeconfig, components };
}
