/**
 * The Helm chart with Helm 3 and Helm 4: lint, what default and non-default values render, Pod Security
 * "restricted", the operator flags (parsed by the operator's own parser), the governance ConfigMap (parsed by the
 * operator's own table parser), and the values the schema refuses.
 */
import { describe, expect, it } from 'vitest';
import { find, helmBinaries, lint, render, template, type Helm, type Rendered } from '../../charts/helm.ts';
import { parseConfig, type OperatorConfig } from '../../operator/config.ts';
import { DEFAULT_GOVERNANCE_CONFIG, parseClassificationConfig } from '../../core/policy/classification.ts';

interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}

interface Volume {
  name: string;
  emptyDir?: object;
  secret?: { secretName: string };
  hostPath?: { path: string };
  persistentVolumeClaim?: object;
}

interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown>;
  affinity: { podAntiAffinity: Record<string, unknown> };
  containers: Container[];
  volumes: Volume[];
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
}

interface StatefulSet {
  metadata: { name: string; namespace: string };
  spec: {
    replicas: number;
    podManagementPolicy: string;
    serviceName: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    volumeClaimTemplates?: {
      metadata: { name: string };
      spec: {
        storageClassName?: string;
        accessModes: string[];
        resources: { requests: { storage: string } };
      };
    }[];
  };
}

interface Service {
  spec: {
    selector: Record<string, string>;
    clusterIP?: string;
    ports: { name: string; port: number; targetPort: string }[];
  };
}

const NAMESPACE = 'strongroom-system';

function statefulSet(objects: Rendered[]): StatefulSet {
  return find(objects, 'StatefulSet', 'strongroom') as unknown as StatefulSet;
}

function operator(objects: Rendered[]): Container {
  const container = statefulSet(objects).spec.template.spec.containers.find((c) => c.name === 'operator');
  if (container === undefined) throw new Error('no operator container');
  return container;
}

/** The operator's configuration from the container's args, parsed by the operator itself. */
function config(container: Container, podName = 'strongroom-0'): OperatorConfig {
  const script = container.args.indexOf('/app/operator/main.ts');
  expect(script).toBeGreaterThanOrEqual(0);
  for (const nodeArg of container.args.slice(0, script)) expect(nodeArg).toMatch(/^--/);
  const args = container.args.slice(script + 1).map((a) => a.replaceAll('$(POD_NAME)', podName));
  return parseConfig(args, {});
}

function port(container: Container, name: string): number {
  const found = container.ports.find((p) => p.name === name);
  if (found === undefined) throw new Error(`no port ${name}`);
  return found.containerPort;
}

const { helms, missing } = await helmBinaries();

it('has Helm 3 and Helm 4 to test with', () => {
  expect(missing).toBeUndefined();
  expect(helms.map((h) => h.name)).toEqual(['helm', 'helm4']);
});

const GCP = {
  replicas: 3,
  image: { repository: 'localhost/strongroom', tag: 'dev', pullPolicy: 'Never' },
  kms: {
    provider: 'gcp',
    gcp: {
      keyRing: 'projects/p1/locations/europe-west1/keyRings/strongroom',
      endpoint: 'kms.example:8443',
      credentialsSecret: 'gcp-key',
    },
  },
  networkPolicy: { enabled: false },
  auditLog: { persistence: { enabled: false } },
  podAntiAffinity: 'required',
  podDisruptionBudget: { enabled: false },
  logLevel: 'debug',
  extraArgs: ['--dek-cache-ttl=0s'],
};

const PKCS11 = {
  kms: {
    provider: 'pkcs11',
    pkcs11: {
      module: '/opt/pkcs11/libsofthsm2.so',
      tokenLabel: 'strongroom',
      slot: 1234567890,
      pinSecret: 'hsm-pin',
      moduleHostPath: '/usr/lib/softhsm',
    },
  },
  extraEnv: [{ name: 'SOFTHSM2_CONF', value: '/etc/softhsm/softhsm2.conf' }],
  extraVolumes: [{ name: 'softhsm-config', configMap: { name: 'softhsm' } }],
  extraVolumeMounts: [{ name: 'softhsm-config', mountPath: '/etc/softhsm', readOnly: true }],
  auditLog: { persistence: { storageClassName: 'strongroom-audit', size: '5Gi' } },
};

describe.each(helms.map((h) => [h.name, h] as const))('%s', (_, helm: Helm) => {
  it.each([
    ['default values', undefined],
    ['gcp, 3 replicas, emptyDir', GCP],
    ['pkcs11', PKCS11],
  ])('lints --strict with %s', (_, values) => {
    const result = lint(helm, values);
    expect(result.stderr + result.stdout).not.toMatch(/\[(ERROR|WARNING)\]/);
    expect(result.status, result.stderr + result.stdout).toBe(0);
  });

  describe('default values', () => {
    const objects = render(helm, { namespace: NAMESPACE });
    const sts = statefulSet(objects);
    const pod = sts.spec.template.spec;
    const container = operator(objects);
    const cfg = config(container);

    it('renders exactly the expected objects', () => {
      expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
        [
          'ClusterRole/strongroom-operator',
          'ClusterRoleBinding/strongroom-operator',
          'ConfigMap/strongroom-governance',
          'MutatingWebhookConfiguration/strongroom-sidecar-injector',
          'NetworkPolicy/strongroom',
          'PodDisruptionBudget/strongroom',
          'Role/strongroom-operator',
          'RoleBinding/strongroom-operator',
          'Service/strongroom-broker',
          'Service/strongroom-headless',
          'Service/strongroom-metrics',
          'Service/strongroom-webhook',
          'ServiceAccount/strongroom',
          'StatefulSet/strongroom',
          ...[
            'strongroom-audit-checkpoints',
            'strongroom-environment-label',
            'strongroom-grant-identity',
            'strongroom-grant-quarantine',
            'strongroom-identity-quarantine',
            'strongroom-injection-opt-in',
            'strongroom-version-publishing',
          ].flatMap((n) => [`ValidatingAdmissionPolicy/${n}`, `ValidatingAdmissionPolicyBinding/${n}`]),
        ].sort(),
      );
      for (const o of objects) {
        const clusterScoped = /^(Cluster|MutatingWebhook|ValidatingAdmission)/.test(o.kind);
        expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe(
          clusterScoped ? undefined : NAMESPACE,
        );
      }
    });

    it('runs the operator as a StatefulSet of 2 started in parallel', () => {
      expect(sts.spec.replicas).toBe(2);
      expect(sts.spec.podManagementPolicy).toBe('Parallel');
      expect(find(objects, 'Service', sts.spec.serviceName).spec).toMatchObject({ clusterIP: 'None' });
      expect(sts.spec.template.metadata.labels).toMatchObject(sts.spec.selector.matchLabels);
      expect(container.image).toBe('ghcr.io/strongroom/strongroom:0.1.0');
      expect(container.imagePullPolicy).toBe('IfNotPresent');
    });

    it('gives each replica its own identity, namespace and audit log on its own claim', () => {
      expect(container.env).toContainEqual({
        name: 'POD_NAME',
        valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
      });
      expect(container.args).toContain('--identity=$(POD_NAME)');
      expect(cfg.identity).toBe('strongroom-0');
      expect(cfg.namespace).toBe(NAMESPACE);
      const mount = container.volumeMounts.find((m) => m.name === 'audit-log');
      expect(mount?.mountPath).toBe(cfg.auditLogDir);
      expect(pod.volumes.some((v) => v.name === 'audit-log')).toBe(false);
      expect(sts.spec.volumeClaimTemplates).toEqual([
        expect.objectContaining({
          metadata: expect.objectContaining({ name: 'audit-log' }) as unknown,
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        }),
      ]);
    });

    it('configures the operator from the values', () => {
      expect(cfg).toMatchObject({
        logLevel: 'info',
        workers: 4,
        kms: { provider: 'local' },
        leaderElection: {
          enabled: true,
          leaseName: 'strongroom-operator',
          leaseDurationMs: 15_000,
          renewDeadlineMs: 10_000,
          retryPeriodMs: 2_000,
        },
        shutdownTimeoutMs: 25_000,
        healthAddress: { host: '0.0.0.0', port: port(container, 'health') },
        broker: {
          address: { host: '0.0.0.0', port: port(container, 'broker') },
          attestAddress: { host: '0.0.0.0', port: port(container, 'attest') },
          trustDomain: 'cluster.local',
          clusterName: 'kubernetes',
        },
        injection: {
          address: { host: '0.0.0.0', port: port(container, 'webhook') },
          image: container.image,
          imagePullPolicy: 'IfNotPresent',
          brokerAddress: `strongroom-broker.${NAMESPACE}.svc:9444`,
          attestAddress: `strongroom-broker.${NAMESPACE}.svc:9443`,
        },
      });
      expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(cfg.shutdownTimeoutMs);
    });

    it('probes /healthz and /readyz on the health port', () => {
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'health' });
      expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'health' });
    });

    it('meets Pod Security "restricted"', () => {
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        privileged: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.hostNetwork ?? false).toBe(false);
      expect(pod.hostPID ?? false).toBe(false);
      expect(pod.hostIPC ?? false).toBe(false);
      for (const v of pod.volumes) expect(v.hostPath, v.name).toBeUndefined();
      expect(container.volumeMounts.find((m) => m.mountPath === '/tmp')).toBeDefined();
    });

    it('has resource requests and limits, a ServiceAccount and its token', () => {
      for (const part of ['requests', 'limits'] as const)
        for (const resource of ['cpu', 'memory'])
          expect(container.resources[part]?.[resource], `${part}.${resource}`).toMatch(/^[0-9]/);
      expect(pod.serviceAccountName).toBe('strongroom');
      expect(pod.automountServiceAccountToken).toBe(true);
      expect(find(objects, 'ServiceAccount', 'strongroom').automountServiceAccountToken).toBe(false);
    });

    it('spreads the replicas over nodes, preferably', () => {
      expect(Object.keys(pod.affinity.podAntiAffinity)).toEqual([
        'preferredDuringSchedulingIgnoredDuringExecution',
      ]);
      expect(find(objects, 'PodDisruptionBudget', 'strongroom').spec).toEqual({
        maxUnavailable: 1,
        selector: { matchLabels: sts.spec.selector.matchLabels },
      });
    });

    it('exposes the webhook, the broker on every ready replica, and the metrics', () => {
      const service = (name: string): Service => find(objects, 'Service', name) as unknown as Service;
      for (const name of [
        'strongroom-webhook',
        'strongroom-broker',
        'strongroom-metrics',
        'strongroom-headless',
      ])
        expect(service(name).spec.selector).toEqual(sts.spec.selector.matchLabels);
      const ports = (name: string): object[] =>
        service(name).spec.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort }));
      expect(ports('strongroom-webhook')).toEqual([{ name: 'https', port: 443, targetPort: 'webhook' }]);
      expect(ports('strongroom-broker')).toEqual([
        { name: 'attest', port: 9443, targetPort: 'attest' },
        { name: 'broker', port: 9444, targetPort: 'broker' },
      ]);
      expect(ports('strongroom-metrics')).toEqual([{ name: 'metrics', port: 8080, targetPort: 'health' }]);
      // Only ready replicas receive traffic.
      for (const name of ['strongroom-webhook', 'strongroom-broker'])
        expect(service(name).spec).not.toHaveProperty('publishNotReadyAddresses');
    });

    it('holds the built-in classification table in the governance ConfigMap', () => {
      const data = find(objects, 'ConfigMap', 'strongroom-governance').data as Record<string, string>;
      expect(data).toEqual(DEFAULT_GOVERNANCE_CONFIG);
      expect(() => parseClassificationConfig(data)).not.toThrow();
    });

    it('allows only what Strongroom needs through the NetworkPolicy', () => {
      const policy = find(objects, 'NetworkPolicy', 'strongroom').spec as {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { ports: { port: string }[]; from?: object[] }[];
        egress: { to?: object[]; ports?: { port: number; protocol: string }[] }[];
      };
      expect(policy.podSelector.matchLabels).toEqual(sts.spec.selector.matchLabels);
      expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
      const ingress = policy.ingress.map((r) => ({ ports: r.ports.map((p) => p.port), from: r.from }));
      expect(ingress).toEqual([
        { ports: ['webhook'], from: undefined },
        { ports: ['attest', 'broker'], from: [{ namespaceSelector: {} }] },
        {
          ports: ['health'],
          from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
        },
      ]);
      expect(policy.egress.map((r) => r.ports?.map((p) => `${String(p.port)}/${p.protocol}`))).toEqual([
        ['443/TCP', '6443/TCP'],
        ['53/UDP', '53/TCP'],
      ]);
    });
  });

  describe('gcp, 3 replicas, emptyDir audit log, required anti-affinity, no NetworkPolicy or PDB', () => {
    const objects = render(helm, { namespace: 'sr-gcp', values: GCP });
    const sts = statefulSet(objects);
    const pod = sts.spec.template.spec;
    const container = operator(objects);
    const cfg = config(container, 'strongroom-2');

    it('renders what the values say', () => {
      expect(sts.spec.replicas).toBe(3);
      expect(container.image).toBe('localhost/strongroom:dev');
      expect(container.imagePullPolicy).toBe('Never');
      expect(cfg).toMatchObject({
        identity: 'strongroom-2',
        namespace: 'sr-gcp',
        logLevel: 'debug',
        kms: {
          provider: 'gcp',
          keyRing: 'projects/p1/locations/europe-west1/keyRings/strongroom',
          endpoint: 'kms.example:8443',
        },
        broker: { dekCacheTtlMs: 0 },
        injection: {
          image: 'localhost/strongroom:dev',
          imagePullPolicy: 'Never',
          brokerAddress: 'strongroom-broker.sr-gcp.svc:9444',
        },
      });
      expect(objects.some((o) => o.kind === 'NetworkPolicy')).toBe(false);
      expect(objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(false);
      expect(Object.keys(pod.affinity.podAntiAffinity)).toEqual([
        'requiredDuringSchedulingIgnoredDuringExecution',
      ]);
    });

    it('mounts the credentials and names them in GOOGLE_APPLICATION_CREDENTIALS', () => {
      const mount = container.volumeMounts.find((m) => m.name === 'gcp-credentials');
      expect(mount?.readOnly).toBe(true);
      expect(pod.volumes.find((v) => v.name === 'gcp-credentials')?.secret?.secretName).toBe('gcp-key');
      expect(container.env).toContainEqual({
        name: 'GOOGLE_APPLICATION_CREDENTIALS',
        value: `${mount?.mountPath ?? ''}/credentials.json`,
      });
    });

    it('keeps the audit log in an emptyDir, without claims', () => {
      expect(sts.spec.volumeClaimTemplates).toBeUndefined();
      expect(pod.volumes.find((v) => v.name === 'audit-log')?.emptyDir).toEqual({ sizeLimit: '1Gi' });
    });
  });

  describe('pkcs11, a storage class for the audit claims', () => {
    const objects = render(helm, { namespace: 'sr-hsm', values: PKCS11 });
    const sts = statefulSet(objects);
    const pod = sts.spec.template.spec;
    const container = operator(objects);
    const cfg = config(container);

    it('passes the module, token, slot and the PIN file', () => {
      const pin = container.volumeMounts.find((m) => m.name === 'pkcs11-pin');
      expect(pin?.readOnly).toBe(true);
      expect(pod.volumes.find((v) => v.name === 'pkcs11-pin')?.secret?.secretName).toBe('hsm-pin');
      expect(cfg.kms).toEqual({
        provider: 'pkcs11',
        module: '/opt/pkcs11/libsofthsm2.so',
        tokenLabel: 'strongroom',
        slot: 1234567890,
        pinFile: `${pin?.mountPath ?? ''}/pin`,
      });
      expect(pod.volumes.find((v) => v.name === 'pkcs11-module')?.hostPath?.path).toBe('/usr/lib/softhsm');
      expect(container.volumeMounts).toContainEqual({
        name: 'pkcs11-module',
        mountPath: '/opt/pkcs11',
        readOnly: true,
      });
    });

    it('adds the extra env, volumes and mounts', () => {
      expect(container.env).toContainEqual({ name: 'SOFTHSM2_CONF', value: '/etc/softhsm/softhsm2.conf' });
      expect(pod.volumes.map((v) => v.name)).toContain('softhsm-config');
      expect(container.volumeMounts.map((m) => m.name)).toContain('softhsm-config');
    });

    it('asks for claims of the storage class and size', () => {
      expect(sts.spec.volumeClaimTemplates?.[0]?.spec).toMatchObject({
        storageClassName: 'strongroom-audit',
        resources: { requests: { storage: '5Gi' } },
      });
    });
  });

  it('renders the governance groups from the values', () => {
    const objects = render(helm, {
      values: {
        governance: {
          securityGroups: ['sec-a', 'sec-b'],
          classifications: {
            restricted: { approverGroups: ['ciso'], approvals: 3, crossEnvironmentApprovals: 3 },
          },
        },
      },
    });
    const data = find(objects, 'ConfigMap', 'strongroom-governance').data as Record<string, string>;
    expect(data).toMatchObject({
      securityGroups: 'sec-a,sec-b',
      'restricted.approverGroups': 'ciso',
      'restricted.approvals': '3',
    });
    expect(parseClassificationConfig(data).securityGroups).toEqual(['sec-a', 'sec-b']);
  });

  it('renders an empty storageClassName for statically provisioned volumes', () => {
    const objects = render(helm, { values: { auditLog: { persistence: { storageClassName: '' } } } });
    expect(statefulSet(objects).spec.volumeClaimTemplates?.[0]?.spec.storageClassName).toBe('');
  });

  it.each([
    ['replicas 0', { replicas: 0 }, /replicas/],
    ['an unknown key', { replica: 2 }, /additional propert(y|ies).*replica|replica.*not allowed/i],
    ['an unknown nested key', { kms: { provider: 'local', vault: {} } }, /vault/],
    ['kms provider "foo"', { kms: { provider: 'foo' } }, /provider/],
    ['gcp without a key ring', { kms: { provider: 'gcp' } }, /keyRing/],
    ['a malformed key ring', { kms: { provider: 'gcp', gcp: { keyRing: 'my-ring' } } }, /keyRing/],
    [
      'pkcs11 without a PIN Secret',
      { kms: { provider: 'pkcs11', pkcs11: { module: '/m.so', tokenLabel: 't' } } },
      /pinSecret/,
    ],
    ['a log level "verbose"', { logLevel: 'verbose' }, /logLevel/],
    ['a lease duration "15"', { leaderElection: { leaseDuration: '15' } }, /leaseDuration/],
    ['podAntiAffinity "always"', { podAntiAffinity: 'always' }, /podAntiAffinity/],
    [
      'a grace period not above the shutdown timeout',
      { terminationGracePeriodSeconds: 25 },
      /terminationGracePeriodSeconds/,
    ],
    ['a group with a comma', { governance: { securityGroups: ['a,b'] } }, /securityGroups/],
    ['an extra arg that is not a flag', { extraArgs: ['verbose'] }, /extraArgs/],
  ])('refuses %s with a message naming it', (_, values, message) => {
    const result = template(helm, { values });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });
});
