/**
 * One home for the small syntax rules of Kubernetes names and of the values Strongroom reads from specs,
 * annotations, flags and requests, in the style of Kubernetes' own k8s.io/apimachinery/pkg/util/validation.
 *
 * The API, one shape throughout:
 *   - `isX(value): string[]` checks a value and returns its problems, one phrase each, empty when the value is
 *     valid (Kubernetes' `IsDNS1123Label(value) []string`). Test validity with `.length === 0`. A problem says
 *     what is wrong (quoting at most the offending part); the caller names the field and decides whether the
 *     value itself may be echoed.
 *   - `parseX(text): T | string[]` parses a value, returning the parsed value or, when it cannot be used, its
 *     problems (never an empty list). Narrow with `typeof` / `Array.isArray`.
 *   - `formatX(value): string` prints a parsed value back in the form `parseX` reads.
 * Nothing here throws for bad input, and nothing does I/O: callers wrap problems in their own error types and
 * messages. Length limits are Kubernetes' (63 for a label, 253 for a subdomain); a caller with a stricter limit of
 * its own checks it in addition.
 */

/** Longest DNS-1123 label (RFC 1123 §2.1; Kubernetes namespaces, many object names, version names). */
export const DNS1123_LABEL_MAX_LENGTH = 63;
/** Longest DNS-1123 subdomain (most Kubernetes object names, the prefix of a qualified name). */
export const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;
/** Longest name part of a qualified name, and longest label value. */
export const QUALIFIED_NAME_MAX_LENGTH = 63;

const LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const SUBDOMAIN = `${LABEL}(\\.${LABEL})*`;
const QUALIFIED_NAME_PART = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';

/**
 * The regular expressions behind the checks, spelled as the CRDs in crds/ spell them in their `pattern`s (a unit
 * test keeps the two equal). A check is its pattern plus the length limit and the rules a pattern cannot say.
 */
export const PATTERNS = {
  dns1123Label: `^${LABEL}$`,
  dns1123Subdomain: `^${SUBDOMAIN}$`,
  /** An optional `<DNS-1123 subdomain>/` prefix and a name part. */
  qualifiedName: `^(${SUBDOMAIN}/)?(${QUALIFIED_NAME_PART})$`,
  /** `/`-separated segments of letters, digits, '.', '_' and '-'. */
  relativePath: '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$',
  sha256Digest: '^sha256:[0-9a-f]{64}$',
  /** The characters and ends of an S3 bucket name (the length, '..' and IP-address rules are CEL rules). */
  s3BucketName: '^[a-z0-9][a-z0-9.-]*[a-z0-9]$',
  /** An S3 region name as Strongroom accepts it (`us-east-1`, `eu-central-1`, a store's own such as `garage`). */
  s3Region: '^[a-z0-9-]{1,32}$',
  /** An S3 endpoint: `http(s)://`, a host name, IPv4 or bracketed IPv6 address, an optional port and `/`. The
   * CRD spells it in a CEL rule (`self.matches(...)`) with messages for the common mistakes before it. */
  s3Endpoint: '^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?/?$',
} as const;

const DNS1123_LABEL = new RegExp(PATTERNS.dns1123Label);
const DNS1123_SUBDOMAIN = new RegExp(PATTERNS.dns1123Subdomain);
const QUALIFIED_NAME = new RegExp(`^${QUALIFIED_NAME_PART}$`);
const RELATIVE_PATH = new RegExp(PATTERNS.relativePath);
const SHA256_DIGEST = new RegExp(PATTERNS.sha256Digest);
const S3_BUCKET_NAME = new RegExp(PATTERNS.s3BucketName);
const S3_REGION = new RegExp(PATTERNS.s3Region);
const S3_ENDPOINT = new RegExp(PATTERNS.s3Endpoint);

/** The problems of a value that must be at most `max` characters long and match `pattern`. */
function lengthAndPattern(value: string, max: number, pattern: RegExp, problem: string): string[] {
  const problems = value.length > max ? [`must be no more than ${String(max)} characters`] : [];
  if (!pattern.test(value)) problems.push(problem);
  return problems;
}

/**
 * A DNS-1123 label: 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit
 * (`my-name`, `123-abc`).
 */
export function isDns1123Label(value: string): string[] {
  return lengthAndPattern(
    value,
    DNS1123_LABEL_MAX_LENGTH,
    DNS1123_LABEL,
    "must be a lowercase RFC 1123 label: lower case alphanumeric characters or '-', starting and ending with an alphanumeric character",
  );
}

/** Longest SPIFFE trust domain name. */
export const SPIFFE_TRUST_DOMAIN_MAX_LENGTH = 255;
const SPIFFE_TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/;

/**
 * A SPIFFE trust domain name (`cluster.local`, `prod.example.com`): at most 255 lower-case letters, digits, '.',
 * '-' and '_', starting and ending with a letter or digit.
 */
export function isSpiffeTrustDomain(value: string): string[] {
  return lengthAndPattern(
    value,
    SPIFFE_TRUST_DOMAIN_MAX_LENGTH,
    SPIFFE_TRUST_DOMAIN,
    "must be a SPIFFE trust domain: lower case alphanumeric characters, '.', '-' or '_', starting and ending with an alphanumeric character",
  );
}

/**
 * A DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels (`example.com`, `my-name`). As in
 * Kubernetes, the labels inside it are not limited to 63 characters.
 */
export function isDns1123Subdomain(value: string): string[] {
  return lengthAndPattern(
    value,
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    DNS1123_SUBDOMAIN,
    "must be a lowercase RFC 1123 subdomain: lower case alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character",
  );
}

/**
 * A host name as DNS and X.509 subject alternative names write it (RFC 1123): a DNS-1123 subdomain whose labels are
 * each at most 63 characters (Kubernetes does not limit the labels of a subdomain).
 */
export function isDnsName(value: string): string[] {
  const problems = isDns1123Subdomain(value);
  if (value.split('.').some((label) => label.length > DNS1123_LABEL_MAX_LENGTH))
    problems.push(
      `each '.'-separated label must be no more than ${String(DNS1123_LABEL_MAX_LENGTH)} characters`,
    );
  return problems;
}

/**
 * A qualified name, the syntax of label keys and annotation keys: `name` or `prefix/name`, the prefix a DNS-1123
 * subdomain, the name 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit
 * (`app`, `app.kubernetes.io/name`, `example.com/MyName`).
 */
export function isQualifiedName(value: string): string[] {
  const parts = value.split('/');
  if (parts.length > 2)
    return ["must be a name with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"];
  const [name = '', prefix] = parts.length === 2 ? [parts[1], parts[0]] : [parts[0], undefined];
  const problems: string[] = [];
  if (prefix === '') problems.push('prefix part must be non-empty');
  else if (prefix !== undefined) problems.push(...isDns1123Subdomain(prefix).map((p) => `prefix part ${p}`));
  if (name === '') return [...problems, 'name part must be non-empty'];
  const nameProblems = lengthAndPattern(
    name,
    QUALIFIED_NAME_MAX_LENGTH,
    QUALIFIED_NAME,
    "must consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
  );
  return [...problems, ...nameProblems.map((p) => `name part ${p}`)];
}

/** A label value: empty, or what {@link isQualifiedName} allows as a name part (at most 63 characters). */
export function isLabelValue(value: string): string[] {
  if (value === '') return [];
  return lengthAndPattern(
    value,
    QUALIFIED_NAME_MAX_LENGTH,
    QUALIFIED_NAME,
    "must be empty or consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
  );
}

/** A SHA-256 digest as Strongroom writes it: `sha256:` and 64 lower-case hex digits. */
export function isSha256Digest(value: string): string[] {
  return SHA256_DIGEST.test(value) ? [] : ['must be "sha256:" followed by 64 lowercase hex digits'];
}

// ---------------------------------------------------------------------------------------------------------------
// S3 (spec.storage.s3)

/** Shortest and longest S3 bucket name. */
export const S3_BUCKET_NAME_MIN_LENGTH = 3;
export const S3_BUCKET_NAME_MAX_LENGTH = 63;
/** Longest `spec.storage.s3.endpoint`. */
export const S3_ENDPOINT_MAX_LENGTH = 512;

/**
 * An S3 bucket name (AWS's general purpose bucket naming rules, which S3-compatible stores follow): 3-63 lower-case
 * letters, digits, '.' and '-', starting and ending with a letter or digit, no two adjacent periods, not formatted
 * as an IPv4 address (`ml-models`, `models.example.com`).
 */
export function isS3BucketName(value: string): string[] {
  const problems: string[] = [];
  if (value.length < S3_BUCKET_NAME_MIN_LENGTH || value.length > S3_BUCKET_NAME_MAX_LENGTH)
    problems.push(
      `must be ${String(S3_BUCKET_NAME_MIN_LENGTH)} to ${String(S3_BUCKET_NAME_MAX_LENGTH)} characters`,
    );
  if (!S3_BUCKET_NAME.test(value))
    problems.push(
      "must consist of lower case alphanumeric characters, '.' or '-', starting and ending with an alphanumeric character",
    );
  if (value.includes('..')) problems.push('must not contain two adjacent periods');
  if (/^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(value)) problems.push('must not be formatted as an IP address');
  return problems;
}

/** An S3 region name: 1-32 lower-case letters, digits or '-' (`us-east-1`). */
export function isS3Region(value: string): string[] {
  return S3_REGION.test(value) ? [] : ["must be 1 to 32 lower case alphanumeric characters or '-'"];
}

/**
 * An S3 endpoint URL: `http://` or `https://`, a host name, IPv4 address or bracketed IPv6 address, an optional
 * port and an optional trailing '/': no user name or password, path, query or fragment
 * (`https://minio.storage.svc:9000`, `http://[fd00::1]:9000/`). At most {@link S3_ENDPOINT_MAX_LENGTH} characters.
 * Reports the first problem of: the scheme, userinfo, a query or fragment, a path, the host and port.
 */
export function isS3Endpoint(value: string): string[] {
  if (value.length > S3_ENDPOINT_MAX_LENGTH)
    return [`must be no more than ${String(S3_ENDPOINT_MAX_LENGTH)} characters`];
  if (!/^https?:\/\//.test(value)) return ['must be an http:// or https:// URL'];
  if (value.includes('@')) return ['must not contain a user name or password'];
  if (value.includes('?') || value.includes('#')) return ['must not have a query or fragment'];
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*\/./.test(value)) return ['must not have a path beyond "/"'];
  if (!S3_ENDPOINT.test(value))
    return ['must be scheme://host[:port] with a host name, IPv4 address or bracketed IPv6 address'];
  return [];
}

// ---------------------------------------------------------------------------------------------------------------
// Paths

/**
 * A path that stays below the directory it is joined to (`spec.storage.path`, `spec.versions[].path`):
 * `/`-separated segments of letters, digits, '.', '_' and '-', none of them "." or "..". Reports one problem.
 */
export function isRelativePath(value: string): string[] {
  if (!RELATIVE_PATH.test(value))
    return ['must be relative, of letters, digits, ".", "_", "-" and "/" segments'];
  if (value.split('/').some((s) => s === '.' || s === '..')) return ['must not contain "." or ".." segments'];
  return [];
}

/**
 * An absolute path in normal form, as a mount path must be written: starting with '/', without "." or ".."
 * segments, '//' or a trailing '/' ("/" itself is in normal form). Reports one problem; the characters allowed and
 * the length are the caller's rules.
 */
export function isAbsolutePath(value: string): string[] {
  if (!value.startsWith('/')) return ["is relative; it must be absolute (start with '/')"];
  if (value === '/') return [];
  const segments = value.slice(1).split('/');
  if (segments.some((s) => s === '.' || s === '..')) return ["contains a '.' or '..' segment"];
  if (segments.includes('')) return ["is not normalized (no trailing '/', no '//')"];
  return [];
}

// ---------------------------------------------------------------------------------------------------------------
// Durations

/** Nanoseconds per millisecond. */
const NS_PER_MS = 1_000_000n;
/** Nanoseconds per unit. "µs" (U+00B5) and "μs" (U+03BC) are Go's spellings of microseconds. */
const DURATION_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n],
  ['\u03bcs', 1_000n],
  ['ms', NS_PER_MS],
  ['s', 1_000n * NS_PER_MS],
  ['m', 60_000n * NS_PER_MS],
  ['h', 3_600_000n * NS_PER_MS],
  ['d', 86_400_000n * NS_PER_MS],
]);
/** Go's limit: a duration is an int64 count of nanoseconds (about 292 years). */
const MAX_DURATION_NS = 2n ** 63n - 1n;
/** Longer inputs are rejected before parsing; no sensible duration needs more. */
export const DURATION_MAX_LENGTH = 128;
const DURATION_SEGMENT = /^(\d*)(?:\.(\d*))?([^\d.]+)/u;

/**
 * Parses a Go duration (`time.ParseDuration` syntax: "1h30m", "15m", "720h", "1.5h", "300ms", "0") or a day count
 * ("90d" = 2160h, "1d12h") into milliseconds. Sub-millisecond units give a fractional result ("1500us" → 1.5).
 * Units are case-sensitive; signs other than a leading "+" are rejected. Returns the problem for an empty,
 * negative, unit-less (other than "0"), unknown-unit, malformed, longer than {@link DURATION_MAX_LENGTH} or
 * overflowing (more than 2^63-1 ns, Go's limit) duration.
 */
export function parseDuration(text: string): number | string[] {
  if (text.length > DURATION_MAX_LENGTH) return [`longer than ${String(DURATION_MAX_LENGTH)} characters`];
  let rest = text.startsWith('+') ? text.slice(1) : text;
  if (rest.startsWith('-')) return ['negative durations are not allowed'];
  if (rest === '') return ['empty'];
  if (rest === '0') return 0;
  let total = 0n;
  while (rest !== '') {
    const match = DURATION_SEGMENT.exec(rest);
    if (match === null)
      return [/^[\d.]+$/u.test(rest) ? `missing unit after "${rest}"` : `unexpected "${rest}"`];
    const [whole, intDigits = '', fracDigits = '', unitText = ''] = match;
    if (intDigits === '' && fracDigits === '') return [`a number is needed before "${unitText}"`];
    const unit = DURATION_UNITS.get(unitText);
    if (unit === undefined) return [`unknown unit "${unitText}" (expected one of ns, us, ms, s, m, h, d)`];
    total += BigInt(intDigits === '' ? '0' : intDigits) * unit;
    if (fracDigits !== '') total += (BigInt(fracDigits) * unit) / 10n ** BigInt(fracDigits.length);
    if (total > MAX_DURATION_NS)
      return ['too large (the maximum is 2562047h47m16.854775807s, about 292 years)'];
    rest = rest.slice(whole.length);
  }
  return Number(total / NS_PER_MS) + Number(total % NS_PER_MS) / 1e6;
}

const DURATION_PARTS: readonly (readonly [string, number])[] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];

/**
 * Formats milliseconds, largest units first and zero parts left out: 5_400_000 → "1h30m", 7_776_000_000 → "90d",
 * 0 → "0s", 1.5 → "1ms500us". Sub-millisecond parts are rounded to the nanosecond. The result parses back with
 * {@link parseDuration} to the same value for every non-negative whole number of milliseconds up to Go's limit.
 * Negative values get a leading "-"; non-finite values are printed as numbers.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return `${String(ms)}ms`;
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let whole = Math.trunc(ms);
  let ns = Math.round((ms - whole) * 1e6);
  if (ns >= 1_000_000) {
    whole += 1;
    ns -= 1_000_000;
  }
  let text = '';
  for (const [unit, size] of DURATION_PARTS) {
    const count = Math.floor(whole / size);
    if (count > 0) text += `${String(count)}${unit}`;
    whole -= count * size;
  }
  if (ns >= 1_000) text += `${String(Math.floor(ns / 1_000))}us`;
  if (ns % 1_000 > 0) text += `${String(ns % 1_000)}ns`;
  return text === '' ? '0s' : text;
}
