/**
 * Direct access to a test cluster's etcd through its JSON gateway: what another kube-apiserver replica would write
 * while the one a client talks to is down. Custom resources are stored as JSON, so tests can read and change them.
 */
import { processesMatching } from './host.ts';

/** The etcd client URL of a cluster, read from the running etcd's command line. */
export function etcdUrl(workDir: string): string {
  const etcd = processesMatching(workDir).find((p) => p.program === 'etcd');
  const url = /--listen-client-urls=(\S+)/.exec(etcd?.command ?? '')?.[1];
  if (!url) throw new Error('no etcd found');
  return url;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function call(url: string, op: string, body: object): Promise<unknown> {
  const res = await fetch(`${url}/v3/kv/${op}`, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`etcd ${op}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text) as unknown;
}

/** Puts a JSON value, or deletes a key. */
export async function etcdWrite(
  url: string,
  op: 'put' | 'deleterange',
  key: string,
  value?: object,
): Promise<void> {
  await call(url, op, { key: b64(key), ...(value ? { value: b64(JSON.stringify(value)) } : {}) });
}

/** Reads a JSON value (undefined when the key is absent). */
export async function etcdRead<T>(url: string, key: string): Promise<T | undefined> {
  const out = (await call(url, 'range', { key: b64(key) })) as { kvs?: { value: string }[] };
  const value = out.kvs?.[0]?.value;
  return value === undefined ? undefined : (JSON.parse(Buffer.from(value, 'base64').toString('utf8')) as T);
}
