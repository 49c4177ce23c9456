/**
 * A KubeConfig whose API calls share one connection pool. @kubernetes/client-node 2.0 builds a new undici Agent for
 * every request (config.js createDispatcher), so every call pays a fresh TLS handshake on both sides: profiling the
 * operator under load showed most of its CPU in TLS setup and the API server's likewise. This subclass keeps one
 * dispatcher per distinct TLS identity (CA, client certificate and key, server name) and hands it to every request,
 * so connections are reused (keep-alive) while a rotated certificate still gets a new pool.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KubeConfig, type RequestContext } from '@kubernetes/client-node';
type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

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
  readonly #pools = new Map<string, Dispatcher>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const created = context.getDispatcher();
    if (!created) return;
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const identity = createHash('sha256')
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
    let pool = this.#pools.get(identity);
    if (!pool) {
      pool = created;
      // A new identity (rotated certificate): the old pools are closed once their requests finish.
      for (const old of this.#pools.values()) void old.close().catch(() => undefined);
      this.#pools.clear();
      this.#pools.set(identity, pool);
    }
    // The per-request agent that client-node just built was never used: it holds no connection and is collected.
    context.setDispatcher(pool);
  }

  /** Closes the shared connections (shutdown). */
  async closePools(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
}
