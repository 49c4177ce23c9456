/**
 * The Strongroom API (group strongroom.dev, version v1alpha1): TypeScript types generated from the CRDs in
 * crds/ (see generate.ts) and the constants needed to address the resources.
 */
import { accessGrantResource, modelArtifactResource, type ModelArtifactSpec } from './types.generated.ts';

export * from './types.generated.ts';

/** API group of all Strongroom resources. */
export const GROUP = modelArtifactResource.group;
/** API version of the Strongroom resources. */
export const VERSION = modelArtifactResource.version;
/** `apiVersion` field value of Strongroom objects. */
export const API_VERSION = modelArtifactResource.apiVersion;

export const MODEL_ARTIFACT_KIND = modelArtifactResource.kind;
export const MODEL_ARTIFACT_PLURAL = modelArtifactResource.plural;
export const ACCESS_GRANT_KIND = accessGrantResource.kind;
export const ACCESS_GRANT_PLURAL = accessGrantResource.plural;

/** Label on namespaces naming their environment (for example dev or prod); grants compare it across namespaces. */
export const ENVIRONMENT_LABEL = 'strongroom.dev/environment';

export type Classification = ModelArtifactSpec['classification'];

/** Classifications from least to most sensitive; a classification may only move right. */
export const CLASSIFICATIONS = [
  'public',
  'internal',
  'confidential',
  'restricted',
] as const satisfies readonly Classification[];

/** Position of a classification in {@link CLASSIFICATIONS}: higher is more sensitive. */
export function classificationRank(c: Classification): number {
  return CLASSIFICATIONS.indexOf(c);
}
