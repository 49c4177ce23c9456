/**
 * The key broker's gRPC server. This slice serves the attest listener only: server-authenticated TLS (a pod has no
 * client certificate before it attests) with the serving certificate of Secret `strongroom-broker-tls` (tls.crt,
 * tls.key; signed by the operator CA, see docs/pki.md). `Attest` is served; ReleaseKey, WatchRevocations and
 * PublishVersion answer UNIMPLEMENTED until the mutual-TLS listener exists. Connections are closed after at most
 * 10 minutes so that CA and serving certificate changes take effect.
 */
import * as grpc from '@grpc/grpc-js';
import { ApiException, type AuthenticationV1Api, type CoreV1Api } from '@kubernetes/client-node';
import type winston from 'winston';
import { loadKeyBroker, type KeyBrokerHandlers } from '../../proto/keybroker.ts';
import type { InternalCa } from '../pki/internal-ca.ts';
import { attest, AttestError, type AttestStatus } from './attest.ts';
import { checkTrustDomain } from './identity.ts';

/** How the broker server is configured. */
export interface BrokerServerOptions {
  /** Address to listen on, e.g. `0.0.0.0` or `127.0.0.1`. */
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** The operator namespace, which holds the serving Secret. */
  readonly namespace: string;
  /** Default `strongroom-broker-tls`. */
  readonly servingSecretName?: string;
  /** Reads the serving Secret and the bound pods (get secrets, get pods). */
  readonly core: CoreV1Api;
  /** TokenReview (create tokenreviews). */
  readonly authentication: AuthenticationV1Api;
  readonly ca: Pick<InternalCa, 'signLeaf' | 'load'>;
  /** SPIFFE trust domain of issued certificates. */
  readonly trustDomain: string;
  readonly logger: winston.Logger;
  /** Default 10 minutes. */
  readonly maxConnectionAgeMs?: number;
}

/** Failure to start the broker server. */
export class BrokerServerError extends Error {
  override readonly name = 'BrokerServerError';
}

const STATUS: Record<AttestStatus, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};
const SHUTDOWN_GRACE_MS = 5000;

/** The key broker gRPC server (attest listener). */
export class BrokerServer {
  readonly #options: BrokerServerOptions;
  readonly #logger: winston.Logger;
  #server: grpc.Server | null = null;

  constructor(options: BrokerServerOptions) {
    checkTrustDomain(options.trustDomain);
    this.#options = options;
    this.#logger = options.logger.child({ component: 'broker' });
  }

  /** Reads the serving Secret and listens. Throws BrokerServerError when the Secret is missing or unusable. */
  async start(): Promise<{ port: number }> {
    if (this.#server !== null) throw new BrokerServerError('the broker server is already started');
    const credentials = await this.#credentials();
    const age = this.#options.maxConnectionAgeMs ?? 10 * 60 * 1000;
    const server = new grpc.Server({
      'grpc.max_connection_age_ms': age,
      'grpc.max_connection_age_grace_ms': 30_000,
      'grpc.max_receive_message_length': 64 * 1024,
    });
    server.addService(loadKeyBroker().service, this.#handlers());
    const host = this.#options.host.includes(':') ? `[${this.#options.host}]` : this.#options.host;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${this.#options.port}`, credentials, (error, bound) => {
        if (error)
          reject(new BrokerServerError(`cannot listen on ${host}:${this.#options.port}`, { cause: error }));
        else resolve(bound);
      });
    });
    this.#server = server;
    this.#logger.info('broker listening (attest, server TLS)', { host: this.#options.host, port });
    return { port };
  }

  /** Stops taking calls, waits up to 5 s for calls in flight, then closes every connection. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.#logger.info('broker stopped');
  }

  async #credentials(): Promise<grpc.ServerCredentials> {
    const name = this.#options.servingSecretName ?? 'strongroom-broker-tls';
    const where = `Secret ${this.#options.namespace}/${name}`;
    let data: Record<string, string> | undefined;
    try {
      data = (await this.#options.core.readNamespacedSecret({ name, namespace: this.#options.namespace }))
        .data;
    } catch (error) {
      const why = error instanceof ApiException ? `HTTP ${error.code}` : 'unreachable API server';
      throw new BrokerServerError(`cannot read ${where}: ${why}`, { cause: error });
    }
    const cert = data?.['tls.crt'];
    const key = data?.['tls.key'];
    if (!cert || !key) throw new BrokerServerError(`${where} lacks tls.crt or tls.key`);
    return grpc.ServerCredentials.createSsl(
      null,
      [{ cert_chain: Buffer.from(cert, 'base64'), private_key: Buffer.from(key, 'base64') }],
      false,
    );
  }

  #handlers(): KeyBrokerHandlers {
    const unimplemented = (method: string) => (_call: unknown, callback: grpc.sendUnaryData<never>) => {
      callback({ code: grpc.status.UNIMPLEMENTED, details: `${method} is not served yet` });
    };
    return {
      Attest: (call, callback) => {
        const deps = {
          authentication: this.#options.authentication,
          core: this.#options.core,
          ca: this.#options.ca,
          trustDomain: this.#options.trustDomain,
          logger: this.#logger,
        };
        attest({ token: call.request.serviceAccountToken, csrPem: call.request.csrPem }, deps).then(
          (result) => {
            const seconds = Math.floor(result.notAfter.getTime() / 1000);
            callback(null, {
              certificateChainPem: result.certificateChainPem,
              caBundlePem: result.caBundlePem,
              notAfter: { seconds: String(seconds), nanos: 0 },
              spiffeId: result.spiffeId,
              podUid: result.podUid,
            });
          },
          (error: unknown) => {
            if (error instanceof AttestError) {
              const log = error.status === 'UNAVAILABLE' || error.status === 'INTERNAL' ? 'warn' : 'info';
              this.#logger[log]('attestation refused', {
                status: error.status,
                reason: error.message,
                peer: call.getPeer(),
              });
              callback({ code: STATUS[error.status], details: error.message });
              return;
            }
            this.#logger.error('attestation failed unexpectedly', {
              error: error instanceof Error ? error.name : 'unknown',
              peer: call.getPeer(),
            });
            callback({ code: grpc.status.INTERNAL, details: 'internal error' });
          },
        );
      },
      ReleaseKey: unimplemented('ReleaseKey'),
      PublishVersion: unimplemented('PublishVersion'),
      WatchRevocations: (call) => {
        call.emit('error', {
          code: grpc.status.UNIMPLEMENTED,
          details: 'WatchRevocations is not served yet',
        });
      },
    };
  }
}
