/**
 * The layout the Dockerfile describes, read from its text, and its comparison with an image (docs/images.md).
 *
 * {@link expectedLayout} parses the Dockerfile: the final stage's `FROM scratch`, its `COPY` lines (the build
 * context filtered by .dockerignore, `--from=build /rootfs/` and `--from=bundle`), `ENV`, `USER`, `WORKDIR`,
 * `ENTRYPOINT` and `CMD`; and the build stage's root-filesystem script (`mkdir`, `chmod`, `cp` of Node and of the
 * production node_modules, the ldd loops, the `printf`s of /etc/passwd and /etc/group, `rm`). A line of that script
 * it does not understand is a problem, not something it skips, so the script cannot grow a step the comparison does
 * not see. What the Dockerfile would take from its base image or from `npm ci` is taken from this machine through
 * {@link LayoutSources}: the project's Node binary, the production packages `npm ls --omit=dev` lists, the libraries
 * `ldd` lists, a sidecar bundle built from this repository.
 *
 * {@link compareLayout} then lists every difference with an image read by archive.ts: the run configuration, every
 * path (in one and not the other, of another type, owner, mode or content), and any shell.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import type { ImageEntry, ImageRunConfig, ImageView } from './archive.ts';

// ---------------------------------------------------------------------------------------------------------------
// The Dockerfile's syntax.

export interface Instruction {
  /** Upper case: FROM, RUN, COPY… */
  readonly keyword: string;
  /** The rest of the logical line, continuations joined. */
  readonly args: string;
  /** The bodies of the instruction's here-documents, in order. */
  readonly heredocs: readonly string[];
  /** The 1-based line the instruction starts on. */
  readonly line: number;
}

export interface Stage {
  readonly name: string | undefined;
  /** The base image, global ARGs expanded. */
  readonly base: string;
  readonly instructions: readonly Instruction[];
}

/** Replaces `$NAME` and `${NAME}` with known values; unknown names are left as they are. */
function expandVars(text: string, vars: ReadonlyMap<string, string>): string {
  return text.replace(
    /\$\{(\w+)\}|\$(\w+)/g,
    (whole, a: string | undefined, b: string | undefined) => vars.get(a ?? b ?? '') ?? whole,
  );
}

/** The stages of a Dockerfile: comments and parser directives dropped, continuations and here-documents read. */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.split('\n');
  const globalArgs = new Map<string, string>();
  const stages: { name: string | undefined; base: string; instructions: Instruction[] }[] = [];
  let i = 0;
  while (i < lines.length) {
    const start = i + 1;
    let logical = lines[i++] ?? '';
    if (logical.trim() === '' || logical.trim().startsWith('#')) continue;
    while (logical.endsWith('\\') && i < lines.length) {
      const next = lines[i++] ?? '';
      if (next.trim().startsWith('#')) {
        logical = `${logical}\\`.slice(0, -1);
        continue;
      }
      logical = logical.slice(0, -1) + next;
    }
    const match = /^\s*(\w+)\s*(.*)$/.exec(logical);
    if (!match) throw new Error(`Dockerfile line ${String(start)}: not an instruction: ${logical}`);
    const keyword = (match[1] ?? '').toUpperCase();
    const args = (match[2] ?? '').trim();
    const heredocs: string[] = [];
    for (const h of args.matchAll(/<<(-?)(['"]?)(\w+)\2/g)) {
      const strip = h[1] === '-';
      const delimiter = h[3] ?? '';
      const body: string[] = [];
      while (i < lines.length) {
        const line = lines[i++] ?? '';
        if ((strip ? line.replace(/^\t+/, '') : line) === delimiter) break;
        body.push(strip ? line.replace(/^\t+/, '') : line);
      }
      heredocs.push(`${body.join('\n')}\n`);
    }
    const instruction = { keyword, args, heredocs, line: start };
    if (keyword === 'FROM') {
      const words = args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const as = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({
        name: as === -1 ? undefined : words[as + 1],
        base: expandVars(words[0] ?? '', globalArgs),
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`Dockerfile line ${String(start)}: ${keyword} before FROM`);
      const [name, value] = args.split('=', 2);
      globalArgs.set(name ?? '', value ?? '');
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** Shell words of one line: quotes removed, `$var` expanded where known, `$(…)` kept as written. */
export function shellWords(line: string, vars: ReadonlyMap<string, string>): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i] ?? '';
    if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      word += line.slice(i + 1, end === -1 ? undefined : end);
      i = end === -1 ? line.length : end + 1;
    } else if (c === '"') {
      let end = i + 1;
      let depth = 0;
      while (end < line.length && (line[end] !== '"' || depth > 0)) {
        if (line.startsWith('$(', end)) depth++;
        else if (line[end] === ')' && depth > 0) depth--;
        end++;
      }
      word += expandVars(line.slice(i + 1, end), vars);
      i = end + 1;
    } else if (line.startsWith('$(', i)) {
      let end = i + 2;
      let depth = 1;
      while (end < line.length && depth > 0) {
        if (line[end] === '(') depth++;
        else if (line[end] === ')') depth--;
        end++;
      }
      word += line.slice(i, end);
      i = end;
    } else if (c === '$') {
      const m = /^\$\{?(\w+)\}?/.exec(line.slice(i));
      word += m ? expandVars(m[0], vars) : '$';
      i += m ? m[0].length : 1;
    } else if (c === '\\') {
      word += line[i + 1] ?? '';
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

// ---------------------------------------------------------------------------------------------------------------
// .dockerignore, with Docker's semantics: patterns relative to the context, `**` for any number of directories, a
// pattern that matches a directory matches everything under it, the last matching pattern decides.

export type IgnoreMatcher = (relPath: string) => boolean;

function patternRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*' && pattern[i + 1] === '*') {
      i++;
      if (pattern[i + 1] === '/') {
        i++;
        re += '(?:.*/)?';
      } else {
        re += '.*';
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function parseDockerignore(text: string): IgnoreMatcher {
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const body = posix.normalize((negate ? l.slice(1) : l).trim().replace(/^\/+/, ''));
      return { negate, re: patternRegExp(body) };
    });
  return (relPath) => {
    const parts = relPath.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const p of patterns) if (candidates.some((c) => p.re.test(c))) excluded = !p.negate;
    return excluded;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The build stage's root-filesystem script.

export interface RootfsScript {
  /** Directories made (`mkdir -p`), absolute inside the image. */
  readonly dirs: string[];
  /** Modes set with `chmod`. */
  readonly modes: Map<string, number>;
  /** Where Node (`$node`) is copied. */
  node: string | undefined;
  /** Where the build stage's node_modules (`$modules`) is copied, with `cp -a`. */
  nodeModules: string | undefined;
  /** The build stage's node_modules directory (`$modules`). */
  modulesSource: string | undefined;
  /** Whose libraries the ldd loop collects: `node`, `addons` (the `*.node` files under `$modules`). */
  libraryBinaries: string[];
  /** Whether the collected libraries are copied, dereferenced, to the path ldd names. */
  librariesAtTheirPath: boolean;
  /** Files written with `printf`, and their content. */
  readonly files: Map<string, string>;
  /** Paths removed with `rm -rf`. */
  readonly removed: string[];
  /** Directories under which every `node_modules/.bin` is removed. */
  readonly binDirsRemovedUnder: string[];
  /** Lines not understood, or understood as something the comparison cannot follow. */
  readonly problems: string[];
}

function printfText(format: string): string | undefined {
  if (/%[^%]/.test(format)) return undefined;
  return format.replace(/\\n/g, '\n').replace(/\\t/g, '\t').replace(/%%/g, '%').replace(/\\\\/g, '\\');
}

/** Reads the script that assembles the runtime root filesystem under `rootfsDir` (`/rootfs`). */
export function readRootfsScript(script: string, rootfsDir: string): RootfsScript {
  const out: RootfsScript = {
    dirs: [],
    modes: new Map(),
    node: undefined,
    nodeModules: undefined,
    modulesSource: undefined,
    libraryBinaries: [],
    librariesAtTheirPath: false,
    files: new Map(),
    removed: [],
    binDirsRemovedUnder: [],
    problems: [],
  };
  const vars = new Map<string, string>();
  /** The image path of a path under the root filesystem, or undefined for a path outside it. */
  const inImage = (p: string): string | undefined => {
    const root = vars.get('rootfs');
    if (root === undefined || (p !== root && !p.startsWith(`${root}/`))) return undefined;
    return posix.normalize(`/${p.slice(root.length)}`).replace(/(.)\/$/, '$1');
  };
  const lines = script
    .replace(/\\\n/g, '')
    .split('\n')
    .map((l) => l.trim());
  let scratchList: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '' || line.startsWith('#')) continue;
    const words = shellWords(line, vars);
    const [cmd, ...rest] = words;
    const problem = (why: string): void => {
      out.problems.push(`rootfs script: ${why}: ${line}`);
    };
    if (/^set -[eux]+$/.test(line)) continue;
    if (words.every((w) => /^\w+=/.test(w))) {
      for (const w of words) vars.set(w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1));
      if (vars.get('rootfs') !== rootfsDir)
        problem(`the script's $rootfs is not ${rootfsDir}, the directory the final stage copies`);
      continue;
    }
    // A block: `for … do` or `while … do`, up to its `done`.
    if (/^(for|while) .*; do$/.test(line)) {
      const body: string[] = [];
      let depth = 1;
      let end = i + 1;
      for (; end < lines.length; end++) {
        const l = lines[end] ?? '';
        if (/^(for|while) .*; do$/.test(l)) depth++;
        if (/^done\b/.test(l) && --depth === 0) break;
        body.push(l);
      }
      const done = lines[end] ?? '';
      i = end;
      if (cmd === 'for' && rest[0] === 'binary' && rest[1] === 'in') {
        const list = rest.slice(2).join(' ').replace(/; do$/, '');
        const binaries: string[] = [];
        for (const item of shellWords(list.replace(/;$/, ''), vars)) {
          if (item === vars.get('node')) binaries.push('node');
          else if (
            item.startsWith('$(find ') &&
            item.includes(`"$modules"`) &&
            /-type f -name '\*\.node'/.test(item)
          )
            binaries.push('addons');
          else problem(`the ldd loop runs over something the comparison does not know (${item})`);
        }
        const ldd = body.find((l) => /^ldd "\$binary" > (\S+)$/.test(l));
        const refuses =
          body.some((l) => l.includes("'not found'")) && body.some((l) => /^exit [1-9]/.test(l));
        const appended = body.map((l) => /^awk .*>> (\S+)$/.exec(l)?.[1]).find((f) => f !== undefined);
        if (ldd === undefined || !refuses || appended === undefined)
          problem(
            'the ldd loop does not run ldd on each binary, refuse a missing library and list the paths',
          );
        out.libraryBinaries.push(...binaries);
        scratchList = appended;
      } else if (cmd === 'while' && /^while read -r lib; do$/.test(line)) {
        const from = /^done < (\S+)$/.exec(done)?.[1];
        const copies = body.some(
          (l) => shellWords(l, vars).join(' ') === `cp -L $lib ${vars.get('rootfs') ?? ''}$lib`,
        );
        const makesDir = body.some((l) => l.startsWith('mkdir -p'));
        if (from === undefined || from !== scratchList || !copies || !makesDir || body.length !== 2)
          problem('the library loop does not copy each listed library, dereferenced, to the path ldd names');
        else out.librariesAtTheirPath = true;
      } else {
        problem('a loop the comparison does not know');
      }
      continue;
    }
    if (cmd === ':' && rest[0] === '>' && rest[1] !== undefined && inImage(rest[1]) === undefined) continue;
    if (cmd === 'sort' && rest[0] === '-u' && rest[1] === '-o' && rest[2] === scratchList) continue;
    if (cmd === 'mkdir' && rest[0] === '-p') {
      for (const d of rest.slice(1)) {
        const p = inImage(d);
        if (p === undefined) problem(`mkdir outside the root filesystem (${d})`);
        else out.dirs.push(p);
      }
      continue;
    }
    if (cmd === 'chmod' && rest.length === 2 && /^[0-7]{3,4}$/.test(rest[0] ?? '')) {
      const p = inImage(rest[1] ?? '');
      if (p === undefined) problem('chmod outside the root filesystem');
      else out.modes.set(p, parseInt(rest[0] ?? '', 8));
      continue;
    }
    if (cmd === 'cp') {
      const flags = rest.filter((w) => w.startsWith('-'));
      const [source, dest, extra] = rest.filter((w) => !w.startsWith('-'));
      const target = inImage(dest ?? '');
      if (target === undefined || extra !== undefined) problem('a copy the comparison does not know');
      else if (source === vars.get('node') && flags.length === 0) out.node = target;
      else if (source === vars.get('modules') && flags.join(' ') === '-a') {
        out.nodeModules = target;
        out.modulesSource = source;
      } else problem('a copy of something the comparison does not know');
      continue;
    }
    if (cmd === 'printf' && rest.length === 3 && rest[1] === '>') {
      const text = printfText(rest[0] ?? '');
      const target = inImage(rest[2] ?? '');
      if (text === undefined || target === undefined) problem('a printf the comparison does not know');
      else out.files.set(target, text);
      continue;
    }
    if (cmd === 'rm' && rest[0] === '-rf') {
      for (const r of rest.slice(1)) {
        const p = inImage(r);
        if (p === undefined) problem(`rm outside the root filesystem (${r})`);
        else out.removed.push(p);
      }
      continue;
    }
    if (
      cmd === 'find' &&
      words.slice(2).join(' ') === '-depth -path */node_modules/.bin -type d -exec rm -rf {} +' &&
      inImage(rest[0] ?? '') !== undefined
    ) {
      out.binDirsRemovedUnder.push(inImage(rest[0] ?? '') ?? '');
      continue;
    }
    problem('not understood');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The expected layout.

/** What the Dockerfile takes from outside its text, as this machine has it. */
export interface LayoutSources {
  /** The build context: what the final stage's COPY lines without --from read (.dockerignore applied here). */
  readonly contextRoot: string;
  /** The repository whose node_modules stands for the build stage's `npm ci --omit=dev`. */
  readonly repoRoot: string;
  /** The Node binary that stands for the base image's `/usr/local/bin/node`. */
  readonly nodeBinary: string;
  /** Its version, `v24.x.y`. */
  readonly nodeVersion: string;
  /** The Debian release the libraries come from (`VERSION_CODENAME`, e.g. bookworm). */
  readonly debianCodename: string;
  /** The production package directories, relative to repoRoot (`node_modules/winston`), as `npm ls --omit=dev` lists them. */
  readonly productionPackages: readonly string[];
  /** The libraries ldd lists for Node and the production native addons: absolute paths on this machine. */
  readonly libraries: readonly string[];
  /** A directory that holds what the bundle stage's sidecar-bundle.ts run writes under its application directory. */
  readonly bundleDir: string;
}

type Source =
  | { readonly kind: 'dir' }
  | { readonly kind: 'file'; readonly file: string }
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'symlink'; readonly target: string }
  /** Present, of this type; its content and anything under it not compared. */
  | { readonly kind: 'unchecked'; readonly type: 'dir' | 'file' };

export interface ExpectedEntry {
  readonly path: string;
  readonly source: Source;
  readonly uid: number;
  readonly gid: number;
  /** Set when the Dockerfile sets it (chmod). */
  readonly mode?: number;
  /** Which line of the Dockerfile puts it there. */
  readonly why: string;
}

export interface ExpectedLayout {
  readonly config: ImageRunConfig;
  readonly entries: ReadonlyMap<string, ExpectedEntry>;
  /** What cannot be compared, or differs from the daemonless build by construction. */
  readonly problems: readonly string[];
}

function parseFlags(args: string): { flags: Map<string, string>; rest: string[] } {
  const words = args.split(/\s+/).filter((w) => w !== '');
  const flags = new Map<string, string>();
  while (words[0]?.startsWith('--')) {
    const w = words.shift() ?? '';
    const eq = w.indexOf('=');
    flags.set(eq === -1 ? w.slice(2) : w.slice(2, eq), eq === -1 ? '' : w.slice(eq + 1));
  }
  return { flags, rest: words };
}

function execForm(args: string, keyword: string, problems: string[]): string[] {
  try {
    const parsed: unknown = JSON.parse(args);
    if (Array.isArray(parsed) && parsed.every((a) => typeof a === 'string')) return parsed;
  } catch {
    // shell form, below
  }
  problems.push(`${keyword} is in shell form (${args}): it needs /bin/sh, which the image must not have`);
  return ['/bin/sh', '-c', args];
}

export function expectedLayout(
  dockerfileText: string,
  dockerignoreText: string,
  sources: LayoutSources,
): ExpectedLayout {
  const problems: string[] = [];
  const entries = new Map<string, ExpectedEntry>();
  const stages = parseDockerfile(dockerfileText);
  const final = stages.at(-1);
  if (final === undefined) throw new Error('the Dockerfile has no stage');
  if (final.base !== 'scratch') problems.push(`the final stage is FROM ${final.base}, not FROM scratch`);
  const ignored = parseDockerignore(dockerignoreText);

  const add = (
    path: string,
    source: Source,
    why: string,
    owner: { uid: number; gid: number },
    mode?: number,
  ): void => {
    const p = posix.normalize(path).replace(/(.)\/$/, '$1');
    // Parent directories: created by the copy, root-owned.
    const parts = p.split('/').filter((x) => x !== '');
    for (let i = 0; i < parts.length; i++) {
      const parent = `/${parts.slice(0, i).join('/')}`;
      if (!entries.has(parent))
        entries.set(parent, { path: parent, source: { kind: 'dir' }, uid: 0, gid: 0, why: `parent of ${p}` });
    }
    const old = entries.get(p);
    entries.set(p, {
      path: p,
      source: source.kind === 'dir' && old ? old.source : source,
      ...owner,
      ...(mode !== undefined ? { mode } : old?.mode !== undefined ? { mode: old.mode } : {}),
      why,
    });
  };
  const remove = (path: string): void => {
    for (const p of [...entries.keys()]) if (p === path || p.startsWith(`${path}/`)) entries.delete(p);
  };

  /** A host directory tree copied to dest: files by content, links by target, directories as they are. */
  const addTree = (
    hostDir: string,
    dest: string,
    why: string,
    owner: { uid: number; gid: number },
    keep: (hostPath: string, isDir: boolean) => boolean,
  ): void => {
    add(dest, { kind: 'dir' }, why, owner);
    for (const e of readdirSync(hostDir, { withFileTypes: true })) {
      const host = join(hostDir, e.name);
      const target = `${dest}/${e.name}`;
      if (!keep(host, e.isDirectory())) continue;
      if (e.isDirectory()) addTree(host, target, why, owner, keep);
      else if (e.isSymbolicLink()) add(target, { kind: 'symlink', target: readlinkSync(host) }, why, owner);
      else if (e.isFile()) add(target, { kind: 'file', file: host }, why, owner);
    }
  };

  // The base image of the stages that build the root filesystem stands for this machine's Node and Debian.
  for (const stage of stages.slice(0, -1)) {
    const tag = /^node:(\d+)(?:[.-][\w.-]*)?$/.exec(stage.base);
    if (tag === null) {
      problems.push(`stage ${stage.name ?? '?'} is FROM ${stage.base}, not an official node image`);
      continue;
    }
    if (`v${tag[1] ?? ''}` !== sources.nodeVersion.split('.')[0])
      problems.push(
        `stage ${stage.name ?? '?'} is FROM ${stage.base}, but the daemonless image has Node ${sources.nodeVersion}`,
      );
    if (!stage.base.includes(`-${sources.debianCodename}`))
      problems.push(
        `stage ${stage.name ?? '?'} is FROM ${stage.base}, but the daemonless image's libraries come from Debian ${sources.debianCodename}`,
      );
  }

  const env: string[] = [];
  let user = '';
  let workingDir = '/';
  let entrypoint: string[] | null = null;
  let cmd: string[] | null = null;
  for (const ins of final.instructions) {
    const at = `Dockerfile line ${String(ins.line)}: ${ins.keyword} ${ins.args.split('\n')[0] ?? ''}`;
    switch (ins.keyword) {
      case 'ENV': {
        const words = shellWords(ins.args, new Map());
        const pairs = words.every((w) => w.includes('='))
          ? words.map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)] as const)
          : [[words[0] ?? '', words.slice(1).join(' ')] as const];
        for (const [k, v] of pairs) {
          const i = env.findIndex((e) => e.startsWith(`${k}=`));
          if (i === -1) env.push(`${k}=${v}`);
          else env[i] = `${k}=${v}`;
        }
        break;
      }
      case 'USER':
        user = ins.args;
        break;
      case 'WORKDIR':
        workingDir = posix.resolve(workingDir, ins.args);
        add(workingDir, { kind: 'dir' }, at, { uid: 0, gid: 0 });
        break;
      case 'ENTRYPOINT':
        entrypoint = execForm(ins.args, 'ENTRYPOINT', problems);
        break;
      case 'CMD':
        cmd = execForm(ins.args, 'CMD', problems);
        break;
      case 'COPY':
        copy(ins, at);
        break;
      default:
        problems.push(
          `${at}: the comparison does not know what this does to the image (scratch has no shell)`,
        );
    }
  }

  function copy(ins: Instruction, at: string): void {
    const { flags, rest } = parseFlags(ins.args);
    const dest = rest.at(-1) ?? '';
    const srcs = rest.slice(0, -1);
    const chown = flags.get('chown');
    const [u, g] = (chown ?? '0:0').split(':');
    const owner = { uid: Number(u), gid: Number(g ?? u) };
    if (flags.has('chmod')) problems.push(`${at}: --chmod is not compared`);
    const from = flags.get('from');
    if (from !== undefined) {
      const stage = stages.find((s) => s.name === from);
      if (stage === undefined) {
        problems.push(`${at}: no stage ${from}`);
        return;
      }
      for (const src of srcs) copyFromStage(stage, src, dest, at, owner);
      return;
    }
    for (const src of srcs) {
      const rel = posix.normalize(src).replace(/\/$/, '');
      if (ignored(rel)) {
        problems.push(`${at}: ${src} is not in the build context (.dockerignore)`);
        continue;
      }
      const host = join(sources.contextRoot, rel);
      let isDir: boolean;
      try {
        isDir = statSync(host).isDirectory();
      } catch {
        problems.push(`${at}: ${src} does not exist in the build context`);
        continue;
      }
      if (isDir) {
        addTree(
          host,
          posix.resolve(workingDir, dest),
          at,
          owner,
          (h) => !ignored(posix.relative(sources.contextRoot, h)),
        );
      } else {
        const target = dest.endsWith('/') ? `${dest}${basename(rel)}` : dest;
        add(posix.resolve(workingDir, target), { kind: 'file', file: host }, at, owner);
      }
    }
  }

  function copyFromStage(
    stage: Stage,
    src: string,
    dest: string,
    at: string,
    owner: { uid: number; gid: number },
  ): void {
    const srcDir = src.replace(/\/$/, '');
    // The root filesystem the build stage assembles with its script.
    const script = stage.instructions
      .flatMap((i) => (i.keyword === 'RUN' ? i.heredocs : []))
      .find((h) => h.includes(`rootfs=${srcDir}`));
    if (script !== undefined) {
      if (dest !== '/') problems.push(`${at}: the root filesystem is copied to ${dest}, not /`);
      applyRootfs(stage, readRootfsScript(script, srcDir), at);
      return;
    }
    // The sidecar bundle: `node test/cluster/sidecar-bundle.ts <dir>` writes under <dir>.
    const bundleRun = stage.instructions.find(
      (i) => i.keyword === 'RUN' && /^node test\/cluster\/sidecar-bundle\.ts \S+$/.test(i.args),
    );
    const bundleRoot = bundleRun?.args.split(/\s+/)[2];
    if (bundleRoot !== undefined && (srcDir === bundleRoot || srcDir.startsWith(`${bundleRoot}/`))) {
      const local = join(sources.bundleDir, srcDir.slice(bundleRoot.length));
      addTree(local, dest.replace(/\/$/, ''), at, owner, () => true);
      return;
    }
    problems.push(`${at}: the comparison does not know what stage ${stage.name ?? '?'} has at ${src}`);
  }

  function applyRootfs(stage: Stage, script: RootfsScript, at: string): void {
    problems.push(...script.problems);
    const root = { uid: 0, gid: 0 };
    for (const d of script.dirs) add(d, { kind: 'dir' }, `${at} (mkdir -p ${d})`, root);
    if (script.node === undefined) problems.push('rootfs script: Node is not copied');
    else add(script.node, { kind: 'file', file: sources.nodeBinary }, `${at} (cp "$node")`, root);
    if (script.nodeModules === undefined || script.modulesSource === undefined) {
      problems.push('rootfs script: node_modules is not copied');
    } else {
      // npm ci --omit=dev in the build stage: the production packages, and npm's own .bin and .package-lock.json.
      const workdir = stage.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args;
      const install = stage.instructions.find((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
      if (install === undefined || !/--omit=dev\b/.test(install.args))
        problems.push(
          `rootfs script: ${script.modulesSource} is not from npm ci --omit=dev (production packages only)`,
        );
      if (workdir === undefined || `${workdir}/node_modules` !== script.modulesSource)
        problems.push(
          `rootfs script: ${script.modulesSource} is not the node_modules npm ci wrote (in ${workdir ?? '?'})`,
        );
      const dest = script.nodeModules;
      const why = `${at} (cp -a "$modules")`;
      add(dest, { kind: 'dir' }, why, root);
      for (const pkg of sources.productionPackages) {
        const host = join(sources.repoRoot, pkg);
        const nested = join(host, 'node_modules');
        addTree(host, `${dest}/${pkg.slice('node_modules/'.length)}`, why, root, (h) => h !== nested);
      }
      add(
        `${dest}/.package-lock.json`,
        { kind: 'unchecked', type: 'file' },
        `${why}: npm's hidden lock file`,
        root,
      );
      // npm links the packages' programs into .bin, at the top and in every nested node_modules that has some.
      add(`${dest}/.bin`, { kind: 'unchecked', type: 'dir' }, `${why}: npm's .bin`, root);
      for (const pkg of sources.productionPackages) {
        const bin = join(sources.repoRoot, pkg, 'node_modules', '.bin');
        if (statSync(bin, { throwIfNoEntry: false })?.isDirectory())
          add(
            `${dest}/${pkg.slice('node_modules/'.length)}/node_modules/.bin`,
            { kind: 'unchecked', type: 'dir' },
            `${why}: npm's .bin`,
            root,
          );
      }
    }
    if (script.libraryBinaries.join(',') !== 'node,addons')
      problems.push(
        `rootfs script: the libraries are those of ${script.libraryBinaries.join(' and ') || 'nothing'}; the daemonless build takes those of node and the native addons`,
      );
    if (!script.librariesAtTheirPath)
      problems.push('rootfs script: the libraries are not copied to their path');
    else for (const lib of sources.libraries) add(lib, { kind: 'file', file: lib }, `${at} (ldd)`, root);
    for (const [p, text] of script.files) add(p, { kind: 'text', text }, `${at} (printf > ${p})`, root);
    for (const [p, mode] of script.modes) {
      const e = entries.get(p);
      if (e === undefined) problems.push(`rootfs script: chmod of ${p}, which it does not make`);
      else entries.set(p, { ...e, mode });
    }
    for (const p of script.removed) remove(p);
    for (const under of script.binDirsRemovedUnder)
      for (const p of [...entries.keys()])
        if (p.startsWith(`${under}/`) && p.endsWith('/node_modules/.bin')) remove(p);
  }

  return { config: { user, workingDir, entrypoint, cmd, env }, entries, problems };
}

// ---------------------------------------------------------------------------------------------------------------
// The comparison.

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const hostHashes = new Map<string, string>();
const hostHash = (file: string): string => {
  let h = hostHashes.get(file);
  if (h === undefined) {
    h = sha256(readFileSync(file));
    hostHashes.set(file, h);
  }
  return h;
};
const imageHashes = new WeakMap<ImageEntry, string>();
const imageHash = (entry: ImageEntry): string => {
  let h = imageHashes.get(entry);
  if (h === undefined) {
    h = sha256(entry.data);
    imageHashes.set(entry, h);
  }
  return h;
};

const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'zsh', 'busybox']);

/** Every difference between the layout the Dockerfile describes and an image; empty when they agree. */
export function compareLayout(expected: ExpectedLayout, image: ImageView): string[] {
  const diffs = [...expected.problems];
  const want = expected.config;
  const got = image.config;
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  if (want.user !== got.user) diffs.push(`USER: the Dockerfile says ${want.user}, the image ${got.user}`);
  if (want.workingDir !== got.workingDir)
    diffs.push(`WORKDIR: the Dockerfile says ${want.workingDir}, the image ${got.workingDir}`);
  if (!same(want.entrypoint, got.entrypoint))
    diffs.push(
      `ENTRYPOINT: the Dockerfile says ${JSON.stringify(want.entrypoint)}, the image ${JSON.stringify(got.entrypoint)}`,
    );
  if (!same(want.cmd, got.cmd))
    diffs.push(`CMD: the Dockerfile says ${JSON.stringify(want.cmd)}, the image ${JSON.stringify(got.cmd)}`);
  if (!same(want.env, got.env))
    diffs.push(`ENV: the Dockerfile says ${JSON.stringify(want.env)}, the image ${JSON.stringify(got.env)}`);

  const typeOf = (s: Source): string =>
    s.kind === 'unchecked' ? s.type : s.kind === 'text' ? 'file' : s.kind;
  const unchecked: string[] = [];
  for (const [path, e] of expected.entries) {
    const have = image.entries.get(path);
    if (have === undefined) {
      diffs.push(`missing from the image: ${path} (${e.why})`);
      continue;
    }
    if (e.source.kind === 'unchecked') unchecked.push(path);
    if (have.type !== typeOf(e.source)) {
      diffs.push(`${path}: a ${typeOf(e.source)} in the Dockerfile, a ${have.type} in the image`);
      continue;
    }
    if (have.uid !== e.uid || have.gid !== e.gid)
      diffs.push(
        `${path}: owned by ${String(e.uid)}:${String(e.gid)} in the Dockerfile, ${String(have.uid)}:${String(have.gid)} in the image`,
      );
    if (e.mode !== undefined && have.mode !== e.mode)
      diffs.push(
        `${path}: mode ${e.mode.toString(8)} in the Dockerfile, ${have.mode.toString(8)} in the image`,
      );
    if (e.mode === undefined && have.type !== 'symlink' && (have.mode & 0o022) !== 0)
      diffs.push(`${path}: mode ${have.mode.toString(8)} in the image, writable by others than root`);
    const s = e.source;
    if (s.kind === 'file' && hostHash(s.file) !== imageHash(have))
      diffs.push(`${path}: content differs from ${s.file} (${e.why})`);
    if (s.kind === 'text' && have.data.toString('utf8') !== s.text)
      diffs.push(
        `${path}: the Dockerfile writes ${JSON.stringify(s.text)}, the image has ${JSON.stringify(have.data.toString('utf8'))}`,
      );
    if (s.kind === 'symlink' && have.linkname !== s.target)
      diffs.push(`${path}: a link to ${s.target} in the Dockerfile, to ${have.linkname} in the image`);
  }
  for (const path of image.entries.keys()) {
    if (expected.entries.has(path) || unchecked.some((u) => path.startsWith(`${u}/`))) continue;
    diffs.push(`in the image but not in the Dockerfile: ${path}`);
  }
  for (const path of image.entries.keys())
    if (SHELLS.has(posix.basename(path))) diffs.push(`the image has a shell: ${path}`);
  return diffs;
}
