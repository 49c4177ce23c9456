import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { findLeftovers, startCluster, sweepStaleClusters } from './cluster.ts';
import { processesMatching } from './host.ts';
import { kubectl } from './kubectl.ts';

const shared = inject('cluster');

/** Starts hold-cluster.ts in a child process and resolves with its work directory once the cluster is up. */
function holdCluster(): Promise<{
  child: ReturnType<typeof spawn>;
  workDir: string;
  exited: Promise<number | null>;
}> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'hold-cluster.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, STRONGROOM_CLUSTER_BIN: shared.binDir },
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve(code ?? (signal ? -1 : null));
    });
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line)
        resolve({ child, workDir: (JSON.parse(line) as { workDir: string }).workDir, exited });
    });
    child.once('exit', (code) => {
      reject(new Error(`hold-cluster exited early (${String(code)})`));
    });
  });
}

function expectNothingLeft(left: Awaited<ReturnType<typeof findLeftovers>>): void {
  expect(left.processes).toEqual([]);
  expect(left.mounts).toEqual([]);
  expect(left.workDirExists).toBe(false);
}

describe('test cluster teardown', () => {
  it('stop() ends etcd, the API server, controller manager and scheduler and removes the work directory', async () => {
    const cluster = await startCluster();
    const running = processesMatching(cluster.workDir).map((p) => p.command.split(' ')[0]?.split('/').pop());
    expect(running.sort()).toEqual(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']);
    // A second, independent control plane: its own ports, PKI and etcd.
    expect(cluster.server).not.toBe(shared.server);
    expect((await kubectl(cluster, ['get', 'namespace', 'default', '-o', 'name'])).stdout.trim()).toBe(
      'namespace/default',
    );
    await cluster.stop();
    await cluster.stop(); // idempotent
    expectNothingLeft(await findLeftovers(cluster.workDir));
  });

  it('an interrupted owner (SIGINT) stops its cluster before exiting', async () => {
    const { child, workDir, exited } = await holdCluster();
    expect(processesMatching(workDir).length).toBe(4);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expectNothingLeft(await findLeftovers(workDir));
  });

  it('a cluster whose owner was killed outright (SIGKILL) is swept by the next start', async () => {
    const { child, workDir, exited } = await holdCluster();
    child.kill('SIGKILL');
    await exited;
    // Nothing could run in the dead owner: the cluster is still there, orphaned.
    expect(processesMatching(workDir).length).toBe(4);
    expect(existsSync(join(workDir, 'cluster.json'))).toBe(true);
    expect(await sweepStaleClusters()).toBeGreaterThanOrEqual(1);
    expectNothingLeft(await findLeftovers(workDir));
    // The shared cluster, whose owner is alive, was left alone.
    const ready = await kubectl(shared, ['get', '--raw', '/readyz']);
    expect(ready.stdout, ready.stderr).toBe('ok');
  });
});
