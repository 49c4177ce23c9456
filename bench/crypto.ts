/**
 * `npm run bench`: Strongroom's envelope encryption against age, openssl and cp, on one file, from the real disk
 * into tmpfs. Method and results: docs/benchmarks.md.
 *
 *   node bench/crypto.ts [--size 2GiB] [--runs 3] [--json out.json]
 *
 * The same file is also the fresh-process Strongroom "CLI" the harness times:
 *   node bench/crypto.ts --child encrypt|encrypt-nodigest|decrypt <input> <output>   (DEK in STRONGROOM_BENCH_DEK)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { EnvelopeContext } from '../core/envelope/index.ts';
import { writeRandomFile } from './files.ts';
import { statusKiB } from './proc.ts';
import {
  formatSize,
  GiB,
  judge,
  median,
  MiB,
  paddedTable,
  parseSize,
  TARGETS,
  verdictCell,
  type Target,
} from './report.ts';

type Envelope = typeof import('../core/envelope/index.ts');

const SELF = fileURLToPath(import.meta.url);
const CONTEXT: EnvelopeContext = { artifactUid: 'bench', artifactName: 'bench', version: '1', path: '' };
const DEK_ENV = 'STRONGROOM_BENCH_DEK';
/** The envelope module to measure (default core/envelope; --envelope points at a patched copy to compare). */
const ENVELOPE_ENV = 'STRONGROOM_BENCH_ENVELOPE';
const DEFAULT_ENVELOPE = fileURLToPath(new URL('../core/envelope/index.ts', import.meta.url));

async function loadEnvelope(path: string): Promise<Envelope> {
  return (await import(pathToFileURL(resolve(path)).href)) as Envelope;
}
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

type Operation = 'encrypt' | 'decrypt' | 'copy';
/** `process`: a fresh `node` per file; `.ts` runs the source (type stripping), `.js` the build (as deployed). */
type Mode = 'process' | 'process .ts' | 'process .js' | 'warm pool';

interface Sample {
  readonly seconds: number;
  /** Peak RSS of the process doing the work, KiB; in-process samples include the harness. */
  readonly rssKiB: number | null;
}

interface Case {
  readonly tool: string;
  readonly operation: Operation;
  readonly mode: Mode;
  /** Shown after the operation ("digest off"). */
  readonly variant: string;
  /** Performs the operation into `output` (a fresh path in tmpfs) and returns its sample. */
  readonly run: (output: string) => Promise<Sample & { digest?: string | null }>;
  readonly samples: Sample[];
}

/** One target's outcome in the JSON (and the `targets:` lines). */
interface TargetResult {
  readonly name: string;
  readonly value: number;
  readonly threshold: number;
  readonly unit: string;
  readonly pass: boolean;
  readonly informational: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// The fresh-process Strongroom CLI: create a pool, do one file, exit.

async function childMain(argv: string[]): Promise<void> {
  const [op, input, output] = argv;
  const hex = process.env[DEK_ENV];
  if (!op || !input || !output || !hex)
    throw new Error(`usage: crypto.ts --child <op> <in> <out>, ${DEK_ENV}`);
  const { SegmentPool, decryptFile, encryptFile } = await loadEnvelope(
    process.env[ENVELOPE_ENV] ?? DEFAULT_ENVELOPE,
  );
  const dek = Buffer.from(hex, 'hex');
  const pool = new SegmentPool();
  try {
    if (op === 'decrypt') {
      await decryptFile(input, output, { dek, context: CONTEXT, pool });
      process.stdout.write('{}\n');
    } else {
      const r = await encryptFile(input, output, {
        dek,
        keyId: 'bench',
        context: CONTEXT,
        pool,
        digest: op !== 'encrypt-nodigest',
      });
      process.stdout.write(`${JSON.stringify({ digest: r.digest })}\n`);
    }
  } finally {
    dek.fill(0);
    await pool.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function command(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return `unavailable (${r.error.message})`;
  return `${r.stdout}${r.stderr}`.trim();
}

/** Streams a file through SHA-256 with one reused buffer (a read stream's fresh chunks would inflate our RSS). */
async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(4 * MiB);
  const handle = await open(path, 'r');
  try {
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return `sha256:${hash.digest('hex')}`;
}

function residentPercent(path: string, size: number): number | null {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return (100 * Number(r.stdout.trim())) / size;
}

// ---------------------------------------------------------------------------------------------------------------
// Children: timed from spawn to exit, peak RSS from /usr/bin/time (or /proc/<pid>/status polling without it).

const running = new Set<ChildProcess>();
const HAVE_TIME = spawnSync('sh', ['-c', 'command -v /usr/bin/time'], { encoding: 'utf8' }).status === 0;

async function timeChild(
  workdir: string,
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Sample & { stdout: string }> {
  const rssFile = join(workdir, 'time-rss.txt');
  const [file, argv] = HAVE_TIME
    ? ['/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args]]
    : [cmd, [...args]];
  const start = process.hrtime.bigint();
  // Own process group, so an interrupted run can kill the tool and /usr/bin/time together.
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let polled: number | null = null;
  const poll = HAVE_TIME
    ? null
    : setInterval(() => {
        const v = child.pid === undefined ? null : statusKiB('VmHWM', child.pid);
        if (v !== null) polled = Math.max(polled ?? 0, v);
      }, 5);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  running.delete(child);
  if (poll) clearInterval(poll);
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
  let rssKiB: number | null = polled;
  if (HAVE_TIME) {
    const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
    rssKiB = Number(lines[lines.length - 1]);
    rmSync(rssFile, { force: true });
  }
  return { seconds, rssKiB, stdout };
}

/** Runs `fn` in this process; peak RSS via /proc/self/clear_refs (resets VmHWM), so it includes the harness. */
async function timeInProcess<T>(fn: () => Promise<T>): Promise<Sample & { result: T }> {
  let canReset = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canReset = false;
  }
  const start = process.hrtime.bigint();
  const result = await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { seconds, rssKiB: canReset ? statusKiB('VmHWM') : null, result };
}

// ---------------------------------------------------------------------------------------------------------------
// Setup and cleanup

let workdir: string | null = null;
let shmdir: string | null = null;

function cleanup(): void {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of [shmdir, workdir]) if (dir !== null) rmSync(dir, { recursive: true, force: true });
  shmdir = workdir = null;
}

function checkFs(path: string, wantTmpfs: boolean, need: number, what: string): void {
  const s = statfsSync(path);
  const isRam = s.type === TMPFS_MAGIC || s.type === RAMFS_MAGIC;
  if (wantTmpfs && !isRam) throw new Error(`${path} is not tmpfs (type 0x${s.type.toString(16)}); ${what}`);
  if (!wantTmpfs && isRam)
    throw new Error(`${path} is tmpfs/ramfs, not a disk; set TMPDIR to a directory on a real disk (${what})`);
  const free = s.bavail * s.bsize;
  if (free < need)
    throw new Error(
      `${path} has ${formatSize(free)} free, the benchmark needs ${formatSize(need)} (${what})`,
    );
}

/** The JavaScript CLI: the same as `--child`, without type stripping. */
const BUILT_CLI = `import { SegmentPool, decryptFile, encryptFile } from './index.js';
const [op, input, output] = process.argv.slice(2);
const dek = Buffer.from(process.env.${DEK_ENV}, 'hex');
const context = ${JSON.stringify(CONTEXT)};
const pool = new SegmentPool();
try {
  if (op === 'decrypt') {
    await decryptFile(input, output, { dek, context, pool });
    process.stdout.write('{}\\n');
  } else {
    const r = await encryptFile(input, output, { dek, keyId: 'bench', context, pool, digest: op !== 'encrypt-nodigest' });
    process.stdout.write(JSON.stringify({ digest: r.digest }) + '\\n');
  }
} finally {
  dek.fill(0);
  await pool.close();
}
`;

/**
 * Compiles the envelope's modules to JavaScript the way the build does (TypeScript, relative `.ts` imports rewritten
 * to `.js`) into `dir`, with the CLI beside them; returns the CLI's path. node_modules is linked for @hpke/core.
 */
async function buildEnvelope(source: string, dir: string): Promise<void> {
  const ts = (await import('typescript')).default;
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
  await symlink(fileURLToPath(new URL('../node_modules', import.meta.url)), join(dir, 'node_modules'), 'dir');
  for (const name of await readdir(source)) {
    if (!name.endsWith('.ts') || name.endsWith('.test.ts') || name.endsWith('.d.ts')) continue;
    const { outputText } = ts.transpileModule(await readFile(join(source, name), 'utf8'), {
      fileName: name,
      compilerOptions: {
        target: ts.ScriptTarget.ES2024,
        module: ts.ModuleKind.ESNext,
        verbatimModuleSyntax: true,
        rewriteRelativeImportExtensions: true,
      },
    });
    await writeFile(join(dir, name.replace(/\.ts$/, '.js')), outputText);
  }
  await writeFile(join(dir, 'cli.mjs'), BUILT_CLI);
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '2GiB' },
      runs: { type: 'string', default: '3' },
      json: { type: 'string' },
      envelope: { type: 'string', default: DEFAULT_ENVELOPE },
    },
    strict: true,
  });
  const size = parseSize(values.size, { min: 64 * MiB });
  const envelopePath = resolve(values.envelope);
  const { SegmentPool, decryptFile, encryptFile, newDek } = await loadEnvelope(envelopePath);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);

  for (const tool of ['age', 'age-keygen', 'openssl', 'cp', 'sync']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not on PATH`);
  }

  // Where things go. Inputs: plaintext + three ciphertexts on disk. Outputs: one at a time in tmpfs, except while
  // an encrypt output is being verified (it is decrypted beside itself): 2 x size.
  const base = tmpdir();
  checkFs(base, false, 4 * size + 256 * MiB, 'plaintext and three ciphertexts');
  checkFs('/dev/shm', true, 2 * size + 256 * MiB, 'one output at a time, two while verifying an encryption');
  const memAvailable = Number(
    /^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0,
  );
  if (memAvailable * 1024 < 6 * size + GiB)
    log(
      `warning: MemAvailable ${formatSize(memAvailable * 1024)} may not hold the inputs in the page cache plus ` +
        `the tmpfs outputs (${formatSize(6 * size)}); results would include disk reads`,
    );
  workdir = mkdtempSync(join(base, 'strongroom-bench-'));
  shmdir = mkdtempSync('/dev/shm/strongroom-bench-');
  const work = workdir;
  const shm = shmdir;

  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    nproc: availableParallelism(),
    memTotalGiB: Number(
      (Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / MiB).toFixed(1),
    ),
    kernel: release(),
    node: process.version,
    nodeOpenssl: process.versions.openssl,
    age: command('age', ['--version']),
    openssl: command('openssl', ['version']),
    cp: command('cp', ['--version']).split('\n')[0] ?? '',
    input: `${base} (${command('stat', ['-f', '-c', '%T', base])})`,
    output: `/dev/shm (${command('stat', ['-f', '-c', '%T', '/dev/shm'])})`,
    envelope: envelopePath,
    glibcTunables: process.env.GLIBC_TUNABLES ?? null,
    peakRss: HAVE_TIME ? '/usr/bin/time -f %M' : '/proc/<pid>/status VmHWM polled every 5 ms',
  };
  log(`machine: ${JSON.stringify(machine)}`);

  // --- inputs (untimed)
  const plain = join(work, 'plain.bin');
  const srCipher = join(work, 'plain.sr');
  const ageCipher = join(work, 'plain.age');
  const sslCipher = join(work, 'plain.aes-ctr');
  const ageKey = join(work, 'age.key');
  log(`setup: writing ${formatSize(size)} of random plaintext to ${plain}`);
  await writeRandomFile(plain, size, { sync: true });
  const dek = newDek();
  const dekHex = Buffer.from(dek).toString('hex');
  const childEnv = { ...process.env, [DEK_ENV]: dekHex, [ENVELOPE_ENV]: envelopePath };
  const sslKey = randomBytes(32).toString('hex');
  const sslIv = randomBytes(16).toString('hex');
  const sslArgs = ['-aes-256-ctr', '-K', sslKey, '-iv', sslIv, '-bufsize', '1048576'];
  if (spawnSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' }).status !== 0)
    throw new Error('age-keygen failed');
  const recipient = command('age-keygen', ['-y', ageKey]);

  const pool = new SegmentPool();
  {
    // Warm the pool (workers started, modules loaded) with a small file; untimed.
    const warm = join(shm, 'warm.bin');
    await writeRandomFile(warm, 16 * MiB, { sync: true });
    await encryptFile(warm, `${warm}.sr`, { dek, keyId: 'bench', context: CONTEXT, pool });
    await decryptFile(`${warm}.sr`, `${warm}.out`, { dek, context: CONTEXT, pool });
    for (const f of [warm, `${warm}.sr`, `${warm}.out`]) await rm(f);
  }
  log('setup: ciphertexts for the decrypt runs (Strongroom, age, openssl)');
  await encryptFile(plain, srCipher, { dek, keyId: 'bench', context: CONTEXT, pool });
  await timeChild(work, 'age', ['-e', '-r', recipient, '-o', ageCipher, plain]);
  await timeChild(work, 'openssl', ['enc', '-e', ...sslArgs, '-in', plain, '-out', sslCipher]);
  spawnSync('sync');
  log('setup: reading every input once (page cache) and hashing the plaintext');
  const reference = await sha256File(plain);
  for (const f of [srCipher, ageCipher, sslCipher]) await sha256File(f);
  const cached: Record<string, number | null> = {};
  for (const f of [plain, srCipher, ageCipher, sslCipher]) {
    const pct = residentPercent(f, (await stat(f)).size);
    cached[f] = pct === null ? null : Number(pct.toFixed(1));
    if (pct !== null && pct < 99) log(`warning: only ${pct.toFixed(1)}% of ${f} is in the page cache`);
  }

  // The envelope as deployed: compiled to JavaScript (what `npm run build` emits), with a JavaScript CLI.
  // Compiled in a child: loading TypeScript would add ~300 MiB to this process's RSS, which the warm-pool rows include.
  const builtDir = join(work, 'envelope-js');
  const built = spawnSync(process.execPath, [SELF, '--build', dirname(envelopePath), builtDir], {
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error(`compiling the envelope to JavaScript failed: ${built.stderr}`);
  const builtCli = join(builtDir, 'cli.mjs');

  // --- the cases
  const srChild = (cli: string[], op: string, input: string) => async (out: string) => {
    const r = await timeChild(work, process.execPath, [...cli, op, input, out], childEnv);
    return { ...r, digest: (JSON.parse(r.stdout) as { digest?: string | null }).digest ?? null };
  };
  const srWarmEncrypt = (digest: boolean) => async (out: string) => {
    const r = await timeInProcess(() =>
      encryptFile(plain, out, { dek, keyId: 'bench', context: CONTEXT, pool, digest }),
    );
    return { ...r, digest: r.result.digest };
  };
  const definitions: Omit<Case, 'samples'>[] = [
    {
      tool: 'cp',
      operation: 'copy',
      mode: 'process',
      variant: '',
      run: (o) => timeChild(work, 'cp', [plain, o]),
    },
    {
      tool: 'age',
      operation: 'encrypt',
      mode: 'process',
      variant: '',
      run: (o) => timeChild(work, 'age', ['-e', '-r', recipient, '-o', o, plain]),
    },
    {
      tool: 'age',
      operation: 'decrypt',
      mode: 'process',
      variant: '',
      run: (o) => timeChild(work, 'age', ['-d', '-i', ageKey, '-o', o, ageCipher]),
    },
    {
      tool: 'openssl aes-256-ctr',
      operation: 'encrypt',
      mode: 'process',
      variant: 'no auth',
      run: (o) => timeChild(work, 'openssl', ['enc', '-e', ...sslArgs, '-in', plain, '-out', o]),
    },
    {
      tool: 'openssl aes-256-ctr',
      operation: 'decrypt',
      mode: 'process',
      variant: 'no auth',
      run: (o) => timeChild(work, 'openssl', ['enc', '-d', ...sslArgs, '-in', sslCipher, '-out', o]),
    },
    ...(['process .ts', 'process .js'] as const).flatMap((mode) => {
      const cli = mode === 'process .ts' ? [SELF, '--child'] : [builtCli];
      return [
        { op: 'encrypt', operation: 'encrypt', variant: '', input: plain },
        { op: 'encrypt-nodigest', operation: 'encrypt', variant: 'digest off', input: plain },
        { op: 'decrypt', operation: 'decrypt', variant: '', input: srCipher },
      ].map((x) => ({
        tool: 'strongroom',
        operation: x.operation as Operation,
        mode,
        variant: x.variant,
        run: srChild(cli, x.op, x.input),
      }));
    }),
    { tool: 'strongroom', operation: 'encrypt', mode: 'warm pool', variant: '', run: srWarmEncrypt(true) },
    {
      tool: 'strongroom',
      operation: 'encrypt',
      mode: 'warm pool',
      variant: 'digest off',
      run: srWarmEncrypt(false),
    },
    {
      tool: 'strongroom',
      operation: 'decrypt',
      mode: 'warm pool',
      variant: '',
      run: async (o) => timeInProcess(() => decryptFile(srCipher, o, { dek, context: CONTEXT, pool })),
    },
  ];
  const cases: Case[] = definitions.map((c) => ({ ...c, samples: [] }));

  const label = (c: Case) => `${c.tool} ${c.operation}${c.variant ? ` (${c.variant})` : ''} [${c.mode}]`;
  const verification: { case: string; run: number; check: string; ok: boolean }[] = [];
  const check = (c: Case, run: number, what: string, ok: boolean) => {
    verification.push({ case: label(c), run, check: what, ok });
    if (!ok) throw new Error(`verification failed: ${label(c)}, run ${run}: ${what}`);
  };
  const harnessRssKiB = statusKiB('VmRSS');

  // --- timed runs: every case once per repetition, the order rotated each repetition
  for (let run = 1; run <= runs; run++) {
    const shift = ((run - 1) * Math.ceil(cases.length / runs)) % cases.length;
    const order = [...cases.slice(shift), ...cases.slice(0, shift)];
    for (const c of order) {
      const out = join(shm, `out-${run}-${cases.indexOf(c)}.bin`);
      let sample;
      try {
        sample = await c.run(out);
      } catch (error) {
        await rm(out, { force: true });
        throw error;
      }
      c.samples.push({ seconds: sample.seconds, rssKiB: sample.rssKiB });
      log(
        `run ${run}/${runs}  ${label(c).padEnd(58)} ${sample.seconds.toFixed(3).padStart(7)} s  ` +
          `${(size / sample.seconds / 1e9).toFixed(2).padStart(5)} GB/s  ` +
          `${sample.rssKiB === null ? '?' : (sample.rssKiB / 1024).toFixed(0)} MiB`,
      );
      // Correctness, untimed: Strongroom every run; the other decrypts on the first run.
      if (c.operation === 'decrypt' && (c.tool === 'strongroom' || run === 1)) {
        check(c, run, 'plaintext sha256 matches', (await sha256File(out)) === reference);
      } else if (c.tool === 'strongroom' && c.operation === 'encrypt') {
        if (sample.digest != null) check(c, run, 'reported digest matches', sample.digest === reference);
        if (run === 1) {
          const back = `${out}.back`;
          try {
            await decryptFile(out, back, { dek, context: CONTEXT, pool });
            check(c, run, 'ciphertext decrypts to the plaintext', (await sha256File(back)) === reference);
          } finally {
            await rm(back, { force: true });
          }
        }
      } else if (c.operation !== 'decrypt' && run === 1) {
        check(c, run, 'output at least as long as the input', (await stat(out)).size >= size);
      }
      await rm(out);
      await sleep(200);
    }
  }
  await pool.close();

  // --- results
  const find = (tool: string, operation: Operation) =>
    cases.find((c) => c.tool === tool && c.operation === operation && c.mode === 'process');
  const gbps = (c: Case | undefined) =>
    c ? (median(c.samples.map((s) => size / s.seconds / 1e9)) ?? NaN) : NaN;
  const cpRate = gbps(find('cp', 'copy'));
  const results = cases.map((c) => {
    const rates = c.samples.map((s) => size / s.seconds / 1e9);
    const rate = median(rates) ?? NaN;
    const age = c.operation === 'copy' ? undefined : find('age', c.operation);
    const rss = c.samples.map((s) => s.rssKiB).filter((v) => v !== null);
    return {
      tool: c.tool,
      operation: c.operation,
      mode: c.mode,
      variant: c.variant,
      seconds: c.samples.map((s) => Number(s.seconds.toFixed(4))),
      gbps: {
        median: Number(rate.toFixed(3)),
        min: Number(Math.min(...rates).toFixed(3)),
        max: Number(Math.max(...rates).toFixed(3)),
      },
      vsAge: age && age !== c ? Number((rate / gbps(age)).toFixed(3)) : null,
      vsCp: Number((rate / cpRate).toFixed(3)),
      peakRssMiB: rss.length ? Number((Math.max(...rss) / 1024).toFixed(1)) : null,
      rssKiB: c.samples.map((s) => s.rssKiB),
    };
  });

  const result = (tool: string, operation: Operation, mode: Mode, variant = '') => {
    const r = results.find(
      (x) => x.tool === tool && x.operation === operation && x.mode === mode && x.variant === variant,
    );
    if (!r) throw new Error(`no result for ${tool} ${operation} ${mode}`);
    return r;
  };
  const targets: TargetResult[] = [];
  const target = (name: string, value: number, against: Target, informational = false) => {
    const { pass } = judge(against, value);
    targets.push({ name, value, threshold: against.bound, unit: against.unit, pass, informational });
  };
  const { decryptVsAge, decryptVsCp, encryptVsAge, peakRss } = TARGETS;
  for (const mode of ['process .ts', 'process .js', 'warm pool'] as const) {
    const dec = result('strongroom', 'decrypt', mode);
    const enc = result('strongroom', 'encrypt', mode);
    const encOff = result('strongroom', 'encrypt', mode, 'digest off');
    target(`${decryptVsAge.name} [${mode}]`, dec.vsAge ?? NaN, decryptVsAge);
    target(`${decryptVsCp.name} [${mode}]`, dec.vsCp, decryptVsCp);
    // Like for like: age -e encrypts and computes no digest. Encrypting while also hashing the plaintext (what
    // publishing a version needs) is reported beside it.
    target(`${encryptVsAge.name} [${mode}]`, encOff.vsAge ?? NaN, encryptVsAge);
    target(`encrypt + SHA-256 digest ≥ 1.5× age -e [${mode}]`, enc.vsAge ?? NaN, encryptVsAge, true);
  }
  for (const r of results.filter((x) => x.tool === 'strongroom' && x.mode.startsWith('process')))
    target(
      `${peakRss.name}: ${r.operation}${r.variant ? ` (${r.variant})` : ''} [${r.mode}]`,
      r.peakRssMiB ?? NaN,
      peakRss,
    );

  const header = ['tool', 'operation', 'mode', 'GB/s median', 'min–max', '× age', '× cp', 'peak RSS MiB'];
  const rows = results.map((r) => [
    r.tool,
    `${r.operation}${r.variant ? ` (${r.variant})` : ''}`,
    r.mode,
    r.gbps.median.toFixed(2),
    `${r.gbps.min.toFixed(2)}–${r.gbps.max.toFixed(2)}`,
    r.vsAge === null ? '—' : r.vsAge.toFixed(2),
    r.vsCp.toFixed(2),
    r.peakRssMiB === null ? '?' : `${r.peakRssMiB.toFixed(0)}${r.mode === 'warm pool' ? '*' : ''}`,
  ]);
  const out: string[] = [];
  out.push(
    `Strongroom crypto benchmark: ${formatSize(size)} file, ${runs} run(s) per case, interleaved; ` +
      `input on disk (page-cached), output into tmpfs`,
  );
  out.push(
    `machine: ${machine.cpu}, nproc ${machine.nproc}, ${machine.memTotalGiB} GiB, Linux ${machine.kernel}; ` +
      `node ${machine.node} (OpenSSL ${machine.nodeOpenssl}); age ${machine.age}; ${machine.openssl}; ${machine.cp}`,
  );
  out.push(
    `envelope: ${envelopePath}${envelopePath === DEFAULT_ENVELOPE ? ' (core/envelope)' : ' (NOT core/envelope)'}` +
      (process.env.GLIBC_TUNABLES ? `; GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}` : ''),
  );
  out.push('');
  out.push(...paddedTable(header, rows, 3));
  out.push('');
  out.push(
    `GB/s = 10^9 plaintext bytes per second of wall time (process rows include process start). × age compares ` +
      `with age's same operation, × cp with cp into tmpfs. Peak RSS: maximum over runs; ` +
      `* = in-process, includes the harness (${((harnessRssKiB ?? 0) / 1024).toFixed(0)} MiB RSS before the runs).`,
  );
  out.push('');
  out.push('targets:');
  for (const t of targets)
    out.push(
      `  ${t.informational ? 'info' : verdictCell(t.pass)}  ${t.name}: ` +
        `${Number.isFinite(t.value) ? t.value.toFixed(2) : '?'}${t.unit === 'MiB' ? ' MiB' : '×'}`,
    );
  out.push(
    `verification: ${verification.length} checks passed (${[...new Set(verification.map((v) => v.check))].join('; ')})`,
  );
  process.stdout.write(`${out.join('\n')}\n\n`);

  const json = {
    date: new Date().toISOString(),
    sizeBytes: size,
    runs,
    machine,
    pageCachedPercent: cached,
    harnessRssMiB: harnessRssKiB === null ? null : Number((harnessRssKiB / 1024).toFixed(1)),
    results,
    targets,
    verification,
  };
  const text = `${JSON.stringify(json, null, 2)}\n`;
  process.stdout.write(text);
  if (values.json) writeFileSync(values.json, text);
}

if (process.argv[2] === '--child') {
  await childMain(process.argv.slice(3));
} else if (process.argv[2] === '--build') {
  await buildEnvelope(process.argv[3] ?? '', process.argv[4] ?? '');
} else {
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log(`\n${signal}: stopping and removing temporary files`);
      cleanup();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
  try {
    await main();
  } catch (error) {
    log(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    cleanup();
  }
}
