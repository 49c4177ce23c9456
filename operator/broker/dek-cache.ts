/**
 * A short-lived, bounded cache of unwrapped DEKs, so that a burst of ReleaseKey calls for one version costs one KMS
 * unwrap. Entries live at most `ttlMs` (capped at 60 s) and at most `capacity` are held; an entry's bytes are
 * zeroed when it expires or is evicted, and `clear()` zeroes everything (shutdown, revocation). Callers get a copy,
 * so zeroing never reaches a buffer already handed out. Nothing here is ever logged.
 */

/** The longest a DEK may stay cached. */
export const MAX_DEK_CACHE_TTL_MS = 60_000;

interface Entry {
  readonly dek: Buffer;
  readonly expiresAt: number;
}

/** See the module comment. */
export class DekCache {
  readonly #ttlMs: number;
  readonly #capacity: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(options: { ttlMs: number; capacity?: number; now?: () => number }) {
    if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs < 0 || options.ttlMs > MAX_DEK_CACHE_TTL_MS)
      throw new RangeError(`DEK cache TTL must be 0 to ${String(MAX_DEK_CACHE_TTL_MS)} ms`);
    this.#ttlMs = options.ttlMs;
    this.#capacity = options.capacity ?? 1024;
    this.#now = options.now ?? Date.now;
  }

  /** A copy of the cached DEK, or undefined. */
  get(key: string): Buffer | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#drop(key, entry);
      return undefined;
    }
    return Buffer.from(entry.dek);
  }

  /** Caches a copy of `dek` (no-op when the TTL is 0). */
  set(key: string, dek: Uint8Array): void {
    if (this.#ttlMs === 0) return;
    const old = this.#entries.get(key);
    if (old !== undefined) this.#drop(key, old);
    while (this.#entries.size >= this.#capacity) {
      const [oldestKey, oldest] = this.#entries.entries().next().value ?? [];
      if (oldestKey === undefined || oldest === undefined) break;
      this.#drop(oldestKey, oldest);
    }
    this.#entries.set(key, { dek: Buffer.from(dek), expiresAt: this.#now() + this.#ttlMs });
  }

  /** Drops (and zeroes) every entry whose key starts with `prefix`. */
  invalidate(prefix: string): void {
    for (const [key, entry] of this.#entries) if (key.startsWith(prefix)) this.#drop(key, entry);
  }

  /** Drops and zeroes everything. */
  clear(): void {
    for (const [key, entry] of this.#entries) this.#drop(key, entry);
  }

  /** How many entries are held (expired ones included until touched). */
  get size(): number {
    return this.#entries.size;
  }

  #drop(key: string, entry: Entry): void {
    entry.dek.fill(0);
    this.#entries.delete(key);
  }
}
