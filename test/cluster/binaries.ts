import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const BUILD_SCRIPT = join(import.meta.dirname, 'go', 'build.sh');
/**
 * Which binaries build.sh builds (`--for`): 'demo' is what a cluster with a node runs, plus helm 3 and versitygw (the
 * S3 test server, test/harness/s3.ts); 'test' adds helm4 and the compatibility kube-apiserver
 * (compat/<version>/kube-apiserver) and promtool (the chart's alerting rules are checked with it).
 */
export type BinarySet = 'demo' | 'test';

export const REQUIRED_BINARIES: Readonly<Record<BinarySet, readonly string[]>> = {
  demo: [
    'kube-apiserver',
    'kube-controller-manager',
    'kube-scheduler',
    'kubelet',
    'kubectl',
    'kube-proxy',
    'etcd',
    'coredns',
    'helm',
    'versitygw',
  ],
  test: [
    'kube-apiserver',
    'kube-controller-manager',
    'kube-scheduler',
    'kubelet',
    'kubectl',
    'kube-proxy',
    'etcd',
    'coredns',
    'helm',
    'helm4',
    'versitygw',
    'promtool',
  ],
};

/** The cluster's binaries could not be built or found. */
export class BinariesError extends Error {
  override readonly name = 'BinariesError';
}

/**
 * The directory holding the cluster's binaries, built from the Go module proxy on first use and cached outside the
 * repo, each part under a key of its own (see test/cluster/go/build.sh). STRONGROOM_CLUSTER_BIN overrides it with a
 * prebuilt set.
 */
export async function ensureBinaries(log: (line: string) => void, set: BinarySet = 'demo'): Promise<string> {
  const override = process.env.STRONGROOM_CLUSTER_BIN;
  if (override) {
    const missing = REQUIRED_BINARIES[set].filter((b) => !existsSync(join(override, b)));
    if (missing.length > 0)
      throw new BinariesError(`STRONGROOM_CLUSTER_BIN=${override} lacks ${missing.join(', ')}`);
    return override;
  }
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT, '--for', set], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      for (const line of b.toString().trimEnd().split('\n')) log(line);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const dir = out.trim().split('\n').pop() ?? '';
      if (code === 0 && dir) resolve(dir);
      else
        reject(
          new BinariesError(
            `building the cluster binaries failed (exit ${String(code)}):\n${err.slice(-3000)}`,
          ),
        );
    });
  });
}

/** The older kube-apiserver built for CRD compatibility tests (see go/kube-1.30), as `{ version, path }`. */
export function compatApiserver(binDir: string): { readonly version: string; readonly path: string } {
  const dir = join(binDir, 'compat');
  const version = existsSync(dir) ? readdirSync(dir).sort().at(0) : undefined;
  const path = version ? join(dir, version, 'kube-apiserver') : '';
  if (!version || !existsSync(path))
    throw new BinariesError(
      `no compatibility kube-apiserver under ${dir}: run test/cluster/go/build.sh --for test`,
    );
  return { version, path };
}

/**
 * The Versity S3 gateway built by build.sh (part `versitygw`, in both sets): the real S3-compatible server of
 * test/harness/s3.ts (docs/adr/0011-s3-test-server.md).
 */
export function versitygwBinary(binDir: string): string {
  const path = join(binDir, 'versitygw');
  if (!existsSync(path))
    throw new BinariesError(
      `no versitygw in ${binDir}: run test/cluster/go/build.sh (it builds the versitygw part)`,
    );
  return path;
}

/**
 * Prometheus's promtool built by build.sh (part `promtool`, in the `test` set): `promtool check rules` and
 * `promtool test rules` validate the chart's alerting rules (test/chart/observability.test.ts).
 */
export function promtoolBinary(binDir: string): string {
  const path = join(binDir, 'promtool');
  if (!existsSync(path))
    throw new BinariesError(
      `no promtool in ${binDir}: run test/cluster/go/build.sh --for test (part promtool)`,
    );
  return path;
}
