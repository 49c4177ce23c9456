import { setTimeout as sleep } from 'node:timers/promises';
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  RequestContext,
  Watch,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type winston from 'winston';

/** Which collection an informer mirrors. */
export interface ResourceRef {
  /** API group; '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** Only this namespace; all namespaces (or a cluster-scoped resource) when absent. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
}

export type InformerEventType = 'added' | 'modified' | 'deleted';

export interface InformerEvent<T> {
  readonly type: InformerEventType;
  readonly key: string;
  /** The object as now cached; for 'deleted', the last known object. */
  readonly object: T;
}

export type RelistCause = 'initial' | 'gone' | 'periodic' | 'stalled' | 'error';

/** Optional hooks, for metrics; all may be omitted. */
export interface WatchObserver {
  /** A watch stream is established. */
  connected?(resource: string): void;
  /** An event was delivered to the handlers (from the watch or synthesized by a relist), or a bookmark arrived. */
  event?(resource: string, type: InformerEventType | 'bookmark'): void;
  /** reason: 'gone' | 'stalled' | 'timeout' | 'http-<code>' | 'network' | 'closed-early' | 'malformed'. */
  error?(resource: string, reason: string): void;
  relist?(resource: string, cause: RelistCause): void;
  healthChanged?(resource: string, healthy: boolean): void;
}

export interface InformerOptions {
  readonly kubeConfig: KubeConfig;
  readonly resource: ResourceRef;
  readonly logger: winston.Logger;
  readonly observer?: WatchObserver;
  /** Full relist diffed against the cache; default 600 000 ms, jittered ±10 %. */
  readonly relistIntervalMs?: number;
  /** A stream with no event or bookmark for this long is aborted and the cache relisted; default 90 000 ms. */
  readonly stallTimeoutMs?: number;
  /** Backoff after a failed list or watch: initial (default 500 ms), doubling, capped (default 30 000 ms). */
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** Not connected for this long makes the informer unhealthy; default 30 000 ms. */
  readonly unhealthyAfterMs?: number;
  /**
   * Keep metadata.managedFields in cached objects. Default false: controllers never read them and they are often
   * the largest part of an object (client-go's informers strip them the same way).
   */
  readonly keepManagedFields?: boolean;
  /**
   * Reduces each object before it is cached (after managedFields are stripped), e.g. to keep only the fields of
   * pods that a consumer reads. It must keep metadata.name, namespace and resourceVersion.
   */
  readonly transform?: (object: never) => unknown;
}

/** Why the informer failed; `reason` uses the same vocabulary as WatchObserver.error. */
export class InformerError extends Error {
  override readonly name = 'InformerError';
  readonly reason: string;
  constructor(message: string, reason: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/** The cache key of an object: "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(o: KubernetesObject): string {
  const name = o.metadata?.name;
  if (!name) throw new TypeError('object has no metadata.name');
  const namespace = o.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

const LIST_PAGE_SIZE = 500;
/** A stream that ends normally this soon after opening, with nothing delivered, counts as a failure. */
const MIN_HEALTHY_STREAM_MS = 1000;
/** Consecutive failed watch resumptions after which the informer relists instead. */
const RESUME_ATTEMPTS = 3;

interface WatchOutcome {
  readonly kind: 'ended' | 'gone' | 'stalled' | 'error' | 'periodic' | 'stopped' | 'resume';
  /** The stream delivered at least one object event or bookmark. */
  readonly delivered: boolean;
  readonly durationMs: number;
}

interface ActiveWatch {
  end(kind: 'periodic' | 'stopped' | 'resume'): void;
}

interface ListPage<T> {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items?: T[];
}

/** Objects whose watch events an integration test drops on the floor (see dropWatchEventsForTest). */
const droppingWatchEvents = new WeakSet<object>();

/**
 * Test seam: while `drop` is true, events arriving on the informer's watch stream are discarded as if the network
 * had lost them (bookmarks too, so the resourceVersion does not move past them). Only a relist can then repair the
 * cache. Never use this outside tests.
 */
export function dropWatchEventsForTest(informer: Informer<KubernetesObject>, drop: boolean): void {
  if (drop) droppingWatchEvents.add(informer);
  else droppingWatchEvents.delete(informer);
}

let resumeFrom: (informer: Informer<KubernetesObject>, resourceVersion: string) => void = () => undefined;

/**
 * Test seam: ends the informer's current watch stream and resumes watching from `resourceVersion` (say "1", long
 * compacted), exactly as it resumes after a dropped connection. Never use this outside tests.
 */
export function resumeWatchFromForTest(informer: Informer<KubernetesObject>, resourceVersion: string): void {
  resumeFrom(informer, resourceVersion);
}

function randomBetween(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

function statusCodeOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = 'statusCode' in error ? error.statusCode : 'code' in error ? error.code : undefined;
  return typeof code === 'number' ? code : undefined;
}

function reasonOf(error: unknown): string {
  if (error instanceof InformerError) return error.reason;
  const code = statusCodeOf(error);
  if (code === 410) return 'gone';
  if (code !== undefined) return `http-${code}`;
  if (error instanceof Error && error.name === 'TimeoutError') return 'timeout';
  return 'network';
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}

/**
 * A cache of one Kubernetes collection kept current by list + watch, built to survive real life: API server
 * restarts (reconnect with jittered exponential backoff), expired resourceVersions (410 Gone → relist), silent
 * stalls (a watchdog reconnects a stream that has seen neither event nor bookmark), and missed events (a periodic
 * relist diffed against the cache synthesizes what the watch lost). It never stops by itself until stop().
 *
 * Handlers run synchronously, in order, after the cache has been updated; they should only enqueue keys.
 * Objects handed out are the cached ones: do not mutate them.
 */
export class Informer<T extends KubernetesObject> {
  /** Name used in logs/metrics, e.g. "strongroom.dev/v1alpha1/modelartifacts". */
  readonly resourceName: string;
  readonly #options: InformerOptions;
  readonly #log: winston.Logger;
  readonly #path: string;
  readonly #watch: Watch;
  readonly #http = new IsomorphicFetchHttpLibrary();
  readonly #handlers: ((event: InformerEvent<T>) => void)[] = [];
  readonly #stopController = new AbortController();
  readonly #relistIntervalMs: number;
  readonly #stallTimeoutMs: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #unhealthyAfterMs: number;
  #cache = new Map<string, T>();
  #resourceVersion = '';
  #synced = false;
  #stopped = false;
  #connected = false;
  #disconnectedSince = Date.now();
  #lastHealthy = false;
  #periodicDue = false;
  #active: ActiveWatch | null = null;
  #relistTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #started: PromiseWithResolvers<undefined> | null = null;
  #loop: Promise<void> | null = null;

  static {
    resumeFrom = (informer, resourceVersion) => {
      informer.#resourceVersion = resourceVersion;
      informer.#active?.end('resume');
    };
  }

  #trim(object: T): T {
    const transform = this.#options.transform as ((o: T) => T) | undefined;
    const trimmed = this.#stripManagedFields(object);
    return transform === undefined ? trimmed : transform(trimmed);
  }

  #stripManagedFields(object: T): T {
    if (this.#options.keepManagedFields || !object.metadata?.managedFields) return object;
    // Objects here come from JSON.parse: the V1ObjectMeta type is a class only in client-node's declarations.
    // eslint-disable-next-line @typescript-eslint/no-misused-spread
    const metadata = { ...object.metadata };
    delete metadata.managedFields;
    return { ...object, metadata };
  }

  constructor(options: InformerOptions) {
    const r = options.resource;
    this.#options = options;
    this.resourceName = r.group === '' ? `${r.version}/${r.plural}` : `${r.group}/${r.version}/${r.plural}`;
    this.#log = options.logger.child({ component: 'informer', resource: this.resourceName });
    const base = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
    const ns = r.namespace ? `/namespaces/${encodeURIComponent(r.namespace)}` : '';
    this.#path = `${base}${ns}/${r.plural}`;
    this.#relistIntervalMs = options.relistIntervalMs ?? 600_000;
    this.#stallTimeoutMs = options.stallTimeoutMs ?? 90_000;
    this.#backoffInitialMs = options.backoffInitialMs ?? 500;
    this.#backoffMaxMs = options.backoffMaxMs ?? 30_000;
    this.#unhealthyAfterMs = options.unhealthyAfterMs ?? 30_000;
    this.#watch = new Watch(options.kubeConfig);
    // client-node's own inactivity timer (30 s) would abort idle but healthy watches (client-node #3020); this
    // informer's watchdog does that job, so the library's timer only backs it up for a connect that hangs.
    Object.assign(this.#watch, { requestTimeoutMs: this.#stallTimeoutMs * 2 });
  }

  /** Registers a synchronous handler, called for every event after the cache is updated. */
  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.#handlers.push(handler);
  }

  /** Starts list + watch; resolves once the first list is in the cache. Rejects only if stopped before that. */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new InformerError('informer was stopped', 'stopped'));
    if (this.#started) return this.#started.promise;
    this.#started = Promise.withResolvers<undefined>();
    this.#disconnectedSince = Date.now();
    this.#loop = this.#run().catch((error: unknown) => {
      // #run handles every expected failure itself; reaching this is a bug, and must not pass silently.
      this.#log.error('informer loop failed unexpectedly', { error: describe(error) });
    });
    return this.#started.promise;
  }

  /** Aborts the watch and any request in flight, clears timers, and waits for the loop to end. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#stopController.abort();
      clearTimeout(this.#relistTimer);
      clearTimeout(this.#healthTimer);
      this.#active?.end('stopped');
      if (!this.#synced)
        this.#started?.reject(new InformerError('informer stopped before its first list', 'stopped'));
      this.#checkHealth();
    }
    await this.#loop;
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Synced, not stopped, and connected (or reconnecting for less than unhealthyAfterMs). */
  healthy(): boolean {
    if (!this.#synced || this.#stopped) return false;
    return this.#connected || Date.now() - this.#disconnectedSince < this.#unhealthyAfterMs;
  }

  async #run(): Promise<void> {
    let listCause: RelistCause | null = 'initial';
    let failures = 0;
    let resumeFailures = 0;
    /** The next watch starts from a list just made: a 410 then means something is off, so back off first. */
    let freshList = false;
    while (!this.#stopped) {
      if (this.#periodicDue) listCause ??= 'periodic';
      if (listCause !== null) {
        try {
          await this.#relist(listCause);
          listCause = null;
          resumeFailures = 0;
          freshList = true;
        } catch (error) {
          if (this.#stopController.signal.aborted) return;
          this.#reportError(reasonOf(error), `list failed: ${describe(error)}`);
          listCause = listCause === 'initial' ? 'initial' : 'error';
          await this.#backoff(failures++);
          continue;
        }
      }
      const outcome = await this.#watchOnce();
      if (outcome.delivered) {
        // A stream that worked for a while: whatever ends it starts a new round of backoff.
        failures = 0;
        resumeFailures = 0;
        freshList = false;
      }
      switch (outcome.kind) {
        case 'stopped':
          return;
        case 'resume':
          break;
        case 'ended':
          if (outcome.delivered || outcome.durationMs >= MIN_HEALTHY_STREAM_MS) {
            failures = 0;
            break;
          }
          this.#reportError('closed-early', 'watch stream closed at once without delivering anything');
          await this.#backoff(failures++);
          break;
        case 'error':
          if (++resumeFailures >= RESUME_ATTEMPTS) listCause = 'error';
          await this.#backoff(failures++);
          break;
        case 'gone':
          if (freshList) await this.#backoff(failures++);
          listCause = 'gone';
          break;
        case 'stalled':
        case 'periodic':
          listCause = outcome.kind;
          break;
      }
    }
  }

  async #backoff(failures: number): Promise<void> {
    const base = Math.min(this.#backoffMaxMs, this.#backoffInitialMs * 2 ** failures);
    const delay = Math.min(this.#backoffMaxMs, base * randomBetween(0.8, 1.2));
    this.#log.debug('backing off', { delayMs: Math.round(delay) });
    try {
      await sleep(delay, undefined, { signal: this.#stopController.signal });
    } catch {
      // aborted by stop()
    }
  }

  async #relist(cause: RelistCause): Promise<void> {
    this.#options.observer?.relist?.(this.resourceName, cause);
    this.#log.log(cause === 'initial' || cause === 'periodic' ? 'debug' : 'info', 'listing', { cause });
    this.#periodicDue = false;
    const { items, resourceVersion } = await this.#listAll();
    if (this.#stopped) return;
    const next = new Map<string, T>();
    for (const item of items) next.set(objectKey(item), item);
    const events: InformerEvent<T>[] = [];
    for (const [key, object] of next) {
      const previous = this.#cache.get(key);
      if (!previous) {
        events.push({ type: 'added', key, object });
      } else if (previous.metadata?.uid !== object.metadata?.uid) {
        events.push({ type: 'deleted', key, object: previous }, { type: 'added', key, object });
      } else if (previous.metadata?.resourceVersion !== object.metadata?.resourceVersion) {
        events.push({ type: 'modified', key, object });
      }
    }
    for (const [key, previous] of this.#cache) {
      if (!next.has(key)) events.push({ type: 'deleted', key, object: previous });
    }
    this.#cache = next;
    this.#resourceVersion = resourceVersion;
    if (cause !== 'initial' && events.length > 0)
      this.#log.info('relist repaired the cache', { cause, events: events.length });
    for (const event of events) this.#emit(event);
    clearTimeout(this.#relistTimer);
    this.#relistTimer = setTimeout(
      () => {
        this.#periodicDue = true;
        this.#active?.end('periodic');
      },
      this.#relistIntervalMs * randomBetween(0.9, 1.1),
    );
    this.#relistTimer.unref();
    if (!this.#synced) {
      this.#synced = true;
      this.#log.info('synced', { objects: next.size });
      this.#started?.resolve(undefined);
    }
    this.#checkHealth();
  }

  async #listAll(): Promise<{ items: T[]; resourceVersion: string }> {
    const server = this.#options.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new InformerError('the kubeconfig has no current cluster', 'config');
    const items: T[] = [];
    let continueToken: string | undefined;
    for (;;) {
      const url = new URL(server + this.#path);
      url.searchParams.set('limit', String(LIST_PAGE_SIZE));
      const { labelSelector, fieldSelector } = this.#options.resource;
      if (labelSelector) url.searchParams.set('labelSelector', labelSelector);
      if (fieldSelector) url.searchParams.set('fieldSelector', fieldSelector);
      if (continueToken) url.searchParams.set('continue', continueToken);
      const page = await this.#get(url.toString());
      if (!Array.isArray(page.items) || typeof page.metadata?.resourceVersion !== 'string')
        throw new InformerError(`list of ${this.resourceName} is malformed`, 'malformed');
      // Items of a list carry no apiVersion/kind; give them the ones watch events carry.
      const kind = page.kind?.replace(/List$/, '');
      for (const item of page.items) {
        items.push(
          this.#trim({ ...item, apiVersion: item.apiVersion ?? page.apiVersion, kind: item.kind ?? kind }),
        );
      }
      continueToken = page.metadata.continue;
      if (!continueToken) return { items, resourceVersion: page.metadata.resourceVersion };
    }
  }

  async #get(url: string): Promise<ListPage<T>> {
    const context = new RequestContext(url, HttpMethod.GET);
    context.setSignal(this.#stopController.signal);
    await this.#options.kubeConfig.applySecurityAuthentication(context);
    let status: number;
    let text: string;
    try {
      const response = await this.#http.send(context).toPromise();
      status = response.httpStatusCode;
      text = await response.body.text();
    } catch (error) {
      throw new InformerError(`GET ${url} failed`, 'network', { cause: error });
    }
    if (status !== 200) {
      throw new InformerError(`GET ${url}: HTTP ${status}: ${text.slice(0, 300)}`, `http-${status}`);
    }
    try {
      return JSON.parse(text) as ListPage<T>;
    } catch (error) {
      throw new InformerError(`GET ${url}: the response is not JSON`, 'malformed', { cause: error });
    }
  }

  #watchOnce(): Promise<WatchOutcome> {
    return new Promise((resolve) => {
      const openedAt = performance.now();
      let finished = false;
      let delivered = false;
      let controller: AbortController | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (kind: WatchOutcome['kind']): void => {
        if (finished) return;
        finished = true;
        clearTimeout(watchdog);
        this.#active = null;
        controller?.abort();
        this.#setConnected(false);
        resolve({ kind, delivered, durationMs: performance.now() - openedAt });
      };
      const feedWatchdog = (): void => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          this.#reportError('stalled', `no event or bookmark for ${this.#stallTimeoutMs} ms`);
          finish('stalled');
        }, this.#stallTimeoutMs);
      };
      this.#active = {
        end: (kind) => {
          finish(kind);
        },
      };
      if (this.#stopped) {
        finish('stopped');
        return;
      }
      feedWatchdog();
      const { labelSelector, fieldSelector } = this.#options.resource;
      const query = {
        allowWatchBookmarks: true,
        timeoutSeconds: Math.floor(randomBetween(300, 601)),
        resourceVersion: this.#resourceVersion,
        labelSelector,
        fieldSelector,
      };
      const onEvent = (phase: string, object: unknown): void => {
        if (finished || droppingWatchEvents.has(this)) return;
        feedWatchdog();
        const end = this.#applyWatchEvent(phase, object);
        if (end) finish(end);
        else delivered = true;
      };
      const onDone = (error: unknown): void => {
        if (finished) return;
        if (error === null || error === undefined) {
          this.#log.debug('watch stream ended');
          finish('ended');
          return;
        }
        const reason = reasonOf(error);
        this.#reportError(reason, `watch failed: ${describe(error)}`);
        finish(reason === 'gone' ? 'gone' : 'error');
      };
      this.#watch.watch(this.#path, query, onEvent, onDone).then(
        (c) => {
          controller = c;
          if (finished) {
            c.abort();
            return;
          }
          this.#setConnected(true);
          this.#options.observer?.connected?.(this.resourceName);
          this.#log.debug('watching', { resourceVersion: this.#resourceVersion });
        },
        (error: unknown) => {
          onDone(error);
        },
      );
    });
  }

  /** Applies one watch event; returns how the stream ends when it must end. */
  #applyWatchEvent(phase: string, raw: unknown): 'gone' | 'error' | null {
    if (typeof raw !== 'object' || raw === null) {
      this.#reportError('malformed', `watch event ${phase} without an object`);
      return null;
    }
    if (phase === 'ERROR') {
      const status = raw as { code?: unknown; message?: unknown };
      const code = typeof status.code === 'number' ? status.code : 0;
      const reason = code === 410 ? 'gone' : `http-${code}`;
      this.#reportError(reason, `watch error event: ${String(status.message)}`);
      return reason === 'gone' ? 'gone' : 'error';
    }
    const object = raw as T;
    const resourceVersion = object.metadata?.resourceVersion;
    if (phase === 'BOOKMARK') {
      if (resourceVersion) this.#resourceVersion = resourceVersion;
      this.#options.observer?.event?.(this.resourceName, 'bookmark');
      return null;
    }
    let key: string;
    try {
      key = objectKey(object);
    } catch (error) {
      this.#reportError('malformed', `watch event ${phase}: ${describe(error)}`);
      return null;
    }
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    const previous = this.#cache.get(key);
    if (phase === 'ADDED' || phase === 'MODIFIED') {
      if (
        previous?.metadata?.resourceVersion === resourceVersion &&
        previous?.metadata?.uid === object.metadata?.uid
      )
        return null;
      const trimmed = this.#trim(object);
      this.#cache.set(key, trimmed);
      this.#emit({ type: previous ? 'modified' : 'added', key, object: trimmed });
    } else if (phase === 'DELETED') {
      if (!previous) return null;
      this.#cache.delete(key);
      this.#emit({ type: 'deleted', key, object });
    } else {
      this.#log.warn('ignoring a watch event of unknown type', { type: phase });
    }
    return null;
  }

  #emit(event: InformerEvent<T>): void {
    this.#options.observer?.event?.(this.resourceName, event.type);
    for (const handler of this.#handlers) {
      try {
        handler(event);
      } catch (error) {
        this.#log.error('event handler threw', { key: event.key, type: event.type, error: describe(error) });
      }
    }
  }

  #reportError(reason: string, message: string): void {
    this.#log.warn(message, { reason });
    this.#options.observer?.error?.(this.resourceName, reason);
  }

  #setConnected(connected: boolean): void {
    if (connected === this.#connected) return;
    this.#connected = connected;
    if (!connected) this.#disconnectedSince = Date.now();
    this.#checkHealth();
  }

  /** Reports a change of healthy() and, while it can still change by time alone, re-checks when it would. */
  #checkHealth(): void {
    clearTimeout(this.#healthTimer);
    const healthy = this.healthy();
    if (healthy && !this.#connected) {
      const remaining = this.#unhealthyAfterMs - (Date.now() - this.#disconnectedSince);
      this.#healthTimer = setTimeout(() => {
        this.#checkHealth();
      }, remaining + 5);
      this.#healthTimer.unref();
    }
    if (healthy === this.#lastHealthy) return;
    this.#lastHealthy = healthy;
    this.#log.log(healthy ? 'info' : 'warn', healthy ? 'watch healthy' : 'watch unhealthy');
    this.#options.observer?.healthChanged?.(this.resourceName, healthy);
  }
}
