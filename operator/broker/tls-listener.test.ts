/** The broker's TLS listener over real TLS 1.3 on loopback, with certificates from the operator's own PKI code. */
import { X509Certificate } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorityCertificate, generateRsaKey, signLeafCertificate } from '../pki/certificates.ts';
import { TlsListener, type RefusedHandshake, type TlsIdentity } from './tls-listener.ts';

const HOUR = 3600_000;
let ca: { certPem: string; privateKeyPem: string };
let otherCa: { certPem: string; privateKeyPem: string };
let serving: TlsIdentity;
let key: { publicKeyPem: string; privateKeyPem: string };
let listener: TlsListener | undefined;

async function authority(name: string) {
  const k = await generateRsaKey(2048);
  return {
    certPem: createAuthorityCertificate(k, {
      commonName: name,
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 24 * HOUR),
    }),
    privateKeyPem: k.privateKeyPem,
  };
}

function leaf(issuer: typeof ca, usage: 'serverAuth' | 'clientAuth', notBefore: Date, notAfter: Date) {
  return signLeafCertificate(issuer, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'leaf',
    ...(usage === 'serverAuth'
      ? { dnsNames: ['broker.test'] }
      : { uris: ['spiffe://t/ns/a/sa/b', 'urn:strongroom:pod:0b3f9c1e-5d6a-4c2b-9e8f-7a6b5c4d3e2f'] }),
    usages: [usage],
    notBefore,
    notAfter,
  });
}

async function start(mutual: boolean) {
  const connections: TLSSocket[] = [];
  const refused: RefusedHandshake[] = [];
  listener = new TlsListener({
    host: '127.0.0.1',
    port: 0,
    mutual,
    onConnection: (socket) => {
      connections.push(socket);
      socket.end();
    },
    onRefused: (r) => refused.push(r),
  });
  const port = await listener.start(serving);
  return { port, connections, refused };
}

/** Connects, waits for the outcome; resolves with the server certificate serial or the error code. */
function dial(
  port: number,
  client?: { cert: string; key: string },
): Promise<{ serial?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: ca.certPem,
      servername: 'broker.test',
      ALPNProtocols: ['h2'],
      ...(client ?? {}),
    });
    let serial: string | undefined;
    socket.on('secureConnect', () => {
      serial = socket.getPeerX509Certificate()?.serialNumber;
      socket.write('x');
    });
    socket.on('error', (e: Error & { code?: string }) => {
      resolve({ error: e.code ?? e.message });
    });
    socket.on('close', () => {
      resolve(serial === undefined ? { error: 'closed' } : { serial });
    });
  });
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
};

beforeAll(async () => {
  ca = await authority('operator CA');
  otherCa = await authority('other CA');
  key = await generateRsaKey(2048);
  serving = {
    cert: Buffer.from(leaf(ca, 'serverAuth', new Date(Date.now() - HOUR), new Date(Date.now() + HOUR))),
    key: Buffer.from(key.privateKeyPem),
    ca: Buffer.from(ca.certPem),
  };
});

afterEach(async () => {
  await listener?.stop();
  listener = undefined;
});

describe('TlsListener (mutual)', () => {
  it('hands over a connection whose client certificate chains to the CA', async () => {
    const { port, connections, refused } = await start(true);
    const cert = leaf(ca, 'clientAuth', new Date(Date.now() - HOUR), new Date(Date.now() + HOUR));
    await dial(port, { cert, key: key.privateKeyPem });
    await until(() => connections.length > 0);
    expect(connections[0]?.authorized).toBe(true);
    expect(connections[0]?.alpnProtocol).toBe('h2');
    expect(refused).toEqual([]);
  });

  it('refuses a client without a certificate with the TLS alert, and reports it', async () => {
    const { port, connections, refused } = await start(true);
    const outcome = await dial(port);
    expect(outcome.error).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    await until(() => refused.length > 0);
    expect(refused).toHaveLength(1);
    expect(refused[0]?.code).toBe('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
    expect(connections).toEqual([]);
  });

  it.each([
    ['from another CA', 'other', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['expired', 'expired', 'CERT_HAS_EXPIRED'],
  ])('refuses a client certificate %s and reports what it claimed', async (_what, kind, code) => {
    const { port, connections, refused } = await start(true);
    const cert =
      kind === 'other'
        ? leaf(otherCa, 'clientAuth', new Date(Date.now() - HOUR), new Date(Date.now() + HOUR))
        : leaf(ca, 'clientAuth', new Date(Date.now() - 3 * HOUR), new Date(Date.now() - 2 * HOUR));
    await dial(port, { cert, key: key.privateKeyPem });
    await until(() => refused.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(refused).toHaveLength(1); // the teardown does not report a second, meaningless error
    expect(refused[0]?.code).toBe(code);
    expect(refused[0]?.claimed.serial).toBe(new X509Certificate(cert).serialNumber.toLowerCase());
    expect(refused[0]?.claimed.subjectAltName).toContain('spiffe://t/ns/a/sa/b');
    expect(connections).toEqual([]);
  });
});

describe('TlsListener (server-authenticated)', () => {
  it('accepts clients without a certificate and swaps the serving certificate for new handshakes', async () => {
    const { port, connections } = await start(false);
    const first = await dial(port);
    expect(first.serial).toBe(new X509Certificate(serving.cert).serialNumber);
    const renewed = leaf(ca, 'serverAuth', new Date(Date.now() - HOUR), new Date(Date.now() + 2 * HOUR));
    listener?.setIdentity({ ...serving, cert: Buffer.from(renewed) });
    const second = await dial(port);
    expect(second.serial).toBe(new X509Certificate(renewed).serialNumber);
    expect(connections).toHaveLength(2);
  });
});
