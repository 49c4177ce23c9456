/**
 * The in-process revocation bus: every change that ends access is published here once, in order, with a sequence
 * number. The key broker subscribes and pushes each event to the sidecars it concerns (WatchRevocations). A small
 * ring of recent events lets a subscriber that reconnects resume from the last sequence number it saw.
 */

/** Why access ended. */
export type RevocationReason =
  | 'grant-expired'
  | 'grant-deleted'
  | 'grant-revoked'
  | 'grant-denied'
  | 'grant-suspended'
  | 'versions-removed'
  | 'artifact-deleted'
  | 'version-withdrawn';

export interface RevocationSubject {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface Revocation {
  /** Strictly increasing within this process, starting at 1. */
  readonly seq: number;
  readonly reason: RevocationReason;
  /** The artifact whose access ended (namespace and name). */
  readonly artifact: { readonly namespace: string; readonly name: string };
  /** The grant that ended, when a grant did; absent when the whole artifact went away. */
  readonly grant?: { readonly namespace: string; readonly name: string; readonly uid: string };
  /** Who lost access; empty means everyone with access to `versions` of the artifact. */
  readonly subjects: readonly RevocationSubject[];
  /** Versions no longer available; empty means all versions. */
  readonly versions: readonly string[];
  /** Human-readable detail for logs and audit. */
  readonly message: string;
  readonly at: Date;
}

export type RevocationInput = Omit<Revocation, 'seq' | 'at'> & { readonly at?: Date };

type Listener = (revocation: Revocation) => void;

export class RevocationBus {
  readonly #listeners = new Set<Listener>();
  readonly #recent: Revocation[] = [];
  readonly #capacity: number;
  #seq = 0;

  constructor(options: { readonly capacity?: number } = {}) {
    this.#capacity = options.capacity ?? 1024;
  }

  /** Publishes an event to every subscriber synchronously; a throwing subscriber does not stop the others. */
  publish(input: RevocationInput): Revocation {
    this.#seq += 1;
    const revocation: Revocation = Object.freeze({ ...input, seq: this.#seq, at: input.at ?? new Date() });
    this.#recent.push(revocation);
    if (this.#recent.length > this.#capacity) this.#recent.shift();
    const failures: unknown[] = [];
    for (const listener of this.#listeners) {
      try {
        listener(revocation);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0)
      throw new AggregateError(
        failures,
        `${failures.length} revocation subscriber(s) failed on #${revocation.seq}`,
      );
    return revocation;
  }

  /**
   * Subscribes; returns the function that unsubscribes. With `afterSeq`, events still in the ring that came after
   * it are delivered first; `missed` is true when some had already been dropped from the ring (the subscriber must
   * then re-check everything it holds).
   */
  subscribe(
    listener: Listener,
    afterSeq?: number,
  ): { readonly unsubscribe: () => void; readonly missed: boolean } {
    let missed = false;
    if (afterSeq !== undefined) {
      const oldest = this.#recent[0]?.seq ?? this.#seq + 1;
      missed = afterSeq < oldest - 1;
      for (const r of this.#recent) if (r.seq > afterSeq) listener(r);
    }
    this.#listeners.add(listener);
    return { unsubscribe: () => this.#listeners.delete(listener), missed };
  }

  /** The last sequence number published (0 before the first). */
  lastSeq(): number {
    return this.#seq;
  }
}
