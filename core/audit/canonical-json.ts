/**
 * Canonical JSON for audit records: the RFC 8785 (JCS) shape restricted to the values an audit event needs.
 *
 * Decisions (docs/audit.md):
 * - Object keys are sorted by UTF-16 code units, as RFC 8785 says; there is no whitespace.
 * - Strings are escaped exactly as ECMAScript JSON.stringify escapes them, which is what RFC 8785 specifies.
 * - Numbers must be safe integers (|n| <= 2^53 - 1, not -0). Floats are refused rather than canonicalized:
 *   nothing in an audit event needs one, and integer-only output makes every implementation agree trivially.
 * - null, booleans, arrays and plain objects are allowed; undefined, functions, bigint, symbols, Dates,
 *   Buffers and class instances are refused, so a caller cannot smuggle in a value with a surprising encoding.
 */

export type JsonValue =
  null | boolean | number | string | readonly JsonValue[] | { readonly [k: string]: JsonValue };

/** A value that cannot be canonicalized. `path` names where it is, e.g. `$.grant.approvals[2]`. */
export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.path = path;
  }
}

/** The canonical JSON text of `value`. Throws CanonicalJsonError for anything outside JsonValue. */
export function canonicalize(value: unknown): string {
  return write(value, []);
}

const MAX_DEPTH = 64;

/** `path` holds the keys and indexes leading here; it becomes a string only when something is wrong. */
function fail(path: readonly (string | number)[], message: string): never {
  const where = path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
  throw new CanonicalJsonError(`$${where}`, message);
}

function write(value: unknown, path: (string | number)[]): string {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) fail(path, 'string contains a lone surrogate');
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) fail(path, `${String(value)} is not a safe integer`);
      if (Object.is(value, -0)) fail(path, '-0 is not allowed');
      return String(value);
    case 'object': {
      if (value === null) return 'null';
      if (path.length >= MAX_DEPTH) fail(path, `nested deeper than ${MAX_DEPTH}`);
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          path.push(i);
          out += (i === 0 ? '' : ',') + write(value[i], path);
          path.pop();
        }
        return out + ']';
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) fail(path, 'only plain objects are allowed');
      const record = value as Record<string, unknown>;
      // The default sort compares UTF-16 code units, which is the RFC 8785 order.
      const keys = Object.keys(record).sort();
      let out = '{';
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string;
        if (!key.isWellFormed()) fail(path, 'key contains a lone surrogate');
        path.push(key);
        out += (i === 0 ? '' : ',') + JSON.stringify(key) + ':' + write(record[key], path);
        path.pop();
      }
      return out + '}';
    }
    default:
      return fail(path, `${typeof value} is not a JSON value`);
  }
}

/** True when `text` is exactly the canonical form of what it parses to. */
export function isCanonical(text: string): boolean {
  try {
    return canonicalize(JSON.parse(text)) === text;
  } catch {
    return false;
  }
}
