/**
 * The webhook's HTTPS layer in this process, with its serving certificate in a real Secret on the real API server:
 * a review function that throws yields an explicit denial (never an unpatched admission), and a renewed
 * certificate in the Secret is served to new connections without a restart.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import winston from 'winston';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  createAuthorityCertificate,
  generateRsaKey,
  signLeafCertificate,
  type SigningAuthority,
} from '../../operator/pki/certificates.ts';
import {
  MUTATE_PODS_PATH,
  WebhookServer,
  type AdmissionOutcome,
  type ReviewAnswer,
} from '../../operator/webhook/server.ts';
import { clients, eventually } from '../harness/operator.ts';

const cluster = inject('cluster');
const { core } = clients(cluster.kubeconfig);
const namespace = `webhook-srv-${randomBytes(3).toString('hex')}`;
const HOUR = 3600_000;
const logger = winston.createLogger({ silent: true });

let ca: SigningAuthority;
const servers: WebhookServer[] = [];

async function servingSecret(name: string): Promise<Record<string, string>> {
  const key = await generateRsaKey(2048);
  const cert = signLeafCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'strongroom-webhook',
    dnsNames: ['strongroom-webhook.test.svc'],
    ipAddresses: ['127.0.0.1'],
    usages: ['serverAuth'],
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + HOUR),
  });
  const data = {
    'tls.crt': Buffer.from(cert).toString('base64'),
    'tls.key': Buffer.from(key.privateKeyPem).toString('base64'),
    'ca.crt': Buffer.from(ca.certPem).toString('base64'),
  };
  await core
    .replaceNamespacedSecret({
      namespace,
      name,
      body: { metadata: { name }, type: 'kubernetes.io/tls', data },
    })
    .catch(() =>
      core.createNamespacedSecret({
        namespace,
        body: { metadata: { name }, type: 'kubernetes.io/tls', data },
      }),
    );
  return data;
}

function review(uid: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      operation: 'CREATE',
      namespace: 'ml',
      userInfo: { username: 'alice' },
      object: { metadata: { name: 'trainer' } },
    },
  });
}

/** POSTs to the webhook on a fresh connection; returns the status, the body and the certificate it served. */
function post(port: number, body: string): Promise<{ status: number; body: string; served: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: MUTATE_PODS_PATH,
        method: 'POST',
        ca: ca.certPem,
        servername: '127.0.0.1',
        agent: false,
      },
      (res) => {
        const served = new X509Certificate((res.socket as TLSSocket).getPeerCertificate().raw).fingerprint256;
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString('utf8')));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: text, served });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function start(
  secretName: string,
  reviewFn: (body: unknown) => ReviewAnswer,
  outcomes: AdmissionOutcome[],
): Promise<number> {
  const server = new WebhookServer({
    host: '127.0.0.1',
    port: 0,
    namespace,
    core,
    servingSecretName: secretName,
    credentialRefreshMs: 200,
    review: reviewFn,
    logger,
    observe: (outcome) => outcomes.push(outcome),
  });
  servers.push(server);
  return (await server.start()).port;
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const key = await generateRsaKey(2048);
  ca = {
    certPem: createAuthorityCertificate(key, {
      commonName: 'test webhook CA',
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 24 * HOUR),
    }),
    privateKeyPem: key.privateKeyPem,
  };
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
});

describe('the webhook server', () => {
  it('denies with code 500 and a clear message when the review function throws, counted as error', async () => {
    await servingSecret('throwing-tls');
    const outcomes: AdmissionOutcome[] = [];
    const port = await start(
      'throwing-tls',
      () => {
        throw new Error('the artifact cache is broken');
      },
      outcomes,
    );
    const answer = await post(port, review('uid-1'));
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'uid-1',
        allowed: false,
        status: { code: 500, message: 'strongroom: the injection webhook failed internally; retry' },
      },
    });
    expect(answer.body).not.toContain('the artifact cache is broken');
    expect(outcomes).toEqual(['error']);
  });

  it('serves a renewed certificate from its Secret to new connections without a restart', async () => {
    const first = await servingSecret('renewed-tls');
    const outcomes: AdmissionOutcome[] = [];
    const port = await start(
      'renewed-tls',
      (body) => ({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid: (body as { request: { uid: string } }).request.uid, allowed: true },
      }),
      outcomes,
    );
    const fingerprint = (data: Record<string, string>) =>
      new X509Certificate(Buffer.from(data['tls.crt'] ?? '', 'base64')).fingerprint256;
    const before = await post(port, review('uid-2'));
    expect(before.served).toBe(fingerprint(first));
    expect(JSON.parse(before.body)).toMatchObject({ response: { uid: 'uid-2', allowed: true } });
    const second = await servingSecret('renewed-tls');
    expect(fingerprint(second)).not.toBe(fingerprint(first));
    await eventually(
      'the renewed certificate to be served',
      async () => ((await post(port, review('uid-3'))).served === fingerprint(second) ? true : undefined),
      10_000,
      100,
    );
    expect(outcomes.every((o) => o === 'skipped' || o === 'injected')).toBe(true);
  });
});
