/**
 * What every benchmark reports with: percentiles, sizes, the cells and rows of its Markdown report, the machine it
 * ran on, and verdicts against the {@link TARGETS} of the issues (a target: name, bound, unit, comparison; a verdict:
 * pass or miss, with the measured value's ratio to the bound).
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';

export const KiB = 2 ** 10;
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

// ---------------------------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile (`p` in 0..100) of `values`, sorted or not; undefined for none. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** The middle value (the mean of the two middle ones for an even count); undefined for none. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Arithmetic mean; undefined for none. */
export function mean(values: readonly number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0) / values.length;
}

// ---------------------------------------------------------------------------------------------------------------
// Sizes

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: KiB,
  kib: KiB,
  kb: 1e3,
  m: MiB,
  mib: MiB,
  mb: 1e6,
  g: GiB,
  gib: GiB,
  gb: 1e9,
};

/**
 * A size such as `2GiB`, `256 MiB`, `1.5g` or `1073741824` in bytes. K/M/G and KiB/MiB/GiB are binary, kB/MB/GB
 * decimal; a bare number counts in `bareUnit` bytes (default 1). Throws below `min` bytes.
 */
export function parseSize(text: string, options: { bareUnit?: number; min?: number } = {}): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i.exec(text.trim());
  const scale = m?.[2] === undefined ? (options.bareUnit ?? 1) : SIZE_UNITS[m[2].toLowerCase()];
  if (m?.[1] === undefined || scale === undefined)
    throw new Error(`cannot parse size "${text}" (examples: 2GiB, 512MiB, 1073741824)`);
  const bytes = Math.round(Number(m[1]) * scale);
  const min = options.min ?? 0;
  if (bytes < min) throw new Error(`size "${text}" is below ${formatSize(min)} (${String(bytes)} bytes)`);
  return bytes;
}

/** `2.00 GiB`, `256 MiB`: GiB with two decimals from 1 GiB up, else whole MiB; or always in `unit`. */
export function formatSize(bytes: number, unit?: 'MiB' | 'GiB'): string {
  const inGiB = unit === undefined ? bytes >= GiB : unit === 'GiB';
  return inGiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${(bytes / MiB).toFixed(0)} MiB`;
}

// ---------------------------------------------------------------------------------------------------------------
// Cells

/** `1.23 ms`; `–` for no value. */
export function ms(value: number | undefined, digits = 2): string {
  return value === undefined || !Number.isFinite(value) ? '–' : `${value.toFixed(digits)} ms`;
}

/** Milliseconds as `1.23 s`; `–` for no value. */
export function sec(valueMs: number | undefined): string {
  return valueMs === undefined || !Number.isFinite(valueMs) ? '–' : `${(valueMs / 1000).toFixed(2)} s`;
}

/** `12,345`. */
export function thousands(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** CPU seconds and their share of one core over `wallSec`: `1.5 s (37%)`. */
export function cpuShare(seconds: number, wallSec: number): string {
  return `${seconds.toFixed(1)} s (${((seconds / wallSec) * 100).toFixed(0)}%)`;
}

// ---------------------------------------------------------------------------------------------------------------
// Markdown

/** One row of a Markdown table: `| a | b |`. */
export function row(cells: readonly string[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** A Markdown table's header and separator lines. */
export function tableHead(columns: readonly string[]): [string, string] {
  return [row(columns), `|${columns.map(() => '---').join('|')}|`];
}

/**
 * A whole Markdown table, its columns padded to their widest cell; columns from `rightFrom` on are right-aligned
 * (numbers), the others left-aligned.
 */
export function paddedTable(
  columns: readonly string[],
  rows: readonly (readonly string[])[],
  rightFrom = columns.length,
): string[] {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    row(cells.map((c, i) => (i >= rightFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))));
  return [
    line(columns),
    `|${widths.map((w, i) => (i >= rightFrom ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`,
    ...rows.map(line),
  ];
}

/**
 * The end of a benchmark's run: prints its Markdown report, writes its results as JSON when asked, and sets exit
 * code 1 when a run was invalid (a missed target does not change the exit code).
 */
export function publish(
  results: { readonly failures: readonly string[] },
  report: string,
  jsonPath: string | undefined,
): void {
  console.log(report);
  if (jsonPath !== undefined) writeFileSync(jsonPath, JSON.stringify(results, null, 2));
  if (results.failures.length > 0) process.exitCode = 1;
}

/** The report's last line: every run valid, or the invalid ones. */
export function validity(failures: readonly string[]): string {
  return failures.length === 0 ? 'Every run valid.' : `INVALID RUNS:\n  ${failures.join('\n  ')}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The machine

export interface Machine {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memGiB: number;
  readonly node: string;
  readonly loadAverageAtStart: readonly number[];
}

/** This machine, now (call it at the start of a run). */
export function machine(): Machine {
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: Math.round(totalmem() / GiB),
    node: process.version,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Targets and verdicts

export type Comparison = '<' | '<=' | '>=' | '>';

/** A target of an issue: the measured value passes when `value comparison bound` holds. */
export interface Target {
  readonly name: string;
  readonly bound: number;
  /** Shown after the bound: `ms`, `s`, `/s`, `×`, `MiB`. */
  readonly unit: string;
  readonly comparison: Comparison;
}

/** The anchor of issue 8: HashiCorp vault-k8s's injector, added to a pod create at p50 and p99 (ms, low–high). */
export const INJECTION_ANCHOR = {
  apiserverMeanMs: [2.3, 2.7],
  addedP50Ms: [2.9, 4.3],
  addedP99Ms: [5, 11],
} as const;

/** The targets, by key: the envelope's (bench/crypto/), the key broker's (issue 7) and injection's (issue 8). */
export const TARGETS = {
  // The envelope against age and cp, and its memory (docs/benchmarks.md).
  decryptVsAge: { name: 'decrypt ≥ 2× age -d', bound: 2, unit: '×', comparison: '>=' },
  decryptVsCp: { name: 'decrypt ≥ 0.9× cp', bound: 0.9, unit: '×', comparison: '>=' },
  encryptVsAge: { name: 'encrypt ≥ 1.5× age -e', bound: 1.5, unit: '×', comparison: '>=' },
  peakRss: { name: 'peak RSS ≤ 200 MiB', bound: 200, unit: 'MiB', comparison: '<=' },
  // Issue 7: the key broker.
  releaseP99: { name: 'ReleaseKey p99 at a fixed rate', bound: 2, unit: 'ms', comparison: '<=' },
  releasesPerSec: { name: 'Releases/s', bound: 5000, unit: '/s', comparison: '>=' },
  brokerRevocationP99: {
    name: 'Revocation reaches a connected client, p99',
    bound: 1000,
    unit: 'ms',
    comparison: '<=',
  },
  brokerRevocationStretch: { name: '… stretch', bound: 100, unit: 'ms', comparison: '<=' },
  // Issue 8: injection and the sidecar.
  webhookP99: { name: 'Webhook admission p99', bound: 5, unit: 'ms', comparison: '<=' },
  addedP50: {
    name: 'Added to a pod create at p50 (half the anchor’s lower bound)',
    bound: INJECTION_ANCHOR.addedP50Ms[0] / 2,
    unit: 'ms',
    comparison: '<',
  },
  addedP99: {
    name: 'Added to a pod create at p99 (half the anchor’s lower bound)',
    bound: INJECTION_ANCHOR.addedP99Ms[0] / 2,
    unit: 'ms',
    comparison: '<',
  },
  startupVsBare: {
    name: 'Sidecar start-up vs bare decryptDirectory',
    bound: 1.2,
    unit: '×',
    comparison: '<=',
  },
  revocationWipeP99: {
    name: 'Time to revoke, grant deleted → files wiped, p99',
    bound: 1000,
    unit: 'ms',
    comparison: '<=',
  },
  revocationWipeStretch: { name: '… stretch', bound: 200, unit: 'ms', comparison: '<=' },
  revocationConfirmedP99: {
    name: '… confirmed from the app container (kubectl exec ls), p99',
    bound: 1000,
    unit: 'ms',
    comparison: '<=',
  },
} as const satisfies Readonly<Record<string, Target>>;

export interface Verdict {
  readonly target: Target;
  /** The measured value; undefined when there is none. */
  readonly value: number | undefined;
  /** Met, on a valid run. */
  readonly pass: boolean;
  /** value / bound (how far under or over); undefined without a value or with a zero bound. */
  readonly ratio: number | undefined;
}

/** Judges `value` against `target`; a run that is not `valid` (failed calls, missed samples) never passes. */
export function judge(target: Target, value: number | undefined, valid = true): Verdict {
  const finite = value !== undefined && Number.isFinite(value);
  const met =
    finite &&
    (target.comparison === '<'
      ? value < target.bound
      : target.comparison === '<='
        ? value <= target.bound
        : target.comparison === '>='
          ? value >= target.bound
          : value > target.bound);
  return {
    target,
    value,
    pass: valid && met,
    ratio: finite && target.bound !== 0 ? value / target.bound : undefined,
  };
}

const SYMBOL: Readonly<Record<Comparison, string>> = { '<': '<', '<=': '≤', '>=': '≥', '>': '>' };

/** The target's bound as a report shows it: `≤ 5 ms`, `≤ 1 s`, `< 1.45 ms`, `≥ 5,000/s`, `≤ 1.2×`, `≤ 200 MiB`. */
export function boundText(target: Target): string {
  const { bound, unit } = target;
  const value =
    unit === 'ms' && bound >= 1000
      ? `${String(bound / 1000)} s`
      : unit === '/s'
        ? `${thousands(bound)}/s`
        : unit === '×'
          ? `${String(bound)}×`
          : `${String(bound)} ${unit}`;
  return `${SYMBOL[target.comparison]} ${value}`;
}

/** The verdict's cell in a report: PASS or FAIL (a miss). */
export function verdictCell(verdict: Verdict | boolean): 'PASS' | 'FAIL' {
  return (typeof verdict === 'boolean' ? verdict : verdict.pass) ? 'PASS' : 'FAIL';
}
