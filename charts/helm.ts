/**
 * Running the chart through helm for the chart tests (test/chart/): the helm 3 and helm 4 binaries the test
 * cluster's build provides (test/cluster/go/build.sh), and `helm template` / `helm lint` on charts/strongroom.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ensureBinaries } from '../test/cluster/binaries.ts';
import { CHART } from './generate.ts';

export interface Helm {
  /** `helm` (Helm 3) or `helm4`. */
  readonly name: string;
  readonly path: string;
}

/** A rendered Kubernetes object. */
export interface Rendered {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/**
 * The helm binaries: Helm 3 always, Helm 4 when the build provides it. The `test` set includes helm4; if it cannot
 * be built, only Helm 3 (from the `demo` set) is used and `missing` says why.
 */
export async function helmBinaries(): Promise<{ helms: Helm[]; missing?: string }> {
  const log = (): void => undefined;
  let dir: string;
  let missing: string | undefined;
  try {
    dir = await ensureBinaries(log, 'test');
  } catch (error) {
    missing = `helm4 unavailable: ${String(error)}`;
    dir = await ensureBinaries(log, 'demo');
  }
  const helms = ['helm', 'helm4']
    .map((name) => ({ name, path: join(dir, name) }))
    .filter((h) => existsSync(h.path));
  return missing === undefined ? { helms } : { helms, missing };
}

export interface HelmResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(helm: Helm, args: readonly string[], values?: unknown): HelmResult {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-chart-'));
  try {
    const valueArgs: string[] = [];
    if (values !== undefined) {
      const file = join(dir, 'values.json');
      writeFileSync(file, JSON.stringify(values));
      valueArgs.push('--values', file);
    }
    const result = spawnSync(helm.path, [...args, ...valueArgs], {
      encoding: 'utf8',
      // No user configuration, repositories or plugins leak in.
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        HELM_CACHE_HOME: join(dir, 'cache'),
        HELM_CONFIG_HOME: join(dir, 'config'),
        HELM_DATA_HOME: join(dir, 'data'),
      },
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm template` of the chart; the result as it came. */
export function template(
  helm: Helm,
  options: { values?: unknown; namespace?: string; release?: string; args?: readonly string[] } = {},
): HelmResult {
  return run(
    helm,
    [
      'template',
      options.release ?? 'strongroom',
      CHART,
      '--namespace',
      options.namespace ?? 'strongroom-system',
      ...(options.args ?? []),
    ],
    options.values,
  );
}

/** `helm template` of the chart, parsed; throws with helm's message when it fails. */
export function render(
  helm: Helm,
  options: { values?: unknown; namespace?: string; release?: string; args?: readonly string[] } = {},
): Rendered[] {
  const result = template(helm, options);
  if (result.status !== 0) throw new Error(`${helm.name} template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as Rendered | null)
    .filter((o): o is Rendered => o !== null);
}

/** `helm lint --strict` of the chart. */
export function lint(helm: Helm, values?: unknown): HelmResult {
  return run(helm, ['lint', '--strict', CHART], values);
}

/** The one rendered object of that kind and name. */
export function find(objects: readonly Rendered[], kind: string, name: string): Rendered {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${String(found.length)}`);
  return found[0] as Rendered;
}
