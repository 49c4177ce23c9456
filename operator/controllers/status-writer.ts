/**
 * Writes a custom resource's status subresource with a JSON merge patch. Fields present before and absent now are
 * sent as null so they are really removed; nothing else of the object is touched, so a concurrent spec change never
 * conflicts with a status write.
 */
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../core/api/index.ts';

export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export function statusPatch(previous: object | undefined, next: object): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...next };
  for (const key of Object.keys(previous ?? {})) if (!(key in next)) patch[key] = null;
  return { status: patch };
}

export async function writeStatus(
  custom: CustomObjectsApi,
  plural: string,
  namespace: string,
  name: string,
  previous: object | undefined,
  next: object,
): Promise<void> {
  await custom.patchNamespacedCustomObjectStatus(
    { group: GROUP, version: VERSION, namespace, plural, name, body: statusPatch(previous, next) },
    mergePatch,
  );
}

/** Sets metadata.finalizers with optimistic concurrency: a stale cache gets a 409, which the queue retries quietly. */
export async function writeFinalizers(
  custom: CustomObjectsApi,
  plural: string,
  object: { metadata: { namespace?: string; name?: string; resourceVersion?: string } },
  finalizers: readonly string[],
): Promise<void> {
  const { namespace, name, resourceVersion } = object.metadata;
  if (!namespace || !name) throw new Error('object without namespace or name');
  await custom.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name,
      body: { metadata: { finalizers: finalizers.length > 0 ? finalizers : null, resourceVersion } },
    },
    mergePatch,
  );
}
