/**
 * Wire-protocol cases a real API server will not produce on demand in a test: a 410 Gone on a watch (an ERROR event,
 * or the HTTP status) and a stream the server ends normally. A scripted HTTP server plays the API server's side of
 * list + watch; everything else is tested against a real kube-apiserver in informer.int.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import winston from 'winston';
import { kubeConfigFor } from '../../test/harness/fake-kubeconfig.ts';
import { Informer, objectKey } from './informer.ts';

type WatchScript = (res: ServerResponse, query: URLSearchParams) => void;

interface FakeServer {
  readonly server: Server;
  readonly url: string;
  readonly requests: URLSearchParams[];
}

const line = (type: string, object: object): string => `${JSON.stringify({ type, object })}\n`;
const configMap = (name: string, rv: string): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: rv },
});

async function scriptedServer(
  lists: V1ConfigMap[][],
  listRvs: string[],
  watches: WatchScript[],
): Promise<FakeServer> {
  const requests: URLSearchParams[] = [];
  let listCalls = 0;
  let watchCalls = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url.searchParams);
    if (url.pathname !== '/api/v1/namespaces/ns/configmaps') {
      res.writeHead(404).end();
      return;
    }
    if (url.searchParams.get('watch') === 'true') {
      const script = watches[watchCalls++];
      if (script) script(res, url.searchParams);
      else res.writeHead(200).flushHeaders(); // hold open
      return;
    }
    const i = Math.min(listCalls++, lists.length - 1);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        kind: 'ConfigMapList',
        apiVersion: 'v1',
        metadata: { resourceVersion: listRvs[i] },
        // list items carry no apiVersion/kind
        items: (lists[i] ?? []).map((o) => ({ metadata: o.metadata })),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, requests };
}

async function waitFor(what: string, probe: () => boolean, trace: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; trace: ${trace.join(', ')}`);
    await sleep(10);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function informerOn(fake: FakeServer, calls: string[]): Informer<V1ConfigMap> {
  const informer = new Informer<V1ConfigMap>({
    kubeConfig: kubeConfigFor(fake.url),
    resource: { group: '', version: 'v1', plural: 'configmaps', namespace: 'ns' },
    logger: winston.createLogger({ silent: true }),
    backoffInitialMs: 10,
    backoffMaxMs: 20,
    observer: {
      connected: () => calls.push('connected'),
      error: (_r, reason) => calls.push(`error:${reason}`),
      relist: (_r, cause) => calls.push(`relist:${cause}`),
    },
  });
  informer.onEvent((e) => calls.push(`${e.type}:${e.key}`));
  cleanups.push(async () => {
    await informer.stop();
    fake.server.closeAllConnections();
    await new Promise((resolve) => fake.server.close(resolve));
  });
  return informer;
}

const watchQueries = (fake: FakeServer) => fake.requests.filter((q) => q.get('watch') === 'true');

describe('Informer watch protocol', () => {
  it('relists on a 410 ERROR event and on an HTTP 410, diffing the new list against the cache', async () => {
    const fake = await scriptedServer(
      [[configMap('a', '10')], [configMap('a', '10'), configMap('b', '21')], [configMap('b', '21')]],
      ['10', '21', '30'],
      [
        (res) => {
          res.writeHead(200);
          res.write(line('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' }));
        },
        (res) => res.writeHead(410).end(),
      ],
    );
    const calls: string[] = [];
    const informer = informerOn(fake, calls);
    await informer.start();
    await waitFor('the third watch', () => calls.filter((c) => c === 'connected').length === 2, calls);
    expect(calls).toEqual([
      'relist:initial',
      'added:ns/a',
      'connected',
      'error:gone', // ERROR event with code 410
      'relist:gone',
      'added:ns/b', // a unchanged (same resourceVersion): no event
      'error:gone', // HTTP 410
      'relist:gone',
      'deleted:ns/a',
      'connected',
    ]);
    // Every watch starts from the resourceVersion of the list before it, with bookmarks and a 5-10 min timeout.
    const watches = watchQueries(fake);
    expect(watches.map((q) => q.get('resourceVersion'))).toEqual(['10', '21', '30']);
    for (const q of watches) {
      expect(q.get('allowWatchBookmarks')).toBe('true');
      const timeout = Number(q.get('timeoutSeconds'));
      expect(timeout).toBeGreaterThanOrEqual(300);
      expect(timeout).toBeLessThanOrEqual(600);
    }
    expect(informer.list().map(objectKey)).toEqual(['ns/b']);
  });

  it('resumes a normally ended stream from the last bookmark without relisting', async () => {
    const fake = await scriptedServer(
      [[configMap('a', '10')]],
      ['10'],
      [
        (res) => {
          res.writeHead(200);
          res.write(line('MODIFIED', configMap('a', '11')));
          res.write(line('BOOKMARK', { kind: 'ConfigMap', metadata: { resourceVersion: '15' } }));
          res.end();
        },
      ],
    );
    const calls: string[] = [];
    const informer = informerOn(fake, calls);
    await informer.start();
    await waitFor('the second watch', () => watchQueries(fake).length === 2, calls);
    expect(watchQueries(fake).map((q) => q.get('resourceVersion'))).toEqual(['10', '15']);
    expect(calls.filter((c) => c.startsWith('relist:'))).toEqual(['relist:initial']);
    expect(calls).toContain('modified:ns/a');
    expect(informer.get('ns/a')?.metadata?.resourceVersion).toBe('11');
  });

  it('treats a server error on the watch as retryable, and relists after repeated failures to resume', async () => {
    const fail: WatchScript = (res) => res.writeHead(500).end();
    const fake = await scriptedServer([[configMap('a', '10')]], ['10'], [fail, fail, fail]);
    const calls: string[] = [];
    const informer = informerOn(fake, calls);
    await informer.start();
    await waitFor('a watch after the relist', () => calls.includes('connected'), calls);
    expect(calls).toEqual([
      'relist:initial',
      'added:ns/a',
      'error:http-500',
      'error:http-500',
      'error:http-500',
      'relist:error',
      'connected',
    ]);
    expect(informer.hasSynced()).toBe(true);
  });
});

describe('objectKey', () => {
  it('is namespace/name for namespaced objects and name for cluster-scoped ones, and refuses a nameless object', () => {
    expect(objectKey({ metadata: { name: 'm', namespace: 'n' } })).toBe('n/m');
    expect(objectKey({ metadata: { name: 'node-1' } })).toBe('node-1');
    expect(() => objectKey({ metadata: {} })).toThrow(TypeError);
  });
});
