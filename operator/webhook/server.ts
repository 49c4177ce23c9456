/**
 * The sidecar-injecting admission webhook's HTTPS layer: it reads an AdmissionReview, hands it to a pure review
 * function (core/injection `admit`) and writes the answer. Nothing here decides anything. It runs on every replica
 * (the decision reads only the informer caches), serves the certificate in Secret `strongroom-webhook-tls` issued by
 * the operator CA, and swaps in a renewed certificate without a restart.
 *
 * Fail closed: a body that is not an AdmissionReview is answered 400, which the API server treats as a webhook
 * failure; with `failurePolicy: Fail` (which the configuration uses only for pods that opted in) the pod is refused.
 * A review function that throws yields an explicit denial, never an unpatched admission.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CoreV1Api } from '@kubernetes/client-node';
import type winston from 'winston';
import { CredentialReloader, CredentialReloadError } from '../pki/credential-reloader.ts';
import { readServingCertificate } from '../pki/serving-secret.ts';

/** The webhook's path for pods; the MutatingWebhookConfiguration points here. */
export const MUTATE_PODS_PATH = '/mutate/pods';
/** The API server sends at most a few MiB (a pod is capped by etcd's request size); refuse more. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** An AdmissionReview answer as the review function returns it. */
export interface ReviewAnswer {
  readonly apiVersion: string;
  readonly kind: string;
  readonly response: { readonly uid: string; readonly allowed: boolean; readonly patch?: string };
}

/** What one admission turned out as, for metrics. */
export type AdmissionOutcome = 'injected' | 'skipped' | 'denied' | 'error' | 'bad-request';

export interface WebhookServerOptions {
  readonly host: string;
  readonly port: number;
  /** The operator's namespace, where the serving Secret lives. */
  readonly namespace: string;
  readonly core: CoreV1Api;
  /** Default `strongroom-webhook-tls`. */
  readonly servingSecretName?: string;
  /** How often the serving certificate is re-read. */
  readonly credentialRefreshMs: number;
  /** The pure decision: an AdmissionReview in, its answer out. May throw; the server then denies. */
  readonly review: (body: unknown) => ReviewAnswer;
  readonly logger: winston.Logger;
  readonly observe?: (outcome: AdmissionOutcome, seconds: number) => void;
}

/** A failure to start the webhook server. */
export class WebhookServerError extends Error {
  override readonly name = 'WebhookServerError';
}

/** The HTTPS server of the sidecar-injecting webhook. */
export class WebhookServer {
  readonly #o: WebhookServerOptions;
  readonly #credentials: CredentialReloader<{ cert: string; key: string }>;
  #server: Server | undefined;

  constructor(options: WebhookServerOptions) {
    this.#o = options;
    this.#credentials = new CredentialReloader({
      what: 'the webhook serving certificate',
      read: () => this.#readIdentity(),
      same: (a, b) => a.cert === b.cert,
      onChange: (next) => {
        this.#server?.setSecureContext(next);
        options.logger.info('webhook serving certificate renewed');
      },
      refreshMs: options.credentialRefreshMs,
      logger: options.logger,
    });
  }

  /**
   * Waits for the serving certificate (backing off from 200 ms to 2 s between reads), listens, and resolves with the
   * bound port. Throws WebhookServerError when `signal` aborts or `stop()` is called first.
   */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    let identity: { cert: string; key: string };
    try {
      identity = await this.#credentials.waitForFirst(signal);
    } catch (error) {
      if (error instanceof CredentialReloadError)
        throw new WebhookServerError('stopped while waiting', { cause: error });
      throw error;
    }
    const server = createServer(
      { ...identity, minVersion: 'TLSv1.2', requestTimeout: 10_000, headersTimeout: 5_000 },
      (req, res) => {
        this.#handle(req, res);
      },
    );
    server.keepAliveTimeout = 30_000;
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port, this.#o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#credentials.startRefreshing();
    const port = (server.address() as AddressInfo).port;
    this.#o.logger.info('admission webhook listening', { host: this.#o.host, port, path: MUTATE_PODS_PATH });
    return { port };
  }

  /** True once listening. */
  ready(): boolean {
    return this.#server?.listening === true;
  }

  async stop(): Promise<void> {
    this.#credentials.stop();
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
      server.closeIdleConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const started = process.hrtime.bigint();
    const finish = (status: number, body: unknown, outcome: AdmissionOutcome): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
      this.#o.observe?.(outcome, Number(process.hrtime.bigint() - started) / 1e9);
    };
    if (req.method !== 'POST' || req.url?.split('?')[0] !== MUTATE_PODS_PATH) {
      finish(404, { error: `only POST ${MUTATE_PODS_PATH} is served` }, 'bad-request');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES && !refused) {
        refused = true;
        finish(413, { error: `request body over ${String(MAX_BODY_BYTES)} bytes` }, 'bad-request');
        req.destroy();
      } else if (!refused) chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        finish(400, { error: 'the request body is not JSON' }, 'bad-request');
        return;
      }
      const uid = requestUid(body);
      if (uid === undefined) {
        finish(400, { error: 'not an admission.k8s.io/v1 AdmissionReview with request.uid' }, 'bad-request');
        return;
      }
      try {
        const answer = this.#o.review(body);
        const outcome: AdmissionOutcome = !answer.response.allowed
          ? 'denied'
          : answer.response.patch
            ? 'injected'
            : 'skipped';
        // Refusals at info (someone's pod did not start); injections at debug: they are on every opted-in pod
        // create's critical path, and the metric counts them.
        if (outcome === 'denied') this.#o.logger.info('admission refused', { ...describe(body), outcome });
        else if (outcome === 'injected') this.#o.logger.debug('admission', { ...describe(body), outcome });
        finish(200, answer, outcome);
      } catch (error) {
        this.#o.logger.error('admission review failed; denying', {
          ...describe(body),
          error: error instanceof Error ? error.message : String(error),
        });
        finish(
          200,
          {
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: {
              uid,
              allowed: false,
              status: { code: 500, message: 'strongroom: the injection webhook failed internally; retry' },
            },
          },
          'error',
        );
      }
    });
    req.on('error', () => {
      refused = true;
    });
  }

  async #readIdentity(): Promise<{ cert: string; key: string }> {
    const name = this.#o.servingSecretName ?? 'strongroom-webhook-tls';
    const { cert, key } = await readServingCertificate(this.#o.core, this.#o.namespace, name);
    return { cert: cert.toString(), key: key.toString() };
  }
}

function requestUid(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: { uid?: unknown } };
  if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview') return undefined;
  const uid = review.request?.uid;
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

/** Who and what, for the log: never the pod spec (it may carry secrets in env). */
function describe(body: unknown): Record<string, string> {
  const request = (body as { request?: Record<string, unknown> }).request ?? {};
  const text = (value: unknown): string => (typeof value === 'string' ? value : '');
  const object = (request['object'] ?? {}) as { metadata?: { name?: string; generateName?: string } };
  const user = (request['userInfo'] ?? {}) as { username?: string };
  return {
    uid: text(request['uid']),
    namespace: text(request['namespace']),
    pod: object.metadata?.name ?? `${object.metadata?.generateName ?? ''}*`,
    operation: text(request['operation']),
    user: user.username ?? '',
  };
}
