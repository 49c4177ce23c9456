/** The results, targets and report of `npm run bench:crypto`. */
import { formatSize, judge, median, paddedTable, TARGETS, verdictCell, type Target } from '../report.ts';
import type { Sample } from './measure.ts';

export type Operation = 'encrypt' | 'decrypt' | 'copy';
/** `process`: a fresh `node` per file; `.ts` runs the source (type stripping), `.js` the build (as deployed). */
export type Mode = 'process' | 'process .ts' | 'process .js' | 'warm pool';

/** One tool's operation in one mode, with its samples. */
export interface CaseSamples {
  readonly tool: string;
  readonly operation: Operation;
  readonly mode: Mode;
  /** Shown after the operation ("digest off"). */
  readonly variant: string;
  readonly samples: readonly Sample[];
}

/** A case's figures (also in the JSON): rates in 10^9 plaintext bytes per second, ratios to age and cp. */
export interface CaseResult {
  readonly tool: string;
  readonly operation: Operation;
  readonly mode: Mode;
  readonly variant: string;
  readonly seconds: number[];
  readonly gbps: { readonly median: number; readonly min: number; readonly max: number };
  readonly vsAge: number | null;
  readonly vsCp: number;
  readonly peakRssMiB: number | null;
  readonly rssKiB: (number | null)[];
}

/** One target's outcome in the JSON (and the `targets:` lines). */
export interface TargetResult {
  readonly name: string;
  readonly value: number;
  readonly threshold: number;
  readonly unit: string;
  readonly pass: boolean;
  readonly informational: boolean;
}

/** The figures of every case over `size` bytes, against age's same operation and cp (the `process` rows). */
export function summarize(cases: readonly CaseSamples[], size: number): CaseResult[] {
  const find = (tool: string, operation: Operation) =>
    cases.find((c) => c.tool === tool && c.operation === operation && c.mode === 'process');
  const gbps = (c: CaseSamples | undefined) =>
    c ? (median(c.samples.map((s) => size / s.seconds / 1e9)) ?? NaN) : NaN;
  const cpRate = gbps(find('cp', 'copy'));
  return cases.map((c): CaseResult => {
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
}

/** The envelope's targets, per mode: decrypt and encrypt against age and cp, and the fresh processes' peak RSS. */
export function cryptoTargets(results: readonly CaseResult[]): TargetResult[] {
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
  return targets;
}

export interface CryptoReportInput {
  readonly size: number;
  readonly runs: number;
  readonly machine: {
    readonly cpu: string;
    readonly nproc: number;
    readonly memTotalGiB: number;
    readonly kernel: string;
    readonly node: string;
    readonly nodeOpenssl: string;
    readonly age: string;
    readonly openssl: string;
    readonly cp: string;
  };
  readonly envelopePath: string;
  /** Whether the envelope measured is core/envelope (else a copy given with --envelope). */
  readonly isCoreEnvelope: boolean;
  readonly results: readonly CaseResult[];
  readonly targets: readonly TargetResult[];
  /** This process's RSS before the runs (the in-process rows include it). */
  readonly harnessRssKiB: number | null;
  readonly verification: readonly { readonly check: string }[];
}

export function cryptoReport(input: CryptoReportInput): string {
  const { size, runs, machine, envelopePath, results, targets, harnessRssKiB, verification } = input;
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
    `envelope: ${envelopePath}${input.isCoreEnvelope ? ' (core/envelope)' : ' (NOT core/envelope)'}` +
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
  return out.join('\n');
}
