/**
 * The sidecar's configuration: the environment the injecting webhook sets (core/injection/contract.ts `ENV`), read
 * once at start-up and validated strictly. Anything missing or malformed is a {@link ConfigError} naming the
 * variable; main.ts turns it into exit code 2 before anything else happens.
 */
import { X509Certificate } from 'node:crypto';
import { isAbsolute, normalize } from 'node:path';
import {
  isDns1123Label,
  isDns1123Subdomain,
  isRelativePath,
  isS3BucketName,
  isS3Endpoint,
  isS3Region,
  isSha256Digest,
} from '../core/api/validation.ts';
import {
  ENV,
  S3_CREDENTIALS_ENV,
  type PlannedS3Source,
  INJECTION_VERSION,
  PROBE_PORT,
  type PlannedArtifact,
  type PlannedPublish,
  type SidecarPlan,
} from '../core/injection/contract.ts';

/** A `host:port` the sidecar dials. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** The validated configuration. */
export interface SidecarConfig {
  /** The mutual-TLS listener (ReleaseKey, WatchRevocations, PublishVersion). */
  readonly broker: Endpoint;
  /** The server-authenticated listener (Attest). */
  readonly attest: Endpoint;
  /** The name verified in the broker's serving certificate (both listeners): {@link ENV.brokerServerName}, or
   * by default the host of {@link ENV.brokerAddress}. */
  readonly serverName: string;
  /** The operator CA bundle (PEM), the only roots the broker is verified against. */
  readonly caBundlePem: string;
  /** The projected service-account token file (re-read at every Attest: the kubelet rotates it). */
  readonly tokenPath: string;
  readonly plan: SidecarPlan;
  readonly probePort: number;
  readonly logLevel: string;
}

/** A variable is missing or malformed. The message names the variable and never quotes a secret value. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The environment variable at fault. */
  readonly variable: string;
  constructor(variable: string, message: string, options?: ErrorOptions) {
    super(`${variable}: ${message}`, options);
    this.variable = variable;
  }
}

const LOG_LEVELS = new Set(['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly']);
const UID = /^[0-9a-fA-F-]{1,64}$/;
const X25519_KEY_BYTES = 32;

/** Reads and validates the sidecar's environment. Throws {@link ConfigError} naming the first bad variable. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): SidecarConfig {
  const broker = parseEndpoint(ENV.brokerAddress, required(env, ENV.brokerAddress));
  const attest = parseEndpoint(ENV.attestAddress, required(env, ENV.attestAddress));
  const serverNameRaw = env[ENV.brokerServerName];
  let serverName = broker.host;
  if (serverNameRaw !== undefined && serverNameRaw !== '') {
    if (isDns1123Subdomain(serverNameRaw).length > 0)
      throw new ConfigError(ENV.brokerServerName, `${JSON.stringify(serverNameRaw)} is not a DNS name`);
    serverName = serverNameRaw;
  }
  const caBundlePem = parseCaBundle(required(env, ENV.caBundle));
  const tokenPath = absolutePath(ENV.tokenPath, required(env, ENV.tokenPath), 'the token path');
  const plan = parsePlan(required(env, ENV.plan));
  const probePort = parsePort(ENV.probePort, env[ENV.probePort] ?? String(PROBE_PORT), true);
  const logLevel = env[ENV.logLevel] ?? 'info';
  if (!LOG_LEVELS.has(logLevel))
    throw new ConfigError(
      ENV.logLevel,
      `${JSON.stringify(logLevel)} is not a log level (${[...LOG_LEVELS].join(', ')})`,
    );
  return { broker, attest, serverName, caBundlePem, tokenPath, plan, probePort, logLevel };
}

function required(env: Readonly<Record<string, string | undefined>>, name: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') throw new ConfigError(name, 'is not set');
  return value;
}

function parsePort(variable: string, text: string, allowZero = false): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(port) || port > 65535 || (port === 0 && !allowZero))
    throw new ConfigError(variable, `${JSON.stringify(text)} is not a TCP port`);
  return port;
}

function parseEndpoint(variable: string, text: string): Endpoint {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d+)$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined)
    throw new ConfigError(variable, `${JSON.stringify(text)} is not host:port`);
  return { host, port: parsePort(variable, match[3] ?? '') };
}

function parseCaBundle(pem: string): string {
  const problem = caBundleProblem(pem);
  if (problem !== undefined) throw new ConfigError(ENV.caBundle, problem.message, { cause: problem.cause });
  return pem;
}

/**
 * What is wrong with a CA bundle (PEM certificates, every one a CA, no private key), or undefined if nothing is.
 * Used for the bundle in the environment and for the one every Attest answer carries.
 */
export function caBundleProblem(pem: string): { message: string; cause?: unknown } | undefined {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return { message: 'holds no PEM certificate' };
  if (/PRIVATE KEY/.test(pem)) return { message: 'holds a private key; it must hold certificates only' };
  for (const [i, block] of blocks.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (cause) {
      return { message: `certificate ${i + 1} does not parse`, cause };
    }
    if (!cert.ca) return { message: `certificate ${i + 1} (${cert.subject}) is not a CA` };
  }
  return undefined;
}

function absolutePath(variable: string, path: unknown, what: string): string {
  if (
    typeof path !== 'string' ||
    !isAbsolute(path) ||
    normalize(path) !== path ||
    path.length > 4096 ||
    path === '/'
  )
    throw new ConfigError(
      variable,
      `${what} must be a normalized absolute path, not ${JSON.stringify(path)}`,
    );
  return path;
}

type Json = Record<string, unknown>;

function object(variable: string, value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(variable, `${where} must be an object`);
  return value as Json;
}

/** Fails on any key not in `allowed` (a typo in the plan must not be silently ignored). */
function onlyKeys(variable: string, value: Json, allowed: readonly string[], where: string): void {
  const extra = Object.keys(value).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new ConfigError(variable, `${where} has unknown field(s) ${extra.join(', ')}`);
}

function text(
  variable: string,
  value: Json,
  key: string,
  where: string,
  check?: RegExp | ((value: string) => readonly string[]),
  max = 253,
): string {
  const v = value[key];
  const valid = (s: string): boolean =>
    check === undefined || (check instanceof RegExp ? check.test(s) : check(s).length === 0);
  if (typeof v !== 'string' || v === '' || v.length > max || !valid(v))
    throw new ConfigError(variable, `${where}.${key} is missing or malformed (${JSON.stringify(v)})`);
  return v;
}

function parseArtifact(value: unknown, i: number): PlannedArtifact {
  const v = ENV.plan;
  const where = `artifacts[${i}]`;
  const a = object(v, value, where);
  const keys = [
    'namespace',
    'name',
    'uid',
    'version',
    'digest',
    'ciphertextPath',
    'plaintextDir',
    'mountPath',
    's3',
  ];
  onlyKeys(v, a, keys, where);
  const s3 = a['s3'] === undefined ? undefined : parseS3(a['s3'], `${where}.s3`);
  if (s3 !== undefined && a['ciphertextPath'] !== '')
    throw new ConfigError(v, `${where}.ciphertextPath must be empty when ${where}.s3 is set`);
  return {
    namespace: text(v, a, 'namespace', where, isDns1123Label),
    name: text(v, a, 'name', where, isDns1123Subdomain),
    uid: text(v, a, 'uid', where, UID),
    version: text(v, a, 'version', where, isDns1123Label),
    digest: text(v, a, 'digest', where, isSha256Digest),
    ciphertextPath: s3 === undefined ? absolutePath(v, a['ciphertextPath'], `${where}.ciphertextPath`) : '',
    plaintextDir: absolutePath(v, a['plaintextDir'], `${where}.plaintextDir`),
    mountPath: absolutePath(v, a['mountPath'], `${where}.mountPath`),
    ...(s3 === undefined ? {} : { s3 }),
  };
}

/** An artifact's S3 source: the same rules as the CRD's, and credentials only from the injector's env names. */
function parseS3(value: unknown, where: string): PlannedS3Source {
  const v = ENV.plan;
  const s = object(v, value, where);
  onlyKeys(v, s, ['endpoint', 'region', 'bucket', 'keyPrefix', 'forcePathStyle', 'credentialsEnv'], where);
  if (typeof s['forcePathStyle'] !== 'boolean')
    throw new ConfigError(v, `${where}.forcePathStyle must be a boolean`);
  const keyPrefix = text(
    v,
    s,
    'keyPrefix',
    where,
    (p) => (p.endsWith('/') ? isRelativePath(p.slice(0, -1)) : ['must end with "/"']),
    1024,
  );
  const credentials = object(v, s['credentialsEnv'], `${where}.credentialsEnv`);
  onlyKeys(v, credentials, ['accessKeyId', 'secretAccessKey'], `${where}.credentialsEnv`);
  return {
    ...(s['endpoint'] === undefined ? {} : { endpoint: text(v, s, 'endpoint', where, isS3Endpoint, 2048) }),
    region: text(v, s, 'region', where, isS3Region),
    bucket: text(v, s, 'bucket', where, isS3BucketName),
    keyPrefix,
    forcePathStyle: s['forcePathStyle'],
    credentialsEnv: {
      accessKeyId: text(v, credentials, 'accessKeyId', `${where}.credentialsEnv`, S3_CREDENTIALS_ENV),
      secretAccessKey: text(v, credentials, 'secretAccessKey', `${where}.credentialsEnv`, S3_CREDENTIALS_ENV),
    },
  };
}

function parsePublish(value: unknown): PlannedPublish {
  const v = ENV.plan;
  const where = 'publish';
  const p = object(v, value, where);
  const keys = [
    'namespace',
    'name',
    'uid',
    'version',
    'outputDir',
    'ciphertextPath',
    'recipientPublicKey',
    'mountPath',
  ];
  onlyKeys(v, p, keys, where);
  const recipientPublicKey = text(v, p, 'recipientPublicKey', where, /^[A-Za-z0-9+/]+={0,2}$/, 64);
  if (Buffer.from(recipientPublicKey, 'base64').length !== X25519_KEY_BYTES)
    throw new ConfigError(v, `${where}.recipientPublicKey is not a base64 X25519 public key`);
  return {
    namespace: text(v, p, 'namespace', where, isDns1123Label),
    name: text(v, p, 'name', where, isDns1123Subdomain),
    uid: text(v, p, 'uid', where, UID),
    version: text(v, p, 'version', where, isDns1123Label),
    outputDir: absolutePath(v, p['outputDir'], `${where}.outputDir`),
    ciphertextPath: absolutePath(v, p['ciphertextPath'], `${where}.ciphertextPath`),
    recipientPublicKey,
    mountPath: absolutePath(v, p['mountPath'], `${where}.mountPath`),
  };
}

function nested(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * Parses the plan JSON ({@link ENV.plan}) strictly: the version, no unknown fields, DNS names, `sha256:<hex>`
 * digests, normalized absolute paths, and plaintext directories that are distinct and not nested in one another or
 * in the output directory (each is a volume of its own).
 */
export function parsePlan(json: string): SidecarPlan {
  const v = ENV.plan;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw new ConfigError(v, 'is not valid JSON', { cause });
  }
  const plan = object(v, raw, 'the plan');
  onlyKeys(v, plan, ['version', 'artifacts', 'publish'], 'the plan');
  if (plan['version'] !== INJECTION_VERSION)
    throw new ConfigError(
      v,
      `version must be ${JSON.stringify(INJECTION_VERSION)}, not ${JSON.stringify(plan['version'])}`,
    );
  const list = plan['artifacts'];
  if (!Array.isArray(list)) throw new ConfigError(v, 'artifacts must be a list');
  const artifacts = list.map((a: unknown, i) => parseArtifact(a, i));
  const publish = plan['publish'] === undefined ? undefined : parsePublish(plan['publish']);
  if (artifacts.length === 0 && publish === undefined)
    throw new ConfigError(v, 'plans neither an artifact nor a publish output');
  const dirs = [...artifacts.map((a) => a.plaintextDir), ...(publish ? [publish.outputDir] : [])];
  for (const [i, a] of dirs.entries())
    for (const b of dirs.slice(i + 1))
      if (nested(a, b)) throw new ConfigError(v, `the directories ${a} and ${b} overlap`);
  return { version: INJECTION_VERSION, artifacts, ...(publish ? { publish } : {}) };
}
