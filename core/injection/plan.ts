/**
 * Resolves a parsed {@link InjectionRequest} against the ModelArtifacts it names into the sidecar's plan and the
 * volumes the pod needs: `@latest` becomes a concrete version, every version is checked to exist and be
 * releasable, and each artifact gets a memory-backed plaintext volume sized from its recorded size. Pure: the
 * caller passes a lookup over its informer cache.
 */
import { posix } from 'node:path';
import type {
  AccessGrant,
  ModelArtifact,
  ModelArtifactStorageS3,
  ModelArtifactVersion,
} from '../api/index.ts';
import { isRelativePath, isS3BucketName, isS3Endpoint, isS3Region } from '../api/validation.ts';
import { LATEST, type ArtifactEntry, type InjectionRequest } from './annotation.ts';
import {
  ANNOTATION_CIPHERTEXT_CLAIM,
  ANNOTATION_PUBLISH,
  DEFAULT_OUTPUT_SIZE,
  INJECTION_VERSION,
  S3_DEFAULT_REGION,
  SIDECAR_OUTPUT_DIR,
  VOLUME_CIPHERTEXT_PREFIX,
  VOLUME_OUTPUT,
  VOLUME_PLAINTEXT_PREFIX,
  sidecarCiphertextDir,
  s3AccessKeyIdEnv,
  s3SecretAccessKeyEnv,
  sidecarPlaintextDir,
  type PlannedArtifact,
  type PlannedPublish,
  type PlannedS3Source,
  type SidecarPlan,
} from './contract.ts';
import { recipientKeyFromPem } from '../envelope/index.ts';
import { recipientKeyFingerprint } from '../storage/index.ts';
import { InjectionError } from './errors.ts';

/** Finds a ModelArtifact by namespace and name (for example in an informer cache); undefined when absent. */
export type ArtifactLookup = (namespace: string, name: string) => ModelArtifact | undefined;

/** The AccessGrants in one namespace (for example from an informer cache). */
export type GrantLookup = (namespace: string) => readonly AccessGrant[];

/**
 * Who asks, for artifacts in other namespaces: the pod's service account and the grants to look it up in. An
 * artifact in another namespace is resolved only when an AccessGrant there, for that artifact, names the pod's
 * namespace and service account as a subject; otherwise the refusal is the same whether or not it exists.
 */
export interface CrossNamespaceAccess {
  readonly serviceAccount: string;
  readonly grants: GrantLookup;
}

/** A PersistentVolumeClaim holding ciphertext, mounted in the sidecar only. */
export interface CiphertextVolume {
  readonly name: string;
  readonly claimName: string;
  /** False only when the pod publishes to this claim. */
  readonly readOnly: boolean;
  /** Mount path in the sidecar. */
  readonly sidecarPath: string;
}

/**
 * The Secret an S3 artifact's access key comes from, in the pod's namespace, and the sidecar's environment
 * variables that take its two keys (`valueFrom.secretKeyRef`). One per distinct Secret.
 */
export interface S3CredentialsSecret {
  readonly secretName: string;
  /** Takes the Secret's key `AWS_ACCESS_KEY_ID`. */
  readonly accessKeyIdEnv: string;
  /** Takes the Secret's key `AWS_SECRET_ACCESS_KEY`. */
  readonly secretAccessKeyEnv: string;
}

/** A memory-backed emptyDir: written by the sidecar, read by the app containers. */
export interface MemoryVolume {
  readonly name: string;
  /** A quantity such as `123Mi`. */
  readonly sizeLimit: string;
  /** Mount path in the sidecar. */
  readonly sidecarPath: string;
  /** Mount path in the app containers. */
  readonly mountPath: string;
}

/** Everything the patch builder needs: the sidecar's plan and the volume layout around it. */
export interface InjectionPlan {
  readonly sidecar: SidecarPlan;
  readonly ciphertext: readonly CiphertextVolume[];
  /** The Secrets of the artifacts read from S3, one per distinct Secret (the sidecar's environment only). */
  readonly s3Credentials: readonly S3CredentialsSecret[];
  /** One per read artifact, in annotation order (mounted read-only in the app containers). */
  readonly plaintext: readonly MemoryVolume[];
  /** The publish output directory (mounted read-write in the app containers). */
  readonly output: MemoryVolume | undefined;
  /** `<namespace>/<artifact>@<version>` per read artifact: what `@latest` meant. */
  readonly resolved: readonly string[];
}

const MI = 1024n * 1024n;
/** Head room for the plaintext volume: 10 % plus 16 MiB on top of the recorded size (file system overhead). */
const PLAINTEXT_OVERHEAD = 16n * MI;
/** DER prefix of an X25519 SubjectPublicKeyInfo; the raw key follows. */
const fail = (message: string, cause?: unknown): never => {
  throw new InjectionError('resolution', message, cause === undefined ? undefined : { cause });
};

/** Runs `resolve` for one entry; a refusal is prefixed with the annotation and the entry it is about. */
function forEntry<T>(entry: ArtifactEntry, resolve: () => T): T {
  try {
    return resolve();
  } catch (error) {
    if (!(error instanceof InjectionError)) throw error;
    throw new InjectionError(
      error.kind,
      `annotation ${entry.annotation}: entry "${entry.entry}": ${error.message}`,
      {
        annotation: entry.annotation,
        ...(error.cause === undefined ? {} : { cause: error.cause }),
      },
    );
  }
}

/** `size * 1.1 + 16 MiB`, rounded up to a whole MiB, as a quantity string. */
export function plaintextSizeLimit(size: number): string {
  if (!Number.isSafeInteger(size) || size < 1)
    fail(`recorded size ${size} is not a positive whole number of bytes`);
  const bytes = BigInt(size);
  const tenths = bytes * 11n + PLAINTEXT_OVERHEAD * 10n;
  const mebibytes = (tenths + MI * 10n - 1n) / (MI * 10n);
  return `${mebibytes.toString()}Mi`;
}

/**
 * Refuses, with one message whatever the reason, an artifact in another namespace than the pod's unless an
 * AccessGrant there for that artifact names the pod's namespace and service account: a pod author learns nothing
 * about another namespace's artifacts (their existence, versions or storage) without being granted one.
 */
function checkVisible(
  namespace: string,
  name: string,
  podNamespace: string,
  access: CrossNamespaceAccess,
): void {
  if (namespace === podNamespace) return;
  const named = access
    .grants(namespace)
    .some(
      (g) =>
        g.metadata.namespace === namespace &&
        g.metadata.deletionTimestamp === undefined &&
        g.spec.artifactRef.name === name &&
        g.spec.subjects.some(
          (s) => s.namespace === podNamespace && s.serviceAccount === access.serviceAccount,
        ),
    );
  if (!named)
    fail(
      `ModelArtifact ${namespace}/${name} is not available to service account ${podNamespace}/${access.serviceAccount}: it does not exist or no AccessGrant names this service account`,
    );
}

/** The artifact an entry names, if it exists and is not being deleted. */
function findArtifact(entry: ArtifactEntry, namespace: string, lookup: ArtifactLookup): ModelArtifact {
  const found = lookup(namespace, entry.name);
  const ref = `ModelArtifact ${namespace}/${entry.name}`;
  if (found === undefined) return fail(`${ref} does not exist`);
  if (found.metadata.deletionTimestamp !== undefined) fail(`${ref} is being deleted`);
  if (found.metadata.uid === undefined || found.metadata.uid === '') fail(`${ref} has no uid`);
  return found;
}

/**
 * The version an entry asks for: a named, non-withdrawn version, or for `latest` the artifact's
 * `status.latestVersion` (the newest version the operator has sealed), which is what the broker's ReleaseKey and a
 * grant's `versions.match: latest` mean by latest too.
 */
export function resolveVersion(artifact: ModelArtifact, version: string): ModelArtifactVersion | undefined {
  const withdrawn = new Set(artifact.spec.withdrawnVersions ?? []);
  const versions = artifact.spec.versions ?? [];
  const wanted = version === LATEST ? artifact.status?.latestVersion : version;
  if (wanted === undefined || wanted === '') return undefined;
  return versions.find((v) => v.name === wanted && !withdrawn.has(v.name));
}

function versionMissing(entry: ArtifactEntry, artifact: ModelArtifact): never {
  const ref = `ModelArtifact ${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`;
  const withdrawn = artifact.spec.withdrawnVersions ?? [];
  const available = (artifact.spec.versions ?? []).map((v) => v.name).filter((v) => !withdrawn.includes(v));
  const list = available.length === 0 ? 'none' : available.join(', ');
  if (entry.version === LATEST)
    return fail(
      `${ref} has no latest version yet: status.latestVersion names no sealed, non-withdrawn version (available: ${list})`,
    );
  if (withdrawn.includes(entry.version))
    return fail(`version ${entry.version} of ${ref} is withdrawn (available: ${list})`);
  return fail(`${ref} has no version ${entry.version} (available: ${list})`);
}

/** A path inside `dir`, normalized; refuses anything that would leave it. */
function inside(dir: string, ...parts: string[]): string {
  const path = posix.join(dir, ...parts);
  if (!path.startsWith(`${dir}/`)) fail(`the storage path ${parts.join('/')} leaves the ciphertext volume`);
  return path;
}

/** The raw base64 X25519 key of status.recipientPublicKey, checked against its fingerprint. */
function recipientKey(artifact: ModelArtifact): string {
  const ref = `ModelArtifact ${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`;
  const key = artifact.status?.recipientPublicKey;
  if (key === undefined)
    return fail(`${ref} has no status.recipientPublicKey yet (not Ready); retry when it is Ready`);
  let raw: string;
  try {
    raw = recipientKeyFromPem(key.publicKeyPem);
  } catch (error) {
    return fail(
      /X25519/.test((error as Error).message)
        ? `the recipient public key of ${ref} is not an X25519 key`
        : `the recipient public key of ${ref} is not a valid PEM public key`,
      error,
    );
  }
  if (recipientKeyFingerprint(raw) !== key.fingerprint)
    fail(`the recipient public key of ${ref} does not match its fingerprint ${key.fingerprint}`);
  return raw;
}

/** Collects one ciphertext volume per distinct claim; read-write if any use needs it. */
class Claims {
  readonly volumes: { name: string; claimName: string; readOnly: boolean; sidecarPath: string }[] = [];
  use(claimName: string, readOnly: boolean): string {
    let volume = this.volumes.find((v) => v.claimName === claimName);
    if (volume === undefined) {
      const i = this.volumes.length;
      volume = {
        name: `${VOLUME_CIPHERTEXT_PREFIX}${String(i)}`,
        claimName,
        readOnly,
        sidecarPath: sidecarCiphertextDir(i),
      };
      this.volumes.push(volume);
    }
    volume.readOnly &&= readOnly;
    return volume.sidecarPath;
  }
}

/** Collects one {@link S3CredentialsSecret} per distinct Secret, numbered in order of first use. */
class S3Secrets {
  readonly credentials: S3CredentialsSecret[] = [];
  use(secretName: string): S3CredentialsSecret {
    let found = this.credentials.find((c) => c.secretName === secretName);
    if (found === undefined) {
      const i = this.credentials.length;
      found = {
        secretName,
        accessKeyIdEnv: s3AccessKeyIdEnv(i),
        secretAccessKeyEnv: s3SecretAccessKeyEnv(i),
      };
      this.credentials.push(found);
    }
    return found;
  }
}

/**
 * The S3 source of a version of an artifact stored in S3. The API server has checked every field (the CRD's
 * rules); they are checked again here with the same functions so that a plan never carries a key prefix that
 * climbs out of the artifact's directory or a malformed endpoint, whatever the cache holds.
 */
function s3Source(
  s3: ModelArtifactStorageS3,
  storagePath: string,
  versionPath: string,
  secrets: S3Secrets,
): PlannedS3Source {
  const bad = (what: string, value: string, problems: string[]): void => {
    if (problems.length > 0) fail(`spec.storage.${what} ${JSON.stringify(value)} ${problems.join('; ')}`);
  };
  bad('s3.bucket', s3.bucket, isS3BucketName(s3.bucket));
  if (s3.endpoint !== undefined) bad('s3.endpoint', s3.endpoint, isS3Endpoint(s3.endpoint));
  const region = s3.region ?? S3_DEFAULT_REGION;
  bad('s3.region', region, isS3Region(region));
  if (s3.prefix !== undefined) bad('s3.prefix', s3.prefix, isRelativePath(s3.prefix));
  bad('path', storagePath, isRelativePath(storagePath));
  if (isRelativePath(versionPath).length > 0)
    fail(`the version path ${versionPath} leaves the artifact's directory in the bucket`);
  const segments = [s3.prefix ?? '', storagePath, versionPath].flatMap((p) => p.split('/')).filter(Boolean);
  const credentials = secrets.use(s3.credentialsSecretRef.name);
  return {
    ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
    region,
    bucket: s3.bucket,
    keyPrefix: `${segments.join('/')}/`,
    forcePathStyle: s3.forcePathStyle ?? true,
    credentialsEnv: {
      accessKeyId: credentials.accessKeyIdEnv,
      secretAccessKey: credentials.secretAccessKeyEnv,
    },
  };
}

function claimFor(
  artifact: ModelArtifact,
  entry: ArtifactEntry,
  podNamespace: string,
  claim: string | undefined,
): string {
  const namespace = artifact.metadata.namespace ?? '';
  const pvc = artifact.spec.storage.persistentVolumeClaim;
  if (pvc === undefined)
    return fail(`ModelArtifact ${namespace}/${entry.name} has no spec.storage.persistentVolumeClaim`);
  if (claim !== undefined) return claim;
  if (namespace !== podNamespace)
    fail(
      `ModelArtifact ${namespace}/${entry.name} stores its ciphertext in a claim in namespace ${namespace}, which a pod in ${podNamespace} cannot mount; set ${ANNOTATION_CIPHERTEXT_CLAIM} to a claim in ${podNamespace} that holds it`,
    );
  return pvc.claimName;
}

/**
 * Resolves the request for a pod in `podNamespace` running as `access.serviceAccount`. Throws
 * {@link InjectionError} (kind `resolution`) naming the entry when an artifact in another namespace is not granted
 * to the pod's service account (one message, whether or not it exists), when an artifact or version is missing,
 * withdrawn or being deleted, when a publish target is not Ready, already has the version or is stored in S3, when
 * the ciphertext claim cannot be mounted from the pod's namespace, or when the ciphertext-claim annotation is set for
 * an artifact stored in S3. An artifact stored in S3 gets no ciphertext volume: its plan entry carries the
 * {@link PlannedS3Source} and the plan the Secret its sidecar's credentials come from ({@link S3CredentialsSecret}).
 */
export function planInjection(
  request: InjectionRequest,
  podNamespace: string,
  lookup: ArtifactLookup,
  access: CrossNamespaceAccess,
): InjectionPlan {
  const claims = new Claims();
  const secrets = new S3Secrets();
  const artifacts: PlannedArtifact[] = [];
  const plaintext: MemoryVolume[] = [];
  for (const [i, entry] of request.artifacts.entries()) {
    const planned = forEntry(entry, () => {
      checkVisible(entry.namespace ?? podNamespace, entry.name, podNamespace, access);
      return planRead(entry, i, podNamespace, lookup, claims, secrets, request);
    });
    artifacts.push(planned.artifact);
    plaintext.push(planned.volume);
  }
  const entry = request.publish;
  const publish =
    entry === undefined
      ? undefined
      : forEntry(entry, () => {
          checkVisible(entry.namespace ?? podNamespace, entry.name, podNamespace, access);
          return planPublish(entry, podNamespace, lookup, claims, request);
        });
  const output: MemoryVolume | undefined =
    publish === undefined
      ? undefined
      : {
          name: VOLUME_OUTPUT,
          sizeLimit: request.outputSize ?? DEFAULT_OUTPUT_SIZE,
          sidecarPath: SIDECAR_OUTPUT_DIR,
          mountPath: publish.mountPath,
        };
  return {
    sidecar: { version: INJECTION_VERSION, artifacts, ...(publish === undefined ? {} : { publish }) },
    ciphertext: claims.volumes.map((v) => ({ ...v })),
    s3Credentials: secrets.credentials,
    plaintext,
    output,
    resolved: artifacts.map((a) => `${a.namespace}/${a.name}@${a.version}`),
  };
}

function planRead(
  entry: ArtifactEntry,
  i: number,
  podNamespace: string,
  lookup: ArtifactLookup,
  claims: Claims,
  secrets: S3Secrets,
  request: InjectionRequest,
): { artifact: PlannedArtifact; volume: MemoryVolume } {
  const namespace = entry.namespace ?? podNamespace;
  const artifact = findArtifact(entry, namespace, lookup);
  const version = resolveVersion(artifact, entry.version) ?? versionMissing(entry, artifact);
  const s3 = artifact.spec.storage.s3;
  if (s3 !== undefined && request.ciphertextClaim !== undefined)
    fail(
      `ModelArtifact ${namespace}/${entry.name} stores its ciphertext in S3, not on a PersistentVolumeClaim, so ${ANNOTATION_CIPHERTEXT_CLAIM} cannot apply to it; remove the annotation (an S3 artifact in another namespace needs its credentials Secret ${s3.credentialsSecretRef.name} in ${podNamespace} instead)`,
    );
  const source =
    s3 === undefined
      ? undefined
      : s3Source(s3, artifact.spec.storage.path, version.path ?? version.name, secrets);
  const ciphertextPath =
    source === undefined
      ? inside(
          claims.use(claimFor(artifact, entry, podNamespace, request.ciphertextClaim), true),
          artifact.spec.storage.path,
          version.path ?? version.name,
        )
      : '';
  const plaintextDir = sidecarPlaintextDir(i);
  return {
    artifact: {
      namespace,
      name: entry.name,
      uid: artifact.metadata.uid ?? '',
      version: version.name,
      digest: version.digest,
      ciphertextPath,
      ...(source === undefined ? {} : { s3: source }),
      plaintextDir,
      mountPath: entry.mountPath,
    },
    volume: {
      name: `${VOLUME_PLAINTEXT_PREFIX}${String(i)}`,
      sizeLimit: plaintextSizeLimit(version.size),
      sidecarPath: plaintextDir,
      mountPath: entry.mountPath,
    },
  };
}

function planPublish(
  entry: ArtifactEntry,
  podNamespace: string,
  lookup: ArtifactLookup,
  claims: Claims,
  request: InjectionRequest,
): PlannedPublish {
  const namespace = entry.namespace ?? podNamespace;
  const artifact = findArtifact(entry, namespace, lookup);
  if (artifact.spec.storage.s3 !== undefined)
    fail(
      `ModelArtifact ${namespace}/${entry.name} stores its ciphertext in S3; publishing from a pod (${ANNOTATION_PUBLISH}) writes only to a PersistentVolumeClaim; publish it with \`strongroom publish\` instead`,
    );
  if ((artifact.spec.versions ?? []).some((v) => v.name === entry.version))
    fail(
      `ModelArtifact ${namespace}/${entry.name} already has a version ${entry.version}; published versions are immutable, choose a new version name`,
    );
  const recipientPublicKey = recipientKey(artifact);
  const dir = claims.use(claimFor(artifact, entry, podNamespace, request.ciphertextClaim), false);
  return {
    namespace,
    name: entry.name,
    uid: artifact.metadata.uid ?? '',
    version: entry.version,
    outputDir: SIDECAR_OUTPUT_DIR,
    ciphertextPath: inside(dir, artifact.spec.storage.path, entry.version),
    recipientPublicKey,
    mountPath: entry.mountPath,
  };
}
