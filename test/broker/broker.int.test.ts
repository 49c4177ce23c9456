/**
 * The key broker end to end on the real control plane: the real operator process (least-privilege RBAC) runs the
 * broker; pods are created through the API server, tokens come from TokenRequest, certificates from Attest, and
 * every call goes over real mutual TLS. Each denial of the matrix is checked for its status, for its audit
 * entry, and for the absence of key material in every log.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ModelArtifact } from '../../core/api/index.ts';
import { parseVerifierKey, verifyLog } from '../../core/audit/index.ts';
import { sealDek } from '../../core/envelope/index.ts';
import { newDek } from '../../core/envelope/index.ts';
import { parseAuthoritySecret } from '../../operator/pki/authority-secret.ts';
import { generateRsaKey, signLeafCertificate } from '../../operator/pki/certificates.ts';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { must } from '../harness/kubectl.ts';
import { createGrant, getArtifact, approval, grantBody, rawRecipientKey } from '../harness/objects.ts';
import { clients, eventually } from '../harness/operator.ts';
import {
  auditVerifierKey,
  auditVerifyCli,
  operatorSuite,
  sealedArtifact as createSealedArtifact,
} from '../harness/suite.ts';
import { ATTEST_NOT_INJECTED } from '../../operator/broker/attest.ts';
import { POD_NOT_INJECTED } from '../../operator/broker/peer.ts';
import {
  asInjected,
  attest,
  attestedWorkload,
  createPod,
  podToken,
  keyAndCsr,
  mtlsClient,
  release,
  watch,
  type Released,
  type Workload,
} from '../harness/workload.ts';

const cluster = inject('cluster');
const TRUST_DOMAIN = 'strongroom.test';
const suite = operatorSuite(cluster, {
  operatorNamespace: 'brk-op',
  namespaces: {
    prod: { name: 'brk-prod', environment: 'prod', serviceAccounts: ['reader', 'publisher', 'other'] },
    dev: { name: 'brk-dev', environment: 'dev', serviceAccounts: ['reader'] },
    staging: { name: 'brk-stg', environment: 'staging', serviceAccounts: ['reader'] },
    /** Where alice, an ordinary user with her own credentials, may create pods (and read no secrets). */
    lab: { name: 'brk-lab', serviceAccounts: ['trainer'] },
  },
  operator: {
    identity: 'op-broker',
    args: [
      `--trust-domain=${TRUST_DOMAIN}`,
      '--broker-credential-refresh=1s',
      '--broker-max-connection-age=6s',
      '--dek-cache-ttl=2s',
    ],
    waitFor: 'broker',
  },
});
const opNs = suite.operatorNamespace;
const { prod, dev, staging, lab } = suite.namespaces;
const { core, custom } = clients(cluster.kubeconfig);

/** Every DEK the test sealed; none may appear in any log. */
const deks: Buffer[] = [];
const tokens: string[] = [];
const workloads: Workload[] = [];

/** An artifact whose operator-published recipient key has sealed `versions`; resolves once they are Sealed. */
async function sealedArtifact(
  namespace: string,
  name: string,
  classification: ModelArtifact['spec']['classification'],
  versions: string[] = ['v1'],
): Promise<{ artifact: ModelArtifact; deks: Map<string, Buffer> }> {
  const sealed = await createSealedArtifact(custom, namespace, name, { classification, versions });
  deks.push(...sealed.deks.values());
  return sealed;
}

async function workload(
  namespace: string,
  name: string,
  serviceAccount: string,
  labels: Record<string, string> = {},
): Promise<Workload> {
  const w = await attestedWorkload(core, suite.endpoint, namespace, name, serviceAccount, labels);
  tokens.push(w.token);
  workloads.push(w);
  return w;
}

function denied(outcome: Released): grpc.ServiceError {
  if ('ok' in outcome) throw new Error(`expected a denial, got a key for ${outcome.ok.version}`);
  return outcome.error;
}

function granted(outcome: Released) {
  if ('error' in outcome)
    throw new Error(`expected a key, got ${grpc.status[outcome.error.code]}: ${outcome.error.details}`);
  return outcome.ok;
}

async function audited(predicate: (e: Record<string, unknown>) => boolean, what: string) {
  return eventually(what, () => suite.auditEvents().find(predicate), 10_000);
}

/** The message of the first `KeyReleaseDenied` Event on a pod matching `pattern` (the detailed refusal). */
async function denialEvent(namespace: string, pod: string, pattern: RegExp): Promise<string> {
  return eventually(
    `KeyReleaseDenied event on ${namespace}/${pod}`,
    async () => {
      const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${pod}` });
      return list.items.find((e) => e.reason === 'KeyReleaseDenied' && pattern.test(e.message ?? ''))
        ?.message;
    },
    10_000,
  );
}

/**
 * A refusal as the caller sees it: `<Reason>: <generic sentence>; details are in the pod's events`, naming none of
 * `hidden` (grants, service accounts, namespaces, artifacts).
 */
function expectCallerDenial(error: grpc.ServiceError, reason: string, hidden: string[]): void {
  expect(error.details).toMatch(new RegExp(`^${reason}: [^;]+; details are in the pod's events$`));
  for (const name of hidden) expect(error.details).not.toContain(name);
}

/** A leaf signed by the real operator CA key, with any names and lifetime (an insider's forgery, or an old cert). */
async function caSigned(template: {
  uris: string[];
  notBefore: Date;
  notAfter: Date;
}): Promise<{ certPem: string; keyPem: string }> {
  const secret = await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: opNs });
  const { current } = parseAuthoritySecret(secret, 'strongroom-ca');
  const key = await generateRsaKey(2048);
  const certPem = signLeafCertificate(current, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'forged',
    uris: template.uris,
    usages: ['clientAuth'],
    notBefore: template.notBefore,
    notAfter: template.notAfter,
  });
  return { certPem, keyPem: key.privateKeyPem };
}

beforeAll(async () => {
  await must(cluster, [
    '-n',
    lab,
    'create',
    'role',
    'pod-author',
    '--verb=create,get,list,delete',
    '--resource=pods',
  ]);
  await must(cluster, [
    '-n',
    lab,
    'create',
    'rolebinding',
    'alice-pods',
    '--role=pod-author',
    '--user=alice',
  ]);
}, 120_000);

afterAll(() => {
  for (const w of workloads) w.client.close();
});

describe('ReleaseKey over mutual TLS', () => {
  it('releases the sealed DEK to a granted pod, with a bounded lease, the digest and an audit index', async () => {
    const { artifact, deks: keys } = await sealedArtifact(prod, 'resnet', 'confidential', ['v1', 'v2']);
    await createGrant(
      custom,
      prod,
      grantBody('resnet-readers', 'resnet', {
        subjects: [{ namespace: prod, serviceAccount: 'reader' }],
        versions: { match: 'all' },
        keyLeaseDuration: '10m',
        // resnet is confidential: one approval by someone other than the requester, in an approver group.
        approvals: [approval('security@example.com')],
      }),
    );
    const w = await workload(prod, 'reader-0', 'reader');
    const latest = granted(
      await eventually('release', async () => {
        const r = await release(w.client, prod, 'resnet');
        return 'ok' in r ? r : undefined;
      }),
    );
    expect(latest.version).toBe('v2');
    expect(Buffer.from(latest.dek).equals(keys.get('v2') ?? Buffer.alloc(0))).toBe(true);
    expect(latest.digest).toBe(artifact.spec.versions?.[1]?.digest);
    expect(latest.grant?.name).toBe('resnet-readers');
    const lease = Number(latest.leaseExpiresAt?.seconds) * 1000;
    expect(lease).toBeGreaterThan(Date.now() + 9 * 60_000);
    expect(lease).toBeLessThanOrEqual(Date.now() + 10 * 60_000 + 1000);
    const v1 = granted(await release(w.client, prod, 'resnet', 'v1'));
    expect(Buffer.from(v1.dek).equals(keys.get('v1') ?? Buffer.alloc(0))).toBe(true);
    const entry = await audited(
      (e) =>
        e.type === 'key-release' &&
        e.decision === 'allow' &&
        (e.artifact as { version?: string }).version === 'v1',
      'the allow entry',
    );
    expect(entry.workload).toMatchObject({ namespace: prod, serviceAccount: 'reader', podUid: w.uid });
    expect((entry.grant as { name: string }).name).toBe('resnet-readers');
    expect(Number(v1.auditIndex)).toBeGreaterThan(Number(latest.auditIndex));
  });

  it('refuses a client without a certificate at the TLS handshake, and audits it', async () => {
    const client = mtlsClient(suite.endpoint, undefined);
    try {
      const error = denied(await release(client, prod, 'resnet'));
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    await audited(
      (e) => e.type === 'broker-access' && e.operation === 'connect' && e.reason === 'no-client-certificate',
      'no-cert audit',
    );
  });

  it('openssl s_client without a certificate is refused by the broker (certificate required)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brk-openssl-'));
    writeFileSync(join(dir, 'ca.pem'), suite.endpoint.caPem);
    const output = await new Promise<{ code: number; text: string }>((resolve) => {
      const child = execFile(
        'openssl',
        [
          's_client',
          '-connect',
          `127.0.0.1:${String(suite.endpoint.brokerPort)}`,
          '-CAfile',
          join(dir, 'ca.pem'),
          '-servername',
          suite.endpoint.serverName,
          '-alpn',
          'h2',
          '-verify_return_error',
          '-ign_eof',
        ],
        { timeout: 15_000 },
        (error, stdout, stderr) => {
          resolve({ code: error ? Number(error.code ?? 1) : 0, text: `${stdout}\n${stderr}` });
        },
      );
      // Send one byte so that the client reads the server's verdict on the (empty) certificate.
      child.stdin?.end('x');
    });
    expect(output.text).toMatch(/Verify return code: 0 \(ok\)/); // the client trusted the broker ...
    expect(output.text).toMatch(/alert certificate required|certificate required/i); // ... the broker refused it
    expect(output.code).not.toBe(0);
  });

  it('refuses a certificate from another CA at the handshake, and audits it', async () => {
    const { keyPem } = keyAndCsr();
    const other = await generateRsaKey(2048);
    const { createAuthorityCertificate } = await import('../../operator/pki/certificates.ts');
    const foreignCa = createAuthorityCertificate(other, {
      commonName: 'Evil CA',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
    });
    const pod = await createPod(core, prod, 'reader-foreign', 'reader');
    const { createPublicKey } = await import('node:crypto');
    const certPem = signLeafCertificate(
      { certPem: foreignCa, privateKeyPem: other.privateKeyPem },
      {
        publicKeyPem: createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString(),
        commonName: 'reader',
        uris: [
          `spiffe://${TRUST_DOMAIN}/ns/${prod}/sa/reader`,
          `urn:strongroom:pod:${pod.metadata?.uid ?? ''}`,
        ],
        usages: ['clientAuth'],
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3600_000),
      },
    );
    const client = mtlsClient(suite.endpoint, { certPem, keyPem });
    try {
      expect(denied(await release(client, prod, 'resnet')).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    const entry = await audited(
      (e) => e.type === 'broker-access' && e.operation === 'connect' && e.reason === 'untrusted-certificate',
      'foreign-CA audit',
    );
    expect(JSON.stringify(entry.workload)).toContain(pod.metadata?.uid ?? 'x');
  });

  it('refuses an expired certificate of the right CA at the handshake, and audits it', async () => {
    const pod = await createPod(core, prod, 'reader-expired', 'reader');
    const identity = await caSigned({
      uris: [
        `spiffe://${TRUST_DOMAIN}/ns/${prod}/sa/reader`,
        `urn:strongroom:pod:${pod.metadata?.uid ?? ''}`,
      ],
      notBefore: new Date(Date.now() - 7200_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    const client = mtlsClient(suite.endpoint, identity);
    try {
      expect(denied(await release(client, prod, 'resnet')).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    await audited(
      (e) => e.type === 'broker-access' && e.operation === 'connect' && e.reason === 'certificate-expired',
      'expired-certificate audit',
    );
  });

  it('refuses a certificate naming another pod than the one running as its service account (UNAUTHENTICATED)', async () => {
    // A CA-signed certificate claiming prod/reader but carrying the UID of a pod that runs as prod/other.
    const otherPod = await createPod(core, prod, 'other-0', 'other');
    const forged = await caSigned({
      uris: [
        `spiffe://${TRUST_DOMAIN}/ns/${prod}/sa/reader`,
        `urn:strongroom:pod:${otherPod.metadata?.uid ?? ''}`,
      ],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 600_000),
    });
    const client = mtlsClient(suite.endpoint, forged);
    try {
      const error = denied(await release(client, prod, 'resnet'));
      expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
      // The caller is not told which service account the pod really runs as; the audit entry records the refusal.
      expect(error.details).toBe(
        "pod-identity-mismatch: the pod named by the client certificate does not run as the certificate's service account",
      );
    } finally {
      client.close();
    }
    await audited(
      (e) => e.type === 'key-release' && e.decision === 'deny' && e.reason === 'pod-identity-mismatch',
      'pod-mismatch audit',
    );
    // The genuine certificate of prod/other gets no key either: no grant names it.
    const other = await workload(prod, 'other-1', 'other');
    const error = denied(await release(other.client, prod, 'resnet'));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    // The caller learns the reason, not the grant that almost matched (it names prod/reader).
    expect(error.details).toBe(
      "NoGrant: no AccessGrant allows this workload to read this version; details are in the pod's events",
    );
    expectCallerDenial(error, 'NoGrant', ['resnet-readers', 'reader', prod]);
    // The pod's Event keeps the detail for its owner, and the audit log the reason.
    expect(await denialEvent(prod, 'other-1', /\(no-grant\)/)).toMatch(/No AccessGrant releases/);
    await audited((e) => e.type === 'key-release' && e.reason === 'no-grant', 'no-grant audit');
  });

  it('refuses the token and the certificate of a deleted pod', async () => {
    const w = await workload(prod, 'reader-gone', 'reader');
    granted(await release(w.client, prod, 'resnet'));
    await core.deleteNamespacedPod({ name: 'reader-gone', namespace: prod, gracePeriodSeconds: 0 });
    // Its certificate is still valid for an hour, but the pod it names is gone.
    const error = await eventually('deleted-pod denial', async () => {
      const r = await release(w.client, prod, 'resnet');
      return 'error' in r && r.error.code === grpc.status.UNAUTHENTICATED ? r.error : undefined;
    });
    expect(error.details).toMatch(/has been deleted|does not exist/);
    // Its token no longer attests.
    const again = await attest(suite.endpoint, w.token, keyAndCsr().csrPem);
    if (!(again instanceof Error)) throw new Error('a deleted pod attested');
    // TokenReview normally rejects it (UNAUTHENTICATED); while the API server's pod cache still holds the pod, the
    // broker's own pod lookup refuses it (PERMISSION_DENIED).
    expect([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]).toContain(again.code);
    await audited((e) => e.type === 'key-release' && e.reason === 'pod-deleted', 'pod-deleted audit');
    await audited(
      (e) => e.type === 'broker-access' && e.operation === 'attest' && e.decision === 'deny',
      'attest deny audit',
    );
  });

  it('refuses a dev pod asking for a prod artifact (no cross-environment grant)', async () => {
    await createGrant(
      custom,
      prod,
      grantBody('resnet-dev', 'resnet', {
        subjects: [{ namespace: dev, serviceAccount: 'reader' }],
        versions: { match: 'all' },
      }),
    );
    const w = await workload(dev, 'dev-reader', 'reader');
    const error = denied(await release(w.client, prod, 'resnet'));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expectCallerDenial(error, 'CrossEnvironmentNotAllowed', ['resnet-dev', prod, dev, 'reader']);
    expect(error.details).not.toMatch(/different environments/);
    expect(await denialEvent(dev, 'dev-reader', /cross-environment-not-allowed/)).toMatch(
      /different environments/,
    );
    await audited(
      (e) => e.type === 'key-release' && e.reason === 'cross-environment-not-allowed',
      'cross-env audit',
    );
  });

  it('releases across environments only with an Active, approved cross-environment grant', async () => {
    await sealedArtifact(prod, 'bert', 'internal');
    await createGrant(
      custom,
      prod,
      grantBody('bert-staging', 'bert', {
        subjects: [{ namespace: staging, serviceAccount: 'reader' }],
        crossEnvironment: true,
        approvals: [approval('security@example.com')],
      }),
    );
    const w = await workload(staging, 'staging-reader', 'reader');
    const ok = await eventually('cross-environment release', async () => {
      const r = await release(w.client, prod, 'bert');
      return 'ok' in r ? r.ok : undefined;
    });
    expect(ok.version).toBe('v1');
  });

  it('never releases a restricted artifact across environments, even with an approved cross-environment grant', async () => {
    await sealedArtifact(prod, 'secret-model', 'restricted');
    await createGrant(
      custom,
      prod,
      grantBody('secret-staging', 'secret-model', {
        subjects: [{ namespace: staging, serviceAccount: 'reader' }],
        crossEnvironment: true,
        approvals: [approval('a@example.com'), approval('b@example.com')],
      }),
    );
    const w = await workload(staging, 'staging-reader-2', 'reader');
    const error = denied(await release(w.client, prod, 'secret-model'));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expectCallerDenial(error, 'RestrictedCannotCrossEnvironments', ['secret-staging', prod, staging]);
    expect(await denialEvent(staging, 'staging-reader-2', /restricted-cannot-cross/)).toMatch(
      /never releases restricted artifacts across environments/,
    );
    await audited(
      (e) => e.type === 'key-release' && e.reason === 'restricted-cannot-cross-environments',
      'restricted audit',
    );
  });
});

describe('only injected sidecars get keys', () => {
  const alice = clients(userKubeconfig(cluster, 'alice', ['ml-researchers'])).core;
  /** A pod alice writes by hand (no webhook runs here), as the trainer service account. */
  const handWritten = (name: string, extra: { volumes?: object[]; mounts?: object[] } = {}) => ({
    metadata: { name },
    spec: {
      serviceAccountName: 'trainer',
      schedulerName: 'strongroom-test-no-scheduler',
      automountServiceAccountToken: false,
      containers: [
        {
          name: 'main',
          image: 'localhost/busybox:test',
          command: ['sleep', '3600'],
          volumeMounts: extra.mounts ?? [],
        },
      ],
      volumes: extra.volumes ?? [],
    },
  });
  const ownToken = {
    volumes: [
      {
        name: 'mine',
        projected: {
          sources: [{ serviceAccountToken: { audience: 'strongroom', expirationSeconds: 600, path: 't' } }],
        },
      },
    ],
    mounts: [{ name: 'mine', mountPath: '/var/run/mine', readOnly: true }],
  };

  /** Alice creates `body`; the test then takes a pod-bound token for it, as the kubelet would deliver, and attests. */
  async function attestAs(body: object): Promise<grpc.ServiceError> {
    const pod = await alice.createNamespacedPod({ namespace: lab, body });
    const token = await podToken(core, pod);
    tokens.push(token);
    const outcome = await attest(suite.endpoint, token, keyAndCsr().csrPem);
    if (!(outcome instanceof Error)) throw new Error(`${pod.metadata?.name ?? ''} was attested`);
    return outcome;
  }

  async function refusedAttest(pod: string, detail: RegExp): Promise<void> {
    const entry = await audited(
      (e) =>
        e.type === 'broker-access' &&
        e.operation === 'attest' &&
        e.decision === 'deny' &&
        e.reason === 'pod-not-injected' &&
        typeof e.detail === 'string' &&
        e.detail.includes(`${lab}/${pod} `),
      `pod-not-injected audit for ${pod}`,
    );
    expect(entry.detail).toMatch(detail);
  }

  it('alice, who may create pods but read no secrets, gets no certificate for a pod whose own container mounts a strongroom token', async () => {
    const secrets = await alice.listNamespacedSecret({ namespace: lab }).then(
      () => 'allowed',
      (error: unknown) => String((error as { code?: number }).code),
    );
    expect(secrets).toBe('403');
    const error = await attestAs(handWritten('alice-own-token', ownToken));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error.details).toBe(ATTEST_NOT_INJECTED);
    await refusedAttest('alice-own-token', /does not carry the annotation strongroom\.dev\/injected: v1/);
  });

  it('refuses a pod that looks injected but whose own container also mounts the sidecar token', async () => {
    const body = asInjected(handWritten('alice-shared-token') as never);
    body.spec?.containers[0]?.volumeMounts?.push({ name: 'strongroom-token', mountPath: '/var/run/mine' });
    const error = await attestAs(body);
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error.details).toBe(ATTEST_NOT_INJECTED);
    await refusedAttest(
      'alice-shared-token',
      /container main mounts volume strongroom-token, which only strongroom-sidecar may mount/,
    );
  });

  it('refuses a pod that looks injected but runs another sidecar image than the configured one', async () => {
    const error = await attestAs(
      asInjected(handWritten('alice-own-sidecar') as never, 'localhost/busybox:test'),
    );
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error.details).toBe(ATTEST_NOT_INJECTED);
    await refusedAttest(
      'alice-own-sidecar',
      /runs image "localhost\/busybox:test", not the configured sidecar image/,
    );
  });

  it('refuses a pod whose sidecar would send its token to the pod itself (its endpoints or CA bundle changed)', async () => {
    // The review's attack: the real sidecar image, but pointed at a listener of alice's on 127.0.0.1 and trusting
    // her CA, so the sidecar would hand her the pod's token, which she would then attest with herself.
    const redirect = (name: string, change: Readonly<Record<string, string | undefined>>) => {
      const body = asInjected(handWritten(name) as never);
      const sidecar = body.spec?.initContainers?.find((c) => c.name === 'strongroom-sidecar');
      for (const e of sidecar?.env ?? []) {
        const value = change[e.name];
        if (value !== undefined) e.value = value;
      }
      return body;
    };
    const aliceCa = '-----BEGIN CERTIFICATE-----\nMIIBalice\n-----END CERTIFICATE-----\n';
    for (const [name, change, detail] of [
      [
        'alice-redirect',
        { STRONGROOM_ATTEST_ADDRESS: '127.0.0.1:8443', STRONGROOM_BROKER_ADDRESS: '127.0.0.1:8444' },
        /sets STRONGROOM_BROKER_ADDRESS="127\.0\.0\.1:8444".*send its token elsewhere/,
      ],
      ['alice-own-ca', { STRONGROOM_CA_BUNDLE: aliceCa }, /trusts a CA bundle .* that is not the operator's/],
    ] as const) {
      const error = await attestAs(redirect(name, change));
      expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(error.details).toBe(ATTEST_NOT_INJECTED);
      await refusedAttest(name, detail);
    }
  });

  it('stops releasing keys to an attested pod once its sidecar image is changed', async () => {
    const w = await workload(prod, 'reader-retooled', 'reader');
    granted(await release(w.client, prod, 'resnet'));
    await must(cluster, [
      '-n',
      prod,
      'set',
      'image',
      'pod/reader-retooled',
      'strongroom-sidecar=localhost/busybox:test',
    ]);
    const error = await eventually('pod-not-injected refusal', async () => {
      const r = await release(w.client, prod, 'resnet');
      return 'error' in r && r.error.code === grpc.status.PERMISSION_DENIED ? r.error : undefined;
    });
    expect(error.details).toBe(POD_NOT_INJECTED);
    await audited(
      (e) => e.type === 'key-release' && e.reason === 'pod-not-injected',
      'pod-not-injected release audit',
    );
    expect(await denialEvent(prod, 'reader-retooled', /pod-not-injected/)).toContain(
      'not the configured sidecar image',
    );
  });

  it('stops releasing keys to an attested pod once an ephemeral container mounts its token', async () => {
    const w = await workload(prod, 'reader-debugged', 'reader');
    granted(await release(w.client, prod, 'resnet'));
    const debug = {
      spec: {
        ephemeralContainers: [
          {
            name: 'debug',
            image: 'localhost/busybox:test',
            command: ['sleep', '3600'],
            volumeMounts: [{ name: 'strongroom-token', mountPath: '/stolen', readOnly: true }],
          },
        ],
      },
    };
    await must(cluster, [
      '-n',
      prod,
      'patch',
      'pod',
      'reader-debugged',
      '--subresource=ephemeralcontainers',
      '--type=strategic',
      `-p=${JSON.stringify(debug)}`,
    ]);
    const error = await eventually('pod-not-injected refusal', async () => {
      const r = await release(w.client, prod, 'resnet');
      return 'error' in r && r.error.code === grpc.status.PERMISSION_DENIED ? r.error : undefined;
    });
    expect(error.details).toBe(POD_NOT_INJECTED);
    expect(await denialEvent(prod, 'reader-debugged', /pod-not-injected/)).toContain(
      'ephemeral container debug mounts volume strongroom-token',
    );
  });
});

describe('WatchRevocations', () => {
  it('a grant that expires mid-session: the key lease ends with it, the stream says so within 1 s, and no key follows', async () => {
    await sealedArtifact(prod, 'short', 'internal');
    const expiresAt = new Date(Date.now() + 9000);
    await createGrant(
      custom,
      prod,
      grantBody('short-lived', 'short', {
        subjects: [{ namespace: prod, serviceAccount: 'reader' }],
        expiresAt: expiresAt.toISOString(),
      }),
    );
    const w = await workload(prod, 'reader-short', 'reader');
    const ok = await eventually('release before expiry', async () => {
      const r = await release(w.client, prod, 'short');
      return 'ok' in r ? r.ok : undefined;
    });
    expect(Number(ok.leaseExpiresAt?.seconds) * 1000).toBeLessThanOrEqual(expiresAt.getTime());
    const stream = watch(w.client);
    const revoked = await eventually(
      'grant-expired revocation',
      () => stream.messages.find((m) => m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_EXPIRED'),
      20_000,
    );
    stream.cancel();
    const lateness = revoked.at - expiresAt.getTime();
    process.stderr.write(`[broker] grant expiry reached the client ${String(lateness)} ms after expiresAt\n`);
    expect(lateness).toBeLessThan(1000);
    expect(revoked.message.revocation?.grant?.name).toBe('short-lived');
    expect(revoked.message.revocation?.artifact?.name).toBe('short');
    const error = denied(await release(w.client, prod, 'short'));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error.details).not.toContain('short-lived');
    expect(error.details).toMatch(/details are in the pod's events$/);
    await denialEvent(prod, 'reader-short', /Expired|expired/);
    expect(stream.messages[0]?.message.heartbeat?.epoch).not.toBe('');
  });

  it('pushes a deleted grant and a deleted artifact to the holder within 1 s', async () => {
    await sealedArtifact(prod, 'gone', 'internal');
    await createGrant(
      custom,
      prod,
      grantBody('gone-readers', 'gone', {
        subjects: [{ namespace: prod, serviceAccount: 'reader' }],
      }),
    );
    const w = await workload(prod, 'reader-del', 'reader');
    await eventually('release', async () => {
      const r = await release(w.client, prod, 'gone');
      return 'ok' in r ? r.ok : undefined;
    });
    const stream = watch(w.client);
    await eventually('first heartbeat', () => stream.messages[0]);
    const t0 = Date.now();
    await must(cluster, ['-n', prod, 'delete', 'accessgrant', 'gone-readers', '--wait=false']);
    const deleted = await eventually('grant-deleted', () =>
      stream.messages.find((m) => m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_DELETED'),
    );
    expect(deleted.at - t0).toBeLessThan(1000);
    const t1 = Date.now();
    await must(cluster, ['-n', prod, 'delete', 'modelartifact', 'gone', '--wait=false']);
    const gone = await eventually('artifact-deleted', () =>
      stream.messages.find((m) => m.message.revocation?.reason === 'REVOCATION_REASON_ARTIFACT_DELETED'),
    );
    expect(gone.at - t1).toBeLessThan(1000);
    stream.cancel();
  });

  it('pushes a quarantine (reversible) and an administrator revocation (final) within 1 s', async () => {
    await sealedArtifact(prod, 'quarantine', 'internal');
    await createGrant(
      custom,
      prod,
      grantBody('q-readers', 'quarantine', { subjects: [{ namespace: prod, serviceAccount: 'reader' }] }),
    );
    const w = await workload(prod, 'reader-q', 'reader');
    const released = async () =>
      eventually('release', async () => {
        const r = await release(w.client, prod, 'quarantine');
        return 'ok' in r ? r.ok : undefined;
      });
    await released();
    const stream = watch(w.client);
    await eventually('first heartbeat', () => stream.messages[0]);
    const t0 = Date.now();
    await must(cluster, [
      '-n',
      prod,
      'annotate',
      'accessgrant',
      'q-readers',
      'strongroom.dev/quarantined=incident-7',
    ]);
    const suspended = await eventually('grant-suspended', () =>
      stream.messages.find((m) => m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_SUSPENDED'),
    );
    expect(suspended.at - t0).toBeLessThan(1000);
    const refused = denied(await release(w.client, prod, 'quarantine'));
    expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused.details).not.toMatch(/quarantined|q-readers/);
    await denialEvent(prod, 'reader-q', /quarantined/);
    await must(cluster, ['-n', prod, 'annotate', 'accessgrant', 'q-readers', 'strongroom.dev/quarantined-']);
    await released();
    const t1 = Date.now();
    await must(cluster, [
      '-n',
      prod,
      'annotate',
      'accessgrant',
      'q-readers',
      'strongroom.dev/revoked=leaked',
    ]);
    const revoked = await eventually('grant-revoked', () =>
      stream.messages.find((m) => m.message.revocation?.reason === 'REVOCATION_REASON_GRANT_REVOKED'),
    );
    expect(revoked.at - t1).toBeLessThan(1000);
    stream.cancel();
    await must(cluster, ['-n', prod, 'annotate', 'accessgrant', 'q-readers', 'strongroom.dev/revoked-']);
    expect(denied(await release(w.client, prod, 'quarantine')).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('ends streams at the maximum connection age (UNAVAILABLE) so that certificate expiry bites; a resume with a foreign epoch gets a Resync', async () => {
    const w = workloads[0];
    if (w === undefined) throw new Error('no workload');
    const started = Date.now();
    const stream = watch(w.client);
    const ended = await stream.ended;
    expect(ended?.code).toBe(grpc.status.UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(20_000);
    const resumed = watch(w.client, { afterSeq: '5', epoch: 'some-other-epoch' });
    const first = await eventually('resync', () => resumed.messages[0]);
    expect(first.message.resync?.message).toMatch(/restarted|changed/);
    resumed.cancel();
  }, 30_000);
});

describe('PublishVersion', () => {
  it('adds a version sealed by a publisher with a publish grant, records its SPIFFE ID, and the DEK is then released to readers', async () => {
    const { artifact } = await sealedArtifact(prod, 'finetune', 'internal');
    await createGrant(
      custom,
      prod,
      grantBody('finetune-publish', 'finetune', {
        subjects: [{ namespace: prod, serviceAccount: 'publisher' }],
        mode: 'publish',
        versions: { match: 'all' },
      }),
    );
    await createGrant(
      custom,
      prod,
      grantBody('finetune-read', 'finetune', {
        subjects: [{ namespace: prod, serviceAccount: 'reader' }],
        versions: { match: 'all' },
      }),
    );
    const publisher = await workload(prod, 'publisher-0', 'publisher');
    const reader = await workload(prod, 'reader-ft', 'reader');
    const key = artifact.status?.recipientPublicKey;
    if (!key) throw new Error('no recipient key');
    const dek = newDek();
    deks.push(dek);
    const sealed = await sealDek(rawRecipientKey(key.publicKeyPem), dek, {
      artifactUid: artifact.metadata.uid ?? '',
      artifactName: 'finetune',
      version: 'v2',
    });
    const request = {
      artifact: { namespace: prod, name: 'finetune' },
      version: 'v2',
      digest: `sha256:${'ab'.repeat(32)}`,
      size: '4096',
      sealedKey: {
        suite: 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM' as const,
        enc: Buffer.from(sealed.enc, 'base64'),
        ciphertext: Buffer.from(sealed.ciphertext, 'base64'),
      },
      keyFingerprint: key.fingerprint,
      lineage: {
        parents: [{ kind: 'PARENT_KIND_MODEL_ARTIFACT' as const, name: 'finetune', version: 'v1' }],
      },
    };
    const publish = (client: typeof publisher.client, body: typeof request) =>
      new Promise<{
        ok?: { resourceVersion: string; version: { publisher: string } | null };
        error?: grpc.ServiceError;
      }>((resolve) => {
        client.PublishVersion(body, (error, response) => {
          resolve(error ? { error } : { ok: response as never });
        });
      });
    // A reader has no publish grant.
    const refused = await publish(reader.client, request);
    expect(refused.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused.error?.details).toBe(
      "NoPublishGrant: no AccessGrant allows this workload to publish this version; details are in the broker's audit log",
    );
    await audited(
      (e) =>
        e.type === 'broker-access' &&
        e.operation === 'publish-version' &&
        e.reason === 'no-publish-grant' &&
        typeof e.detail === 'string' &&
        e.detail.length > 0 &&
        !e.detail.startsWith('NoPublishGrant:'),
      'publish refusal audit with its detail',
    );
    const ok = await eventually('publish', async () => {
      const r = await publish(publisher.client, request);
      return r.ok;
    });
    expect(ok.version?.publisher).toBe(`spiffe://${TRUST_DOMAIN}/ns/${prod}/sa/publisher`);
    const stored = await getArtifact(custom, prod, 'finetune');
    const v2 = stored.spec.versions?.find((v) => v.name === 'v2');
    expect(v2?.publisher).toBe(`spiffe://${TRUST_DOMAIN}/ns/${prod}/sa/publisher`);
    expect(v2?.lineage?.parents?.[0]).toEqual({ kind: 'ModelArtifact', name: 'finetune', version: 'v1' });
    const released = await eventually('release of the published version', async () => {
      const r = await release(reader.client, prod, 'finetune', 'v2');
      return 'ok' in r ? r.ok : undefined;
    });
    expect(Buffer.from(released.dek).equals(dek)).toBe(true);
    // Versions are immutable: the same name again is ALREADY_EXISTS.
    const again = await publish(publisher.client, request);
    expect(again.error?.code).toBe(grpc.status.ALREADY_EXISTS);
    // A sealed key that does not open (sealed for another version) is refused before anything is written.
    const wrongSeal = await sealDek(rawRecipientKey(key.publicKeyPem), newDek(), {
      artifactUid: artifact.metadata.uid ?? '',
      artifactName: 'finetune',
      version: 'other',
    });
    const bad = await publish(publisher.client, {
      ...request,
      version: 'v3',
      sealedKey: {
        ...request.sealedKey,
        enc: Buffer.from(wrongSeal.enc, 'base64'),
        ciphertext: Buffer.from(wrongSeal.ciphertext, 'base64'),
      },
    });
    expect(bad.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await getArtifact(custom, prod, 'finetune')).spec.versions?.some((v) => v.name === 'v3')).toBe(
      false,
    );
    // A DEK sealed to another key, and malformed fields, are refused before anything is written; each is audited.
    const otherKey = await publish(publisher.client, {
      ...request,
      version: 'v4',
      keyFingerprint: `sha256:${'0'.repeat(64)}`,
    });
    expect(otherKey.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(otherKey.error?.details).toMatch(/recipient key is sha256:/);
    const badDigest = await publish(publisher.client, { ...request, version: 'v5', digest: 'md5:abc' });
    expect(badDigest.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badDigest.error?.details).toMatch(/digest must be/);
    const noKind = await publish(publisher.client, {
      ...request,
      version: 'v6',
      lineage: { parents: [{ kind: 'PARENT_KIND_UNSPECIFIED' as never, name: 'finetune', version: 'v1' }] },
    });
    expect(noKind.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const stored2 = await getArtifact(custom, prod, 'finetune');
    expect(stored2.spec.versions?.map((v) => v.name)).toEqual(['v1', 'v2']);
    for (const reason of ['recipient-key-mismatch', 'invalid-request', 'no-publish-grant'])
      await audited(
        (e) => e.type === 'broker-access' && e.operation === 'publish-version' && e.reason === reason,
        `publish ${reason} audit`,
      );
    await audited(
      (e) => e.type === 'broker-access' && e.operation === 'publish-version' && e.decision === 'allow',
      'publish audit',
    );
  });
});

describe('serving certificate and audit', () => {
  it('rotates the serving certificate without a restart', async () => {
    const serial = () =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({
          host: '127.0.0.1',
          port: suite.endpoint.attestPort,
          ca: suite.endpoint.caPem,
          servername: suite.endpoint.serverName,
          ALPNProtocols: ['h2'],
        });
        socket.once('secureConnect', () => {
          resolve(socket.getPeerX509Certificate()?.serialNumber ?? '');
          socket.destroy();
        });
        socket.once('error', reject);
      });
    const before = await serial();
    const secret = await core.readNamespacedSecret({ name: 'strongroom-broker-tls', namespace: opNs });
    const { current } = parseAuthoritySecret(
      await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: opNs }),
      'strongroom-ca',
    );
    const key = await generateRsaKey(2048);
    const old = new X509Certificate(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64'));
    const renewed = signLeafCertificate(current, {
      publicKeyPem: key.publicKeyPem,
      commonName: 'strongroom-broker',
      dnsNames: [suite.endpoint.serverName],
      ipAddresses: ['127.0.0.1'],
      usages: ['serverAuth'],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: old.validToDate,
    });
    await core.patchNamespacedSecret(
      {
        name: 'strongroom-broker-tls',
        namespace: opNs,
        body: {
          data: {
            'tls.crt': Buffer.from(renewed).toString('base64'),
            'tls.key': Buffer.from(key.privateKeyPem).toString('base64'),
          },
        },
      },
      (await import('../../operator/controllers/status-writer.ts')).mergePatch,
    );
    const after = await eventually('new serving certificate', async () => {
      const s = await serial();
      return s !== before ? s : undefined;
    });
    expect(after.toLowerCase()).toBe(new X509Certificate(renewed).serialNumber.toLowerCase());
    // The same process still serves keys with it.
    const w = workloads[0];
    if (w === undefined) throw new Error('no workload');
    granted(
      await eventually('release after rotation', async () => {
        const r = await release(w.client, prod, 'resnet');
        return 'ok' in r ? r : undefined;
      }),
    );
  });

  it('the audit log verifies with the published verifier key and holds every decision, with no key material', async () => {
    const vkey = await auditVerifierKey(core, opNs);
    const files = readdirSync(suite.operator.auditLogDir);
    expect(files).toHaveLength(1);
    const path = join(suite.operator.auditLogDir, files[0] ?? '');
    // Let a checkpoint cover the latest entries (written every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(vkey)] });
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    // The one-command check.
    const cli = await auditVerifyCli(path, vkey);
    expect(cli.out).toMatch(/ok|verified/i);
    expect(cli.code).toBe(0);
    const events = suite.auditEvents();
    const reasons = new Set(events.map((e) => `${e.type}:${String(e.reason)}`));
    for (const expected of [
      'broker-access:no-client-certificate',
      'broker-access:untrusted-certificate',
      'broker-access:certificate-expired',
      'key-release:pod-identity-mismatch',
      'key-release:pod-deleted',
      'key-release:grant-not-active',
      'key-release:cross-environment-not-allowed',
      'key-release:restricted-cannot-cross-environments',
      'key-release:granted',
    ])
      expect(reasons, expected).toContain(expected);
    // No DEK, token or private key anywhere: not in the audit log, not in the operator's output.
    const texts = [readFileSync(path, 'utf8'), suite.operator.output()];
    for (const text of texts) {
      for (const dek of deks) {
        expect(text).not.toContain(dek.toString('base64'));
        expect(text).not.toContain(dek.toString('hex'));
      }
      for (const token of tokens) expect(text).not.toContain(token);
      expect(text).not.toMatch(/PRIVATE KEY/);
    }
  });
});

describe('shutdown', () => {
  it('ends open revocation streams with UNAVAILABLE at once and exits cleanly', async () => {
    const w = workloads.find((x) => x.pod.metadata?.name === 'reader-0');
    if (w === undefined) throw new Error('no workload');
    const stream = watch(w.client);
    await eventually('first heartbeat', () => stream.messages[0]);
    const started = Date.now();
    const ending = stream.ended.then((error) => ({ error, after: Date.now() - started }));
    const exit = await suite.operator.stop();
    const ended = await ending;
    expect(ended.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(ended.error?.details).toBe('the broker is shutting down');
    expect(exit.code).toBe(0);
    // Closed by the broker as its first shutdown step, not by the 5 s grace running out.
    expect(ended.after).toBeLessThan(3000);
  });
});
