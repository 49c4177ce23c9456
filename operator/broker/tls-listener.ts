/**
 * A TLS 1.3 listener that hands each verified connection to a grpc-js server (connection injection), so that the
 * broker owns the handshake: it can require and verify client certificates against the operator CA only, swap the
 * serving certificate and CA bundle without a restart (`setIdentity`), and audit every refused handshake (grpc-js
 * alone would drop them silently).
 */
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';

/** The serving certificate chain, its key and the CA bundle that client certificates must chain to. */
export interface TlsIdentity {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

/** Whether two identities hold the same certificate chain, key and CA bundle. */
export function sameIdentity(a: TlsIdentity, b: TlsIdentity): boolean {
  return a.cert.equals(b.cert) && a.key.equals(b.key) && a.ca.equals(b.ca);
}

/** A handshake that failed: no certificate, one from another CA, an expired one, a protocol error... */
export interface RefusedHandshake {
  /** `ip:port` of the client. */
  readonly peer: string;
  /** The OpenSSL/Node error code, e.g. ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE, CERT_HAS_EXPIRED. */
  readonly code: string;
  readonly message: string;
  /** What the client's certificate claimed (unverified), if it sent one. */
  readonly claimed: { readonly subjectAltName?: string; readonly serial?: string };
}

export interface TlsListenerOptions {
  readonly host: string;
  readonly port: number;
  /** Require a client certificate that chains to `identity.ca`. */
  readonly mutual: boolean;
  readonly onConnection: (socket: TLSSocket) => void;
  readonly onRefused: (refused: RefusedHandshake) => void;
  /** Default 10 000 ms. */
  readonly handshakeTimeoutMs?: number;
}

/** See the module comment. */
export class TlsListener {
  readonly #options: TlsListenerOptions;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;

  constructor(options: TlsListenerOptions) {
    this.#options = options;
  }

  /** Listens with `identity`; resolves with the bound port. */
  async start(identity: TlsIdentity): Promise<number> {
    const o = this.#options;
    const server = createServer({
      ...this.#context(identity),
      requestCert: o.mutual,
      rejectUnauthorized: o.mutual,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      handshakeTimeout: o.handshakeTimeoutMs ?? 10_000,
      // gRPC answers are several small frames; Nagle's algorithm would hold them back behind delayed ACKs.
      noDelay: true,
    });
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => {
        this.#sockets.delete(socket);
      });
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      // Handled by grpc-js from here on; errors after the handshake end the session only.
      socket.on('error', () => undefined);
      if (o.mutual && !socket.authorized) {
        // Not reached while rejectUnauthorized is set (the keylog hook reports those); kept as a second lock.
        socket.destroy();
        return;
      }
      o.onConnection(socket);
    });
    // Sockets already reported as refused: their teardown raises a second, meaningless error.
    const refused = new WeakSet<TLSSocket>();
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      if (refused.has(socket)) return;
      this.#refuse(socket, error.code ?? 'TLS_ERROR', error.message, this.#claimed(socket));
    });
    if (o.mutual) {
      // Node verifies the client's chain only after the handshake and then destroys the socket without an event
      // (no tlsClientError, no secureConnection). 'keylog' is the documented hook that hands us each TLSSocket
      // during its handshake, so that such refusals (foreign CA, expired certificate) are audited too. The key
      // log line itself holds TLS secrets and is ignored.
      const watched = new WeakSet<TLSSocket>();
      server.on('keylog', (_line: Buffer, socket: TLSSocket) => {
        if (watched.has(socket)) return;
        watched.add(socket);
        let claimed: RefusedHandshake['claimed'] = {};
        const peer = `${socket.remoteAddress ?? 'unknown'}:${String(socket.remotePort ?? 0)}`;
        socket.prependOnceListener('secure', () => {
          claimed = this.#claimed(socket);
        });
        socket.once('secure', () => {
          // Runs after Node's own check, which set authorizationError and destroyed the socket on failure.
          const code = socket.authorizationError as unknown;
          if (code !== undefined && code !== null) {
            refused.add(socket);
            this.#options.onRefused({
              peer,
              code: typeof code === 'string' ? code : 'CERTIFICATE_NOT_TRUSTED',
              message: 'client certificate not trusted',
              claimed,
            });
          }
        });
      });
    }
    this.#server = server;
    return new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : o.port);
      });
    });
  }

  /** Replaces the serving certificate and CA bundle for new handshakes; open connections keep theirs. */
  setIdentity(identity: TlsIdentity): void {
    this.#server?.setSecureContext(this.#context(identity));
  }

  /** Stops listening and destroys every connection. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  #context(identity: TlsIdentity): { cert: Buffer; key: Buffer; ca: Buffer } {
    return { cert: identity.cert, key: identity.key, ca: identity.ca };
  }

  #claimed(socket: TLSSocket): RefusedHandshake['claimed'] {
    try {
      const cert = socket.getPeerCertificate();
      return {
        ...(cert.subjectaltname ? { subjectAltName: cert.subjectaltname } : {}),
        ...(cert.serialNumber ? { serial: cert.serialNumber.toLowerCase() } : {}),
      };
    } catch {
      return {};
    }
  }

  #refuse(socket: TLSSocket, code: string, message: string, claimed: RefusedHandshake['claimed']): void {
    const peer = `${socket.remoteAddress ?? 'unknown'}:${String(socket.remotePort ?? 0)}`;
    this.#options.onRefused({ peer, code, message, claimed });
  }
}
