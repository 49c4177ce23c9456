/**
 * The AccessGrant the CLI's unit tests start from: `g` in ml-dev, requested by alice, for the latest version of
 * resnet50, read by ml-dev/trainer until 2027. Each test file adds its own metadata and spec on top.
 */
import type { AccessGrant } from '../../core/api/index.ts';

export function testGrant(
  metadata: Partial<AccessGrant['metadata']> = {},
  spec: Partial<AccessGrant['spec']> = {},
): AccessGrant {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: { name: 'g', namespace: 'ml-dev', ...metadata },
    spec: {
      requester: 'alice',
      artifactRef: { name: 'resnet50' },
      versions: { match: 'latest' },
      mode: 'read',
      subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }],
      expiresAt: '2027-01-01T00:00:00Z',
      purpose: 'p',
      ...spec,
    },
  };
}
