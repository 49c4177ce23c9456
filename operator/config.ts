/**
 * The operator's configuration: command-line flags and `STRONGROOM_*` environment variables, validated once at
 * start-up into one typed object. Each flag is one entry of {@link OPERATOR_FLAGS} (its name, variable, value type,
 * default, range and help); the parsing, `--help` and the flag table of docs/operator.md ({@link renderConfigDocs},
 * checked by config.test.ts) are all derived from it, by the machinery in flags.ts. Every flag `--foo-bar` has the
 * environment variable `STRONGROOM_FOO_BAR` (except `--kubeconfig`, which reads `KUBECONFIG`); a flag wins over its
 * variable, and an empty variable counts as unset. Anything invalid is a {@link ConfigError} naming the flag or
 * variable, the value and what is allowed: the operator never starts on a guess.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import { isDns1123Label, isDns1123Subdomain, isSpiffeTrustDomain } from '../core/api/validation.ts';
import {
  ConfigError,
  Expected,
  FlagSet,
  bool,
  checked,
  duration,
  flag,
  hostPort,
  integer,
  oneOf,
  text,
  type FlagType,
  type FlagValues,
  type HostPort,
  type ParsedFlags,
} from './flags.ts';

export { ConfigError } from './flags.ts';

/** Which KMS holds the key-encryption keys, with that provider's options. */
export type KmsConfig =
  | { provider: 'local' }
  | { provider: 'gcp'; keyRing: string; endpoint?: string }
  | { provider: 'pkcs11'; module: string; slot?: number; tokenLabel?: string; pinFile: string };

/** Lease-based leader election; the three durations follow client-go's rules. */
export interface LeaderElectionConfig {
  enabled: boolean;
  leaseName: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/**
 * The validated configuration of one operator process. What each field takes, and its default, is in
 * {@link OPERATOR_FLAGS} (the flag named in the comment).
 */
export interface OperatorConfig {
  /** --namespace: the operator's own namespace. */
  namespace: string;
  /** --kubeconfig; undefined means in-cluster configuration. */
  kubeconfig: string | undefined;
  /** --identity: this replica's identity, the Lease holder name. */
  identity: string;
  /** --health-address: where /healthz, /readyz and /metrics listen. Port 0 picks a free port (tests). */
  healthAddress: HostPort;
  logLevel: LogLevel;
  leaderElection: LeaderElectionConfig;
  /** --workers: concurrent reconcile workers per queue. */
  workers: number;
  kms: KmsConfig;
  /**
   * --kek-rotation: KEK rotation periods overriding the classification table's, exactly as given (e.g.
   * "restricted=30d,confidential=90d"); empty when not given.
   */
  rotation: string;
  /** --governance-config: the ConfigMap in the operator's namespace holding the classification table. */
  governanceConfig: string;
  resyncPeriodMs: number;
  watchStallTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** --audit-log-dir: absolute directory of the tamper-evident audit log. */
  auditLogDir: string;
  /**
   * --audit-signer: where the key that signs audit checkpoints lives: the Secret strongroom-audit-keys, or the KMS
   * (--kms gcp or pkcs11; docs/kms.md#checkpoint-signing-keys).
   */
  auditSigner: 'secret' | 'kms';
  broker: BrokerConfig;
  injection: InjectionConfig;
}

/** The sidecar-injecting webhook and what it injects (docs/injection.md). */
export interface InjectionConfig {
  /** --webhook-address: the webhook's HTTPS listener. */
  address: HostPort;
  /** --sidecar-image: the Strongroom image the sidecar runs. */
  image: string;
  imagePullPolicy: PullPolicy;
  /** --sidecar-broker-address and --sidecar-attest-address: where injected sidecars reach the broker's mutual-TLS
   * and Attest listeners, as host:port. */
  brokerAddress: string;
  attestAddress: string;
  /** --sidecar-broker-server-name: the name the sidecar checks the broker's serving certificate against. */
  brokerServerName: string;
}

/** The key broker's listeners and limits (docs/broker.md). */
export interface BrokerConfig {
  /** --broker-address: mutual-TLS listener (ReleaseKey, WatchRevocations, PublishVersion). */
  address: HostPort;
  /** --attest-address: server-TLS listener for Attest. */
  attestAddress: HostPort;
  /** --trust-domain: SPIFFE trust domain of workload certificates. */
  trustDomain: string;
  /** --cluster-name: cluster name in the audit log origin. */
  clusterName: string;
  /**
   * --audit-checkpoint-configmap: publish this replica's audit checkpoints to ConfigMap strongroom-audit-checkpoints
   * and refuse to open a log behind the published one (docs/audit.md#published-checkpoints).
   */
  auditCheckpointConfigMap: boolean;
  /** --dek-cache-ttl: how long an unwrapped DEK may stay cached. */
  dekCacheTtlMs: number;
  /** --broker-max-connection-age: connections are closed after this long. */
  maxConnectionAgeMs: number;
  /** --broker-credential-refresh: how often the serving certificate and CA bundle are re-read. */
  credentialRefreshMs: number;
  /** --pod-certificate-validity: the longest life of a pod certificate Attest issues (never past the token's expiry). */
  podCertificateValidityMs: number;
}

/** The sidecar image injected by default: this release's image. */
export const DEFAULT_SIDECAR_IMAGE = 'ghcr.io/strongroom/strongroom:0.1.0';

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
/** The log levels the operator accepts, most severe first. */
export type LogLevel = (typeof LOG_LEVELS)[number];
const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
/** The image pull policies a sidecar may be injected with. */
export type PullPolicy = (typeof PULL_POLICIES)[number];

// ---------------------------------------------------------------------------------------------------------------
// The value types of the operator's flags (flags.ts has the general ones)

const dnsLabel = checked(
  '<name>',
  'DNS-1123 label',
  'a DNS-1123 label (lower-case letters, digits and "-", at most 63)',
  (value) => isDns1123Label(value).length === 0,
);

const configMapName = checked(
  '<name>',
  'ConfigMap name (DNS-1123 subdomain)',
  'a ConfigMap name (lower-case letters, digits, "-" and ".", at most 253)',
  (value) => isDns1123Subdomain(value).length === 0,
);

const dnsName = checked(
  '<dns name>',
  'DNS name (DNS-1123 subdomain)',
  'a DNS name',
  (value) => isDns1123Subdomain(value).length === 0,
);

const clusterName = checked(
  '<name>',
  'DNS-1123 subdomain of at most 63 characters',
  'lower-case letters, digits, "." and "-", at most 63',
  (value) => value.length <= 63 && isDns1123Subdomain(value).length === 0,
);

const identity = checked(
  '<id>',
  '1–253 printable ASCII characters, no spaces',
  '1 to 253 printable ASCII characters without spaces',
  (value) => value.length <= 253 && /^[\x21-\x7e]+$/.test(value),
);

const absolutePath = checked('<dir>', 'absolute path', 'an absolute path', isAbsolute);

const gcpKeyRing = checked(
  '<name>',
  '`projects/P/locations/L/keyRings/R`',
  'projects/P/locations/L/keyRings/R',
  (value) =>
    /^projects\/[a-z0-9][a-z0-9.:-]{0,62}\/locations\/[a-z0-9-]{1,63}\/keyRings\/[a-zA-Z0-9_-]{1,63}$/.test(
      value,
    ),
);

const trustDomain = checked(
  '<domain>',
  'lower-case letters, digits, `.`, `-` and `_`',
  'a SPIFFE trust domain: lower-case letters, digits, ".", "-" and "_"',
  (value) => isSpiffeTrustDomain(value).length === 0,
);

const imageReference = checked(
  '<image>',
  'image reference',
  'an image reference such as registry.example/strongroom:1.0',
  (value) =>
    /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/.test(
      value,
    ),
);

/** A `host:port` sidecars dial, kept as given: a wildcard host is refused. */
const dialAddress: FlagType<string> = {
  arg: '<host:port>',
  doc: '`host:port` sidecars can dial (not a wildcard)',
  parse(value) {
    const address = hostPort.parse(value);
    if (address instanceof Expected) return address;
    return address.host === '0.0.0.0' || address.host === '::'
      ? new Expected('an address sidecars can dial, not a wildcard')
      : value;
  },
};

// ---------------------------------------------------------------------------------------------------------------
// The table

/**
 * Every flag of the operator, in `--help` order. The help, the parsing and the table in docs/operator.md
 * ({@link renderConfigDocs}) all come from here.
 */
export const OPERATOR_FLAGS = new FlagSet(
  {
    command: 'strongroom-operator',
    description: 'The Strongroom operator.',
    envPrefix: 'STRONGROOM_',
  },
  [
    flag('namespace', dnsLabel, { required: true, help: "the operator's own namespace" }),
    flag('kubeconfig', text('<path>', 'path'), {
      env: 'KUBECONFIG',
      unset: 'in-cluster',
      help: 'kubeconfig file',
    }),
    flag('identity', identity, {
      default: {
        text: '<hostname>_<8 random hex>',
        value: () => `${hostname()}_${randomBytes(4).toString('hex')}`,
      },
      help: 'Lease holder identity',
    }),
    flag('health-address', hostPort, {
      default: '0.0.0.0:8080',
      help: 'listener of /healthz, /readyz, /metrics and /audit/checkpoint',
    }),
    flag('log-level', oneOf('<level>', LOG_LEVELS), { default: 'info', help: 'log level' }),
    flag('leader-elect', bool, {
      default: 'true',
      negation: 'run without leader election (one replica only)',
      help: 'leader election',
    }),
    flag('lease-name', dnsLabel, { default: 'strongroom-operator', help: 'Lease used for leader election' }),
    flag('lease-duration', duration(), { default: '15s', help: 'leader Lease duration' }),
    flag('renew-deadline', duration(), {
      default: '10s',
      help: 'a leader not renewed within this gives up',
      doc: 'shorter than `--lease-duration`',
    }),
    flag('retry-period', duration(), {
      default: '2s',
      help: 'Lease acquire/renew interval',
      doc: 'shorter than `--renew-deadline`',
    }),
    flag('workers', integer(1, 64), { default: '4', help: 'reconcile workers per queue' }),
    flag('kms', oneOf('<provider>', ['local', 'gcp', 'pkcs11']), {
      default: 'local',
      help: 'the KMS holding the key-encryption keys',
      doc: '[kms.md](kms.md)',
    }),
    flag('gcp-key-ring', gcpKeyRing, {
      required: true,
      when: { flag: 'kms', is: 'gcp' },
      help: 'Cloud KMS key ring',
    }),
    flag('gcp-endpoint', text('<host[:port]>', '`host[:port]`'), {
      when: { flag: 'kms', is: 'gcp' },
      unset: "Google's",
      help: 'Cloud KMS API endpoint',
    }),
    flag('pkcs11-module', text('<path>', 'path'), {
      required: true,
      when: { flag: 'kms', is: 'pkcs11' },
      help: 'PKCS#11 module (.so) path',
    }),
    // The token is found by its label (core/kms/pkcs11.ts); a slot id may be given as well but does not replace it.
    flag('pkcs11-slot', integer(0), { when: { flag: 'kms', is: 'pkcs11' }, help: 'PKCS#11 slot id' }),
    flag('pkcs11-token-label', text('<label>', 'text'), {
      required: true,
      when: { flag: 'kms', is: 'pkcs11' },
      help: 'PKCS#11 token label',
    }),
    flag('pkcs11-pin-file', text('<path>', 'path'), {
      required: true,
      when: { flag: 'kms', is: 'pkcs11' },
      help: 'file holding the token user PIN',
      doc: 'the PIN itself is never a flag or a variable',
    }),
    flag('kek-rotation', text('<policy>', '`<classification>=<duration>,…`'), {
      unset: "the classification table's",
      help: 'override KEK rotation periods of the classification table, e.g. restricted=30d,confidential=90d',
      doc: 'periods from 1s, so tests can watch a rotation',
    }),
    flag('governance-config', configMapName, {
      default: 'strongroom-governance',
      help: "ConfigMap in the operator's namespace holding the classification table",
      doc: '[policy.md](policy.md)',
    }),
    flag('resync-period', duration(), { default: '10m', help: 'periodic relist of every watched resource' }),
    flag('watch-stall-timeout', duration(), { default: '90s', help: 'restart a watch silent this long' }),
    flag('shutdown-timeout', duration(), { default: '25s', help: 'graceful shutdown deadline' }),
    flag('audit-log-dir', absolutePath, {
      default: '/var/lib/strongroom/audit',
      help: 'audit log directory',
    }),
    flag('audit-signer', oneOf('<where>', ['secret', 'kms']), {
      default: 'secret',
      help: 'where the audit checkpoint signing key lives: Secret strongroom-audit-keys, or the KMS',
      doc: '`kms` needs `--kms` gcp or pkcs11; [kms.md](kms.md#checkpoint-signing-keys)',
    }),
    flag('broker-address', hostPort, {
      default: '0.0.0.0:9444',
      help: 'key broker mutual-TLS listener: ReleaseKey, WatchRevocations, PublishVersion',
    }),
    flag('attest-address', hostPort, {
      default: '0.0.0.0:9443',
      help: 'key broker server-TLS listener: Attest',
    }),
    flag('trust-domain', trustDomain, {
      default: 'cluster.local',
      help: 'SPIFFE trust domain of workload certificates',
    }),
    flag('cluster-name', clusterName, {
      default: 'kubernetes',
      help: 'cluster name in the audit log origin',
      doc: 'the origin is `strongroom.audit/<cluster>/<writer>`',
    }),
    flag('audit-checkpoint-configmap', bool, {
      default: 'true',
      negation:
        'neither publish audit checkpoints nor check the log against the published one (an audit log that does not outlive its pod)',
      help: 'publish audit checkpoints to ConfigMap strongroom-audit-checkpoints; refuse to open a log behind them',
      doc: '[audit.md](audit.md#published-checkpoints)',
    }),
    flag('dek-cache-ttl', duration({ min: '0s', max: '60s' }), {
      default: '5s',
      help: 'how long an unwrapped DEK may stay cached',
      doc: '0s: every release unwraps through the KMS',
    }),
    flag('broker-max-connection-age', duration({ min: '1s', max: '1h' }), {
      default: '10m',
      help: 'the longest life of a broker connection',
    }),
    flag('broker-credential-refresh', duration({ min: '1s', max: '1h' }), {
      default: '30s',
      help: "how often the broker's and the webhook's serving certificates and the CA bundle are re-read",
    }),
    flag('pod-certificate-validity', duration({ min: '1m', max: '1h' }), {
      default: '1h',
      help: "longest life of a pod certificate from Attest, never past the pod's token",
      doc: 'the webhook asks for 10-minute tokens; sidecars renew at 2/3',
    }),
    flag('webhook-address', hostPort, {
      default: '0.0.0.0:9445',
      help: 'sidecar-injecting webhook HTTPS listener',
      doc: 'every replica serves it',
    }),
    flag('sidecar-image', imageReference, {
      default: DEFAULT_SIDECAR_IMAGE,
      help: 'image of the injected sidecar',
      doc: '[images.md](images.md)',
    }),
    flag('sidecar-image-pull-policy', oneOf('<policy>', PULL_POLICIES), {
      default: 'IfNotPresent',
      help: 'pull policy of the injected sidecar',
    }),
    flag('sidecar-broker-address', dialAddress, {
      default: 'strongroom-broker.<namespace>.svc:9444',
      help: 'where sidecars reach the broker',
    }),
    flag('sidecar-attest-address', dialAddress, {
      default: 'strongroom-broker.<namespace>.svc:9443',
      help: 'where sidecars reach Attest',
    }),
    flag('sidecar-broker-server-name', dnsName, {
      default: 'strongroom-broker.<namespace>.svc',
      help: "the broker certificate's name sidecars check",
      doc: 'the addresses may be IPs',
    }),
  ],
);

type OperatorFlags = (typeof OPERATOR_FLAGS)['flags'];

/**
 * The Configuration table of docs/operator.md, rendered from {@link OPERATOR_FLAGS} (operator/config.test.ts checks
 * that the docs hold exactly this).
 */
export function renderConfigDocs(): string {
  return OPERATOR_FLAGS.markdownTable();
}

// ---------------------------------------------------------------------------------------------------------------
// From flag values to the configuration

/**
 * Parses the operator's flags (`argv` without the node binary and script) and environment into a validated
 * configuration. Pure apart from the default identity's hostname and randomness. Flags win over environment
 * variables. Throws {@link ConfigError} on anything invalid, unknown, or missing, and for `--help`.
 */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const parsed = OPERATOR_FLAGS.parse(argv, env);
  const v = parsed.values;
  return {
    namespace: v.namespace,
    kubeconfig: v.kubeconfig,
    identity: v.identity,
    healthAddress: v['health-address'],
    logLevel: v['log-level'],
    leaderElection: leaderElection(parsed),
    workers: v.workers,
    kms: kms(v),
    rotation: v['kek-rotation'] ?? '',
    governanceConfig: v['governance-config'],
    resyncPeriodMs: v['resync-period'],
    watchStallTimeoutMs: v['watch-stall-timeout'],
    shutdownTimeoutMs: v['shutdown-timeout'],
    auditLogDir: v['audit-log-dir'],
    auditSigner: auditSigner(parsed),
    broker: {
      address: v['broker-address'],
      attestAddress: v['attest-address'],
      trustDomain: v['trust-domain'],
      clusterName: v['cluster-name'],
      auditCheckpointConfigMap: v['audit-checkpoint-configmap'],
      dekCacheTtlMs: v['dek-cache-ttl'],
      maxConnectionAgeMs: v['broker-max-connection-age'],
      credentialRefreshMs: v['broker-credential-refresh'],
      podCertificateValidityMs: v['pod-certificate-validity'],
    },
    injection: {
      address: v['webhook-address'],
      image: v['sidecar-image'],
      imagePullPolicy: v['sidecar-image-pull-policy'],
      brokerAddress: v['sidecar-broker-address'],
      attestAddress: v['sidecar-attest-address'],
      brokerServerName: v['sidecar-broker-server-name'],
    },
  };
}

/**
 * Client-go's rule, retry period < renew deadline < lease duration, checked even with leader election off so that
 * turning it on cannot start a misconfigured elector.
 */
function leaderElection({ values: v, from }: ParsedFlags<OperatorFlags>): LeaderElectionConfig {
  const config: LeaderElectionConfig = {
    enabled: v['leader-elect'],
    leaseName: v['lease-name'],
    leaseDurationMs: v['lease-duration'],
    renewDeadlineMs: v['renew-deadline'],
    retryPeriodMs: v['retry-period'],
  };
  if (config.renewDeadlineMs >= config.leaseDurationMs) {
    throw new ConfigError(
      `--renew-deadline (${config.renewDeadlineMs}ms) must be shorter than --lease-duration (${config.leaseDurationMs}ms)`,
      { setting: from['renew-deadline'] ?? from['lease-duration'] },
    );
  }
  if (config.retryPeriodMs >= config.renewDeadlineMs) {
    throw new ConfigError(
      `--retry-period (${config.retryPeriodMs}ms) must be shorter than --renew-deadline (${config.renewDeadlineMs}ms)`,
      { setting: from['retry-period'] ?? from['renew-deadline'] },
    );
  }
  return config;
}

/** --audit-signer kms needs a KMS that can hold an Ed25519 signing key: the local provider cannot. */
function auditSigner({ values: v, from }: ParsedFlags<OperatorFlags>): 'secret' | 'kms' {
  const signer = v['audit-signer'];
  if (signer === 'kms' && v.kms === 'local') {
    throw new ConfigError(
      '--audit-signer=kms needs --kms gcp or pkcs11: the local KMS keeps its keys in a Secret, so a key in it would ' +
        'protect nothing more than --audit-signer=secret',
      { setting: from['audit-signer'] ?? from.kms },
    );
  }
  return signer;
}

/** The chosen provider's options; the flag set has already required them and refused other providers'. */
function kms(v: FlagValues<OperatorFlags>): KmsConfig {
  switch (v.kms) {
    case 'local':
      return { provider: 'local' };
    case 'gcp': {
      const endpoint = v['gcp-endpoint'];
      const keyRing = given(v['gcp-key-ring']);
      return endpoint === undefined ? { provider: 'gcp', keyRing } : { provider: 'gcp', keyRing, endpoint };
    }
    case 'pkcs11': {
      const slot = v['pkcs11-slot'];
      const config: KmsConfig = {
        provider: 'pkcs11',
        module: given(v['pkcs11-module']),
        tokenLabel: given(v['pkcs11-token-label']),
        pinFile: given(v['pkcs11-pin-file']),
      };
      if (slot !== undefined) config.slot = slot;
      return config;
    }
  }
}

/** A required flag's value (the flag set refuses to go on without it). */
function given<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('a required flag has no value');
  return value;
}
