/**
 * The operator's configuration: command-line flags and `STRONGROOM_*` environment variables, validated once at
 * start-up into one typed object. Every flag `--foo-bar` has the environment variable `STRONGROOM_FOO_BAR`
 * (except `--kubeconfig`, which reads `KUBECONFIG`); a flag wins over its variable, and an empty variable counts as
 * unset. Anything invalid is a {@link ConfigError} naming the flag or variable, the value and what is allowed: the
 * operator never starts on a guess.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import { Command, CommanderError, Option } from 'commander';

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

/** The validated configuration of one operator process. */
export interface OperatorConfig {
  /** The operator's own namespace (a DNS-1123 label). */
  namespace: string;
  /** Path of a kubeconfig file; undefined means in-cluster configuration. */
  kubeconfig: string | undefined;
  /** This replica's identity, the Lease holder name. */
  identity: string;
  /** Where /healthz, /readyz and /metrics listen. Port 0 picks a free port (tests). */
  healthAddress: { host: string; port: number };
  logLevel: LogLevel;
  leaderElection: LeaderElectionConfig;
  /** Concurrent reconcile workers per queue, 1 to 64. */
  workers: number;
  kms: KmsConfig;
  /**
   * KEK rotation periods overriding the classification table's, exactly as given (e.g.
   * "restricted=30d,confidential=90d"); empty when not given.
   */
  rotation: string;
  /** Name of the ConfigMap in the operator's namespace holding the classification table (a DNS-1123 subdomain). */
  governanceConfig: string;
  resyncPeriodMs: number;
  watchStallTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** Absolute directory of the tamper-evident audit log. */
  auditLogDir: string;
  broker: BrokerConfig;
  injection: InjectionConfig;
}

/** The sidecar-injecting webhook and what it injects (docs/injection.md). */
export interface InjectionConfig {
  /** The webhook's HTTPS listener. Default 0.0.0.0:9445. */
  address: { host: string; port: number };
  /** The Strongroom image the sidecar runs. */
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** Where injected sidecars reach the broker's mutual-TLS and Attest listeners, as host:port. */
  brokerAddress: string;
  attestAddress: string;
  /** The name the sidecar checks the broker's serving certificate against. */
  brokerServerName: string;
}

/** The key broker's listeners and limits (docs/broker.md). */
export interface BrokerConfig {
  /** Mutual-TLS listener (ReleaseKey, WatchRevocations, PublishVersion). Default 0.0.0.0:9444. */
  address: { host: string; port: number };
  /** Server-TLS listener for Attest. Default 0.0.0.0:9443. */
  attestAddress: { host: string; port: number };
  /** SPIFFE trust domain of workload certificates. Default cluster.local. */
  trustDomain: string;
  /** Cluster name in the audit log origin. Default kubernetes. */
  clusterName: string;
  /** How long an unwrapped DEK may stay cached, 0 to 60 s. Default 5 s. */
  dekCacheTtlMs: number;
  /** Connections are closed after this long (1 s to 1 h). Default 10 min. */
  maxConnectionAgeMs: number;
  /** How often the serving certificate and CA bundle are re-read. Default 30 s. */
  credentialRefreshMs: number;
  /** The longest life of a pod certificate Attest issues (1 min to 1 h; never past the token's expiry). Default 1 h. */
  podCertificateValidityMs: number;
}

/** The sidecar image injected by default: this release's image. */
export const DEFAULT_SIDECAR_IMAGE = 'ghcr.io/strongroom/strongroom:0.1.0';

/** The log levels the operator accepts, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/**
 * Invalid configuration, or `--help`. The message names the flag or environment variable, the bad value and what
 * is allowed. When `helpRequested` is true the message is the help text: print it and exit 0.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The flag or environment variable at fault, when there is one. */
  readonly setting: string | undefined;
  readonly helpRequested: boolean;
  constructor(
    message: string,
    options?: ErrorOptions & { setting?: string | undefined; helpRequested?: boolean | undefined },
  ) {
    super(message, options);
    this.setting = options?.setting;
    this.helpRequested = options?.helpRequested ?? false;
  }
}

/** Longest duration a Node.js timer can hold (about 24.8 days); longer ones would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const GCP_KEY_RING =
  /^projects\/[a-z0-9][a-z0-9.:-]{0,62}\/locations\/[a-z0-9-]{1,63}\/keyRings\/[a-zA-Z0-9_-]{1,63}$/;

/** One setting: its flag, its environment variable, and the commander option key. */
interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly key: string;
  readonly arg: string;
  readonly help: string;
}

function setting(flag: string, arg: string, help: string, env?: string): Setting {
  const bare = flag.slice(2);
  return {
    flag,
    env: env ?? `STRONGROOM_${bare.toUpperCase().replaceAll('-', '_')}`,
    key: bare.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
    arg,
    help,
  };
}

const S = {
  namespace: setting('--namespace', '<name>', "the operator's own namespace (required)"),
  kubeconfig: setting('--kubeconfig', '<path>', 'kubeconfig file; unset = in-cluster', 'KUBECONFIG'),
  identity: setting('--identity', '<id>', 'Lease holder identity (default: <hostname>_<8 random hex>)'),
  healthAddress: setting(
    '--health-address',
    '<host:port>',
    'health and metrics listener (default 0.0.0.0:8080)',
  ),
  logLevel: setting('--log-level', '<level>', 'error, warn, info or debug (default info)'),
  leaseName: setting(
    '--lease-name',
    '<name>',
    'Lease used for leader election (default strongroom-operator)',
  ),
  leaseDuration: setting('--lease-duration', '<duration>', 'leader Lease duration (default 15s)'),
  renewDeadline: setting(
    '--renew-deadline',
    '<duration>',
    'leader gives up if not renewed within (default 10s)',
  ),
  retryPeriod: setting('--retry-period', '<duration>', 'Lease acquire/renew interval (default 2s)'),
  workers: setting('--workers', '<n>', 'reconcile workers per queue, 1-64 (default 4)'),
  kms: setting('--kms', '<provider>', 'local, gcp or pkcs11 (default local)'),
  gcpKeyRing: setting('--gcp-key-ring', '<name>', 'projects/P/locations/L/keyRings/R (with --kms gcp)'),
  gcpEndpoint: setting('--gcp-endpoint', '<host[:port]>', 'Cloud KMS API endpoint (with --kms gcp)'),
  pkcs11Module: setting('--pkcs11-module', '<path>', 'PKCS#11 module (.so) path (with --kms pkcs11)'),
  pkcs11Slot: setting('--pkcs11-slot', '<n>', 'PKCS#11 slot id (with --kms pkcs11)'),
  pkcs11TokenLabel: setting('--pkcs11-token-label', '<label>', 'PKCS#11 token label (with --kms pkcs11)'),
  pkcs11PinFile: setting(
    '--pkcs11-pin-file',
    '<path>',
    'file holding the token user PIN (with --kms pkcs11)',
  ),
  kekRotation: setting(
    '--kek-rotation',
    '<policy>',
    'override KEK rotation periods of the classification table, e.g. restricted=30d,confidential=90d',
  ),
  governanceConfig: setting(
    '--governance-config',
    '<name>',
    "ConfigMap in the operator's namespace holding the classification table (default strongroom-governance)",
  ),
  resyncPeriod: setting(
    '--resync-period',
    '<duration>',
    'periodic relist of every watched resource (default 10m)',
  ),
  watchStallTimeout: setting(
    '--watch-stall-timeout',
    '<duration>',
    'restart a silent watch after (default 90s)',
  ),
  shutdownTimeout: setting('--shutdown-timeout', '<duration>', 'graceful shutdown deadline (default 25s)'),
  brokerAddress: setting(
    '--broker-address',
    '<host:port>',
    'key broker mutual-TLS listener (default 0.0.0.0:9444)',
  ),
  attestAddress: setting(
    '--attest-address',
    '<host:port>',
    'key broker Attest listener (default 0.0.0.0:9443)',
  ),
  trustDomain: setting(
    '--trust-domain',
    '<domain>',
    'SPIFFE trust domain of workload certificates (default cluster.local)',
  ),
  clusterName: setting(
    '--cluster-name',
    '<name>',
    'cluster name in the audit log origin (default kubernetes)',
  ),
  dekCacheTtl: setting(
    '--dek-cache-ttl',
    '<duration>',
    'how long an unwrapped DEK may stay cached, 0s-60s (default 5s)',
  ),
  podCertificateValidity: setting(
    '--pod-certificate-validity',
    '<duration>',
    "longest life of a pod certificate, 1m-1h, never past the pod's token (default 1h)",
  ),
  brokerMaxConnectionAge: setting(
    '--broker-max-connection-age',
    '<duration>',
    'close broker connections after, 1s-1h (default 10m)',
  ),
  brokerCredentialRefresh: setting(
    '--broker-credential-refresh',
    '<duration>',
    're-read the serving certificate every (default 30s)',
  ),
  webhookAddress: setting(
    '--webhook-address',
    '<host:port>',
    'sidecar-injecting webhook HTTPS listener (default 0.0.0.0:9445)',
  ),
  sidecarImage: setting(
    '--sidecar-image',
    '<image>',
    `image of the injected sidecar (default ${DEFAULT_SIDECAR_IMAGE})`,
  ),
  sidecarImagePullPolicy: setting(
    '--sidecar-image-pull-policy',
    '<policy>',
    'Always, IfNotPresent or Never (default IfNotPresent)',
  ),
  sidecarBrokerAddress: setting(
    '--sidecar-broker-address',
    '<host:port>',
    'where sidecars reach the broker (default strongroom-broker.<namespace>.svc:9444)',
  ),
  sidecarAttestAddress: setting(
    '--sidecar-attest-address',
    '<host:port>',
    'where sidecars reach Attest (default strongroom-broker.<namespace>.svc:9443)',
  ),
  sidecarBrokerServerName: setting(
    '--sidecar-broker-server-name',
    '<dns name>',
    "the broker certificate's name sidecars check (default strongroom-broker.<namespace>.svc)",
  ),
  auditLogDir: setting('--audit-log-dir', '<dir>', 'audit log directory (default /var/lib/strongroom/audit)'),
} as const;

const LEADER_ELECT_ENV = 'STRONGROOM_LEADER_ELECT';

function buildCommand(output: { out: string; err: string }): Command {
  const command = new Command('strongroom-operator')
    .description('The Strongroom operator. Every flag --foo-bar also reads STRONGROOM_FOO_BAR; flags win.')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => {
        output.out += text;
      },
      writeErr: (text) => {
        output.err += text;
      },
      outputError: () => undefined,
      getOutHelpWidth: () => 100,
      getErrHelpWidth: () => 100,
    })
    .allowExcessArguments(false)
    .allowUnknownOption(false)
    .helpOption('-h, --help', 'show this help');
  for (const s of Object.values(S)) {
    command.addOption(new Option(`${s.flag} ${s.arg}`, `${s.help} [env ${s.env}]`));
  }
  command.addOption(
    new Option('--leader-elect [bool]', `leader election (default true) [env ${LEADER_ELECT_ENV}]`),
  );
  command.addOption(new Option('--no-leader-elect', 'run without leader election (one replica only)'));
  return command;
}

/** A raw value and where it came from (the flag or the environment variable), for error messages. */
interface Raw {
  readonly value: string;
  readonly from: string;
}

function invalid(raw: Raw, allowed: string): ConfigError {
  return new ConfigError(`${raw.from}=${JSON.stringify(raw.value)} is invalid: ${allowed}`, {
    setting: raw.from,
  });
}

function parseDurationMs(raw: Raw): number {
  const allowed = 'expected a positive Go-style duration such as 500ms, 15s, 10m or 1h30m, at most 596h';
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(raw.value)) throw invalid(raw, allowed);
  const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const [, amount, , unit] of raw.value.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * (unitMs[unit ?? ''] ?? Number.NaN);
  }
  const ms = Math.round(total);
  if (!Number.isFinite(ms) || ms < 1 || ms > MAX_TIMER_MS) throw invalid(raw, allowed);
  return ms;
}

function parseIntegerIn(raw: Raw, min: number, max: number): number {
  const n = Number(raw.value);
  if (!/^[0-9]+$/.test(raw.value) || n < min || n > max) {
    throw invalid(raw, `expected an integer from ${min} to ${max}`);
  }
  return n;
}

function parseHostPort(raw: Raw): { host: string; port: number } {
  const allowed = 'expected host:port, [ipv6]:port or :port with a port from 0 to 65535';
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):([0-9]{1,5})$/.exec(raw.value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw invalid(raw, allowed);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

function parseBool(raw: Raw): boolean {
  if (raw.value === 'true' || raw.value === '1') return true;
  if (raw.value === 'false' || raw.value === '0') return false;
  throw invalid(raw, 'expected true or false');
}

function nonEmpty(raw: Raw): string {
  if (raw.value.trim() === '') throw invalid(raw, 'expected a non-empty value');
  return raw.value;
}

/** Reads settings from parsed flags first, then from the environment (empty variables count as unset). */
class Sources {
  readonly #flags: Record<string, unknown>;
  readonly #env: NodeJS.ProcessEnv;
  constructor(flags: Record<string, unknown>, env: NodeJS.ProcessEnv) {
    this.#flags = flags;
    this.#env = env;
  }

  get(s: Setting): Raw | undefined {
    const flag = this.#flags[s.key];
    if (typeof flag === 'string') return { value: flag, from: s.flag };
    const env = this.#env[s.env];
    if (env !== undefined && env !== '') return { value: env, from: s.env };
    return undefined;
  }

  leaderElect(): Raw | undefined {
    const flag = this.#flags['leaderElect'];
    if (flag === true) return { value: 'true', from: '--leader-elect' };
    if (flag === false) return { value: 'false', from: '--no-leader-elect' };
    if (typeof flag === 'string') return { value: flag, from: '--leader-elect' };
    const env = this.#env[LEADER_ELECT_ENV];
    if (env !== undefined && env !== '') return { value: env, from: LEADER_ELECT_ENV };
    return undefined;
  }
}

function parseFlags(argv: readonly string[]): Record<string, unknown> {
  const output = { out: '', err: '' };
  const command = buildCommand(output);
  try {
    command.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') {
        throw new ConfigError(output.out, { cause: err, helpRequested: true });
      }
      throw new ConfigError(err.message.replace(/^error: /, ''), { cause: err });
    }
    throw err;
  }
  return command.opts();
}

function parseLeaderElection(src: Sources): LeaderElectionConfig {
  const elect = src.leaderElect();
  const leaseName = src.get(S.leaseName);
  if (leaseName && !DNS1123_LABEL.test(leaseName.value)) {
    throw invalid(leaseName, 'expected a DNS-1123 label (lower-case letters, digits and "-", at most 63)');
  }
  const duration = src.get(S.leaseDuration);
  const renew = src.get(S.renewDeadline);
  const retry = src.get(S.retryPeriod);
  const config: LeaderElectionConfig = {
    enabled: elect ? parseBool(elect) : true,
    leaseName: leaseName?.value ?? 'strongroom-operator',
    leaseDurationMs: duration ? parseDurationMs(duration) : 15_000,
    renewDeadlineMs: renew ? parseDurationMs(renew) : 10_000,
    retryPeriodMs: retry ? parseDurationMs(retry) : 2_000,
  };
  if (config.renewDeadlineMs >= config.leaseDurationMs) {
    throw new ConfigError(
      `${S.renewDeadline.flag} (${config.renewDeadlineMs}ms) must be shorter than ${S.leaseDuration.flag} (${config.leaseDurationMs}ms)`,
      { setting: renew?.from ?? duration?.from },
    );
  }
  if (config.retryPeriodMs >= config.renewDeadlineMs) {
    throw new ConfigError(
      `${S.retryPeriod.flag} (${config.retryPeriodMs}ms) must be shorter than ${S.renewDeadline.flag} (${config.renewDeadlineMs}ms)`,
      { setting: retry?.from ?? renew?.from },
    );
  }
  return config;
}

const GCP_SETTINGS = [S.gcpKeyRing, S.gcpEndpoint];
const PKCS11_SETTINGS = [S.pkcs11Module, S.pkcs11Slot, S.pkcs11TokenLabel, S.pkcs11PinFile];

function rejectForeign(src: Sources, provider: string, settings: readonly Setting[]): void {
  for (const s of settings) {
    const raw = src.get(s);
    if (raw) {
      throw new ConfigError(
        `${raw.from} does not apply to --kms ${provider}; remove it or choose the right --kms`,
        {
          setting: raw.from,
        },
      );
    }
  }
}

function required(src: Sources, s: Setting, provider: string): string {
  const raw = src.get(s);
  if (!raw) {
    throw new ConfigError(`--kms ${provider} needs ${s.flag} (or ${s.env})`, { setting: s.flag });
  }
  return nonEmpty(raw);
}

function parseKms(src: Sources): KmsConfig {
  const raw = src.get(S.kms);
  const provider = raw?.value ?? 'local';
  if (provider === 'local') {
    rejectForeign(src, provider, [...GCP_SETTINGS, ...PKCS11_SETTINGS]);
    return { provider };
  }
  if (provider === 'gcp') {
    rejectForeign(src, provider, PKCS11_SETTINGS);
    const keyRing = required(src, S.gcpKeyRing, provider);
    const keyRingRaw = src.get(S.gcpKeyRing);
    if (keyRingRaw && !GCP_KEY_RING.test(keyRing)) {
      throw invalid(keyRingRaw, 'expected projects/P/locations/L/keyRings/R');
    }
    const endpoint = src.get(S.gcpEndpoint);
    return endpoint ? { provider, keyRing, endpoint: nonEmpty(endpoint) } : { provider, keyRing };
  }
  if (provider === 'pkcs11') {
    rejectForeign(src, provider, GCP_SETTINGS);
    return parsePkcs11(src);
  }
  throw invalid(raw ?? { value: provider, from: S.kms.flag }, 'expected local, gcp or pkcs11');
}

function parsePkcs11(src: Sources): KmsConfig {
  // The token is found by its label (core/kms/pkcs11.ts); a slot id may be given as well but does not replace it.
  const module = required(src, S.pkcs11Module, 'pkcs11');
  const tokenLabel = required(src, S.pkcs11TokenLabel, 'pkcs11');
  const pinFile = required(src, S.pkcs11PinFile, 'pkcs11');
  const slotRaw = src.get(S.pkcs11Slot);
  const config: KmsConfig = { provider: 'pkcs11', module, tokenLabel, pinFile };
  if (slotRaw) config.slot = parseIntegerIn(slotRaw, 0, Number.MAX_SAFE_INTEGER);
  return config;
}

function parseAbsolutePath(raw: Raw): string {
  if (!isAbsolute(raw.value)) throw invalid(raw, 'expected an absolute path');
  return raw.value;
}

function parseIdentity(raw: Raw | undefined): string {
  if (!raw) return `${hostname()}_${randomBytes(4).toString('hex')}`;
  if (raw.value.length > 253 || !/^[\x21-\x7e]+$/.test(raw.value)) {
    throw invalid(raw, 'expected 1 to 253 printable ASCII characters without spaces');
  }
  return raw.value;
}

function parseNamespace(raw: Raw | undefined): string {
  if (!raw) {
    throw new ConfigError(`${S.namespace.flag} (or ${S.namespace.env}) is required`, {
      setting: S.namespace.flag,
    });
  }
  if (!DNS1123_LABEL.test(raw.value)) {
    throw invalid(raw, 'expected a DNS-1123 label (lower-case letters, digits and "-", at most 63)');
  }
  return raw.value;
}

function parseConfigMapName(raw: Raw): string {
  if (raw.value.length > 253 || !DNS_NAME.test(raw.value)) {
    throw invalid(raw, 'expected a ConfigMap name (lower-case letters, digits, "-" and ".", at most 253)');
  }
  return raw.value;
}

function parseLogLevel(raw: Raw | undefined): LogLevel {
  if (!raw) return 'info';
  const level = LOG_LEVELS.find((l) => l === raw.value);
  if (!level) throw invalid(raw, `expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

/**
 * Parses the operator's flags (`argv` without the node binary and script) and environment into a validated
 * configuration. Pure apart from the default identity's hostname and randomness. Flags win over environment
 * variables. Throws {@link ConfigError} on anything invalid, unknown, or missing, and for `--help`.
 */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const src = new Sources(parseFlags(argv), env);
  const get = (s: Setting): Raw | undefined => src.get(s);
  const kubeconfig = get(S.kubeconfig);
  const health = get(S.healthAddress);
  const workers = get(S.workers);
  const namespace = parseNamespace(get(S.namespace));
  const rotation = get(S.kekRotation);
  const governance = get(S.governanceConfig);
  const resync = get(S.resyncPeriod);
  const stall = get(S.watchStallTimeout);
  const shutdown = get(S.shutdownTimeout);
  const auditLogDir = get(S.auditLogDir);
  return {
    namespace,
    kubeconfig: kubeconfig ? nonEmpty(kubeconfig) : undefined,
    identity: parseIdentity(get(S.identity)),
    healthAddress: health ? parseHostPort(health) : { host: '0.0.0.0', port: 8080 },
    logLevel: parseLogLevel(get(S.logLevel)),
    leaderElection: parseLeaderElection(src),
    workers: workers ? parseIntegerIn(workers, 1, 64) : 4,
    kms: parseKms(src),
    rotation: rotation ? nonEmpty(rotation) : '',
    governanceConfig: governance ? parseConfigMapName(governance) : 'strongroom-governance',
    resyncPeriodMs: resync ? parseDurationMs(resync) : 600_000,
    watchStallTimeoutMs: stall ? parseDurationMs(stall) : 90_000,
    shutdownTimeoutMs: shutdown ? parseDurationMs(shutdown) : 25_000,
    auditLogDir: auditLogDir ? parseAbsolutePath(auditLogDir) : '/var/lib/strongroom/audit',
    broker: parseBroker(get),
    injection: parseInjection(get, namespace),
  };
}

const IMAGE_REF =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;
const DNS_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function parseInjection(get: (s: Setting) => Raw | undefined, namespace: string): InjectionConfig {
  const address = get(S.webhookAddress);
  const image = get(S.sidecarImage);
  const policy = get(S.sidecarImagePullPolicy);
  const broker = get(S.sidecarBrokerAddress);
  const attest = get(S.sidecarAttestAddress);
  const serverName = get(S.sidecarBrokerServerName);
  if (image && !IMAGE_REF.test(image.value))
    throw invalid(image, 'expected an image reference such as registry.example/strongroom:1.0');
  if (policy && !['Always', 'IfNotPresent', 'Never'].includes(policy.value))
    throw invalid(policy, 'expected Always, IfNotPresent or Never');
  const endpoint = (raw: Raw | undefined, port: number): string => {
    if (!raw) return `strongroom-broker.${namespace}.svc:${String(port)}`;
    const parsed = parseHostPort(raw);
    if (parsed.host === '0.0.0.0' || parsed.host === '')
      throw invalid(raw, 'expected an address sidecars can dial, not a wildcard');
    return raw.value;
  };
  if (serverName && !DNS_NAME.test(serverName.value)) throw invalid(serverName, 'expected a DNS name');
  return {
    address: address ? parseHostPort(address) : { host: '0.0.0.0', port: 9445 },
    image: image?.value ?? DEFAULT_SIDECAR_IMAGE,
    imagePullPolicy: (policy?.value ?? 'IfNotPresent') as InjectionConfig['imagePullPolicy'],
    brokerAddress: endpoint(broker, 9444),
    attestAddress: endpoint(attest, 9443),
    brokerServerName: serverName?.value ?? `strongroom-broker.${namespace}.svc`,
  };
}

function parseBroker(get: (s: Setting) => Raw | undefined): BrokerConfig {
  const address = get(S.brokerAddress);
  const attestAddress = get(S.attestAddress);
  const trustDomain = get(S.trustDomain);
  const clusterName = get(S.clusterName);
  const ttl = get(S.dekCacheTtl);
  const age = get(S.brokerMaxConnectionAge);
  const refresh = get(S.brokerCredentialRefresh);
  const podValidity = get(S.podCertificateValidity);
  const within = (raw: Raw, min: number, max: number, what: string): number => {
    const ms = raw.value === '0' || raw.value === '0s' ? 0 : parseDurationMs(raw);
    if (ms < min || ms > max) throw invalid(raw, what);
    return ms;
  };
  if (trustDomain && !/^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$/.test(trustDomain.value))
    throw invalid(
      trustDomain,
      'expected a SPIFFE trust domain: lower-case letters, digits, ".", "-" and "_"',
    );
  if (clusterName && !/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/.test(clusterName.value))
    throw invalid(clusterName, 'expected lower-case letters, digits, "." and "-", at most 63');
  return {
    address: address ? parseHostPort(address) : { host: '0.0.0.0', port: 9444 },
    attestAddress: attestAddress ? parseHostPort(attestAddress) : { host: '0.0.0.0', port: 9443 },
    trustDomain: trustDomain?.value ?? 'cluster.local',
    clusterName: clusterName?.value ?? 'kubernetes',
    dekCacheTtlMs: ttl ? within(ttl, 0, 60_000, 'expected a duration from 0s to 60s') : 5000,
    maxConnectionAgeMs: age ? within(age, 1000, 3_600_000, 'expected a duration from 1s to 1h') : 600_000,
    credentialRefreshMs: refresh
      ? within(refresh, 1000, 3_600_000, 'expected a duration from 1s to 1h')
      : 30_000,
    podCertificateValidityMs: podValidity
      ? within(podValidity, 60_000, 3_600_000, 'expected a duration from 1m to 1h')
      : 3_600_000,
  };
}
