/**
 * The options of `npm run bench:broker`, from its command line:
 *
 *   node bench/broker/main.ts [--duration 15] [--warmup 3] [--rps 500] [--fixed-concurrency 8] [--concurrency 50]
 *                             [--connections 4] [--streams 50] [--rounds 20]
 *                             [--operator-node-args="--cpu-prof --cpu-prof-dir=/tmp/p"] [--json out.json]
 */
import { parseArgs } from 'node:util';

/** What the measurements run with (the results' `options`). */
export interface BrokerRun {
  /** Seconds of each measured ghz run. */
  readonly durationSec: number;
  /** Seconds of the discarded warm-up run. */
  readonly warmupSec: number;
  /** The fixed-rate run's calls per second ... */
  readonly fixedRps: number;
  /** ... from a few workers on one connection, as one sidecar would. */
  readonly fixedConcurrency: number;
  /** The unlimited run: enough workers and connections to saturate the broker. */
  readonly concurrency: number;
  readonly connections: number;
  /** Revocation: WatchRevocations streams, each of an attested pod ... */
  readonly streamCount: number;
  /** ... over this many grant → delete rounds. */
  readonly rounds: number;
}

export interface BrokerOptions {
  readonly run: BrokerRun;
  /** The operator's V8 flags (default those of `npm run operator`, so that it is measured as it is run). */
  readonly operatorNodeArgs: readonly string[];
  readonly json: string | undefined;
}

export function parseBrokerArgs(args: readonly string[]): BrokerOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      duration: { type: 'string', default: '15' },
      warmup: { type: 'string', default: '3' },
      rps: { type: 'string', default: '500' },
      'fixed-concurrency': { type: 'string', default: '8' },
      concurrency: { type: 'string', default: '50' },
      connections: { type: 'string', default: '4' },
      streams: { type: 'string', default: '50' },
      rounds: { type: 'string', default: '20' },
      'operator-node-args': { type: 'string', default: '--max-semi-space-size=4 --max-old-space-size=200' },
      json: { type: 'string' },
    },
  });
  const run: BrokerRun = {
    durationSec: Number(values.duration),
    warmupSec: Number(values.warmup),
    fixedRps: Number(values.rps),
    fixedConcurrency: Number(values['fixed-concurrency']),
    concurrency: Number(values.concurrency),
    connections: Number(values.connections),
    streamCount: Number(values.streams),
    rounds: Number(values.rounds),
  };
  return {
    run,
    operatorNodeArgs: values['operator-node-args'].split(' ').filter((a) => a !== ''),
    json: values.json,
  };
}
