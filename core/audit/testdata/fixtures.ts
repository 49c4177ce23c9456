/** Test fixtures: real logs written by AuditLog with a controlled clock, and line-level tampering helpers. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditKey, keyReleaseEvent, type AuditEvent, type GovernanceEvent } from '../event.ts';
import { AuditLog } from '../log.ts';
import {
  generateNoteKey,
  parseSignerKey,
  parseVerifierKey,
  type NoteSigner,
  type NoteVerifier,
} from '../note.ts';

export const ORIGIN = 'strongroom.audit/test-cluster/replica-0';
export const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.secret-token-payload.sig';
export const WRAPPED_KEY = 'c2VjcmV0LWRlay1ieXRlcy1uZXZlci1pbi1jbGVhcg==';
export const AUDIT_KEY = new AuditKey(Buffer.alloc(32, 9));

export interface Keys {
  readonly signer: NoteSigner;
  readonly verifier: NoteVerifier;
  readonly signerKey: string;
  readonly verifierKey: string;
}

export function makeKeys(name: string = ORIGIN): Keys {
  const { signerKey, verifierKey } = generateNoteKey(name);
  return {
    signer: parseSignerKey(signerKey),
    verifier: parseVerifierKey(verifierKey),
    signerKey,
    verifierKey,
  };
}

export function releaseEvent(i: number): AuditEvent {
  return keyReleaseEvent(
    {
      decision: i % 5 === 4 ? 'deny' : 'allow',
      reason: i % 5 === 4 ? 'no-grant' : 'granted',
      workload: {
        namespace: 'team-a',
        serviceAccount: 'trainer',
        podUid: `pod-${i}`,
        certificateSerial: `0a:${i}`,
      },
      artifact: {
        namespace: 'models',
        name: 'llama',
        version: 'v3',
        classification: 'restricted',
        environment: 'prod',
      },
      key: { id: 'kek-prod', version: '2' },
      grant:
        i % 5 === 4
          ? null
          : {
              namespace: 'team-a',
              name: 'g1',
              uid: 'grant-uid-1',
              resourceVersion: '77',
              approvals: [{ uid: 'ap-1', resourceVersion: '80', approver: 'bob' }],
            },
      secrets: { token: TOKEN, wrappedKey: WRAPPED_KEY },
    },
    AUDIT_KEY,
  );
}

const GRANT = { namespace: 'ml-dev', name: 'g1', uid: 'grant-uid-1', resourceVersion: '77' };
const ARTIFACT = { namespace: 'ml-dev', name: 'resnet50', uid: 'artifact-uid-1' };
const VERSION = {
  artifact: ARTIFACT,
  version: 'v3',
  digest: `sha256:${'ab'.repeat(32)}`,
  publisher: 'alice',
  publishedAt: '2026-01-01T00:00:00Z',
};

/** One well-formed event of every governance type (the test vectors of docs/audit.md#governance-events). */
export const GOVERNANCE_EVENTS: readonly GovernanceEvent[] = [
  { type: 'grant-created', grant: GRANT, actor: 'alice', reason: 'Created', phase: 'Pending' },
  {
    type: 'grant-approved',
    grant: GRANT,
    actor: 'bob',
    reason: 'Approved',
    groups: ['ml-approvers'],
    detail: 'ticket SEC-12',
  },
  {
    type: 'grant-denied',
    grant: GRANT,
    actor: 'carol',
    reason: 'DeniedByApprover',
    groups: ['ml-approvers'],
    previousPhase: 'Pending',
    phase: 'Denied',
    detail: 'not for prod data',
  },
  {
    type: 'grant-activated',
    grant: GRANT,
    actor: 'strongroom-operator',
    reason: 'Granted',
    previousPhase: 'Pending',
    phase: 'Active',
  },
  {
    type: 'grant-expired',
    grant: GRANT,
    actor: 'strongroom-operator',
    reason: 'ApprovalTimedOut',
    previousPhase: 'Pending',
    phase: 'Expired',
  },
  {
    type: 'grant-revoked',
    grant: GRANT,
    actor: 'unknown',
    reason: 'RevokedByAdministrator',
    previousPhase: 'Active',
    phase: 'Revoked',
    detail: 'INC-4711',
  },
  {
    type: 'grant-quarantined',
    grant: GRANT,
    actor: 'unknown',
    reason: 'Quarantined',
    previousPhase: 'Active',
    phase: 'Denied',
    detail: 'investigation INC-4712',
  },
  {
    type: 'grant-lifted',
    grant: GRANT,
    actor: 'unknown',
    reason: 'QuarantineLifted',
    previousPhase: 'Denied',
    phase: 'Active',
  },
  { type: 'version-published', ...VERSION, actor: 'alice', reason: 'published-directly' },
  {
    type: 'version-sealed',
    ...VERSION,
    actor: 'strongroom-operator',
    reason: 'sealed',
    key: { id: 'strongroom-internal', version: '1' },
  },
  { type: 'environment-changed', namespace: 'ml-dev', old: null, new: 'dev', reason: 'label-added' },
  { type: 'environment-changed', namespace: 'ml-dev', old: 'dev', new: 'prod', reason: 'label-changed' },
  { type: 'environment-changed', namespace: 'ml-dev', old: 'prod', new: null, reason: 'label-removed' },
];

export interface BuiltLog {
  readonly path: string;
  readonly keys: Keys;
  /** The signed checkpoints, in the order written. */
  readonly notes: string[];
}

/**
 * Writes a log of `entries` release events (plus the writer-started entry 0), one second apart, with a
 * signed checkpoint after every `checkpointEvery` entries and at the end.
 */
export async function buildLog(
  dir: string,
  options: {
    entries: number;
    checkpointEvery: number;
    keys?: Keys;
    name?: string;
    event?: (i: number) => AuditEvent;
  },
): Promise<BuiltLog> {
  const keys = options.keys ?? makeKeys();
  const path = join(dir, options.name ?? 'audit.log');
  const clock = { t: Date.UTC(2026, 0, 1) };
  const log = await AuditLog.open({
    path,
    origin: ORIGIN,
    signer: keys.signer,
    now: () => clock.t,
    checkpointIntervalMs: 1e12,
    heartbeatIntervalMs: 0,
  });
  const notes = [log.latestCheckpoint];
  for (let i = 0; i < options.entries; i++) {
    clock.t += 1000;
    await log.append((options.event ?? releaseEvent)(i));
    if ((i + 1) % options.checkpointEvery === 0) notes.push(await log.checkpoint());
  }
  if (options.entries % options.checkpointEvery !== 0) notes.push(await log.checkpoint());
  await log.close();
  return { path, keys, notes };
}

export function readLines(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return text.slice(0, -1).split('\n');
}

export function writeLines(path: string, lines: readonly string[]): void {
  writeFileSync(path, lines.join('\n') + '\n');
}

/** The index in `lines` of the entry with this seq. */
export function lineOfSeq(lines: readonly string[], seq: number): number {
  const i = lines.findIndex((l) => l.includes(`"seq":${seq},`));
  if (i < 0) throw new Error(`no entry ${seq}`);
  return i;
}
