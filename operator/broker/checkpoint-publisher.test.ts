import { randomBytes } from 'node:crypto';
import { ApiException, type V1ConfigMap } from '@kubernetes/client-node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { signCheckpoint } from '../../core/audit/index.ts';
import { makeKeys, ORIGIN } from '../../core/audit/testdata/fixtures.ts';
import { capturingLogger } from '../../test/harness/logger.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import {
  AUDIT_CHECKPOINTS_CONFIGMAP,
  CheckpointPublisher,
  readPublishedCheckpoint,
  refusal,
  ROLLBACK_EVENT_REASON,
} from './checkpoint-publisher.ts';

const NS = 'strongroom-system';
const WRITER = 'replica-0';
const keys = makeKeys();

/** A signed checkpoint note of `size` with root `root` (random by default). */
function note(size: number, root: Buffer = randomBytes(32)): string {
  return signCheckpoint({ origin: ORIGIN, size, rootHash: root, extensions: [] }, keys.signer);
}

function apiError(code: number): ApiException<unknown> {
  return new ApiException(code, `HTTP ${code}`, {}, {});
}

/**
 * An in-memory ConfigMap store with the API server's optimistic concurrency: a replace must carry the stored
 * resourceVersion (409 otherwise), a create of an existing name is a 409. `before` runs before each call (tests inject
 * races and failures there).
 */
/** What the API server stores: the body as plain data, with a new resourceVersion. */
function stamped(body: V1ConfigMap, version: number): V1ConfigMap {
  const copy = JSON.parse(JSON.stringify(body)) as V1ConfigMap;
  copy.metadata = Object.assign(copy.metadata ?? {}, { resourceVersion: String(version) });
  return copy;
}

function fakeApi() {
  let stored: V1ConfigMap | undefined;
  let version = 0;
  const calls: string[] = [];
  const api = {
    /** Runs before each call with its name (tests inject races and failures). */
    before: ((): Promise<void> => Promise.resolve()) as (call: string) => Promise<void>,
    get stored() {
      return stored;
    },
    /** Another writer's update, as the API server would apply it. */
    put(data: Record<string, string>) {
      version++;
      stored = {
        metadata: { name: AUDIT_CHECKPOINTS_CONFIGMAP, namespace: NS, resourceVersion: String(version) },
        data: { ...(stored?.data ?? {}), ...data },
      };
    },
    calls,
    core: {
      readNamespacedConfigMap: async (p: { namespace: string; name: string }): Promise<V1ConfigMap> => {
        calls.push('read');
        await api.before('read');
        expect(p).toEqual({ namespace: NS, name: AUDIT_CHECKPOINTS_CONFIGMAP });
        if (stored === undefined) throw apiError(404);
        return structuredClone(stored);
      },
      createNamespacedConfigMap: async (p: {
        namespace: string;
        body: V1ConfigMap;
      }): Promise<V1ConfigMap> => {
        calls.push('create');
        await api.before('create');
        if (stored !== undefined) throw apiError(409);
        version++;
        stored = stamped(p.body, version);
        return structuredClone(stored);
      },
      replaceNamespacedConfigMap: async (p: {
        namespace: string;
        name: string;
        body: V1ConfigMap;
      }): Promise<V1ConfigMap> => {
        calls.push('replace');
        await api.before('replace');
        if (stored === undefined) throw apiError(404);
        if (p.body.metadata?.resourceVersion !== stored.metadata?.resourceVersion) throw apiError(409);
        version++;
        stored = stamped(p.body, version);
        return structuredClone(stored);
      },
    },
  };
  return api;
}

function setup(options: { retryMs?: { min: number; max: number }; trusted?: string } = {}) {
  const api = fakeApi();
  const metrics = new OperatorMetrics();
  const { logger, lines } = capturingLogger();
  const events: { kind: string; type: string; reason: string; message: string }[] = [];
  const publisher = new CheckpointPublisher({
    core: api.core,
    namespace: NS,
    writer: WRITER,
    logger,
    metrics,
    events: {
      record: (object, type, reason, message) => {
        events.push({ kind: object.kind ?? '', type, reason, message });
      },
    },
    now: () => 1_767_225_600_000,
    ...options,
  });
  const gauge = async (name: string): Promise<number | undefined> => {
    const metric = await metrics.registry.getSingleMetric(name)?.get();
    return metric?.values.find((v) => v.labels.writer === WRITER)?.value;
  };
  /** A publisher as a restarted process makes it: the same API and metrics, a fresh refusal state. */
  const restart = (trusted?: string) =>
    new CheckpointPublisher({
      core: api.core,
      namespace: NS,
      writer: WRITER,
      logger,
      metrics,
      events: { record: () => undefined },
      ...(trusted === undefined ? {} : { trusted }),
    });
  return { api, metrics, lines, events, publisher, gauge, restart };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('CheckpointPublisher', () => {
  it('creates the ConfigMap when absent, with the note under the writer name, and sets the metrics', async () => {
    const { api, publisher, gauge, events } = setup();
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
    const n = note(5);
    publisher.publish(n);
    await publisher.idle();
    expect(api.calls).toEqual(['read', 'create']);
    expect(api.stored?.data).toEqual({ [WRITER]: n });
    expect(api.stored?.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'strongroom' });
    expect(await gauge('strongroom_audit_checkpoint_size')).toBe(5);
    expect(await gauge('strongroom_audit_checkpoint_published_timestamp_seconds')).toBe(1_767_225_600);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
    expect(events).toEqual([]);
  });

  it("updates with the read resourceVersion, keeping other writers' keys; a conflict re-reads and retries", async () => {
    const { api, publisher } = setup();
    api.put({ 'replica-1': 'theirs' });
    let raced = false;
    api.before = (call) => {
      // Another replica updates its own key between our read and our replace: our replace is a 409.
      if (call === 'replace' && !raced) {
        raced = true;
        api.put({ 'replica-2': 'also theirs' });
      }
      return Promise.resolve();
    };
    const n = note(7);
    publisher.publish(n);
    await publisher.idle();
    expect(api.calls).toEqual(['read', 'replace', 'read', 'replace']);
    expect(api.stored?.data).toEqual({ 'replica-1': 'theirs', 'replica-2': 'also theirs', [WRITER]: n });
  });

  it('a concurrent create (409) re-reads and updates', async () => {
    const { api, publisher } = setup();
    api.before = (call) => {
      if (call === 'create') api.put({ 'replica-1': 'first' });
      return Promise.resolve();
    };
    const n = note(3);
    publisher.publish(n);
    await publisher.idle();
    expect(api.calls).toEqual(['read', 'create', 'read', 'replace']);
    expect(api.stored?.data).toEqual({ 'replica-1': 'first', [WRITER]: n });
  });

  it('coalesces: one write in flight, and of the notes that arrive meanwhile only the latest is written', async () => {
    const { api, publisher, gauge } = setup();
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let inFlight = 0;
    let most = 0;
    api.before = async (call) => {
      if (call === 'read') {
        inFlight++;
        most = Math.max(most, inFlight);
        await gate;
      }
    };
    const written: string[] = [];
    const create = api.core.createNamespacedConfigMap;
    const replace = api.core.replaceNamespacedConfigMap;
    api.core.createNamespacedConfigMap = async (p) => {
      written.push(p.body.data?.[WRITER] ?? '');
      inFlight--;
      return create(p);
    };
    api.core.replaceNamespacedConfigMap = async (p) => {
      written.push(p.body.data?.[WRITER] ?? '');
      inFlight--;
      return replace(p);
    };
    const notes = [note(1), note(2), note(3), note(4)];
    for (const n of notes) publisher.publish(n);
    open();
    await publisher.idle();
    expect(written).toEqual([notes[0], notes[3]]);
    expect(most).toBe(1);
    expect(api.stored?.data?.[WRITER]).toBe(notes[3]);
    expect(await gauge('strongroom_audit_checkpoint_size')).toBe(4);
  });

  it('re-publishing the same note writes nothing', async () => {
    const { api, publisher } = setup();
    const n = note(2);
    publisher.publish(n);
    await publisher.idle();
    publisher.publish(n);
    await publisher.idle();
    expect(api.calls).toEqual(['read', 'create', 'read']);
  });

  for (const [what, published, candidate, reason] of [
    [
      'a smaller checkpoint (a rolled-back log)',
      note(8),
      note(4),
      /has size 8, this log's latest only 4: the log was rolled back/,
    ],
    [
      'one of the same size with another root (a fork)',
      note(8, Buffer.alloc(32, 1)),
      note(8, Buffer.alloc(32, 2)),
      /both have size 8 with different roots: a forked log/,
    ],
    ['an unreadable published value', 'not a note', note(9), /the published value is not a checkpoint/],
  ] as const) {
    it(`never replaces a published checkpoint by ${what}: refuses, logs, sets the gauge, records an Event`, async () => {
      const { api, publisher, gauge, lines, events, restart } = setup();
      api.put({ [WRITER]: published });
      publisher.publish(candidate);
      await publisher.idle();
      expect(api.calls).toEqual(['read']);
      expect(api.stored?.data?.[WRITER]).toBe(published);
      expect(await gauge('strongroom_audit_rollback_detected')).toBe(1);
      const error = lines.find((l) => l.level === 'error');
      expect(error).toMatchObject({ message: 'audit checkpoint rollback detected', writer: WRITER });
      expect(String(error?.reason)).toMatch(reason);
      expect(events).toEqual([
        {
          kind: 'ConfigMap',
          type: 'Warning',
          reason: ROLLBACK_EVENT_REASON,
          message: expect.stringMatching(reason) as string,
        },
      ]);
      // Sticky: nothing more is written, even once the value is gone, and the gauge stays 1 until a restart.
      delete api.stored?.data?.[WRITER];
      publisher.publish(note(20));
      await publisher.idle();
      await publisher.stop();
      expect(api.calls).toEqual(['read']);
      expect(publisher.refused).toMatch(reason);
      expect(await gauge('strongroom_audit_rollback_detected')).toBe(1);
      expect(events).toHaveLength(1);
      // After a restart (an administrator removed the value, accepting the loss) publishing resumes.
      const again = restart();
      expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
      again.publish(candidate);
      await again.idle();
      expect(api.stored?.data?.[WRITER]).toBe(candidate);
    });
  }

  it('never replaces a foreign checkpoint by a larger one (a fork that its own log outgrew), and stays refused', async () => {
    const { api, publisher, gauge, events } = setup({ trusted: note(5) });
    // Not the checkpoint this log was verified against, nor one it wrote: a fork or a forgery, smaller than this log.
    const foreign = note(7);
    api.put({ [WRITER]: foreign });
    publisher.publish(note(8));
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(foreign);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(1);
    expect(events).toEqual([
      expect.objectContaining({
        reason: ROLLBACK_EVENT_REASON,
        message: expect.stringMatching(
          /by size 8: the published checkpoint \(size 7\) is neither the one this log was verified against on open nor one this replica wrote.*stays refused until the replica restarts/,
        ) as string,
      }),
    ]);
    // This log growing further changes nothing: the foreign value is kept and the gauge stays 1.
    publisher.publish(note(60));
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(foreign);
    expect(api.calls).toEqual(['read']);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(1);
    expect(events).toHaveLength(1);
  });

  it('replaces the trusted checkpoint of the open, then its own writes', async () => {
    const trusted = note(5);
    const { api, publisher, gauge } = setup({ trusted });
    api.put({ [WRITER]: trusted, 'replica-1': 'theirs' });
    const first = note(6);
    publisher.publish(first);
    await publisher.idle();
    expect(api.stored?.data).toEqual({ [WRITER]: first, 'replica-1': 'theirs' });
    const second = note(9);
    publisher.publish(second);
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(second);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
    expect(await gauge('strongroom_audit_checkpoint_size')).toBe(9);
  });

  it('a write whose answer was lost but that was stored is still its own: the next one replaces it', async () => {
    vi.useFakeTimers();
    const { api, publisher, gauge } = setup({ retryMs: { min: 1000, max: 1000 } });
    const replace = api.core.replaceNamespacedConfigMap;
    let lose = true;
    api.put({ 'replica-1': 'theirs' });
    api.core.replaceNamespacedConfigMap = async (p) => {
      const stored = await replace(p);
      if (lose) {
        lose = false;
        throw apiError(504); // stored, but the client never heard
      }
      return stored;
    };
    const lost = note(3);
    publisher.publish(lost);
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(lost);
    const next = note(4);
    publisher.publish(next);
    await vi.advanceTimersByTimeAsync(1000);
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(next);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
    await publisher.stop();
  });

  it('writes a removed key again, with a warning (nothing is overwritten)', async () => {
    const trusted = note(5);
    const { api, publisher, lines, gauge } = setup({ trusted });
    api.put({ 'replica-1': 'theirs' });
    const n = note(6);
    publisher.publish(n);
    await publisher.idle();
    expect(api.stored?.data).toEqual({ 'replica-1': 'theirs', [WRITER]: n });
    expect(lines.find((l) => l.level === 'warn')?.message).toMatch(/was removed; publishing it again/);
    expect(await gauge('strongroom_audit_rollback_detected')).toBe(0);
  });

  it('a failed write is retried after a backoff, with the newest note by then', async () => {
    vi.useFakeTimers();
    const { api, publisher, lines } = setup({ retryMs: { min: 1000, max: 4000 } });
    let failures = 2;
    api.before = (call) =>
      call === 'read' && failures-- > 0 ? Promise.reject(apiError(500)) : Promise.resolve();
    const first = note(1);
    publisher.publish(first);
    await publisher.idle();
    expect(api.stored).toBeUndefined();
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    const newer = note(2);
    publisher.publish(newer); // queued behind the backoff, not written at once
    await publisher.idle();
    expect(api.calls).toEqual(['read']);
    await vi.advanceTimersByTimeAsync(1000);
    await publisher.idle();
    expect(api.stored).toBeUndefined(); // the second failure; the backoff doubles
    expect(lines.filter((l) => l.level === 'warn').at(-1)).toMatchObject({ retryInMs: 2000 });
    await vi.advanceTimersByTimeAsync(2000);
    await publisher.idle();
    expect(api.stored?.data?.[WRITER]).toBe(newer);
    await publisher.stop();
  });

  it('stop publishes the pending final checkpoint once even during a backoff, and nothing after', async () => {
    vi.useFakeTimers();
    const { api, publisher, lines } = setup({ retryMs: { min: 30_000, max: 30_000 } });
    let failures = 1;
    api.before = (call) =>
      call === 'read' && failures-- > 0 ? Promise.reject(apiError(500)) : Promise.resolve();
    publisher.publish(note(1));
    await publisher.idle();
    expect(api.stored).toBeUndefined(); // in a 30 s backoff now
    const final = note(2); // the checkpoint the log's close writes
    publisher.publish(final);
    await publisher.stop();
    expect(api.stored?.data?.[WRITER]).toBe(final);
    expect(api.calls).toEqual(['read', 'read', 'create']);
    publisher.publish(note(3));
    await vi.advanceTimersByTimeAsync(60_000);
    await publisher.idle();
    expect(api.calls).toHaveLength(3);
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
  });

  it('a final checkpoint that still fails at stop is logged, not retried', async () => {
    vi.useFakeTimers();
    const { api, publisher, lines } = setup({ retryMs: { min: 1000, max: 1000 } });
    api.before = () => Promise.reject(apiError(503));
    publisher.publish(note(1));
    await publisher.idle();
    await publisher.stop();
    expect(api.calls).toEqual(['read', 'read']);
    expect(lines.at(-1)).toMatchObject({
      level: 'warn',
      message: 'the final audit checkpoint could not be published',
    });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(api.calls).toHaveLength(2);
  });

  it('stop with nothing pending writes nothing, and nothing is published after it', async () => {
    const { api, publisher } = setup();
    await publisher.stop();
    publisher.publish(note(1));
    await publisher.idle();
    expect(api.calls).toEqual([]);
  });
});

describe('readPublishedCheckpoint', () => {
  it("returns the writer's note, undefined without the ConfigMap or the key, and throws on other failures", async () => {
    const api = fakeApi();
    await expect(readPublishedCheckpoint(api.core as never, NS, WRITER)).resolves.toBeUndefined();
    api.put({ 'replica-1': 'x' });
    await expect(readPublishedCheckpoint(api.core as never, NS, WRITER)).resolves.toBeUndefined();
    const n = note(3);
    api.put({ [WRITER]: n });
    await expect(readPublishedCheckpoint(api.core as never, NS, WRITER)).resolves.toBe(n);
    api.before = () => Promise.reject(apiError(403));
    await expect(readPublishedCheckpoint(api.core as never, NS, WRITER)).rejects.toMatchObject({ code: 403 });
  });
});

describe('refusal', () => {
  const root = randomBytes(32);
  const cp = (size: number, r = root, origin = ORIGIN) => ({ origin, size, rootHash: r, extensions: [] });

  it('lets a note replace the same one or a smaller one of its own', () => {
    expect(refusal(note(5, root), cp(5), true)).toBeUndefined();
    expect(refusal(note(5, root), cp(6, randomBytes(32)), true)).toBeUndefined();
  });

  it('refuses a foreign value whatever its size, naming what it looks like', () => {
    expect(refusal(note(5, root), cp(6), false)).toMatch(/neither the one this log was verified against/);
    expect(refusal(note(5, root), cp(5), false)).toMatch(/neither/);
    expect(refusal(note(50), cp(6), false)).toMatch(
      /has size 50, this log's latest only 6: the log was rolled back/,
    );
    expect(refusal(note(6, Buffer.alloc(32)), cp(6), false)).toMatch(/different roots: a forked log/);
  });

  it('refuses another origin and garbage even when trusted', () => {
    expect(refusal(note(5, root), cp(6, root, 'strongroom.audit/x/y'), true)).toMatch(/for origin/);
    expect(refusal('garbage', cp(6), true)).toMatch(/not a checkpoint/);
  });
});
