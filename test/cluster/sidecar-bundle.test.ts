import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV, SIDECAR_COMMAND } from '../../core/injection/contract.ts';
import { testCa } from '../../sidecar/testdata/ca.ts';
import { IMAGE_APP_DIR, IMAGE_NODE_PATH } from './app-image.ts';
import {
  bundleSidecar,
  SIDECAR_BUNDLE_ENTRY,
  SIDECAR_BUNDLE_WORKER,
  SidecarBundleError,
  type SidecarBundle,
} from './sidecar-bundle.ts';

const repoRoot = resolve(import.meta.dirname, '../..');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the bundle with exactly `env` (not even PATH), from a working directory outside the repository, so that it
 * cannot lean on the repository's node_modules. `until` ends it with SIGTERM once stdout contains the text.
 */
function runBundle(entry: string, cwd: string, env: Record<string, string>, until?: string): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [entry], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      if (until !== undefined && !signalled && stdout.includes(until)) {
        signalled = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', fail);
    child.once('exit', (code, signal) => {
      done({ code, signal, stdout, stderr });
    });
  });
}

const jsonLines = (text: string): Record<string, unknown>[] =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('bundleSidecar', () => {
  let work: string;
  let appDir: string;
  let bundle: SidecarBundle;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sidecar-bundle-'));
    appDir = join(work, 'app');
    cpSync(join(repoRoot, 'proto'), join(appDir, 'proto'), { recursive: true });
    bundle = await bundleSidecar({ repoRoot, appDir });
  }, 60_000);

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('writes the entry and the segment worker side by side, from the sidecar and envelope sources and the npm packages', () => {
    expect(bundle.entry).toBe(join(appDir, SIDECAR_BUNDLE_ENTRY));
    expect(bundle.worker).toBe(join(appDir, SIDECAR_BUNDLE_WORKER));
    expect(bundle.inputs).toEqual(
      expect.arrayContaining([
        'sidecar/main.ts',
        'sidecar/identity.ts',
        'core/envelope/segment-worker.ts',
        'proto/keybroker.ts',
      ]),
    );
    expect(bundle.inputs.some((i) => i.startsWith('node_modules/@grpc/grpc-js/'))).toBe(true);
    expect(bundle.inputs.some((i) => i.startsWith('node_modules/winston/'))).toBe(true);
    // ESM with a require() for the CommonJS packages inside it.
    expect(readFileSync(bundle.entry, 'utf8')).toMatch(
      /^import \{ createRequire as \w+ \} from 'node:module';/,
    );
  });

  it("is what the webhook's SIDECAR_COMMAND runs in the image", () => {
    expect(SIDECAR_COMMAND).toEqual([IMAGE_NODE_PATH, `${IMAGE_APP_DIR}/${SIDECAR_BUNDLE_ENTRY}`]);
  });

  it('links neither the operator nor a native addon', () => {
    expect(bundle.inputs.filter((i) => i.startsWith('operator/'))).toEqual([]);
    expect(bundle.inputs.filter((i) => i.includes('pkcs11js') || i.endsWith('.node'))).toEqual([]);
  });

  it('the bundled sidecar exits 2 naming the first missing variable, with an empty environment', async () => {
    const r = await runBundle(bundle.entry, work, {});
    expect(r.code).toBe(2);
    const [line] = jsonLines(r.stderr);
    expect(line).toMatchObject({ level: 'error', variable: ENV.brokerAddress });
    expect(String(line?.['message'])).toContain(`${ENV.brokerAddress}: is not set`);
    expect(r.stdout).toBe('');
  });

  it('the bundled sidecar loads the proto from beside the bundle, generates a key and dials Attest; SIGTERM wipes and exits 0', async () => {
    // An "attest listener" that hangs up on every connection: the first Attest fails with UNAVAILABLE.
    let connections = 0;
    const server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = `127.0.0.1:${String((server.address() as AddressInfo).port)}`;
    writeFileSync(join(work, 'token'), 'a-token\n');
    try {
      const r = await runBundle(
        bundle.entry,
        work,
        {
          [ENV.brokerAddress]: address,
          [ENV.attestAddress]: address,
          [ENV.brokerServerName]: 'strongroom-broker.strongroom-system.svc',
          [ENV.caBundle]: testCa(),
          [ENV.tokenPath]: join(work, 'token'),
          [ENV.probePort]: '0',
          [ENV.plan]: JSON.stringify({
            version: 'v1',
            artifacts: [
              {
                namespace: 'ml',
                name: 'resnet50',
                uid: '6f1c1a9e-3b7e-4c57-9d1c-2b8f0e6f7a10',
                version: 'v3',
                digest: `sha256:${'ab'.repeat(32)}`,
                ciphertextPath: join(work, 'cipher'),
                plaintextDir: join(work, 'plain'),
                mountPath: '/models/resnet50',
              },
            ],
          }),
        },
        'attest failed; retrying',
      );
      expect(r.stderr).toBe('');
      const messages = jsonLines(r.stdout).map((l) => l['message']);
      expect(messages).toEqual(
        expect.arrayContaining(['sidecar starting', 'attest failed; retrying', 'stopping', 'wiped; exiting']),
      );
      expect(connections).toBeGreaterThan(0);
      expect(r.code).toBe(0);
    } finally {
      server.close();
    }
  }, 30_000);

  it('the bundled segment worker loads and answers a request (a malformed one, with an error)', async () => {
    const worker = new Worker(bundle.worker);
    try {
      const reply = await new Promise<unknown>((done, fail) => {
        worker.once('message', done);
        worker.once('error', fail);
        worker.postMessage({ id: 7, job: { segmentKey: new Uint8Array(32) }, counter: null });
      });
      expect(reply).toMatchObject({ id: 7, error: { message: expect.any(String) as unknown } });
    } finally {
      await worker.terminate();
    }
  });

  it('refuses an application directory without proto/, which the bundle reads at run time', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'sidecar-bundle-empty-'));
    try {
      await expect(bundleSidecar({ repoRoot, appDir: empty })).rejects.toThrow(SidecarBundleError);
      await expect(bundleSidecar({ repoRoot, appDir: empty })).rejects.toThrow(/proto\/strongroom\/v1/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('refuses a relative application directory', async () => {
    await expect(bundleSidecar({ repoRoot, appDir: 'app' })).rejects.toThrow(/must be absolute/);
  });
});
