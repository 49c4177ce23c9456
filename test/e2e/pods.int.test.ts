/**
 * Issue 8 end to end on real pods: the harness's real node (kubelet, containerd, runc, CNI), the Strongroom image
 * built without a daemon, the operator as a host process (webhook on loopback, broker on the pod bridge), pods
 * created through the real API server in namespaces that enforce Pod Security "restricted", and ciphertext on a
 * `local` PersistentVolume. Nothing is mocked: the sidecar attests with its projected token, releases keys over
 * mutual TLS, decrypts into the memory volume, and the app container reads the files.
 */
import { createHash } from 'node:crypto';
import { chownSync, cpSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ANNOTATION_CIPHERTEXT_CLAIM, PUBLISH_COMPLETE_MARKER } from '../../core/injection/contract.ts';
import { attachNode, type Node } from '../cluster/cluster.ts';
import { kubectl, type ClusterInfo, must } from '../harness/kubectl.ts';
import { eventually } from '../harness/operator.ts';
import { createGrant, getArtifact, getGrant, grantBody } from '../harness/objects.ts';
import {
  appNamespace,
  execInApp,
  injectedPod,
  MODELS_CLAIM,
  publishSample,
  startStack,
  type Stack,
} from '../harness/stack.ts';

const DEV = 'e2e-dev';
const OTHER = 'e2e-other';
const PROD = 'e2e-prod';
const FILES = {
  'config.json': JSON.stringify({ arch: 'resnet50', classes: 1000 }),
  'weights/layer1.bin': Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256)),
  'weights/layer2.bin': Buffer.from(Array.from({ length: 123_457 }, (_, i) => (i * 13 + 5) % 256)),
  'README with space.txt': 'a sample model\n',
};
const expectedSums = Object.entries(FILES)
  .map(([path, content]) => `${createHash('sha256').update(content).digest('hex')}  ./${path}`)
  .sort();

/** Lists every file with its SHA-256 (sorted by path), then waits. */
const SHOW_AND_WAIT =
  'cd /models/resnet50 && find . -type f | sort | while read -r f; do sha256sum "$f"; done; echo END-OF-LIST; sleep 3600';

let cluster: ClusterInfo;
let node: Node;
let stack: Stack;

async function createPod(namespace: string, pod: V1Pod): Promise<V1Pod> {
  return stack.core.createNamespacedPod({ namespace, body: pod });
}

async function podNamed(namespace: string, name: string): Promise<V1Pod> {
  return stack.core.readNamespacedPod({ namespace, name });
}

function ready(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

async function waitReady(namespace: string, name: string, timeoutMs = 90_000): Promise<V1Pod> {
  return eventually(
    `${namespace}/${name} Ready`,
    async () => {
      const p = await podNamed(namespace, name);
      return ready(p) ? p : undefined;
    },
    timeoutMs,
    200,
  );
}

async function logs(namespace: string, pod: string, container: string): Promise<string> {
  return must(cluster, ['-n', namespace, 'logs', pod, '-c', container]);
}

async function exec(namespace: string, pod: string, command: string): Promise<{ code: number; out: string }> {
  return execInApp(cluster, namespace, pod, command);
}

function auditEntries(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const file of readdirSync(stack.operator.auditLogDir))
    for (const line of readFileSync(join(stack.operator.auditLogDir, file), 'utf8').split('\n'))
      if (line.startsWith('{')) out.push(JSON.parse(line) as Record<string, unknown>);
  return out;
}

beforeAll(async () => {
  cluster = inject('cluster');
  node = await attachNode(cluster, { log: (l) => process.stderr.write(`[node] ${l}\n`) });
  stack = await startStack({ cluster, node, log: (l) => process.stderr.write(`[e2e] ${l}\n`) });
  await appNamespace(stack, DEV, 'dev', ['trainer', 'intruder']);
  await appNamespace(stack, OTHER, 'dev', ['trainer']);
  await appNamespace(stack, PROD, 'prod', ['trainer']);
  await publishSample(stack, DEV, 'resnet50', 'v1', FILES);
  await publishSample(stack, DEV, 'nogrant', 'v1', { 'x.bin': 'nobody may read this' });
  await publishSample(stack, PROD, 'prodmodel', 'v1', { 'p.bin': 'production weights' });
  // The same ciphertext reachable from the other namespaces' claims (a pod mounts only its own namespace's claims).
  cpSync(join(stack.storageDir(DEV), 'resnet50'), join(stack.storageDir(OTHER), 'resnet50'), {
    recursive: true,
  });
  cpSync(join(stack.storageDir(PROD), 'prodmodel'), join(stack.storageDir(DEV), 'prodmodel'), {
    recursive: true,
  });
  await createGrant(
    stack.custom,
    DEV,
    grantBody('trainer-reads', 'resnet50', { subjects: [{ namespace: DEV, serviceAccount: 'trainer' }] }),
  );
  // A prod artifact granted to a dev workload without crossEnvironment: segmentation denies it.
  await createGrant(
    stack.custom,
    PROD,
    grantBody('dev-wants-prod', 'prodmodel', { subjects: [{ namespace: DEV, serviceAccount: 'trainer' }] }),
  );
}, 400_000);

afterAll(async () => {
  await stack.stop();
  await node.stop();
});

describe('authorized pods read plain files; nobody else does', () => {
  it('gives an authorized pod byte-identical files before its app starts', async () => {
    await createPod(
      DEV,
      injectedPod({ name: 'reader', artifacts: 'resnet50@v1:/models/resnet50', script: SHOW_AND_WAIT }),
    );
    await waitReady(DEV, 'reader');
    const out = await eventually('the app to list the files', async () => {
      const text = await logs(DEV, 'reader', 'app');
      return text.includes('END-OF-LIST') ? text : undefined;
    });
    const sums = out.split('\n').filter((l) => /^[0-9a-f]{64} {2}/.test(l));
    // Compared as sets: busybox sort and JavaScript order names differently.
    expect(sums.sort()).toEqual(expectedSums);
    const sidecar = await logs(DEV, 'reader', 'strongroom-sidecar');
    expect(sidecar).not.toMatch(/PRIVATE KEY|eyJhbGci/);
  });

  it('keeps the ciphertext and the token out of the app container, and the mount read-only', async () => {
    await waitReady(DEV, 'reader');
    const token = await exec(
      DEV,
      'reader',
      'ls /var/run/strongroom 2>&1; cat /var/run/secrets/kubernetes.io/serviceaccount/token 2>&1',
    );
    expect(token.out).toMatch(/No such file or directory/);
    expect(token.out).not.toContain('eyJ');
    const write = await exec(
      DEV,
      'reader',
      'touch /models/resnet50/new 2>&1; echo x > /models/resnet50/config.json 2>&1',
    );
    expect(write.out).toMatch(/Read-only file system/);
    const mounts = await exec(DEV, 'reader', 'grep " /models/resnet50 " /proc/mounts');
    expect(mounts.out).toMatch(/^tmpfs \/models\/resnet50 tmpfs ro/m);
    expect(mounts.out).not.toMatch(/strongroom-e2e|storage/);
  });

  it('refuses the wrong namespace at admission, with the same answer as for an artifact that does not exist', async () => {
    // No AccessGrant in DEV names OTHER/trainer, so the webhook does not resolve DEV's artifact for it: the pod is
    // never created, and its author cannot tell an existing artifact from a missing one.
    const attempt = async (artifacts: string): Promise<string> => {
      const name = `refused-ns-${String(Date.now()).slice(-6)}`;
      const pod = injectedPod({ name, serviceAccount: 'trainer', artifacts, script: SHOW_AND_WAIT });
      Object.assign(pod.metadata?.annotations ?? {}, { [ANNOTATION_CIPHERTEXT_CLAIM]: MODELS_CLAIM });
      const message = await createPod(OTHER, pod).then(
        () => 'created',
        (error: unknown) => String((error as { body?: unknown }).body),
      );
      const left = await stack.core.listNamespacedPod({ namespace: OTHER });
      expect(left.items.map((p) => p.metadata?.name)).not.toContain(name);
      return message;
    };
    const existing = await attempt(`${DEV}/resnet50@v1:/models/resnet50`);
    expect(existing).toContain(
      `ModelArtifact ${DEV}/resnet50 is not available to service account ${OTHER}/trainer: it does not exist or no AccessGrant names this service account`,
    );
    const missing = await attempt(`${DEV}/nosuchmodel@v1:/models/resnet50`);
    expect(missing.replaceAll('nosuchmodel', 'resnet50')).toBe(existing);
  });

  it.each([
    ['the wrong service account', DEV, 'intruder', 'resnet50@v1:/models/resnet50', {}],
    [
      'the wrong environment',
      DEV,
      'trainer',
      `${PROD}/prodmodel@v1:/models/resnet50`,
      { [ANNOTATION_CIPHERTEXT_CLAIM]: MODELS_CLAIM },
    ],
    ['no grant', DEV, 'trainer', 'nogrant@v1:/models/resnet50', {}],
  ] as const)(
    'refuses %s: the app never starts, and the refusal is audited and explained',
    async (_what, ns, sa, artifacts, extra) => {
      const name = `refused-${sa}-${String(Date.now()).slice(-6)}`;
      const pod = injectedPod({ name, serviceAccount: sa, artifacts, script: SHOW_AND_WAIT });
      Object.assign(pod.metadata?.annotations ?? {}, extra);
      await createPod(ns, pod);
      const why = await eventually(
        'the sidecar to log the denial',
        async () => {
          const text = await logs(ns, name, 'strongroom-sidecar').catch(() => '');
          return text.includes('PERMISSION_DENIED') ? text : undefined;
        },
        60_000,
      );
      expect(why).toMatch(/key release denied/);
      // The sidecar (the caller) gets the reason and a generic sentence; the pod's Event has the detail.
      expect(why).toMatch(/details are in the pod's events/);
      const events = await must(cluster, [
        '-n',
        ns,
        'get',
        'events',
        '--field-selector',
        `involvedObject.name=${name}`,
        '-o',
        'json',
      ]);
      expect(events).toMatch(/KeyReleaseDenied/);
      const p = await podNamed(ns, name);
      const app = p.status?.containerStatuses?.find((c) => c.name === 'app');
      expect(app?.state?.running).toBeUndefined();
      expect(app?.lastState?.running).toBeUndefined();
      expect(ready(p)).toBe(false);
      const uid = p.metadata?.uid ?? '';
      expect(
        auditEntries().some(
          (e) =>
            JSON.stringify(e).includes(uid) &&
            JSON.stringify(e).includes('"deny"') &&
            JSON.stringify(e).includes('key-release'),
        ),
      ).toBe(true);
    },
  );
});

describe('revocation and expiry wipe the plaintext from the running pod', () => {
  async function filesGoneAfter(ns: string, pod: string, trigger: () => Promise<unknown>): Promise<number> {
    await waitReady(ns, pod);
    expect((await exec(ns, pod, 'ls /models/resnet50')).out).toContain('config.json');
    const started = Date.now();
    await trigger();
    await eventually(
      'the files to vanish',
      async () => {
        const listing = await exec(ns, pod, 'ls -A /models/resnet50 | wc -l');
        return listing.out.trim() === '0' ? true : undefined;
      },
      10_000,
      20,
    );
    await eventually(
      `${pod} not ready`,
      async () => (ready(await podNamed(ns, pod)) ? undefined : true),
      10_000,
    );
    // The time to the wipe is the sidecar's own record of it (its log line's timestamp; the pod shares this
    // machine's clock): kubectl exec polling above only shows that the files are gone, and adds its own round trips
    // (on a loaded machine, hundreds of milliseconds).
    const logs = await must(cluster, ['-n', ns, 'logs', pod, '-c', 'strongroom-sidecar']);
    const wiped = logs
      .split('\n')
      .filter((l) => l.includes('"message":"wiped"'))
      .map((l) => JSON.parse(l) as { timestamp: string })
      .map((l) => new Date(l.timestamp).getTime())
      .find((t) => t >= started);
    expect(wiped, `no "wiped" line in the sidecar's log:\n${logs.slice(-2000)}`).toBeDefined();
    return (wiped ?? Infinity) - started;
  }

  it('wipes within 1 s of the grant being deleted', async () => {
    await createGrant(
      stack.custom,
      DEV,
      grantBody('short-lived', 'resnet50', { subjects: [{ namespace: DEV, serviceAccount: 'trainer' }] }),
    );
    await createPod(
      DEV,
      injectedPod({
        name: 'revoked',
        artifacts: 'resnet50@v1:/models/resnet50',
        script: 'sleep 3600',
        labels: { role: 'revoked' },
      }),
    );
    // Only the grant below covers this pod once the shared grant is narrowed away: delete the shared grant first.
    const elapsed = await filesGoneAfter(DEV, 'revoked', async () => {
      await must(cluster, [
        '-n',
        DEV,
        'delete',
        'accessgrant',
        'trainer-reads',
        'short-lived',
        '--wait=false',
      ]);
    });
    expect(elapsed).toBeLessThan(1000);
  });

  it('wipes within 1 s of the grant expiring', async () => {
    const expiresAt = new Date(Date.now() + 25_000);
    await createGrant(
      stack.custom,
      DEV,
      grantBody('expiring', 'resnet50', {
        subjects: [{ namespace: DEV, serviceAccount: 'trainer' }],
        expiresAt: expiresAt.toISOString().replace(/\.\d+Z$/, 'Z'),
      }),
    );
    await createPod(
      DEV,
      injectedPod({ name: 'expiring', artifacts: 'resnet50@v1:/models/resnet50', script: 'sleep 3600' }),
    );
    await waitReady(DEV, 'expiring');
    let goneAt = 0;
    await eventually(
      'the files to vanish at expiry',
      async () => {
        const listing = await exec(DEV, 'expiring', 'ls -A /models/resnet50 | wc -l');
        if (listing.out.trim() !== '0') return undefined;
        goneAt = Date.now();
        return true;
      },
      60_000,
      20,
    );
    // Whole seconds in expiresAt: the grant ends at the second it names.
    expect(goneAt - expiresAt.getTime()).toBeLessThan(1000);
    await eventually(
      'not ready after expiry',
      async () => (ready(await podNamed(DEV, 'expiring')) ? undefined : true),
      10_000,
    );
  });

  it('keeps the files when another covering grant ends, and wipes them when the one in use ends', async () => {
    for (const name of ['cover-a', 'cover-b'])
      await createGrant(
        stack.custom,
        DEV,
        grantBody(name, 'resnet50', { subjects: [{ namespace: DEV, serviceAccount: 'trainer' }] }),
      );
    await eventually('both grants Active', async () => {
      const phases = await Promise.all(
        ['cover-a', 'cover-b'].map(async (n) => (await getGrant(stack.custom, DEV, n)).status?.phase),
      );
      return phases.every((p) => p === 'Active') ? true : undefined;
    });
    await createPod(
      DEV,
      injectedPod({ name: 'covered', artifacts: 'resnet50@v1:/models/resnet50', script: 'sleep 3600' }),
    );
    await waitReady(DEV, 'covered');
    const materialized = (await logs(DEV, 'covered', 'strongroom-sidecar'))
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { message?: string; grant?: string })
      .find((l) => l.message === 'materialized');
    const used = materialized?.grant;
    expect(['cover-a', 'cover-b']).toContain(used);
    const other = used === 'cover-a' ? 'cover-b' : 'cover-a';
    await must(cluster, ['-n', DEV, 'delete', 'accessgrant', other]);
    // Give a wrong wipe time to happen (revocations arrive in tens of milliseconds), then look.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect((await exec(DEV, 'covered', 'ls /models/resnet50')).out).toContain('config.json');
    expect(ready(await podNamed(DEV, 'covered'))).toBe(true);
    const started = Date.now();
    await must(cluster, ['-n', DEV, 'delete', 'accessgrant', used ?? '', '--wait=false']);
    await eventually(
      'the files to vanish once the grant in use is gone',
      async () =>
        (await exec(DEV, 'covered', 'ls -A /models/resnet50 | wc -l')).out.trim() === '0' ? true : undefined,
      10_000,
      20,
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

/** Runs `template` as a Job (no retries) and waits for it to complete. */
async function runJob(namespace: string, name: string, template: V1Pod): Promise<void> {
  const job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: template.metadata?.labels, annotations: template.metadata?.annotations },
        spec: template.spec,
      },
    },
  };
  const r = await kubectl(cluster, ['-n', namespace, 'apply', '-f', '-'], { input: JSON.stringify(job) });
  expect(r.code, r.stderr).toBe(0);
  await must(cluster, ['-n', namespace, 'wait', '--for=condition=Complete', '--timeout=90s', `job/${name}`]);
}

describe('Jobs', () => {
  it('completes a Job whose pod has the injected native sidecar', async () => {
    await createGrant(
      stack.custom,
      DEV,
      grantBody('job-reads', 'resnet50', { subjects: [{ namespace: DEV, serviceAccount: 'trainer' }] }),
    );
    const template = injectedPod({
      name: 'ignored',
      artifacts: 'resnet50@v1:/models/resnet50',
      script: 'cd /models/resnet50 && sha256sum config.json && test -s weights/layer1.bin',
      restartPolicy: 'Never',
    });
    await runJob(DEV, 'reads-and-exits', template);
  });

  it('publishes what a Job writes as a new version, which a reader then gets back byte for byte', async () => {
    chownSync(join(stack.storageDir(DEV), 'resnet50'), 65532, 65532);
    await createGrant(
      stack.custom,
      DEV,
      grantBody('trainer-publishes', 'resnet50', {
        subjects: [{ namespace: DEV, serviceAccount: 'trainer' }],
        mode: 'publish',
        versions: { match: 'all' },
      }),
    );
    const template = injectedPod({
      name: 'ignored',
      publish: 'resnet50@v2:/output',
      script: `mkdir -p /output/weights && echo fine-tuned > /output/weights/delta.bin && echo '{"epochs":3}' > /output/config.json && touch /output/${PUBLISH_COMPLETE_MARKER}`,
      restartPolicy: 'Never',
    });
    await runJob(DEV, 'fine-tune', template);
    const artifact = await eventually('version v2 in the artifact', async () => {
      const a = await getArtifact(stack.custom, DEV, 'resnet50');
      return a.spec.versions?.some((v) => v.name === 'v2') === true ? a : undefined;
    });
    const v2 = artifact.spec.versions?.find((v) => v.name === 'v2');
    expect(v2?.publisher).toBe(`spiffe://cluster.local/ns/${DEV}/sa/trainer`);
    expect(statSync(join(stack.storageDir(DEV), 'resnet50', 'v2')).isDirectory()).toBe(true);
    await createPod(
      DEV,
      injectedPod({
        name: 'reads-v2',
        artifacts: 'resnet50@v2:/models/resnet50',
        script:
          'cat /models/resnet50/weights/delta.bin /models/resnet50/config.json; ls -A /models/resnet50; sleep 3600',
      }),
    );
    await waitReady(DEV, 'reads-v2');
    const out = await logs(DEV, 'reads-v2', 'app');
    expect(out).toContain('fine-tuned');
    expect(out).toContain('{"epochs":3}');
    expect(out).not.toContain(PUBLISH_COMPLETE_MARKER);
  });
});
