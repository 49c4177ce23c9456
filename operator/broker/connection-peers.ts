/**
 * The verified identity of each open mTLS connection, keyed by the remote `ip:port` that grpc-js reports as a call's
 * peer: the client certificate is parsed once per connection, not once per call (it cannot change within a TLS
 * session). Validity is still checked on every call.
 */
import type { TLSSocket } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import { BrokerError } from './errors.ts';
import { peerFromCertificate, type Peer, type PeerCertificate } from './peer.ts';

/** What a call of any kind tells of its connection: the remote `ip:port` and the TLS peer certificate. */
export type CallOrigin = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getPeer' | 'getAuthContext'>;

/** See the module comment. */
export class ConnectionPeers {
  readonly #trustDomain: string;
  readonly #now: () => Date;
  readonly #connections = new Map<string, { certificate: PeerCertificate }>();
  readonly #identities = new WeakMap<object, { peer?: Peer; error?: BrokerError }>();

  constructor(trustDomain: string, now: () => Date) {
    this.#trustDomain = trustDomain;
    this.#now = now;
  }

  /** Remembers the certificate of a connection that passed the mTLS handshake, until the connection closes. */
  track(socket: TLSSocket): void {
    const address = `${socket.remoteAddress ?? 'unknown'}:${String(socket.remotePort ?? 0)}`;
    this.#connections.set(address, { certificate: socket.getPeerCertificate() });
    socket.once('close', () => {
      this.#connections.delete(address);
    });
  }

  /** The peer of an mTLS call, from its connection's verified certificate. Throws BrokerError. */
  peer(call: CallOrigin): Peer {
    const address = call.getPeer();
    const now = this.#now();
    const known = this.#connections.get(address);
    if (known === undefined)
      return peerFromCertificate(call.getAuthContext().sslPeerCertificate, this.#trustDomain, address, now);
    let cached = this.#identities.get(known);
    if (cached === undefined) {
      try {
        cached = { peer: peerFromCertificate(known.certificate, this.#trustDomain, address, now) };
      } catch (error) {
        if (!(error instanceof BrokerError)) throw error;
        cached = { error };
      }
      this.#identities.set(known, cached);
    }
    if (cached.error !== undefined) throw cached.error;
    const peer = cached.peer;
    if (peer === undefined || now.getTime() >= peer.notAfter.getTime())
      throw new BrokerError(
        'UNAUTHENTICATED',
        'certificate-expired',
        'the client certificate has expired; attest again',
      );
    return peer;
  }
}
