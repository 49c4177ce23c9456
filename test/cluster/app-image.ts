/**
 * The Strongroom image built without a daemon: the same layout as the repository's Dockerfile (docs/images.md), from
 * this machine's files. A root filesystem holds the project's Node 24 binary at /usr/local/bin/node, the shared
 * libraries it and the production native addons need (from `ldd`, with the dynamic loader), /etc/passwd and
 * /etc/group with the non-root user 65532, an empty /tmp, and the application at /app: package.json, core/,
 * operator/, sidecar/, proto/, crds/ (without tests), the sidecar bundled with its segment worker in dist/sidecar/
 * (test/cluster/sidecar-bundle.ts; what `SIDECAR_COMMAND` runs) and only the production packages of node_modules.
 * It is written as a docker-archive with {@link writeImageArchive} and cached under ~/.cache/strongroom/images/,
 * keyed by a hash of every input, so that test runs after the first reuse it.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeImageArchive } from './image.ts';
import { run } from './kubectl.ts';
import { bundleSidecar } from './sidecar-bundle.ts';

/** The repository name of the image; the tag is {@link AppImageOptions.tag} or derived from the inputs. */
export const APP_IMAGE_NAME = 'localhost/strongroom';
/** Where Node is in the image (core/injection/contract.ts relies on it). */
export const IMAGE_NODE_PATH = '/usr/local/bin/node';
/** The application's directory in the image. */
export const IMAGE_APP_DIR = '/app';
/** The uid and gid the image runs as (the "nonroot" user of distroless images). */
export const IMAGE_UID = 65532;
/** The source directories copied into /app, next to package.json. Keep in step with the Dockerfile. */
export const APP_SOURCE_DIRS: readonly string[] = ['core', 'operator', 'cli', 'sidecar', 'proto', 'crds'];

/** Bumped whenever this builder changes what it writes, so that cached archives of an older layout are not reused. */
const BUILDER_VERSION = 2;
/** How many archives the cache keeps; older ones are removed after a build. */
const CACHE_KEEP = 3;

/** A failure to build the image: a missing or wrong input, or a tool that failed. */
export class AppImageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AppImageError';
  }
}

export interface AppImageOptions {
  /** The repository to build from; default: the one this file belongs to. */
  readonly repoRoot?: string;
  /** The Node binary to put in the image; default: the project's own, `<repoRoot>/node_modules/node/bin/node`. */
  readonly nodeBinary?: string;
  /** The image tag; default: the first 12 hex digits of the inputs' hash. */
  readonly tag?: string;
  /** Where archives are cached; default: ~/.cache/strongroom/images. */
  readonly cacheDir?: string;
  /** Progress lines (what is built, how long it took, how big it is); silent by default. */
  readonly log?: (line: string) => void;
}

export interface AppImage {
  /** The docker-archive tarball, for `ctr images import` (importImage in node.ts). */
  readonly archive: string;
  /** `localhost/strongroom:<tag>`: the image reference pods name, with `imagePullPolicy: Never`. */
  readonly ref: string;
  /** True when the archive came from the cache. */
  readonly cached: boolean;
}

const defaultRepoRoot = (): string => resolve(dirname(fileURLToPath(import.meta.url)), '../..');

async function mustRun(file: string, args: readonly string[], what: string): Promise<string> {
  let r;
  try {
    r = await run(file, args, { timeoutMs: 300_000 });
  } catch (error) {
    throw new AppImageError(`${what}: cannot run ${file}`, { cause: error });
  }
  if (r.code !== 0) throw new AppImageError(`${what}: ${file} exited ${String(r.code)}: ${r.stderr.trim()}`);
  return r.stdout;
}

function isElf(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const magic = Buffer.alloc(4);
    return readSync(fd, magic, 0, 4, 0) === 4 && magic.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    closeSync(fd);
  }
}

/** The Node binary as a real ELF file (not a symlink or a wrapper script), and its version; Node 24 only. */
async function resolveNode(nodeBinary: string): Promise<{ path: string; version: string }> {
  let path: string;
  try {
    path = realpathSync(nodeBinary);
  } catch (error) {
    throw new AppImageError(`the Node binary ${nodeBinary} does not exist`, { cause: error });
  }
  if (!statSync(path).isFile() || !isElf(path))
    throw new AppImageError(`the Node binary ${path} is not an ELF executable`);
  const version = (await mustRun(path, ['--version'], 'node --version')).trim();
  if (!/^v24\.\d+\.\d+$/.test(version))
    throw new AppImageError(`the image needs Node 24, but ${path} is ${version || 'of no known version'}`);
  return { path, version };
}

/**
 * The production package directories, from `npm ls --omit=dev --all --parseable` run in the repository: every
 * path is under its node_modules, the first line (the project itself) left out. Fails when npm reports a problem
 * (a missing or invalid package), so an incomplete install never becomes an image.
 */
async function productionPackages(repoRoot: string): Promise<string[]> {
  let r;
  try {
    r = await run('npm', ['ls', '--omit=dev', '--all', '--parseable', '--prefix', repoRoot], {
      timeoutMs: 120_000,
    });
  } catch (error) {
    throw new AppImageError('cannot run npm ls', { cause: error });
  }
  if (r.code !== 0)
    throw new AppImageError(
      `npm ls --omit=dev in ${repoRoot} failed (exit ${String(r.code)}): ${r.stderr.trim()}`,
    );
  const modules = join(repoRoot, 'node_modules') + sep;
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const packages = lines.filter((l) => resolve(l) !== resolve(repoRoot));
  for (const p of packages) {
    if (!resolve(p).startsWith(modules) || !existsSync(join(p, 'package.json')))
      throw new AppImageError(`npm ls listed ${p}, which is not a package under ${modules}`);
  }
  return packages.sort();
}

/** Files of the application: package.json and the source directories, without tests and test data, sorted. */
function appFiles(repoRoot: string): string[] {
  const files = ['package.json'];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(repoRoot, rel), { withFileTypes: true })) {
      const child = join(rel, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'testdata' && entry.name !== 'node_modules') walk(child);
      } else if (entry.isFile() && !entry.name.endsWith('.test.ts')) {
        files.push(child);
      }
    }
  };
  for (const dir of APP_SOURCE_DIRS) {
    if (existsSync(join(repoRoot, dir))) walk(dir);
  }
  if (!existsSync(join(repoRoot, 'package.json'))) throw new AppImageError(`${repoRoot} has no package.json`);
  return files.sort();
}

/** Every file under dir whose name ends in .node (native addons), for ldd. */
function nativeAddons(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.node')) found.push(join(entry.parentPath, entry.name));
  }
  return found;
}

/**
 * The absolute paths of the shared libraries and the dynamic loader that `ldd` lists for a binary. A library ldd
 * cannot find fails the build: the image would not start.
 */
export function parseLdd(output: string, binary: string): string[] {
  const libs: string[] = [];
  for (const line of output.split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('linux-vdso') || text === 'statically linked') continue;
    if (text.includes('not found'))
      throw new AppImageError(`${binary} needs a library that is not installed: ${text}`);
    const match = /^(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)$/.exec(text);
    if (!match?.[1]) throw new AppImageError(`cannot read this line of ldd ${binary}: ${text}`);
    libs.push(match[1]);
  }
  return libs;
}

async function sharedLibraries(binaries: readonly string[]): Promise<string[]> {
  const all = new Set<string>();
  for (const binary of binaries) {
    for (const lib of parseLdd(await mustRun('ldd', [binary], `ldd ${binary}`), binary)) all.add(lib);
  }
  return [...all].sort();
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * Builds the Strongroom image as a docker-archive without a daemon, or returns the cached archive of the same
 * inputs: the Node binary (path and version), its shared libraries, package-lock.json, the production packages npm
 * lists, the content of every application file and of the sidecar bundler. A build writes into a temporary
 * directory and renames the archive into place, so a reader never sees a partial file.
 */
export async function buildAppImage(options: AppImageOptions = {}): Promise<AppImage> {
  const log = options.log ?? (() => undefined);
  const repoRoot = resolve(options.repoRoot ?? defaultRepoRoot());
  const cacheDir = options.cacheDir ?? join(homedir(), '.cache', 'strongroom', 'images');
  const node = await resolveNode(options.nodeBinary ?? join(repoRoot, 'node_modules', 'node', 'bin', 'node'));
  const lockFile = join(repoRoot, 'package-lock.json');
  if (!existsSync(lockFile)) throw new AppImageError(`${repoRoot} has no package-lock.json`);
  const packages = await productionPackages(repoRoot);
  const addons = packages.flatMap((p) => nativeAddons(p));
  const libraries = await sharedLibraries([node.path, ...addons]);
  const files = appFiles(repoRoot);

  const key = sha256(
    JSON.stringify({
      builder: BUILDER_VERSION,
      tag: options.tag ?? null,
      node: { path: node.path, version: node.version, size: statSync(node.path).size },
      libraries: libraries.map((l) => [l, statSync(l).size]),
      lock: sha256(readFileSync(lockFile)),
      packages: packages.map((p) => relative(repoRoot, p)),
      files: files.map((f) => [f, sha256(readFileSync(join(repoRoot, f)))]),
      // How the sidecar is bundled (esbuild's version is in the lock file).
      bundler: sha256(readFileSync(fileURLToPath(new URL('./sidecar-bundle.ts', import.meta.url)))),
    }),
  );
  const tag = options.tag ?? key.slice(0, 12);
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag))
    throw new AppImageError(`not a valid image tag: ${tag}`);
  const ref = `${APP_IMAGE_NAME}:${tag}`;
  const archive = join(cacheDir, `strongroom-${key.slice(0, 24)}.tar`);
  if (existsSync(archive)) {
    log(`app image: ${ref} from the cache (${archive})`);
    return { archive, ref, cached: true };
  }

  const started = Date.now();
  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, '.build-'));
  try {
    const rootfs = join(work, 'rootfs');
    for (const d of ['usr/local/bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'home/nonroot', 'app'])
      mkdirSync(join(rootfs, d), { recursive: true });
    chmodSync(join(rootfs, 'tmp'), 0o1777);
    copyFileSync(node.path, join(rootfs, IMAGE_NODE_PATH));
    chmodSync(join(rootfs, IMAGE_NODE_PATH), 0o755);
    // Each library at the path ldd names (the loader at the ELF interpreter path), as a regular file.
    for (const lib of libraries) {
      mkdirSync(join(rootfs, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(rootfs, lib));
    }
    writeFileSync(
      join(rootfs, 'etc', 'passwd'),
      `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${String(IMAGE_UID)}:${String(IMAGE_UID)}:nonroot:/home/nonroot:/sbin/nologin\n`,
    );
    writeFileSync(join(rootfs, 'etc', 'group'), `root:x:0:\nnonroot:x:${String(IMAGE_UID)}:\n`);
    const app = join(rootfs, IMAGE_APP_DIR);
    for (const f of files) {
      mkdirSync(join(app, dirname(f)), { recursive: true });
      copyFileSync(join(repoRoot, f), join(app, f));
    }
    // The sidecar as one ESM file and its segment worker (they read /app/proto at run time, copied above). A
    // repository without the sidecar's sources (the tests' small ones) has nothing to bundle.
    if (existsSync(join(repoRoot, 'sidecar', 'main.ts'))) {
      try {
        await bundleSidecar({ repoRoot, appDir: app });
      } catch (error) {
        throw new AppImageError(`bundling the sidecar for ${ref} failed`, { cause: error });
      }
    }
    // A package's own files; its nested node_modules hold packages that npm lists (and this loop copies) on their own.
    for (const p of packages) {
      const nested = join(p, 'node_modules');
      cpSync(p, join(app, relative(repoRoot, p)), {
        recursive: true,
        verbatimSymlinks: true,
        filter: (source) => source !== nested,
      });
    }
    // Readable by the image's user whatever the modes in the working tree; writable by nobody but root.
    await mustRun('chmod', ['-R', 'u+rwX,go+rX,go-w', app], 'chmod');

    const partial = join(work, 'image.tar');
    await writeImageArchive(rootfs, ref, partial, {
      entrypoint: [IMAGE_NODE_PATH],
      cmd: [`${IMAGE_APP_DIR}/operator/main.ts`],
      user: `${String(IMAGE_UID)}:${String(IMAGE_UID)}`,
      workingDir: IMAGE_APP_DIR,
    });
    renameSync(partial, archive);
  } catch (error) {
    throw error instanceof AppImageError
      ? error
      : new AppImageError(`building ${ref} failed: ${String(error)}`, { cause: error });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const mib = statSync(archive).size / 2 ** 20;
  log(
    `app image: built ${ref} in ${((Date.now() - started) / 1000).toFixed(1)} s, ${mib.toFixed(0)} MiB (${archive})`,
  );
  pruneCache(cacheDir, archive);
  return { archive, ref, cached: false };
}

/** Keeps the newest {@link CACHE_KEEP} archives (always the one just built): each is a few hundred MiB. */
function pruneCache(cacheDir: string, keep: string): void {
  const archives = readdirSync(cacheDir)
    .filter((n) => /^strongroom-[0-9a-f]+\.tar$/.test(n))
    .map((n) => join(cacheDir, n))
    .filter((p) => p !== keep)
    .map((p) => ({ p, mtime: statSync(p).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const { p } of archives.slice(CACHE_KEEP - 1)) rmSync(p, { force: true });
}
