/**
 * The options of `npm run bench:crypto`, from its command line:
 *
 *   node bench/crypto/main.ts [--size 2GiB] [--runs 3] [--json out.json] [--envelope path/to/envelope/index.ts]
 *                             [--s3-size <size, default --size>] [--no-s3]
 *
 * A bare `--size` counts in bytes; at least 64 MiB. The S3 rows (./s3.ts) start a versitygw server (built by
 * test/cluster/go/build.sh on first use); `--no-s3` leaves them out.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MiB, parseSize } from '../report.ts';
import { DEFAULT_ENVELOPE } from './envelope.ts';

export interface CryptoOptions {
  /** Bytes of the one file. */
  readonly size: number;
  /** Runs of every case. */
  readonly runs: number;
  readonly json: string | undefined;
  /** The envelope module measured (default core/envelope's index.ts). */
  readonly envelopePath: string;
  /** Bytes of the artifact of the S3 rows (./s3.ts), or null to leave them out. */
  readonly s3Size: number | null;
}

export function parseCryptoArgs(args: readonly string[]): CryptoOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      size: { type: 'string', default: '2GiB' },
      runs: { type: 'string', default: '3' },
      json: { type: 'string' },
      envelope: { type: 'string', default: DEFAULT_ENVELOPE },
      's3-size': { type: 'string' },
      'no-s3': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);
  const size = parseSize(values.size, { min: 64 * MiB });
  return {
    size,
    s3Size: values['no-s3']
      ? null
      : values['s3-size'] === undefined
        ? size
        : parseSize(values['s3-size'], { min: 16 * MiB }),
    runs,
    json: values.json,
    envelopePath: resolve(values.envelope),
  };
}
