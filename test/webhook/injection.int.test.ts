/**
 * The sidecar-injecting webhook through the real API server: the operator runs as a process with its
 * least-privilege RBAC and serves the webhook on loopback; the MutatingWebhookConfiguration (built by
 * operator/webhook/configuration.ts, a `url` client config, caBundle filled in by the operator itself) sends it pod
 * CREATEs. Pods are created with kubectl/client-node in a namespace that enforces Pod Security "restricted", so the
 * API server's own PodSecurity admission (which runs after mutation) checks every injected container.
 */
import { AdmissionregistrationV1Api, ApiException, type V1Pod } from '@kubernetes/client-node';
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_CIPHERTEXT_CLAIM,
  ANNOTATION_PUBLISH,
  ANNOTATION_INJECTED,
  ANNOTATION_RESOLVED,
  ENV,
  LABEL_INJECT,
  SIDECAR_CONTAINER,
  VOLUME_TOKEN,
  type SidecarPlan,
} from '../../core/injection/contract.ts';
import { OPT_IN_POLICY_NAME, WEBHOOK_NAME } from '../../operator/webhook/configuration.ts';
import { MUTATE_PODS_PATH } from '../../operator/webhook/server.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { kubectl, must } from '../harness/kubectl.ts';
import { clients, eventually } from '../harness/operator.ts';
import {
  appendVersion,
  artifactBody,
  createArtifact,
  createGrant,
  getArtifact,
  grantBody,
  sealedVersion,
} from '../harness/objects.ts';
import {
  installInjector,
  keyedArtifact,
  operatorSuite,
  removeInjector,
  sealedArtifact,
} from '../harness/suite.ts';

const NS = 'strongroom-webhook-test';
const APPS = 'wh-apps';
/** Another team's namespace: alice, who creates pods in APPS, can read nothing here. */
const SHARED = 'wh-shared';
const cluster = inject('cluster');
const suite = operatorSuite(cluster, {
  operatorNamespace: NS,
  namespaces: {
    apps: {
      name: APPS,
      labels: { 'pod-security.kubernetes.io/enforce': 'restricted' },
      environment: 'dev',
    },
  },
  fixedNames: true,
  operator: {
    identity: 'webhook-test',
    args: ['--sidecar-image=localhost/strongroom:test', '--sidecar-broker-address=10.88.0.1:9444'],
    waitFor: 'webhook',
  },
});
const { core, custom, kc } = clients(cluster.kubeconfig);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);

function pod(
  name: string,
  annotations: Record<string, string>,
  labels: Record<string, string> = { [LABEL_INJECT]: 'true' },
): V1Pod {
  return {
    metadata: { name, labels, annotations },
    spec: {
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'train',
          image: 'localhost/busybox:test',
          command: ['sh', '-c', 'sleep 3600'],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        },
      ],
    },
  };
}

async function create(namespace: string, body: V1Pod): Promise<V1Pod> {
  return core.createNamespacedPod({ namespace, body });
}

async function refusal(namespace: string, body: V1Pod): Promise<string> {
  try {
    await create(namespace, body);
  } catch (error) {
    if (error instanceof ApiException)
      return String((JSON.parse(String(error.body)) as { message?: string }).message);
    throw error;
  }
  throw new Error(`pod ${body.metadata?.name ?? ''} was admitted`);
}

beforeAll(async () => {
  await installInjector(admission, NS, suite.operator.ports.webhook);
  await sealedArtifact(custom, APPS, 'resnet50', {
    versions: ['v1', 'v2'],
    version: { size: 300 * 1024 * 1024 },
  });
  // The webhook reads artifacts from its cache: wait until it has the versions.
  await eventually('the webhook to see both versions', async () => {
    const created = await create(
      APPS,
      pod('warmup', { [ANNOTATION_ARTIFACTS]: 'resnet50@v2:/models/resnet50' }),
    ).catch(() => undefined);
    if (created) await core.deleteNamespacedPod({ namespace: APPS, name: 'warmup', gracePeriodSeconds: 0 });
    return created;
  });
}, 180_000);

afterAll(async () => {
  await removeInjector(admission);
  await kubectl(cluster, ['delete', 'namespace', SHARED, '--wait=false']);
});

describe('the sidecar-injecting webhook on the real API server', () => {
  it('injects an opted-in pod, which then passes Pod Security "restricted"', async () => {
    const created = await create(
      APPS,
      pod('trainer', { [ANNOTATION_ARTIFACTS]: 'resnet50@latest:/models/resnet50' }),
    );
    const sidecar = created.spec?.initContainers?.[0];
    expect(sidecar?.name).toBe(SIDECAR_CONTAINER);
    expect(sidecar?.restartPolicy).toBe('Always');
    expect(sidecar?.image).toBe('localhost/strongroom:test');
    expect(sidecar?.startupProbe?.httpGet).toBeDefined();
    expect(created.metadata?.annotations?.[ANNOTATION_INJECTED]).toBe('v1');
    expect(created.metadata?.annotations?.[ANNOTATION_RESOLVED]).toContain(`${APPS}/resnet50@v2`);
    const app = created.spec?.containers[0];
    const mount = app?.volumeMounts?.find((m) => m.mountPath === '/models/resnet50');
    expect(mount?.readOnly).toBe(true);
    expect(app?.volumeMounts?.some((m) => m.name === VOLUME_TOKEN)).toBe(false);
    const plain = created.spec?.volumes?.find((v) => v.name === mount?.name);
    expect(plain?.emptyDir?.medium).toBe('Memory');
    // 300 MiB × 1.1 + 16 MiB, rounded up to a whole MiB.
    expect(plain?.emptyDir?.sizeLimit).toBe('346Mi');
    const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value]));
    expect(env['STRONGROOM_BROKER_ADDRESS']).toBe('10.88.0.1:9444');
    expect(env['STRONGROOM_CA_BUNDLE']).toContain('BEGIN CERTIFICATE');
  });

  it('changes nothing on a second admission of an injected pod', async () => {
    const first = await create(APPS, pod('twice', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }));
    const again: V1Pod = {
      metadata: {
        name: 'twice-again',
        labels: first.metadata?.labels ?? {},
        annotations: first.metadata?.annotations ?? {},
      },
      spec: Object.assign({}, first.spec),
    };
    const second = await create(APPS, again);
    expect(second.spec?.initContainers).toEqual(first.spec?.initContainers);
    expect(second.spec?.containers).toEqual(first.spec?.containers);
    expect(second.spec?.volumes?.length).toBe(first.spec?.volumes?.length);
  });

  it.each([
    ['no @version', 'resnet50:/models/r', 'resnet50'],
    ['a relative path', 'resnet50@v1:models/r', 'models/r'],
    ['a missing artifact', 'nope@v1:/models/r', 'nope'],
    ['a missing version', 'resnet50@v9:/models/r', 'v9'],
  ])('refuses %s with a message that says what is wrong', async (_what, value, mentioned) => {
    const message = await refusal(
      APPS,
      pod(`bad-${String(Math.random()).slice(2, 8)}`, { [ANNOTATION_ARTIFACTS]: value }),
    );
    expect(message).toContain(WEBHOOK_NAME);
    expect(message).toContain('strongroom: ');
    expect(message).toContain(mentioned);
  });

  it('refuses a pod that opted in by label but names no artifact', async () => {
    const message = await refusal(APPS, pod('label-only', {}));
    expect(message).toContain(ANNOTATION_ARTIFACTS);
  });

  it('leaves pods alone that did not opt in, and the operator namespace', async () => {
    const plain = await create(APPS, pod('plain', { team: 'ml' }, {}));
    expect(plain.spec?.initContainers ?? []).toEqual([]);
    const own = await create(NS, pod('own', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }));
    expect(own.spec?.initContainers ?? []).toEqual([]);
  });

  it('refuses, by the opt-in policy, an annotated pod without the label (it would start without its files)', async () => {
    // The webhook never sees it (objectSelector); the ValidatingAdmissionPolicy in the API server refuses it,
    // once the API server has loaded the policy (asynchronously, from its own informer).
    await eventually('the opt-in policy to be in force', async () => {
      const probe = pod('policy-probe', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }, {});
      const admitted = await create(APPS, probe).then(
        () => true,
        () => false,
      );
      if (admitted)
        await core.deleteNamespacedPod({ namespace: APPS, name: 'policy-probe', gracePeriodSeconds: 0 });
      return admitted ? undefined : true;
    });
    for (const [name, annotations, labels] of [
      ['annotated-only', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }, {}],
      ['publish-only', { [ANNOTATION_PUBLISH]: 'resnet50:/out' }, { team: 'ml' }],
      ['label-false', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }, { [LABEL_INJECT]: 'false' }],
    ] as const) {
      const message = await refusal(APPS, pod(name, annotations, labels));
      expect(message).toContain(`ValidatingAdmissionPolicy '${OPT_IN_POLICY_NAME}'`);
      expect(message).toContain(`but not the label ${LABEL_INJECT}: "true"`);
    }
  });

  it('refuses a pod whose own container mounts a projected token of audience strongroom, or that shares its process namespace', async () => {
    const own = pod('own-token', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' });
    const train = own.spec?.containers[0];
    if (own.spec === undefined || train === undefined) throw new Error('no container');
    train.volumeMounts = [{ name: 'mine', mountPath: '/var/run/mine', readOnly: true }];
    own.spec.volumes = [
      {
        name: 'mine',
        projected: {
          sources: [{ serviceAccountToken: { audience: 'strongroom', expirationSeconds: 600, path: 't' } }],
        },
      },
    ];
    expect(await refusal(APPS, own)).toContain(
      'strongroom: container train mounts volume mine, a projected service account token for audience strongroom; only the injected Strongroom sidecar may hold one',
    );
    const shared = pod('shared-pid', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' });
    if (shared.spec !== undefined) shared.spec.shareProcessNamespace = true;
    expect(await refusal(APPS, shared)).toContain('strongroom: the pod sets shareProcessNamespace: true');
  });

  it("answers a pod author alike whether or not another namespace's artifact exists, until a grant there names the pod's service account", async () => {
    for (const args of [
      ['create', 'namespace', SHARED],
      ['-n', APPS, 'create', 'role', 'pod-author', '--verb=create,get,list,delete', '--resource=pods'],
      ['-n', APPS, 'create', 'rolebinding', 'alice-pods', '--role=pod-author', '--user=alice'],
    ])
      await must(cluster, args);
    const ready = await keyedArtifact(custom, SHARED, 'bert');
    await appendVersion(custom, ready, (await sealedVersion(ready, 'v1')).version);
    // alice creates pods with her own credentials and cannot read the other namespace.
    const alice = clients(userKubeconfig(cluster, 'alice', ['ml-researchers']));
    const readShared = await alice.custom
      .listNamespacedCustomObject({
        group: 'strongroom.dev',
        version: 'v1alpha1',
        namespace: SHARED,
        plural: 'modelartifacts',
      })
      .then(
        () => 'allowed',
        (error: unknown) => String((error as { code?: number }).code),
      );
    expect(readShared).toBe('403');
    const asAlice = async (name: string, entry: string): Promise<string> => {
      const body = pod(name, { [ANNOTATION_ARTIFACTS]: entry, [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' });
      try {
        await alice.core.createNamespacedPod({ namespace: APPS, body });
      } catch (error) {
        if (error instanceof ApiException)
          return String((JSON.parse(String(error.body)) as { message?: string }).message);
        throw error;
      }
      return 'admitted';
    };
    const uniform = (name: string): string =>
      `ModelArtifact ${SHARED}/${name} is not available to service account ${APPS}/default: it does not exist or no AccessGrant names this service account`;
    // The webhook's cache has bert by now (it had v1 for the artifact's sealing to start), so an existing artifact,
    // a missing one, a missing version and latest all get the same answer.
    const existing = await asAlice('peek-bert', `${SHARED}/bert@latest:/models/b`);
    expect(existing).toContain(uniform('bert'));
    expect(await asAlice('peek-bert-v9', `${SHARED}/bert@v9:/models/b`)).toContain(uniform('bert'));
    const missing = await asAlice('peek-nope', `${SHARED}/nope@latest:/models/b`);
    expect(missing).toContain(uniform('nope'));
    expect(missing.replaceAll('nope', 'bert')).toBe(existing);
    expect(existing).not.toMatch(/@v1|available:|claim in namespace/);
    // A grant in the shared namespace naming another service account changes nothing; one naming APPS/default does.
    await createGrant(
      custom,
      SHARED,
      grantBody('bert-for-trainers', 'bert', { subjects: [{ namespace: APPS, serviceAccount: 'trainer' }] }),
    );
    expect(await asAlice('peek-bert-2', `${SHARED}/bert@v1:/models/b`)).toContain(uniform('bert'));
    await createGrant(
      custom,
      SHARED,
      grantBody('bert-for-default', 'bert', { subjects: [{ namespace: APPS, serviceAccount: 'default' }] }),
    );
    const told = await eventually('the webhook to see the grant', async () => {
      const answer = await asAlice(
        `granted-${String(Math.random()).slice(2, 8)}`,
        `${SHARED}/bert@v9:/models/b`,
      );
      return answer.includes('not available to service account') ? undefined : answer;
    });
    expect(told).toContain(`ModelArtifact ${SHARED}/bert has no version v9 (available: v1)`);
    expect(await asAlice('granted-bert', `${SHARED}/bert@v1:/models/b`)).toBe('admitted');
  });

  it('injects an artifact stored in S3: no ciphertext volume, its access key in the sidecar only, and the pod admits again unchanged', async () => {
    const body = artifactBody('llama');
    body.spec.storage = {
      s3: {
        bucket: 'ml-models',
        endpoint: 'http://10.88.0.1:9000',
        credentialsSecretRef: { name: 'minio-reader' },
      },
      path: 'llm/llama',
    };
    await createArtifact(custom, APPS, body);
    const keyed = await eventually('llama recipient key', async () => {
      const a = await getArtifact(custom, APPS, 'llama');
      return a.status?.recipientPublicKey ? a : undefined;
    });
    await appendVersion(custom, keyed, (await sealedVersion(keyed, 'v1')).version);
    const annotations = { [ANNOTATION_ARTIFACTS]: 'llama@latest:/models/llama,resnet50@v1:/models/r' };
    const created = await eventually('the webhook to see llama v1', async () =>
      create(APPS, pod('s3-reader', annotations)).catch(() => undefined),
    );
    const sidecar = created.spec?.initContainers?.[0];
    expect(sidecar?.name).toBe(SIDECAR_CONTAINER);
    // Only resnet50's claim is mounted; llama is fetched from the bucket.
    expect(
      created.spec?.volumes
        ?.filter((v) => v.persistentVolumeClaim)
        .map((v) => v.persistentVolumeClaim?.claimName),
    ).toEqual(['models']);
    expect(sidecar?.env?.filter((e) => e.valueFrom !== undefined)).toEqual([
      {
        name: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
        valueFrom: { secretKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID' } },
      },
      {
        name: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
        valueFrom: { secretKeyRef: { name: 'minio-reader', key: 'AWS_SECRET_ACCESS_KEY' } },
      },
    ]);
    expect(created.spec?.containers[0]?.env).toBeUndefined();
    const plan = JSON.parse(sidecar?.env?.find((e) => e.name === ENV.plan)?.value ?? '') as SidecarPlan;
    expect(plan.artifacts[0]).toMatchObject({
      name: 'llama',
      version: 'v1',
      ciphertextPath: '',
      s3: {
        endpoint: 'http://10.88.0.1:9000',
        region: 'us-east-1',
        bucket: 'ml-models',
        keyPrefix: 'llm/llama/v1/',
        forcePathStyle: true,
        credentialsEnv: {
          accessKeyId: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
          secretAccessKey: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
        },
      },
    });
    // Admitted again as it is (verifyInjectedPod accepts the secretKeyRef variables), nothing changes.
    const again = await create(APPS, {
      metadata: {
        name: 's3-reader-again',
        labels: created.metadata?.labels ?? {},
        annotations: created.metadata?.annotations ?? {},
      },
      spec: Object.assign({}, created.spec),
    });
    expect(again.spec?.initContainers).toEqual(created.spec?.initContainers);
    // Publishing to it from a pod, and a ciphertext claim, are refused.
    expect(await refusal(APPS, pod('s3-publish', { [ANNOTATION_PUBLISH]: 'llama@v2:/out' }))).toContain(
      `ModelArtifact ${APPS}/llama stores its ciphertext in S3; publishing from a pod`,
    );
    expect(
      await refusal(
        APPS,
        pod('s3-claim', { [ANNOTATION_ARTIFACTS]: 'llama@v1:/m', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' }),
      ),
    ).toContain(
      `stores its ciphertext in S3, not on a PersistentVolumeClaim, so ${ANNOTATION_CIPHERTEXT_CLAIM}`,
    );
  });

  it("is timed by the API server's own admission metric", async () => {
    const r = await kubectl(cluster, ['get', '--raw', '/metrics']);
    // One series per (operation, rejected, type): admitted and rejected calls together.
    const calls = r.stdout
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('apiserver_admission_webhook_admission_duration_seconds_count') &&
          l.includes(`name="${WEBHOOK_NAME}"`),
      )
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    // warm-up, trainer, twice ×2, four refusals, label-only: at least 9 calls reached the webhook.
    expect(calls).toBeGreaterThanOrEqual(9);
    const own = await suite.operator.get('/metrics');
    expect(own.body).toMatch(
      /strongroom_webhook_admission_duration_seconds_count\{outcome="injected"\} [1-9]/,
    );
  });

  it('answers what is not an AdmissionReview with a clear HTTP error, which the API server treats as a failure', async () => {
    const secret = await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: NS });
    const ca = Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64');
    const post = (
      path: string,
      body: string | Buffer,
      method = 'POST',
    ): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: suite.operator.ports.webhook,
            path,
            method,
            ca,
            servername: '127.0.0.1',
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString('utf8')));
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, body: text });
            });
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    expect(await post('/other', '{}')).toMatchObject({ status: 404 });
    expect(await post(MUTATE_PODS_PATH, '', 'GET')).toMatchObject({ status: 404 });
    const notJson = await post(MUTATE_PODS_PATH, 'not json');
    expect(notJson.status).toBe(400);
    expect(notJson.body).toContain('not JSON');
    const notReview = await post(MUTATE_PODS_PATH, JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }));
    expect(notReview.status).toBe(400);
    expect(notReview.body).toContain('AdmissionReview');
    const huge = await post(MUTATE_PODS_PATH, Buffer.alloc(4 * 1024 * 1024, 0x20)).catch(
      // The server may close the connection while the client still writes the body.
      (error: unknown) => ({ status: -1, body: String(error) }),
    );
    expect([413, -1]).toContain(huge.status);
    if (huge.status === 413) expect(huge.body).toContain('over');
    const own = await suite.operator.get('/metrics');
    expect(own.body).toMatch(
      /strongroom_webhook_admission_duration_seconds_count\{outcome="bad-request"\} [3-9]/,
    );
  });

  it('fails closed: with the webhook down an opted-in pod is refused, others are not', async () => {
    await suite.operator.stop();
    const message = await refusal(
      APPS,
      pod('while-down', { [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models/r' }),
    );
    expect(message).toMatch(/failed calling webhook/);
    const plain = await create(APPS, pod('plain-while-down', {}, {}));
    expect(plain.metadata?.name).toBe('plain-while-down');
  });
});
