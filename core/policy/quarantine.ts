/**
 * Identity quarantine (docs/detection.md#automatic-quarantine): the ConfigMap `strongroom-quarantines` in the
 * operator's namespace holds one key per quarantined workload identity, `<namespace>.<serviceAccount>` (a namespace
 * has no dot, so the key splits at its first dot), whose value is a JSON record of why. Pure: the operator's store
 * (operator/quarantine/) reads and writes the ConfigMap, the AccessGrant decision and the broker read the parsed map.
 *
 * Fail closed: the key alone quarantines. A value that is not a readable record still quarantines the identity the
 * key names (its record then says `unreadable` and `problem` says why), because whoever could write the key meant
 * to. A key that names no possible identity (no dot, or a part that is not a DNS name) cannot match any workload
 * and is reported as a problem. Only the security groups may remove or change a key (a ValidatingAdmissionPolicy,
 * core/governance/admission-policies.ts); the operator may only add.
 */
import { isDns1123Label, isDns1123Subdomain } from '../api/validation.ts';

/** The ConfigMap (in the operator's namespace) that lists the quarantined identities. */
export const QUARANTINES_CONFIGMAP = 'strongroom-quarantines';

/** A workload identity: a namespace and a service account in it. */
export interface WorkloadRef {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Why an identity is quarantined: the value of its key, as JSON. */
export interface QuarantineRecord {
  /** RFC 3339: when it was quarantined. */
  readonly since: string;
  /** The anomaly alert that caused it; "" for a quarantine someone added by hand. */
  readonly alertId: string;
  /** The detection rule of that alert (e.g. `bulk-access`); "" when manual. */
  readonly rule: string;
  /** The alert's severity; "" when manual. */
  readonly severity: string;
  /** A sentence: what was seen. */
  readonly reason: string;
}

/** One quarantined identity as read from the ConfigMap. */
export interface Quarantine {
  readonly identity: WorkloadRef;
  readonly key: string;
  readonly record: QuarantineRecord;
  /** Set when the value was not a readable record (the identity is quarantined all the same). */
  readonly problem?: string;
}

/** The quarantined identities, by key, and what could not be read. */
export interface QuarantineSet {
  readonly byKey: ReadonlyMap<string, Quarantine>;
  /** Keys that name no identity, each with the reason; they quarantine nothing. */
  readonly problems: readonly string[];
}

export const EMPTY_QUARANTINES: QuarantineSet = { byKey: new Map(), problems: [] };

const FIELDS = ['since', 'alertId', 'rule', 'severity', 'reason'] as const;
const TEXT_MAX = 1024;

/** The ConfigMap key of an identity: `<namespace>.<serviceAccount>`. */
export function quarantineKey(identity: WorkloadRef): string {
  return `${identity.namespace}.${identity.serviceAccount}`;
}

/** The identity a key names, or a reason it names none. */
export function parseQuarantineKey(key: string): WorkloadRef | string {
  const dot = key.indexOf('.');
  if (dot <= 0 || dot === key.length - 1)
    return `key ${JSON.stringify(key)} is not <namespace>.<serviceAccount>`;
  const namespace = key.slice(0, dot);
  const serviceAccount = key.slice(dot + 1);
  const problems = [
    ...isDns1123Label(namespace).map((p) => `namespace: ${p}`),
    ...isDns1123Subdomain(serviceAccount).map((p) => `service account: ${p}`),
  ];
  if (problems.length > 0) return `key ${JSON.stringify(key)} names no identity (${problems.join('; ')})`;
  return { namespace, serviceAccount };
}

/** The JSON value of a record, fields in a fixed order. */
export function formatQuarantineRecord(record: QuarantineRecord): string {
  return JSON.stringify(Object.fromEntries(FIELDS.map((f) => [f, record[f].slice(0, TEXT_MAX)])));
}

/** A record from a key's value, or the reason it is unreadable. */
export function parseQuarantineRecord(value: string): QuarantineRecord | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return 'the value is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'the value is not a JSON object';
  const object = parsed as Record<string, unknown>;
  const record: Record<string, string> = {};
  for (const field of FIELDS) {
    const v = object[field];
    if (typeof v !== 'string') return `field ${field} is not a string`;
    record[field] = v;
  }
  if (Number.isNaN(new Date(record.since ?? '').getTime())) return 'field since is not a time';
  return record as unknown as QuarantineRecord;
}

/** The quarantined identities in the ConfigMap's data (absent ConfigMap: pass `{}`). */
export function parseQuarantines(data: Readonly<Record<string, string>>): QuarantineSet {
  const byKey = new Map<string, Quarantine>();
  const problems: string[] = [];
  for (const key of Object.keys(data).sort()) {
    const identity = parseQuarantineKey(key);
    if (typeof identity === 'string') {
      problems.push(identity);
      continue;
    }
    const record = parseQuarantineRecord(data[key] ?? '');
    if (typeof record === 'string') {
      byKey.set(key, {
        identity,
        key,
        record: { since: '', alertId: '', rule: '', severity: '', reason: 'unreadable' },
        problem: record,
      });
      continue;
    }
    byKey.set(key, { identity, key, record });
  }
  return { byKey, problems };
}

/** The quarantine of an identity, or undefined. */
export function quarantineOf(set: QuarantineSet, identity: WorkloadRef): Quarantine | undefined {
  return set.byKey.get(quarantineKey(identity));
}

/** A sentence saying why the identity is quarantined and how it is lifted (grant messages, broker refusals). */
export function describeQuarantine(q: Quarantine): string {
  const who = `${q.identity.namespace}/${q.identity.serviceAccount}`;
  const r = q.record;
  const why =
    q.problem !== undefined
      ? ` (its record is unreadable: ${q.problem})`
      : r.alertId !== ''
        ? ` by anomaly alert ${r.alertId} (rule ${r.rule}, severity ${r.severity}) since ${r.since}${r.reason === '' ? '' : `: ${r.reason}`}`
        : ` since ${r.since}${r.reason === '' ? '' : `: ${r.reason}`}`;
  return (
    `service account ${who} is quarantined${why}. ` +
    `A member of the security groups lifts it by removing key ${q.key} from ConfigMap ${QUARANTINES_CONFIGMAP} ` +
    `in the operator's namespace (kubectl edit)`
  );
}
