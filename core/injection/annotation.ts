/**
 * Parsing of the pod annotations a workload opts in with (docs/injection.md): which artifacts to mount where, what
 * to publish, which claim holds the ciphertext and how large the output may grow. Pure; every error names the
 * annotation, the entry and what is wrong with it.
 */
import { posix } from 'node:path';
import { isAbsolutePath, isDns1123Label, isDns1123Subdomain } from '../api/validation.ts';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_CIPHERTEXT_CLAIM,
  ANNOTATION_OUTPUT_SIZE,
  ANNOTATION_PUBLISH,
  MAX_ARTIFACTS,
  SIDECAR_ROOT,
} from './contract.ts';
import { InjectionError } from './errors.ts';

/** The `@latest` keyword of {@link ANNOTATION_ARTIFACTS}. */
export const LATEST = 'latest';

/** One entry of {@link ANNOTATION_ARTIFACTS} or {@link ANNOTATION_PUBLISH}. */
export interface ArtifactEntry {
  /** The namespace written in the entry; undefined means the pod's namespace. */
  readonly namespace: string | undefined;
  readonly name: string;
  /** A version name, or {@link LATEST} (artifacts only). */
  readonly version: string;
  /** Absolute, normalized mount path in the app containers. */
  readonly mountPath: string;
  /** The entry as written (trimmed), for messages. */
  readonly entry: string;
  /** The annotation it was written in ({@link ANNOTATION_ARTIFACTS} or {@link ANNOTATION_PUBLISH}). */
  readonly annotation: string;
}

/** Everything a pod asked for, syntactically valid and free of path conflicts. */
export interface InjectionRequest {
  readonly artifacts: readonly ArtifactEntry[];
  readonly publish: ArtifactEntry | undefined;
  /** {@link ANNOTATION_CIPHERTEXT_CLAIM}, if set. */
  readonly ciphertextClaim: string | undefined;
  /** {@link ANNOTATION_OUTPUT_SIZE}, if set (a validated quantity). */
  readonly outputSize: string | undefined;
}

const PATH_CHARS = /^[A-Za-z0-9._~+=@/-]+$/;
/** A Kubernetes quantity without sign or exponent: digits, an optional fraction, an optional suffix. */
const QUANTITY = /^(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const MAX_PATH = 1024;
/** Mounting exactly here hides the container's own system files. */
const SYSTEM_PATHS = [
  '/',
  '/bin',
  '/boot',
  '/etc',
  '/lib',
  '/lib64',
  '/sbin',
  '/usr',
  '/var',
  '/run',
  '/var/run',
];
/** Mounting here or anywhere below is refused: kernel interfaces, Kubernetes' and Strongroom's own mounts. */
const SYSTEM_TREES = ['/proc', '/dev', '/sys', '/var/run/secrets', '/run/secrets', SIDECAR_ROOT];

const fail = (annotation: string, message: string, cause?: unknown): never => {
  throw new InjectionError('annotation', `annotation ${annotation}: ${message}`, {
    annotation,
    ...(cause === undefined ? {} : { cause }),
  });
};

function checkLabel(annotation: string, entry: string, what: string, value: string): void {
  if (isDns1123Label(value).length > 0)
    fail(
      annotation,
      `entry "${entry}": ${what} "${value}" is not a DNS-1123 label (1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)`,
    );
}

/** Checks an absolute mount path and returns it; throws naming the annotation and entry. */
function checkMountPath(annotation: string, entry: string, path: string): string {
  const at = `entry "${entry}": mount path "${path}"`;
  if (path === '') fail(annotation, `entry "${entry}": the mount path after ':' is empty`);
  const [shape] = isAbsolutePath(path);
  if (shape !== undefined) {
    const normalized = posix.normalize(path).replace(/\/$/, '') || '/';
    fail(annotation, path.startsWith('/') ? `${at} ${shape}; write "${normalized}"` : `${at} ${shape}`);
  }
  if (path.length > MAX_PATH) fail(annotation, `${at} is longer than ${MAX_PATH} characters`);
  if (!PATH_CHARS.test(path))
    fail(annotation, `${at} contains a character other than letters, digits and . _ ~ + = @ / -`);
  if (SYSTEM_PATHS.includes(path))
    fail(annotation, `${at} is a system directory; choose a directory of your own`);
  const tree = SYSTEM_TREES.find((t) => path === t || path.startsWith(`${t}/`));
  if (tree !== undefined) fail(annotation, `${at} is inside the reserved directory ${tree}`);
  return path;
}

/** Parses one `[<ns>/]<artifact>@<version>:<path>` entry. */
function parseEntry(annotation: string, entry: string, allowLatest: boolean): ArtifactEntry {
  const at = entry.indexOf('@');
  if (at < 0)
    fail(annotation, `entry "${entry}" has no '@': write [<namespace>/]<artifact>@<version>:<absolute path>`);
  const ref = entry.slice(0, at);
  const rest = entry.slice(at + 1);
  const colon = rest.indexOf(':');
  if (colon < 0) fail(annotation, `entry "${entry}" has no ':<absolute path>' after the version`);
  const version = rest.slice(0, colon).trim();
  const mountPath = rest.slice(colon + 1).trim();
  const parts = ref.trim().split('/');
  if (parts.length > 2)
    fail(annotation, `entry "${entry}": "${ref}" has more than one '/'; write [<namespace>/]<artifact>`);
  const name = parts.length === 2 ? (parts[1] ?? '') : (parts[0] ?? '');
  const namespace = parts.length === 2 ? parts[0] : undefined;
  if (namespace !== undefined) checkLabel(annotation, entry, 'namespace', namespace);
  checkLabel(annotation, entry, 'artifact name', name);
  if (version === '') fail(annotation, `entry "${entry}": the version after '@' is empty`);
  if (version === LATEST && !allowLatest)
    fail(annotation, `entry "${entry}": the version to publish must be a new version name, not "${LATEST}"`);
  checkLabel(annotation, entry, 'version', version);
  return {
    namespace,
    name,
    version,
    mountPath: checkMountPath(annotation, entry, mountPath),
    entry,
    annotation,
  };
}

/** Parses {@link ANNOTATION_ARTIFACTS}: 1 to {@link MAX_ARTIFACTS} entries separated by commas and/or newlines. */
export function parseArtifactsAnnotation(value: string): ArtifactEntry[] {
  const entries = value
    .split(/[,\n\r]/)
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.length === 0)
    fail(
      ANNOTATION_ARTIFACTS,
      'lists no artifacts; write [<namespace>/]<artifact>@<version|latest>:<absolute path>',
    );
  if (entries.length > MAX_ARTIFACTS)
    fail(ANNOTATION_ARTIFACTS, `lists ${entries.length} artifacts; at most ${MAX_ARTIFACTS} are allowed`);
  const parsed = entries.map((e) => parseEntry(ANNOTATION_ARTIFACTS, e, true));
  checkDisjoint(parsed.map((p) => ({ annotation: ANNOTATION_ARTIFACTS, entry: p })));
  return parsed;
}

/** Parses {@link ANNOTATION_PUBLISH}: exactly one entry with a concrete new version. */
export function parsePublishAnnotation(value: string): ArtifactEntry {
  const entry = value.trim();
  if (entry === '')
    fail(ANNOTATION_PUBLISH, 'is empty; write [<namespace>/]<artifact>@<new version>:<absolute path>');
  if (/[,\n\r]/.test(entry))
    fail(ANNOTATION_PUBLISH, `"${entry}" lists more than one entry; a pod publishes one version`);
  return parseEntry(ANNOTATION_PUBLISH, entry, false);
}

/** Parses {@link ANNOTATION_CIPHERTEXT_CLAIM}: a PersistentVolumeClaim name (DNS-1123 subdomain). */
export function parseCiphertextClaim(value: string): string {
  const claim = value.trim();
  if (isDns1123Subdomain(claim).length > 0)
    fail(
      ANNOTATION_CIPHERTEXT_CLAIM,
      `"${claim}" is not a PersistentVolumeClaim name (a DNS-1123 subdomain)`,
    );
  return claim;
}

/** Parses {@link ANNOTATION_OUTPUT_SIZE}: a positive Kubernetes quantity such as `512Mi` or `2Gi`. */
export function parseOutputSize(value: string): string {
  const size = value.trim();
  if (!QUANTITY.test(size))
    fail(ANNOTATION_OUTPUT_SIZE, `"${size}" is not a Kubernetes quantity such as 512Mi or 2Gi`);
  if (!/[1-9]/.test(size.replace(/[A-Za-z]+$/, '')))
    fail(ANNOTATION_OUTPUT_SIZE, `"${size}" is zero; the output volume needs room`);
  return size;
}

/** Two mounts may neither share a path nor nest (one inside the other would hide or expose the other's files). */
function checkDisjoint(mounts: readonly { annotation: string; entry: ArtifactEntry }[]): void {
  for (const [i, a] of mounts.entries()) {
    for (const b of mounts.slice(i + 1)) {
      const [x, y] = [a.entry.mountPath, b.entry.mountPath];
      const where =
        a.annotation === b.annotation
          ? `annotation ${a.annotation}`
          : `annotations ${a.annotation} and ${b.annotation}`;
      const which = `entries "${a.entry.entry}" and "${b.entry.entry}"`;
      if (x === y)
        throw new InjectionError(
          'annotation',
          `${where}: ${which} use the same mount path ${x} (duplicate mount path)`,
          {
            annotation: b.annotation,
          },
        );
      if (y.startsWith(`${x}/`) || x.startsWith(`${y}/`))
        throw new InjectionError('annotation', `${where}: ${which} mount at nested paths ${x} and ${y}`, {
          annotation: b.annotation,
        });
    }
  }
}

/**
 * Reads every Strongroom annotation of a pod. Undefined when the pod asks for neither artifacts nor publishing
 * (it has not opted in); throws {@link InjectionError} on anything malformed.
 */
export function parseInjectionRequest(
  annotations: Readonly<Record<string, string>> | undefined,
): InjectionRequest | undefined {
  const a = annotations ?? {};
  const artifactsValue = a[ANNOTATION_ARTIFACTS];
  const publishValue = a[ANNOTATION_PUBLISH];
  if (artifactsValue === undefined && publishValue === undefined) return undefined;
  const artifacts = artifactsValue === undefined ? [] : parseArtifactsAnnotation(artifactsValue);
  const publish = publishValue === undefined ? undefined : parsePublishAnnotation(publishValue);
  if (publish !== undefined)
    checkDisjoint([
      ...artifacts.map((entry) => ({ annotation: ANNOTATION_ARTIFACTS, entry })),
      { annotation: ANNOTATION_PUBLISH, entry: publish },
    ]);
  const claim = a[ANNOTATION_CIPHERTEXT_CLAIM];
  const size = a[ANNOTATION_OUTPUT_SIZE];
  if (size !== undefined && publish === undefined)
    fail(
      ANNOTATION_OUTPUT_SIZE,
      `is set but ${ANNOTATION_PUBLISH} is not; the output size applies only to publishing`,
    );
  return {
    artifacts,
    publish,
    ciphertextClaim: claim === undefined ? undefined : parseCiphertextClaim(claim),
    outputSize: size === undefined ? undefined : parseOutputSize(size),
  };
}
