/**
 * off-hours: an allowed key release outside the configured working hours and days, in UTC or a fixed offset from it
 * (no daylight-saving rules: the detector is pure and the offset is explicit). Off by default. One alert per
 * identity per window.
 */
import { formatIdentity, type Alert } from '../alert.ts';
import type { DetectorLimits, OffHoursConfig } from '../config.ts';
import { artifactKey, identityKey, type Observation } from '../observation.ts';
import { Alerter, singleEntryFacts, type Rule } from '../rule.ts';

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function hhmm(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}

function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  return `${sign}${hhmm(Math.abs(minutes))}`;
}

export class OffHours implements Rule {
  readonly name = 'off-hours' as const;
  readonly #config: OffHoursConfig;
  readonly #alerter: Alerter;

  constructor(config: OffHoursConfig, limits: DetectorLimits) {
    this.#config = config;
    this.#alerter = new Alerter(this.name, config, limits);
  }

  /** Whether `time` (ms since the epoch) is inside the working hours and days. */
  working(time: number): boolean {
    const local = new Date(time + this.#config.utcOffsetMinutes * 60_000);
    const minute = local.getUTCHours() * 60 + local.getUTCMinutes();
    const { startMinute: start, endMinute: end } = this.#config;
    const inHours = start < end ? minute >= start && minute < end : minute >= start || minute < end;
    // A night shift (22:00-06:00) after midnight belongs to the working day it started on.
    const shiftDay = start > end && minute < end ? (local.getUTCDay() + 6) % 7 : local.getUTCDay();
    return inHours && this.#config.days.includes(shiftDay);
  }

  observe(o: Observation): Alert[] {
    if (o.source !== 'release' || o.decision !== 'allow' || o.identity === null) return [];
    if (this.working(o.time)) return [];
    const key = identityKey(o.identity);
    if (!this.#alerter.ready(key, o.time)) return [];
    const local = new Date(o.time + this.#config.utcOffsetMinutes * 60_000);
    const at = `${DAY_NAMES[local.getUTCDay()] ?? ''} ${hhmm(local.getUTCHours() * 60 + local.getUTCMinutes())}`;
    const offset = formatOffset(this.#config.utcOffsetMinutes);
    const days = this.#config.days.map((d) => DAY_NAMES[d] ?? '').join(',');
    return [
      this.#alerter.raise(
        key,
        o.time,
        singleEntryFacts(
          o,
          `${formatIdentity(o.identity)} was released a key of ${o.artifact === null ? 'an artifact' : artifactKey(o.artifact)} at ${at} (UTC${offset}), outside working hours ${hhmm(this.#config.startMinute)}-${hhmm(this.#config.endMinute)} ${days}`,
        ),
      ),
    ];
  }

  sweep(now: number): void {
    this.#alerter.sweep(now);
  }

  lift(): void {
    // No window: nothing to reset.
  }

  reset(): void {
    this.#alerter.reset();
  }
}
