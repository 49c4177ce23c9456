import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildAppImage, IMAGE_NODE_PATH, IMAGE_UID } from './app-image.ts';
import { attachNode, type Node } from './cluster.ts';
import { DEFAULT_POD_NETWORK, DNS_SERVICE_IP, SERVICE_CIDR } from './hostnet.ts';
import { BUSYBOX_IMAGE } from './image.ts';
import { kubectl, run } from './kubectl.ts';
import { httpGet } from './net.ts';
import { importImage } from './node.ts';
import { createCertificateAuthority, issueCertificate } from './pki.ts';

const cluster = inject('cluster');
const ns = 'svc-dns';
const gateway = DEFAULT_POD_NETWORK.gateway;
const log = (l: string): void => {
  process.stderr.write(`[services] ${l}\n`);
};

/** An address of TEST-NET-1, outside every cluster range: a pod has no route to it (nothing is sent). */
const CANARY = '192.0.2.1';

interface Capture {
  readonly child: ChildProcess;
  readonly iface: string;
  readonly file: string;
}

/** tcpdump writing `filter`'s packets on `iface` to a file; resolves once it listens. */
async function startCapture(iface: string, file: string, filter: string): Promise<Capture> {
  const child = spawn('tcpdump', ['-n', '-U', '-i', iface, '-w', file, filter], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes('listening on')) resolve();
    });
    child.once('exit', (code) => {
      reject(new Error(`tcpdump on ${iface} exited (${String(code)}): ${err}`));
    });
  });
  return { child, iface, file };
}

const restricted = {
  runAsNonRoot: true,
  runAsUser: 65534,
  runAsGroup: 65534,
  seccompProfile: { type: 'RuntimeDefault' },
};
const locked = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

/** An HTTPS admission webhook in a pod: it denies objects named deny-* and logs who called it. */
const HOOK_SERVER = `
const https = require('node:https'), fs = require('node:fs'), os = require('node:os');
https.createServer({ cert: fs.readFileSync('/certs/tls.crt'), key: fs.readFileSync('/certs/tls.key') }, (req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const review = JSON.parse(body);
    const r = review.request;
    console.log('webhook called from ' + req.socket.remoteAddress.replace(/^::ffff:/, '') + ': ' + r.operation + ' ' + r.kind.kind + ' ' + r.namespace + '/' + r.name);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: {
      uid: r.uid, allowed: !r.name.startsWith('deny-'),
      status: { code: 403, message: 'denied by the webhook in pod ' + os.hostname() } } }));
  });
}).listen(8443);
`;

/** An in-cluster client of the API server, as client libraries do it: the Service's env, the SA's CA and token. */
const API_CLIENT = `
const https = require('node:https'), fs = require('node:fs');
const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
const ca = fs.readFileSync(sa + '/ca.crt'), token = fs.readFileSync(sa + '/token', 'utf8');
function call(host, withCa) {
  return new Promise((resolve) => {
    const req = https.request({ host, port: 443, method: 'POST', path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, timeout: 5000,
      ...(withCa ? { ca } : {}) }, (res) => {
      const authorized = res.socket.authorized;
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(host + ' ' + res.statusCode + ' authorized=' + authorized + ' ' +
        ((JSON.parse(body).status || {}).userInfo || {}).username));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(host + ' error ' + (e.code || e.message)));
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }));
  });
}
(async () => {
  console.log(await call('kubernetes.default.svc.cluster.local', true));
  console.log(await call(process.env.KUBERNETES_SERVICE_HOST, true));
  console.log(await call('kubernetes.default.svc.cluster.local', false));
})();
`;

async function must(args: readonly string[], input?: string): Promise<string> {
  const r = await kubectl(cluster, args, { ...(input === undefined ? {} : { input }), timeoutMs: 150_000 });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Runs a pod to completion and returns its containers' logs by name. */
async function runPod(
  name: string,
  spec: object,
  containers: readonly string[],
): Promise<Record<string, string>> {
  await must(
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec }),
  );
  const done = await kubectl(
    cluster,
    ['-n', ns, 'wait', `pod/${name}`, '--for=jsonpath={.status.phase}=Succeeded', '--timeout=90s'],
    { timeoutMs: 100_000 },
  );
  const logs: Record<string, string> = {};
  for (const c of containers) logs[c] = (await kubectl(cluster, ['-n', ns, 'logs', name, '-c', c])).stdout;
  expect(done.code, `${done.stderr}\n${JSON.stringify(logs, null, 1)}`).toBe(0);
  return logs;
}

/** The interface of the host's default route: where anything leaving the machine goes. */
async function outsideInterface(): Promise<string> {
  const r = await run('ip', ['-o', 'route', 'show', 'default']);
  const dev = /\bdev (\S+)/.exec(r.stdout)?.[1];
  if (!dev) throw new Error(`no default route on this host: ${r.stdout}`);
  return dev;
}

/**
 * Services and DNS on the real node: kube-proxy (nftables) on the host and CoreDNS as a pod, in a namespace that
 * enforces Pod Security "restricted". Meanwhile tcpdump watches the host's outside interface: no packet for the pod
 * or Service range may appear there.
 */
describe('Services and DNS', () => {
  let node: Node | undefined;
  let captureDir = '';
  let outsideCapture: Capture | undefined;
  let bridgeCapture: Capture | undefined;
  let appImage: string;
  let webIp = '';
  let webPods: string[] = [];
  let hookPod = '';
  const hookCa = createCertificateAuthority('svc-dns-hook-ca');

  beforeAll(async () => {
    captureDir = mkdtempSync(join(tmpdir(), 'strongroom-leak-'));
    // Everything from or to the pod and Service ranges, on the outside interface (must stay empty) and, as the
    // control that the capture and the filter work, on the bridge (must see this file's traffic).
    const filter = `net ${SERVICE_CIDR} or net ${DEFAULT_POD_NETWORK.subnet}`;
    const iface = await outsideInterface();
    outsideCapture = await startCapture(iface, join(captureDir, 'outside.pcap'), filter);
    bridgeCapture = await startCapture(DEFAULT_POD_NETWORK.bridge, join(captureDir, 'bridge.pcap'), filter);
    log(`tcpdump on ${iface} and ${DEFAULT_POD_NETWORK.bridge}: ${filter}`);

    node = await attachNode(cluster, { log });
    const image = await buildAppImage({ log });
    await importImage(node.containerdSocket, image.archive);
    appImage = image.ref;

    await must(['create', 'namespace', ns]);
    await must(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
    // The webhook's serving certificate, for the name the API server dials: <service>.<namespace>.svc.
    const tls = issueCertificate(hookCa, {
      commonName: `hook.${ns}.svc`,
      dnsNames: [`hook.${ns}.svc`, `hook.${ns}.svc.cluster.local`],
      usage: 'server',
    });
    const deployment = (name: string, replicas: number, pod: object) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: ns },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: pod },
      },
    });
    const service = (name: string, selector: string, port: number, targetPort: string | number) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: ns },
      spec: { selector: { app: selector }, ports: [{ port, targetPort }] },
    });
    const objects = [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'hook-tls', namespace: ns },
        type: 'kubernetes.io/tls',
        stringData: { 'tls.crt': tls.certPem, 'tls.key': tls.keyPem },
      },
      deployment('web', 2, {
        automountServiceAccountToken: false,
        securityContext: restricted,
        volumes: [{ name: 'www', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }],
        containers: [
          {
            name: 'httpd',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            command: ['/bin/sh', '-c', 'hostname > /www/index.html; exec httpd -f -p 8080 -h /www'],
            ports: [{ containerPort: 8080, name: 'http' }],
            readinessProbe: { httpGet: { path: '/index.html', port: 8080 }, periodSeconds: 1 },
            securityContext: locked,
            volumeMounts: [{ name: 'www', mountPath: '/www' }],
          },
        ],
      }),
      service('web', 'web', 8080, 'http'),
      deployment('hook', 1, {
        automountServiceAccountToken: false,
        securityContext: { ...restricted, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID },
        volumes: [{ name: 'certs', secret: { secretName: 'hook-tls' } }],
        containers: [
          {
            name: 'hook',
            image: appImage,
            imagePullPolicy: 'Never',
            command: [IMAGE_NODE_PATH, '-e', HOOK_SERVER],
            ports: [{ containerPort: 8443, name: 'https' }],
            readinessProbe: { httpGet: { scheme: 'HTTPS', path: '/healthz', port: 8443 }, periodSeconds: 1 },
            securityContext: locked,
            volumeMounts: [{ name: 'certs', mountPath: '/certs', readOnly: true }],
          },
        ],
      }),
      service('hook', 'hook', 443, 'https'),
      // Selects nothing: a Service without endpoints.
      service('empty', 'nothing-has-this-label', 80, 80),
    ];
    await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    for (const d of ['web', 'hook'])
      await must(['-n', ns, 'rollout', 'status', `deployment/${d}`, '--timeout=120s']);
    webIp = (await must(['-n', ns, 'get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    webPods = (
      await must(['-n', ns, 'get', 'pods', '-l', 'app=web', '-o', 'jsonpath={.items[*].metadata.name}'])
    )
      .trim()
      .split(' ');
    hookPod = (
      await must(['-n', ns, 'get', 'pods', '-l', 'app=hook', '-o', 'jsonpath={.items[0].metadata.name}'])
    ).trim();
  });

  afterAll(async () => {
    await kubectl(cluster, [
      'delete',
      'validatingwebhookconfiguration',
      'svc-dns-hook',
      '--ignore-not-found',
    ]);
    await kubectl(cluster, ['delete', 'namespace', ns, '--wait=false']);
    await node?.stop();
    for (const c of [outsideCapture, bridgeCapture]) c?.child.kill('SIGTERM');
    if (captureDir) rmSync(captureDir, { recursive: true, force: true });
  });

  it('gives pods the cluster DNS: Service names resolve, full and short, and nothing is forwarded upstream', async () => {
    const script = [
      'echo "== resolv"; cat /etc/resolv.conf',
      `echo "== full"; nslookup web.${ns}.svc.cluster.local`,
      'echo "== short"; nslookup web',
      'echo "== api"; nslookup kubernetes.default.svc.cluster.local',
      'echo "== missing"; nslookup no-such-service; echo "rc=$?"',
      'echo "== external"; nslookup example.com; echo "rc=$?"',
      'echo "== fetch"; for i in $(seq 16); do timeout 5 wget -q -O - http://web:8080/; done',
      `echo "== fetch-full"; timeout 5 wget -q -O - http://web.${ns}.svc.cluster.local:8080/`,
      'echo "== end"',
    ].join('\n');
    const logs = await runPod(
      'dns-client',
      {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        securityContext: restricted,
        containers: [
          {
            name: 'client',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            command: ['/bin/sh', '-c', script],
            securityContext: locked,
          },
        ],
      },
      ['client'],
    );
    const out = logs.client ?? '';
    const section = (name: string): string => out.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
    expect(section('resolv')).toContain(`nameserver ${DNS_SERVICE_IP}`);
    expect(section('resolv')).toContain(`search ${ns}.svc.cluster.local svc.cluster.local cluster.local`);
    expect(section('full')).toMatch(
      new RegExp(
        `Name:\\s+web\\.${ns}\\.svc\\.cluster\\.local\\s+Address:\\s+${webIp.replace(/\./g, '\\.')}`,
      ),
    );
    expect(section('short')).toMatch(new RegExp(`^Address: ${webIp.replace(/\./g, '\\.')}$`, 'm'));
    expect(section('api')).toMatch(/^Address: 10\.0\.0\.1$/m);
    expect(section('missing')).toContain('NXDOMAIN');
    // No `forward` in the Corefile: a name outside the cluster gets no answer at all.
    expect(section('external')).not.toMatch(/^Name:/m);
    expect(section('external')).toContain('rc=1');
    // Both replicas answered through the Service's one address (16 tries: a miss has odds of 1 in 32768).
    const served = new Set(section('fetch').trim().split('\n'));
    expect([...served].sort()).toEqual([...webPods].sort());
    expect(webPods).toContain(section('fetch-full').trim());
  });

  it('refuses a connection to a Service without endpoints at once, and gives pods no default route', async () => {
    const script = [
      'echo "== empty"; s=$(date +%s); timeout 5 wget -q -O - http://empty:80/ 2>&1; echo "rc=$? after $(( $(date +%s) - s ))s"',
      `echo "== route"; ip route get ${CANARY} 2>&1`,
      `echo "== canary"; timeout 5 wget -q -O - http://${CANARY}/ 2>&1; echo "rc=$?"`,
      'echo "== routes"; ip route',
      'echo "== end"',
    ].join('\n');
    const logs = await runPod(
      'no-route',
      {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        securityContext: restricted,
        containers: [
          {
            name: 'client',
            image: BUSYBOX_IMAGE,
            imagePullPolicy: 'Never',
            command: ['/bin/sh', '-c', script],
            securityContext: locked,
          },
        ],
      },
      ['client'],
    );
    const out = logs.client ?? '';
    const section = (name: string): string => out.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
    // kube-proxy rejects it: "refused", not a 5 s timeout (rc 143).
    expect(section('empty')).toMatch(/Connection refused\nrc=1 after [01]s/);
    expect(section('route')).toContain('Network is unreachable');
    expect(section('canary')).toMatch(/Network is unreachable\nrc=1/);
    expect(section('routes')).not.toMatch(/^default/m);
    expect(section('routes')).toContain(`${SERVICE_CIDR} via ${gateway}`);
  });

  it('lets a pod call the API server through the kubernetes Service, with TLS verified and its own token', async () => {
    const logs = await runPod(
      'api-client',
      {
        restartPolicy: 'Never',
        securityContext: { ...restricted, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID },
        containers: [
          {
            name: 'api',
            image: appImage,
            imagePullPolicy: 'Never',
            command: [IMAGE_NODE_PATH, '-e', API_CLIENT],
            securityContext: locked,
          },
        ],
      },
      ['api'],
    );
    const lines = (logs.api ?? '').trim().split('\n');
    const user = `system:serviceaccount:${ns}:default`;
    expect(lines).toEqual([
      `kubernetes.default.svc.cluster.local 201 authorized=true ${user}`,
      `10.0.0.1 201 authorized=true ${user}`,
      // Without the cluster's CA the same call fails verification: the TLS check is real.
      'kubernetes.default.svc.cluster.local error UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    ]);
    // The Service's endpoint is the API server on the bridge address.
    const endpoints = await must([
      '-n',
      'default',
      'get',
      'endpointslices',
      '-l',
      'kubernetes.io/service-name=kubernetes',
      '-o',
      'jsonpath={.items[0].endpoints[0].addresses[0]}',
    ]);
    expect(endpoints).toBe(gateway);
  });

  it('lets the host reach a ClusterIP, and the API server call a webhook registered by Service reference', async () => {
    const fromHost = await httpGet(`http://${webIp}:8080/`);
    expect(fromHost.status).toBe(200);
    expect(webPods).toContain(fromHost.body.trim());

    const webhook = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: 'svc-dns-hook' },
      webhooks: [
        {
          name: 'hook.svc-dns.strongroom.dev',
          clientConfig: {
            service: { name: 'hook', namespace: ns, path: '/validate', port: 443 },
            caBundle: Buffer.from(hookCa.certPem).toString('base64'),
          },
          rules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] },
          ],
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
          failurePolicy: 'Fail',
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          timeoutSeconds: 5,
        },
      ],
    };
    await must(['apply', '-f', '-'], JSON.stringify(webhook));
    // The configuration reaches the API server's informer asynchronously: wait until the webhook answers.
    let denied = { code: 0, stdout: '', stderr: '' };
    for (let i = 0; i < 40; i++) {
      denied = await kubectl(cluster, ['-n', ns, 'create', 'configmap', 'deny-me', '--from-literal=a=b']);
      if (denied.code !== 0) break;
      await kubectl(cluster, ['-n', ns, 'delete', 'configmap', 'deny-me']);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The denial's message comes from the pod: the API server reached it through the Service.
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain(
      `admission webhook "hook.svc-dns.strongroom.dev" denied the request: denied by the webhook in pod ${hookPod}`,
    );
    const allowed = await kubectl(cluster, [
      '-n',
      ns,
      'create',
      'configmap',
      'allowed',
      '--from-literal=a=b',
    ]);
    expect(allowed.code, allowed.stderr).toBe(0);
    const hookLogs = await must(['-n', ns, 'logs', hookPod]);
    // Called from the host (the API server), at the bridge address.
    expect(hookLogs).toContain(`webhook called from ${gateway}: CREATE ConfigMap ${ns}/deny-me`);
    expect(hookLogs).toContain(`webhook called from ${gateway}: CREATE ConfigMap ${ns}/allowed`);
  });

  it('sends nothing of the pod or Service range out of the host (tcpdump on the outside interface)', async () => {
    const packets = async (c: Capture): Promise<string[]> => {
      const exited = new Promise((resolve) => c.child.once('exit', resolve));
      c.child.kill('SIGINT');
      await exited;
      const read = await run('tcpdump', ['-n', '-r', c.file]);
      expect(read.code, read.stderr).toBe(0);
      return read.stdout.trim().split('\n').filter(Boolean);
    };
    if (!bridgeCapture || !outsideCapture) throw new Error('the captures did not start');
    const onBridge = await packets(bridgeCapture);
    const outside = await packets(outsideCapture);
    log(
      `${bridgeCapture.iface}: ${String(onBridge.length)} packets; ${outsideCapture.iface}: ${String(outside.length)}`,
    );
    // The control: the same filter on the bridge saw this file's pod and Service traffic...
    expect(onBridge.length).toBeGreaterThan(50);
    // (answers leave the host for the bridge translated back to the Service's address)
    expect(onBridge.some((p) => p.includes(`${DNS_SERVICE_IP}.53 > 10.244.0.`))).toBe(true);
    // ...and none of it, nor anything else of those ranges, left by the outside interface.
    expect(outside).toEqual([]);
  });
});
