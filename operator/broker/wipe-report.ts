/**
 * `ReportWipe` (docs/broker.md § ReportWipe, docs/metrics.md § Time-to-revoke): a sidecar confirms that it wiped one
 * artifact's plaintext in answer to a revocation this broker sent it. Order of work: the request's shape → the
 * revocation matched in this broker's own record of what it sent the caller's pod (revocation-feed.ts), for one of
 * the versions it revoked there → the version marked as reported → the report appended to the audit log
 * (`broker-access`, operation `report-wipe`; the mark is undone when the append fails) → only then the time from the
 * end of access to this receipt observed in `strongroom_revocation_to_wipe_seconds`. The time always comes from the
 * broker's own record, never from the request, so a caller cannot put a number of its choosing into the histogram,
 * and one revocation gives at most one sample per version it revoked for that pod, however many reports arrive and
 * however they interleave. A report the broker cannot match (another replica's or process's revocation, one
 * forgotten after 15 minutes, a version the revocation did not revoke for that pod) is audited and counted as
 * `unmatched`; a second report of the same wipe, or one beyond the revocation's number of versions, as `duplicate`;
 * neither is observed. Every audited report's detail carries the `ended_at` the sidecar echoed, as it sent it.
 */
import type { AppendReceipt, BrokerAccessInput } from '../../core/audit/index.ts';
import { isDns1123Label } from '../../core/api/validation.ts';
import type { WipeReportOutcome } from '../observability/metrics.ts';
import { BrokerError } from './errors.ts';
import { workloadOf, type Peer } from './peer.ts';
import { artifactRefProblem, printable } from './request-fields.ts';
import type { DeliveredRevocations } from './revocation-feed.ts';

/** What made the sidecar wipe (the request's `trigger`). */
export const WIPE_TRIGGERS = ['revocation', 'lease-expired', 'renewal-denied'] as const;
export type WipeTrigger = (typeof WIPE_TRIGGERS)[number];

/** The longest wipe duration a report may state (a larger one is malformed). */
const MAX_WIPE_DURATION_MS = 3600_000;

/** A ReportWipe request, decoded from the wire. */
export interface WipeReportInput {
  readonly seq: string;
  readonly epoch: string;
  /** The revocation's ended_at as the caller echoed it (in the audit detail; never measured from). */
  readonly reportedEndedAt: Date | undefined;
  readonly artifactNamespace: string;
  readonly artifactName: string;
  readonly version: string;
  readonly filesRemoved: string;
  /** The sidecar's wipe duration in ms, or NaN when absent or malformed. */
  readonly wipeMs: number;
  readonly trigger: string;
}

export interface WipeReportDeps {
  /** Appends the report; rejects with AuditUnavailableError (audit-trail.ts) when it is not durable. */
  readonly audit: { access(input: BrokerAccessInput): Promise<AppendReceipt> };
  readonly delivered: Pick<DeliveredRevocations, 'find'>;
  /** This broker process's revocation epoch. */
  readonly epoch: string;
  /** Receipt time of the report. */
  readonly now: () => Date;
  /** The outcome, and the time-to-revoke in seconds for a recorded report. */
  readonly observe: (outcome: WipeReportOutcome, seconds?: number) => void;
}

export interface WipeReportResult {
  readonly recorded: boolean;
  readonly auditIndex: number;
}

/** At most this many versions are named in an audit detail (each a DNS-1123 label, so the detail stays short). */
const MAX_VERSIONS_IN_DETAIL = 4;

/** `at` for an audit detail; a date the caller sent may be out of Date's range. */
function isoOrRange(at: Date): string {
  return Number.isFinite(at.getTime()) ? at.toISOString() : 'out of range';
}

/** `versions` for an audit detail, bounded. */
function versionList(versions: ReadonlySet<string>): string {
  const all = [...versions];
  const shown = all.slice(0, MAX_VERSIONS_IN_DETAIL).join(', ');
  return all.length > MAX_VERSIONS_IN_DETAIL
    ? `${shown} and ${String(all.length - MAX_VERSIONS_IN_DETAIL)} more`
    : shown;
}

/** Why the report is malformed, or undefined. */
function requestProblem(r: WipeReportInput): string | undefined {
  if (!/^\d{1,15}$/.test(r.seq) || r.seq === '0')
    return 'revocation.seq must be a revocation sequence number';
  if (r.epoch === '' || r.epoch.length > 64) return 'revocation.epoch must name the epoch of the revocation';
  const ref = artifactRefProblem(r.artifactNamespace, r.artifactName);
  if (ref !== undefined) return ref;
  if (isDns1123Label(r.version).length > 0)
    return `version ${JSON.stringify(printable(r.version))} is not a DNS-1123 label`;
  if (!/^\d{1,15}$/.test(r.filesRemoved)) return 'files_removed is out of range';
  if (!Number.isFinite(r.wipeMs) || r.wipeMs < 0 || r.wipeMs > MAX_WIPE_DURATION_MS)
    return 'wipe_duration must be set, and between 0 and 1 hour';
  if (!(WIPE_TRIGGERS as readonly string[]).includes(r.trigger))
    return `trigger must be one of ${WIPE_TRIGGERS.join(', ')}`;
  return undefined;
}

/**
 * Runs ReportWipe for a verified peer whose pod exists. Throws BrokerError: INVALID_ARGUMENT for a malformed report
 * (audited), AuditUnavailableError when the report cannot be audited (the caller retries).
 */
export async function reportWipe(
  peer: Peer,
  request: WipeReportInput,
  deps: WipeReportDeps,
): Promise<WipeReportResult> {
  const receivedAt = deps.now();
  const artifact = {
    namespace: printable(request.artifactNamespace),
    name: printable(request.artifactName),
    version: printable(request.version),
  };
  const audit = (decision: 'allow' | 'deny', reason: string, detail: string): Promise<AppendReceipt> =>
    deps.audit.access({
      operation: 'report-wipe',
      decision,
      reason,
      peer: peer.address,
      verified: true,
      workload: workloadOf(peer),
      artifact,
      detail,
    });

  const invalid = requestProblem(request);
  if (invalid !== undefined) {
    const error = new BrokerError('INVALID_ARGUMENT', 'invalid-request', invalid);
    try {
      await audit('deny', error.reason, error.message);
    } finally {
      deps.observe('invalid');
    }
    throw error;
  }

  const seq = Number(request.seq);
  const sent = request.epoch === deps.epoch ? deps.delivered.find(peer.podUid, seq) : undefined;
  const matched =
    sent !== undefined &&
    sent.artifact.namespace === request.artifactNamespace &&
    sent.artifact.name === request.artifactName
      ? sent
      : undefined;
  const files = `${request.filesRemoved} file(s) removed in ${String(Math.round(request.wipeMs))} ms (${request.trigger})`;
  const echoed = `; the sidecar echoed ${request.reportedEndedAt === undefined ? 'no ended_at' : `ended_at ${isoOrRange(request.reportedEndedAt)}`}`;
  const revocation = `revocation ${printable(request.epoch)}/${request.seq}`;

  let outcome: WipeReportOutcome;
  let reason: string;
  let detail: string;
  let seconds: number | undefined;
  if (matched === undefined) {
    outcome = 'unmatched';
    reason = 'revocation-unknown';
    detail = `${revocation} is not one this broker process sent this pod for the artifact: not timed; ${files}`;
  } else if (matched.versions !== undefined && !matched.versions.has(request.version)) {
    outcome = 'unmatched';
    reason = 'version-not-revoked';
    detail = `${revocation} (${matched.reason}) revoked for this pod only version(s) ${versionList(matched.versions)}: not timed; ${files}`;
  } else if (matched.reported.has(request.version)) {
    outcome = 'duplicate';
    reason = 'already-reported';
    detail = `${revocation} (${matched.reason}) was already reported for this version: not timed again; ${files}`;
  } else if (matched.reported.size >= matched.maxReports) {
    outcome = 'duplicate';
    reason = 'reports-exhausted';
    detail = `${revocation} (${matched.reason}) already had its ${String(matched.maxReports)} report(s) timed, one per version it revoked for this pod: not timed; ${files}`;
  } else {
    outcome = 'recorded';
    reason = 'wipe-confirmed';
    seconds = Math.max(0, (receivedAt.getTime() - matched.endedAt.getTime()) / 1000);
    detail = `${revocation} (${matched.reason}), access ended ${matched.endedAt.toISOString()}: wipe confirmed ${String(Math.round(seconds * 1000))} ms later; ${files}`;
    // Marked before the append, so that a concurrent report of the same wipe (a retry while this append is slow) is a
    // duplicate; unmarked if the append fails, so that the retry of a report the log refused is recorded.
    matched.reported.add(request.version);
  }
  let receipt: AppendReceipt;
  try {
    receipt = await audit('allow', reason, detail + echoed);
  } catch (error) {
    if (outcome === 'recorded') matched?.reported.delete(request.version);
    deps.observe('unavailable');
    throw error;
  }
  deps.observe(outcome, seconds);
  return { recorded: outcome === 'recorded', auditIndex: receipt.seq };
}
