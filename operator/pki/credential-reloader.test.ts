/** The credential reloader, with an injected sleep that the test releases by hand: no real time passes. */
import { describe, expect, it } from 'vitest';
import { CredentialReloadError, CredentialReloader, type Sleep } from './credential-reloader.ts';

/** A sleep that records each wait and resolves it only when told to (or rejects it when its signal aborts). */
function manualSleep() {
  const waits: { ms: number; ref: boolean; release: () => void }[] = [];
  const requested: (() => void)[] = [];
  const sleep: Sleep = (ms, signal, ref) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason as Error);
        return;
      }
      signal.addEventListener('abort', () => {
        reject(signal.reason as Error);
      });
      waits.push({ ms, ref, release: resolve });
      requested.shift()?.();
    });
  return {
    sleep,
    waits,
    /** Resolves once the next wait (counting from the ones already requested) is requested. */
    async waitRequested(count: number): Promise<void> {
      while (waits.length < count) await new Promise<void>((resolve) => requested.push(resolve));
    },
  };
}

/** A sleep that returns at once, recording the requested delays. */
function instantSleep() {
  const delays: number[] = [];
  const sleep: Sleep = (ms) => {
    delays.push(ms);
    return Promise.resolve();
  };
  return { sleep, delays };
}

function recordingLog() {
  const lines: { level: 'info' | 'warn'; message: string; meta: Record<string, unknown> }[] = [];
  return {
    lines,
    logger: {
      info: (message: string, meta: Record<string, unknown>) => lines.push({ level: 'info', message, meta }),
      warn: (message: string, meta: Record<string, unknown>) => lines.push({ level: 'warn', message, meta }),
    },
  };
}

/** A source whose reading the test sets; `undefined` makes the read fail. */
function source(initial: string | undefined) {
  const s = {
    value: initial,
    reads: 0,
    read: () => {
      s.reads++;
      return s.value === undefined ? Promise.reject(new Error('no Secret yet')) : Promise.resolve(s.value);
    },
  };
  return s;
}

function reloader(s: ReturnType<typeof source>, sleep: Sleep, changes: string[] = []) {
  const log = recordingLog();
  return {
    log,
    changes,
    reloader: new CredentialReloader<string>({
      what: 'the test certificate',
      read: s.read,
      same: (a, b) => a === b,
      onChange: (next) => changes.push(next),
      refreshMs: 30_000,
      backoff: { firstMs: 200, maxMs: 2000 },
      logger: log.logger,
      sleep,
    }),
  };
}

describe('CredentialReloader.waitForFirst', () => {
  it('returns the first reading at once when the material is there', async () => {
    const s = source('cert-1');
    const { sleep, delays } = instantSleep();
    const { reloader: r } = reloader(s, sleep);
    await expect(r.waitForFirst()).resolves.toBe('cert-1');
    expect(r.current).toBe('cert-1');
    expect(delays).toEqual([]);
  });

  it('retries with exponential backoff, capped, until the material appears', async () => {
    const s = source(undefined);
    const { sleep, delays } = instantSleep();
    const counting: Sleep = async (ms, signal, ref) => {
      await sleep(ms, signal, ref);
      if (delays.length === 7) s.value = 'cert-1';
    };
    const { reloader: r, log } = reloader(s, counting);
    await expect(r.waitForFirst()).resolves.toBe('cert-1');
    expect(delays).toEqual([200, 400, 800, 1600, 2000, 2000, 2000]);
    expect(s.reads).toBe(8);
    // Logged once for the problem (it did not change), not once per attempt.
    expect(log.lines).toEqual([
      { level: 'info', message: 'waiting for the test certificate', meta: { problem: 'no Secret yet' } },
    ]);
  });

  it('throws a typed error carrying the last failure when its signal aborts during the wait', async () => {
    const s = source(undefined);
    const m = manualSleep();
    const { reloader: r } = reloader(s, m.sleep);
    const abort = new AbortController();
    const waiting = r.waitForFirst(abort.signal);
    await m.waitRequested(1);
    abort.abort();
    const error = await waiting.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialReloadError);
    expect((error as CredentialReloadError).code).toBe('aborted');
    expect((error as CredentialReloadError).message).toBe('stopped while waiting for the test certificate');
    expect(((error as Error).cause as Error).message).toBe('no Secret yet');
    expect(s.reads).toBe(1);
    expect(r.current).toBeUndefined();
  });

  it('does not read at all when already aborted, and stop() aborts a wait in progress', async () => {
    const s = source('cert-1');
    const m = manualSleep();
    const { reloader: r } = reloader(s, m.sleep);
    const error = await r.waitForFirst(AbortSignal.abort()).catch((e: unknown) => e);
    expect((error as CredentialReloadError).code).toBe('aborted');
    expect(s.reads).toBe(0);

    const t = source(undefined);
    const other = reloader(t, m.sleep).reloader;
    const waiting = other.waitForFirst();
    await m.waitRequested(1);
    other.stop();
    await expect(waiting).rejects.toMatchObject({ name: 'CredentialReloadError', code: 'aborted' });
  });

  it('drops a reading that arrives after the abort', async () => {
    const abort = new AbortController();
    const r = new CredentialReloader<string>({
      what: 'the test certificate',
      read: () => {
        abort.abort();
        return Promise.resolve('cert-1');
      },
      same: (a, b) => a === b,
      onChange: () => undefined,
      refreshMs: 1000,
      logger: recordingLog().logger,
      sleep: instantSleep().sleep,
    });
    await expect(r.waitForFirst(abort.signal)).rejects.toMatchObject({ code: 'aborted' });
    expect(r.current).toBeUndefined();
  });
});

describe('CredentialReloader.reload and refreshing', () => {
  it('reload picks up new material, reports whether it changed, and keeps the current one when the read fails', async () => {
    const s = source('cert-1');
    const { reloader: r, changes } = reloader(s, instantSleep().sleep);
    await r.waitForFirst();
    await expect(r.reload()).resolves.toBe(false);
    expect(changes).toEqual([]);
    s.value = 'cert-2';
    await expect(r.reload()).resolves.toBe(true);
    expect(changes).toEqual(['cert-2']);
    expect(r.current).toBe('cert-2');
    s.value = undefined;
    const error = await r.reload().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialReloadError);
    expect(error).toMatchObject({
      code: 'unavailable',
      message: 'cannot read the test certificate: no Secret yet',
    });
    expect(((error as Error).cause as Error).message).toBe('no Secret yet');
    expect(r.current).toBe('cert-2');
  });

  it('re-reads every refreshMs without holding the process, survives a failed read, and stops', async () => {
    const s = source('cert-1');
    const m = manualSleep();
    const { reloader: r, changes, log } = reloader(s, m.sleep);
    await r.waitForFirst();
    r.startRefreshing();
    r.startRefreshing(); // a second call starts no second loop
    await m.waitRequested(1);
    expect(m.waits).toHaveLength(1);
    expect(m.waits[0]).toMatchObject({ ms: 30_000, ref: false });

    s.value = 'cert-2';
    m.waits[0]?.release();
    await m.waitRequested(2);
    expect(changes).toEqual(['cert-2']);

    s.value = undefined;
    m.waits[1]?.release();
    await m.waitRequested(3);
    expect(r.current).toBe('cert-2');
    expect(log.lines.at(-1)).toEqual({
      level: 'warn',
      message: 'could not re-read the test certificate; keeping the current one',
      meta: { error: 'cannot read the test certificate: no Secret yet' },
    });

    s.value = 'cert-3';
    m.waits[2]?.release();
    await m.waitRequested(4);
    expect(changes).toEqual(['cert-2', 'cert-3']);

    const readsBefore = s.reads;
    r.stop();
    // The pending wait rejected with the abort: no further read, and no further wait.
    await new Promise((resolve) => setImmediate(resolve));
    expect(s.reads).toBe(readsBefore);
    expect(m.waits).toHaveLength(4);
    s.value = 'cert-4';
    await expect(r.reload()).resolves.toBe(false);
    expect(changes).toEqual(['cert-2', 'cert-3']);
    expect(r.current).toBe('cert-3');
  });
});
