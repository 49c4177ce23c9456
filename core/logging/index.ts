/**
 * Strongroom's logger (operator and sidecar): one winston root writing JSON lines, and a child per component. Redaction is built into
 * the root's format, so no caller can forget it:
 *
 * - the value of any field whose name looks secret (key, secret, token, password, pin, dek, kek, private, material,
 *   ciphertext, wrapped, credential, authorization, cookie, seed; case-insensitive, at any depth, in arrays and in
 *   error causes) becomes "[redacted]", except for a few names that are public by construction (publicKeyPem,
 *   fingerprint, keyId, keyVersion, keyRing);
 * - every string, wherever it is, has PEM private key blocks, JWTs and `Bearer`/`Basic` credentials replaced;
 * - binary values (Buffer, typed arrays, ArrayBuffer) are never written, only their length;
 * - errors become `{name, message, code, cause}` with the cause chain redacted the same way (no stacks).
 */
import winston from 'winston';

/** What replaces a secret value. */
const REDACTED = '[redacted]';
const SECRET_NAME =
  /key|secret|token|password|passphrase|pin|dek|kek|private|material|ciphertext|wrapped|credential|authorization|cookie|seed/i;
/** Field names that match SECRET_NAME but name public data; compared case-insensitively. */
const PUBLIC_NAMES = new Set(['publickeypem', 'fingerprint', 'keyid', 'keyversion', 'keyring']);
/** A PEM private key block of any kind (PKCS#8, RSA, EC, OPENSSH, ENCRYPTED), or its truncated start. */
const PEM_PRIVATE_KEY =
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;
/** A JWS or JWE compact serialization: base64url JSON header ("eyJ") and at least two more segments. */
const JWT = /eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){2,}/g;
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
const MAX_DEPTH = 12;
/** The parts of an error that are logged. */
interface ErrorLike {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly code?: unknown;
  readonly cause?: unknown;
}
/** Keys winston sets on every entry, written as they are (after string scrubbing). */
const ENTRY_KEYS = new Set(['level', 'message', 'timestamp', 'component']);

function scrubText(text: string): string {
  return text
    .replace(PEM_PRIVATE_KEY, REDACTED)
    .replace(JWT, REDACTED)
    .replace(AUTH_SCHEME, `$1 ${REDACTED}`);
}

function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !PUBLIC_NAMES.has(name.toLowerCase());
}

function serializeError(err: ErrorLike, depth: number, ancestors: Set<object>): Record<string, unknown> {
  const out: Record<string, unknown> = {
    name: scrubText(typeof err.name === 'string' ? err.name : 'Error'),
    message: scrubText(String(err.message)),
  };
  const code = err.code;
  if (typeof code === 'string') out['code'] = scrubText(code);
  else if (typeof code === 'number') out['code'] = code;
  if (err.cause !== undefined) out['cause'] = redactValue(err.cause, depth + 1, ancestors);
  if (err instanceof AggregateError) out['errors'] = redactValue(err.errors, depth + 1, ancestors);
  return out;
}

function redactObject(value: object, depth: number, ancestors: Set<object>): unknown {
  if (value instanceof Error) return serializeError(value, depth, ancestors);
  if (Array.isArray(value)) return value.map((item: unknown) => redactValue(item, depth + 1, ancestors));
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (value instanceof Map)
    return redactEntries(
      [...value.entries()].map(([k, v]) => [String(k), v]),
      depth,
      ancestors,
    );
  if (value instanceof Set) return [...value].map((item) => redactValue(item, depth + 1, ancestors));
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return redactValue(toJSON.call(value) as unknown, depth + 1, ancestors);
  return redactEntries(Object.entries(value), depth, ancestors);
}

function redactEntries(
  entries: [string, unknown][],
  depth: number,
  ancestors: Set<object>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, item] of entries) {
    out[name] = isSecretName(name) ? REDACTED : redactValue(item, depth + 1, ancestors);
  }
  return out;
}

/** A copy of `value` that is safe to log. Never throws. */
function redactValue(value: unknown, depth: number, ancestors: Set<object>): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) {
    return `[redacted ${value.byteLength} bytes]`;
  }
  if (ancestors.has(value)) return '[circular]';
  if (depth > MAX_DEPTH) return '[truncated]';
  ancestors.add(value);
  try {
    return redactObject(value, depth, ancestors);
  } catch {
    return '[unserializable]';
  } finally {
    ancestors.delete(value);
  }
}

type Info = winston.Logform.TransformableInfo;

/** "TypeError" from "TypeError: message\n    at …"; winston's copy of an error loses its (inherited) name. */
function errorNameFromStack(stack: unknown): string {
  const match = typeof stack === 'string' ? /^([A-Za-z_$][\w$]*)(?::|\n|$)/.exec(stack) : null;
  return match?.[1] ?? 'Error';
}
/** triple-beam's LEVEL symbol (a registered symbol), which transports filter on. */
const LEVEL = Symbol.for('level');

/** Builds the entry that is written: timestamp, level, message, component, then the redacted fields. */
function redactEntry(info: Info): Info {
  const ancestors = new Set<object>([info]);
  const out: Info = {
    timestamp: new Date().toISOString(),
    level: info.level,
    message: redactValue(info.message, 1, ancestors),
  };
  out[LEVEL] = info[LEVEL];
  if (typeof info['component'] === 'string') out['component'] = scrubText(info['component']);
  for (const [name, item] of Object.entries(info)) {
    // A logged Error brings its stack (and winston copies it to the entry): stacks are not logged.
    if (ENTRY_KEYS.has(name) || name === 'stack') continue;
    out[name] = isSecretName(name) ? REDACTED : redactValue(item, 1, ancestors);
  }
  if (info instanceof Error || typeof info['stack'] === 'string') {
    // logger.error(err) or logger.error('text', err): winston makes the error (or a copy of its fields, with the
    // stack) the entry itself. Gather its parts under `error`, like `logger.error('text', { err })` would.
    const err: ErrorLike =
      info instanceof Error ? info : { ...info, name: info['name'] ?? errorNameFromStack(info['stack']) };
    out['error'] = serializeError(err, 1, ancestors);
    delete out['name'];
    delete out['code'];
    delete out['cause'];
  }
  return out;
}

const redaction = winston.format((info) => redactEntry(info));

/** The log levels winston's npm scale knows (Strongroom uses error, warn, info, debug). */
const LEVELS = Object.keys(winston.config.npm.levels);

/**
 * The root logger: JSON lines (`timestamp`, `level`, `message`, `component`, then structured fields) on
 * `stream` (default stdout), with secrets redacted (see the module comment). Throws RangeError for an unknown level.
 */
export function createRootLogger(options: { level: string; stream?: NodeJS.WritableStream }): winston.Logger {
  if (!LEVELS.includes(options.level)) {
    throw new RangeError(
      `unknown log level ${JSON.stringify(options.level)}; expected one of ${LEVELS.join(', ')}`,
    );
  }
  const stream = options.stream ?? process.stdout;
  return winston.createLogger({
    level: options.level,
    levels: winston.config.npm.levels,
    format: winston.format.combine(redaction(), winston.format.json({ deterministic: false })),

    transports: [new winston.transports.Stream({ stream })],
    exitOnError: false,
  });
}

/**
 * A child of `root` whose entries carry `component` and `fields` (e.g. `{ ns, name, uid }`). The fields go through
 * the same redaction as everything else; `component` cannot be overridden by `fields`.
 */
export function componentLogger(
  root: winston.Logger,
  component: string,
  fields?: Record<string, unknown>,
): winston.Logger {
  return root.child({ ...fields, component });
}
