/**
 * The S3 rows of `npm run bench:crypto`: decrypting a version streamed from a real S3 server (versitygw on loopback,
 * test/harness/s3.ts) against a plain download of the same object with the same client, in the same run. Part of
 * bench/crypto/main.ts (after the file rows; `--s3-size` sets its artifact size, `--no-s3` skips it), and runnable
 * alone:
 *
 *   node bench/crypto/s3.ts [--size 2GiB] [--runs 3] [--json out.json]
 *
 * The artifact is one file encrypted as a directory version (what the sidecar reads), uploaded with uploadVersion;
 * the server's root is on the disk (page-cached), the outputs go to tmpfs. Rows, interleaved every run:
 * - `GetObject → tmpfs`: the object's body streamed into a tmpfs file (the lower bound of any reader);
 * - `decrypt from S3 (digest)`: decryptDirectoryFromSource with checkDigests, exactly what the sidecar does;
 * - `decrypt from S3 (digest off)`: decryptFromSource of the object alone.
 * Each decrypt is checked against the plaintext's SHA-256 every run, the download against the object's once.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  decryptDirectoryFromSource,
  decryptFromSource,
  encryptDirectory,
  newDek,
  type Manifest,
} from '../../core/envelope/index.ts';
import { s3DirectorySource, uploadVersion } from '../../core/storage/index.ts';
import { startS3Server } from '../../test/harness/s3.ts';
import { writeRandomFile } from '../files.ts';
import { formatSize, median, MiB, paddedTable, parseSize } from '../report.ts';
import { checkFs, sha256File, timeInProcess } from './measure.ts';

export interface S3BenchOptions {
  readonly size: number;
  readonly runs: number;
  /** Where the plaintext and the server's root go (a disk); default the OS temporary directory. */
  readonly workdir?: string;
  readonly log?: (line: string) => void;
}

export interface S3Row {
  readonly name: string;
  /** Bytes each run moves: the object's size for the download, the plaintext's for the decrypts. */
  readonly bytes: number;
  readonly seconds: number[];
  readonly gbps: { readonly median: number; readonly min: number; readonly max: number };
  /** GB/s relative to the plain download's median (1 for the download itself). */
  readonly vsDownload: number;
  /** Peak RSS of this process during the row's runs (in-process: includes the harness), MiB. */
  readonly peakRssMiB: number | null;
}

export interface S3BenchResult {
  readonly size: number;
  readonly objectBytes: number;
  readonly runs: number;
  readonly endpoint: string;
  readonly upload: { readonly seconds: number; readonly gbps: number };
  readonly rows: S3Row[];
  readonly verification: string[];
}

const CONTEXT = { artifactUid: 'bench', artifactName: 'bench', version: 'v1' };
const FILE = 'weights.bin';
const BUCKET = 'bench';
const KEY_PREFIX = 'bench/v1/';

export async function runS3Bench(options: S3BenchOptions): Promise<S3BenchResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const base = options.workdir ?? tmpdir();
  checkFs(base, false, 2 * options.size + 256 * MiB, 'S3 bench: plaintext and the server root');
  checkFs('/dev/shm', true, options.size + 256 * MiB, 'S3 bench: one output at a time');
  const work = mkdtempSync(join(base, 'strongroom-bench-s3-'));
  const shm = mkdtempSync('/dev/shm/strongroom-bench-s3-');
  const server = await startS3Server({ root: join(work, 'root') });
  try {
    const client = server.client();
    await server.createBucket(BUCKET);
    const plainDir = join(work, 'plain');
    await mkdir(plainDir);
    log(`s3: writing ${formatSize(options.size)} of random plaintext`);
    await writeRandomFile(join(plainDir, FILE), options.size, { sync: true });
    const reference = await sha256File(join(plainDir, FILE));
    const dek = newDek();
    const version = join(work, 'version');
    const manifest: Manifest = await encryptDirectory(plainDir, version, {
      dek,
      keyId: 'bench/v1',
      context: CONTEXT,
    });
    const object = join(version, ...(manifest.files[0]?.object ?? '').split('/'));
    const objectBytes = (await stat(object)).size;
    const objectReference = await sha256File(object);
    await rm(join(plainDir, FILE));
    log(`s3: uploading the version to ${server.endpoint} (uploadVersion, 16 MiB parts)`);
    const up = await timeInProcess(() =>
      uploadVersion({ client, bucket: BUCKET, keyPrefix: KEY_PREFIX, directory: version }),
    );
    await rm(version, { recursive: true });
    const objectKey = `${KEY_PREFIX}${manifest.files[0]?.object ?? ''}`;
    const source = () => s3DirectorySource({ client, bucket: BUCKET, keyPrefix: KEY_PREFIX });

    const verification: string[] = [];
    const cases: {
      name: string;
      bytes: number;
      run: (out: string) => Promise<void>;
      check: (out: string, run: number) => Promise<void>;
    }[] = [
      {
        name: 'GetObject → tmpfs (plain download)',
        bytes: objectBytes,
        run: async (out) => {
          const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: objectKey }));
          await pipeline(response.Body as Readable, createWriteStream(out, { flags: 'wx', mode: 0o600 }));
        },
        check: async (out, run) => {
          if (run !== 1) return;
          if ((await sha256File(out)) !== objectReference) throw new Error('the downloaded object differs');
          verification.push('download equals the object');
        },
      },
      {
        name: 'decrypt from S3 → tmpfs (digest, as the sidecar)',
        bytes: options.size,
        run: async (out) => {
          await decryptDirectoryFromSource(source(), out, { dek, context: CONTEXT, checkDigests: true });
        },
        check: async (out) => {
          if ((await sha256File(join(out, FILE))) !== reference) throw new Error('decrypt (digest) differs');
          verification.push('decrypt (digest) equals the plaintext');
        },
      },
      {
        name: 'decrypt from S3 → tmpfs (one object, digest off)',
        bytes: options.size,
        run: async (out) => {
          const objects = await source().listObjects();
          const one = objects.get(manifest.files[0]?.object ?? '');
          if (one === undefined) throw new Error('the object is not listed');
          await decryptFromSource(one, out, { dek, context: { ...CONTEXT, path: FILE } });
        },
        check: async (out) => {
          if ((await sha256File(out)) !== reference) throw new Error('decrypt (digest off) differs');
          verification.push('decrypt (digest off) equals the plaintext');
        },
      },
    ];
    const samples = cases.map(() => ({ seconds: [] as number[], rss: [] as number[] }));
    for (let run = 1; run <= options.runs; run++) {
      const shift = (run - 1) % cases.length;
      for (let k = 0; k < cases.length; k++) {
        const i = (k + shift) % cases.length;
        const c = cases[i];
        const s = samples[i];
        if (c === undefined || s === undefined) continue;
        const out = join(shm, `out-${run}-${i}`);
        try {
          const sample = await timeInProcess(() => c.run(out));
          s.seconds.push(sample.seconds);
          if (sample.rssKiB !== null) s.rss.push(sample.rssKiB);
          log(
            `s3 run ${run}/${options.runs}  ${c.name.padEnd(50)} ${sample.seconds.toFixed(3).padStart(7)} s  ` +
              `${(c.bytes / sample.seconds / 1e9).toFixed(2).padStart(5)} GB/s  ` +
              `${sample.rssKiB === null ? '?' : (sample.rssKiB / 1024).toFixed(0)} MiB`,
          );
          await c.check(out, run);
        } finally {
          await rm(out, { recursive: true, force: true });
        }
      }
    }
    dek.fill(0);
    const rate = (bytes: number, seconds: readonly number[]) => seconds.map((x) => bytes / x / 1e9);
    const downloadRate = median(rate(objectBytes, samples[0]?.seconds ?? [])) ?? NaN;
    const rows = cases.map((c, i): S3Row => {
      const rates = rate(c.bytes, samples[i]?.seconds ?? []);
      const m = median(rates) ?? NaN;
      const rss = samples[i]?.rss ?? [];
      return {
        name: c.name,
        bytes: c.bytes,
        seconds: (samples[i]?.seconds ?? []).map((x) => Number(x.toFixed(4))),
        gbps: {
          median: Number(m.toFixed(3)),
          min: Number(Math.min(...rates).toFixed(3)),
          max: Number(Math.max(...rates).toFixed(3)),
        },
        vsDownload: Number((m / downloadRate).toFixed(3)),
        peakRssMiB: rss.length > 0 ? Number((Math.max(...rss) / 1024).toFixed(1)) : null,
      };
    });
    return {
      size: options.size,
      objectBytes,
      runs: options.runs,
      endpoint: server.endpoint,
      upload: {
        seconds: Number(up.seconds.toFixed(3)),
        gbps: Number((objectBytes / up.seconds / 1e9).toFixed(3)),
      },
      rows,
      verification: [...new Set(verification)],
    };
  } finally {
    await server.stop();
    rmSync(shm, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

export function s3Report(result: S3BenchResult): string {
  const out: string[] = [];
  out.push(
    `Strongroom from S3: a ${formatSize(result.size)} file as a directory version in versitygw (posix backend, root ` +
      `on disk, page-cached) at ${result.endpoint}, ${result.runs} run(s) per row, interleaved; one S3 client; output into tmpfs`,
  );
  out.push('');
  out.push(
    ...paddedTable(
      ['S3 row', 'GB/s median', 'min–max', '× download', 'peak RSS MiB*'],
      result.rows.map((r) => [
        r.name,
        r.gbps.median.toFixed(2),
        `${r.gbps.min.toFixed(2)}–${r.gbps.max.toFixed(2)}`,
        r.vsDownload.toFixed(2),
        r.peakRssMiB === null ? '?' : r.peakRssMiB.toFixed(0),
      ]),
      1,
    ),
  );
  out.push('');
  out.push(
    `GB/s = 10^9 bytes per second of wall time (plaintext bytes for the decrypts, the object's for the download). ` +
      `× download = the row's median over the plain download's. * in-process: includes the harness. The server ` +
      `shares the machine's cores. Upload (uploadVersion, once, untimed by the rows): ${result.upload.gbps.toFixed(2)} GB/s.`,
  );
  out.push(`s3 verification: ${result.verification.join('; ')}`);
  return out.join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      size: { type: 'string', default: '2GiB' },
      runs: { type: 'string', default: '3' },
      json: { type: 'string' },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  const result = await runS3Bench({ size: parseSize(values.size, { min: 16 * MiB }), runs });
  process.stdout.write(`${s3Report(result)}\n\n${JSON.stringify(result, null, 2)}\n`);
  if (values.json !== undefined) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
  }
}
