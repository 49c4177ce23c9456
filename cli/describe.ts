/**
 * `strongroom describe artifact|grant NAME`: one object in full, for people, like `kubectl describe`: its spec,
 * conditions, versions, approvals and denial, who may read what, and the last key releases from the audit log.
 *
 * The audit log is not in the API server: each operator replica writes its own file (docs/audit.md, "One log per
 * replica"). `--audit-log <file|dir>` reads the collected logs with core/audit, verifies each (pinned with
 * `--public-key`, else against the key in its header, which proves nothing about who wrote it) and lists the last
 * `--releases N` key-release decisions (allowed and denied) for the object, and for a grant its governance events.
 *
 * The text and the `-o json|yaml` document are built by pure functions over the objects, exported for the tests.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type {
  AccessGrant,
  AccessGrantSubject,
  ModelArtifact,
  ModelArtifactStatusCondition,
} from '../core/api/index.ts';
import { parseVerifierKey, verifyLog, type NoteVerifier } from '../core/audit/index.ts';
import { QUARANTINE_ANNOTATION, REVOKED_ANNOTATION } from '../core/policy/grant.ts';
import { connect, explainApiError, type Cluster } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { CliError, EXIT, usageError, type CliIo } from './io.ts';
import {
  approvalsNeeded,
  approvalsText,
  grantVersionsText,
  phaseText,
  versionRows,
  VERSION_COLUMNS,
  withoutManagedFields,
  type VersionRow,
} from './get.ts';
import { age, formatTable, outputOption, printDocument, type Column, type OutputFormat } from './output.ts';

// ---------------------------------------------------------------------------------------------------------------
// The audit log: entries for one artifact or grant.

/** One entry of an audit log that concerns the object described. */
export interface AuditRecord {
  /** The log's origin (`strongroom.audit/<cluster>/<replica>`). */
  readonly origin: string;
  readonly seq: number;
  readonly time: string;
  readonly event: Record<string, unknown> & { readonly type: string };
}

/** One log file read and verified. */
export interface AuditSource {
  readonly path: string;
  readonly origin: string;
  /** The log verified (with the pinned key, if one was given). */
  readonly verified: boolean;
  /** Whether a `--public-key` pinned the signer. */
  readonly pinned: boolean;
  /** The errors the verifier found, one line each. */
  readonly problems: readonly string[];
  readonly records: readonly AuditRecord[];
}

/** The `*.log` files `path` stands for: a file as given; a directory's `*.log`, one level of subdirectories too. */
export async function auditLogFiles(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new CliError(EXIT.notFound, `cannot read the audit log ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!info.isDirectory()) return [path];
  const found: string[] = [];
  const scan = async (dir: string, depth: number): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const child = join(dir, entry.name);
      if (entry.isFile() && entry.name.endsWith('.log')) found.push(child);
      else if (entry.isDirectory() && depth < 1) await scan(child, depth + 1);
    }
  };
  await scan(path, 0);
  if (found.length === 0) throw usageError(`no *.log file in ${path} or its subdirectories`);
  return found.sort();
}

/** Reads and verifies one log and keeps its entries (every line `{"event":…}`). */
export function readAuditSource(
  path: string,
  bytes: Buffer,
  verifiers?: readonly NoteVerifier[],
): AuditSource {
  const report = verifyLog(bytes, verifiers === undefined ? {} : { verifiers });
  const records: AuditRecord[] = [];
  const origin = report.origin ?? path;
  for (const line of bytes.toString('utf8').split('\n')) {
    if (!line.startsWith('{"event":')) continue;
    try {
      const entry = JSON.parse(line) as { event?: unknown; seq?: unknown; time?: unknown };
      const event = entry.event as Partial<AuditRecord['event']> | null | undefined;
      if (typeof event !== 'object' || event === null || typeof event.type !== 'string') continue;
      records.push({
        origin,
        seq: typeof entry.seq === 'number' ? entry.seq : -1,
        time: typeof entry.time === 'string' ? entry.time : '',
        event: event as AuditRecord['event'],
      });
    } catch {
      // A torn or edited line: the verifier reports it.
    }
  }
  return {
    path,
    origin,
    verified: report.ok,
    pinned: verifiers !== undefined,
    problems: report.findings
      .filter((f) => f.severity === 'error')
      .map((f) => `${f.kind}${f.entry === undefined ? '' : ` entry=${String(f.entry)}`}: ${f.message}`),
    records,
  };
}

/** Loads `--audit-log` and `--public-key`. */
export async function loadAuditSources(logPath: string, publicKey?: string): Promise<AuditSource[]> {
  let verifiers: NoteVerifier[] | undefined;
  if (publicKey !== undefined) {
    let text: string;
    try {
      text = await readFile(publicKey, 'utf8');
    } catch (cause) {
      throw usageError(`cannot read the public key ${publicKey}: ${(cause as Error).message}`, { cause });
    }
    try {
      verifiers = text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'))
        .map((k) => parseVerifierKey(k));
    } catch (cause) {
      throw usageError(`${publicKey}: ${(cause as Error).message}`, { cause });
    }
  }
  const sources: AuditSource[] = [];
  for (const file of await auditLogFiles(logPath)) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (cause) {
      throw usageError(`cannot read the audit log ${file}: ${(cause as Error).message}`, { cause });
    }
    sources.push(readAuditSource(file, bytes, verifiers));
  }
  return sources;
}

interface Named {
  readonly namespace?: unknown;
  readonly name?: unknown;
}
const names = (ref: unknown, namespace: string, name: string): boolean =>
  typeof ref === 'object' &&
  ref !== null &&
  (ref as Named).namespace === namespace &&
  (ref as Named).name === name;

/** Key-release decisions (allowed or denied) for the artifact `namespace/name`, and its version events. */
export function isArtifactRecord(record: AuditRecord, namespace: string, name: string): boolean {
  const { type } = record.event;
  return (
    (type === 'key-release' || type === 'version-published' || type === 'version-sealed') &&
    names(record.event['artifact'], namespace, name)
  );
}

/** Key-release decisions under the grant `namespace/name`, and its governance events (`grant-*`). */
export function isGrantRecord(record: AuditRecord, namespace: string, name: string): boolean {
  const { type } = record.event;
  return (
    (type === 'key-release' || type.startsWith('grant-')) && names(record.event['grant'], namespace, name)
  );
}

/** The last `n` records of every source matching `test`, oldest first (by time, then origin and seq). */
export function lastRecords(
  sources: readonly AuditSource[],
  test: (r: AuditRecord) => boolean,
  n: number,
): AuditRecord[] {
  const all = sources.flatMap((s) => s.records.filter(test));
  all.sort((a, b) =>
    a.time === b.time
      ? a.origin === b.origin
        ? a.seq - b.seq
        : a.origin < b.origin
          ? -1
          : 1
      : a.time < b.time
        ? -1
        : 1,
  );
  return n <= 0 ? [] : all.slice(-n);
}

function str(value: unknown): string {
  return typeof value === 'string'
    ? value
    : value === undefined || value === null
      ? ''
      : JSON.stringify(value);
}
function field(object: unknown, key: string): unknown {
  return typeof object === 'object' && object !== null ? (object as Record<string, unknown>)[key] : undefined;
}

export const AUDIT_COLUMNS: readonly Column<AuditRecord>[] = [
  { header: 'TIME', cell: (r) => r.time },
  {
    header: 'EVENT',
    cell: (r) => (r.event.type === 'key-release' ? `release ${str(r.event['decision'])}` : r.event.type),
  },
  { header: 'REASON', cell: (r) => str(r.event['reason']) },
  {
    header: 'WHO',
    cell: (r) => {
      const workload = r.event['workload'];
      if (workload !== undefined) {
        const pod = str(field(workload, 'podUid'));
        return `${str(field(workload, 'namespace'))}/${str(field(workload, 'serviceAccount'))}${pod ? ` pod ${pod.slice(0, 8)}` : ''}`;
      }
      return str(r.event['actor']);
    },
  },
  {
    header: 'VERSION',
    cell: (r) => str(field(r.event['artifact'], 'version')) || str(r.event['version']),
  },
  { header: 'GRANT', cell: (r) => str(field(r.event['grant'], 'name')) },
  { header: 'LOG', cell: (r) => `${r.origin.split('/').at(-1) ?? r.origin}#${String(r.seq)}` },
];

/** How to get the releases when `--audit-log` was not given. */
export const AUDIT_HINT =
  'not shown: the audit log is on the operator replicas, not in the API server. Collect the replica logs ' +
  '(docs/audit.md, "One log per replica") and pass --audit-log <file|dir> [--public-key audit.vkey].';

function sourcesText(sources: readonly AuditSource[]): string {
  return sources
    .map((s) => {
      const state = s.verified
        ? s.pinned
          ? 'verified'
          : 'verified against its own header key (not pinned)'
        : 'DOES NOT VERIFY';
      const problems = s.problems
        .slice(0, 3)
        .map((p) => `\n      ${p}`)
        .join('');
      return `  ${s.path}: ${state}, origin ${s.origin}${problems}`;
    })
    .join('\n');
}

function auditSection(
  title: string,
  sources: readonly AuditSource[] | undefined,
  records: readonly AuditRecord[],
  limit: number,
): string {
  if (sources === undefined) return `${title}: ${AUDIT_HINT}\n`;
  const body =
    records.length === 0 ? '  (none in these logs)\n' : indent(formatTable(records, AUDIT_COLUMNS));
  return `${title} (last ${String(limit)}):\n${sourcesText(sources)}\n${body}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Text.

function indent(text: string, by = '  '): string {
  return text
    .split('\n')
    .map((l) => (l === '' ? l : by + l))
    .join('\n');
}

/** `Key:  value` lines, aligned. */
function fields(rows: readonly (readonly [string, string | undefined])[]): string {
  const present = rows.filter((r): r is readonly [string, string] => r[1] !== undefined && r[1] !== '');
  const width = Math.max(...present.map(([k]) => k.length)) + 2;
  return present
    .map(([k, v]) => `${`${k}:`.padEnd(width)}${v.replace(/\n/g, `\n${' '.repeat(width)}`)}\n`)
    .join('');
}

function when(timestamp: string | Date | undefined, now: Date): string | undefined {
  if (timestamp === undefined) return undefined;
  const text = typeof timestamp === 'string' ? timestamp : `${timestamp.toISOString().slice(0, 19)}Z`;
  return `${text} (${age(timestamp, now)} ago)`;
}

function conditionsSection(
  conditions: readonly ModelArtifactStatusCondition[] | undefined,
  now: Date,
): string {
  if (conditions === undefined || conditions.length === 0) return 'Conditions:  <none: not evaluated yet>\n';
  return `Conditions:\n${indent(
    formatTable(conditions, [
      { header: 'TYPE', cell: (c) => c.type },
      { header: 'STATUS', cell: (c) => c.status },
      { header: 'REASON', cell: (c) => c.reason },
      { header: 'AGE', cell: (c) => age(c.lastTransitionTime, now) },
      { header: 'MESSAGE', cell: (c) => c.message },
    ]),
  )}`;
}

export function subjectText(s: AccessGrantSubject): string {
  const selector = s.podSelector;
  const parts = [
    ...Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(selector?.matchExpressions ?? []).map(
      (e) => `${e.key} ${e.operator}${e.values ? ` (${e.values.join(',')})` : ''}`,
    ),
  ];
  return `${s.namespace}/${s.serviceAccount}${parts.length > 0 ? ` pods ${parts.join(', ')}` : ''}`;
}

function storageText(artifact: ModelArtifact): string {
  const storage = artifact.spec.storage;
  if (storage.persistentVolumeClaim)
    return `PersistentVolumeClaim ${storage.persistentVolumeClaim.claimName}, path ${storage.path}`;
  if (storage.s3) {
    const s3 = storage.s3;
    return `S3 bucket ${s3.bucket}${s3.prefix ? `/${s3.prefix}` : ''}, path ${storage.path}${s3.endpoint ? ` at ${s3.endpoint}` : ''} (credentials: Secret ${s3.credentialsSecretRef.name})`;
  }
  return `path ${storage.path}`;
}

/** Whether `grant` covers `version` as far as its status says (`resolvedVersions`), or its spec when no status. */
function grantRow(grant: AccessGrant) {
  return {
    name: grant.metadata.name ?? '',
    mode: grant.spec.mode,
    versions: grantVersionsText(grant),
    subjects: grant.spec.subjects.map(subjectText),
    phase: phaseText(grant),
    approvals: approvalsText(grant),
    expiresAt: grant.spec.expiresAt,
  };
}

/** What `--audit-log` and `--releases` add to the inputs of `describe`. `sources` undefined: no `--audit-log` given. */
export interface AuditFacts {
  readonly sources?: readonly AuditSource[] | undefined;
  /** How many records to list (10 when not given). */
  readonly releases?: number;
}

/** The inputs of `describe artifact`. */
export interface ArtifactFacts extends AuditFacts {
  readonly artifact: ModelArtifact;
  readonly grants: readonly AccessGrant[];
}

/** The last key releases of the artifact in the audit logs, if any were given. */
function artifactRecords(facts: ArtifactFacts, limit: number): AuditRecord[] {
  const { artifact } = facts;
  return facts.sources === undefined
    ? []
    : lastRecords(
        facts.sources,
        (r) =>
          isArtifactRecord(r, artifact.metadata.namespace ?? '', artifact.metadata.name ?? '') &&
          r.event.type === 'key-release',
        limit,
      );
}

export function describeArtifactText(facts: ArtifactFacts, now = new Date()): string {
  const { artifact } = facts;
  const limit = facts.releases ?? 10;
  const recipient = artifact.status?.recipientPublicKey;
  const head = fields([
    ['Name', artifact.metadata.name],
    ['Namespace', artifact.metadata.namespace],
    ['Type', artifact.spec.type ?? 'model'],
    ['Classification', artifact.spec.classification],
    [
      'Owner',
      `${artifact.spec.owner.team}${artifact.spec.owner.contact ? ` <${artifact.spec.owner.contact}>` : ''}`,
    ],
    ['Storage', storageText(artifact)],
    [
      'Recipient key',
      recipient === undefined
        ? '<none yet: the operator has not evaluated the artifact>'
        : `${recipient.fingerprint} (${recipient.algorithm}${recipient.createdAt ? `, created ${recipient.createdAt}` : ''})`,
    ],
    ['Latest', artifact.status?.latestVersion ?? '<none>'],
    ['Created', when(artifact.metadata.creationTimestamp, now)],
  ]);
  const versions = versionRows(artifact);
  const versionsText =
    versions.length === 0
      ? 'Versions:  <none published>\n'
      : `Versions:\n${indent(formatTable(versions, VERSION_COLUMNS))}`;
  const grants = facts.grants.filter((g) => g.spec.artifactRef.name === artifact.metadata.name);
  const rows = grants.map(grantRow);
  const readers =
    rows.length === 0
      ? `Who may read it:  no AccessGrant in ${artifact.metadata.namespace ?? ''} names this artifact\n`
      : `Who may read it (AccessGrants naming it; only Active grants release keys):\n${indent(
          formatTable(
            rows.flatMap((r) => r.subjects.map((subject, i) => ({ ...r, subject, first: i === 0 }))),
            [
              { header: 'GRANT', cell: (r) => (r.first ? r.name : '') },
              { header: 'MODE', cell: (r) => (r.first ? r.mode : '') },
              { header: 'VERSIONS', cell: (r) => (r.first ? r.versions : '') },
              { header: 'PHASE', cell: (r) => (r.first ? r.phase : '') },
              { header: 'APPROVALS', cell: (r) => (r.first ? r.approvals : '') },
              { header: 'EXPIRES', cell: (r) => (r.first ? r.expiresAt : '') },
              { header: 'SUBJECT', cell: (r) => r.subject },
            ],
          ),
        )}`;
  const records = artifactRecords(facts, limit);
  return [
    head,
    conditionsSection(artifact.status?.conditions, now),
    versionsText,
    readers,
    auditSection('Last releases from the audit log', facts.sources, records, limit),
  ].join('');
}

/** The inputs of `describe grant`. */
export interface GrantFacts extends AuditFacts {
  readonly grant: AccessGrant;
  /** The artifact it names, if it exists and could be read. */
  readonly artifact?: ModelArtifact | undefined;
}

/** The last key releases and governance events of the grant in the audit logs, if any were given. */
function grantRecords(facts: GrantFacts, limit: number): AuditRecord[] {
  const { grant } = facts;
  return facts.sources === undefined
    ? []
    : lastRecords(
        facts.sources,
        (r) => isGrantRecord(r, grant.metadata.namespace ?? '', grant.metadata.name ?? ''),
        limit,
      );
}

export function describeGrantText(facts: GrantFacts, now = new Date()): string {
  const { grant } = facts;
  const limit = facts.releases ?? 10;
  const annotations = grant.metadata.annotations ?? {};
  const { counted, required } = approvalsNeeded(grant);
  const spec = grant.spec;
  const head = fields([
    ['Name', grant.metadata.name],
    ['Namespace', grant.metadata.namespace],
    [
      'Artifact',
      `${spec.artifactRef.name}${facts.artifact ? ` (${facts.artifact.spec.classification})` : ''}`,
    ],
    ['Mode', spec.mode],
    ['Requester', spec.requester ?? '<none recorded>'],
    ['Purpose', spec.purpose],
    ['Versions', grantVersionsText(grant)],
    ['Window', `${spec.notBefore ?? 'from creation'} to ${spec.expiresAt}`],
    ['Key lease', spec.keyLeaseDuration ?? '1h'],
    ['Cross-environment', spec.crossEnvironment === true ? 'yes' : 'no'],
    ['Phase', phaseText(grant)],
    ['Message', grant.status?.message],
    [
      'Revoked',
      REVOKED_ANNOTATION in annotations
        ? `yes: ${annotations[REVOKED_ANNOTATION] || '(no reason given)'}`
        : undefined,
    ],
    [
      'Quarantined',
      QUARANTINE_ANNOTATION in annotations
        ? `yes: ${annotations[QUARANTINE_ANNOTATION] || '(no reason given)'}`
        : undefined,
    ],
    ['Created', when(grant.metadata.creationTimestamp, now)],
  ]);
  const subjects = `Who may read (subjects, in ${spec.mode} mode):\n${spec.subjects
    .map((s) => `  ${subjectText(s)}\n`)
    .join('')}`;
  const resolved = grant.status?.resolvedVersions;
  const covered = `Versions covered now:  ${
    resolved === undefined ? '<not evaluated yet>' : resolved.length === 0 ? '<none>' : resolved.join(', ')
  }\n`;
  const counting = new Set(grant.status?.approvedBy ?? []);
  const approvals = spec.approvals ?? [];
  const needed =
    required === undefined
      ? 'unknown until the operator evaluates it'
      : required === 0
        ? 'none needed'
        : `${String(counted)} of ${String(required)} counted`;
  const approvalsSection =
    approvals.length === 0
      ? `Approvals:  none (${needed})\n`
      : `Approvals (${needed}):\n${indent(
          formatTable(approvals, [
            { header: 'APPROVER', cell: (a) => a.approver },
            { header: 'GROUPS', cell: (a) => (a.groups ?? []).join(',') },
            { header: 'WHEN', cell: (a) => a.approvedAt },
            { header: 'COUNTED', cell: (a) => (counting.has(a.approver) ? 'yes' : 'no') },
            { header: 'COMMENT', cell: (a) => a.comment ?? '' },
          ]),
        )}`;
  const denial = spec.denial
    ? `Denial:\n${indent(
        fields([
          ['By', spec.denial.deniedBy],
          ['Groups', (spec.denial.groups ?? []).join(', ')],
          ['When', spec.denial.deniedAt],
          ['Reason', spec.denial.reason],
        ]),
      )}`
    : '';
  const records = grantRecords(facts, limit);
  return [
    head,
    conditionsSection(grant.status?.conditions, now),
    subjects,
    covered,
    approvalsSection,
    denial,
    auditSection('Last releases and decisions from the audit log', facts.sources, records, limit),
  ].join('');
}

// ---------------------------------------------------------------------------------------------------------------
// Documents (-o json|yaml).

function sourcesDocument(sources: readonly AuditSource[] | undefined, records: readonly AuditRecord[]) {
  if (sources === undefined) return { available: false, hint: AUDIT_HINT };
  return {
    available: true,
    logs: sources.map((s) => ({
      path: s.path,
      origin: s.origin,
      verified: s.verified,
      pinned: s.pinned,
      problems: s.problems,
    })),
    records,
  };
}

export function describeArtifactDocument(facts: ArtifactFacts): Record<string, unknown> {
  const { artifact } = facts;
  const limit = facts.releases ?? 10;
  const grants = facts.grants.filter((g) => g.spec.artifactRef.name === artifact.metadata.name);
  const records = artifactRecords(facts, limit);
  return {
    kind: 'ArtifactDescription',
    artifact: withoutManagedFields(artifact),
    versions: versionRows(artifact) satisfies VersionRow[],
    readers: grants.map((g) => ({
      grant: g.metadata.name,
      mode: g.spec.mode,
      versions: g.spec.versions,
      resolvedVersions: g.status?.resolvedVersions ?? null,
      phase: g.status?.phase ?? null,
      reason: g.status?.reason ?? null,
      approvals: approvalsNeeded(g),
      expiresAt: g.spec.expiresAt,
      subjects: g.spec.subjects,
    })),
    releases: sourcesDocument(facts.sources, records),
  };
}

export function describeGrantDocument(facts: GrantFacts): Record<string, unknown> {
  const { grant } = facts;
  const limit = facts.releases ?? 10;
  const records = grantRecords(facts, limit);
  return {
    kind: 'GrantDescription',
    grant: withoutManagedFields(grant),
    artifact: facts.artifact
      ? {
          name: facts.artifact.metadata.name,
          classification: facts.artifact.spec.classification,
          latestVersion: facts.artifact.status?.latestVersion ?? null,
        }
      : null,
    approvals: { ...approvalsNeeded(grant), entries: grant.spec.approvals ?? [] },
    denial: grant.spec.denial ?? null,
    subjects: grant.spec.subjects,
    resolvedVersions: grant.status?.resolvedVersions ?? null,
    releases: sourcesDocument(facts.sources, records),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The commands.

interface DescribeOptions {
  output: OutputFormat;
  auditLog?: string;
  publicKey?: string;
  releases: number;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError('not a non-negative integer');
  return n;
}

function describeOptions(command: Command): Command {
  return command
    .addOption(outputOption())
    .option(
      '--audit-log <file|dir>',
      "the operator replicas' audit logs, collected as docs/audit.md describes",
    )
    .option(
      '--public-key <file>',
      'the audit verifier key to pin (Secret strongroom-audit-keys, key verifier)',
    )
    .option('--releases <n>', 'how many audit entries to list', positiveInt, 10);
}

async function audit(options: DescribeOptions): Promise<AuditSource[] | undefined> {
  if (options.auditLog === undefined) {
    if (options.publicKey !== undefined) throw usageError('--public-key needs --audit-log');
    return undefined;
  }
  return loadAuditSources(options.auditLog, options.publicKey);
}

function print(io: CliIo, format: DescribeOptions['output'], text: () => string, doc: () => unknown): void {
  if (format === 'json' || format === 'yaml') printDocument(io, format, doc());
  else io.out(text());
}

/**
 * The action of `describe <kind> <name>`: reads `--audit-log` first (a bad flag fails before any API call), then
 * the object with `load`, and prints `text` or, with `-o json|yaml`, `doc`.
 */
function describeAction<F>(
  io: CliIo,
  load: (cluster: Cluster, name: string) => Promise<F>,
  text: (facts: F & AuditFacts) => string,
  doc: (facts: F & AuditFacts) => unknown,
): (name: string, _o: DescribeOptions, command: Command) => Promise<void> {
  return action(io, async (name: string, _o: DescribeOptions, command: Command) => {
    const options = flagsOf<DescribeOptions>(command);
    const sources = await audit(options);
    const cluster = connect(options);
    const facts = { ...(await load(cluster, name)), sources, releases: options.releases };
    print(
      io,
      options.output,
      () => text(facts),
      () => doc(facts),
    );
  });
}

/** `describe`, added to the `strongroom` program. */
export function describeCommand(io: CliIo): Command {
  const describe = new Command('describe')
    .addHelpText(
      'after',
      '\nExample:\n  strongroom describe grant resnet50-eval -n ml-dev --audit-log audit/\n',
    )
    .description(
      'show an artifact or a grant in full: conditions, versions, approvals, who may read it, last releases',
    );
  describe.addCommand(
    example(
      describeOptions(new Command('artifact'))
        .aliases(['artifacts', 'modelartifact', 'ma'])
        .description('show a ModelArtifact: spec, conditions, versions, the grants naming it, last releases')
        .argument('<name>', 'the ModelArtifact')
        .action(
          describeAction(
            io,
            async (cluster, name) => {
              const ns = cluster.namespace;
              let artifact: ModelArtifact;
              let grants: AccessGrant[];
              try {
                artifact = await cluster.getArtifact(ns, name);
              } catch (error) {
                throw explainApiError(error, `ModelArtifact ${ns}/${name}`);
              }
              try {
                grants = await cluster.listGrants(ns);
              } catch (error) {
                throw explainApiError(error, `listing the AccessGrants of ${ns}`);
              }
              return { artifact, grants };
            },
            describeArtifactText,
            describeArtifactDocument,
          ),
        ),
      'strongroom describe artifact resnet50 -n ml-dev --audit-log audit/ --public-key audit.vkey',
    ),
  );
  describe.addCommand(
    example(
      describeOptions(new Command('grant'))
        .aliases(['grants', 'accessgrant', 'ag'])
        .description('show an AccessGrant: subjects, versions, approvals, denial, conditions, last releases')
        .argument('<name>', 'the AccessGrant')
        .action(
          describeAction(
            io,
            async (cluster, name) => {
              const ns = cluster.namespace;
              let grant: AccessGrant;
              try {
                grant = await cluster.getGrant(ns, name);
              } catch (error) {
                throw explainApiError(error, `AccessGrant ${ns}/${name}`);
              }
              // The artifact is context only: a grant for a missing artifact (or one the user cannot read) still shows.
              const artifact = await cluster
                .getArtifact(ns, grant.spec.artifactRef.name)
                .catch(() => undefined);
              return { grant, artifact };
            },
            describeGrantText,
            describeGrantDocument,
          ),
        ),
      'strongroom describe grant resnet50-eval -n ml-dev',
      'strongroom describe grant resnet50-eval -n ml-dev --audit-log audit/ --public-key audit.vkey --releases 20',
    ),
  );
  return describe;
}
