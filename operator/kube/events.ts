/**
 * Kubernetes Events for what users must see in `kubectl describe` (a key sealed, a grant expired, a reconcile
 * failing). Recording never blocks or fails a reconcile: the write happens in the background, a failure is logged,
 * and the same (object, reason, message) is recorded at most once per `dedupeWindowMs`, so a retrying reconcile does
 * not flood the API server.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Api, CoreV1Event, KubernetesObject } from '@kubernetes/client-node';
import type winston from 'winston';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  readonly core: CoreV1Api;
  readonly component: string;
  readonly instance: string;
  readonly logger: winston.Logger;
  readonly dedupeWindowMs?: number;
  readonly maxRemembered?: number;
}

export class EventRecorder {
  readonly #o: EventRecorderOptions;
  readonly #recent = new Map<string, number>();
  readonly #pending = new Set<Promise<void>>();

  constructor(options: EventRecorderOptions) {
    this.#o = options;
  }

  /** Records an Event on `object` (which needs apiVersion, kind, namespace, name and uid). */
  record(object: KubernetesObject, type: EventType, reason: string, message: string): void {
    const { namespace, name, uid } = object.metadata ?? {};
    if (!namespace || !name) return;
    const dedupeKey = `${uid ?? name}\u0000${reason}\u0000${message}`;
    const now = Date.now();
    const seen = this.#recent.get(dedupeKey);
    if (seen !== undefined && now - seen < (this.#o.dedupeWindowMs ?? 600_000)) return;
    this.#recent.delete(dedupeKey);
    this.#recent.set(dedupeKey, now);
    if (this.#recent.size > (this.#o.maxRemembered ?? 10_000)) {
      const oldest = this.#recent.keys().next();
      if (!oldest.done) this.#recent.delete(oldest.value);
    }
    const timestamp = new Date(now);
    const body: CoreV1Event = {
      metadata: { name: `${name}.${randomBytes(8).toString('hex')}`, namespace },
      involvedObject: {
        apiVersion: object.apiVersion ?? '',
        kind: object.kind ?? '',
        namespace,
        name,
        ...(uid ? { uid } : {}),
        ...(object.metadata?.resourceVersion ? { resourceVersion: object.metadata.resourceVersion } : {}),
      },
      type,
      reason,
      message: message.slice(0, 1024),
      count: 1,
      firstTimestamp: timestamp,
      lastTimestamp: timestamp,
      source: { component: this.#o.component },
      reportingComponent: this.#o.component,
      reportingInstance: this.#o.instance.slice(0, 128),
    };
    const write = this.#o.core
      .createNamespacedEvent({ namespace, body })
      .then(
        () => undefined,
        (error: unknown) => {
          this.#recent.delete(dedupeKey);
          this.#o.logger.warn('could not record event', { namespace, name, reason, error });
        },
      )
      .finally(() => this.#pending.delete(write));
    this.#pending.add(write);
  }

  /** Waits for the Events being written (shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
