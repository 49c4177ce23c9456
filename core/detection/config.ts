/**
 * The detector's configuration: ConfigMap `strongroom-detection` in the operator's namespace (docs/detection.md
 * § Configuration). Every key is `<rule>.<setting>` (or `detector.<setting>`, `quarantine.minSeverity`); a missing key
 * takes its default, an unknown key is an error (typo protection), and every problem is reported at once, each naming
 * its key, its value and what is allowed. Values are taken exactly as written: no trimming.
 */
import { formatDuration, parseDuration } from '../api/validation.ts';
import { isSeverity, SEVERITIES, type Severity } from './severity.ts';

/** The name of the ConfigMap (in the operator's namespace) that configures detection. */
export const DETECTION_CONFIGMAP = 'strongroom-detection';

export const RULE_NAMES = [
  'release-rate-spike',
  'denial-burst',
  'first-restricted-access',
  'bulk-access',
  'cross-environment',
  'off-hours',
] as const;
export type RuleName = (typeof RULE_NAMES)[number];

/** What every rule has. `windowMs` is the rule's window and also its de-duplication period. */
export interface RuleConfig {
  readonly enabled: boolean;
  readonly severity: Severity;
  readonly windowMs: number;
}

export interface ReleaseRateSpikeConfig extends RuleConfig {
  /** Fires when a window's allowed releases reach `factor` × the baseline (and `minCount`). */
  readonly factor: number;
  /** The absolute floor: fewer releases than this in a window never fire. */
  readonly minCount: number;
  /** Windows of history (counted from the identity's first release) before the rule can fire. */
  readonly minHistory: number;
  /** The EWMA smoothing factor α in (0, 1]: weight of the newest completed window. */
  readonly smoothing: number;
}

export interface DenialBurstConfig extends RuleConfig {
  /** Denials for one identity within the window that fire (0 disables the identity half). */
  readonly perIdentity: number;
  /** Denials for one artifact within the window that fire (0 disables the artifact half). */
  readonly perArtifact: number;
  /**
   * Denial reason codes that are not counted (an identity already quarantined is refused with `quarantined`, every
   * caller with `quarantines-unknown` while the quarantines are not known).
   */
  readonly ignoreReasons: readonly string[];
}

export interface FirstRestrictedAccessConfig extends RuleConfig {
  /** The classifications that count as restricted for this rule. */
  readonly classifications: readonly string[];
}

export interface BulkAccessConfig extends RuleConfig {
  /** Distinct artifacts released to one identity within the window that fire (0 disables). */
  readonly distinctArtifacts: number;
  /** Distinct artifact versions released to one identity within the window that fire (0 disables). */
  readonly distinctVersions: number;
  /**
   * After a quarantine of an identity is lifted, for this long its re-fetches of what it had been released before
   * do not count (its wiped workloads fetch their keys again); 0 disables.
   */
  readonly liftGraceMs: number;
}

export interface CrossEnvironmentConfig extends RuleConfig {
  /** Denial reason codes that mean a cross-environment attempt. */
  readonly reasons: readonly string[];
  /** Also alert on allowed releases whose recorded workload environment differs from the artifact's. */
  readonly includeAllowed: boolean;
}

export interface OffHoursConfig extends RuleConfig {
  /** Working hours [start, end) in minutes after local midnight; end may be before start (a night shift). */
  readonly startMinute: number;
  readonly endMinute: number;
  /** The fixed offset from UTC of the local time, in minutes (e.g. +60 for "+01:00"). */
  readonly utcOffsetMinutes: number;
  /** Working days, 0 = Sunday … 6 = Saturday, in local time. */
  readonly days: readonly number[];
}

export interface DetectorLimits {
  /** Subjects (identities, artifacts, identity×artifact pairs) each rule tracks at most; least recently seen go. */
  readonly maxSubjects: number;
  /** A subject not seen for this long (by entry time) is forgotten. */
  readonly idleMs: number;
}

export interface DetectionConfig {
  readonly rules: {
    readonly 'release-rate-spike': ReleaseRateSpikeConfig;
    readonly 'denial-burst': DenialBurstConfig;
    readonly 'first-restricted-access': FirstRestrictedAccessConfig;
    readonly 'bulk-access': BulkAccessConfig;
    readonly 'cross-environment': CrossEnvironmentConfig;
    readonly 'off-hours': OffHoursConfig;
  };
  readonly detector: DetectorLimits;
  /** Alerts at or above this severity quarantine their identity; null (`off`) disables automatic quarantine. */
  readonly quarantineMinSeverity: Severity | null;
}

/**
 * The defaults, as ConfigMap data: every key the ConfigMap may hold. parseDetectionConfig({}) reads these into
 * {@link DEFAULT_DETECTION_CONFIG}.
 */
export const DEFAULT_DETECTION_DATA: Readonly<Record<string, string>> = Object.freeze({
  'release-rate-spike.enabled': 'true',
  'release-rate-spike.severity': 'high',
  'release-rate-spike.window': '1m',
  'release-rate-spike.factor': '5',
  'release-rate-spike.minCount': '20',
  'release-rate-spike.minHistory': '10',
  'release-rate-spike.smoothing': '0.2',
  'denial-burst.enabled': 'true',
  'denial-burst.severity': 'medium',
  'denial-burst.window': '1m',
  'denial-burst.perIdentity': '10',
  'denial-burst.perArtifact': '20',
  'denial-burst.ignoreReasons': 'quarantined,quarantines-unknown',
  'first-restricted-access.enabled': 'true',
  'first-restricted-access.severity': 'medium',
  'first-restricted-access.window': '1h',
  'first-restricted-access.classifications': 'restricted',
  'bulk-access.enabled': 'true',
  'bulk-access.severity': 'high',
  'bulk-access.window': '10m',
  'bulk-access.distinctArtifacts': '10',
  'bulk-access.distinctVersions': '20',
  'bulk-access.liftGrace': '10m',
  'cross-environment.enabled': 'true',
  'cross-environment.severity': 'medium',
  'cross-environment.window': '10m',
  'cross-environment.reasons': 'cross-environment-not-allowed,restricted-cannot-cross-environments',
  'cross-environment.includeAllowed': 'false',
  'off-hours.enabled': 'false',
  'off-hours.severity': 'low',
  'off-hours.window': '1h',
  'off-hours.hours': '08:00-20:00',
  'off-hours.utcOffset': '+00:00',
  'off-hours.days': 'mon,tue,wed,thu,fri',
  'detector.maxSubjects': '10000',
  'detector.idle': '24h',
  'quarantine.minSeverity': 'high',
});

export const DETECTION_CONFIG_KEYS: readonly string[] = Object.freeze(Object.keys(DEFAULT_DETECTION_DATA));

export interface DetectionConfigProblem {
  readonly key: string;
  readonly value: string | undefined;
  readonly message: string;
}

/** A ConfigMap that cannot be used: every problem, one line each, in the message and in {@link problems}. */
export class DetectionConfigError extends Error {
  override readonly name = 'DetectionConfigError';
  readonly problems: readonly DetectionConfigProblem[];
  constructor(problems: readonly DetectionConfigProblem[], options?: ErrorOptions) {
    const n = problems.length;
    super(
      [
        `the detection configuration has ${String(n)} problem${n === 1 ? '' : 's'}:`,
        ...problems.map((p) => `  ${p.message}`),
      ].join('\n'),
      options,
    );
    this.problems = problems;
  }
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const MAX_WINDOW_MS = 7 * 24 * 3600 * 1000;
const LIST_ITEM = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * Reads ConfigMap data into a configuration. Missing keys take {@link DEFAULT_DETECTION_DATA}.
 * @throws {DetectionConfigError} listing every problem (unknown key, bad value), each naming the key.
 */
export function parseDetectionConfig(data: Readonly<Record<string, string>>): DetectionConfig {
  const problems: DetectionConfigProblem[] = [];
  for (const key of Object.keys(data).sort()) {
    if (!Object.hasOwn(DEFAULT_DETECTION_DATA, key)) {
      const rule = key.split('.')[0] ?? '';
      const hint = (RULE_NAMES as readonly string[]).includes(rule)
        ? `the settings of ${rule} are ${DETECTION_CONFIG_KEYS.filter((k) => k.startsWith(`${rule}.`)).join(', ')}`
        : `keys are <rule>.<setting> for the rules ${RULE_NAMES.join(', ')}, detector.maxSubjects, detector.idle and quarantine.minSeverity`;
      problems.push({ key, value: data[key], message: `${key} is not a known key: ${hint}` });
    }
  }
  const value = (key: string): string =>
    (Object.hasOwn(data, key) ? data[key] : undefined) ?? DEFAULT_DETECTION_DATA[key] ?? '';
  const bad = <T>(key: string, allowed: string, fallback: T): T => {
    problems.push({
      key,
      value: value(key),
      message: `${key}=${JSON.stringify(value(key))} is invalid: ${allowed}`,
    });
    return fallback;
  };
  const bool = (key: string): boolean => {
    const v = value(key);
    return v === 'true' ? true : v === 'false' ? false : bad(key, 'expected true or false', false);
  };
  const severity = (key: string): Severity => {
    const v = value(key);
    return isSeverity(v) ? v : bad(key, `expected one of ${SEVERITIES.join(', ')}`, 'info');
  };
  const integer = (key: string, min: number, max: number): number => {
    const v = value(key);
    const n = /^(0|[1-9][0-9]{0,8})$/.test(v) ? Number(v) : NaN;
    return n >= min && n <= max
      ? n
      : bad(key, `expected a whole number from ${String(min)} to ${String(max)}`, min);
  };
  const decimal = (key: string, min: number, max: number, minExclusive: boolean): number => {
    const v = value(key);
    const n = /^(0|[1-9][0-9]{0,5})(\.[0-9]{1,6})?$/.test(v) ? Number(v) : NaN;
    const ok = (minExclusive ? n > min : n >= min) && n <= max;
    return ok
      ? n
      : bad(
          key,
          `expected a decimal number ${minExclusive ? 'above' : 'from'} ${String(min)} up to ${String(max)}`,
          max,
        );
  };
  const duration = (key: string, min: number, max: number): number => {
    const ms = parseDuration(value(key));
    if (typeof ms !== 'number')
      return bad(key, `expected a duration such as 1m or 10m (${ms.join('; ')})`, min);
    if (ms < min || ms > max || !Number.isSafeInteger(ms)) {
      return bad(
        key,
        `expected a duration from ${formatDuration(min)} to ${formatDuration(max)} in whole milliseconds`,
        min,
      );
    }
    return ms;
  };
  const list = (key: string, emptyAllowed: boolean): readonly string[] => {
    const v = value(key);
    const items = v === '' ? [] : v.split(',');
    if ((!emptyAllowed && items.length === 0) || !items.every((i) => LIST_ITEM.test(i))) {
      return bad(
        key,
        `expected a comma-separated list of lowercase codes (no spaces)${emptyAllowed ? ', or nothing' : ''}`,
        [],
      );
    }
    return [...new Set(items)];
  };
  const base = (rule: RuleName): RuleConfig => ({
    enabled: bool(`${rule}.enabled`),
    severity: severity(`${rule}.severity`),
    windowMs: duration(`${rule}.window`, 1000, MAX_WINDOW_MS),
  });

  const hours = (key: string): { startMinute: number; endMinute: number } => {
    const m = /^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$/.exec(value(key));
    const start = m === null ? NaN : Number(m[1]) * 60 + Number(m[2]);
    const end = m === null ? NaN : Number(m[3]) * 60 + Number(m[4]);
    if (Number.isNaN(start) || end > 24 * 60 || start === end) {
      return bad(
        key,
        'expected HH:MM-HH:MM in 24-hour time (e.g. 08:00-20:00; 22:00-06:00 spans midnight; 24:00 ends the day)',
        {
          startMinute: 0,
          endMinute: 24 * 60,
        },
      );
    }
    return { startMinute: start, endMinute: end };
  };
  const offset = (key: string): number => {
    const m = /^([+-])([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(value(key));
    if (m === null) return bad(key, 'expected a fixed offset from UTC such as +00:00, +05:30 or -08:00', 0);
    const minutes = Number(m[2]) * 60 + Number(m[3]);
    return m[1] === '-' ? -minutes : minutes;
  };
  const days = (key: string): readonly number[] => {
    const v = value(key);
    const items = v.split(',');
    const out = items.map((d) => (DAYS as readonly string[]).indexOf(d));
    if (v === '' || out.includes(-1))
      return bad(key, `expected a comma-separated list of ${DAYS.join(', ')}`, []);
    return [...new Set(out)].sort();
  };

  const spike = {
    ...base('release-rate-spike'),
    factor: decimal('release-rate-spike.factor', 1, 1000, false),
    minCount: integer('release-rate-spike.minCount', 1, 1_000_000),
    minHistory: integer('release-rate-spike.minHistory', 1, 10_000),
    smoothing: decimal('release-rate-spike.smoothing', 0, 1, true),
  };
  const denial = {
    ...base('denial-burst'),
    perIdentity: integer('denial-burst.perIdentity', 0, 10_000),
    perArtifact: integer('denial-burst.perArtifact', 0, 10_000),
    ignoreReasons: list('denial-burst.ignoreReasons', true),
  };
  const first = {
    ...base('first-restricted-access'),
    classifications: list('first-restricted-access.classifications', false),
  };
  const bulk = {
    ...base('bulk-access'),
    distinctArtifacts: integer('bulk-access.distinctArtifacts', 0, 10_000),
    distinctVersions: integer('bulk-access.distinctVersions', 0, 10_000),
    liftGraceMs: duration('bulk-access.liftGrace', 0, MAX_WINDOW_MS),
  };
  const cross = {
    ...base('cross-environment'),
    reasons: list('cross-environment.reasons', true),
    includeAllowed: bool('cross-environment.includeAllowed'),
  };
  const offHours = {
    ...base('off-hours'),
    ...hours('off-hours.hours'),
    utcOffsetMinutes: offset('off-hours.utcOffset'),
    days: days('off-hours.days'),
  };
  const detector = {
    maxSubjects: integer('detector.maxSubjects', 100, 10_000_000),
    idleMs: duration('detector.idle', 60_000, 90 * 24 * 3600 * 1000),
  };
  const min = value('quarantine.minSeverity');
  const quarantineMinSeverity =
    min === 'off'
      ? null
      : isSeverity(min)
        ? min
        : bad('quarantine.minSeverity', `expected off or one of ${SEVERITIES.join(', ')}`, null);

  if (problems.length > 0) throw new DetectionConfigError(problems);
  return {
    rules: {
      'release-rate-spike': spike,
      'denial-burst': denial,
      'first-restricted-access': first,
      'bulk-access': bulk,
      'cross-environment': cross,
      'off-hours': offHours,
    },
    detector,
    quarantineMinSeverity,
  };
}

/** The configuration with every default (what an absent ConfigMap means). */
export const DEFAULT_DETECTION_CONFIG: DetectionConfig = parseDetectionConfig({});
