/**
 * Reading Kubernetes manifests as `kubectl apply -f` takes them: files or directories (searched recursively for
 * `*.yaml`, `*.yml` and `*.json`), YAML with several documents, JSON, and `List` kinds (`v1/List`, `*List`)
 * flattened into their items. Empty documents are skipped. Each object remembers the file it came from.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { usageError } from './io.ts';

/** A Kubernetes object as read from a manifest (only what every object has is typed). */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly [key: string]: unknown;
  };
  readonly [key: string]: unknown;
}

/** One object of a manifest and where it came from. */
export interface ManifestObject {
  readonly object: KubeObject;
  /** The file, as the user named it (or as found under a directory they named). */
  readonly file: string;
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** The files `paths` name: files as given, directories searched recursively for manifest files (sorted). */
export async function manifestFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && EXTENSIONS.has(extname(entry.name).toLowerCase())) files.push(path);
    }
  };
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
    } catch (cause) {
      throw usageError(`cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
    if (info.isDirectory()) await walk(path);
    else files.push(path);
  }
  return files;
}

/** Parses one file's text: every YAML (or JSON) document, `List` kinds flattened. */
export function parseManifests(text: string, file: string): ManifestObject[] {
  const out: ManifestObject[] = [];
  const documents = parseAllDocuments(text, { prettyErrors: true });
  for (const [i, document] of documents.entries()) {
    if (document.errors.length > 0)
      throw usageError(
        `${file}: document ${String(i + 1)} is not valid YAML: ${document.errors[0]?.message ?? ''}`,
      );
    const value: unknown = document.toJS();
    if (value === null || value === undefined) continue;
    flatten(value, file, out, `document ${String(i + 1)}`);
  }
  return out;
}

function flatten(value: unknown, file: string, out: ManifestObject[], where: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw usageError(`${file}: ${where} is not a Kubernetes object (a mapping with apiVersion and kind)`);
  const object = value as KubeObject;
  const kind = object.kind;
  if (typeof kind !== 'string' || typeof object.apiVersion !== 'string')
    throw usageError(`${file}: ${where} has no apiVersion or kind`);
  if (kind === 'List' || (kind.endsWith('List') && Array.isArray(object.items))) {
    const items = object.items;
    if (!Array.isArray(items)) throw usageError(`${file}: ${where} is a ${kind} without items`);
    for (const [j, item] of items.entries()) flatten(item, file, out, `${where}, item ${String(j + 1)}`);
    return;
  }
  out.push({ object, file });
}

/** Reads and parses every manifest under `paths`; an unreadable or malformed file is a usage error (exit 2). */
export async function loadManifests(paths: readonly string[]): Promise<ManifestObject[]> {
  const objects: ManifestObject[] = [];
  for (const file of await manifestFiles(paths)) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (cause) {
      throw usageError(`cannot read ${file}: ${(cause as Error).message}`, { cause });
    }
    objects.push(...parseManifests(text, file));
  }
  return objects;
}

/** Kinds whose pods the injector sees, and where their pod template is. */
const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** The pod (template) metadata of a workload: a Pod's own, a controller's template's; undefined for other kinds. */
export function podTemplateMetadata(
  object: KubeObject,
): { labels: Readonly<Record<string, string>>; annotations: Readonly<Record<string, string>> } | undefined {
  const kind = object.kind ?? '';
  let template: unknown;
  if (kind === 'Pod') template = object;
  else {
    const path = POD_TEMPLATE_PATHS[kind];
    if (path === undefined) return undefined;
    template = path.reduce<unknown>(
      (at, key) => (typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[key] : undefined),
      object,
    );
  }
  const metadata = (template as { metadata?: { labels?: unknown; annotations?: unknown } } | undefined)
    ?.metadata;
  const map = (v: unknown): Record<string, string> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, string>) : {};
  return { labels: map(metadata?.labels), annotations: map(metadata?.annotations) };
}

/** The kinds {@link podTemplateMetadata} understands. */
export const WORKLOAD_KINDS: readonly string[] = ['Pod', ...Object.keys(POD_TEMPLATE_PATHS)];
