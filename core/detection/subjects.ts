/**
 * Subject maps: the per-identity (or per-artifact, per-pair) state of a rule, bounded in size and forgotten when
 * idle. Entry time only moves forward inside the detector (a large backward step resets or rebases the maps), so a
 * map's insertion order (refreshed on every touch) is also the order of last use: the least recently seen subject is always first, and idle eviction stops at the
 * first subject that is still fresh.
 */
export class SubjectMap<V> {
  readonly #map = new Map<string, { value: V; seen: number }>();
  readonly #max: number;
  readonly #idleMs: number;

  constructor(limits: { readonly maxSubjects: number; readonly idleMs: number }) {
    this.#max = limits.maxSubjects;
    this.#idleMs = limits.idleMs;
  }

  /** The state of `key` (created when absent), marked as seen at `now`. */
  touch(key: string, now: number, create: () => V): V {
    const found = this.#map.get(key);
    if (found !== undefined) this.#map.delete(key);
    const entry = found ?? { value: create(), seen: now };
    entry.seen = now;
    this.#map.set(key, entry);
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done === true) break;
      this.#map.delete(oldest.value);
    }
    return entry.value;
  }

  get(key: string): V | undefined {
    return this.#map.get(key)?.value;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  /** Forgets every subject not seen since `now - idleMs`. */
  sweep(now: number): void {
    for (const [key, entry] of this.#map) {
      if (entry.seen > now - this.#idleMs) return;
      this.#map.delete(key);
    }
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  /**
   * After the clock stepped back to `now`: every subject last seen later than `now` counts as seen at `now`, so the
   * map stays in order of last use and idle eviction measures from the new time.
   */
  rebase(now: number): void {
    for (const entry of this.#map.values()) entry.seen = Math.min(entry.seen, now);
  }

  get size(): number {
    return this.#map.size;
  }
}
