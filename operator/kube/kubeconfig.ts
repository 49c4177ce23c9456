/**
 * A KubeConfig whose API calls share one connection pool. @kubernetes/client-node 2.0 builds a new undici Agent for
 * every request (config.js createDispatcher), so every call pays a fresh TLS handshake on both sides: profiling the
 * operator under load showed most of its CPU in TLS setup and the API server's likewise. This subclass keeps one
 * dispatcher for the current TLS identity (server, CA, client certificate and key) and hands it to every request,
 * so connections are reused (keep-alive); when the identity changes (a rotated certificate file) the old pool is
 * closed and the next request starts a new one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KubeConfig, type RequestContext } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** How long a computed identity is trusted before certificate files are read again. */
const IDENTITY_TTL_MS = 10_000;

function material(data: string | undefined, file: string | undefined): string {
  if (data) return data;
  if (!file) return '';
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return `unreadable:${file}`;
  }
}

export class PooledKubeConfig extends KubeConfig {
  #pool: { readonly identity: string; readonly dispatcher: Dispatcher } | undefined;
  #identity: { readonly value: string; readonly at: number } | undefined;
  /** Clock for the identity cache (tests). */
  now: () => number = Date.now;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const created = context.getDispatcher();
    if (!created) return;
    const identity = this.#currentIdentity();
    if (this.#pool?.identity !== identity) {
      // A new identity: the old pool is closed once its requests finish.
      const old = this.#pool?.dispatcher;
      if (old) void old.close().catch(() => undefined);
      this.#pool = { identity, dispatcher: created };
    }
    // The per-request agent client-node just built was never used: it holds no connection and is collected.
    context.setDispatcher(this.#pool.dispatcher);
  }

  /** Forgets the cached identity, so the next request re-reads certificate files (after a known rotation). */
  refreshIdentity(): void {
    this.#identity = undefined;
  }

  /** Closes the shared connections (shutdown). */
  async closePools(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.dispatcher.close().catch(() => undefined);
  }

  /** A digest of what the TLS connection depends on; recomputed at most every IDENTITY_TTL_MS. */
  #currentIdentity(): string {
    const now = this.now();
    if (this.#identity && now - this.#identity.at < IDENTITY_TTL_MS) return this.#identity.value;
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const value = createHash('sha256')
      .update(
        JSON.stringify([
          cluster?.server,
          cluster?.tlsServerName,
          cluster?.skipTLSVerify,
          material(cluster?.caData, cluster?.caFile),
          material(user?.certData, user?.certFile),
          material(user?.keyData, user?.keyFile),
        ]),
      )
      .digest('hex');
    this.#identity = { value, at: now };
    return value;
  }
}
