/**
 * `strongroom verify [PATH...]`: a CI/CD gate. It reads manifests (files or directories) and the cluster, as the
 * user, and reports, each under a stable rule id ({@link RULES}):
 *
 * - workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) whose pod template asks, in
 *   `strongroom.dev/artifacts`, for an artifact version that is not sealed: parsed with the injector's own parser
 *   (core/injection), `@latest` resolved as the injector resolves it, "sealed" meaning a `status.keys` entry the
 *   operator wrote;
 * - storage holding something other than Strongroom ciphertext (cli/verify-storage.ts);
 * - AccessGrants broader than the classification table allows, judged by the operator's own `evaluateGrant`
 *   (core/policy) under the table in force (the ConfigMap, or `--classification-table`).
 *
 * The checks are pure functions over the manifests and a {@link ClusterSnapshot}; {@link loadSnapshot} fetches the
 * snapshot (only what the manifests refer to, plus `--grants` and `--storage`). Exit codes: 0 no error finding, 1 an
 * error finding, 2 bad usage, 5 the cluster could not be reached.
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { AccessGrant, ModelArtifact, ModelArtifactVersion } from '../core/api/index.ts';
import { ENVIRONMENT_LABEL } from '../core/api/index.ts';
import {
  InjectionError,
  LABEL_INJECT,
  LATEST,
  parseInjectionRequest,
  resolveVersion,
  S3_SECRET_KEYS,
  type InjectionRequest,
} from '../core/injection/index.ts';
import {
  ClassificationConfigError,
  DEFAULT_CLASSIFICATION_TABLE,
  GOVERNANCE_CONFIGMAP,
  parseClassificationConfig,
  type ClassificationTable,
} from '../core/policy/classification.ts';
import { evaluateGrant, type NamespaceFacts } from '../core/policy/grant.ts';
import { apiStatus, connect, explainApiError, type Cluster } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { EXIT, usageError, type CliIo } from './io.ts';
import { loadManifests, podTemplateMetadata, type KubeObject, type ManifestObject } from './manifests.ts';
import { formatTable, outputOption, printDocument, type OutputFormat } from './output.ts';
import {
  parseStorageDirs,
  storageChecker,
  type S3CredentialSource,
  type StorageChecker,
} from './verify-storage.ts';

/** Every rule, with what it means (docs: /tmp/cli-docs/verify-doctor.md). */
export const RULES = {
  'annotation-invalid':
    "the pod template's strongroom.dev/artifacts or strongroom.dev/publish annotation does not parse; the injector refuses such a pod",
  'inject-label-missing':
    'the pod template asks for artifacts but is not labelled strongroom.dev/inject: "true"; the opt-in admission policy refuses such a pod',
  'artifact-missing': 'a workload names a ModelArtifact that does not exist (or is being deleted)',
  'version-missing': 'a workload names a version the artifact does not list in spec.versions',
  'version-withdrawn': 'a workload names a version listed in spec.withdrawnVersions',
  'version-unsealed':
    "a workload names a version that has no usable entry in the artifact's status.keys: the operator has not sealed it",
  'latest-unresolved':
    "a workload asks for @latest, and the artifact's status.latestVersion names no live version",
  'ciphertext-missing': "a version's ciphertext directory (or S3 key prefix) is absent or empty",
  'ciphertext-manifest-missing': "a version's ciphertext has no manifest.sre",
  'ciphertext-not-envelope':
    "a file or object in a version's ciphertext does not start with the envelope magic SRENVLP\\0: it is not Strongroom ciphertext",
  'grant-duration':
    "an AccessGrant's window (notBefore, or creation, to expiresAt) is longer than the classification's maxGrantDuration",
  'grant-cross-environment':
    'an AccessGrant names subjects in another environment than its namespace, and the classification table does not allow it (or spec.crossEnvironment is not set)',
  'grant-approvals':
    'an AccessGrant has fewer counted approvals than its classification requires (error for a grant the cluster says is Active; warning for a manifest, which is approved in person after it is applied)',
  'grant-artifact-missing':
    'an AccessGrant names a ModelArtifact that does not exist, so its classification (and what it may allow) is unknown',
  'grant-not-active':
    'the operator would not activate this AccessGrant from the manifest (for example expired, or a namespace without an environment label)',
  'classification-table-invalid':
    'the classification table (ConfigMap or --classification-table) does not parse',
} as const;
export type RuleId = keyof typeof RULES;

export type Severity = 'error' | 'warning';

export interface ObjectRef {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export interface Finding {
  readonly rule: RuleId;
  readonly severity: Severity;
  readonly object: ObjectRef;
  readonly reason: string;
  /** The manifest file the object came from; absent for objects read from the cluster. */
  readonly file?: string;
}

/** A check that could not be made, and why (never counted as passed). */
export interface Skipped {
  readonly check: 'artifact' | 'storage' | 'grant' | 'classification-table';
  readonly object?: ObjectRef;
  readonly reason: string;
  readonly file?: string;
}

/** What was looked at. */
export interface Checked {
  readonly workloads: number;
  readonly artifactReferences: number;
  readonly grants: number;
  readonly storageVersions: number;
  readonly storageFiles: number;
  /** Where the classification table came from (`configmap <ns>/<name>`, `file <path>`, `built-in defaults`), when
   * grants were checked. */
  readonly classificationTable?: string;
}

/** The report; its JSON/YAML form is stable (fields are only ever added). */
export interface VerifyReport {
  /** No error finding (warnings do not fail the gate). */
  readonly ok: boolean;
  readonly findings: readonly Finding[];
  readonly checked: Checked;
  readonly skipped: readonly Skipped[];
}

/** What the cluster said about one object. */
export type Lookup<T> =
  | { readonly state: 'found'; readonly object: T }
  | { readonly state: 'missing' }
  | { readonly state: 'unknown'; readonly reason: string };

/** The cluster state the checks read: already fetched, so the checks are pure. */
export interface ClusterSnapshot {
  /** The namespace of manifest objects without one (`-n`, else the context's). */
  readonly namespace: string;
  readonly now: Date;
  artifact(namespace: string, name: string): Lookup<ModelArtifact>;
  namespaceFacts(name: string): Lookup<NamespaceFacts>;
  readonly table:
    { readonly table: ClassificationTable; readonly source: string } | { readonly error: string };
}

/** The name evaluateGrant sees as the requester of a manifest grant (who applies it is not known yet; never an
 * approver, so no approval is wrongly discounted as the requester's). */
const APPLIER = 'strongroom-verify:the-user-who-applies-it';

const key = (namespace: string, name: string): string => `${namespace}/${name}`;

function refOf(object: KubeObject, defaultNamespace: string): ObjectRef {
  return {
    kind: object.kind ?? '',
    namespace: object.metadata?.namespace ?? defaultNamespace,
    name: object.metadata?.name ?? '',
  };
}

/** A version of an artifact whose ciphertext the storage check reads. */
export interface StorageTarget {
  readonly artifact: ModelArtifact;
  readonly version: ModelArtifactVersion;
}

class Collector {
  readonly findings: Finding[] = [];
  readonly skipped: Skipped[] = [];
  readonly targets = new Map<string, StorageTarget>();
  workloads = 0;
  artifactReferences = 0;
  grants = 0;
  add(rule: RuleId, severity: Severity, object: ObjectRef, reason: string, file: string | undefined): void {
    this.findings.push({ rule, severity, object, reason, ...(file === undefined ? {} : { file }) });
  }
  skip(check: Skipped['check'], object: ObjectRef | undefined, reason: string, file?: string): void {
    this.skipped.push({
      check,
      ...(object === undefined ? {} : { object }),
      reason,
      ...(file === undefined ? {} : { file }),
    });
  }
  target(artifact: ModelArtifact, version: ModelArtifactVersion): void {
    const id = `${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}@${version.name}`;
    if (!this.targets.has(id)) this.targets.set(id, { artifact, version });
  }
}

function artifactName(artifact: ModelArtifact): string {
  return `ModelArtifact ${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`;
}

/** Whether the operator has sealed `version`: a `status.keys` entry that is not Invalid or Withdrawn. */
function sealProblem(artifact: ModelArtifact, version: string): string | undefined {
  const entry = (artifact.status?.keys ?? []).find((k) => k.version === version);
  const name = artifactName(artifact);
  if (entry === undefined) {
    if (artifact.metadata.uid === undefined)
      return `version ${version} of ${name} is not sealed: the artifact is only in the manifests, not in the cluster, so the operator has sealed nothing yet`;
    return `version ${version} of ${name} is not sealed: status.keys has no entry for it (the operator has not verified its header and recorded its key; see the artifact's KeysReady condition)`;
  }
  if (entry.state === 'Invalid' || entry.state === 'Withdrawn') {
    const ready = (artifact.status?.conditions ?? []).find((c) => c.type === 'Ready');
    const detail = ready === undefined ? '' : `; Ready: ${ready.reason}: ${ready.message}`;
    return `version ${version} of ${name} is not sealed: status.keys says ${entry.state}${detail}`;
  }
  return undefined;
}

/** The version-level rules for one entry of `strongroom.dev/artifacts`. */
function checkEntry(
  c: Collector,
  workload: ObjectRef,
  file: string | undefined,
  artifact: ModelArtifact,
  version: string,
  entry: string,
): void {
  const name = artifactName(artifact);
  const withdrawn = artifact.spec.withdrawnVersions ?? [];
  const live = (artifact.spec.versions ?? []).map((v) => v.name).filter((v) => !withdrawn.includes(v));
  const available = `(live versions: ${live.length === 0 ? 'none' : live.join(', ')})`;
  const at = `"${entry}": `;
  let resolved: ModelArtifactVersion | undefined;
  if (version === LATEST) {
    resolved = resolveVersion(artifact, LATEST);
    if (resolved === undefined) {
      const latest = artifact.status?.latestVersion;
      c.add(
        'latest-unresolved',
        'error',
        workload,
        `${at}@latest of ${name} resolves to nothing: ${latest === undefined || latest === '' ? 'status.latestVersion is not set (no version is sealed yet)' : `status.latestVersion is ${latest}, which is not a live version`} ${available}`,
        file,
      );
      return;
    }
  } else {
    resolved = (artifact.spec.versions ?? []).find((v) => v.name === version);
    if (resolved === undefined) {
      c.add(
        'version-missing',
        'error',
        workload,
        `${at}${name} has no version ${version} ${available}`,
        file,
      );
      return;
    }
    if (withdrawn.includes(version)) {
      c.add(
        'version-withdrawn',
        'error',
        workload,
        `${at}version ${version} of ${name} is withdrawn ${available}`,
        file,
      );
      return;
    }
  }
  const problem = sealProblem(artifact, resolved.name);
  if (problem !== undefined) {
    c.add('version-unsealed', 'error', workload, `${at}${problem}`, file);
    return;
  }
  c.target(artifact, resolved);
}

/** The workload rules over every workload in `manifests`. */
function checkWorkloads(c: Collector, manifests: readonly ManifestObject[], snapshot: ClusterSnapshot): void {
  for (const { object, file } of manifests) {
    const template = podTemplateMetadata(object);
    if (template === undefined) continue;
    const workload = refOf(object, snapshot.namespace);
    let request: InjectionRequest | undefined;
    try {
      request = parseInjectionRequest(template.annotations);
    } catch (error) {
      if (!(error instanceof InjectionError)) throw error;
      c.workloads += 1;
      c.add('annotation-invalid', 'error', workload, error.message, file);
      continue;
    }
    if (request === undefined) continue;
    c.workloads += 1;
    if (template.labels[LABEL_INJECT] !== 'true')
      c.add(
        'inject-label-missing',
        'error',
        workload,
        `the pod template has Strongroom annotations but not the label ${LABEL_INJECT}: "true": the API server refuses the pod (policy strongroom-injection-opt-in); add the label`,
        file,
      );
    for (const entry of request.artifacts) {
      c.artifactReferences += 1;
      const namespace = entry.namespace ?? workload.namespace ?? snapshot.namespace;
      const found = snapshot.artifact(namespace, entry.name);
      const at = `"${entry.entry}": `;
      if (found.state === 'unknown') {
        c.skip(
          'artifact',
          workload,
          `${at}cannot read ModelArtifact ${key(namespace, entry.name)}: ${found.reason}`,
          file,
        );
        continue;
      }
      if (found.state === 'missing') {
        c.add(
          'artifact-missing',
          'error',
          workload,
          `${at}ModelArtifact ${key(namespace, entry.name)} does not exist`,
          file,
        );
        continue;
      }
      if (found.object.metadata.deletionTimestamp !== undefined) {
        c.add(
          'artifact-missing',
          'error',
          workload,
          `${at}ModelArtifact ${key(namespace, entry.name)} is being deleted`,
          file,
        );
        continue;
      }
      checkEntry(c, workload, file, found.object, entry.version, entry.entry);
    }
  }
}

/** An AccessGrant to judge: from a manifest (as it would be created now) or live in the cluster (`--grants`). */
export interface GrantToCheck {
  readonly grant: AccessGrant;
  readonly file?: string;
  readonly live: boolean;
}

const CROSSING = new Set(['CrossEnvironmentNotAllowed', 'RestrictedCannotCrossEnvironments']);
const UNAPPROVED = new Set(['AwaitingApproval', 'RequesterUnknown']);
const REPORTED = new Set(['WindowTooLong', ...CROSSING, ...UNAPPROVED, 'ArtifactNotFound']);

/** The grant rules: `evaluateGrant`, the operator's own decision, under the table in force. */
function checkGrants(c: Collector, grants: readonly GrantToCheck[], snapshot: ClusterSnapshot): void {
  if (grants.length === 0) return;
  if ('error' in snapshot.table) {
    c.add(
      'classification-table-invalid',
      'error',
      { kind: 'ConfigMap', name: GOVERNANCE_CONFIGMAP },
      `${snapshot.table.error}; no AccessGrant was judged`,
      undefined,
    );
    return;
  }
  const { table } = snapshot.table;
  for (const { grant, file, live } of grants) {
    c.grants += 1;
    const namespace = grant.metadata.namespace ?? snapshot.namespace;
    const ref: ObjectRef = { kind: 'AccessGrant', namespace, name: grant.metadata.name ?? '' };
    const artifactRef = key(namespace, grant.spec.artifactRef.name);
    const found = snapshot.artifact(namespace, grant.spec.artifactRef.name);
    if (found.state === 'unknown') {
      c.skip('grant', ref, `cannot read ModelArtifact ${artifactRef}: ${found.reason}`, file);
      continue;
    }
    if (found.state === 'missing') {
      c.add(
        'grant-artifact-missing',
        'warning',
        ref,
        `ModelArtifact ${artifactRef} does not exist, so what this grant may allow (its classification) is unknown`,
        file,
      );
      continue;
    }
    const namespaces = new Map<string, NamespaceFacts>();
    const unknown: string[] = [];
    for (const name of new Set([namespace, ...grant.spec.subjects.map((s) => s.namespace)])) {
      const facts = snapshot.namespaceFacts(name);
      if (facts.state === 'found') namespaces.set(name, facts.object);
      else if (facts.state === 'missing') namespaces.set(name, { exists: false, environment: undefined });
      else unknown.push(`${name} (${facts.reason})`);
    }
    if (unknown.length > 0) {
      c.skip('grant', ref, `cannot read namespace ${unknown.join(', ')}: environments not judged`, file);
      continue;
    }
    const judged: AccessGrant = live
      ? grant
      : {
          ...grant,
          metadata: {
            // eslint-disable-next-line @typescript-eslint/no-misused-spread -- plain data (manifest or API JSON), not a class instance
            ...grant.metadata,
            namespace,
            creationTimestamp: grant.metadata.creationTimestamp ?? snapshot.now,
          },
          spec: { ...grant.spec, requester: grant.spec.requester ?? APPLIER },
        };
    const decision = evaluateGrant({
      grant: judged,
      artifact: found.object,
      namespaces,
      policy: table,
      now: snapshot.now,
    });
    if (decision.reason === 'WindowTooLong') c.add('grant-duration', 'error', ref, decision.message, file);
    const approved = decision.approved;
    if (CROSSING.has(approved.reason)) c.add('grant-cross-environment', 'error', ref, approved.message, file);
    if (UNAPPROVED.has(approved.reason)) {
      if (!live)
        c.add(
          'grant-approvals',
          'warning',
          ref,
          `${approved.message.replaceAll(`the requester ${APPLIER}`, 'you, the requester').replaceAll(APPLIER, 'you')} Once applied it stays Pending until approvers approve it in person (strongroom approve).`,
          file,
        );
      else if (grant.status?.phase === 'Active')
        c.add(
          'grant-approvals',
          'error',
          ref,
          `the cluster says it is Active, but under the classification table in force: ${approved.message}`,
          file,
        );
    }
    if (approved.reason === 'NamespaceNotFound') c.skip('grant', ref, approved.message, file);
    if (
      !live &&
      decision.phase !== 'Active' &&
      decision.phase !== 'Pending' &&
      !REPORTED.has(decision.reason)
    )
      c.add('grant-not-active', 'warning', ref, `${decision.reason}: ${decision.message}`, file);
  }
}

/** The grants among the manifests, their namespace defaulted. */
export function manifestGrants(manifests: readonly ManifestObject[]): GrantToCheck[] {
  return manifests
    .filter(
      (m) => m.object.kind === 'AccessGrant' && (m.object.apiVersion ?? '').startsWith('strongroom.dev/'),
    )
    .map((m) => ({ grant: m.object as unknown as AccessGrant, file: m.file, live: false }));
}

/** The ModelArtifacts among the manifests. */
export function manifestArtifacts(manifests: readonly ManifestObject[]): ManifestObject[] {
  return manifests.filter(
    (m) => m.object.kind === 'ModelArtifact' && (m.object.apiVersion ?? '').startsWith('strongroom.dev/'),
  );
}

/** What {@link verifyChecks} is given besides the manifests. */
export interface VerifyOptions {
  /** AccessGrants read from the cluster (`--grants`). */
  readonly clusterGrants?: readonly AccessGrant[];
  /** Every live version of these artifacts is a storage target too (`--storage`). */
  readonly storageArtifacts?: readonly ModelArtifact[];
}

/** The pure part: every workload and grant rule, and the storage targets (referenced versions, `--storage`). */
export function verifyChecks(
  manifests: readonly ManifestObject[],
  snapshot: ClusterSnapshot,
  options: VerifyOptions = {},
): { collector: Collector; targets: StorageTarget[] } {
  const c = new Collector();
  checkWorkloads(c, manifests, snapshot);
  checkGrants(
    c,
    [...manifestGrants(manifests), ...(options.clusterGrants ?? []).map((grant) => ({ grant, live: true }))],
    snapshot,
  );
  for (const artifact of options.storageArtifacts ?? []) {
    const withdrawn = artifact.spec.withdrawnVersions ?? [];
    for (const version of artifact.spec.versions ?? [])
      if (!withdrawn.includes(version.name)) c.target(artifact, version);
  }
  return { collector: c, targets: [...c.targets.values()] };
}

/** Runs every check: the pure ones, then the storage of each target through `storage`. */
export async function verify(
  manifests: readonly ManifestObject[],
  snapshot: ClusterSnapshot,
  storage: StorageChecker,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const { collector: c, targets } = verifyChecks(manifests, snapshot, options);
  let storageVersions = 0;
  let storageFiles = 0;
  for (const { artifact, version } of targets) {
    const ref: ObjectRef = {
      kind: 'ModelArtifact',
      namespace: artifact.metadata.namespace ?? snapshot.namespace,
      name: artifact.metadata.name ?? '',
    };
    const outcome = await storage(artifact, version);
    if (outcome.kind === 'skipped') {
      c.skip('storage', ref, `version ${version.name}: ${outcome.reason}`);
      continue;
    }
    storageVersions += 1;
    storageFiles += outcome.files;
    for (const problem of outcome.problems)
      c.add(problem.rule, 'error', ref, `version ${version.name}: ${problem.reason}`, undefined);
  }
  const table = snapshot.table;
  return {
    ok: c.findings.every((f) => f.severity !== 'error'),
    findings: c.findings,
    checked: {
      workloads: c.workloads,
      artifactReferences: c.artifactReferences,
      grants: c.grants,
      storageVersions,
      storageFiles,
      ...(c.grants > 0 && 'source' in table ? { classificationTable: table.source } : {}),
    },
    skipped: c.skipped,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The loader: what the checks need from the cluster, fetched as the user.

/** Turns a 404 into `missing`, a 401/403 into `unknown`, and anything else into a CliError (5: unreachable). */
async function lookup<T>(what: string, get: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { state: 'found', object: await get() };
  } catch (error) {
    const status = apiStatus(error);
    if (status?.code === 404) return { state: 'missing' };
    if (status?.code === 403 || status?.code === 401)
      return { state: 'unknown', reason: `refused by the API server: ${status.message}` };
    throw explainApiError(error, `reading ${what}`);
  }
}

/** Reads a classification table file: a ConfigMap manifest (its data), or a plain mapping of the keys. */
export async function readTableFile(
  path: string,
): Promise<{ table: ClassificationTable; source: string } | { error: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw usageError(`cannot read --classification-table ${path}: ${(cause as Error).message}`, { cause });
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw usageError(`--classification-table ${path} is not YAML or JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  const object = (value ?? {}) as { kind?: unknown; data?: unknown } | null;
  const data = object?.kind === 'ConfigMap' ? (object.data ?? {}) : object;
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw usageError(`--classification-table ${path} is neither a ConfigMap nor a mapping of keys`);
  const strings = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, String(v)]));
  try {
    return { table: parseClassificationConfig(strings), source: `file ${path}` };
  } catch (error) {
    if (error instanceof ClassificationConfigError)
      return { error: `--classification-table ${path}: ${error.message}` };
    throw error;
  }
}

async function clusterTable(
  cluster: Cluster,
  operatorNamespace: string,
): Promise<{ table: ClassificationTable; source: string } | { error: string }> {
  const where = `${operatorNamespace}/${GOVERNANCE_CONFIGMAP}`;
  const found = await lookup(`ConfigMap ${where}`, () =>
    cluster.core.readNamespacedConfigMap({ namespace: operatorNamespace, name: GOVERNANCE_CONFIGMAP }),
  );
  if (found.state === 'missing')
    return { table: DEFAULT_CLASSIFICATION_TABLE, source: `built-in defaults (no ConfigMap ${where})` };
  if (found.state === 'unknown')
    return {
      error: `cannot read the classification table, ConfigMap ${where}: ${found.reason}; pass --classification-table FILE`,
    };
  try {
    return { table: parseClassificationConfig(found.object.data ?? {}), source: `configmap ${where}` };
  } catch (error) {
    if (error instanceof ClassificationConfigError) return { error: `ConfigMap ${where}: ${error.message}` };
    throw error;
  }
}

/** The artifact references of the manifests' workloads and grants, as `namespace/name`. */
function referencedArtifacts(
  manifests: readonly ManifestObject[],
  grants: readonly GrantToCheck[],
  namespace: string,
): Set<string> {
  const refs = new Set<string>();
  for (const { object } of manifests) {
    const template = podTemplateMetadata(object);
    if (template === undefined) continue;
    let request: InjectionRequest | undefined;
    try {
      request = parseInjectionRequest(template.annotations);
    } catch {
      continue;
    }
    const own = object.metadata?.namespace ?? namespace;
    for (const entry of request?.artifacts ?? []) refs.add(key(entry.namespace ?? own, entry.name));
  }
  for (const { grant } of grants)
    refs.add(key(grant.metadata.namespace ?? namespace, grant.spec.artifactRef.name));
  return refs;
}

export interface LoadOptions {
  readonly namespace: string;
  readonly allNamespaces: boolean;
  readonly grants: boolean;
  readonly storage: boolean;
  readonly operatorNamespace: string;
  readonly classificationTable?: string;
  readonly now: Date;
}

/** Fetches what the checks need: referenced artifacts and namespaces, the table, `--grants` and `--storage`. */
export async function loadSnapshot(
  cluster: () => Cluster,
  manifests: readonly ManifestObject[],
  options: LoadOptions,
): Promise<{ snapshot: ClusterSnapshot; verifyOptions: VerifyOptions }> {
  const scope = options.allNamespaces ? undefined : options.namespace;
  const clusterGrants = options.grants
    ? await cluster()
        .listGrants(scope)
        .catch((error: unknown) => {
          throw explainApiError(error, 'listing AccessGrants');
        })
    : [];
  const grants = [...manifestGrants(manifests), ...clusterGrants.map((grant) => ({ grant, live: true }))];
  const artifacts = new Map<string, Lookup<ModelArtifact>>();
  const listed = options.storage
    ? await cluster()
        .listArtifacts(scope)
        .catch((error: unknown) => {
          throw explainApiError(error, 'listing ModelArtifacts');
        })
    : [];
  for (const a of listed)
    artifacts.set(key(a.metadata.namespace ?? '', a.metadata.name ?? ''), { state: 'found', object: a });
  for (const ref of referencedArtifacts(manifests, grants, options.namespace)) {
    if (artifacts.has(ref)) continue;
    const [ns = '', name = ''] = ref.split('/');
    artifacts.set(ref, await lookup(`ModelArtifact ${ref}`, () => cluster().getArtifact(ns, name)));
  }
  // An artifact only in the manifests stands in for the missing one (it has no status: nothing is sealed).
  const fromManifests = manifestArtifacts(manifests);
  for (const { object } of fromManifests) {
    const ref = key(object.metadata?.namespace ?? options.namespace, object.metadata?.name ?? '');
    const artifact = object as unknown as ModelArtifact;
    const withNamespace: ModelArtifact = {
      ...artifact,
      // eslint-disable-next-line @typescript-eslint/no-misused-spread -- plain data read from a manifest
      metadata: { ...artifact.metadata, namespace: object.metadata?.namespace ?? options.namespace },
    };
    if (artifacts.get(ref)?.state !== 'found') artifacts.set(ref, { state: 'found', object: withNamespace });
  }
  const namespaceFacts = new Map<string, Lookup<NamespaceFacts>>();
  for (const { object } of manifests)
    if (object.kind === 'Namespace' && object.metadata?.name !== undefined)
      namespaceFacts.set(object.metadata.name, {
        state: 'found',
        object: { exists: true, environment: object.metadata.labels?.[ENVIRONMENT_LABEL] },
      });
  for (const { grant } of grants)
    for (const ns of [
      grant.metadata.namespace ?? options.namespace,
      ...grant.spec.subjects.map((s) => s.namespace),
    ]) {
      if (namespaceFacts.has(ns)) continue;
      const found = await lookup(`namespace ${ns}`, () => cluster().core.readNamespace({ name: ns }));
      namespaceFacts.set(
        ns,
        found.state === 'found'
          ? {
              state: 'found',
              object: { exists: true, environment: found.object.metadata?.labels?.[ENVIRONMENT_LABEL] },
            }
          : found,
      );
    }
  const table =
    options.classificationTable !== undefined
      ? await readTableFile(options.classificationTable)
      : grants.length > 0
        ? await clusterTable(cluster(), options.operatorNamespace)
        : { table: DEFAULT_CLASSIFICATION_TABLE, source: 'built-in defaults (not read: no grants)' };
  const storageArtifacts = options.storage
    ? [...artifacts.values()].flatMap((l) => (l.state === 'found' ? [l.object] : []))
    : [];
  return {
    snapshot: {
      namespace: options.namespace,
      now: options.now,
      artifact: (ns, name) => artifacts.get(key(ns, name)) ?? { state: 'missing' },
      namespaceFacts: (name) => namespaceFacts.get(name) ?? { state: 'missing' },
      table,
    },
    verifyOptions: { clusterGrants, storageArtifacts },
  };
}

/** S3 credentials: the artifact's Secret (read as the user), else the environment's AWS_* variables. */
export function s3Credentials(
  cluster: () => Cluster,
  env: NodeJS.ProcessEnv = process.env,
): S3CredentialSource {
  return async (artifact) => {
    const namespace = artifact.metadata.namespace ?? '';
    const secret = artifact.spec.storage.s3?.credentialsSecretRef.name ?? '';
    let why: string;
    const found = await lookup(`Secret ${namespace}/${secret}`, () =>
      cluster().core.readNamespacedSecret({ namespace, name: secret }),
    );
    if (found.state === 'found') {
      const data = found.object.data ?? {};
      const get = (k: string) => Buffer.from(data[k] ?? '', 'base64').toString('utf8');
      const accessKeyId = get(S3_SECRET_KEYS.accessKeyId);
      const secretAccessKey = get(S3_SECRET_KEYS.secretAccessKey);
      if (accessKeyId !== '' && secretAccessKey !== '')
        return { credentials: { accessKeyId, secretAccessKey }, from: `Secret ${namespace}/${secret}` };
      why = `Secret ${namespace}/${secret} lacks ${S3_SECRET_KEYS.accessKeyId} or ${S3_SECRET_KEYS.secretAccessKey}`;
    } else
      why =
        found.state === 'missing'
          ? `no Secret ${namespace}/${secret}`
          : `Secret ${namespace}/${secret}: ${found.reason}`;
    const accessKeyId = env.AWS_ACCESS_KEY_ID ?? '';
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY ?? '';
    if (accessKeyId !== '' && secretAccessKey !== '')
      return {
        credentials: {
          accessKeyId,
          secretAccessKey,
          ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
        },
        from: 'the environment (AWS_ACCESS_KEY_ID)',
      };
    return { reason: `no S3 credentials: ${why}, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set` };
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Output and the command.

function objectText(f: { object: ObjectRef; file?: string }): string {
  const { kind, namespace, name } = f.object;
  const where = namespace === undefined || namespace === '' ? name : `${namespace}/${name}`;
  return `${kind} ${where}${f.file === undefined ? '' : ` (${f.file})`}`;
}

function plural(n: number, word: string): string {
  return `${String(n)} ${word}${n === 1 ? '' : 's'}`;
}

/** The table form: findings, skipped checks, one summary line. */
export function formatVerifyTable(report: VerifyReport): string {
  const lines: string[] = [];
  if (report.findings.length > 0)
    lines.push(
      formatTable(report.findings, [
        { header: 'RULE', cell: (f) => f.rule },
        { header: 'SEVERITY', cell: (f) => f.severity },
        { header: 'OBJECT', cell: objectText },
        { header: 'REASON', cell: (f) => f.reason },
      ]).trimEnd(),
    );
  if (report.skipped.length > 0) {
    if (lines.length > 0) lines.push('');
    lines.push('Skipped (not checked, not passed):');
    for (const s of report.skipped)
      lines.push(
        `  ${s.check}${s.object === undefined ? '' : ` ${objectText({ object: s.object, ...(s.file === undefined ? {} : { file: s.file }) })}`}: ${s.reason}`,
      );
  }
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const warnings = report.findings.length - errors;
  const k = report.checked;
  if (lines.length > 0) lines.push('');
  lines.push(
    `${report.ok ? 'PASS' : 'FAIL'}: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}, ${String(report.skipped.length)} skipped; checked ${plural(k.workloads, 'workload')}, ${plural(k.artifactReferences, 'artifact reference')}, ${plural(k.grants, 'grant')}, ${plural(k.storageVersions, 'stored version')} (${plural(k.storageFiles, 'file')})`,
  );
  return `${lines.join('\n')}\n`;
}

interface VerifyFlags {
  output: OutputFormat;
  grants?: boolean;
  storage?: boolean;
  storageDir: string[];
  allNamespaces?: boolean;
  operatorNamespace: string;
  classificationTable?: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `verify`, added to the `strongroom` program. */
export function verifyCommand(io: CliIo, now: () => Date = () => new Date()): Command {
  return example(
    new Command('verify')
      .description(
        'CI/CD gate: check manifests (and the cluster) for unsealed artifact versions, storage that is not Strongroom ciphertext, and AccessGrants broader than the classification table allows',
      )
      .argument('[path...]', 'manifest files or directories (*.yaml, *.yml, *.json, searched recursively)')
      .addOption(outputOption())
      .option('--grants', 'also check the AccessGrants in the cluster (-n, or every namespace with -A)')
      .option(
        '--storage',
        'check the ciphertext of every version of the ModelArtifacts in the manifests and the cluster (-n or -A), not only the versions the workloads use',
      )
      .option(
        '--storage-dir <[claim=]path>',
        "a local copy or mount of a PersistentVolumeClaim's volume (repeatable; without claim= it serves every claim)",
        collect,
        [],
      )
      .option('-A, --all-namespaces', 'with --grants and --storage: every namespace')
      .addOption(
        new Option(
          '--operator-namespace <namespace>',
          "the operator's namespace (the classification table's ConfigMap)",
        ).default('strongroom-system'),
      )
      .option(
        '--classification-table <file>',
        'read the classification table from this file (a ConfigMap or a key: value mapping) instead of the cluster',
      )
      .action(
        action(io, async (paths: string[], _options: VerifyFlags, command: Command) => {
          const flags = flagsOf<VerifyFlags>(command);
          if (paths.length === 0 && flags.grants !== true && flags.storage !== true)
            throw usageError(
              'nothing to verify: name manifest files or directories, or pass --grants or --storage',
            );
          const manifests = await loadManifests(paths);
          let connected: Cluster | undefined;
          const cluster = (): Cluster => (connected ??= connect(flags));
          // The namespace of manifests without one: -n, else the context's; needs no connection when not given.
          const namespace =
            flags.namespace ??
            (() => {
              try {
                return cluster().namespace;
              } catch {
                return 'default';
              }
            })();
          const { snapshot, verifyOptions } = await loadSnapshot(cluster, manifests, {
            namespace,
            allNamespaces: flags.allNamespaces === true,
            grants: flags.grants === true,
            storage: flags.storage === true,
            operatorNamespace: flags.operatorNamespace,
            ...(flags.classificationTable === undefined
              ? {}
              : { classificationTable: flags.classificationTable }),
            now: now(),
          });
          const checker = storageChecker({
            dirs: parseStorageDirs(flags.storageDir),
            credentials: s3Credentials(cluster),
          });
          const report = await verify(manifests, snapshot, checker, verifyOptions);
          if (flags.output === 'table') io.out(formatVerifyTable(report));
          else printDocument(io, flags.output, report);
          io.setExitCode(report.ok ? EXIT.ok : EXIT.failed);
        }),
      ),
    'strongroom verify k8s/ --grants -n ml-dev',
    'strongroom verify deploy.yaml --storage --storage-dir models=/mnt/models -o json',
  );
}
