/**
 * A workload's side of the key broker for the integration tests: a real pod created through the API server (never
 * scheduled, so it stays Pending with a real UID), a real pod-bound token from TokenRequest, a real key pair and CSR,
 * and an mTLS gRPC client with the certificate that Attest returned.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import forge from 'node-forge';
import { buildPatch } from '../../core/injection/patch.ts';
import { applyPatch } from '../../core/injection/testdata/json-patch.ts';
import { DEFAULT_SIDECAR_IMAGE } from '../../operator/config.ts';
import type { ReleaseKeyResponse__Output } from '../../proto/generated/strongroom/v1/ReleaseKeyResponse.ts';
import type { WatchRevocationsResponse__Output } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { loadKeyBroker, type KeyBrokerClient } from '../../proto/keybroker.ts';

export const keyBroker = loadKeyBroker();

/** What a test operator injects: its sidecar endpoints and its CA bundle (see {@link useOperatorInjection}). */
export interface TestInjection {
  readonly image: string;
  readonly brokerAddress: string;
  readonly attestAddress: string;
  readonly brokerServerName: string;
  readonly caBundlePem: string;
}

/** The operator's defaults for `--sidecar-*` in `operatorNamespace`, with `caBundlePem`. */
export function defaultInjection(operatorNamespace: string, caBundlePem: string): TestInjection {
  const host = `strongroom-broker.${operatorNamespace}.svc`;
  return {
    image: DEFAULT_SIDECAR_IMAGE,
    brokerAddress: `${host}:9444`,
    attestAddress: `${host}:9443`,
    brokerServerName: host,
    caBundlePem,
  };
}

let current: TestInjection | undefined;

/** Sets what {@link asInjected} builds (unit tests; integration tests use {@link useOperatorInjection}). */
export function setInjection(injection: TestInjection): void {
  current = injection;
}

/**
 * Makes {@link asInjected} and {@link createPod} build pods as the operator in `operatorNamespace` injects them:
 * its default sidecar endpoints (or `overrides`) and the CA bundle in its CA Secret (waited for). The broker
 * refuses a sidecar that would send its token anywhere else or trust another CA.
 */
export async function useOperatorInjection(
  core: CoreV1Api,
  operatorNamespace: string,
  overrides: Partial<TestInjection> = {},
): Promise<TestInjection> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const secret = await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: operatorNamespace });
      const bundle = Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
      if (bundle.includes('BEGIN CERTIFICATE')) {
        current = { ...defaultInjection(operatorNamespace, bundle), ...overrides };
        return current;
      }
    } catch {
      // not there yet
    }
    if (Date.now() > deadline)
      throw new Error(`no CA Secret strongroom-ca in ${operatorNamespace} after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * `pod` as the webhook injects it (the real core/injection patch builder, with no artifacts, applied as the API
 * server applies it): the annotation, the native sidecar with `image`, the operator's endpoints and CA bundle, and
 * its token, mounted in the sidecar only. Broker tests create pods this way without running the webhook; the broker
 * certifies only pods like this. Call {@link useOperatorInjection} first.
 */
export function asInjected(pod: V1Pod, image?: string): V1Pod {
  if (current === undefined) throw new Error('call useOperatorInjection() before building injected pods');
  const plan = {
    sidecar: { version: 'v1' as const, artifacts: [] },
    ciphertext: [],
    s3Credentials: [],
    plaintext: [],
    output: undefined,
    resolved: [],
  };
  const settings = { ...current, image: image ?? current.image, operatorNamespace: 'strongroom-system' };
  return applyPatch(pod, buildPatch(pod, plan, settings));
}

/** A pod that stays Pending (no scheduler picks it up) but exists, with a real UID, looking injected. */
export async function createPod(
  core: CoreV1Api,
  namespace: string,
  name: string,
  serviceAccount: string,
  labels: Record<string, string> = {},
): Promise<V1Pod> {
  return core.createNamespacedPod({
    namespace,
    body: asInjected({
      metadata: { name, labels },
      spec: {
        serviceAccountName: serviceAccount,
        schedulerName: 'strongroom-test-no-scheduler',
        automountServiceAccountToken: false,
        containers: [{ name: 'main', image: 'localhost/busybox:test', command: ['sleep', '3600'] }],
      },
    }),
  });
}

/** A real projected-style token bound to the pod (TokenRequest). */
export async function podToken(core: CoreV1Api, pod: V1Pod, audience = 'strongroom'): Promise<string> {
  const response = await core.createNamespacedServiceAccountToken({
    name: pod.spec?.serviceAccountName ?? 'default',
    namespace: pod.metadata?.namespace ?? '',
    body: {
      spec: {
        audiences: [audience],
        expirationSeconds: 3600,
        boundObjectRef: {
          kind: 'Pod',
          apiVersion: 'v1',
          name: pod.metadata?.name ?? '',
          uid: pod.metadata?.uid ?? '',
        },
      },
    },
  });
  return response.status?.token ?? '';
}

/** An RSA key pair and a CSR over it. */
export function keyAndCsr(): { keyPem: string; csrPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: 'workload' }]);
  csr.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { keyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}

/** Where the broker listens and how to verify it. */
export interface BrokerEndpoint {
  readonly attestPort: number;
  readonly brokerPort: number;
  /** The operator CA bundle (PEM). */
  readonly caPem: string;
  /** The name in the broker's serving certificate. */
  readonly serverName: string;
}

export function channelOptions(endpoint: BrokerEndpoint): grpc.ChannelOptions {
  return {
    'grpc.ssl_target_name_override': endpoint.serverName,
    'grpc.default_authority': endpoint.serverName,
  };
}

/** Calls Attest with a token and CSR over server-authenticated TLS. */
export function attest(
  endpoint: BrokerEndpoint,
  token: string,
  csrPem: string,
): Promise<{ certPem: string; notAfter: Date; spiffeId: string } | grpc.ServiceError> {
  const client = new keyBroker.Client(
    `127.0.0.1:${String(endpoint.attestPort)}`,
    grpc.credentials.createSsl(Buffer.from(endpoint.caPem)),
    channelOptions(endpoint),
  );
  return new Promise((resolve) => {
    client.Attest(
      { serviceAccountToken: token, csrPem },
      { deadline: Date.now() + 30_000 },
      (error, response) => {
        client.close();
        if (error) resolve(error);
        else
          resolve({
            certPem: response?.certificateChainPem ?? '',
            notAfter: new Date(Number(response?.notAfter?.seconds ?? 0) * 1000),
            spiffeId: response?.spiffeId ?? '',
          });
      },
    );
  });
}

/** An mTLS client with the given certificate and key (or none). */
export function mtlsClient(
  endpoint: BrokerEndpoint,
  identity: { certPem: string; keyPem: string } | undefined,
  caPem = endpoint.caPem,
): KeyBrokerClient {
  const credentials =
    identity === undefined
      ? grpc.credentials.createSsl(Buffer.from(caPem))
      : grpc.credentials.createSsl(
          Buffer.from(caPem),
          Buffer.from(identity.keyPem),
          Buffer.from(identity.certPem),
        );
  return new keyBroker.Client(
    `127.0.0.1:${String(endpoint.brokerPort)}`,
    credentials,
    channelOptions(endpoint),
  );
}

/** A workload that attested: its pod, its key and certificate, and an mTLS client. */
export interface Workload {
  readonly pod: V1Pod;
  readonly uid: string;
  readonly token: string;
  readonly keyPem: string;
  readonly certPem: string;
  readonly spiffeId: string;
  readonly notAfter: Date;
  readonly client: KeyBrokerClient;
}

/** Creates a pod, attests it and connects with its certificate. */
export async function attestedWorkload(
  core: CoreV1Api,
  endpoint: BrokerEndpoint,
  namespace: string,
  name: string,
  serviceAccount: string,
  labels: Record<string, string> = {},
): Promise<Workload> {
  const pod = await createPod(core, namespace, name, serviceAccount, labels);
  const token = await podToken(core, pod);
  const { keyPem, csrPem } = keyAndCsr();
  const result = await attest(endpoint, token, csrPem);
  if (result instanceof Error) throw new Error(`attest ${namespace}/${name}: ${result.details}`);
  return {
    pod,
    uid: pod.metadata?.uid ?? '',
    token,
    keyPem,
    certPem: result.certPem,
    spiffeId: result.spiffeId,
    notAfter: result.notAfter,
    client: mtlsClient(endpoint, { certPem: result.certPem, keyPem }),
  };
}

export type Released = { ok: ReleaseKeyResponse__Output } | { error: grpc.ServiceError };

/** ReleaseKey as a promise that never rejects. */
export function release(
  client: KeyBrokerClient,
  namespace: string,
  name: string,
  version = 'latest',
): Promise<Released> {
  return new Promise((resolve) => {
    client.ReleaseKey(
      { artifact: { namespace, name }, version },
      { deadline: Date.now() + 30_000 },
      (error, response) => {
        if (error) resolve({ error });
        else if (response) resolve({ ok: response });
      },
    );
  });
}

/** A WatchRevocations stream that records every message with the time it arrived. */
export interface Watch {
  readonly messages: { at: number; message: WatchRevocationsResponse__Output }[];
  readonly ended: Promise<grpc.ServiceError | undefined>;
  cancel(): void;
}

export function watch(client: KeyBrokerClient, request: { afterSeq?: string; epoch?: string } = {}): Watch {
  const call = client.WatchRevocations({
    epoch: request.epoch ?? '',
    ...(request.afterSeq ? { afterSeq: request.afterSeq } : {}),
  });
  const messages: Watch['messages'] = [];
  call.on('data', (message: WatchRevocationsResponse__Output) => {
    messages.push({ at: Date.now(), message });
  });
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on('error', (error: grpc.ServiceError) => {
      resolve(error);
    });
    call.on('end', () => {
      resolve(undefined);
    });
  });
  return {
    messages,
    ended,
    cancel: () => {
      call.cancel();
    },
  };
}
