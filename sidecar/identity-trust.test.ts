/**
 * CA rollover from the sidecar's side, over real TLS and gRPC in this process: the sidecar starts trusting only the
 * CA its environment names, adopts the bundle its Attest answer carries, and so accepts a broker whose serving
 * certificate has moved to the new CA. A bundle that is not CA certificates only is not adopted.
 */
import { createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import forge from 'node-forge';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createAuthorityCertificate,
  generateRsaKey,
  signLeafCertificate,
  type RsaKeyPem,
  type SigningAuthority,
} from '../operator/pki/certificates.ts';
import type { KeyBrokerHandlers } from '../proto/generated/strongroom/v1/KeyBroker.ts';
import { loadKeyBroker } from '../proto/keybroker.ts';
import { generateWorkloadKeyPair, WorkloadIdentity, type WorkloadKeyPair } from './identity.ts';

const keyBroker = loadKeyBroker();
const SERVER_NAME = 'strongroom-broker.strongroom.svc';
const HOUR = 3600_000;
const logger = winston.createLogger({ silent: true });

let work: string;
let tokenPath: string;
let oldCa: SigningAuthority;
let newCa: SigningAuthority;
let serverKey: RsaKeyPem;
const servers: grpc.Server[] = [];
/** The public keys (SPKI PEM) of every CSR the Attest servers signed, in order. */
const csrKeys: string[] = [];
const identities: WorkloadIdentity[] = [];

function authority(key: RsaKeyPem, commonName: string): SigningAuthority {
  const now = Date.now();
  return {
    certPem: createAuthorityCertificate(key, {
      commonName,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + 24 * HOUR),
    }),
    privateKeyPem: key.privateKeyPem,
  };
}

function servingCert(issuer: SigningAuthority): string {
  return signLeafCertificate(issuer, {
    publicKeyPem: serverKey.publicKeyPem,
    commonName: SERVER_NAME,
    dnsNames: [SERVER_NAME],
    usages: ['serverAuth'],
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + HOUR),
  });
}

const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>) => {
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in this test' });
};

/** Starts a TLS gRPC server with `handlers`; `clientCas` makes it require client certificates of those CAs. */
async function serve(
  certPem: string,
  handlers: Partial<KeyBrokerHandlers>,
  clientCas?: string,
): Promise<number> {
  const server = new grpc.Server();
  server.addService(keyBroker.service, {
    Attest: unimplemented,
    ReleaseKey: unimplemented,
    PublishVersion: unimplemented,
    WatchRevocations: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      call.end();
    },
    ...handlers,
  });
  servers.push(server);
  const credentials = grpc.ServerCredentials.createSsl(
    clientCas === undefined ? null : Buffer.from(clientCas),
    [{ private_key: Buffer.from(serverKey.privateKeyPem), cert_chain: Buffer.from(certPem) }],
    clientCas !== undefined,
  );
  return new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, port) => {
      if (error) reject(error);
      else resolve(port);
    });
  });
}

/** An Attest server on the old CA's certificate that signs the CSR with the old CA and answers with `bundle`. */
function attestServer(bundle: string): Promise<number> {
  return serve(servingCert(oldCa), {
    Attest: (call, callback) => {
      const csr = forge.pki.certificationRequestFromPem(call.request.csrPem);
      const publicKeyPem = forge.pki.publicKeyToPem(csr.publicKey as forge.pki.rsa.PublicKey);
      csrKeys.push(publicKeyPem);
      const certificateChainPem = signLeafCertificate(oldCa, {
        publicKeyPem,
        commonName: 'pod',
        uris: ['spiffe://cluster.local/ns/ml/sa/reader', 'urn:strongroom:pod:uid-1'],
        usages: ['clientAuth'],
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + HOUR),
      });
      callback(null, {
        certificateChainPem,
        caBundlePem: bundle,
        spiffeId: 'spiffe://cluster.local/ns/ml/sa/reader',
        podUid: 'uid-1',
      });
    },
  });
}

/** A broker whose serving certificate has moved to the new CA; ReleaseKey answers NOT_FOUND once TLS succeeded. */
function movedBroker(): Promise<number> {
  return serve(
    servingCert(newCa),
    {
      ReleaseKey: (_call, callback) => {
        callback({ code: grpc.status.NOT_FOUND, details: 'reached the broker' });
      },
    },
    `${newCa.certPem}${oldCa.certPem}`,
  );
}

async function identity(
  attestPort: number,
  brokerPort: number,
  firstKeyPair?: Promise<WorkloadKeyPair>,
): Promise<WorkloadIdentity> {
  const id = new WorkloadIdentity({
    config: {
      attest: { host: '127.0.0.1', port: attestPort },
      broker: { host: '127.0.0.1', port: brokerPort },
      serverName: SERVER_NAME,
      caBundlePem: oldCa.certPem,
      tokenPath,
    },
    keyBroker,
    logger,
    ...(firstKeyPair === undefined ? {} : { firstKeyPair }),
  });
  identities.push(id);
  await id.start();
  return id;
}

/** The status code of a ReleaseKey through the identity's current channel. */
function releaseStatus(id: WorkloadIdentity): Promise<grpc.status> {
  return new Promise((resolve) => {
    id.client().ReleaseKey(
      { artifact: { namespace: 'ml', name: 'resnet' }, version: 'v1' },
      { deadline: Date.now() + 5000 },
      (error) => {
        resolve(error?.code ?? grpc.status.OK);
      },
    );
  });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strongroom-trust-'));
  tokenPath = join(work, 'token');
  await writeFile(tokenPath, 'header.payload.signature');
  const [oldKey, newKey, key] = await Promise.all([
    generateRsaKey(2048),
    generateRsaKey(2048),
    generateRsaKey(2048),
  ]);
  oldCa = authority(oldKey, 'Strongroom CA 1');
  newCa = authority(newKey, 'Strongroom CA 2');
  serverKey = key;
});

afterEach(() => {
  for (const id of identities.splice(0)) id.stop();
});

afterAll(async () => {
  for (const s of servers) s.forceShutdown();
  await rm(work, { recursive: true, force: true });
});

describe('the sidecar adopts the CA bundle of its Attest answer', () => {
  it('trusts a broker that moved to the new CA once Attest named that CA (attesting with the key generated ahead)', async () => {
    const ahead = generateWorkloadKeyPair();
    const id = await identity(
      await attestServer(`${newCa.certPem}${oldCa.certPem}`),
      await movedBroker(),
      ahead,
    );
    expect(createPublicKey(csrKeys.at(-1) ?? '').equals((await ahead).publicKey)).toBe(true);
    expect(id.trustedCaBundle).toBe(`${newCa.certPem}${oldCa.certPem}`);
    expect(await releaseStatus(id)).toBe(grpc.status.NOT_FOUND);
  });

  it('without the new CA in the answer, the moved broker is refused at the handshake', async () => {
    const id = await identity(await attestServer(oldCa.certPem), await movedBroker());
    expect(id.trustedCaBundle).toBe(oldCa.certPem);
    expect(await releaseStatus(id)).toBe(grpc.status.UNAVAILABLE);
  });

  it('does not adopt a bundle holding a certificate that is not a CA, nor one holding a private key', async () => {
    const leaf = servingCert(newCa);
    for (const bad of [`${newCa.certPem}${leaf}`, `${newCa.certPem}${serverKey.privateKeyPem}`]) {
      const id = await identity(await attestServer(bad), await movedBroker());
      expect(id.trustedCaBundle).toBe(oldCa.certPem);
      expect(await releaseStatus(id)).toBe(grpc.status.UNAVAILABLE);
      id.stop();
    }
  });
});
