/**
 * Attest over real TLS against the real API server: real pods (Pending, never scheduled), real pod-bound tokens
 * from TokenRequest, real TokenReviews by a broker identity that has only the RBAC it needs, and certificates
 * signed by the operator CA kept in a real Secret.
 */
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ApiException,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import winston from 'winston';
import { memoryLogger } from '../../test/harness/logger.ts';
import { AuditKey, AuditLog, generateNoteKey, parseSignerKey, verifyLog } from '../../core/audit/index.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { DEFAULT_CLASSIFICATION_TABLE } from '../../core/policy/classification.ts';
import { loadKeyBroker, type KeyBrokerClient } from '../../proto/keybroker.ts';
import type { AttestResponse__Output } from '../../proto/generated/strongroom/v1/AttestResponse.ts';
import { userKubeconfig } from '../../test/cluster/kubeconfig.ts';
import { asInjected, defaultInjection, setInjection } from '../../test/harness/workload.ts';
import { expectedSidecar } from '../../core/injection/verify.ts';
import { trackTrustedCa } from './ca-trust.ts';
import { kubectl, must as mustIn } from '../../test/harness/kubectl.ts';
import { ArtifactKeyring } from '../keys/artifact-keys.ts';
import { createAuthorityCertificate, generateRsaKey } from '../pki/certificates.ts';
import { InternalCa } from '../pki/internal-ca.ts';
import { RevocationBus } from '../revocation/bus.ts';
import { BrokerAuditTrail } from './audit-trail.ts';
import { identityFromCertificate } from './identity.ts';
import { BrokerServer } from './server.ts';

const cluster = inject('cluster');
const TRUST_DOMAIN = 'strongroom.test';
const suffix = randomBytes(4).toString('hex');
const opNs = `broker-op-${suffix}`;
const appNs = `broker-app-${suffix}`;
const brokerUser = `strongroom-broker-${suffix}`;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const admin = new KubeConfig();
admin.loadFromFile(cluster.kubeconfig);
const core = admin.makeApiClient(CoreV1Api);
const keyBroker = loadKeyBroker();

const { logger, lines } = memoryLogger();

const issuedTokens: string[] = [];
let server: BrokerServer;
let client: KeyBrokerClient;
let bundlePem: string;
let port: number;
let brokerPort: number;
let auditLog: AuditLog;
const workDir = mkdtempSync(join(tmpdir(), 'strongroom-attest-'));
const noteKey = generateNoteKey('strongroom.audit/test');

/** The least RBAC of the broker: review tokens, get pods, get the CA Secret. */
const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ${brokerUser}}
rules:
- {apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}
- {apiGroups: [""], resources: [pods], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ${brokerUser}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ${brokerUser}}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ${brokerUser}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: strongroom-broker, namespace: ${opNs}}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [strongroom-ca, strongroom-broker-tls]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: strongroom-broker, namespace: ${opNs}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: strongroom-broker}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ${brokerUser}}]
`;

async function must(args: string[], input?: string): Promise<void> {
  await mustIn(cluster, args, input);
}

/** A restricted-compliant pod that no scheduler picks up, so it stays Pending and unbound. */
async function createPod(name: string, serviceAccount: string, finalizers: string[] = []): Promise<V1Pod> {
  return core.createNamespacedPod({
    namespace: appNs,
    body: asInjected({
      metadata: { name, ...(finalizers.length > 0 ? { finalizers } : {}) },
      spec: {
        serviceAccountName: serviceAccount,
        schedulerName: 'strongroom-test-no-scheduler',
        automountServiceAccountToken: false,
        securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'main',
            image: 'localhost/busybox:test',
            command: ['sleep', '3600'],
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          },
        ],
      },
    }),
  });
}

/** A real token from TokenRequest, bound to the pod. */
async function podToken(
  serviceAccount: string,
  pod: V1Pod,
  audience = 'strongroom',
  expirationSeconds = 3600,
): Promise<string> {
  const response = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: appNs,
    body: {
      spec: {
        audiences: [audience],
        expirationSeconds,
        boundObjectRef: {
          kind: 'Pod',
          apiVersion: 'v1',
          name: pod.metadata?.name ?? '',
          uid: pod.metadata?.uid ?? '',
        },
      },
    },
  });
  const token = response.status?.token ?? '';
  issuedTokens.push(token);
  return token;
}

/** A fresh RSA 2048 key and a CSR for it that asks for names the broker must ignore. */
function csrFor(): { pem: string; publicKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: 'spiffe://strongroom.test/ns/prod/sa/admin' }]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [{ type: 6, value: `spiffe://${TRUST_DOMAIN}/ns/prod/sa/admin` }],
        },
      ],
    },
  ]);
  csr.sign(
    forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    forge.md.sha256.create(),
  );
  return { pem: forge.pki.certificationRequestToPem(csr), publicKey };
}

type Outcome = { ok: AttestResponse__Output } | { error: grpc.ServiceError };

function callAttest(token: string, csrPem: string, via: KeyBrokerClient = client): Promise<Outcome> {
  return new Promise((resolve) => {
    via.Attest(
      { serviceAccountToken: token, csrPem },
      { deadline: Date.now() + 30_000 },
      (error, response) => {
        if (error) resolve({ error });
        else if (response) resolve({ ok: response });
        else throw new Error('Attest answered neither a response nor an error');
      },
    );
  });
}

function denial(outcome: Outcome): grpc.ServiceError {
  if (!('error' in outcome))
    throw new Error(`expected a denial, got a certificate for ${outcome.ok.spiffeId}`);
  return outcome.error;
}

beforeAll(async () => {
  await must(['create', 'namespace', opNs]);
  await must(['create', 'namespace', appNs]);
  // The app namespace enforces the restricted Pod Security profile, as a real tenant namespace would.
  await must(['label', 'namespace', appNs, 'pod-security.kubernetes.io/enforce=restricted']);
  await must(['apply', '-f', '-'], rbac);
  for (const sa of ['trainer', 'other']) await must(['-n', appNs, 'create', 'serviceaccount', sa]);

  const silent = winston.createLogger({ silent: true });
  const operatorCa = new InternalCa(admin, { namespace: opNs, logger: silent });
  await operatorCa.ensureAuthority();
  await operatorCa.ensureServingCertificate({
    name: 'broker',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  bundlePem = (await operatorCa.load()).bundlePem;
  // Pods are built as the operator injects them, with this CA bundle; the broker checks both.
  const injection = defaultInjection(opNs, bundlePem);
  setInjection(injection);

  // The broker runs as a user with exactly the RBAC above.
  const brokerKc = new KubeConfig();
  brokerKc.loadFromFile(userKubeconfig(cluster, brokerUser));
  auditLog = await AuditLog.open({
    path: join(workDir, 'audit.log'),
    origin: 'strongroom.audit/test/attest',
    signer: parseSignerKey(noteKey.signerKey),
  });
  const trail = new BrokerAuditTrail();
  trail.attach(auditLog, new AuditKey(randomBytes(32)));
  const brokerCore = brokerKc.makeApiClient(CoreV1Api);
  const kms = new LocalKmsProvider(new FileKeySetStore(join(workDir, 'kms.json')));
  const tracked = trackTrustedCa(new InternalCa(brokerKc, { namespace: opNs, logger }));
  server = new BrokerServer({
    attestAddress: { host: '127.0.0.1', port: 0 },
    brokerAddress: { host: '127.0.0.1', port: 0 },
    namespace: opNs,
    core: brokerCore,
    authentication: brokerKc.makeApiClient(AuthenticationV1Api),
    custom: brokerKc.makeApiClient(CustomObjectsApi),
    ca: tracked.ca,
    trustDomain: TRUST_DOMAIN,
    sidecar: expectedSidecar(injection, tracked.trusted),
    logger,
    // Attest reads no cache: this broker has none synced, so every other RPC would answer UNAVAILABLE.
    view: {
      ready: () => false,
      artifact: () => undefined,
      grants: () => [],
      namespaces: () => new Map(),
      pod: () => undefined,
    },
    kms,
    keyring: new ArtifactKeyring({ kms, core: brokerCore, namespace: opNs, logger }),
    policy: () => DEFAULT_CLASSIFICATION_TABLE,
    audit: trail,
    bus: new RevocationBus(),
  });
  ({ attestPort: port, brokerPort } = await server.start());
  client = new keyBroker.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(bundlePem)));
});

afterAll(async () => {
  client.close();
  await server.stop();
  await auditLog.close();
  await kubectl(cluster, ['delete', 'clusterrolebinding,clusterrole', brokerUser, '--ignore-not-found']);
  await kubectl(cluster, ['delete', 'namespace', opNs, appNs, '--wait=false']);
});

describe('Attest over TLS on the real control plane', () => {
  it('certifies the CSR key of a live pod with its SPIFFE ID and pod UID, for clientAuth, for at most 1 h', async () => {
    const pod = await createPod('trainer-0', 'trainer');
    const token = await podToken('trainer', pod);
    const csr = csrFor();
    const before = Date.now();
    const outcome = await callAttest(token, csr.pem);
    if (!('ok' in outcome)) throw new Error(`attest failed: ${outcome.error.code} ${outcome.error.details}`);
    const response = outcome.ok;
    const uid = pod.metadata?.uid ?? '';
    const spiffe = `spiffe://${TRUST_DOMAIN}/ns/${appNs}/sa/trainer`;
    expect(response.spiffeId).toBe(spiffe);
    expect(response.podUid).toBe(uid);
    expect(response.caBundlePem).toBe(bundlePem);

    const leaf = new X509Certificate(response.certificateChainPem);
    const ca = new X509Certificate(bundlePem);
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.publicKey.export({ type: 'spki', format: 'pem' })).toBe(
      csr.publicKey.export({ type: 'spki', format: 'pem' }),
    );
    // Only the two names the broker wrote: nothing the CSR asked for.
    expect(leaf.subjectAltName).toBe(`URI:${spiffe}, URI:urn:strongroom:pod:${uid}`);
    expect(leaf.subject).not.toContain('prod');
    expect(identityFromCertificate(leaf, TRUST_DOMAIN)).toEqual({
      trustDomain: TRUST_DOMAIN,
      namespace: appNs,
      serviceAccount: 'trainer',
      podUid: uid,
    });
    expect(leaf.keyUsage).toEqual([CLIENT_AUTH]);
    expect(leaf.ca).toBe(false);
    const notAfter = leaf.validToDate.getTime();
    expect(notAfter).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect(notAfter).toBeGreaterThan(before + 3600_000 - 120_000);
    expect(Number(response.notAfter?.seconds)).toBe(Math.floor(notAfter / 1000));
  });

  it('never certifies past the token expiry', async () => {
    const pod = await createPod('trainer-short', 'trainer');
    const token = await podToken('trainer', pod, 'strongroom', 600);
    const outcome = await callAttest(token, csrFor().pem);
    if (!('ok' in outcome)) throw new Error(`attest failed: ${outcome.error.code} ${outcome.error.details}`);
    const notAfter = new X509Certificate(outcome.ok.certificateChainPem).validToDate.getTime();
    expect(notAfter).toBeLessThanOrEqual(Date.now() + 600_000);
    expect(notAfter).toBeGreaterThan(Date.now() + 600_000 - 120_000);
  });

  it('refuses a token for another audience (UNAUTHENTICATED)', async () => {
    const pod = await createPod('trainer-aud', 'trainer');
    const token = await podToken('trainer', pod, 'vault');
    const error = denial(await callAttest(token, csrFor().pem));
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toMatch(/did not accept the token|audience/);
  });

  it('refuses garbage instead of a token, and no token at all (UNAUTHENTICATED)', async () => {
    const garbage = denial(await callAttest('not-a-token', csrFor().pem));
    expect(garbage.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(garbage.details).toBe('the API server did not accept the token');
    const forged = denial(await callAttest('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', csrFor().pem));
    expect(forged.code).toBe(grpc.status.UNAUTHENTICATED);
    const empty = denial(await callAttest('', csrFor().pem));
    expect(empty.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(empty.details).toBe('no service account token');
  });

  it('refuses a token bound to a pod that has since been deleted', async () => {
    const pod = await createPod('trainer-gone', 'trainer');
    const token = await podToken('trainer', pod);
    await core.deleteNamespacedPod({ name: 'trainer-gone', namespace: appNs, gracePeriodSeconds: 0 });
    await expect(core.readNamespacedPod({ name: 'trainer-gone', namespace: appNs })).rejects.toSatisfy(
      (error: unknown) => error instanceof ApiException && error.code === 404,
    );
    const error = denial(await callAttest(token, csrFor().pem));
    process.stderr.write(`[broker] deleted pod: ${grpc.status[error.code]} ${error.details}\n`);
    // The API server's token authenticator checks the bound pod itself, so TokenReview normally rejects the token
    // (UNAUTHENTICATED); if its pod cache still held the pod, the broker's own lookup refuses (PERMISSION_DENIED).
    if (error.code === grpc.status.PERMISSION_DENIED) expect(error.details).toMatch(/no longer exists/);
    else {
      expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(error.details).toBe('the API server did not accept the token');
    }
  });

  it('refuses a token of a terminating pod (PERMISSION_DENIED)', async () => {
    const finalizer = 'strongroom.dev/test-hold';
    const pod = await createPod('trainer-ending', 'trainer', [finalizer]);
    try {
      const token = await podToken('trainer', pod);
      await core.deleteNamespacedPod({ name: 'trainer-ending', namespace: appNs });
      const error = denial(await callAttest(token, csrFor().pem));
      expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(error.details).toBe(`pod ${appNs}/trainer-ending is terminating`);
    } finally {
      await must([
        '-n',
        appNs,
        'patch',
        'pod',
        'trainer-ending',
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]);
    }
  });

  it('cannot be given a token whose pod runs as another service account: the API server refuses to mint it', async () => {
    // The broker's own service-account check (pod-binding.test.ts) guards against this; here we show that a real
    // API server does not even issue such a token, so it cannot be exercised end to end.
    const pod = await createPod('trainer-sa', 'trainer');
    await expect(podToken('other', pod)).rejects.toSatisfy(
      (error: unknown) => error instanceof ApiException && error.code >= 400 && error.code < 500,
    );
  });

  it('refuses a CSR whose signature does not verify (INVALID_ARGUMENT), even before judging the token', async () => {
    const pod = await createPod('trainer-csr', 'trainer');
    const token = await podToken('trainer', pod);
    const der = Buffer.from(csrFor().pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 1;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const error = denial(await callAttest(token, tampered));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toBe('the CSR signature does not verify');
    const beforeToken = denial(await callAttest('not-a-token', tampered));
    expect(beforeToken.code).toBe(grpc.status.INVALID_ARGUMENT);
    const notACsr = denial(await callAttest(token, 'hello'));
    expect(notACsr.code).toBe(grpc.status.INVALID_ARGUMENT);
    // The same token still works with a good CSR: the refusals above were about the CSR alone.
    expect('ok' in (await callAttest(token, csrFor().pem))).toBe(true);
  });

  it('serves only Attest on the attest port, and refuses Attest on the mutual-TLS port', async () => {
    const error = await new Promise<grpc.ServiceError | null>((resolve) => {
      client.ReleaseKey({ artifact: { namespace: 'a', name: 'b' }, version: 'v1' }, (e) => {
        resolve(e);
      });
    });
    expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error?.details).toMatch(/needs mutual TLS/);
    // Without a client certificate the mutual-TLS port refuses the handshake itself.
    const mtls = new keyBroker.Client(
      `127.0.0.1:${brokerPort}`,
      grpc.credentials.createSsl(Buffer.from(bundlePem)),
    );
    try {
      const refused = denial(await callAttest('x', csrFor().pem, mtls));
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      mtls.close();
    }
  });

  it('fails the TLS handshake for a client that does not trust the operator CA', async () => {
    const key = await generateRsaKey(2048);
    const foreignCa = createAuthorityCertificate(key, {
      commonName: 'Not the operator CA',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
    });
    const attempts: [string, grpc.ChannelCredentials][] = [
      ['a foreign CA', grpc.credentials.createSsl(Buffer.from(foreignCa))],
      ['the public roots', grpc.credentials.createSsl()],
    ];
    const pod = await createPod('trainer-tls', 'trainer');
    const token = await podToken('trainer', pod);
    const served = lines.length;
    for (const [what, credentials] of attempts) {
      const untrusting = new keyBroker.Client(`127.0.0.1:${port}`, credentials);
      try {
        const error = denial(await callAttest(token, csrFor().pem, untrusting));
        expect(error.code, what).toBe(grpc.status.UNAVAILABLE);
        expect(error.details, what).toMatch(/certificate|SSL|TLS|handshake/i);
      } finally {
        untrusting.close();
      }
    }
    // The broker never saw a call: no attestation was logged.
    expect(lines.slice(served).join('')).not.toMatch(/attested a pod|attestation refused/);
  });

  it('audits every attestation, allowed or refused, with the token only as an HMAC, in a log that verifies', async () => {
    await auditLog.checkpoint();
    const bytes = readFileSync(join(workDir, 'audit.log'));
    const report = verifyLog(bytes, { verifiers: [parseSignerKey(noteKey.signerKey).verifier] });
    expect(report.ok).toBe(true);
    const events = bytes
      .toString('utf8')
      .split('\n')
      .filter((l) => l.startsWith('{"event":'))
      .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event)
      .filter((e) => e.type === 'broker-access' && e.operation === 'attest');
    const allowed = events.filter((e) => e.decision === 'allow');
    const denied = events.filter((e) => e.decision === 'deny');
    expect(allowed.length).toBeGreaterThanOrEqual(3);
    expect(denied.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['token-rejected', 'invalid-csr', 'pod-mismatch']),
    );
    expect(allowed[0]?.workload).toMatchObject({
      spiffeId: `spiffe://${TRUST_DOMAIN}/ns/${appNs}/sa/trainer`,
    });
    const text = bytes.toString('utf8');
    for (const token of issuedTokens) expect(text).not.toContain(token);
    expect(text).toMatch(/"token":"hmac-sha256:/);
  });

  it('never logs a token or key material', () => {
    const all = lines.join('');
    expect(all).toContain('attested a pod');
    for (const token of issuedTokens) expect(all).not.toContain(token);
    expect(all).not.toMatch(/BEGIN|PRIVATE/);
  });
});
