/**
 * The Dockerfile stays the source of the image for users with Docker; the tests run the daemonless build
 * (test/cluster/app-image.ts). This test reads the Dockerfile and .dockerignore (layout.ts) and compares what they
 * describe with the daemonless image's archive (archive.ts): the run configuration, every path with its type, owner,
 * mode and content, and no shell. Then it shows the comparison bites: a Dockerfile or .dockerignore changed in one
 * place, or an image changed in one place, each yields the difference it should.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_SOURCE_DIRS, buildAppImage, parseLdd } from '../cluster/app-image.ts';
import { bundleSidecar } from '../cluster/sidecar-bundle.ts';
import { readDockerArchive, type ImageEntry, type ImageView } from './archive.ts';
import {
  compareLayout,
  expectedLayout,
  parseDockerfile,
  parseDockerignore,
  readRootfsScript,
  type LayoutSources,
} from './layout.ts';

const repoRoot = join(import.meta.dirname, '..', '..');
const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8');
const ignored = parseDockerignore(dockerignore);

/** Sizes and times of every application file: changes when an engineer edits one while the test runs. */
function fingerprint(): string {
  const parts: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = statSync(p, { throwIfNoEntry: false });
        parts.push(`${p}:${String(s?.size)}:${String(s?.mtimeMs)}`);
      }
    }
  };
  for (const d of APP_SOURCE_DIRS) walk(join(repoRoot, d));
  return [...parts, statSync(join(repoRoot, 'package.json')).mtimeMs].join('\n');
}

function productionPackages(): string[] {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable', '--prefix', repoRoot], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const modules = join(repoRoot, 'node_modules');
  return out
    .split('\n')
    .filter((l) => l.startsWith(`${modules}/`))
    .map((l) => l.slice(repoRoot.length + 1))
    .sort();
}

function libraries(binaries: readonly string[]): string[] {
  const all = new Set<string>();
  for (const b of binaries)
    for (const lib of parseLdd(execFileSync('ldd', [b], { encoding: 'utf8' }), b)) all.add(lib);
  return [...all].sort();
}

/** The 1-based line of the Dockerfile that holds text. */
const lineOf = (text: string): number => dockerfile.split('\n').findIndex((l) => l.includes(text)) + 1;

/** At most 40 differences, for an assertion message that can be read. */
const shown = (diffs: readonly string[]): string =>
  [...diffs.slice(0, 40), ...(diffs.length > 40 ? [`… and ${String(diffs.length - 40)} more`] : [])].join(
    '\n',
  );

describe('the Dockerfile and the daemonless image have the same layout', { timeout: 60_000 }, () => {
  let work: string;
  let sources: LayoutSources;
  let image: ImageView;
  let diffs: string[];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'strongroom-dockerfile-layout-'));
    const nodeBinary = realpathSync(join(repoRoot, 'node_modules', 'node', 'bin', 'node'));
    const nodeVersion = execFileSync(nodeBinary, ['--version'], { encoding: 'utf8' }).trim();
    const debianCodename =
      /^VERSION_CODENAME=(\w+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
    // The working tree is shared with engineers editing it: compare again when a source changed meanwhile.
    for (let attempt = 1; ; attempt++) {
      const before = fingerprint();
      // The build context as it is now: later comparisons read this copy, not a working tree that may change.
      const contextRoot = join(work, `context-${String(attempt)}`);
      for (const name of readdirSync(repoRoot))
        if (name !== 'node_modules' && !ignored(name))
          cpSync(join(repoRoot, name), join(contextRoot, name), {
            recursive: true,
            filter: (source) => !source.split('/').includes('node_modules'),
          });
      const built = await buildAppImage();
      image = readDockerArchive(built.archive);
      const packages = productionPackages();
      const addons = packages.flatMap((p) =>
        readdirSync(join(repoRoot, p), { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.node') && !f.startsWith('node_modules/'))
          .map((f) => join(repoRoot, p, f)),
      );
      // What the bundle stage writes under /src, from this repository (bundleSidecar wants proto/ beside it).
      const bundleDir = join(work, `bundle-${String(attempt)}`);
      cpSync(join(repoRoot, 'proto'), join(bundleDir, 'proto'), { recursive: true });
      await bundleSidecar({ repoRoot, appDir: bundleDir });
      rmSync(join(bundleDir, 'proto'), { recursive: true });
      sources = {
        contextRoot,
        repoRoot,
        nodeBinary,
        nodeVersion,
        debianCodename,
        productionPackages: packages,
        libraries: libraries([nodeBinary, ...addons]),
        bundleDir,
      };
      diffs = compareLayout(expectedLayout(dockerfile, dockerignore, sources), image);
      if (fingerprint() === before || attempt === 3) break;
    }
  }, 600_000);
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  const compare = (docker: string, ignore = dockerignore, view: ImageView = image): string[] =>
    compareLayout(expectedLayout(docker, ignore, sources), view);
  /** The Dockerfile with one text replaced; the replaced text must be there. */
  const edited = (from: string, to: string): string => {
    expect(dockerfile).toContain(from);
    return dockerfile.replace(from, to);
  };
  /** The image with some entries replaced or removed, and its configuration changed. */
  const changedImage = (
    entries: Record<string, ImageEntry | undefined>,
    config: Partial<ImageView['config']> = {},
  ): ImageView => {
    const copy = new Map(image.entries);
    for (const [p, e] of Object.entries(entries)) {
      if (e === undefined) copy.delete(p);
      else copy.set(p, e);
    }
    return { config: { ...image.config, ...config }, entries: copy };
  };

  it('agree: configuration, every path, owner, mode and content, and no shell', () => {
    expect(diffs, shown(diffs)).toEqual([]);
    // What the comparison covered, so that an empty list means something.
    const paths = [...image.entries.keys()];
    expect(image.config).toEqual({
      user: '65532:65532',
      workingDir: '/app',
      entrypoint: ['/usr/local/bin/node'],
      cmd: ['/app/operator/main.ts'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    });
    for (const p of [
      '/usr/local/bin/node',
      '/lib64/ld-linux-x86-64.so.2',
      '/etc/passwd',
      '/etc/group',
      '/tmp',
      '/home/nonroot',
      '/app/package.json',
      '/app/operator/main.ts',
      '/app/crds/modelartifacts.strongroom.dev.yaml',
      '/app/dist/sidecar/main.js',
      '/app/dist/sidecar/segment-worker.js',
      '/app/node_modules/@grpc/grpc-js/package.json',
    ])
      expect(paths, p).toContain(p);
    expect(image.entries.get('/tmp')?.mode).toBe(0o1777);
    expect(paths.filter((p) => p.endsWith('.test.ts') && !p.startsWith('/app/node_modules/'))).toEqual([]);
    expect(paths.length).toBeGreaterThan(3000);
  });

  it('reads the final stage and the root-filesystem script as written', () => {
    const stages = parseDockerfile(dockerfile);
    expect(stages.map((s) => [s.name, s.base])).toEqual([
      ['build', 'node:24-bookworm-slim'],
      ['bundle', 'node:24-bookworm-slim'],
      [undefined, 'scratch'],
    ]);
    const script = stages[0]?.instructions.find((i) => i.keyword === 'RUN' && i.heredocs.length === 1)
      ?.heredocs[0];
    const rootfs = readRootfsScript(script ?? '', '/rootfs');
    expect(rootfs.problems).toEqual([]);
    expect(rootfs.node).toBe('/usr/local/bin/node');
    expect(rootfs.nodeModules).toBe('/app/node_modules');
    expect(rootfs.modes).toEqual(new Map([['/tmp', 0o1777]]));
    expect(rootfs.libraryBinaries).toEqual(['node', 'addons']);
    expect(rootfs.librariesAtTheirPath).toBe(true);
    expect(rootfs.files.get('/etc/passwd')).toBe(
      'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n',
    );
    expect(rootfs.files.get('/etc/group')).toBe('root:x:0:\nnonroot:x:65532:\n');
    expect(rootfs.dirs).toEqual(expect.arrayContaining(['/tmp', '/home/nonroot', '/app', '/etc']));
  });

  it('applies .dockerignore as Docker does: the last matching pattern wins, a directory pattern covers its files', () => {
    expect(ignored('core/envelope/envelope.ts')).toBe(false);
    expect(ignored('core/envelope/envelope.test.ts')).toBe(true);
    expect(ignored('core/envelope/testdata/vectors.json')).toBe(true);
    expect(ignored('test/cluster/sidecar-bundle.ts')).toBe(false);
    expect(ignored('test/cluster/app-image.ts')).toBe(true);
    expect(ignored('docs/images.md')).toBe(true);
    expect(ignored('package.json')).toBe(false);
  });

  describe('reports a Dockerfile that drifts', () => {
    it('USER changed', () => {
      expect(compare(edited('USER 65532:65532', 'USER 1000:1000'))).toEqual([
        'USER: the Dockerfile says 1000:1000, the image 65532:65532',
      ]);
    });
    it('a COPY added', () => {
      const d = compare(edited('COPY crds/ /app/crds/', 'COPY crds/ /app/crds/\nCOPY bench/ /app/bench/'));
      expect(d).toContain(
        `Dockerfile line ${String(lineOf('COPY crds/') + 1)}: COPY bench/ /app/bench/: bench/ is not in the build context (.dockerignore)`,
      );
      const d2 = compare(edited('COPY crds/ /app/crds/', 'COPY crds/ /app/crds/\nCOPY proto/ /app/protos/'));
      expect(d2).toContain(
        `missing from the image: /app/protos/strongroom/v1/keybroker.proto (Dockerfile line ${String(lineOf('COPY crds/') + 1)}: COPY proto/ /app/protos/)`,
      );
    });
    it('a COPY removed', () => {
      const d = compare(edited('COPY crds/ /app/crds/\n', ''));
      expect(d).toContain(
        'in the image but not in the Dockerfile: /app/crds/modelartifacts.strongroom.dev.yaml',
      );
    });
    it('ENTRYPOINT, CMD, WORKDIR and ENV changed', () => {
      expect(compare(edited('ENTRYPOINT ["/usr/local/bin/node"]', 'ENTRYPOINT /usr/local/bin/node'))).toEqual(
        [
          'ENTRYPOINT is in shell form (/usr/local/bin/node): it needs /bin/sh, which the image must not have',
          'ENTRYPOINT: the Dockerfile says ["/bin/sh","-c","/usr/local/bin/node"], the image ["/usr/local/bin/node"]',
        ],
      );
      expect(compare(edited('CMD ["/app/operator/main.ts"]', 'CMD ["/app/cli/strongroom.ts"]'))).toEqual([
        'CMD: the Dockerfile says ["/app/cli/strongroom.ts"], the image ["/app/operator/main.ts"]',
      ]);
      expect(compare(edited('WORKDIR /app\nENTRYPOINT', 'WORKDIR /\nENTRYPOINT'))).toEqual([
        'WORKDIR: the Dockerfile says /, the image /app',
      ]);
      expect(compare(edited('ENV PATH=', 'ENV NODE_ENV=production\nENV PATH='))).toEqual([
        'ENV: the Dockerfile says ["NODE_ENV=production","PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], the image ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]',
      ]);
    });
    it('the root-filesystem script changed: passwd, /tmp mode, a directory, the libraries, a step it does not know', () => {
      expect(compare(edited('nonroot:x:65532:\\n', 'nonroot:x:1000:\\n'))).toEqual([
        '/etc/group: the Dockerfile writes "root:x:0:\\nnonroot:x:1000:\\n", the image has "root:x:0:\\nnonroot:x:65532:\\n"',
      ]);
      expect(compare(edited('chmod 1777 "$rootfs/tmp"', 'chmod 0755 "$rootfs/tmp"'))).toEqual([
        '/tmp: mode 755 in the Dockerfile, 1777 in the image',
      ]);
      expect(compare(edited(' "$rootfs/home/nonroot"', ''))).toEqual([
        'in the image but not in the Dockerfile: /home',
        'in the image but not in the Dockerfile: /home/nonroot',
      ]);
      expect(compare(edited(`for binary in "$node" $(find`, `for binary in $(find`))).toContain(
        'rootfs script: the libraries are those of addons; the daemonless build takes those of node and the native addons',
      );
      expect(compare(edited('cp "$node"', 'ln -s /usr/bin/busybox "$rootfs/bin/sh"\ncp "$node"'))).toEqual(
        expect.arrayContaining(['rootfs script: not understood: ln -s /usr/bin/busybox "$rootfs/bin/sh"']),
      );
      expect(compare(edited('npm ci --omit=dev', 'npm ci'))).toEqual([
        'rootfs script: /app/node_modules is not from npm ci --omit=dev (production packages only)',
      ]);
    });
    it("npm's own .bin and hidden lock file kept", () => {
      // One line fewer above the COPY.
      const d = compare(edited('rm -rf "$rootfs/app/node_modules/.package-lock.json"\n', ''));
      expect(d).toEqual([
        `missing from the image: /app/node_modules/.package-lock.json (Dockerfile line ${String(lineOf('COPY --from=build /rootfs/') - 1)}: COPY --from=build /rootfs/ / (cp -a "$modules"): npm's hidden lock file)`,
      ]);
    });
    it("the two drifts this test found: no /proc, /sys, /dev; npm's .bin and hidden lock file copied", () => {
      const before = dockerfile
        .replace(' "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"', '')
        .replace(/^rm -rf "\$rootfs\/app\/node_modules\/\.package-lock\.json"\n/m, '')
        .replace(/^find "\$rootfs\/app\/node_modules" .*\n/m, '');
      expect(before).not.toBe(dockerfile);
      const d = compare(before);
      expect(d).toEqual(
        expect.arrayContaining([
          'in the image but not in the Dockerfile: /proc',
          'in the image but not in the Dockerfile: /sys',
          'in the image but not in the Dockerfile: /dev',
          expect.stringMatching(
            /^missing from the image: \/app\/node_modules\/\.package-lock\.json /,
          ) as unknown,
          expect.stringMatching(/^missing from the image: \/app\/node_modules\/\.bin /) as unknown,
        ]),
      );
      expect(d).toHaveLength(5);
    });
    it('.dockerignore letting tests in', () => {
      const d = compare(dockerfile, dockerignore.replace('**/*.test.ts\n', ''));
      expect(d.length).toBeGreaterThan(10);
      expect(d.every((l) => /^missing from the image: \/app\/.*\.test\.ts /.test(l))).toBe(true);
    });
    it('FROM another base', () => {
      expect(
        compare(
          dockerfile.replace('ARG NODE_IMAGE=node:24-bookworm-slim', 'ARG NODE_IMAGE=node:22-trixie-slim'),
        ),
      ).toEqual([
        'stage build is FROM node:22-trixie-slim, but the daemonless image has Node ' + sources.nodeVersion,
        "stage build is FROM node:22-trixie-slim, but the daemonless image's libraries come from Debian bookworm",
        'stage bundle is FROM node:22-trixie-slim, but the daemonless image has Node ' + sources.nodeVersion,
        "stage bundle is FROM node:22-trixie-slim, but the daemonless image's libraries come from Debian bookworm",
      ]);
    });
  });

  describe('reports an image that drifts', () => {
    const file = (path: string, data: string, mode = 0o644): ImageEntry => ({
      path,
      type: 'file',
      mode,
      uid: 0,
      gid: 0,
      data: Buffer.from(data),
      linkname: '',
    });
    it('a shell added', () => {
      const d = compare(
        dockerfile,
        dockerignore,
        changedImage({
          '/bin': { ...file('/bin', ''), type: 'dir', mode: 0o755 },
          '/bin/sh': file('/bin/sh', 'ELF', 0o755),
        }),
      );
      expect(d).toEqual([
        'in the image but not in the Dockerfile: /bin',
        'in the image but not in the Dockerfile: /bin/sh',
        'the image has a shell: /bin/sh',
      ]);
    });
    it('its configuration changed', () => {
      expect(compare(dockerfile, dockerignore, changedImage({}, { user: '0:0', env: [] }))).toEqual([
        'USER: the Dockerfile says 65532:65532, the image 0:0',
        'ENV: the Dockerfile says ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], the image []',
      ]);
    });
    it('a source file missing, changed, or writable; /tmp not sticky; passwd changed', () => {
      const passwd = image.entries.get('/etc/passwd');
      const tmp = image.entries.get('/tmp');
      if (passwd === undefined || tmp === undefined) throw new Error('no /etc/passwd or /tmp');
      const d = compare(
        dockerfile,
        dockerignore,
        changedImage({
          '/app/operator/main.ts': undefined,
          '/app/package.json': file('/app/package.json', '{}'),
          '/app/core/injection/contract.ts': {
            ...file('', ''),
            ...image.entries.get('/app/core/injection/contract.ts'),
            mode: 0o666,
          },
          '/etc/passwd': { ...passwd, data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
          '/tmp': { ...tmp, mode: 0o755 },
        }),
      );
      expect(d).toEqual([
        '/tmp: mode 1777 in the Dockerfile, 755 in the image',
        '/etc/passwd: the Dockerfile writes "root:x:0:0:root:/root:/sbin/nologin\\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\\n", the image has "root:x:0:0:root:/root:/bin/sh\\n"',
        `/app/package.json: content differs from ${join(sources.contextRoot, 'package.json')} (Dockerfile line ${String(lineOf('COPY package.json /app/'))}: COPY package.json /app/)`,
        '/app/core/injection/contract.ts: mode 666 in the image, writable by others than root',
        `missing from the image: /app/operator/main.ts (Dockerfile line ${String(lineOf('COPY operator/'))}: COPY operator/ /app/operator/)`,
      ]);
    });
  });
});
