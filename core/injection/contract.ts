/**
 * The contract between the injecting webhook (operator/webhook), the pure patch builder (core/injection) and the
 * sidecar runtime (sidecar/): the annotations a pod opts in with, the names and paths of what is injected, and the
 * environment the sidecar reads its plan from. docs/injection.md is the user-facing description; change both
 * together. The sidecar never imports the operator: this file and the proto are all the two sides share.
 */

/** Opt-in: the artifacts a pod reads, `[<namespace>/]<artifact>@<version|latest>:<absolute mount path>`, separated
 * by commas or newlines. Without a namespace the artifact is in the pod's namespace. */
export const ANNOTATION_ARTIFACTS = 'strongroom.dev/artifacts';
/** Optional: `[<namespace>/]<artifact>@<new version>:<absolute output path>`; the sidecar encrypts what the job
 * writes there and publishes it as that version when the job's containers have ended (docs/injection.md). */
export const ANNOTATION_PUBLISH = 'strongroom.dev/publish';
/** Optional: the PersistentVolumeClaim, in the pod's namespace, that holds the ciphertext. Defaults to the
 * artifact's own `spec.storage.persistentVolumeClaim.claimName` (which a pod can mount only in the artifact's
 * namespace). Refused when the pod reads an artifact stored in S3 (`spec.storage.s3`), which has no claim. */
export const ANNOTATION_CIPHERTEXT_CLAIM = 'strongroom.dev/ciphertext-claim';
/** Optional: the size limit of the publish output volume (a Kubernetes quantity), default {@link DEFAULT_OUTPUT_SIZE}. */
export const ANNOTATION_OUTPUT_SIZE = 'strongroom.dev/output-size';
/** Set by the webhook on an injected pod, value {@link INJECTION_VERSION}. A pod carrying it is never injected again. */
export const ANNOTATION_INJECTED = 'strongroom.dev/injected';
/** Set by the webhook: the resolved plan, `<namespace>/<artifact>@<version>` per artifact (what `@latest` meant). */
export const ANNOTATION_RESOLVED = 'strongroom.dev/resolved-versions';
/** The value of {@link ANNOTATION_INJECTED}. */
export const INJECTION_VERSION = 'v1';

/** A namespace whose pods must never be injected carries this label with value `disabled`. */
export const LABEL_INJECTION = 'strongroom.dev/injection';
/** A pod opts in to strict admission with this label, value `true`: the webhook's objectSelector matches it, so
 * `failurePolicy: Fail` applies only to opted-in pods, and a labelled pod without {@link ANNOTATION_ARTIFACTS} or
 * {@link ANNOTATION_PUBLISH} is denied. */
export const LABEL_INJECT = 'strongroom.dev/inject';
/** At most this many entries in {@link ANNOTATION_ARTIFACTS}. */
export const MAX_ARTIFACTS = 16;

/** The injected native sidecar (an init container with `restartPolicy: Always`). */
export const SIDECAR_CONTAINER = 'strongroom-sidecar';
/** The projected service-account token: audience, lifetime (the API server's minimum is 600 s). */
export const TOKEN_AUDIENCE = 'strongroom';
export const TOKEN_EXPIRATION_SECONDS = 600;
export const TOKEN_FILE = 'token';

/** Volume names. Plaintext and ciphertext volumes are numbered: one plaintext emptyDir per artifact (index in the
 * annotation), one ciphertext volume per distinct claim. */
export const VOLUME_TOKEN = 'strongroom-token';
export const VOLUME_PLAINTEXT_PREFIX = 'strongroom-plain-';
export const VOLUME_CIPHERTEXT_PREFIX = 'strongroom-cipher-';
export const VOLUME_OUTPUT = 'strongroom-output';
export const VOLUME_SIDECAR_TMP = 'strongroom-tmp';
export const DEFAULT_OUTPUT_SIZE = '1Gi';

/** Where the sidecar sees things (the app containers see only their plaintext mounts, read-only). */
export const SIDECAR_ROOT = '/var/run/strongroom';
export const SIDECAR_TOKEN_DIR = `${SIDECAR_ROOT}/token`;
export const SIDECAR_TMP_DIR = `${SIDECAR_ROOT}/tmp`;
export const SIDECAR_OUTPUT_DIR = `${SIDECAR_ROOT}/output`;
export const sidecarPlaintextDir = (index: number): string => `${SIDECAR_ROOT}/plain/${String(index)}`;
export const sidecarCiphertextDir = (index: number): string => `${SIDECAR_ROOT}/cipher/${String(index)}`;

/** The sidecar's HTTP probe port and paths (startup: every artifact decrypted and verified; ready: not revoked). */
export const PROBE_PORT = 9460;
export const PROBE_STARTUP_PATH = '/startup';
export const PROBE_READY_PATH = '/ready';

/** The file an app writes into its output directory to say the output is complete and may be published. */
export const PUBLISH_COMPLETE_MARKER = '.strongroom-complete';

/** The sidecar's container command in the Strongroom image (docs/images.md): sidecar/main.ts bundled into one ESM
 * file with its packages at image build time (test/cluster/sidecar-bundle.ts), which starts faster than the sources. */
export const SIDECAR_COMMAND: readonly string[] = ['/usr/local/bin/node', '/app/dist/sidecar/main.js'];

/** Environment variables the webhook sets on the sidecar. */
export const ENV = {
  brokerAddress: 'STRONGROOM_BROKER_ADDRESS',
  attestAddress: 'STRONGROOM_ATTEST_ADDRESS',
  /** The DNS name the broker's serving certificate is checked against (`strongroom-broker.<operator ns>.svc`),
   * since the addresses above may be IPs (tests reach the host's broker at the pod bridge's gateway). */
  brokerServerName: 'STRONGROOM_BROKER_SERVER_NAME',
  /** The operator CA bundle (PEM) the sidecar verifies the broker with; never the public roots. */
  caBundle: 'STRONGROOM_CA_BUNDLE',
  tokenPath: 'STRONGROOM_TOKEN_PATH',
  /** JSON {@link SidecarPlan}. */
  plan: 'STRONGROOM_PLAN',
  probePort: 'STRONGROOM_PROBE_PORT',
  logLevel: 'STRONGROOM_LOG_LEVEL',
} as const;

/** S3 credentials reach the sidecar (never the app containers) as environment variables taken from the Secret
 * `spec.storage.s3.credentialsSecretRef.name` in the pod's namespace, one pair per distinct Secret, numbered from 0
 * in the order the pod's artifacts first use them: `STRONGROOM_S3_<i>_ACCESS_KEY_ID` and
 * `STRONGROOM_S3_<i>_SECRET_ACCESS_KEY`. {@link PlannedS3Source.credentialsEnv} names the pair of each artifact. */
export const S3_ENV_PREFIX = 'STRONGROOM_S3_';
export const s3AccessKeyIdEnv = (index: number): string => `${S3_ENV_PREFIX}${String(index)}_ACCESS_KEY_ID`;
export const s3SecretAccessKeyEnv = (index: number): string =>
  `${S3_ENV_PREFIX}${String(index)}_SECRET_ACCESS_KEY`;
/** Exactly the names {@link s3AccessKeyIdEnv} and {@link s3SecretAccessKeyEnv} make. */
export const S3_CREDENTIALS_ENV = /^STRONGROOM_S3_(0|[1-9][0-9]{0,3})_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)$/;
/** The keys of the credentials Secret (the names KServe's S3 Secrets and the AWS SDKs use). */
export const S3_SECRET_KEYS = {
  accessKeyId: 'AWS_ACCESS_KEY_ID',
  secretAccessKey: 'AWS_SECRET_ACCESS_KEY',
} as const;
/** `spec.storage.s3.region` when unset (the CRD's default). */
export const S3_DEFAULT_REGION = 'us-east-1';

/** Where an artifact stored in S3 (`spec.storage.s3`) is read from: the sidecar lists and fetches the objects
 * under `keyPrefix` itself; no volume is mounted. */
export interface PlannedS3Source {
  /** `spec.storage.s3.endpoint` (`http(s)://host[:port]`); absent means the AWS endpoint of `region`. */
  readonly endpoint?: string;
  /** `spec.storage.s3.region`, default {@link S3_DEFAULT_REGION}. */
  readonly region: string;
  readonly bucket: string;
  /** The version's ciphertext directory as a key prefix: `<s3.prefix>/<spec.storage.path>/<version.path ??
   * version.name>/`, empty segments dropped, always ending in '/' and never starting with one. */
  readonly keyPrefix: string;
  /** `spec.storage.s3.forcePathStyle`, default true. */
  readonly forcePathStyle: boolean;
  /** The names of the sidecar's environment variables holding the access key (see {@link S3_ENV_PREFIX}). */
  readonly credentialsEnv: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** One artifact the sidecar must decrypt. */
export interface PlannedArtifact {
  readonly namespace: string;
  readonly name: string;
  /** The artifact's uid, bound into every envelope's context. */
  readonly uid: string;
  /** A concrete version: the webhook resolves `latest` at admission. */
  readonly version: string;
  /** The version's recorded digest (`sha256:<hex>`), checked against the decrypted result. */
  readonly digest: string;
  /** The version's ciphertext directory (encryptDirectory's output), absolute path in the sidecar:
   * `<ciphertext volume>/<spec.storage.path>/<version.path ?? version.name>`. The empty string when the artifact
   * is stored in S3 ({@link s3} is set): then there is no ciphertext volume. */
  readonly ciphertextPath: string;
  /** Set when the artifact is stored in S3 (`spec.storage.s3`): where the sidecar fetches the ciphertext from. */
  readonly s3?: PlannedS3Source;
  /** Where the plaintext goes, absolute path in the sidecar (an emptyDir with medium Memory). */
  readonly plaintextDir: string;
  /** Where the app sees it (for logs and events only). */
  readonly mountPath: string;
}

/** Publish mode: encrypt the output directory and publish it as a new version. */
export interface PlannedPublish {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly version: string;
  /** The output directory, absolute path in the sidecar. */
  readonly outputDir: string;
  /** Where the new version's ciphertext directory is written, absolute path in the sidecar (on the artifact's
   * claim, mounted read-write in the sidecar only): `<volume>/<spec.storage.path>/<version>`. */
  readonly ciphertextPath: string;
  /** The artifact's recipient public key (base64 X25519, `status.recipientPublicKey`) the DEK is sealed to. */
  readonly recipientPublicKey: string;
  readonly mountPath: string;
}

/** What the sidecar does, as the webhook planned it (env {@link ENV.plan}). */
export interface SidecarPlan {
  readonly version: typeof INJECTION_VERSION;
  readonly artifacts: readonly PlannedArtifact[];
  readonly publish?: PlannedPublish;
}
