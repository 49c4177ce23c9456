/**
 * Turns an {@link InjectionPlan} into the RFC 6902 JSON patch the webhook returns for a pod: the native sidecar
 * (first init container, `restartPolicy: Always`, probes that hold the app back until every artifact is verified),
 * the token, ciphertext, plaintext, output and scratch volumes, the S3 credentials (the sidecar's environment,
 * from the Secrets the plan names), the app containers' read-only mounts and the
 * `injected` and `resolved-versions` annotations. Only `add` operations; anything the pod already uses under one
 * of our names, paths or ports is a conflict error, never silently overwritten.
 */
import type {
  V1Container,
  V1EnvVar,
  V1Pod,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import {
  ANNOTATION_INJECTED,
  ANNOTATION_RESOLVED,
  ENV,
  INJECTION_VERSION,
  PROBE_PORT,
  PROBE_READY_PATH,
  PROBE_STARTUP_PATH,
  S3_SECRET_KEYS,
  SIDECAR_COMMAND,
  SIDECAR_CONTAINER,
  SIDECAR_TMP_DIR,
  SIDECAR_TOKEN_DIR,
  TOKEN_AUDIENCE,
  TOKEN_EXPIRATION_SECONDS,
  TOKEN_FILE,
  VOLUME_SIDECAR_TMP,
  VOLUME_TOKEN,
} from './contract.ts';
import { InjectionError } from './errors.ts';
import type { InjectionPlan } from './plan.ts';

/** How the operator is deployed: what every injected sidecar gets. */
export interface InjectionSettings {
  /** The Strongroom image reference. */
  readonly image: string;
  readonly imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** The key broker, `host:port`. */
  readonly brokerAddress: string;
  /** The attestation endpoint, `host:port`. */
  readonly attestAddress: string;
  /** The DNS name in the broker's serving certificate, when the addresses are IPs ({@link ENV.brokerServerName}). */
  readonly brokerServerName?: string;
  /** The operator CA bundle (PEM) the sidecar trusts; public certificates only. */
  readonly caBundlePem: string;
  /** The operator's namespace: its pods are never injected. */
  readonly operatorNamespace: string;
  /** The sidecar's resources; default requests cpu 10m, memory 32Mi and no limits (see docs/injection.md). */
  readonly resources?: V1ResourceRequirements;
  readonly logLevel?: string;
  /** Startup probe failures (1 s apart) before the kubelet restarts the sidecar; default 600. */
  readonly startupFailureThreshold?: number;
}

/** One RFC 6902 operation; the builder emits only `add`. */
export interface JsonPatchOperation {
  readonly op: 'add';
  /** A JSON pointer (RFC 6901). */
  readonly path: string;
  readonly value: unknown;
}

/** The user and group the sidecar runs as (distroless "nonroot"). */
export const SIDECAR_UID = 65532;
export const DEFAULT_STARTUP_FAILURE_THRESHOLD = 600;
const DEFAULT_RESOURCES: V1ResourceRequirements = { requests: { cpu: '10m', memory: '32Mi' } };

/** The container security context that satisfies Pod Security "restricted". */
export function restrictedSecurityContext(): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: SIDECAR_UID,
    runAsGroup: SIDECAR_UID,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
    readOnlyRootFilesystem: true,
  };
}

/** RFC 6901 escaping of one reference token. */
export function escapePointer(token: string): string {
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}

const conflict = (message: string): never => {
  throw new InjectionError('conflict', message);
};

function volumes(plan: InjectionPlan): V1Volume[] {
  const memory = [...plan.plaintext, ...(plan.output === undefined ? [] : [plan.output])];
  return [
    {
      name: VOLUME_TOKEN,
      projected: {
        sources: [
          {
            serviceAccountToken: {
              audience: TOKEN_AUDIENCE,
              expirationSeconds: TOKEN_EXPIRATION_SECONDS,
              path: TOKEN_FILE,
            },
          },
        ],
      },
    },
    ...plan.ciphertext.map((c) => ({
      name: c.name,
      persistentVolumeClaim: { claimName: c.claimName, readOnly: c.readOnly },
    })),
    ...memory.map((m) => ({ name: m.name, emptyDir: { medium: 'Memory', sizeLimit: m.sizeLimit } })),
    { name: VOLUME_SIDECAR_TMP, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
  ];
}

/**
 * The sidecar's S3 access keys: for each Secret of the plan, its keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
 * through `secretKeyRef` (resolved by the kubelet in the pod's namespace; not optional, so a missing Secret or key
 * keeps the sidecar, and with it the app, from starting).
 */
function s3Env(plan: InjectionPlan): V1EnvVar[] {
  return plan.s3Credentials.flatMap((c) => [
    {
      name: c.accessKeyIdEnv,
      valueFrom: { secretKeyRef: { name: c.secretName, key: S3_SECRET_KEYS.accessKeyId } },
    },
    {
      name: c.secretAccessKeyEnv,
      valueFrom: { secretKeyRef: { name: c.secretName, key: S3_SECRET_KEYS.secretAccessKey } },
    },
  ]);
}

function sidecar(plan: InjectionPlan, settings: InjectionSettings): V1Container {
  const mounts: V1VolumeMount[] = [
    { name: VOLUME_TOKEN, mountPath: SIDECAR_TOKEN_DIR, readOnly: true },
    ...plan.ciphertext.map((c) => ({ name: c.name, mountPath: c.sidecarPath, readOnly: c.readOnly })),
    ...plan.plaintext.map((p) => ({ name: p.name, mountPath: p.sidecarPath })),
    ...(plan.output === undefined ? [] : [{ name: plan.output.name, mountPath: plan.output.sidecarPath }]),
    { name: VOLUME_SIDECAR_TMP, mountPath: SIDECAR_TMP_DIR },
  ];
  const env = [
    { name: ENV.brokerAddress, value: settings.brokerAddress },
    { name: ENV.attestAddress, value: settings.attestAddress },
    ...(settings.brokerServerName === undefined
      ? []
      : [{ name: ENV.brokerServerName, value: settings.brokerServerName }]),
    { name: ENV.caBundle, value: settings.caBundlePem },
    { name: ENV.tokenPath, value: `${SIDECAR_TOKEN_DIR}/${TOKEN_FILE}` },
    { name: ENV.plan, value: JSON.stringify(plan.sidecar) },
    { name: ENV.probePort, value: String(PROBE_PORT) },
    ...(settings.logLevel === undefined ? [] : [{ name: ENV.logLevel, value: settings.logLevel }]),
    ...s3Env(plan),
  ];
  return {
    name: SIDECAR_CONTAINER,
    image: settings.image,
    ...(settings.imagePullPolicy === undefined ? {} : { imagePullPolicy: settings.imagePullPolicy }),
    command: [...SIDECAR_COMMAND],
    restartPolicy: 'Always',
    env,
    ports: [{ name: 'probe', containerPort: PROBE_PORT, protocol: 'TCP' }],
    startupProbe: {
      httpGet: { path: PROBE_STARTUP_PATH, port: PROBE_PORT },
      periodSeconds: 1,
      failureThreshold: settings.startupFailureThreshold ?? DEFAULT_STARTUP_FAILURE_THRESHOLD,
    },
    readinessProbe: {
      httpGet: { path: PROBE_READY_PATH, port: PROBE_PORT },
      periodSeconds: 1,
      failureThreshold: 1,
    },
    resources: settings.resources ?? DEFAULT_RESOURCES,
    securityContext: restrictedSecurityContext(),
    volumeMounts: mounts,
  };
}

function checkConflicts(pod: V1Pod, plan: InjectionPlan, ours: readonly V1Volume[]): void {
  const spec = pod.spec;
  if (spec === undefined) return conflict('the pod has no spec');
  const used = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const v of ours)
    if (used.has(v.name))
      conflict(`the pod already has a volume named ${v.name}, which Strongroom injects; rename it`);
  const all = [...spec.containers, ...(spec.initContainers ?? []), ...(spec.ephemeralContainers ?? [])];
  if (all.some((c) => c.name === SIDECAR_CONTAINER))
    conflict(
      `the pod already has a container named ${SIDECAR_CONTAINER}, which Strongroom injects; rename it`,
    );
  for (const c of all)
    if ((c.ports ?? []).some((p) => p.containerPort === PROBE_PORT))
      conflict(
        `container ${c.name} uses port ${String(PROBE_PORT)}, which the Strongroom sidecar's probes need`,
      );
  const requested = [...plan.plaintext, ...(plan.output === undefined ? [] : [plan.output])].map(
    (m) => m.mountPath,
  );
  for (const c of spec.containers)
    for (const m of c.volumeMounts ?? []) {
      const path = m.mountPath.length > 1 ? m.mountPath.replace(/\/+$/, '') : m.mountPath;
      if (requested.includes(path))
        conflict(
          `container ${c.name} already mounts volume ${m.name} at ${path}, where Strongroom was asked to mount an artifact`,
        );
    }
}

/** Appends items to the array at `path`, creating it when absent. */
function append(
  ops: JsonPatchOperation[],
  path: string,
  existing: readonly unknown[] | undefined,
  items: readonly unknown[],
): void {
  if (existing === undefined) ops.push({ op: 'add', path, value: [...items] });
  else for (const value of items) ops.push({ op: 'add', path: `${path}/-`, value });
}

/**
 * The JSON patch that injects `plan` into `pod`. Throws {@link InjectionError} (kind `conflict`) when the pod
 * already uses an injected volume or container name, the probe port, or mounts something at a requested path.
 */
export function buildPatch(
  pod: V1Pod,
  plan: InjectionPlan,
  settings: InjectionSettings,
): JsonPatchOperation[] {
  const ours = volumes(plan);
  checkConflicts(pod, plan, ours);
  const spec = pod.spec ?? { containers: [] };
  const ops: JsonPatchOperation[] = [];
  const annotations = {
    [ANNOTATION_INJECTED]: INJECTION_VERSION,
    [ANNOTATION_RESOLVED]: plan.resolved.join(','),
  };
  if (pod.metadata === undefined) ops.push({ op: 'add', path: '/metadata', value: { annotations } });
  else if (pod.metadata.annotations === undefined)
    ops.push({ op: 'add', path: '/metadata/annotations', value: annotations });
  else
    for (const [key, value] of Object.entries(annotations))
      ops.push({ op: 'add', path: `/metadata/annotations/${escapePointer(key)}`, value });
  append(ops, '/spec/volumes', spec.volumes, ours);
  const container = sidecar(plan, settings);
  ops.push(
    spec.initContainers === undefined
      ? { op: 'add', path: '/spec/initContainers', value: [container] }
      : { op: 'add', path: '/spec/initContainers/0', value: container },
  );
  const appMounts: V1VolumeMount[] = [
    ...plan.plaintext.map((p) => ({ name: p.name, mountPath: p.mountPath, readOnly: true })),
    ...(plan.output === undefined ? [] : [{ name: plan.output.name, mountPath: plan.output.mountPath }]),
  ];
  for (const [i, c] of spec.containers.entries())
    append(ops, `/spec/containers/${String(i)}/volumeMounts`, c.volumeMounts, appMounts);
  return ops;
}
