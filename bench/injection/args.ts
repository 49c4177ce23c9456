/**
 * The options of `npm run bench:injection`, from its command line:
 *
 *   node bench/injection/main.ts [--quick] [--creates 500] [--warmup 20] [--size 2GiB] [--files 4] [--runs 3]
 *                                [--rounds 20] [--json out.json] [--operator-cpu-prof DIR]
 *
 * `--quick` is a smoke run (50 creates, 256 MiB, 1 run, 3 rounds). A bare `--size` counts in MiB.
 */
import { parseArgs } from 'node:util';
import { MiB, parseSize } from '../report.ts';

export interface InjectionOptions {
  readonly quick: boolean;
  /** Admission: measured rounds of one create of each kind. */
  readonly creates: number;
  /** Admission: discarded warm-up rounds. */
  readonly warmupCreates: number;
  /** Start-up: the artifact's size in bytes ... */
  readonly size: number;
  /** ... in this many shards (plus a config.json). */
  readonly shardCount: number;
  /** Start-up: runs, each with the bare decrypts, the sidecar and the null sidecar. */
  readonly runs: number;
  /** Revocation: grant → Ready → delete rounds. */
  readonly rounds: number;
  /** Where to write the results as JSON. */
  readonly json: string | undefined;
  /** Where the operator writes a V8 CPU profile (NODE_OPTIONS=--cpu-prof for its process). */
  readonly operatorCpuProfile: string | undefined;
}

export function parseInjectionArgs(args: readonly string[]): InjectionOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      quick: { type: 'boolean', default: false },
      creates: { type: 'string' },
      warmup: { type: 'string' },
      size: { type: 'string' },
      files: { type: 'string', default: '4' },
      runs: { type: 'string' },
      rounds: { type: 'string' },
      json: { type: 'string' },
      'operator-cpu-prof': { type: 'string' },
    },
    strict: true,
  });
  const quick = values.quick;
  const options: InjectionOptions = {
    quick,
    creates: Number(values.creates ?? (quick ? '50' : '500')),
    warmupCreates: Number(values.warmup ?? (quick ? '10' : '20')),
    size: parseSize(values.size ?? (quick ? '256MiB' : '2GiB'), { bareUnit: MiB, min: 16 * MiB }),
    shardCount: Number(values.files),
    runs: Number(values.runs ?? (quick ? '1' : '3')),
    rounds: Number(values.rounds ?? (quick ? '3' : '20')),
    json: values.json,
    operatorCpuProfile: values['operator-cpu-prof'],
  };
  const { creates, warmupCreates, shardCount, runs, rounds } = options;
  for (const [name, n] of Object.entries({ creates, warmupCreates, shardCount, runs, rounds }))
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return options;
}
