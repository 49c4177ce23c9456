/**
 * PooledKubeConfig against a real HTTPS server on loopback (real TLS, client certificates): API calls reuse one
 * connection, where client-node's own KubeConfig opens one per call; a rotated client certificate gets a new one.
 */
import { createServer, type Server } from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createCertificateAuthority, issueCertificate, type KeyPair } from '../../test/cluster/pki.ts';
import { PooledKubeConfig } from './kubeconfig.ts';

const ca = createCertificateAuthority('pool-test-ca', 1);
const serving = issueCertificate(ca, {
  commonName: 'apiserver',
  usage: 'server',
  ipAddresses: ['127.0.0.1'],
});
const clientA = issueCertificate(ca, { commonName: 'a', usage: 'client' });
const clientB = issueCertificate(ca, { commonName: 'b', usage: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'strongroom-pool-'));
let server: Server;
let url = '';
let connections = 0;
const peers: string[] = [];

beforeAll(async () => {
  server = createServer(
    {
      key: serving.keyPem,
      cert: serving.certPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      peers.push(String(peer.subject.CN));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', metadata: {}, items: [] }));
    },
  );
  server.on('secureConnection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function configure(kc: KubeConfig, client: KeyPair | { certFile: string; keyFile: string }): void {
  const user =
    'certPem' in client
      ? {
          name: 'u',
          certData: Buffer.from(client.certPem).toString('base64'),
          keyData: Buffer.from(client.keyPem).toString('base64'),
        }
      : { name: 'u', certFile: client.certFile, keyFile: client.keyFile };
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: url, caData: Buffer.from(ca.certPem).toString('base64'), skipTLSVerify: false },
    ],
    users: [user],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
}

async function calls(kc: KubeConfig, n: number): Promise<number> {
  const before = connections;
  const core = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < n; i++) {
    expect((await core.listNamespace()).items).toEqual([]);
  }
  return connections - before;
}

describe('PooledKubeConfig', () => {
  it("reuses one TLS connection for many calls, where client-node's KubeConfig opens one per call", async () => {
    const plain = new KubeConfig();
    configure(plain, clientA);
    expect(await calls(plain, 5)).toBe(5);
    const pooled = new PooledKubeConfig();
    configure(pooled, clientA);
    // One connection, plus at most one more when a call starts before the previous response has released its
    // connection back to the pool; never one per call.
    const opened = await calls(pooled, 20);
    expect(opened).toBeGreaterThanOrEqual(1);
    expect(opened).toBeLessThanOrEqual(2);
    await pooled.closePools();
  });

  it('opens a new pool with the new certificate once a rotated certificate file is noticed', async () => {
    const certFile = join(dir, 'client.crt');
    const keyFile = join(dir, 'client.key');
    writeFileSync(certFile, clientA.certPem);
    writeFileSync(keyFile, clientA.keyPem);
    const pooled = new PooledKubeConfig();
    let clock = 0;
    pooled.now = () => clock;
    configure(pooled, { certFile, keyFile });
    peers.length = 0;
    expect(await calls(pooled, 6)).toBeLessThanOrEqual(2);
    writeFileSync(certFile, clientB.certPem);
    writeFileSync(keyFile, clientB.keyPem);
    // Within the identity TTL the old certificate is still used (files are not re-read on every call)...
    clock += 1_000;
    expect(await calls(pooled, 1)).toBe(0);
    // ...after it, the new certificate gets a new pool.
    clock += 60_000;
    const opened = await calls(pooled, 6);
    expect(opened).toBeGreaterThanOrEqual(1);
    expect(opened).toBeLessThanOrEqual(2);
    expect(peers).toEqual([...Array<string>(7).fill('a'), ...Array<string>(6).fill('b')]);
    await pooled.closePools();
  });
});
