import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ENV, SIDECAR_COMMAND } from '../../core/injection/contract.ts';
import { AppImageError, buildAppImage, IMAGE_UID, parseLdd, type AppImage } from './app-image.ts';
import { attachNode, type Node } from './cluster.ts';
import { kubectl, run } from './kubectl.ts';
import { importImage } from './node.ts';

const cluster = inject('cluster');
const ns = 'app-image';
const log = (line: string): void => {
  process.stderr.write(`[app-image] ${line}\n`);
};
const repoRoot = join(import.meta.dirname, '..', '..');
const projectNode = join(repoRoot, 'node_modules', 'node', 'bin', 'node');

/** Every container here satisfies Pod Security "restricted" on its own, and runs as whatever user the image says. */
const restricted = {
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** Runs in the image: what Node is, who runs it, and whether production packages and the project's .ts load. */
const PROBE_SCRIPT = `(async () => {
  const out = { version: process.version, uid: process.getuid(), gid: process.getgid(), cwd: process.cwd() };
  const grpc = await import('@grpc/grpc-js');
  out.grpc = typeof grpc.Server;
  const winston = (await import('winston')).default;
  out.winston = typeof winston.createLogger;
  const contract = await import('/app/core/injection/contract.ts');
  out.sidecarCommand = contract.SIDECAR_COMMAND;
  try { await import('vitest'); out.vitest = 'loaded'; } catch (e) { out.vitest = e.code; }
  const fs = await import('node:fs');
  try { fs.writeFileSync('/app/written', 'x'); out.appWrite = 'written'; } catch (e) { out.appWrite = e.code; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exitCode = 1; });`;

interface PodStatus {
  status: {
    phase: string;
    containerStatuses?: {
      name: string;
      state: { terminated?: { exitCode: number; reason?: string; message?: string } };
    }[];
  };
}

async function applyPod(name: string, containers: readonly object[]): Promise<void> {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: { restartPolicy: 'Never', containers },
  };
  const created = await kubectl(cluster, ['apply', '-f', '-'], { input: JSON.stringify(pod) });
  expect(created.code, created.stderr).toBe(0);
}

async function waitForPhase(name: string, phase: 'Succeeded' | 'Failed'): Promise<PodStatus> {
  const done = await kubectl(
    cluster,
    ['-n', ns, 'wait', `pod/${name}`, `--for=jsonpath={.status.phase}=${phase}`, '--timeout=90s'],
    { timeoutMs: 100_000 },
  );
  const status = await kubectl(cluster, ['-n', ns, 'get', 'pod', name, '-o', 'json']);
  expect(done.code, `${done.stderr}\n${status.stdout}`).toBe(0);
  return JSON.parse(status.stdout) as PodStatus;
}

async function logsOf(pod: string, container: string): Promise<string> {
  const r = await kubectl(cluster, ['-n', ns, 'logs', pod, '-c', container]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/** The image's one layer, listed by tar: `mode owner size date time path` per line. */
async function layerListing(archive: string): Promise<{ paths: Set<string>; lines: string[] }> {
  const r = await run('bash', ['-o', 'pipefail', '-c', 'tar -xOf "$0" layer.tar | tar -tvf -', archive]);
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  return { lines, paths: new Set(lines.map((l) => l.split(/\s+/).slice(5).join(' ').replace(/\/$/, ''))) };
}

describe('the Strongroom image, built without a daemon', () => {
  let image: AppImage;
  let node: Node | undefined;

  beforeAll(async () => {
    const started = Date.now();
    image = await buildAppImage({ log });
    log(
      `buildAppImage took ${((Date.now() - started) / 1000).toFixed(1)} s (cached: ${String(image.cached)})`,
    );
    node = await attachNode(cluster, { log });
    const importStarted = Date.now();
    await importImage(node.containerdSocket, image.archive);
    log(`ctr images import took ${((Date.now() - importStarted) / 1000).toFixed(1)} s`);
    expect((await kubectl(cluster, ['create', 'namespace', ns])).code).toBe(0);
    const label = await kubectl(cluster, [
      'label',
      'namespace',
      ns,
      'pod-security.kubernetes.io/enforce=restricted',
    ]);
    expect(label.code, label.stderr).toBe(0);
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('holds Node, its libraries, the app and only the production packages: no shell, no devDependency, no test', async () => {
    const { paths, lines } = await layerListing(image.archive);
    for (const p of [
      './usr/local/bin/node',
      './lib64/ld-linux-x86-64.so.2',
      './lib/x86_64-linux-gnu/libc.so.6',
      './lib/x86_64-linux-gnu/libstdc++.so.6',
      './etc/passwd',
      './etc/group',
      './app/package.json',
      './app/core/injection/contract.ts',
      './app/operator/main.ts',
      './app/proto/strongroom/v1/keybroker.proto',
      './app/dist/sidecar/main.js',
      './app/dist/sidecar/segment-worker.js',
      './app/crds/modelartifacts.strongroom.dev.yaml',
      './app/node_modules/winston/package.json',
      './app/node_modules/@grpc/grpc-js/package.json',
      './app/node_modules/pkcs11js/build/Release/pkcs11.node',
    ])
      expect(paths, p).toContain(p);
    // /tmp is the empty, sticky, world-writable directory that programs expect.
    expect(lines.find((l) => l.endsWith(' ./tmp/'))).toMatch(/^drwxrwxrwt /);
    expect([...paths].filter((p) => p.startsWith('./tmp/'))).toEqual([]);

    // No shell and no other program than node.
    const programs = [...paths].filter((p) => /^\.\/(usr\/(local\/)?)?s?bin\/./.test(p));
    expect(programs).toEqual(['./usr/local/bin/node']);
    expect([...paths].filter((p) => /\/(sh|bash|dash|busybox)$/.test(p))).toEqual([]);

    // Exactly the production packages npm lists, nothing from devDependencies, no test files.
    const npmLs = await run('npm', ['ls', '--omit=dev', '--all', '--parseable', '--prefix', repoRoot]);
    expect(npmLs.code, npmLs.stderr).toBe(0);
    const production = npmLs.stdout
      .split('\n')
      .filter((l) => l.startsWith(join(repoRoot, 'node_modules')))
      .map((l) => `./app/${l.slice(repoRoot.length + 1)}`);
    expect(production.length).toBeGreaterThan(50);
    for (const p of production) expect(paths, p).toContain(`${p}/package.json`);
    const topLevel = new Set(
      [...paths].flatMap((p) => /^\.\/app\/node_modules\/((?:@[^/]+\/)?[^/@]+)$/.exec(p)?.slice(1) ?? []),
    );
    const productionTopLevel = new Set(
      production.flatMap((p) => /^\.\/app\/node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(p)?.slice(1) ?? []),
    );
    expect([...topLevel].sort()).toEqual([...productionTopLevel].sort());
    for (const dev of [
      'vitest',
      'typescript',
      'eslint',
      'prettier',
      'fast-check',
      'node',
      '@types/node-forge',
    ])
      expect(topLevel, dev).not.toContain(dev);
    expect(
      [...paths].filter(
        (p) => !p.startsWith('./app/node_modules/') && (p.endsWith('.test.ts') || p.includes('/testdata')),
      ),
    ).toEqual([]);

    // The image configuration and the user it names.
    const manifest = JSON.parse((await run('tar', ['-xOf', image.archive, 'manifest.json'])).stdout) as {
      Config: string;
      RepoTags: string[];
    }[];
    expect(manifest[0]?.RepoTags).toEqual([image.ref]);
    expect(image.ref).toMatch(/^localhost\/strongroom:[0-9a-f]{12}$/);
    const config = JSON.parse(
      (await run('tar', ['-xOf', image.archive, manifest[0]?.Config ?? 'missing'])).stdout,
    ) as { config: { Entrypoint: string[]; User: string; WorkingDir: string } };
    expect(config.config.Entrypoint).toEqual(['/usr/local/bin/node']);
    expect(config.config.User).toBe('65532:65532');
    expect(config.config.WorkingDir).toBe('/app');
    const passwd = (
      await run('bash', [
        '-o',
        'pipefail',
        '-c',
        'tar -xOf "$0" layer.tar | tar -xOf - ./etc/passwd',
        image.archive,
      ])
    ).stdout;
    expect(passwd).toContain(`nonroot:x:${String(IMAGE_UID)}:${String(IMAGE_UID)}:`);
  });

  it('runs in a restricted namespace as uid 65532 on Node 24; production packages, project .ts files, the operator and the CLI load', async () => {
    await applyPod('probe', [
      {
        name: 'probe',
        image: image.ref,
        imagePullPolicy: 'Never',
        command: ['/usr/local/bin/node', '-e', PROBE_SCRIPT],
        securityContext: restricted,
      },
      {
        // The image's own entrypoint (node) with the operator's entry file.
        name: 'operator',
        image: image.ref,
        imagePullPolicy: 'Never',
        args: ['/app/operator/main.ts', '--help'],
        securityContext: restricted,
      },
      {
        name: 'cli',
        image: image.ref,
        imagePullPolicy: 'Never',
        command: ['/usr/local/bin/node', '/app/cli/strongroom.ts', '--help'],
        securityContext: restricted,
      },
    ]);
    const pod = await waitForPhase('probe', 'Succeeded');
    expect(pod.status.containerStatuses?.map((c) => c.state.terminated?.exitCode)).toEqual([0, 0, 0]);

    const probe = JSON.parse((await logsOf('probe', 'probe')).trim()) as Record<string, unknown>;
    expect(probe).toEqual({
      version: expect.stringMatching(/^v24\.\d+\.\d+$/) as unknown,
      uid: IMAGE_UID,
      gid: IMAGE_UID,
      cwd: '/app',
      grpc: 'function',
      winston: 'function',
      sidecarCommand: ['/usr/local/bin/node', '/app/dist/sidecar/main.js'],
      vitest: 'ERR_MODULE_NOT_FOUND',
      appWrite: 'EROFS',
    });
    expect(await logsOf('probe', 'operator')).toMatch(/^Usage: strongroom-operator /);
    expect(await logsOf('probe', 'cli')).toMatch(/^Usage: strongroom /);
  });

  it('runs the bundled sidecar (SIDECAR_COMMAND): with no environment it exits 2 naming the first variable', async () => {
    await applyPod('sidecar', [
      {
        name: 'sidecar',
        image: image.ref,
        imagePullPolicy: 'Never',
        command: [...SIDECAR_COMMAND],
        securityContext: restricted,
      },
    ]);
    const pod = await waitForPhase('sidecar', 'Failed');
    expect(pod.status.containerStatuses?.[0]?.state.terminated?.exitCode).toBe(2);
    const line = JSON.parse((await logsOf('sidecar', 'sidecar')).trim().split('\n')[0] ?? '{}') as Record<
      string,
      unknown
    >;
    expect(line).toMatchObject({ level: 'error', variable: ENV.brokerAddress });
  });

  it('has no shell: a pod that runs /bin/sh fails to start', async () => {
    await applyPod('shell', [
      {
        name: 'shell',
        image: image.ref,
        imagePullPolicy: 'Never',
        command: ['/bin/sh', '-c', 'echo a shell ran'],
        securityContext: restricted,
      },
    ]);
    const pod = await waitForPhase('shell', 'Failed');
    const terminated = pod.status.containerStatuses?.[0]?.state.terminated;
    expect(terminated?.exitCode).not.toBe(0);
    expect(terminated?.message).toMatch(/"\/bin\/sh".*no such file or directory/);
    const logs = await kubectl(cluster, ['-n', ns, 'logs', 'shell']);
    expect(logs.stdout).not.toContain('a shell ran');
  });
});

describe('buildAppImage fails closed', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'strongroom-app-image-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  /** Nothing was written: the cache directory is absent or empty (no archive, no temporary build directory). */
  const noBuildLeft = (cacheDir: string): void => {
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
  };

  it('reuses the archive while the inputs are the same, and builds anew when an app file changes', async () => {
    // A small repository of its own: the working tree is shared with engineers editing it right now.
    const repo = join(dir, 'tiny');
    mkdirSync(join(repo, 'core'), { recursive: true });
    writeFileSync(
      join(repo, 'package.json'),
      JSON.stringify({ name: 'tiny', version: '1.0.0', type: 'module' }),
    );
    writeFileSync(
      join(repo, 'package-lock.json'),
      JSON.stringify({ name: 'tiny', version: '1.0.0', lockfileVersion: 3, packages: {} }),
    );
    writeFileSync(join(repo, 'core', 'a.ts'), 'export const A: number = 1;\n');
    const cacheDir = join(dir, 'cache-tiny');
    const options = { repoRoot: repo, nodeBinary: projectNode, cacheDir };

    const first = await buildAppImage(options);
    expect(first.cached).toBe(false);
    expect(readdirSync(cacheDir)).toEqual([basename(first.archive)]);
    expect(await buildAppImage(options)).toEqual({ ...first, cached: true });
    // Tests are not part of the image, so they are not part of the key either.
    writeFileSync(join(repo, 'core', 'a.test.ts'), 'export {};\n');
    expect(await buildAppImage(options)).toEqual({ ...first, cached: true });

    writeFileSync(join(repo, 'core', 'a.ts'), 'export const A: number = 2;\n');
    const second = await buildAppImage(options);
    expect(second.cached).toBe(false);
    expect(second.ref).not.toBe(first.ref);
    expect(second.archive).not.toBe(first.archive);
    const { paths } = await layerListing(second.archive);
    expect(paths).toContain('./app/core/a.ts');
    expect(paths).not.toContain('./app/core/a.test.ts');
    const content = await run('bash', [
      '-o',
      'pipefail',
      '-c',
      'tar -xOf "$0" layer.tar | tar -xOf - ./app/core/a.ts',
      second.archive,
    ]);
    expect(content.stdout).toBe('export const A: number = 2;\n');
    // Both archives are whole files; no temporary build directory is left.
    expect(readdirSync(cacheDir).sort()).toEqual([basename(first.archive), basename(second.archive)].sort());
  });

  it('refuses a Node binary that is not an ELF executable', async () => {
    const script = join(dir, 'node-wrapper');
    writeFileSync(script, '#!/bin/sh\nexec node "$@"\n', { mode: 0o755 });
    const cacheDir = join(dir, 'cache-wrapper');
    await expect(buildAppImage({ nodeBinary: script, cacheDir })).rejects.toThrow(
      expect.objectContaining({
        name: 'AppImageError',
        message: expect.stringContaining('not an ELF') as unknown,
      }),
    );
    noBuildLeft(cacheDir);
  });

  it('refuses a Node that is not version 24', async () => {
    const cacheDir = join(dir, 'cache-node20');
    const error: unknown = await buildAppImage({ nodeBinary: '/usr/bin/node', cacheDir }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppImageError);
    expect((error as Error).message).toMatch(/needs Node 24, but .* is v(?!24\.)\d+\./);
    noBuildLeft(cacheDir);
  });

  it('refuses a repository whose production dependencies are not all installed', async () => {
    const repo = join(dir, 'repo');
    mkdirSync(repo);
    writeFileSync(
      join(repo, 'package.json'),
      JSON.stringify({ name: 'x', version: '1.0.0', dependencies: { 'left-pad': '1.3.0' } }),
    );
    writeFileSync(
      join(repo, 'package-lock.json'),
      JSON.stringify({ name: 'x', version: '1.0.0', lockfileVersion: 3, packages: {} }),
    );
    const cacheDir = join(dir, 'cache-repo');
    const error: unknown = await buildAppImage({ repoRoot: repo, nodeBinary: projectNode, cacheDir }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppImageError);
    expect((error as Error).message).toMatch(/npm ls --omit=dev .* failed/);
    expect((error as Error).message).toContain('left-pad');
    noBuildLeft(cacheDir);
  });

  it('refuses a tag that is not a valid image tag', async () => {
    const cacheDir = join(dir, 'cache-tag');
    await expect(buildAppImage({ tag: 'no:colons', cacheDir })).rejects.toThrow(/not a valid image tag/);
    noBuildLeft(cacheDir);
  });

  it('reads ldd output, and refuses a binary whose library is missing', () => {
    const ldd = [
      '\tlinux-vdso.so.1 (0x00007ffd2b9f2000)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f4958000000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4957e17000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f4958333000)',
      '',
    ].join('\n');
    expect(parseLdd(ldd, 'node')).toEqual([
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
    expect(() => parseLdd('\tlibpkcs11.so => not found\n', 'addon.node')).toThrow(
      /addon\.node needs a library that is not installed: libpkcs11\.so => not found/,
    );
    expect(() => parseLdd('\tsomething unexpected\n', 'node')).toThrow(AppImageError);
  });
});
