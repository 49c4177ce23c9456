import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import winston from 'winston';
import { kubeConfigFor } from '../../test/harness/fake-kubeconfig.ts';
import { InformerFactory } from './informer-factory.ts';

const logger = winston.createLogger({ silent: true });
const SECRETS = { group: '', version: 'v1', plural: 'secrets', namespace: 'ns' } as const;
const CONFIG_MAPS = { group: '', version: 'v1', plural: 'configmaps', namespace: 'ns' } as const;

/** Answers every list with one object and holds every watch open. */
async function fakeApiServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('watch') === 'true') {
      res.writeHead(200).flushHeaders();
      return;
    }
    const kind = url.pathname.endsWith('/secrets') ? 'Secret' : 'ConfigMap';
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        kind: `${kind}List`,
        apiVersion: 'v1',
        metadata: { resourceVersion: '5' },
        items: [
          {
            metadata: { name: `one-${kind.toLowerCase()}`, namespace: 'ns', uid: 'u', resourceVersion: '5' },
          },
        ],
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('InformerFactory', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('makes one informer per resource and selectors, typed for its caller', () => {
    const factory = new InformerFactory({ kubeConfig: kubeConfigFor('http://127.0.0.1:1'), logger });
    const secrets = factory.for<V1Secret>(SECRETS);
    expect(factory.for<V1Secret>({ ...SECRETS })).toBe(secrets);
    const named = factory.for<V1Secret>({ ...SECRETS, fieldSelector: 'metadata.name=x' });
    const labelled = factory.for<V1Secret>({ ...SECRETS, labelSelector: 'role=x' });
    const elsewhere = factory.for<V1Secret>({ ...SECRETS, namespace: 'other' });
    expect(new Set([secrets, named, labelled, elsewhere]).size).toBe(4);
    const made = [secrets, named, labelled, elsewhere];
    expect(factory.all()).toHaveLength(4);
    factory.all().forEach((informer, i) => {
      expect(informer).toBe(made[i]);
    });
  });

  it('refuses the same resource with another transform', () => {
    const factory = new InformerFactory({ kubeConfig: kubeConfigFor('http://127.0.0.1:1'), logger });
    const slim = (s: V1Secret): V1Secret => ({ metadata: s.metadata ?? {} });
    const slimmed = factory.for<V1Secret>(SECRETS, { transform: slim });
    expect(factory.for<V1Secret>(SECRETS, { transform: slim })).toBe(slimmed);
    expect(() => factory.for<V1Secret>(SECRETS)).toThrow(TypeError);
  });

  it('as a runnable, starts every informer and resolves once all have synced; stops them all', async () => {
    const { server, url } = await fakeApiServer();
    cleanup.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => {
            resolve();
          });
        }),
    );
    const factory = new InformerFactory({ kubeConfig: kubeConfigFor(url), logger });
    const secrets = factory.for<V1Secret>(SECRETS);
    const configMaps = factory.for<V1ConfigMap>(CONFIG_MAPS);
    expect(factory.needsLeader).toBe(false);
    await factory.start();
    expect(secrets.hasSynced() && configMaps.hasSynced()).toBe(true);
    expect(secrets.get('ns/one-secret')?.metadata?.name).toBe('one-secret');
    expect(configMaps.list().map((c) => c.metadata?.name)).toEqual(['one-configmap']);
    // The set is closed once started: a new resource is refused, an existing one is still handed out.
    expect(() => factory.for<V1Secret>({ ...SECRETS, namespace: 'late' })).toThrow(TypeError);
    expect(factory.for<V1Secret>(SECRETS)).toBe(secrets);
    await factory.stop();
    expect(factory.all().some((i) => i.healthy())).toBe(false);
  });
});
