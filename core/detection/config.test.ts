import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DETECTION_CONFIG,
  DEFAULT_DETECTION_DATA,
  DetectionConfigError,
  parseDetectionConfig,
  RULE_NAMES,
} from './config.ts';

function problems(data: Record<string, string>): string[] {
  try {
    parseDetectionConfig(data);
  } catch (error) {
    if (error instanceof DetectionConfigError) return error.problems.map((p) => p.message);
    throw error;
  }
  throw new Error('expected a DetectionConfigError');
}

describe('parseDetectionConfig', () => {
  it('reads an empty ConfigMap as the defaults', () => {
    const config = parseDetectionConfig({});
    expect(config).toEqual(DEFAULT_DETECTION_CONFIG);
    expect(config.rules['release-rate-spike']).toEqual({
      enabled: true,
      severity: 'high',
      windowMs: 60_000,
      factor: 5,
      minCount: 20,
      minHistory: 10,
      smoothing: 0.2,
    });
    expect(config.rules['off-hours']).toMatchObject({
      enabled: false,
      startMinute: 8 * 60,
      endMinute: 20 * 60,
      utcOffsetMinutes: 0,
      days: [1, 2, 3, 4, 5],
    });
    expect(config.quarantineMinSeverity).toBe('high');
    expect(config.detector).toEqual({ maxSubjects: 10_000, idleMs: 24 * 3600_000 });
  });

  it('has settings for every rule, each with enabled, severity and window', () => {
    for (const rule of RULE_NAMES) {
      for (const setting of ['enabled', 'severity', 'window']) {
        expect(Object.hasOwn(DEFAULT_DETECTION_DATA, `${rule}.${setting}`), `${rule}.${setting}`).toBe(true);
      }
    }
  });

  it('reads every kind of value', () => {
    const config = parseDetectionConfig({
      'release-rate-spike.factor': '2.5',
      'release-rate-spike.window': '5m',
      'denial-burst.ignoreReasons': '',
      'denial-burst.perArtifact': '0',
      'cross-environment.includeAllowed': 'true',
      'off-hours.enabled': 'true',
      'off-hours.hours': '22:00-06:00',
      'off-hours.utcOffset': '-05:30',
      'off-hours.days': 'sat,sun',
      'quarantine.minSeverity': 'off',
      'bulk-access.liftGrace': '0',
    });
    expect(config.rules['release-rate-spike']).toMatchObject({ factor: 2.5, windowMs: 300_000 });
    expect(config.rules['bulk-access'].liftGraceMs).toBe(0);
    expect(DEFAULT_DETECTION_CONFIG.rules['bulk-access'].liftGraceMs).toBe(600_000);
    expect(DEFAULT_DETECTION_CONFIG.rules['denial-burst'].ignoreReasons).toEqual([
      'quarantined',
      'quarantines-unknown',
    ]);
    expect(config.rules['denial-burst']).toMatchObject({ ignoreReasons: [], perArtifact: 0 });
    expect(config.rules['cross-environment'].includeAllowed).toBe(true);
    expect(config.rules['off-hours']).toMatchObject({
      enabled: true,
      startMinute: 22 * 60,
      endMinute: 6 * 60,
      utcOffsetMinutes: -330,
      days: [0, 6],
    });
    expect(config.quarantineMinSeverity).toBeNull();
  });

  it('names an unknown key, with the settings of its rule when the rule exists', () => {
    expect(problems({ 'denial-burst.perIdentiy': '5', 'bulk.access': '1' })).toEqual([
      'bulk.access is not a known key: keys are <rule>.<setting> for the rules release-rate-spike, denial-burst, first-restricted-access, bulk-access, cross-environment, off-hours, detector.maxSubjects, detector.idle and quarantine.minSeverity',
      'denial-burst.perIdentiy is not a known key: the settings of denial-burst are denial-burst.enabled, denial-burst.severity, denial-burst.window, denial-burst.perIdentity, denial-burst.perArtifact, denial-burst.ignoreReasons',
    ]);
  });

  const bad: [string, string, RegExp][] = [
    ['release-rate-spike.enabled', 'yes', /expected true or false/],
    ['bulk-access.severity', 'severe', /expected one of info, low, medium, high, critical/],
    ['denial-burst.window', '10', /missing unit/],
    ['denial-burst.window', '500ms', /from 1s to 7d/],
    ['denial-burst.window', '8d', /from 1s to 7d/],
    ['release-rate-spike.factor', '0.5', /from 1 up to 1000/],
    ['release-rate-spike.factor', '1e3', /decimal number/],
    ['release-rate-spike.smoothing', '0', /above 0 up to 1/],
    ['release-rate-spike.minCount', '0', /whole number from 1/],
    ['release-rate-spike.minCount', ' 5', /whole number/],
    ['release-rate-spike.minHistory', '1.5', /whole number/],
    ['denial-burst.ignoreReasons', 'no-grant, expired', /comma-separated list/],
    ['first-restricted-access.classifications', '', /comma-separated list/],
    ['off-hours.hours', '8-20', /HH:MM-HH:MM/],
    ['off-hours.hours', '08:00-08:00', /HH:MM-HH:MM/],
    ['off-hours.hours', '24:00-08:00', /HH:MM-HH:MM/],
    ['off-hours.utcOffset', 'CET', /fixed offset/],
    ['off-hours.days', 'monday', /list of sun, mon/],
    ['detector.maxSubjects', '10', /from 100/],
    ['detector.idle', '1s', /from 1m/],
    ['bulk-access.liftGrace', '8d', /from 0s to 7d/],
    ['quarantine.minSeverity', 'none', /expected off or one of/],
  ];
  it.each(bad)('refuses %s=%j, naming the key and what is allowed', (key, value, allowed) => {
    const found = problems({ [key]: value });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(
      new RegExp(`^${key.replace(/\./g, '\\.')}=${JSON.stringify(value)} is invalid: `),
    );
    expect(found[0]).toMatch(allowed);
  });

  it('reports every problem at once', () => {
    const error = (() => {
      try {
        parseDetectionConfig({ 'off-hours.days': '', 'bulk-access.enabled': 'maybe', typo: 'x' });
      } catch (e) {
        return e as DetectionConfigError;
      }
      throw new Error('no error');
    })();
    expect(error).toBeInstanceOf(DetectionConfigError);
    expect(error.problems.map((p) => p.key).sort()).toEqual([
      'bulk-access.enabled',
      'off-hours.days',
      'typo',
    ]);
    expect(error.message).toMatch(/^the detection configuration has 3 problems:\n {2}/);
  });
});
