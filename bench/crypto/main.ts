/**
 * `npm run bench:crypto`: Strongroom's envelope encryption against age, openssl and cp, on one file, from the real
 * disk into tmpfs. Method and results: docs/benchmarks.md.
 *
 *   node bench/crypto/main.ts [--size 2GiB] [--runs 3] [--json out.json] [--envelope path/to/envelope/index.ts]
 *                             [--s3-size <size, default --size>] [--no-s3]
 *
 * Strongroom runs three ways: a fresh `node` per file on the TypeScript source (./child.ts), the same on the
 * envelope compiled as deployed (./build.ts), and in this process with a warm pool. Timing and checks: ./measure.ts;
 * results, targets and the report: ./report.ts. Then, in the same run, the S3 rows (./s3.ts): decrypting a version
 * streamed from a real S3 server against a plain download of the same object with the same client.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { writeRandomFile } from '../files.ts';
import { statusKiB } from '../proc.ts';
import { formatSize, GiB, MiB } from '../report.ts';
import { parseCryptoArgs, type CryptoOptions } from './args.ts';
import { builtCliPath } from './build.ts';
import { CONTEXT, DEFAULT_ENVELOPE, DEK_ENV, ENVELOPE_ENV, loadEnvelope } from './envelope.ts';
import {
  checkFs,
  command,
  killRunning,
  peakRssSource,
  residentPercent,
  sha256File,
  timeChild,
  timeInProcess,
  type Sample,
} from './measure.ts';
import { runS3Bench, s3Report } from './s3.ts';
import { cryptoReport, cryptoTargets, summarize, type CaseSamples, type Operation } from './report.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const BUILD = fileURLToPath(new URL('./build.ts', import.meta.url));

interface Case extends CaseSamples {
  /** Performs the operation into `output` (a fresh path in tmpfs) and returns its sample. */
  readonly run: (output: string) => Promise<Sample & { digest?: string | null }>;
  readonly samples: Sample[];
}

let workdir: string | null = null;
let shmdir: string | null = null;

function cleanup(): void {
  killRunning();
  for (const dir of [shmdir, workdir]) if (dir !== null) rmSync(dir, { recursive: true, force: true });
  shmdir = workdir = null;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function main(options: CryptoOptions): Promise<void> {
  const { size, runs, envelopePath } = options;
  const { SegmentPool, decryptFile, encryptFile, newDek } = await loadEnvelope(envelopePath);

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
    peakRss: peakRssSource(),
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
  const built = spawnSync(process.execPath, [BUILD, dirname(envelopePath), builtDir], {
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error(`compiling the envelope to JavaScript failed: ${built.stderr}`);
  const builtCli = builtCliPath(dirname(envelopePath), builtDir);

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
      const cli = mode === 'process .ts' ? [CHILD] : [builtCli];
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

  // The S3 rows: their own server and artifact (core/envelope and core/storage as they are, not --envelope).
  const s3 =
    options.s3Size === null ? null : await runS3Bench({ size: options.s3Size, runs, workdir: base, log });

  const results = summarize(cases, size);
  const targets = cryptoTargets(results);
  const report = cryptoReport({
    size,
    runs,
    machine,
    envelopePath,
    isCoreEnvelope: envelopePath === DEFAULT_ENVELOPE,
    results,
    targets,
    harnessRssKiB,
    verification,
  });
  process.stdout.write(`${report}\n\n`);
  if (s3 !== null) process.stdout.write(`${s3Report(s3)}\n\n`);

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
    s3,
  };
  const text = `${JSON.stringify(json, null, 2)}\n`;
  process.stdout.write(text);
  if (options.json !== undefined) writeFileSync(options.json, text);
}

if (import.meta.main) {
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log(`\n${signal}: stopping and removing temporary files`);
      cleanup();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
  try {
    await main(parseCryptoArgs(process.argv.slice(2)));
  } catch (error) {
    log(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    cleanup();
  }
}
