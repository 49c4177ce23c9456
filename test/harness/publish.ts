/**
 * Publishing a version by hand, as a publisher does it (docs/format.md), shared by the chart tests, the demo and the
 * end-to-end stack: encrypt onto the storage behind the artifact's claim, seal the data key to the artifact's
 * recipient key, and add the version to the artifact in the publisher's own name.
 */
import { join } from 'node:path';
import type { ModelArtifactVersion } from '../../core/api/index.ts';
import { writeVersion } from '../../core/storage/index.ts';
import { appendVersion, getArtifact, rawRecipientKey } from './objects.ts';
import { clients, eventually } from './operator.ts';

/**
 * What a publisher does by hand (docs/format.md): encrypts `files` as `version` of an existing artifact onto the
 * storage directory behind its claim, sealing the data key to the artifact's recipient key, and adds the version to
 * the artifact as `publisher` with that person's own client (`custom`), so the admission policies see them. Resolves
 * once the operator has sealed the version's key.
 */
export async function publishVersion(options: {
  readonly admin: ReturnType<typeof clients>['custom'];
  readonly as: { readonly name: string; readonly custom: ReturnType<typeof clients>['custom'] };
  readonly namespace: string;
  readonly artifact: string;
  readonly version: string;
  readonly storageDir: string;
  readonly plaintextDir: string;
  readonly files: Readonly<Record<string, string | Buffer>>;
}): Promise<ModelArtifactVersion> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  const keyed = await eventually(
    `${options.namespace}/${options.artifact}'s recipient key`,
    async () => {
      const a = await getArtifact(options.admin, options.namespace, options.artifact);
      return a.status?.recipientPublicKey ? a : undefined;
    },
    60_000,
  );
  const source = join(options.plaintextDir, options.namespace, options.artifact, options.version);
  for (const [path, content] of Object.entries(options.files)) {
    await mkdir(join(source, path, '..'), { recursive: true });
    await writeFile(join(source, path), content);
  }
  const key = keyed.status?.recipientPublicKey;
  if (key === undefined) throw new Error('no recipient key');
  const written = await writeVersion({
    source,
    storageRoot: options.storageDir,
    storagePath: options.artifact,
    artifact: { uid: keyed.metadata.uid ?? '', name: options.artifact },
    version: options.version,
    recipientPublicKey: rawRecipientKey(key.publicKeyPem),
  });
  const entry: ModelArtifactVersion = {
    name: options.version,
    digest: written.digest,
    size: written.size,
    encryption: { format: 'v1', keyFingerprint: written.keyFingerprint, sealedKey: written.sealedKey },
    publisher: options.as.name,
    publishedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  await appendVersion(options.as.custom, keyed, entry);
  await eventually(
    `${options.namespace}/${options.artifact}@${options.version} sealed by the operator`,
    async () => {
      const a = await getArtifact(options.admin, options.namespace, options.artifact);
      return a.status?.keys?.some((k) => k.version === options.version) === true ? a : undefined;
    },
    60_000,
  );
  return entry;
}

/**
 * What a team gives a publisher for `strongroom publish` (docs/cli.md): in `namespace`, the short-lived pod that
 * streams ciphertext into a claim (create, get, delete pods; exec) and the named bucket credentials Secrets; in the
 * operator's namespace, a look at Strongroom's StatefulSet, whose image that pod runs. Adding versions to artifacts
 * is the publisher RBAC of test/governance/people.yaml; the classification table decides whether they may.
 */
export function publisherRbac(
  namespace: string,
  operatorNamespace: string,
  user: string,
  secrets: readonly string[] = [],
): object {
  const binding = (ns: string, role: string) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: role, namespace: ns },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  });
  const role = `strongroom-publisher-${user}`;
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: role, namespace },
        rules: [
          { apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'delete'] },
          { apiGroups: [''], resources: ['pods/exec'], verbs: ['create', 'get'] },
          ...(secrets.length === 0
            ? []
            : [{ apiGroups: [''], resources: ['secrets'], resourceNames: [...secrets], verbs: ['get'] }]),
        ],
      },
      binding(namespace, role),
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: role, namespace: operatorNamespace },
        rules: [
          { apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: ['strongroom'], verbs: ['get'] },
        ],
      },
      binding(operatorNamespace, role),
    ],
  };
}
