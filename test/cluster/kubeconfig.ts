import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterInfo } from './kubectl.ts';
import { issueCertificate, type KeyPair } from './pki.ts';

const b64 = (pem: string): string => Buffer.from(pem).toString('base64');

/** A kubeconfig that authenticates with a client certificate. */
export function renderKubeconfig(server: string, caPem: string, user: string, client: KeyPair): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: strongroom-test',
    `  cluster: {server: "${server}", certificate-authority-data: "${b64(caPem)}"}`,
    'users:',
    `- name: ${JSON.stringify(user)}`,
    `  user: {client-certificate-data: "${b64(client.certPem)}", client-key-data: "${b64(client.keyPem)}"}`,
    'contexts:',
    '- name: strongroom-test',
    `  context: {cluster: strongroom-test, user: ${JSON.stringify(user)}}`,
    'current-context: strongroom-test',
    '',
  ].join('\n');
}

/** Paths of the test cluster's PKI inside its work directory. */
export const pkiPath = (workDir: string, name: string): string => join(workDir, 'pki', name);

/**
 * Mints a client certificate for `user` in `groups`, signed by the cluster's client CA, and writes a kubeconfig for
 * it. Tests use it to act as different people (say `alice` in `ml-researchers`) through the real API server;
 * what they may do is then decided by the API server's real RBAC.
 */
export function userKubeconfig(
  cluster: Pick<ClusterInfo, 'workDir' | 'server'>,
  user: string,
  groups: readonly string[] = [],
): string {
  if (!/^[a-z0-9:._@-]{1,128}$/i.test(user)) throw new Error(`invalid user name ${JSON.stringify(user)}`);
  const clientCa: KeyPair = {
    certPem: readFileSync(pkiPath(cluster.workDir, 'client-ca.crt'), 'utf8'),
    keyPem: readFileSync(pkiPath(cluster.workDir, 'client-ca.key'), 'utf8'),
  };
  const client = issueCertificate(clientCa, {
    commonName: user,
    organizations: groups,
    usage: 'client',
    validDays: 2,
  });
  const dir = join(cluster.workDir, 'users');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${user.replace(/[^a-z0-9._-]/gi, '_')}.kubeconfig`);
  writeFileSync(
    path,
    renderKubeconfig(cluster.server, readFileSync(pkiPath(cluster.workDir, 'ca.crt'), 'utf8'), user, client),
    {
      mode: 0o600,
    },
  );
  return path;
}
