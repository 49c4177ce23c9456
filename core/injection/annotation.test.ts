import { describe, expect, it } from 'vitest';
import {
  parseArtifactsAnnotation,
  parseCiphertextClaim,
  parseInjectionRequest,
  parseOutputSize,
  parsePublishAnnotation,
} from './annotation.ts';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_CIPHERTEXT_CLAIM,
  ANNOTATION_OUTPUT_SIZE,
  ANNOTATION_PUBLISH,
} from './contract.ts';
import { errorOf } from './testdata/plans.ts';

describe('parseArtifactsAnnotation', () => {
  it.each([
    ['one entry', 'resnet50@v3:/models/resnet50', [[undefined, 'resnet50', 'v3', '/models/resnet50']]],
    ['latest', 'resnet50@latest:/models', [[undefined, 'resnet50', 'latest', '/models']]],
    ['a namespace', 'ml-shared/bert@v1:/models/bert', [['ml-shared', 'bert', 'v1', '/models/bert']]],
    [
      'commas, newlines, blanks and a trailing comma',
      '\n  resnet50@v1:/models/a ,\n\n imagenet@2024-06-01 : /data/imagenet,\r\n',
      [
        [undefined, 'resnet50', 'v1', '/models/a'],
        [undefined, 'imagenet', '2024-06-01', '/data/imagenet'],
      ],
    ],
    [
      'siblings with a common prefix are not nested',
      'a@v1:/models/a,b@v1:/models/ab',
      [
        [undefined, 'a', 'v1', '/models/a'],
        [undefined, 'b', 'v1', '/models/ab'],
      ],
    ],
    ['a path under /etc is allowed', 'a@v1:/etc/models', [[undefined, 'a', 'v1', '/etc/models']]],
  ])('parses %s', (_, value, expected) => {
    const parsed = parseArtifactsAnnotation(value);
    expect(parsed.map((p) => [p.namespace, p.name, p.version, p.mountPath])).toEqual(expected);
  });

  it('accepts 16 entries and keeps their order', () => {
    const value = Array.from({ length: 16 }, (_, i) => `a${String(i)}@v1:/m/${String(i)}`).join(',');
    expect(parseArtifactsAnnotation(value).map((p) => p.name)).toEqual(
      Array.from({ length: 16 }, (_, i) => `a${String(i)}`),
    );
  });

  it.each([
    ['an empty list', ' , \n ', 'lists no artifacts'],
    [
      '17 entries',
      Array.from({ length: 17 }, (_, i) => `a${String(i)}@v1:/m/${String(i)}`).join(','),
      'lists 17 artifacts; at most 16',
    ],
    ['a missing @', 'resnet50:/models', `entry "resnet50:/models" has no '@'`],
    ['a missing path', 'resnet50@v1', `entry "resnet50@v1" has no ':<absolute path>'`],
    ['an empty path', 'resnet50@v1:', "the mount path after ':' is empty"],
    ['an empty version', 'resnet50@:/m', "the version after '@' is empty"],
    ['an upper-case name', 'ResNet@v1:/m', 'artifact name "ResNet" is not a DNS-1123 label'],
    ['an empty name', '@v1:/m', 'artifact name "" is not a DNS-1123 label'],
    ['a bad namespace', 'ML_dev/resnet50@v1:/m', 'namespace "ML_dev" is not a DNS-1123 label'],
    ['two slashes in the reference', 'a/b/c@v1:/m', "has more than one '/'"],
    ['a bad version', 'resnet50@V1.0:/m', 'version "V1.0" is not a DNS-1123 label'],
    ['a relative path', 'resnet50@v1:models/resnet50', 'mount path "models/resnet50" is relative'],
    ['a .. segment', 'resnet50@v1:/models/../etc', "contains a '.' or '..' segment"],
    ['a . segment', 'resnet50@v1:/models/./x', "contains a '.' or '..' segment"],
    ['a double slash', 'resnet50@v1:/models//x', 'is not normalized'],
    ['a trailing slash', 'resnet50@v1:/models/', 'is not normalized'],
    ['a space inside the path', 'resnet50@v1:/my models', 'contains a character other than'],
    ['the root', 'resnet50@v1:/', 'mount path "/" is a system directory'],
    ['/etc', 'resnet50@v1:/etc', 'mount path "/etc" is a system directory'],
    ['/proc', 'resnet50@v1:/proc', 'is inside the reserved directory /proc'],
    ['below /dev', 'resnet50@v1:/dev/shm/m', 'is inside the reserved directory /dev'],
    ['/sys', 'resnet50@v1:/sys', 'is inside the reserved directory /sys'],
    [
      'the sidecar root',
      'resnet50@v1:/var/run/strongroom',
      'is inside the reserved directory /var/run/strongroom',
    ],
    [
      'the service account token',
      'resnet50@v1:/var/run/secrets/kubernetes.io',
      'is inside the reserved directory /var/run/secrets',
    ],
    [
      'a duplicate mount path',
      'a@v1:/m,b@v2:/m',
      'entries "a@v1:/m" and "b@v2:/m" use the same mount path /m',
    ],
    [
      'nested mount paths',
      'a@v1:/m,b@v2:/m/b',
      'entries "a@v1:/m" and "b@v2:/m/b" mount at nested paths /m and /m/b',
    ],
    ['nested the other way', 'b@v2:/m/b/c,a@v1:/m', 'mount at nested paths /m/b/c and /m'],
  ])('refuses %s', (_, value, message) => {
    const error = errorOf(() => parseArtifactsAnnotation(value));
    expect(error.kind).toBe('annotation');
    expect(error.annotation).toBe(ANNOTATION_ARTIFACTS);
    expect(error.message).toContain(`annotation ${ANNOTATION_ARTIFACTS}`);
    expect(error.message).toContain(message);
  });

  it('suggests the normalized form of an unnormalized path', () => {
    expect(errorOf(() => parseArtifactsAnnotation('a@v1:/models//x/')).message).toContain(
      'write "/models/x"',
    );
  });
});

describe('parsePublishAnnotation', () => {
  it('parses one entry with a namespace', () => {
    expect(parsePublishAnnotation(' ml-dev/finetuned@v2:/output ')).toMatchObject({
      namespace: 'ml-dev',
      name: 'finetuned',
      version: 'v2',
      mountPath: '/output',
    });
  });

  it.each([
    ['latest', 'finetuned@latest:/out', 'must be a new version name, not "latest"'],
    ['two entries', 'a@v1:/o,b@v1:/p', 'lists more than one entry'],
    ['an empty value', '  ', 'is empty'],
    ['a bad version', 'finetuned@v_2:/out', 'version "v_2" is not a DNS-1123 label'],
    ['a relative path', 'finetuned@v2:out', 'is relative'],
    ['a system path', 'finetuned@v2:/tmp/../proc', "'..' segment"],
  ])('refuses %s', (_, value, message) => {
    const error = errorOf(() => parsePublishAnnotation(value));
    expect(error.annotation).toBe(ANNOTATION_PUBLISH);
    expect(error.message).toContain(`annotation ${ANNOTATION_PUBLISH}`);
    expect(error.message).toContain(message);
  });
});

describe('parseCiphertextClaim and parseOutputSize', () => {
  it.each(['store', 'ml.store-1'])('accepts claim %s', (claim) => {
    expect(parseCiphertextClaim(` ${claim} `)).toBe(claim);
  });
  it.each(['', 'Store', 'a_b', '-a', 'a'.repeat(254)])('refuses claim "%s"', (claim) => {
    const error = errorOf(() => parseCiphertextClaim(claim));
    expect(error.annotation).toBe(ANNOTATION_CIPHERTEXT_CLAIM);
    expect(error.message).toContain('is not a PersistentVolumeClaim name');
  });
  it.each(['1Gi', '512Mi', '1.5Gi', '100M', '1000000', '.5Ti', '2k'])('accepts size %s', (size) => {
    expect(parseOutputSize(size)).toBe(size);
  });
  it.each([
    ['1GB', 'is not a Kubernetes quantity'],
    ['-1Gi', 'is not a Kubernetes quantity'],
    ['1e9', 'is not a Kubernetes quantity'],
    ['Gi', 'is not a Kubernetes quantity'],
    ['', 'is not a Kubernetes quantity'],
    ['0', 'is zero'],
    ['0.0Mi', 'is zero'],
  ])('refuses size "%s"', (size, message) => {
    const error = errorOf(() => parseOutputSize(size));
    expect(error.annotation).toBe(ANNOTATION_OUTPUT_SIZE);
    expect(error.message).toContain(message);
  });
});

describe('parseInjectionRequest', () => {
  it('is undefined for a pod that asks for nothing, even with other Strongroom annotations', () => {
    expect(parseInjectionRequest(undefined)).toBeUndefined();
    expect(parseInjectionRequest({ [ANNOTATION_CIPHERTEXT_CLAIM]: 'store', other: 'x' })).toBeUndefined();
  });

  it('reads every annotation together', () => {
    const request = parseInjectionRequest({
      [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/models',
      [ANNOTATION_PUBLISH]: 'finetuned@v2:/output',
      [ANNOTATION_CIPHERTEXT_CLAIM]: 'store',
      [ANNOTATION_OUTPUT_SIZE]: '2Gi',
    });
    expect(request?.artifacts.map((a) => a.name)).toEqual(['resnet50']);
    expect(request?.publish?.version).toBe('v2');
    expect(request?.ciphertextClaim).toBe('store');
    expect(request?.outputSize).toBe('2Gi');
  });

  it('allows publishing without reading anything', () => {
    expect(parseInjectionRequest({ [ANNOTATION_PUBLISH]: 'finetuned@v2:/output' })?.artifacts).toEqual([]);
  });

  it.each([
    [
      { [ANNOTATION_ARTIFACTS]: 'a@v1:/data', [ANNOTATION_PUBLISH]: 'b@v2:/data' },
      'use the same mount path /data',
    ],
    [
      { [ANNOTATION_ARTIFACTS]: 'a@v1:/data', [ANNOTATION_PUBLISH]: 'b@v2:/data/out' },
      'mount at nested paths',
    ],
    [
      { [ANNOTATION_ARTIFACTS]: 'a@v1:/data', [ANNOTATION_OUTPUT_SIZE]: '1Gi' },
      `${ANNOTATION_PUBLISH} is not`,
    ],
    [
      { [ANNOTATION_ARTIFACTS]: 'a@v1:/data', [ANNOTATION_CIPHERTEXT_CLAIM]: 'Bad' },
      'not a PersistentVolumeClaim name',
    ],
    [{ [ANNOTATION_ARTIFACTS]: '' }, 'lists no artifacts'],
  ])('refuses conflicts across annotations (%#)', (annotations, message) => {
    expect(errorOf(() => parseInjectionRequest(annotations)).message).toContain(message);
  });

  it('names both annotations when the publish path collides with an artifact', () => {
    const message = errorOf(() =>
      parseInjectionRequest({ [ANNOTATION_ARTIFACTS]: 'a@v1:/data', [ANNOTATION_PUBLISH]: 'b@v2:/data' }),
    ).message;
    expect(message).toContain(`annotations ${ANNOTATION_ARTIFACTS} and ${ANNOTATION_PUBLISH}`);
    expect(message).toContain('"a@v1:/data" and "b@v2:/data"');
  });
});
