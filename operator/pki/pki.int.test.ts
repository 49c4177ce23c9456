import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { CA_BUNDLE_LABEL, CA_BUNDLE_LABEL_VALUE } from './webhook-bundles.ts';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { CoreV1Api, KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import winston from 'winston';
import { kubectl } from '../../test/cluster/kubectl.ts';
import { createAuthorityCertificate, generateRsaKey } from './certificates.ts';
import { InternalCa, PkiError, type PkiOptions } from './internal-ca.ts';

const cluster = inject('cluster');
const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(cluster.kubeconfig);
const core = kubeConfig.makeApiClient(CoreV1Api);
const DAY = 24 * 3600_000;
const b64 = (text: string): string => Buffer.from(text).toString('base64');
const unb64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64').toString();
const certsOf = (bundle: string): X509Certificate[] =>
  (bundle.match(/-----BEGIN CERTIFICATE-----[^]*?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );

let namespace: string;
let cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  namespace = `pki-${randomBytes(4).toString('hex')}`;
  const created = await kubectl(cluster, ['create', 'namespace', namespace]);
  expect(created.code, created.stderr).toBe(0);
  cleanups = [() => kubectl(cluster, ['delete', 'namespace', namespace, '--wait=false'])];
});

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A settable clock. */
function clock(start = new Date()): { now: () => Date; set: (d: Date) => void } {
  let t = start;
  return { now: () => t, set: (d) => (t = d) };
}

/** A logger whose JSON lines land in `lines`. */
function capturingLogger(): { logger: winston.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  const logger = winston.createLogger({
    format: winston.format.json(),

    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, lines };
}

function ca(options: Partial<PkiOptions> = {}): InternalCa {
  return new InternalCa(kubeConfig, {
    namespace,
    logger: winston.createLogger({ silent: true }),
    ...options,
  });
}

async function secret(name: string): Promise<V1Secret> {
  return core.readNamespacedSecret({ name, namespace });
}

async function thrown(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('the CA Secret', () => {
  it('is created by the first ensureAuthority; other replicas load the same CA; later calls write nothing', async () => {
    expect(await thrown(ca().load())).toMatchObject({ name: 'PkiError', code: 'missing' });
    const leader = ca();
    const state = await leader.ensureAuthority();
    const stored = await secret('strongroom-ca');
    expect(stored.type).toBe('strongroom.dev/internal-ca');
    expect(stored.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('strongroom');
    expect(Object.keys(stored.data ?? {}).sort()).toEqual(['ca.crt', 'ca.key']);
    const caCert = new X509Certificate(unb64(stored.data?.['ca.crt']));
    expect(caCert.ca).toBe(true);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(caCert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    expect(state.bundlePem).toBe(caCert.toString());
    expect(state.caNotAfter).toEqual(caCert.validToDate);
    expect(Math.abs(+state.caNotAfter - (Date.now() + 365 * DAY))).toBeLessThan(60_000);
    expect(state.nextCheckAt).toEqual(new Date(+caCert.validToDate - Math.floor((365 * DAY) / 3)));

    expect((await ca().load()).bundlePem).toBe(state.bundlePem);
    expect((await leader.ensureAuthority()).bundlePem).toBe(state.bundlePem);
    expect((await secret('strongroom-ca')).metadata?.resourceVersion).toBe(stored.metadata?.resourceVersion);
  });

  it('ends with ONE CA when replicas race to create it: the losers of the create read the winner', async () => {
    const replicas = Array.from({ length: 4 }, () => capturingLogger());
    const states = await Promise.all(replicas.map(({ logger }) => ca({ logger }).ensureAuthority()));
    const stored = unb64((await secret('strongroom-ca')).data?.['ca.crt']);
    for (const state of states) expect(state.bundlePem).toBe(stored);
    const messages = replicas.flatMap(({ lines }) => lines.map((l) => l['message']));
    expect(messages.filter((m) => m === 'created the CA')).toHaveLength(1);
    // At least one replica went through the 409 path (all four read "missing" before any key was generated).
    expect(
      messages.filter((m) => m === 'another replica created the CA first; using theirs').length,
    ).toBeGreaterThan(0);
    expect(JSON.stringify(replicas.flatMap((r) => r.lines))).not.toContain('PRIVATE KEY');
  });

  it('refuses a malformed CA Secret without overwriting it', async () => {
    const bad = await kubectl(cluster, [
      '-n',
      namespace,
      'create',
      'secret',
      'generic',
      'strongroom-ca',
      '--type=strongroom.dev/internal-ca',
      '--from-literal=ca.crt=garbage',
      '--from-literal=ca.key=garbage',
    ]);
    expect(bad.code, bad.stderr).toBe(0);
    const before = (await secret('strongroom-ca')).metadata?.resourceVersion;
    expect(await thrown(ca().ensureAuthority())).toMatchObject({ name: 'PkiError', code: 'malformed' });
    expect(await thrown(ca().load())).toMatchObject({ name: 'PkiError', code: 'malformed' });
    expect(
      await thrown(ca().ensureServingCertificate({ name: 'webhook', dnsNames: ['a.svc'] })),
    ).toBeInstanceOf(PkiError);
    expect((await secret('strongroom-ca')).metadata?.resourceVersion).toBe(before);
  });
});

describe('serving certificates', () => {
  it('live in a kubernetes.io/tls Secret that a real TLS handshake accepts with the bundle as CA', async () => {
    const pki = ca();
    const { bundlePem } = await pki.ensureAuthority();
    const host = `strongroom-webhook.${namespace}.svc`;
    const result = await pki.ensureServingCertificate({
      name: 'webhook',
      dnsNames: [host],
      ipAddresses: ['127.0.0.1'],
    });
    expect(result.secretName).toBe('strongroom-webhook-tls');
    expect(result.issued).toBe(true);
    const stored = await secret('strongroom-webhook-tls');
    expect(stored.type).toBe('kubernetes.io/tls');
    expect(Object.keys(stored.data ?? {}).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    expect(unb64(stored.data?.['ca.crt'])).toBe(bundlePem);
    const leaf = new X509Certificate(unb64(stored.data?.['tls.crt']));
    const root = new X509Certificate(bundlePem);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe(`DNS:${host}, IP Address:127.0.0.1`);
    const life = +leaf.validToDate - +leaf.validFromDate;
    expect(result.renewAt).toEqual(new Date(+leaf.validFromDate + Math.floor((life * 2) / 3)));

    const server = tls.createServer(
      { key: unb64(stored.data?.['tls.key']), cert: unb64(stored.data?.['tls.crt']) },
      (socket) => {
        socket.on('error', () => undefined); // clients that reject the certificate reset the connection
        socket.end('hello');
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(
      async () =>
        new Promise((resolve) => {
          server.close(resolve);
        }),
    );
    const { port } = server.address() as AddressInfo;
    const connect = async (options: tls.ConnectionOptions): Promise<string> => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...options });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      await once(socket, 'end');
      return Buffer.concat(chunks).toString();
    };
    expect(await connect({ ca: bundlePem, servername: host })).toBe('hello');
    expect(await connect({ ca: bundlePem })).toBe('hello'); // checked against the IP SAN
    expect(await thrown(connect({ ca: bundlePem, servername: 'evil.example' }))).toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    const key = await generateRsaKey(2048);
    const strangerCa = createAuthorityCertificate(key, {
      commonName: 'stranger',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + DAY),
    });
    expect(await thrown(connect({ ca: strangerCa, servername: host }))).toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });

    const again = await pki.ensureServingCertificate({
      name: 'webhook',
      dnsNames: [host],
      ipAddresses: ['127.0.0.1'],
    });
    expect(again).toEqual({ ...result, issued: false });
    expect((await secret('strongroom-webhook-tls')).metadata?.resourceVersion).toBe(
      stored.metadata?.resourceVersion,
    );
    const renamed = await pki.ensureServingCertificate({
      name: 'webhook',
      dnsNames: [host, `${host}.cluster.local`],
    });
    expect(renamed.issued).toBe(true);
    expect(
      new X509Certificate(unb64((await secret('strongroom-webhook-tls')).data?.['tls.crt'])).subjectAltName,
    ).toBe(`DNS:${host}, DNS:${host}.cluster.local`);
  });

  it('are renewed once the clock passes 2/3 of their lifetime, and not before', async () => {
    const time = clock();
    const pki = ca({ now: time.now });
    await pki.ensureAuthority();
    const request = { name: 'broker', dnsNames: ['strongroom-broker.svc'] };
    const first = await pki.ensureServingCertificate(request);
    const serial = (): Promise<string> =>
      secret('strongroom-broker-tls').then(
        (s) => new X509Certificate(unb64(s.data?.['tls.crt'])).serialNumber,
      );
    const firstSerial = await serial();
    expect(first.issued).toBe(true);
    expect(+first.renewAt - Date.now()).toBeGreaterThan(4.6 * DAY);

    time.set(new Date(+first.renewAt - 1000));
    expect(await pki.ensureServingCertificate(request)).toEqual({ ...first, issued: false });
    expect(await serial()).toBe(firstSerial);

    time.set(new Date(+first.renewAt + 1000));
    const renewed = await pki.ensureServingCertificate(request);
    expect(renewed.issued).toBe(true);
    expect(+renewed.renewAt).toBeGreaterThan(+first.renewAt + 4 * DAY);
    expect(await serial()).not.toBe(firstSerial);
  });

  it('refuse bad requests, and a same-named Secret of another type', async () => {
    const pki = ca();
    await pki.ensureAuthority();
    for (const request of [
      { name: 'Bad_Name', dnsNames: ['a.svc'] },
      { name: 'webhook', dnsNames: [] },
      { name: 'webhook', dnsNames: ['not a name'] },
      { name: 'webhook', dnsNames: ['a.svc'], ipAddresses: ['localhost'] },
    ]) {
      expect(await thrown(pki.ensureServingCertificate(request))).toMatchObject({
        name: 'PkiError',
        code: 'invalid',
      });
    }
    const made = await kubectl(cluster, [
      '-n',
      namespace,
      'create',
      'secret',
      'generic',
      'strongroom-webhook-tls',
      '--from-literal=x=y',
    ]);
    expect(made.code, made.stderr).toBe(0);
    expect(
      await thrown(pki.ensureServingCertificate({ name: 'webhook', dnsNames: ['a.svc'] })),
    ).toMatchObject({
      name: 'PkiError',
      code: 'conflict',
    });
    expect((await secret('strongroom-webhook-tls')).type).toBe('Opaque');
  });
});

describe('CA rollover', () => {
  it('trusts both CAs, keeps serving certificates on the old one for 2 h, then re-issues them under the new one, and drops the old CA when its leaves have expired', async () => {
    const time = clock();
    const { logger, lines } = capturingLogger();
    const pki = ca({ now: time.now, logger });
    const follower = ca({ now: time.now });
    const first = await pki.ensureAuthority();
    const [ca1] = certsOf(first.bundlePem);
    const webhook = { name: 'webhook', dnsNames: ['strongroom-webhook.svc'] };
    expect((await pki.ensureServingCertificate(webhook)).issued).toBe(true);

    // Just before the rollover point nothing changes; at it, a new CA joins the bundle in front of the old one.
    time.set(new Date(+first.nextCheckAt - 1000));
    expect((await pki.ensureAuthority()).bundlePem).toBe(first.bundlePem);
    expect((await pki.ensureServingCertificate(webhook)).issued).toBe(true); // the first one has expired by now
    const beforeRollover = unb64((await secret('strongroom-webhook-tls')).data?.['tls.crt']);
    const rolloverAt = new Date(+first.nextCheckAt + 1000);
    time.set(rolloverAt);
    const rolled = await pki.ensureAuthority();
    const [ca2, old] = certsOf(rolled.bundlePem);
    expect(certsOf(rolled.bundlePem)).toHaveLength(2);
    expect(old?.fingerprint256).toBe(ca1?.fingerprint256);
    expect(ca2?.fingerprint256).not.toBe(ca1?.fingerprint256);
    expect(ca2?.subject).not.toBe(ca1?.subject);
    expect(rolled.caNotAfter).toEqual(ca2?.validToDate);
    const trustUntil = new Date(+rolloverAt + 7 * DAY + 10 * 60_000);
    expect(rolled.nextCheckAt).toEqual(trustUntil);
    const stored = await secret('strongroom-ca');
    expect(JSON.parse(unb64(stored.data?.['retired.json']))).toEqual([
      { certificate: ca1?.toString(), trustUntil: trustUntil.toISOString() },
    ]);
    expect((await follower.load()).bundlePem).toBe(rolled.bundlePem);

    // The serving certificate signed by the old CA stays for two hours (sidecars renew and learn the new CA from
    // Attest meanwhile), with both CAs in ca.crt at once; then it is re-issued under the new one.
    const kept = await pki.ensureServingCertificate(webhook);
    expect(kept.issued).toBe(false);
    const moveAt = (ca2?.validFromDate.getTime() ?? 0) + 5 * 60_000 + 2 * 3600_000;
    expect(+kept.renewAt).toBe(moveAt);
    const during = await secret('strongroom-webhook-tls');
    expect(unb64(during.data?.['tls.crt'])).toBe(beforeRollover);
    expect(unb64(during.data?.['ca.crt'])).toBe(rolled.bundlePem);
    time.set(new Date(moveAt - 1000));
    expect((await pki.ensureServingCertificate(webhook)).issued).toBe(false);
    time.set(new Date(moveAt));
    expect((await pki.ensureServingCertificate(webhook)).issued).toBe(true);
    expect(lines.at(-1)).toMatchObject({
      message: 'issued a serving certificate',
      reason: 'not signed by the current CA',
    });
    const afterRollover = await secret('strongroom-webhook-tls');
    const leaf = new X509Certificate(unb64(afterRollover.data?.['tls.crt']));
    expect(ca2 && leaf.checkIssued(ca2) && leaf.verify(ca2.publicKey)).toBe(true);
    expect(ca1 && leaf.verify(ca1.publicKey)).toBe(false);
    expect(unb64(afterRollover.data?.['ca.crt'])).toBe(rolled.bundlePem);
    // Leaves signed for pods now come from the new CA too.
    const podKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const podCert = new X509Certificate(
      await follower.signLeaf({
        publicKeyPem: podKey.toString(),
        commonName: 'pod',
        uris: ['spiffe://x/pod'],
        validityMs: DAY,
        usages: ['clientAuth'],
      }),
    );
    expect(ca2 && podCert.verify(ca2.publicKey)).toBe(true);

    // A certificate first issued three days after the rollover is still fresh when the old CA is dropped.
    time.set(new Date(+rolloverAt + 3 * DAY));
    const broker = { name: 'broker', dnsNames: ['strongroom-broker.svc'] };
    expect((await pki.ensureServingCertificate(broker)).issued).toBe(true);
    const brokerCert = unb64((await secret('strongroom-broker-tls')).data?.['tls.crt']);

    time.set(new Date(+trustUntil - 1000));
    expect((await pki.ensureAuthority()).bundlePem).toBe(rolled.bundlePem);
    time.set(new Date(+trustUntil + 1000));
    const pruned = await pki.ensureAuthority();
    expect(certsOf(pruned.bundlePem).map((c) => c.fingerprint256)).toEqual([ca2?.fingerprint256]);
    expect((await secret('strongroom-ca')).data?.['retired.json']).toBeUndefined();
    expect((await follower.load()).bundlePem).toBe(pruned.bundlePem);
    // The broker certificate is kept; only its ca.crt loses the old CA.
    expect((await pki.ensureServingCertificate(broker)).issued).toBe(false);
    const brokerSecret = await secret('strongroom-broker-tls');
    expect(unb64(brokerSecret.data?.['tls.crt'])).toBe(brokerCert);
    expect(unb64(brokerSecret.data?.['ca.crt'])).toBe(pruned.bundlePem);
  });
});

describe('signLeaf', () => {
  it('signs pod certificates with URI SANs for at most the asked validity, and refuses what it must not sign', async () => {
    expect(
      await thrown(
        ca().signLeaf({ publicKeyPem: 'x', commonName: 'pod', validityMs: DAY, usages: ['clientAuth'] }),
      ),
    ).toMatchObject({ code: 'missing' });
    const time = clock();
    const pki = ca({ now: time.now });
    const { bundlePem } = await pki.ensureAuthority();
    const root = new X509Certificate(bundlePem);
    const publicKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    const uri = `spiffe://strongroom/ns/${namespace}/sa/trainer`;
    const request = {
      publicKeyPem,
      commonName: 'trainer',
      uris: [uri],
      validityMs: 3600_000,
      usages: ['clientAuth'] as const,
    };
    const cert = new X509Certificate(await pki.signLeaf(request));
    expect(cert.checkIssued(root) && cert.verify(root.publicKey)).toBe(true);
    expect(cert.subjectAltName).toBe(`URI:${uri}`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.validToDate).toEqual(new Date(Math.floor((+time.now() + 3600_000) / 1000) * 1000));

    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    for (const bad of [
      { validityMs: 8 * DAY },
      { validityMs: 0 },
      { publicKeyPem: ec.toString() },
      { usages: [] },
    ]) {
      expect(await thrown(pki.signLeaf({ ...request, ...bad }))).toMatchObject({
        name: 'PkiError',
        code: 'invalid',
      });
    }
    // Near the CA's end a leaf is cut to the CA's expiry; past it nothing is signed.
    time.set(new Date(+root.validToDate - 3600_000));
    const cut = new X509Certificate(await pki.signLeaf({ ...request, validityMs: DAY }));
    expect(cut.validToDate).toEqual(root.validToDate);
    time.set(new Date(+root.validToDate + 1000));
    expect(await thrown(pki.signLeaf(request))).toMatchObject({ name: 'PkiError', code: 'missing' });
  });
});

describe('syncCaBundles', () => {
  it('writes the bundle into labelled webhook configurations only, and writes nothing the second time', async () => {
    const pki = ca();
    const { bundlePem } = await pki.ensureAuthority();
    const managed = `${namespace}-managed`;
    const unmanaged = `${namespace}-unmanaged`;
    const webhook = (name: string, clientConfig: object) => ({
      name,
      clientConfig,
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps'] }],
      sideEffects: 'None',
      failurePolicy: 'Ignore',
      admissionReviewVersions: ['v1'],
      // Matches no namespace: these configurations never affect anything else running on the cluster.
      namespaceSelector: { matchLabels: { 'strongroom.dev/never-matches': namespace } },
    });
    const config = (kind: string, name: string, labelled: boolean) => ({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind,
      metadata: { name, labels: labelled ? { [CA_BUNDLE_LABEL]: CA_BUNDLE_LABEL_VALUE } : {} },
      webhooks: [
        webhook('url.pki.strongroom.dev', { url: 'https://127.0.0.1:1/x' }),
        webhook('svc.pki.strongroom.dev', { service: { namespace, name: 'nowhere', path: '/x', port: 443 } }),
      ],
    });
    const objects = [
      config('MutatingWebhookConfiguration', managed, true),
      config('ValidatingWebhookConfiguration', managed, true),
      config('MutatingWebhookConfiguration', unmanaged, false),
    ];
    const created = await kubectl(cluster, ['create', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
    });
    expect(created.code, created.stderr).toBe(0);
    cleanups.push(
      () =>
        kubectl(cluster, ['delete', 'mutatingwebhookconfiguration,validatingwebhookconfiguration', managed]),
      () => kubectl(cluster, ['delete', 'mutatingwebhookconfiguration', unmanaged]),
    );
    const read = async (kind: string, name: string) =>
      JSON.parse((await kubectl(cluster, ['get', kind, name, '-o', 'json'])).stdout) as {
        metadata: { resourceVersion: string };
        webhooks: { clientConfig: { caBundle?: string; service?: { namespace: string } } }[];
      };
    const unmanagedBefore = await read('mutatingwebhookconfiguration', unmanaged);

    const patched = await pki.syncCaBundles();
    expect(patched).toContain(`MutatingWebhookConfiguration/${managed}`);
    expect(patched).toContain(`ValidatingWebhookConfiguration/${managed}`);
    expect(patched).not.toContain(`MutatingWebhookConfiguration/${unmanaged}`);
    const mutating = await read('mutatingwebhookconfiguration', managed);
    const validating = await read('validatingwebhookconfiguration', managed);
    for (const c of [mutating, validating]) {
      expect(c.webhooks.map((w) => w.clientConfig.caBundle)).toEqual([b64(bundlePem), b64(bundlePem)]);
      expect(c.webhooks[1]?.clientConfig.service?.namespace).toBe(namespace);
    }
    const unmanagedAfter = await read('mutatingwebhookconfiguration', unmanaged);
    expect(unmanagedAfter.metadata.resourceVersion).toBe(unmanagedBefore.metadata.resourceVersion);
    expect(unmanagedAfter.webhooks.map((w) => w.clientConfig.caBundle)).toEqual([undefined, undefined]);

    expect(await pki.syncCaBundles()).toEqual([]);
    expect((await read('mutatingwebhookconfiguration', managed)).metadata.resourceVersion).toBe(
      mutating.metadata.resourceVersion,
    );
    expect((await read('validatingwebhookconfiguration', managed)).metadata.resourceVersion).toBe(
      validating.metadata.resourceVersion,
    );
  });
});
