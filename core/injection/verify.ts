/**
 * Only the injected sidecar holds a pod's Strongroom token (docs/injection.md § Who may hold the token). Two pure
 * checks over a pod spec:
 *
 * - {@link admissionProblem}: what the webhook refuses in a pod it is about to inject (a container already mounting
 *   a token of audience `strongroom`, reserved `strongroom-` volume names, a shared process namespace);
 * - {@link verifyInjectedPod}: what Attest (and the broker on every call, over its pod cache) requires of a pod
 *   before it gets a certificate or a key: exactly the shape injection produces, with the configured sidecar image
 *   and command, and the token volume mounted by the sidecar alone.
 *
 * Both return undefined when the pod is acceptable, else one sentence saying what is wrong; missing or malformed
 * fields fail closed. {@link verificationView} keeps only what {@link verifyInjectedPod} reads, so that the broker's
 * pod cache stays small.
 */
import type { V1Container, V1EphemeralContainer, V1Pod, V1Probe, V1Volume } from '@kubernetes/client-node';
import {
  ANNOTATION_INJECTED,
  ENV,
  INJECTION_VERSION,
  S3_CREDENTIALS_ENV,
  S3_SECRET_KEYS,
  SIDECAR_COMMAND,
  SIDECAR_CONTAINER,
  SIDECAR_ROOT,
  TOKEN_AUDIENCE,
  VOLUME_CIPHERTEXT_PREFIX,
  VOLUME_SIDECAR_TMP,
  VOLUME_TOKEN,
} from './contract.ts';

/** Every volume name Strongroom injects starts with this; a pod may not bring its own. */
export const RESERVED_VOLUME_PREFIX = 'strongroom-';

/** The sidecar the operator injects: what Attest compares the pod's sidecar with. */
export interface ExpectedSidecar {
  /** The configured sidecar image (`--sidecar-image`), compared as a string. */
  readonly image: string;
  /** {@link SIDECAR_COMMAND}. */
  readonly command: readonly string[];
  /**
   * Where the sidecar must send its token and requests, exactly as injection sets them: the values of
   * STRONGROOM_BROKER_ADDRESS, STRONGROOM_ATTEST_ADDRESS and STRONGROOM_BROKER_SERVER_NAME. A pod that points its
   * sidecar elsewhere (its own listener on 127.0.0.1, say) would hand its token to whoever listens there.
   */
  readonly endpoints: Readonly<Record<string, string>>;
  /**
   * The operator's trusted CA certificates now (PEM bodies without whitespace, {@link pemBodies}); every certificate
   * in the sidecar's STRONGROOM_CA_BUNDLE must be one of them, so that the sidecar completes TLS only with the real
   * broker. Undefined or empty (not loaded yet): every pod is refused (fail closed).
   */
  readonly trustedCa: () => ReadonlySet<string> | undefined;
}

/**
 * The sidecar injection produces with these settings (the webhook's, or the operator's configuration), trusting
 * the CA certificates `trustedCa` returns.
 */
export function expectedSidecar(
  settings: {
    readonly image: string;
    readonly brokerAddress: string;
    readonly attestAddress: string;
    readonly brokerServerName?: string | undefined;
  },
  trustedCa: () => ReadonlySet<string> | undefined,
): ExpectedSidecar {
  return {
    image: settings.image,
    command: SIDECAR_COMMAND,
    endpoints: {
      [ENV.brokerAddress]: settings.brokerAddress,
      [ENV.attestAddress]: settings.attestAddress,
      ...(settings.brokerServerName === undefined
        ? {}
        : { [ENV.brokerServerName]: settings.brokerServerName }),
    },
    trustedCa,
  };
}

/** The base64 bodies of the PEM blocks in `text`, whitespace removed: comparable certificate identities. */
export function pemBodies(text: string): string[] {
  const bodies: string[] = [];
  for (const m of text.matchAll(/-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/g)) {
    if (m[1] !== 'CERTIFICATE') return [];
    bodies.push((m[2] ?? '').replace(/\s+/g, ''));
  }
  return bodies;
}

/** The Secret key an S3 credentials variable (`STRONGROOM_S3_<i>_...`) takes its value from; undefined for others. */
function s3SecretKey(name: string): string | undefined {
  const m = S3_CREDENTIALS_ENV.exec(name);
  if (m === null) return undefined;
  return m[2] === 'ACCESS_KEY_ID' ? S3_SECRET_KEYS.accessKeyId : S3_SECRET_KEYS.secretAccessKey;
}

/**
 * Whether an S3 credentials variable is set as injection sets it: only `valueFrom.secretKeyRef` with a Secret name
 * and the key matching the variable (no literal value, no other source, not optional).
 */
function isInjectedS3Env(e: Record<string, unknown>, key: string): boolean {
  if (e.value !== undefined || !isRecord(e.valueFrom)) return false;
  const from = e.valueFrom;
  if (Object.keys(from).some((k) => k !== 'secretKeyRef') || !isRecord(from.secretKeyRef)) return false;
  const ref = from.secretKeyRef;
  return (
    Object.keys(ref).every(
      (k) => k === 'name' || k === 'key' || (k === 'optional' && ref.optional === false),
    ) &&
    typeof ref.name === 'string' &&
    ref.name !== '' &&
    ref.key === key
  );
}

/** What is wrong with the values of the sidecar's environment, or undefined. */
function envValueProblem(env: readonly unknown[], expected: ExpectedSidecar, it: string): string | undefined {
  const values = new Map<string, string>();
  for (const e of env) {
    if (!isRecord(e) || typeof e.name !== 'string') return `${it} has a malformed env`;
    const s3Key = s3SecretKey(e.name);
    if (s3Key !== undefined && !isInjectedS3Env(e, s3Key))
      return `${it} sets ${e.name} other than from the key ${s3Key} of a Secret (valueFrom.secretKeyRef), as injection does`;
    if (s3Key === undefined && e.valueFrom !== undefined)
      return `${it} takes ${e.name} from valueFrom; injection sets every value literally, except the S3 credentials`;
    if (values.has(e.name)) return `${it} sets ${e.name} twice`;
    values.set(e.name, typeof e.value === 'string' ? e.value : '');
  }
  for (const [name, value] of Object.entries(expected.endpoints))
    if (values.get(name) !== value)
      return `${it} sets ${name}=${JSON.stringify(values.get(name) ?? '')}, not ${JSON.stringify(value)} as injection does: the sidecar would send its token elsewhere`;
  const trusted = expected.trustedCa();
  if (trusted === undefined || trusted.size === 0)
    return "the operator's CA is not loaded yet, so the sidecar's CA bundle cannot be checked";
  const bundle = pemBodies(values.get(ENV.caBundle) ?? '');
  if (bundle.length === 0 || !bundle.every((b) => trusted.has(b)))
    return `${it} trusts a CA bundle (${ENV.caBundle}) that is not the operator's: the sidecar would complete TLS with another server and hand it its token`;
  return undefined;
}

type AnyContainer = V1Container | V1EphemeralContainer;

interface Placed {
  readonly kind: 'container' | 'init container' | 'ephemeral container';
  readonly container: AnyContainer;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
/** A present, non-array object (keeps the static type, unlike {@link isRecord}). */
const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);

/** True for a projected volume with a service-account token source of audience `strongroom`, whatever its name. */
export function isStrongroomTokenVolume(volume: V1Volume): boolean {
  const sources = volume.projected?.sources;
  if (!Array.isArray(sources)) return false;
  return sources.some(
    (s) =>
      isRecord(s) && isRecord(s.serviceAccountToken) && s.serviceAccountToken.audience === TOKEN_AUDIENCE,
  );
}

/** Every container of the spec with its kind; undefined when a list is malformed (fail closed). */
function containersOf(spec: V1Pod['spec']): Placed[] | undefined {
  if (spec === undefined) return undefined;
  const lists: [Placed['kind'], unknown][] = [
    ['container', spec.containers],
    ['init container', spec.initContainers ?? []],
    ['ephemeral container', spec.ephemeralContainers ?? []],
  ];
  const placed: Placed[] = [];
  for (const [kind, list] of lists) {
    if (!Array.isArray(list)) return undefined;
    for (const c of list as unknown[]) {
      if (!isRecord(c) || typeof c.name !== 'string') return undefined;
      placed.push({ kind, container: c as unknown as AnyContainer });
    }
  }
  return placed;
}

function mountsOf(c: AnyContainer): { name: string; mountPath: string }[] | undefined {
  const mounts = c.volumeMounts ?? [];
  if (!Array.isArray(mounts)) return undefined;
  const out: { name: string; mountPath: string }[] = [];
  for (const m of mounts as unknown[]) {
    if (!isRecord(m) || typeof m.name !== 'string' || typeof m.mountPath !== 'string') return undefined;
    out.push({ name: m.name, mountPath: m.mountPath });
  }
  return out;
}

function volumesOf(spec: NonNullable<V1Pod['spec']>): V1Volume[] | undefined {
  const volumes = spec.volumes ?? [];
  if (!Array.isArray(volumes)) return undefined;
  for (const v of volumes as unknown[]) if (!isRecord(v) || typeof v.name !== 'string') return undefined;
  return volumes;
}

function sharedProcessProblem(spec: NonNullable<V1Pod['spec']>): string | undefined {
  const why = "another container could read the Strongroom sidecar's memory and token through /proc";
  if (spec.shareProcessNamespace === true)
    return `the pod sets shareProcessNamespace: true; ${why}; remove it`;
  if (spec.hostPID === true) return `the pod sets hostPID: true; ${why}; remove it`;
  return undefined;
}

/**
 * What the webhook refuses in a pod it is about to inject (CREATE, not yet injected): a container that mounts a
 * projected token of audience `strongroom` (whatever the volume's name) or any `strongroom-` volume, a volume with a
 * `strongroom-` name, `shareProcessNamespace` or `hostPID`. Undefined when none applies.
 */
export function admissionProblem(pod: V1Pod): string | undefined {
  const spec = pod.spec;
  if (spec === undefined || !isObject(spec)) return 'the pod has no spec';
  const volumes = volumesOf(spec);
  const containers = containersOf(spec);
  if (volumes === undefined || containers === undefined)
    return "the pod's volumes or containers are malformed";
  const tokens = new Set(volumes.filter(isStrongroomTokenVolume).map((v) => v.name));
  for (const { kind, container } of containers) {
    const mounts = mountsOf(container);
    if (mounts === undefined) return `${kind} ${container.name} has malformed volumeMounts`;
    for (const m of mounts) {
      if (tokens.has(m.name))
        return `${kind} ${container.name} mounts volume ${m.name}, a projected service account token for audience ${TOKEN_AUDIENCE}; only the injected Strongroom sidecar may hold one; remove the mount`;
      if (m.name.startsWith(RESERVED_VOLUME_PREFIX))
        return `${kind} ${container.name} mounts volume ${m.name}; volumes named ${RESERVED_VOLUME_PREFIX}* are injected by Strongroom and only it decides who mounts them; rename it`;
    }
  }
  for (const v of volumes)
    if (v.name.startsWith(RESERVED_VOLUME_PREFIX))
      return `the pod already has a volume named ${v.name}; volume names starting with ${RESERVED_VOLUME_PREFIX} are reserved for what Strongroom injects; rename it`;
  return sharedProcessProblem(spec);
}

/** Volumes only the sidecar may mount: the token (by name or by audience), its scratch space and the ciphertext. */
function sidecarOnly(name: string, tokens: ReadonlySet<string>): boolean {
  return (
    tokens.has(name) ||
    name === VOLUME_TOKEN ||
    name === VOLUME_SIDECAR_TMP ||
    name.startsWith(VOLUME_CIPHERTEXT_PREFIX)
  );
}

const SIDECAR_ENV: ReadonlySet<string> = new Set(Object.values(ENV));
/** Where the API server's ServiceAccount admission mounts the API token into every container, when the pod
 * automounts it: harmless in the sidecar (it runs no code from there), so allowed. */
const API_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

function runsCode(probe: V1Probe | undefined): boolean {
  return probe?.exec !== undefined;
}

const sameList = (a: unknown, b: readonly string[]): boolean =>
  Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);

/** What is wrong with the pod's `strongroom-sidecar` init container, or undefined. */
function sidecarProblem(sidecar: AnyContainer, expected: ExpectedSidecar): string | undefined {
  const it = `the ${SIDECAR_CONTAINER} container`;
  if (sidecar.restartPolicy !== 'Always')
    return `${it} is not a native sidecar (restartPolicy: Always), as injection makes it`;
  if (sidecar.image !== expected.image)
    return `${it} runs image ${JSON.stringify(sidecar.image ?? '')}, not the configured sidecar image ${JSON.stringify(expected.image)}`;
  if (!sameList(sidecar.command, expected.command))
    return `${it} runs command ${JSON.stringify(sidecar.command ?? [])}, not the sidecar's ${JSON.stringify(expected.command)}`;
  if ((sidecar.args ?? []).length > 0) return `${it} has args, which injection never sets`;
  if ((sidecar.envFrom ?? []).length > 0) return `${it} has envFrom, which injection never sets`;
  const env = sidecar.env ?? [];
  if (!Array.isArray(env)) return `${it} has a malformed env`;
  const foreign = env.find(
    (e) =>
      !isRecord(e) ||
      typeof e.name !== 'string' ||
      (!SIDECAR_ENV.has(e.name) && s3SecretKey(e.name) === undefined),
  );
  if (foreign !== undefined)
    return `${it} sets environment variable ${JSON.stringify(isRecord(foreign) ? foreign.name : foreign)}, which injection never sets`;
  const valued = envValueProblem(env, expected, it);
  if (valued !== undefined) return valued;
  if (sidecar.lifecycle !== undefined) return `${it} has lifecycle hooks, which injection never sets`;
  if (runsCode(sidecar.startupProbe) || runsCode(sidecar.readinessProbe) || runsCode(sidecar.livenessProbe))
    return `${it} has an exec probe, which injection never sets`;
  if ((sidecar.volumeDevices ?? []).length > 0) return `${it} has volumeDevices, which injection never sets`;
  const mounts = mountsOf(sidecar);
  if (mounts === undefined) return `${it} has malformed volumeMounts`;
  for (const m of mounts) {
    if (m.mountPath === API_TOKEN_PATH && !m.name.startsWith(RESERVED_VOLUME_PREFIX)) continue;
    if (
      !m.name.startsWith(RESERVED_VOLUME_PREFIX) ||
      (m.mountPath !== SIDECAR_ROOT && !m.mountPath.startsWith(`${SIDECAR_ROOT}/`))
    )
      return `${it} mounts volume ${m.name} at ${m.mountPath}; injection mounts only ${RESERVED_VOLUME_PREFIX}* volumes under ${SIDECAR_ROOT}`;
  }
  return undefined;
}

/**
 * Whether `pod` is what injection produces, as far as the token goes; undefined when it is, else why not. Required:
 * the annotation `strongroom.dev/injected: v1`; no `shareProcessNamespace` or `hostPID`; an init container
 * `strongroom-sidecar` with `restartPolicy: Always`, the configured image and command, no args, envFrom, foreign
 * environment variables, `valueFrom` (except exactly a `secretKeyRef` for the S3 credentials
 * `STRONGROOM_S3_<i>_*`), lifecycle hooks, exec probes or mounts outside `/var/run/strongroom`; every volume that is a
 * projected token of audience `strongroom` (whatever its name), and the sidecar's token, scratch and ciphertext
 * volumes, mounted by no other container, init container or ephemeral container; no ephemeral container targeting
 * the sidecar's process namespace.
 */
export function verifyInjectedPod(
  pod: V1Pod | null | undefined,
  expected: ExpectedSidecar,
): string | undefined {
  if (pod === null || pod === undefined || !isObject(pod)) return 'there is no pod';
  const annotations: unknown = isObject(pod.metadata) ? pod.metadata?.annotations : undefined;
  if (!isRecord(annotations) || annotations[ANNOTATION_INJECTED] !== INJECTION_VERSION)
    return `the pod does not carry the annotation ${ANNOTATION_INJECTED}: ${INJECTION_VERSION}; it was not injected by Strongroom`;
  const spec = pod.spec;
  if (spec === undefined || !isObject(spec)) return 'the pod has no spec';
  const shared = sharedProcessProblem(spec);
  if (shared !== undefined) return shared;
  const volumes = volumesOf(spec);
  const containers = containersOf(spec);
  if (volumes === undefined || containers === undefined)
    return "the pod's volumes or containers are malformed";
  const named = containers.filter((p) => p.container.name === SIDECAR_CONTAINER);
  const sidecar = named[0];
  if (sidecar === undefined || named.length > 1 || sidecar.kind !== 'init container')
    return `the pod has no single init container named ${SIDECAR_CONTAINER}`;
  const wrong = sidecarProblem(sidecar.container, expected);
  if (wrong !== undefined) return wrong;
  const tokens = new Set(volumes.filter(isStrongroomTokenVolume).map((v) => v.name));
  for (const { kind, container } of containers) {
    if (container === sidecar.container) continue;
    if ((container as V1EphemeralContainer).targetContainerName === SIDECAR_CONTAINER)
      return `${kind} ${container.name} targets the process namespace of ${SIDECAR_CONTAINER}`;
    const mounts = mountsOf(container);
    if (mounts === undefined) return `${kind} ${container.name} has malformed volumeMounts`;
    const held = mounts.find((m) => sidecarOnly(m.name, tokens));
    if (held !== undefined)
      return `${kind} ${container.name} mounts volume ${held.name}, which only ${SIDECAR_CONTAINER} may mount${tokens.has(held.name) ? ` (a projected service account token for audience ${TOKEN_AUDIENCE})` : ''}`;
  }
  return undefined;
}

function slimProbe(probe: V1Probe | undefined): V1Probe | undefined {
  return probe === undefined ? undefined : runsCode(probe) ? { exec: {} } : {};
}

/** Values {@link envValueProblem} reads: the pinned endpoints and the CA bundle (interned: pods share one bundle). */
const KEPT_VALUES: ReadonlySet<string> = new Set([
  ENV.brokerAddress,
  ENV.attestAddress,
  ENV.brokerServerName,
  ENV.caBundle,
]);
const interned = new Map<string, string>();
function intern(value: string): string {
  const found = interned.get(value);
  if (found !== undefined) return found;
  if (interned.size > 64) interned.clear();
  interned.set(value, value);
  return value;
}

function slimEnv(v: unknown): unknown {
  if (!isRecord(v)) return { name: undefined };
  const kept: Record<string, unknown> = { name: v.name };
  const s3Key = typeof v.name === 'string' ? s3SecretKey(v.name) : undefined;
  if (s3Key !== undefined && isInjectedS3Env(v, s3Key))
    kept.valueFrom = { secretKeyRef: { name: '-', key: s3Key } };
  else if (v.valueFrom !== undefined) kept.valueFrom = {};
  if (typeof v.name === 'string' && KEPT_VALUES.has(v.name) && typeof v.value === 'string')
    kept.value = intern(v.value);
  return kept;
}

function slimContainer(c: AnyContainer): AnyContainer {
  const e = c as V1EphemeralContainer & V1Container;
  const slim: Record<string, unknown> = {
    name: e.name,
    image: e.image,
    command: e.command,
    args: e.args,
    restartPolicy: e.restartPolicy,
    targetContainerName: e.targetContainerName,
    env: Array.isArray(e.env) ? e.env.map(slimEnv) : e.env,
    envFrom: Array.isArray(e.envFrom) ? e.envFrom.map(() => ({})) : e.envFrom,
    lifecycle: e.lifecycle === undefined ? undefined : {},
    startupProbe: slimProbe(e.startupProbe),
    readinessProbe: slimProbe(e.readinessProbe),
    livenessProbe: slimProbe(e.livenessProbe),
    volumeDevices: Array.isArray(e.volumeDevices) ? e.volumeDevices.map(() => ({})) : e.volumeDevices,
    volumeMounts: Array.isArray(e.volumeMounts)
      ? e.volumeMounts.map((m) => (isRecord(m) ? { name: m.name, mountPath: m.mountPath } : m))
      : e.volumeMounts,
  };
  for (const key of Object.keys(slim)) if (slim[key] === undefined) Reflect.deleteProperty(slim, key);
  return slim as unknown as AnyContainer;
}

/**
 * The part of `pod` that {@link verifyInjectedPod} reads, so that a cache can keep it instead of the whole pod:
 * `verifyInjectedPod(verificationView(p), e)` equals `verifyInjectedPod(p, e)` for every pod (tested). A pod
 * without the injection annotation keeps nothing but that fact.
 */
export function verificationView(pod: V1Pod): V1Pod {
  const annotations = isRecord(pod.metadata?.annotations) ? pod.metadata.annotations : {};
  const mark = annotations[ANNOTATION_INJECTED];
  if (mark === undefined) return { metadata: {} };
  const spec = pod.spec;
  if (spec === undefined || !isObject(spec))
    return { metadata: { annotations: { [ANNOTATION_INJECTED]: mark } } };
  const list = (value: unknown): unknown =>
    Array.isArray(value)
      ? (value as unknown[]).map((c) => (isRecord(c) ? slimContainer(c as unknown as AnyContainer) : c))
      : value;
  const volumes = Array.isArray(spec.volumes)
    ? spec.volumes.map((v) =>
        isRecord(v) && isStrongroomTokenVolume(v)
          ? {
              name: v.name,
              projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, path: '' } }] },
            }
          : isRecord(v)
            ? { name: v.name }
            : v,
      )
    : spec.volumes;
  const slim: Record<string, unknown> = {
    shareProcessNamespace: spec.shareProcessNamespace,
    hostPID: spec.hostPID,
    volumes,
    containers: list(spec.containers),
    initContainers: list(spec.initContainers),
    ephemeralContainers: list(spec.ephemeralContainers),
  };
  for (const key of Object.keys(slim)) if (slim[key] === undefined) Reflect.deleteProperty(slim, key);
  return {
    metadata: { annotations: { [ANNOTATION_INJECTED]: mark } },
    spec: slim as unknown as NonNullable<V1Pod['spec']>,
  };
}
