/**
 * `strongroom get artifacts|grants|versions`: list Strongroom objects as the user sees them, like `kubectl get`.
 * Tables have the CRDs' printer columns (crds/*.yaml additionalPrinterColumns) plus what a reviewer wants at a
 * glance (versions, approvals n/m); `-o json|yaml` prints the objects unchanged (a list as a kubectl `List`).
 *
 * The row builders are pure and exported: `describe` reuses them.
 */
import { Command } from 'commander';
import type { AccessGrant, ModelArtifact, ModelArtifactVersion } from '../core/api/index.ts';
import { connect, explainApiError, type Cluster } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { usageError, type CliIo } from './io.ts';
import { age, outputOption, printObjects, type Column, type OutputFormat } from './output.ts';
import { formatBytes } from './progress.ts';

/** What a version looks like in `get versions` (and `-o json|yaml` of it): the spec entry plus its state. */
export interface VersionRow {
  readonly name: string;
  readonly digest: string;
  readonly size: number;
  readonly publisher: string;
  readonly publishedAt: string;
  /** `status.keys[]` has a `Sealed` entry for it: its key can be released. */
  readonly sealed: boolean;
  /** The `status.keys[]` state, if any (`Sealed`, `Withdrawn`, `Invalid`). */
  readonly keyState: string | undefined;
  readonly withdrawn: boolean;
  /** It is `status.latestVersion`. */
  readonly latest: boolean;
}

/** The versions of an artifact, oldest first, with whether each is sealed, withdrawn, the latest. */
export function versionRows(artifact: ModelArtifact): VersionRow[] {
  const withdrawn = new Set(artifact.spec.withdrawnVersions ?? []);
  const keys = new Map((artifact.status?.keys ?? []).map((k) => [k.version, k]));
  return (artifact.spec.versions ?? []).map((v: ModelArtifactVersion) => {
    const key = keys.get(v.name);
    return {
      name: v.name,
      digest: v.digest,
      size: v.size,
      publisher: v.publisher,
      publishedAt: v.publishedAt,
      sealed: key?.state === 'Sealed',
      keyState: key?.state,
      withdrawn: withdrawn.has(v.name),
      latest: artifact.status?.latestVersion === v.name,
    };
  });
}

/** `sha256:3bbb120e691b` (the first 12 hex digits), as image digests are shortened. */
export function shortDigest(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return hex === undefined ? digest : `${algorithm ?? ''}:${hex.slice(0, 12)}`;
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

/** Status of a condition of an object, or '' when it has none. */
export function conditionStatus(
  object: { status?: { conditions?: { type: string; status: string }[] } },
  type: string,
): string {
  return object.status?.conditions?.find((c) => c.type === type)?.status ?? '';
}

export const VERSION_COLUMNS: readonly Column<VersionRow>[] = [
  { header: 'NAME', cell: (v) => v.name + (v.latest ? ' (latest)' : '') },
  { header: 'DIGEST', cell: (v) => shortDigest(v.digest) },
  { header: 'SIZE', cell: (v) => formatBytes(v.size) },
  { header: 'PUBLISHER', cell: (v) => v.publisher },
  { header: 'PUBLISHED', cell: (v) => v.publishedAt },
  {
    header: 'SEALED',
    cell: (v) => (v.sealed ? 'yes' : v.keyState === undefined ? 'no' : `no (${v.keyState})`),
  },
  { header: 'WITHDRAWN', cell: (v) => yesNo(v.withdrawn) },
];

/** The artifact table: the CRD's printer columns plus the number of versions. */
export function artifactColumns(allNamespaces: boolean, now = new Date()): Column<ModelArtifact>[] {
  return [
    ...namespaceColumn<ModelArtifact>(allNamespaces),
    { header: 'NAME', cell: (a) => a.metadata.name ?? '' },
    { header: 'CLASSIFICATION', cell: (a) => a.spec.classification },
    { header: 'LATEST', cell: (a) => a.status?.latestVersion ?? '' },
    {
      header: 'VERSIONS',
      cell: (a) => {
        const total = a.spec.versions?.length ?? 0;
        const withdrawn = a.spec.withdrawnVersions?.length ?? 0;
        return withdrawn > 0 ? `${String(total)} (${String(withdrawn)} withdrawn)` : String(total);
      },
    },
    { header: 'READY', cell: (a) => conditionStatus(a, 'Ready') },
    { header: 'AGE', cell: (a) => age(a.metadata.creationTimestamp, now) },
  ];
}

/** What a grant's `spec.versions` selects: `latest`, `all`, or the names; plus what it resolved to, if known. */
export function grantVersionsText(grant: AccessGrant): string {
  const { match, names } = grant.spec.versions;
  const selected = match === 'named' ? (names ?? []).join(',') : match;
  const resolved = grant.status?.resolvedVersions;
  if (match === 'named' || resolved === undefined || resolved.length === 0) return selected;
  return `${selected} (${resolved.join(',')})`;
}

/** `ns/sa` of the first subject and ` (+N)`: the operator's `status.subjectSummary`, or computed the same way. */
export function subjectsText(grant: AccessGrant): string {
  if (grant.status?.subjectSummary) return grant.status.subjectSummary;
  const [first, ...rest] = grant.spec.subjects;
  if (first === undefined) return '';
  return `${first.namespace}/${first.serviceAccount}${rest.length > 0 ? ` (+${String(rest.length)})` : ''}`;
}

/**
 * How many approvals the grant has and needs, from what the operator recorded: counted approvals are
 * `status.approvedBy`; the number needed is in the `Approved` condition (its message names it), since the
 * classification table lives in the operator's namespace. `n/m`, `-` when none are needed, `n/?` when unknown.
 */
export function approvalsNeeded(grant: AccessGrant): { counted: number; required: number | undefined } {
  const counted = grant.status?.approvedBy?.length ?? 0;
  const approved = grant.status?.conditions?.find((c) => c.type === 'Approved');
  if (approved === undefined) return { counted, required: undefined };
  if (approved.reason === 'NotRequired') return { counted, required: 0 };
  const match =
    /\bneeds (\d+) \(/.exec(approved.message) ??
    /\((\d+) required for /.exec(approved.message) ??
    /did not get the (\d+) approvals?/.exec(approved.message) ??
    /needs (\d+) approvals?/.exec(approved.message);
  return { counted, required: match?.[1] === undefined ? undefined : Number(match[1]) };
}

export function approvalsText(grant: AccessGrant): string {
  const { counted, required } = approvalsNeeded(grant);
  if (required === 0) return '-';
  return `${String(counted)}/${required === undefined ? '?' : String(required)}`;
}

/** The phase, with the reason when it is not the obvious one (`Denied (Quarantined)`). */
export function phaseText(grant: AccessGrant): string {
  const phase = grant.status?.phase;
  if (phase === undefined) return '<new>';
  const reason = grant.status?.reason;
  return reason === undefined || reason === '' || reason === 'Granted' ? phase : `${phase} (${reason})`;
}

/** The grant table: the CRD's printer columns plus versions, approvals n/m and the reason of the phase. */
export function grantColumns(allNamespaces: boolean, now = new Date()): Column<AccessGrant>[] {
  return [
    ...namespaceColumn<AccessGrant>(allNamespaces),
    { header: 'NAME', cell: (g) => g.metadata.name ?? '' },
    { header: 'ARTIFACT', cell: (g) => g.spec.artifactRef.name },
    { header: 'MODE', cell: (g) => g.spec.mode },
    { header: 'VERSIONS', cell: grantVersionsText },
    { header: 'SUBJECTS', cell: subjectsText },
    { header: 'PHASE', cell: phaseText },
    { header: 'APPROVALS', cell: approvalsText },
    { header: 'EXPIRES', cell: (g) => g.spec.expiresAt },
    { header: 'AGE', cell: (g) => age(g.metadata.creationTimestamp, now) },
  ];
}

function namespaceColumn<T extends { metadata: { namespace?: string } }>(all: boolean): Column<T>[] {
  return all ? [{ header: 'NAMESPACE', cell: (o) => o.metadata.namespace ?? '' }] : [];
}

/** The object without `metadata.managedFields` (server-side apply's bookkeeping), as kubectl prints it. */
export function withoutManagedFields<T>(object: T): T {
  const metadata = (object as { metadata?: Record<string, unknown> } | null)?.metadata;
  if (metadata === undefined || !('managedFields' in metadata)) return object;
  const rest = { ...metadata };
  delete rest['managedFields'];
  return { ...object, metadata: rest };
}

/** A kubectl-style `List` of `items`, for `-o json|yaml` without a name. */
export function listOf(items: readonly unknown[]): {
  apiVersion: 'v1';
  kind: 'List';
  items: readonly unknown[];
} {
  return { apiVersion: 'v1', kind: 'List', items: items.map(withoutManagedFields) };
}

interface GetOptions {
  output: OutputFormat;
  allNamespaces?: boolean;
}

function checkScope(name: string | undefined, options: GetOptions): void {
  if (name !== undefined && options.allNamespaces === true)
    throw usageError(
      'a name and -A/--all-namespaces do not go together: a name is looked up in one namespace',
    );
}

/** How `get artifacts|grants` reads one kind of object. */
interface Listable<T> {
  /** `ModelArtifact`: in messages, and `listing ModelArtifacts`. */
  readonly kind: string;
  /** `artifacts`: in `No artifacts found.` */
  readonly plural: string;
  get(cluster: Cluster, namespace: string, name: string): Promise<T>;
  list(cluster: Cluster, namespace: string | undefined): Promise<T[]>;
  columns(allNamespaces: boolean): Column<T>[];
}

/** The action of `get <kind> [name]`: the named object of the namespace, or the list (of all namespaces with -A). */
function listOrShow<T>(
  io: CliIo,
  kind: Listable<T>,
): (name: string | undefined, _o: GetOptions, command: Command) => Promise<void> {
  return action(io, async (name: string | undefined, _o: GetOptions, command: Command) => {
    const options = flagsOf<GetOptions>(command);
    checkScope(name, options);
    const cluster = connect(options);
    const all = options.allNamespaces === true;
    try {
      if (name !== undefined) {
        const object = await kind.get(cluster, cluster.namespace, name);
        printObjects(io, options.output, withoutManagedFields(object), [object], kind.columns(false));
      } else {
        const items = await kind.list(cluster, all ? undefined : cluster.namespace);
        printObjects(
          io,
          options.output,
          listOf(items),
          items,
          kind.columns(all),
          all ? `No ${kind.plural} found.` : `No ${kind.plural} found in namespace ${cluster.namespace}.`,
        );
      }
    } catch (error) {
      throw explainApiError(
        error,
        name === undefined ? `listing ${kind.kind}s` : `${kind.kind} ${cluster.namespace}/${name}`,
      );
    }
  });
}

/** `get`, added to the `strongroom` program. */
export function getCommand(io: CliIo): Command {
  const get = new Command('get')
    .addHelpText('after', '\nExample:\n  strongroom get grants -A -o yaml\n')
    .description('list artifacts, grants or the versions of an artifact (like kubectl get)');
  const allNamespaces = (c: Command) =>
    c.option('-A, --all-namespaces', 'list across all namespaces').addOption(outputOption());

  get.addCommand(
    example(
      allNamespaces(new Command('artifacts'))
        .aliases(['artifact', 'modelartifacts', 'modelartifact', 'ma'])
        .description('list ModelArtifacts (or show one)')
        .argument('[name]', 'one artifact')
        .action(
          listOrShow(io, {
            kind: 'ModelArtifact',
            plural: 'artifacts',
            get: (cluster, namespace, name) => cluster.getArtifact(namespace, name),
            list: (cluster, namespace) => cluster.listArtifacts(namespace),
            columns: artifactColumns,
          }),
        ),
      'strongroom get artifacts -n ml-dev',
      'strongroom get artifacts -A -o yaml',
    ),
  );

  get.addCommand(
    example(
      allNamespaces(new Command('grants'))
        .aliases(['grant', 'accessgrants', 'accessgrant', 'ag'])
        .description('list AccessGrants (or show one): phase, approvals counted/needed, expiry')
        .argument('[name]', 'one grant')
        .action(
          listOrShow(io, {
            kind: 'AccessGrant',
            plural: 'grants',
            get: (cluster, namespace, name) => cluster.getGrant(namespace, name),
            list: (cluster, namespace) => cluster.listGrants(namespace),
            columns: grantColumns,
          }),
        ),
      'strongroom get grants -n ml-dev',
      'strongroom get grants -A -o json | jq \'.items[] | select(.status.phase=="Pending") | .metadata.name\'',
    ),
  );

  get.addCommand(
    example(
      new Command('versions')
        .aliases(['version'])
        .description("list an artifact's versions: digest, size, publisher, sealed, withdrawn")
        .argument('<artifact>', 'the ModelArtifact')
        .addOption(outputOption())
        .action(
          action(io, async (name: string, _o: GetOptions, command: Command) => {
            const options = flagsOf<GetOptions>(command);
            const cluster = connect(options);
            let artifact: ModelArtifact;
            try {
              artifact = await cluster.getArtifact(cluster.namespace, name);
            } catch (error) {
              throw explainApiError(error, `ModelArtifact ${cluster.namespace}/${name}`);
            }
            const rows = versionRows(artifact);
            printObjects(
              io,
              options.output,
              rows,
              rows,
              VERSION_COLUMNS,
              `ModelArtifact ${cluster.namespace}/${name} has no versions yet.`,
            );
          }),
        ),
      'strongroom get versions resnet50 -n ml-dev',
    ),
  );
  return get;
}
