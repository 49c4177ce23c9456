/**
 * `-o table|json|yaml`: every command that prints objects takes it. Tables are for people (aligned columns, a
 * header line); JSON and YAML are for machines and print the whole objects (or the command's report) unchanged.
 */
import { Option } from 'commander';
import { stringify } from 'yaml';
import type { CliIo } from './io.ts';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The `-o, --output` option, default `table`. */
export function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table');
}

/** A column of a table: its header and how to get a row's cell. */
export interface Column<T> {
  readonly header: string;
  readonly cell: (row: T) => string;
}

/** Aligned columns with a header, like kubectl's; `(none)` rows print `No <what> found.` */
export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((r) => columns.map((c) => oneLine(c.cell(r))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]?.length ?? 0)));
  return (
    cells
      .map((line) =>
        line
          .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
          .join('   ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ');
}

/**
 * Prints `data` as JSON or YAML, or `rows` as a table. With `json`/`yaml`, `data` is printed as is (a list is
 * printed as a list: scripts can rely on the shape).
 */
export function printObjects<T>(
  io: CliIo,
  format: OutputFormat,
  data: unknown,
  rows: readonly T[],
  columns: readonly Column<T>[],
  empty = 'No resources found.',
): void {
  if (format === 'json') io.out(`${JSON.stringify(data, null, 2)}\n`);
  else if (format === 'yaml') io.out(stringify(data));
  else if (rows.length === 0) io.err(`${empty}\n`);
  else io.out(formatTable(rows, columns));
}

/** Prints a single document as JSON or YAML (for `-o json|yaml` of reports). */
export function printDocument(io: CliIo, format: 'json' | 'yaml', data: unknown): void {
  io.out(format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : stringify(data));
}

/** `5m`, `3h`, `2d`: the age of a timestamp, as kubectl prints it. */
export function age(timestamp: string | Date | undefined, now = new Date()): string {
  if (timestamp === undefined) return '<unknown>';
  const ms = now.getTime() - new Date(timestamp).getTime();
  if (!Number.isFinite(ms)) return '<unknown>';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${String(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${String(m)}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${String(h)}h`;
  return `${String(Math.floor(h / 24))}d`;
}
