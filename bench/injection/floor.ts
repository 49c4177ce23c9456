/**
 * The floors under issue 8's targets, measured by `npm run bench:injection` (bench/injection/) in the same run as
 * Strongroom itself, so that the host's noise hits both alike:
 *
 *   - Admission: two webhooks in the bench process that do nothing but answer. The "null" webhook allows every pod
 *     with no patch; the "patch" webhook allows it with a fixed JSON patch captured once from the operator's real
 *     answer (same size and shape as Strongroom's). Both serve the operator's own serving certificate (Secret
 *     `strongroom-webhook-tls`, same key, same CA bundle), on loopback, and are registered with a configuration
 *     identical to the injector's (operator/webhook/configuration.ts) except for its name and an objectSelector on
 *     a label of their own. What the null webhook adds to a pod create is what any webhook adds on this host.
 *   - Start-up: a native sidecar that does nothing: the injected sidecar's container (same image, probes, security
 *     context, resources) running `node -e` with an HTTP server that answers every probe at once and logs the time
 *     it started listening. Process start to `started: true` is the least any Node sidecar with a kubelet HTTP
 *     startup probe can take here.
 */
import { request as httpsRequest, createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  type CoreV1Api,
  type V1Container,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import { PROBE_PORT } from '../../core/injection/contract.ts';
import type { JsonPatchOperation } from '../../core/injection/patch.ts';
import { readServingCertificate } from '../../operator/pki/serving-secret.ts';
import { injectorConfiguration, WEBHOOK_CONFIGURATION_NAME } from '../../operator/webhook/configuration.ts';
import { MUTATE_PODS_PATH } from '../../operator/webhook/server.ts';
import { clients } from '../../test/harness/operator.ts';

/** Pods with this label, value "true", go to the null webhook (allowed, no patch). */
export const NULL_WEBHOOK_LABEL = 'bench.strongroom.dev/null-webhook';
/** Pods with this label, value "true", go to the same-patch webhook (allowed with Strongroom's captured patch). */
export const PATCH_WEBHOOK_LABEL = 'bench.strongroom.dev/patch-webhook';
/** The webhook names, as in the API server's `name` label of `apiserver_admission_webhook_*` metrics. */
export const NULL_WEBHOOK_NAME = 'null.bench.strongroom.dev';
export const PATCH_WEBHOOK_NAME = 'patch.bench.strongroom.dev';
/** The operator's webhook serving Secret (operator/webhook/server.ts), reused by the floor webhooks. */
const SERVING_SECRET = 'strongroom-webhook-tls';
/** A marker in the null sidecar's command line, to find its process on the host. */
export const NULL_SIDECAR_MARKER = 'strongroom-null-sidecar';

/** A failure to set up or run a floor measurement. */
export class FloorError extends Error {
  override readonly name = 'FloorError';
}

/** A webhook server that answers every AdmissionReview at once. */
export interface FloorWebhook {
  readonly port: number;
  /** AdmissionReviews answered so far. */
  calls(): number;
  /** Requests refused with HTTP 400 (not a POST of an AdmissionReview with a uid to {@link MUTATE_PODS_PATH}). */
  refused(): number;
  stop(): Promise<void>;
}

/** The null and same-patch webhooks, registered with the API server. */
export interface FloorWebhooks {
  readonly null: FloorWebhook;
  readonly patch: FloorWebhook;
  /** Deletes both configurations and closes both servers. */
  stop(): Promise<void>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The request uid of an admission.k8s.io/v1 AdmissionReview, or undefined. */
function reviewUid(text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(body) || body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview')
    return undefined;
  const request = body.request;
  return isRecord(request) && typeof request.uid === 'string' && request.uid !== '' ? request.uid : undefined;
}

/**
 * Starts an HTTPS server on 127.0.0.1 (same TLS options as the operator's webhook) that allows every
 * AdmissionReview, with `patch` (base64 JSON patch) when given. Anything else is answered 400, which the API server
 * treats as a webhook failure (fail closed: with `failurePolicy: Fail` the pod is refused and the bench fails).
 */
export async function startFloorWebhook(options: {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly patch?: string;
}): Promise<FloorWebhook> {
  let calls = 0;
  let refused = 0;
  const patch = options.patch;
  const server: Server = createServer(
    {
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      requestTimeout: 10_000,
      headersTimeout: 5_000,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('error', () => undefined);
      req.on('end', () => {
        const uid = reviewUid(Buffer.concat(chunks).toString('utf8'));
        const ok = req.method === 'POST' && req.url?.split('?')[0] === MUTATE_PODS_PATH && uid !== undefined;
        const text = ok
          ? JSON.stringify({
              apiVersion: 'admission.k8s.io/v1',
              kind: 'AdmissionReview',
              response: {
                uid,
                allowed: true,
                ...(patch === undefined ? {} : { patchType: 'JSONPatch', patch }),
              },
            })
          : JSON.stringify({ error: 'not an admission.k8s.io/v1 AdmissionReview' });
        if (ok) calls++;
        else refused++;
        res.writeHead(ok ? 200 : 400, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      });
    },
  );
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    calls: () => calls,
    refused: () => refused,
    stop: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
    },
  };
}

/**
 * The injector's configuration (operator/webhook/configuration.ts: same rules, namespaceSelector, failurePolicy,
 * sideEffects, timeout, admissionReviewVersions) under another name, for a webhook at `url` that sees only pods
 * labelled `label=true`. Not labelled managed-by Strongroom, so the operator leaves its caBundle alone.
 */
export function floorWebhookConfiguration(options: {
  readonly configurationName: string;
  readonly webhookName: string;
  readonly label: string;
  readonly url: string;
  readonly caBundle: string;
  readonly operatorNamespace: string;
}): V1MutatingWebhookConfiguration {
  const base = injectorConfiguration({
    operatorNamespace: options.operatorNamespace,
    client: { url: options.url },
    caBundle: options.caBundle,
  });
  const webhook = base.webhooks?.[0];
  if (webhook === undefined) throw new FloorError('the injector configuration has no webhook');
  // A fresh object from the builder: change it in place.
  base.metadata = {
    name: options.configurationName,
    labels: { 'app.kubernetes.io/part-of': 'strongroom-bench' },
  };
  webhook.name = options.webhookName;
  webhook.objectSelector = { matchLabels: { [options.label]: 'true' } };
  base.webhooks = [webhook];
  return base;
}

/** The base64 CA bundle the operator has set in the injector's MutatingWebhookConfiguration. */
async function injectorCaBundle(kubeconfig: string): Promise<string> {
  const admission = clients(kubeconfig).kc.makeApiClient(AdmissionregistrationV1Api);
  const injector = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
  const caBundle = injector.webhooks?.[0]?.clientConfig.caBundle ?? '';
  if (caBundle === '') throw new FloorError("the injector's configuration has no caBundle yet");
  return caBundle;
}

/**
 * Asks the operator's webhook (on loopback, verified with the CA bundle of its configuration) for its answer to a
 * CREATE of `pod` in `namespace`, as the API server would, and returns the base64 JSON patch and its operations.
 * Throws {@link FloorError} when the operator does not answer with a patch.
 */
export async function captureInjectionPatch(options: {
  readonly kubeconfig: string;
  /** The operator's webhook port on 127.0.0.1. */
  readonly port: number;
  readonly namespace: string;
  readonly pod: V1Pod;
}): Promise<{ patch: string; operations: JsonPatchOperation[] }> {
  const caPem = Buffer.from(await injectorCaBundle(options.kubeconfig), 'base64').toString('utf8');
  const object = structuredClone(options.pod);
  object.metadata = object.metadata ?? {};
  object.metadata.namespace = options.namespace;
  const review = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: options.pod.metadata?.name ?? '',
      namespace: options.namespace,
      operation: 'CREATE',
      userInfo: { username: 'strongroom-bench' },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  });
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: options.port,
        path: MUTATE_PODS_PATH,
        method: 'POST',
        ca: caPem,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(review) },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) resolve(body);
          else
            reject(new FloorError(`the operator's webhook answered HTTP ${String(res.statusCode)}: ${body}`));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => {
      req.destroy(new FloorError("the operator's webhook did not answer within 10 s"));
    });
    req.on('error', (error) => {
      reject(
        error instanceof FloorError
          ? error
          : new FloorError("cannot reach the operator's webhook", { cause: error }),
      );
    });
    req.end(review);
  });
  const answer = JSON.parse(text) as {
    response?: { allowed?: unknown; patch?: unknown; patchType?: unknown };
  };
  const patch = answer.response?.patch;
  if (
    answer.response?.allowed !== true ||
    answer.response.patchType !== 'JSONPatch' ||
    typeof patch !== 'string'
  )
    throw new FloorError(`the operator did not inject the sample pod: ${text.slice(0, 500)}`);
  const operations = JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as JsonPatchOperation[];
  return { patch, operations };
}

/** The injected sidecar container in a captured patch (Strongroom adds it as the pod's first init container). */
export function sidecarOfPatch(operations: readonly JsonPatchOperation[]): V1Container {
  for (const op of operations) {
    if (op.path === '/spec/initContainers' && Array.isArray(op.value)) {
      const first: unknown = op.value[0];
      if (isRecord(first)) return first as unknown as V1Container;
    }
    if (op.path === '/spec/initContainers/0' && isRecord(op.value)) return op.value as unknown as V1Container;
  }
  throw new FloorError('the captured patch adds no init container');
}

/**
 * Registers the null and the same-patch webhook: both serve the operator's webhook certificate (read from its
 * serving Secret, never logged) and are trusted with the CA bundle of the injector's configuration. On any failure
 * whatever was created is removed again.
 */
export async function startFloorWebhooks(options: {
  readonly kubeconfig: string;
  readonly core: CoreV1Api;
  readonly operatorNamespace: string;
  /** Base64 JSON patch for the same-patch webhook (from {@link captureInjectionPatch}). */
  readonly patch: string;
}): Promise<FloorWebhooks> {
  const admission = clients(options.kubeconfig).kc.makeApiClient(AdmissionregistrationV1Api);
  const caBundle = await injectorCaBundle(options.kubeconfig);
  const { cert, key } = await readServingCertificate(options.core, options.operatorNamespace, SERVING_SECRET);
  const started: FloorWebhook[] = [];
  const registered: string[] = [];
  const stop = async (): Promise<void> => {
    for (const name of registered.splice(0))
      await admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
    for (const server of started.splice(0)) await server.stop();
  };
  try {
    const nullHook = await startFloorWebhook({ cert, key });
    started.push(nullHook);
    const patchHook = await startFloorWebhook({ cert, key, patch: options.patch });
    started.push(patchHook);
    const specs = [
      {
        configurationName: 'strongroom-bench-null-webhook',
        webhookName: NULL_WEBHOOK_NAME,
        label: NULL_WEBHOOK_LABEL,
        port: nullHook.port,
      },
      {
        configurationName: 'strongroom-bench-patch-webhook',
        webhookName: PATCH_WEBHOOK_NAME,
        label: PATCH_WEBHOOK_LABEL,
        port: patchHook.port,
      },
    ];
    for (const s of specs) {
      await admission.createMutatingWebhookConfiguration({
        body: floorWebhookConfiguration({
          ...s,
          url: `https://127.0.0.1:${String(s.port)}`,
          caBundle,
          operatorNamespace: options.operatorNamespace,
        }),
      });
      registered.push(s.configurationName);
    }
    return { null: nullHook, patch: patchHook, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * The null sidecar: the injected sidecar's container (image, pull policy, `restartPolicy: Always`, ports, startup
 * and readiness probes, resources, security context) running `node -e` with an HTTP server on the probe port that
 * answers every request with 200 and prints `{"listeningAt":<Date.now()>,"timeOrigin":<performance.timeOrigin>}`
 * once listening. No environment and no volumes: it has nothing to do.
 */
export function nullSidecarContainer(real: V1Container, name = 'null-sidecar'): V1Container {
  const node = real.command?.[0];
  if (node === undefined) throw new FloorError('the injected sidecar has no command');
  if (real.image === undefined) throw new FloorError('the injected sidecar has no image');
  if (real.startupProbe?.httpGet === undefined)
    throw new FloorError('the injected sidecar has no HTTP startup probe');
  const script =
    `/* ${NULL_SIDECAR_MARKER} */ require('node:http').createServer((q, s) => s.end('ok'))` +
    `.listen(${String(PROBE_PORT)}, () => console.log(JSON.stringify({ listeningAt: Date.now(), ` +
    `timeOrigin: performance.timeOrigin })))`;
  return {
    name,
    image: real.image,
    ...(real.imagePullPolicy === undefined ? {} : { imagePullPolicy: real.imagePullPolicy }),
    command: [node, '-e', script],
    restartPolicy: 'Always',
    ...(real.ports === undefined ? {} : { ports: real.ports }),
    startupProbe: real.startupProbe,
    ...(real.readinessProbe === undefined ? {} : { readinessProbe: real.readinessProbe }),
    ...(real.resources === undefined ? {} : { resources: real.resources }),
    ...(real.securityContext === undefined ? {} : { securityContext: real.securityContext }),
  };
}

/** When the null sidecar said it was listening, from its container log; undefined when it has not said so. */
export function nullSidecarListening(log: string): { listeningAt: number; timeOrigin: number } | undefined {
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (typeof entry.listeningAt === 'number' && typeof entry.timeOrigin === 'number')
        return { listeningAt: entry.listeningAt, timeOrigin: entry.timeOrigin };
    } catch {
      // not our line
    }
  }
  return undefined;
}
