import { describe, expect, it } from 'vitest';
import { parseBrokerArgs } from './broker/args.ts';
import { parseCryptoArgs } from './crypto/args.ts';
import { DEFAULT_ENVELOPE } from './crypto/envelope.ts';
import { parseInjectionArgs } from './injection/args.ts';
import { GiB, MiB } from './report.ts';

describe('bench:injection options', () => {
  it('defaults to the full run, and --quick to the smoke run', () => {
    expect(parseInjectionArgs([])).toMatchObject({
      quick: false,
      creates: 500,
      warmupCreates: 20,
      size: 2 * GiB,
      shardCount: 4,
      runs: 3,
      rounds: 20,
    });
    expect(parseInjectionArgs(['--quick'])).toMatchObject({
      quick: true,
      creates: 50,
      warmupCreates: 10,
      size: 256 * MiB,
      runs: 1,
      rounds: 3,
    });
  });

  it('lets a flag override --quick, counts a bare size in MiB and keeps the output paths', () => {
    const options = parseInjectionArgs([
      '--quick',
      '--creates',
      '7',
      '--size',
      '64',
      '--json',
      'out.json',
      '--operator-cpu-prof',
      '/tmp/p',
    ]);
    expect(options).toMatchObject({
      creates: 7,
      size: 64 * MiB,
      json: 'out.json',
      operatorCpuProfile: '/tmp/p',
    });
  });

  it('refuses counts that are not positive integers, sizes under 16 MiB and unknown flags', () => {
    expect(() => parseInjectionArgs(['--runs', '0'])).toThrow(/--runs must be a positive integer/);
    expect(() => parseInjectionArgs(['--rounds', '1.5'])).toThrow(/--rounds/);
    expect(() => parseInjectionArgs(['--size', '8MiB'])).toThrow(/below 16 MiB/);
    expect(() => parseInjectionArgs(['--nope'])).toThrow();
  });
});

describe('bench:broker options', () => {
  it('defaults, and the operator node flags split on spaces', () => {
    const options = parseBrokerArgs([]);
    expect(options.run).toEqual({
      durationSec: 15,
      warmupSec: 3,
      fixedRps: 500,
      fixedConcurrency: 8,
      concurrency: 50,
      connections: 4,
      streamCount: 50,
      rounds: 20,
    });
    expect(options.operatorNodeArgs).toEqual(['--max-semi-space-size=4', '--max-old-space-size=200']);
    expect(parseBrokerArgs(['--operator-node-args=', '--rps', '100']).operatorNodeArgs).toEqual([]);
    expect(parseBrokerArgs(['--rps', '100']).run.fixedRps).toBe(100);
  });
});

describe('bench:crypto options', () => {
  it('defaults to 2 GiB, 3 runs, core/envelope; a bare size counts in bytes', () => {
    expect(parseCryptoArgs([])).toEqual({
      size: 2 * GiB,
      runs: 3,
      json: undefined,
      envelopePath: DEFAULT_ENVELOPE,
      s3Size: 2 * GiB,
    });
    expect(parseCryptoArgs(['--size', String(64 * MiB)]).size).toBe(64 * MiB);
  });

  it('sizes the S3 rows like the file unless told, and leaves them out with --no-s3', () => {
    expect(parseCryptoArgs(['--size', '256MiB']).s3Size).toBe(256 * MiB);
    expect(parseCryptoArgs(['--s3-size', '512MiB']).s3Size).toBe(512 * MiB);
    expect(parseCryptoArgs(['--no-s3']).s3Size).toBeNull();
  });

  it('refuses less than 64 MiB and runs that are not positive integers', () => {
    expect(() => parseCryptoArgs(['--size', '32MiB'])).toThrow(/below 64 MiB/);
    expect(() => parseCryptoArgs(['--runs', '0'])).toThrow(/--runs must be a positive integer/);
  });
});
