import { describe, expect, it } from 'vitest';
import {
  boundText,
  cpuShare,
  formatSize,
  GiB,
  judge,
  KiB,
  mean,
  median,
  MiB,
  ms,
  paddedTable,
  parseSize,
  percentile,
  sec,
  tableHead,
  TARGETS,
  thousands,
  validity,
  verdictCell,
  type Target,
} from './report.ts';

describe('percentile (nearest rank)', () => {
  it('is undefined for no values', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(percentile([], 0)).toBeUndefined();
  });

  it('is the one value for a single sample, at any p', () => {
    for (const p of [0, 1, 50, 99, 99.9, 100]) expect(percentile([7], p)).toBe(7);
  });

  it('gives min at 0 and max at 100', () => {
    const values = [5, 1, 4, 2, 3];
    expect(percentile(values, 0)).toBe(1);
    expect(percentile(values, 100)).toBe(5);
  });

  it('takes the ceil(p/100 × n)-th smallest value, sorted or not', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 99.9)).toBe(100);
    expect(percentile(hundred, 1)).toBe(1);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2); // the lower middle, never an interpolation
    expect(percentile([10, 20, 30], 34)).toBe(20);
  });

  it('clamps p outside 0..100 and leaves its input alone', () => {
    const values = [3, 1, 2];
    expect(percentile(values, -5)).toBe(1);
    expect(percentile(values, 250)).toBe(3);
    expect(values).toEqual([3, 1, 2]);
  });

  it('counts repeated values', () => {
    expect(percentile([1, 1, 1, 9], 75)).toBe(1);
    expect(percentile([1, 1, 1, 9], 76)).toBe(9);
  });
});

describe('median and mean', () => {
  it('median is the middle value, or the mean of the two middle ones', () => {
    expect(median([])).toBeUndefined();
    expect(median([4])).toBe(4);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('mean', () => {
    expect(mean([])).toBeUndefined();
    expect(mean([1, 2, 3, 6])).toBe(3);
  });
});

describe('parseSize', () => {
  it('reads binary and decimal units, case-insensitively, with or without a space', () => {
    expect(parseSize('2GiB')).toBe(2 * GiB);
    expect(parseSize('256 MiB')).toBe(256 * MiB);
    expect(parseSize('1.5g')).toBe(1.5 * GiB);
    expect(parseSize('4k')).toBe(4 * KiB);
    expect(parseSize('4KiB')).toBe(4 * KiB);
    expect(parseSize('4kB')).toBe(4000);
    expect(parseSize('3MB')).toBe(3e6);
    expect(parseSize('1GB')).toBe(1e9);
    expect(parseSize('512b')).toBe(512);
    expect(parseSize('  64mib ')).toBe(64 * MiB);
  });

  it('counts a bare number in bytes, or in the given unit', () => {
    expect(parseSize('1073741824')).toBe(GiB);
    expect(parseSize('512', { bareUnit: MiB })).toBe(512 * MiB);
    expect(parseSize('512B', { bareUnit: MiB })).toBe(512);
  });

  it('rounds to whole bytes', () => {
    expect(parseSize('0.5k')).toBe(512);
    expect(parseSize('1.0001k')).toBe(1024);
  });

  it('refuses what it cannot read', () => {
    for (const text of ['', 'GiB', '2 TiB', '-1MiB', '1e6', '2GiBs', 'two'])
      expect(() => parseSize(text), text).toThrow(/cannot parse size/);
  });

  it('refuses sizes under the minimum, naming it', () => {
    expect(() => parseSize('15MiB', { min: 16 * MiB })).toThrow(/below 16 MiB/);
    expect(parseSize('16MiB', { min: 16 * MiB })).toBe(16 * MiB);
  });
});

describe('formatSize', () => {
  it('whole MiB under 1 GiB, GiB with two decimals from 1 GiB', () => {
    expect(formatSize(256 * MiB)).toBe('256 MiB');
    expect(formatSize(GiB)).toBe('1.00 GiB');
    expect(formatSize(2.5 * GiB)).toBe('2.50 GiB');
    expect(formatSize(GiB - 1)).toBe('1024 MiB');
  });

  it('or always in the unit asked for', () => {
    expect(formatSize(256 * MiB, 'GiB')).toBe('0.25 GiB');
    expect(formatSize(2 * GiB, 'MiB')).toBe('2048 MiB');
  });
});

describe('cells', () => {
  it('ms and sec show a dash for no value', () => {
    expect(ms(1.234)).toBe('1.23 ms');
    expect(ms(1.2345, 3)).toBe('1.234 ms');
    expect(ms(undefined)).toBe('–');
    expect(ms(NaN)).toBe('–');
    expect(ms(Infinity)).toBe('–');
    expect(sec(1234)).toBe('1.23 s');
    expect(sec(undefined)).toBe('–');
    expect(sec(NaN)).toBe('–');
  });

  it('thousands and CPU shares', () => {
    expect(thousands(12345.6)).toBe('12,346');
    expect(cpuShare(1.5, 4)).toBe('1.5 s (38%)');
  });
});

describe('Markdown', () => {
  it('tableHead gives the header and a separator of as many columns', () => {
    expect(tableHead(['a', 'b', 'c'])).toEqual(['| a | b | c |', '|---|---|---|']);
  });

  it('paddedTable pads every column to its widest cell and right-aligns from rightFrom', () => {
    expect(
      paddedTable(
        ['tool', 'GB/s'],
        [
          ['cp', '1.50'],
          ['strongroom', '12.00'],
        ],
        1,
      ),
    ).toEqual([
      '| tool       |  GB/s |',
      '|------------|------:|',
      '| cp         |  1.50 |',
      '| strongroom | 12.00 |',
    ]);
  });

  it('validity lists the invalid runs, or says every run was valid', () => {
    expect(validity([])).toBe('Every run valid.');
    expect(validity(['a', 'b'])).toBe('INVALID RUNS:\n  a\n  b');
  });
});

describe('verdicts', () => {
  const atMost: Target = { name: 'p99', bound: 5, unit: 'ms', comparison: '<=' };
  const under: Target = { name: 'p50', bound: 1.45, unit: 'ms', comparison: '<' };
  const atLeast: Target = { name: 'rate', bound: 5000, unit: '/s', comparison: '>=' };
  const over: Target = { name: 'x', bound: 2, unit: '×', comparison: '>' };

  it('passes on the bound for ≤ and ≥, misses on it for < and >', () => {
    expect(judge(atMost, 5).pass).toBe(true);
    expect(judge(atMost, 5.0001).pass).toBe(false);
    expect(judge(under, 1.45).pass).toBe(false);
    expect(judge(under, 1.44).pass).toBe(true);
    expect(judge(atLeast, 5000).pass).toBe(true);
    expect(judge(atLeast, 4999.9).pass).toBe(false);
    expect(judge(over, 2).pass).toBe(false);
    expect(judge(over, 2.01).pass).toBe(true);
  });

  it('gives the ratio of the value to the bound', () => {
    expect(judge(atMost, 2.5).ratio).toBe(0.5);
    expect(judge(atLeast, 7500).ratio).toBe(1.5);
    expect(judge({ ...atMost, bound: 0 }, 1).ratio).toBeUndefined();
  });

  it('misses without a value, with a value that is not finite, or on an invalid run', () => {
    for (const value of [undefined, NaN, Infinity, -Infinity]) {
      const v = judge(atLeast, value);
      expect(v.pass, String(value)).toBe(false);
      expect(v.ratio, String(value)).toBeUndefined();
    }
    const invalid = judge(atMost, 1, false);
    expect(invalid.pass).toBe(false);
    expect(invalid.ratio).toBe(0.2);
    expect(invalid.value).toBe(1);
    expect(invalid.target).toBe(atMost);
  });

  it('shows a verdict as PASS or FAIL', () => {
    expect(verdictCell(judge(atMost, 1))).toBe('PASS');
    expect(verdictCell(judge(atMost, 9))).toBe('FAIL');
    expect(verdictCell(true)).toBe('PASS');
    expect(verdictCell(false)).toBe('FAIL');
  });

  it('writes bounds as the reports do', () => {
    expect(boundText(TARGETS.webhookP99)).toBe('≤ 5 ms');
    expect(boundText(TARGETS.addedP50)).toBe('< 1.45 ms');
    expect(boundText(TARGETS.addedP99)).toBe('< 2.5 ms');
    expect(boundText(TARGETS.revocationWipeP99)).toBe('≤ 1 s');
    expect(boundText(TARGETS.revocationWipeStretch)).toBe('≤ 200 ms');
    expect(boundText(TARGETS.releasesPerSec)).toBe('≥ 5,000/s');
    expect(boundText(TARGETS.startupVsBare)).toBe('≤ 1.2×');
    expect(boundText(TARGETS.peakRss)).toBe('≤ 200 MiB');
    expect(boundText(over)).toBe('> 2×');
  });

  it('every target has a positive bound and a name', () => {
    for (const [key, target] of Object.entries(TARGETS)) {
      expect(target.name, key).not.toBe('');
      expect(target.bound, key).toBeGreaterThan(0);
    }
  });
});
