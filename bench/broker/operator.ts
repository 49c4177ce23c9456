/** What `npm run bench:broker` reads from the operator process: its CPU, its runtime metrics and its audit log. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OperatorProcess } from '../../test/harness/operator.ts';
import { cpuSecondsOf } from '../proc.ts';

export function operatorCpu(operator: OperatorProcess): number {
  const seconds = cpuSecondsOf(operator.pid);
  if (seconds === undefined) throw new Error(`the operator (pid ${String(operator.pid)}) is gone`);
  return seconds;
}

/** The operator's runtime metrics now: event-loop delay since the last scrape, GC histogram totals so far. */
export async function scrapeOperator(operator: OperatorProcess): Promise<{
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  gcSumSec: Record<string, number>;
  gcCount: number;
  gcUnder10Ms: number;
}> {
  const { status, body } = await operator.get('/metrics');
  if (status !== 200) throw new Error(`operator /metrics answered ${String(status)}`);
  const prefix = 'strongroom_operator_nodejs_';
  const gauge = (name: string): number => {
    const value = new RegExp(`^${prefix}${name} (\\S+)$`, 'm').exec(body)?.[1];
    if (value === undefined) throw new Error(`operator /metrics has no ${prefix}${name}`);
    return Number(value);
  };
  const gcSumSec: Record<string, number> = {};
  let gcCount = 0;
  let gcUnder10Ms = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${prefix}gc_duration_seconds`)) continue;
    const kind = /kind="(\w+)"/.exec(line)?.[1] ?? '?';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${prefix}gc_duration_seconds_sum`)) gcSumSec[kind] = value;
    else if (line.startsWith(`${prefix}gc_duration_seconds_count`)) gcCount += value;
    else if (line.includes('le="0.01"')) gcUnder10Ms += value;
  }
  return {
    eventLoopDelayP99Ms: gauge('eventloop_lag_p99_seconds') * 1000,
    eventLoopDelayMaxMs: gauge('eventloop_lag_max_seconds') * 1000,
    gcSumSec,
    gcCount,
    gcUnder10Ms,
  };
}

/** The allowed key-release entries and all key-release lines in the operator's audit log. */
export function auditedReleases(operator: OperatorProcess): { allowed: number; lines: number } {
  let allowed = 0;
  let lines = 0;
  for (const file of readdirSync(operator.auditLogDir))
    for (const line of readFileSync(join(operator.auditLogDir, file), 'utf8').split('\n')) {
      if (!line.includes('"type":"key-release"')) continue;
      lines++;
      const event = (JSON.parse(line) as { event?: { type?: unknown; decision?: unknown } }).event;
      if (event?.type === 'key-release' && event.decision === 'allow') allowed++;
    }
  return { allowed, lines };
}
