import { describe, expect, it } from 'vitest';
import { BackgroundServer, type BackgroundServerTarget } from './server.ts';

/** A server whose start the test settles by hand. */
function fakeServer() {
  const started = Promise.withResolvers<undefined>();
  const calls: string[] = [];
  let listening = false;
  const server: BackgroundServerTarget = {
    start: (signal) => {
      calls.push('start');
      signal.addEventListener('abort', () => {
        started.reject(new Error('aborted'));
      });
      return started.promise.then(() => {
        listening = true;
      });
    },
    stop: () => {
      calls.push('stop');
      listening = false;
      return Promise.resolve();
    },
    ready: () => listening,
  };
  return { server, started, calls };
}

describe('BackgroundServer', () => {
  it('starts without waiting for the server to listen, and reports it ready once it does', async () => {
    const { server, started, calls } = fakeServer();
    const fatal: string[] = [];
    const runnable = new BackgroundServer('webhook', 'the injection webhook', () => server);
    expect(runnable.ready()).toBe(false);
    runnable.start({ fatal: (r) => fatal.push(r) });
    expect(calls).toEqual(['start']);
    expect(runnable.ready()).toBe(false);
    started.resolve(undefined);
    await Promise.resolve();
    await Promise.resolve();
    expect(runnable.ready()).toBe(true);
    await runnable.stop();
    expect(calls).toEqual(['start', 'stop']);
    expect(fatal).toEqual([]);
  });

  it('a failure to start is fatal', async () => {
    const { server, started } = fakeServer();
    const fatal: string[] = [];
    const runnable = new BackgroundServer('webhook', 'the injection webhook', () => server);
    runnable.start({ fatal: (r) => fatal.push(r) });
    started.reject(new Error('address in use'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(fatal).toEqual(['the injection webhook could not start: Error: address in use']);
  });

  it('stop aborts a start still waiting, which is then not fatal', async () => {
    const { server, calls } = fakeServer();
    const fatal: string[] = [];
    const runnable = new BackgroundServer('webhook', 'the injection webhook', () => server);
    runnable.start({ fatal: (r) => fatal.push(r) });
    await runnable.stop();
    expect(calls).toEqual(['start', 'stop']);
    expect(fatal).toEqual([]);
  });
});
