/**
 * The classification table: what each data classification demands (approvals, environments, who may publish, how
 * long grants, key leases and KEKs live) and who governs namespaces and quarantines. Operators configure it in the
 * ConfigMap `strongroom-governance` (docs/policy.md, "Classification table"); the operator's controllers and key
 * broker read it through {@link parseClassificationConfig}, and Strongroom's ValidatingAdmissionPolicies read the
 * same keys with CEL, so the key names and value syntax below are an interface: do not rename them.
 */
import { CLASSIFICATIONS, type Classification } from '../api/index.ts';
import { formatDuration } from '../api/validation.ts';
import { PolicyError, policyDuration } from './errors.ts';

/** The name of the ConfigMap (in the operator's namespace) that holds the table, unless configured otherwise. */
export const GOVERNANCE_CONFIGMAP = 'strongroom-governance';

/** Keys of the ConfigMap that are not per classification. */
export const GOVERNANCE_KEYS = Object.freeze({
  /** Comma-separated groups whose members may set the namespace label strongroom.dev/environment. */
  platformAdminGroups: 'platformAdminGroups',
  /** Comma-separated groups whose members may add or remove the quarantine annotation. */
  securityGroups: 'securityGroups',
  /** Duration (at least 1m): a grant still waiting for approvals this long after creation expires for good. */
  pendingApprovalTimeout: 'pendingApprovalTimeout',
} as const);

/** The per-classification fields; the ConfigMap key is `<classification>.<field>`, see {@link classificationKey}. */
export const CLASSIFICATION_FIELDS = Object.freeze([
  'approvals',
  'crossEnvironment',
  'crossEnvironmentApprovals',
  'approverGroups',
  'publisherGroups',
  'maxGrantDuration',
  'keyLease',
  'kekRotation',
  'dedicatedKek',
  'kekVersionRetention',
] as const);
export type ClassificationField = (typeof CLASSIFICATION_FIELDS)[number];

/** The ConfigMap key of one field of one classification, for example `confidential.approvals`. */
export function classificationKey(classification: Classification, field: ClassificationField): string {
  return `${classification}.${field}`;
}

/** What one classification demands. Durations are milliseconds. */
export interface ClassificationPolicy {
  /** Approvals every grant for such an artifact needs (0 or more). */
  readonly approvals: number;
  /** Whether a grant may cross environments at all. */
  readonly crossEnvironment: boolean;
  /** Approvals a cross-environment grant needs (at least 1 and at least {@link approvals}). */
  readonly crossEnvironmentApprovals: number;
  /** Groups whose members' approvals count; non-empty whenever an approval can be needed. */
  readonly approverGroups: readonly string[];
  /** Groups whose members may add a version directly; empty means nobody (the broker's PublishVersion still can). */
  readonly publisherGroups: readonly string[];
  /** Longest window from notBefore (or creation) to expiresAt, 1h to 90d. */
  readonly maxGrantDurationMs: number;
  /** Longest key lease, 1m to 24h; a grant's longer keyLeaseDuration is capped to it. */
  readonly keyLeaseMs: number;
  /** KEK rotation period, at least 1m. */
  readonly kekRotationMs: number;
  /** The artifact gets a KEK of its own, destroyed with it (crypto-shred). */
  readonly dedicatedKek: boolean;
  /**
   * How long a KEK version stays after it was retired (replaced as primary by the next version, which it was at that
   * version's creation time) before it is destroyed, at least 1m. Nothing is destroyed while any wrapped key still
   * uses a non-primary version of the KEK (docs/kms.md, "Rotation, retention, destruction").
   */
  readonly kekVersionRetentionMs: number;
}

/** The whole governance table. */
export interface ClassificationTable {
  readonly platformAdminGroups: readonly string[];
  readonly securityGroups: readonly string[];
  readonly pendingApprovalTimeoutMs: number;
  readonly classifications: Readonly<Record<Classification, ClassificationPolicy>>;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** An AccessGrant holds at most 8 approvals (the CRD's maxItems), so a table may not demand more. */
export const MAX_APPROVALS = 8;
const MAX_GROUP_LENGTH = 253;

/** Bounds of the duration settings, in milliseconds (max undefined: no upper bound). */
const DURATION_BOUNDS = {
  pendingApprovalTimeout: { min: MINUTE, max: undefined, text: 'at least 1m' },
  maxGrantDuration: { min: HOUR, max: 90 * DAY, text: 'from 1h to 90d' },
  keyLease: { min: MINUTE, max: DAY, text: 'from 1m to 24h' },
  kekRotation: { min: MINUTE, max: undefined, text: 'at least 1m' },
  // At least 1m: a wrap started under the old primary just before a rotation must have reached status (and the
  // informers) long before its version can go.
  kekVersionRetention: { min: MINUTE, max: undefined, text: 'at least 1m' },
} as const;

/**
 * The defaults, exactly as ConfigMap data: a missing key takes its value from here. Exported so that the admission
 * policies (core/governance) can use the same defaults in CEL.
 */
export const DEFAULT_GOVERNANCE_CONFIG: Readonly<Record<string, string>> = Object.freeze({
  platformAdminGroups: 'strongroom:platform-admins',
  securityGroups: 'strongroom:security',
  pendingApprovalTimeout: '72h',
  ...classificationDefaults('public', [
    '0',
    'true',
    '1',
    'strongroom:approvers',
    'strongroom:publishers',
    '90d',
    '24h',
    '365d',
    'false',
    '7d',
  ]),
  ...classificationDefaults('internal', [
    '0',
    'true',
    '1',
    'strongroom:approvers',
    'strongroom:publishers',
    '90d',
    '24h',
    '180d',
    'false',
    '7d',
  ]),
  ...classificationDefaults('confidential', [
    '1',
    'true',
    '2',
    'strongroom:approvers',
    'strongroom:publishers',
    '30d',
    '8h',
    '90d',
    'true',
    '24h',
  ]),
  ...classificationDefaults('restricted', [
    '2',
    'false',
    '2',
    'strongroom:approvers',
    '',
    '7d',
    '1h',
    '30d',
    'true',
    '24h',
  ]),
});

function classificationDefaults(
  classification: Classification,
  values: readonly string[],
): Record<string, string> {
  return Object.fromEntries(
    CLASSIFICATION_FIELDS.map((field, i) => [classificationKey(classification, field), values[i] ?? '']),
  );
}

/** Every key the ConfigMap may hold, in documentation order. */
export const GOVERNANCE_CONFIG_KEYS: readonly string[] = Object.freeze(
  Object.keys(DEFAULT_GOVERNANCE_CONFIG),
);

/** One problem found in a ConfigMap: the key, its value (undefined for a cross-field rule) and why. */
export interface ConfigProblem {
  readonly key: string;
  readonly value: string | undefined;
  readonly message: string;
}

/** A ConfigMap that cannot be used: every problem, one line each, in the message and in {@link problems}. */
export class ClassificationConfigError extends PolicyError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], options?: ErrorOptions) {
    const n = problems.length;
    super(
      'invalid',
      [
        `the classification table has ${String(n)} problem${n === 1 ? '' : 's'}:`,
        ...problems.map((p) => `  ${p.message}`),
      ].join('\n'),
      options,
    );
    this.problems = problems;
  }
}

/**
 * Reads a ConfigMap's `data` into a table. Missing keys take {@link DEFAULT_GOVERNANCE_CONFIG}; unknown keys are
 * errors (typo protection). Values are taken exactly as written: no trimming.
 * @throws {ClassificationConfigError} (a PolicyError, code `invalid`) listing every problem, one line each, naming
 *   the key, the value and what is allowed. Its cause is the underlying duration error when there is one, or an
 *   AggregateError of them when there are several.
 */
export function parseClassificationConfig(data: Readonly<Record<string, string>>): ClassificationTable {
  const problems: ConfigProblem[] = [];
  const causes: unknown[] = [];
  const known = new Set(GOVERNANCE_CONFIG_KEYS);
  const value = (key: string): string =>
    (Object.hasOwn(data, key) ? data[key] : undefined) ?? DEFAULT_GOVERNANCE_CONFIG[key] ?? '';
  const bad = (key: string, allowed: string): void => {
    const v = value(key);
    problems.push({ key, value: v, message: `${key}=${JSON.stringify(v)} is invalid: ${allowed}` });
  };

  const groups = (key: string, emptyAllowed: boolean): readonly string[] | undefined => {
    const text = value(key);
    if (text === '') {
      if (emptyAllowed) return [];
      bad(key, 'expected at least one group name (comma-separated)');
      return undefined;
    }
    const list = text.split(',');
    const issues: string[] = [];
    const seen = new Set<string>();
    for (const [i, name] of list.entries()) {
      const where = `entry ${String(i + 1)}`;
      if (name === '') issues.push(`${where} is empty`);
      else if (/\s/u.test(name)) issues.push(`${where} ${JSON.stringify(name)} contains whitespace`);
      else if (name.length > MAX_GROUP_LENGTH)
        issues.push(`${where} is ${String(name.length)} characters long`);
      else if (seen.has(name)) issues.push(`${where} repeats ${JSON.stringify(name)}`);
      seen.add(name);
    }
    if (issues.length > 0) {
      bad(
        key,
        `${issues.join('; ')}; expected comma-separated group names of 1 to ${String(MAX_GROUP_LENGTH)} characters without whitespace${emptyAllowed ? ' (or nothing)' : ''}`,
      );
      return undefined;
    }
    return Object.freeze(list);
  };

  const integer = (key: string, min: number, max: number): number | undefined => {
    const text = value(key);
    const n = /^\d{1,3}$/u.test(text) ? Number(text) : Number.NaN;
    if (Number.isNaN(n) || n < min || n > max) {
      bad(key, `expected a whole number from ${String(min)} to ${String(max)}`);
      return undefined;
    }
    return n;
  };

  const bool = (key: string): boolean | undefined => {
    const text = value(key);
    if (text === 'true') return true;
    if (text === 'false') return false;
    bad(key, 'expected true or false');
    return undefined;
  };

  const duration = (
    key: string,
    bounds: { min: number; max: number | undefined; text: string },
  ): number | undefined => {
    const text = value(key);
    const range = bounds.text;
    let ms: number;
    try {
      ms = policyDuration(text);
    } catch (error) {
      causes.push(error);
      bad(
        key,
        `${(error as Error).message.replace(/^invalid duration "(?:[^"\\]|\\.)*": /u, '')}; expected a duration such as 90d, 8h or 30m, ${range}`,
      );
      return undefined;
    }
    if (ms < bounds.min || (bounds.max !== undefined && ms > bounds.max)) {
      bad(key, `expected a duration ${range}`);
      return undefined;
    }
    return ms;
  };

  for (const key of Object.keys(data).sort()) {
    if (known.has(key)) continue;
    const v = data[key] ?? '';
    const dot = key.indexOf('.');
    const prefix = dot < 0 ? '' : key.slice(0, dot);
    const hint = (CLASSIFICATIONS as readonly string[]).includes(prefix)
      ? `expected ${prefix}.<field> with <field> one of ${CLASSIFICATION_FIELDS.join(', ')}`
      : `expected one of ${Object.values(GOVERNANCE_KEYS).join(', ')} or <classification>.<field> with <classification> one of ${CLASSIFICATIONS.join(', ')}`;
    problems.push({ key, value: v, message: `${key}=${JSON.stringify(v)}: unknown key; ${hint}` });
  }

  const platformAdminGroups = groups(GOVERNANCE_KEYS.platformAdminGroups, false);
  const securityGroups = groups(GOVERNANCE_KEYS.securityGroups, false);
  const pendingApprovalTimeoutMs = duration(
    GOVERNANCE_KEYS.pendingApprovalTimeout,
    DURATION_BOUNDS.pendingApprovalTimeout,
  );
  const classifications: Partial<Record<Classification, ClassificationPolicy>> = {};
  for (const c of CLASSIFICATIONS) {
    const k = (field: ClassificationField) => classificationKey(c, field);
    const approvals = integer(k('approvals'), 0, MAX_APPROVALS);
    const crossEnvironment = bool(k('crossEnvironment'));
    const crossEnvironmentApprovals = integer(k('crossEnvironmentApprovals'), 1, MAX_APPROVALS);
    const approverGroups = groups(k('approverGroups'), true);
    const publisherGroups = groups(k('publisherGroups'), true);
    const maxGrantDurationMs = duration(k('maxGrantDuration'), DURATION_BOUNDS.maxGrantDuration);
    const keyLeaseMs = duration(k('keyLease'), DURATION_BOUNDS.keyLease);
    const kekRotationMs = duration(k('kekRotation'), DURATION_BOUNDS.kekRotation);
    const dedicatedKek = bool(k('dedicatedKek'));
    const kekVersionRetentionMs = duration(k('kekVersionRetention'), DURATION_BOUNDS.kekVersionRetention);
    if (
      approvals !== undefined &&
      crossEnvironmentApprovals !== undefined &&
      crossEnvironmentApprovals < approvals
    ) {
      problems.push({
        key: k('crossEnvironmentApprovals'),
        value: value(k('crossEnvironmentApprovals')),
        message: `${k('crossEnvironmentApprovals')}=${JSON.stringify(value(k('crossEnvironmentApprovals')))} is invalid: it must be at least ${k('approvals')} (${String(approvals)}); a cross-environment grant never needs fewer approvals than any grant`,
      });
    }
    const needsApprovals = (approvals ?? 0) > 0 || crossEnvironment !== false;
    if (approverGroups !== undefined && approverGroups.length === 0 && needsApprovals) {
      problems.push({
        key: k('approverGroups'),
        value: '',
        message: `${k('approverGroups')}="" is invalid: ${c} grants can need approvals (${k('approvals')} is ${value(k('approvals'))}, ${k('crossEnvironment')} is ${value(k('crossEnvironment'))}), so at least one approver group is needed`,
      });
    }
    if (
      approvals !== undefined &&
      crossEnvironment !== undefined &&
      crossEnvironmentApprovals !== undefined &&
      approverGroups !== undefined &&
      publisherGroups !== undefined &&
      maxGrantDurationMs !== undefined &&
      keyLeaseMs !== undefined &&
      kekRotationMs !== undefined &&
      dedicatedKek !== undefined &&
      kekVersionRetentionMs !== undefined
    ) {
      classifications[c] = Object.freeze({
        approvals,
        crossEnvironment,
        crossEnvironmentApprovals,
        approverGroups,
        publisherGroups,
        maxGrantDurationMs,
        keyLeaseMs,
        kekRotationMs,
        dedicatedKek,
        kekVersionRetentionMs,
      });
    }
  }
  if (problems.length > 0) {
    const cause =
      causes.length === 1 ? causes[0] : causes.length > 1 ? new AggregateError(causes) : undefined;
    throw new ClassificationConfigError(problems, cause === undefined ? undefined : { cause });
  }
  return Object.freeze({
    platformAdminGroups: platformAdminGroups ?? [],
    securityGroups: securityGroups ?? [],
    pendingApprovalTimeoutMs: pendingApprovalTimeoutMs ?? 0,
    classifications: Object.freeze(classifications as Record<Classification, ClassificationPolicy>),
  });
}

/** The built-in table, {@link DEFAULT_GOVERNANCE_CONFIG} parsed. */
export const DEFAULT_CLASSIFICATION_TABLE: ClassificationTable = parseClassificationConfig({});

/**
 * The table as ConfigMap data, every key present; {@link parseClassificationConfig} reads it back to an equal table.
 * Durations are printed by formatDuration (`90d`, `8h`, `1h30m`).
 */
export function formatClassificationConfig(table: ClassificationTable): Record<string, string> {
  const data: Record<string, string> = {
    [GOVERNANCE_KEYS.platformAdminGroups]: table.platformAdminGroups.join(','),
    [GOVERNANCE_KEYS.securityGroups]: table.securityGroups.join(','),
    [GOVERNANCE_KEYS.pendingApprovalTimeout]: formatDuration(table.pendingApprovalTimeoutMs),
  };
  for (const c of CLASSIFICATIONS) {
    const p = table.classifications[c];
    const k = (field: ClassificationField) => classificationKey(c, field);
    data[k('approvals')] = String(p.approvals);
    data[k('crossEnvironment')] = String(p.crossEnvironment);
    data[k('crossEnvironmentApprovals')] = String(p.crossEnvironmentApprovals);
    data[k('approverGroups')] = p.approverGroups.join(',');
    data[k('publisherGroups')] = p.publisherGroups.join(',');
    data[k('maxGrantDuration')] = formatDuration(p.maxGrantDurationMs);
    data[k('keyLease')] = formatDuration(p.keyLeaseMs);
    data[k('kekRotation')] = formatDuration(p.kekRotationMs);
    data[k('dedicatedKek')] = String(p.dedicatedKek);
    data[k('kekVersionRetention')] = formatDuration(p.kekVersionRetentionMs);
  }
  return data;
}

/** Replaces the KEK rotation periods of the classifications named (the `--kek-rotation` override). */
export function withKekRotation(
  table: ClassificationTable,
  periods: Readonly<Partial<Record<Classification, number>>>,
): ClassificationTable {
  const classifications = { ...table.classifications };
  for (const c of CLASSIFICATIONS) {
    const period = periods[c];
    if (period !== undefined)
      classifications[c] = Object.freeze({ ...classifications[c], kekRotationMs: period });
  }
  return Object.freeze({ ...table, classifications: Object.freeze(classifications) });
}
