/**
 * `npm run bench:audit`: the audit log's durable append throughput (real fdatasync, group commit), p99 append
 * latency at a paced 1,000 appends/s, and offline verification speed. Method and results: docs/audit.md.
 *
 *   node bench/audit.ts [--dir DIR] [--seconds 3] [--verify-entries 200000] [--json out.json]
 *
 * DIR must be on the disk being measured (default: the OS temp dir; check it is not tmpfs).
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AuditKey,
  AuditLog,
  generateNoteKey,
  keyReleaseEvent,
  parseSignerKey,
  verifyLog,
  type AuditEvent,
} from '../core/audit/index.ts';
import { percentile } from './report.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    seconds: { type: 'string', default: '3' },
    'verify-entries': { type: 'string', default: '200000' },
    json: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const verifyEntries = Number(values['verify-entries']);
const root = mkdtempSync(join(values.dir ?? tmpdir(), 'strongroom-audit-bench-'));
const TMPFS = 0x01021994;
if (statfsSync(root).type === TMPFS) console.warn(`warning: ${root} is tmpfs; fdatasync costs nothing there`);

const ORIGIN = 'strongroom.audit/bench/replica-0';
const keys = generateNoteKey(ORIGIN);
const signer = parseSignerKey(keys.signerKey);
const auditKey = new AuditKey(Buffer.alloc(32, 1));

/** A realistic key-release event (~700 bytes as a log line). */
function event(i: number): AuditEvent {
  return keyReleaseEvent(
    {
      decision: 'allow',
      reason: 'granted',
      workload: {
        namespace: 'team-a',
        serviceAccount: 'trainer',
        podUid: `6f1c2a8e-0000-4000-8000-${String(i).padStart(12, '0')}`,
        certificateSerial: `4d:2a:${i}`,
      },
      artifact: {
        namespace: 'models',
        name: 'llama-70b',
        version: 'v3',
        classification: 'restricted',
        environment: 'prod',
      },
      key: { id: 'projects/p/locations/l/keyRings/r/cryptoKeys/kek-prod', version: '2' },
      grant: {
        namespace: 'team-a',
        name: 'train-llama',
        uid: 'a1b2c3d4-0000-4000-8000-000000000001',
        resourceVersion: '123456',
        approvals: [
          { uid: 'ap-1', resourceVersion: '123460', approver: 'bob@example.com' },
          { uid: 'ap-2', resourceVersion: '123470', approver: 'carol@example.com' },
        ],
      },
      secrets: { token: `token-${i}`, wrappedKey: `wrapped-${i}` },
    },
    auditKey,
  );
}

async function throughput(
  concurrency: number,
): Promise<{ concurrency: number; appendsPerSec: number; meanBatch: number; p99Ms: number }> {
  const batches: number[] = [];
  const latencies: number[] = [];
  const log = await AuditLog.open({
    path: join(root, `throughput-${concurrency}.log`),
    origin: ORIGIN,
    signer,
    heartbeatIntervalMs: 0,
    metrics: {
      onAppend: (i) => {
        batches.push(i.batchSize);
        latencies.push(i.latencyMs);
      },
    },
  });
  let acked = 0;
  let i = 0;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await log.append(event(i++));
        acked++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  await log.close();
  return {
    concurrency,
    appendsPerSec: Math.round(acked / elapsed),
    meanBatch: Math.round((batches.reduce((a, b) => a + b, 0) / batches.length) * 10) / 10,
    p99Ms: Math.round((percentile(latencies, 99) ?? NaN) * 100) / 100,
  };
}

async function paced(
  rate: number,
): Promise<{ rate: number; appends: number; p50Ms: number; p99Ms: number; maxMs: number }> {
  const log = await AuditLog.open({
    path: join(root, 'paced.log'),
    origin: ORIGIN,
    signer,
    heartbeatIntervalMs: 0,
  });
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  const inflight: Promise<void>[] = [];
  const start = performance.now() + 10;
  for (let n = 0; n < total; n++) {
    // Latency is measured from the intended send time, so a stalled loop is not hidden (no coordinated omission).
    const intended = start + (n * 1000) / rate;
    while (performance.now() < intended) {
      const wait = intended - performance.now();
      await new Promise((r) => (wait > 1.5 ? setTimeout(r, wait - 1) : setImmediate(r)));
    }
    inflight.push(
      log.append(event(n)).then(() => {
        latencies.push(performance.now() - intended);
      }),
    );
  }
  await Promise.all(inflight);
  await log.close();
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    rate,
    appends: total,
    p50Ms: r2(percentile(latencies, 50) ?? NaN),
    p99Ms: r2(percentile(latencies, 99) ?? NaN),
    maxMs: r2(percentile(latencies, 100) ?? NaN),
  };
}

async function verification(
  entries: number,
): Promise<{ entries: number; bytes: number; entriesPerSec: number; bestMs: number }> {
  const path = join(root, 'verify.log');
  const log = await AuditLog.open({ path, origin: ORIGIN, signer, heartbeatIntervalMs: 0 });
  let i = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (i < entries) await log.append(event(i++));
    }),
  );
  await log.close();
  let best = Infinity;
  let size = 0;
  let n = 0;
  for (let run = 0; run < 3; run++) {
    const t0 = performance.now();
    const bytes = readFileSync(path);
    const report = verifyLog(bytes, { verifiers: [signer.verifier] });
    const ms = performance.now() - t0;
    if (!report.ok) throw new Error('the benchmark log does not verify');
    best = Math.min(best, ms);
    size = bytes.length;
    n = report.entries;
  }
  return { entries: n, bytes: size, entriesPerSec: Math.round(n / (best / 1000)), bestMs: Math.round(best) };
}

try {
  const results = {
    throughput: [] as Awaited<ReturnType<typeof throughput>>[],
    paced: undefined as Awaited<ReturnType<typeof paced>> | undefined,
    verify: undefined as Awaited<ReturnType<typeof verification>> | undefined,
  };
  for (const c of [1, 16, 64, 256]) results.throughput.push(await throughput(c));
  results.paced = await paced(1000);
  results.verify = await verification(verifyEntries);

  const rows: string[][] = [['measure', 'result']];
  for (const t of results.throughput) {
    rows.push([
      `durable appends/s, ${t.concurrency} concurrent appenders`,
      `${t.appendsPerSec} /s (mean batch ${t.meanBatch}, p99 ${t.p99Ms} ms)`,
    ]);
  }
  rows.push([
    `append latency at a paced ${results.paced.rate}/s (${results.paced.appends} appends)`,
    `p50 ${results.paced.p50Ms} ms, p99 ${results.paced.p99Ms} ms, max ${results.paced.maxMs} ms`,
  ]);
  rows.push([
    `verification (${results.verify.entries} entries, ${(results.verify.bytes / 2 ** 20).toFixed(1)} MiB)`,
    `${results.verify.entriesPerSec} entries/s (${results.verify.bestMs} ms, read + verify)`,
  ]);
  const w = Math.max(...rows.map((r) => (r[0] as string).length));
  for (const [a, b] of rows) console.log(`${(a as string).padEnd(w)}  ${b as string}`);
  const json = JSON.stringify({ node: process.version, dir: root, ...results }, null, 2);
  console.log(json);
  if (values.json !== undefined) writeFileSync(values.json, json + '\n');
} finally {
  rmSync(root, { recursive: true, force: true });
}
