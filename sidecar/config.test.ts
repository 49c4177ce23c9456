import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ENV, PROBE_PORT } from '../core/injection/contract.ts';
import { ConfigError, loadConfig, parsePlan } from './config.ts';
import { testCa } from './testdata/ca.ts';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

function artifact(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    namespace: 'ml',
    name: 'resnet50',
    uid: '6f1c1a9e-3b7e-4c57-9d1c-2b8f0e6f7a10',
    version: 'v3',
    digest: DIGEST,
    ciphertextPath: '/var/run/strongroom/cipher/0/resnet50/v3',
    plaintextDir: '/var/run/strongroom/plain/0',
    mountPath: '/models/resnet50',
    ...overrides,
  };
}

function env(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    [ENV.brokerAddress]: '10.0.0.1:9444',
    [ENV.attestAddress]: '10.0.0.1:9443',
    [ENV.brokerServerName]: 'strongroom-broker.strongroom-system.svc',
    [ENV.caBundle]: testCa(),
    [ENV.tokenPath]: '/var/run/strongroom/token/token',
    [ENV.plan]: JSON.stringify({ version: 'v1', artifacts: [artifact()] }),
    ...overrides,
  };
}

function failure(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('reads a complete environment into a typed config with defaults', () => {
    const config = loadConfig(env());
    expect(config.broker).toEqual({ host: '10.0.0.1', port: 9444 });
    expect(config.attest).toEqual({ host: '10.0.0.1', port: 9443 });
    expect(config.serverName).toBe('strongroom-broker.strongroom-system.svc');
    expect(config.probePort).toBe(PROBE_PORT);
    expect(config.logLevel).toBe('info');
    expect(config.plan.artifacts[0]).toEqual(artifact());
    expect(config.plan.publish).toBeUndefined();
  });

  it('defaults the server name to the broker host, and accepts bracketed IPv6', () => {
    const config = loadConfig(
      env({ [ENV.brokerServerName]: undefined, [ENV.brokerAddress]: 'strongroom-broker.op.svc:9444' }),
    );
    expect(config.serverName).toBe('strongroom-broker.op.svc');
    expect(loadConfig(env({ [ENV.attestAddress]: '[fd00::1]:9443' })).attest).toEqual({
      host: 'fd00::1',
      port: 9443,
    });
  });

  it.each([ENV.brokerAddress, ENV.attestAddress, ENV.caBundle, ENV.tokenPath, ENV.plan])(
    'names the missing variable %s',
    (name) => {
      const error = failure(() => loadConfig(env({ [name]: undefined })));
      expect(error.variable).toBe(name);
      expect(error.message).toBe(`${name}: is not set`);
      expect(failure(() => loadConfig(env({ [name]: '  ' }))).variable).toBe(name);
    },
  );

  it.each([
    [ENV.brokerAddress, '10.0.0.1'],
    [ENV.brokerAddress, '10.0.0.1:99999'],
    [ENV.brokerAddress, '10.0.0.1:0'],
    [ENV.attestAddress, 'http://x:1'],
    [ENV.brokerServerName, 'Not_A_Name'],
    [ENV.caBundle, 'not a pem'],
    [ENV.caBundle, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
    [ENV.tokenPath, 'relative/token'],
    [ENV.tokenPath, '/var/run/../token'],
    [ENV.probePort, '94x'],
    [ENV.probePort, '70000'],
    [ENV.logLevel, 'INFO'],
    [ENV.plan, '{'],
  ])('rejects %s=%j naming the variable', (name, value) => {
    const error = failure(() => loadConfig(env({ [name]: value })));
    expect(error.variable).toBe(name);
    expect(error.message.startsWith(`${name}: `)).toBe(true);
  });

  it('refuses a CA bundle with a private key or a non-CA certificate, never quoting it', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const error = failure(() => loadConfig(env({ [ENV.caBundle]: testCa() + keyPem })));
    expect(error.message).toMatch(/private key/);
    expect(error.message).not.toContain(keyPem.split('\n')[1]);
    expect(failure(() => loadConfig(env({ [ENV.caBundle]: testCa({ ca: false }) }))).message).toMatch(
      /is not a CA/,
    );
  });
});

describe('parsePlan', () => {
  const plan = (value: unknown): string => JSON.stringify(value);

  it('accepts several artifacts and a publish output', () => {
    const parsed = parsePlan(
      plan({
        version: 'v1',
        artifacts: [artifact(), artifact({ name: 'bert', plaintextDir: '/var/run/strongroom/plain/1' })],
        publish: {
          namespace: 'ml',
          name: 'resnet50-ft',
          uid: 'abc-123',
          version: 'v1',
          outputDir: '/var/run/strongroom/output',
          ciphertextPath: '/var/run/strongroom/cipher/1/resnet50-ft/v1',
          recipientPublicKey: Buffer.alloc(32, 7).toString('base64'),
          mountPath: '/output',
        },
      }),
    );
    expect(parsed.artifacts).toHaveLength(2);
    expect(parsed.publish?.outputDir).toBe('/var/run/strongroom/output');
  });

  it.each([
    ['the version', { version: 'v2', artifacts: [artifact()] }, /version must be "v1"/],
    [
      'an unknown top-level field',
      { version: 'v1', artifacts: [artifact()], extra: 1 },
      /unknown field\(s\) extra/,
    ],
    ['an empty plan', { version: 'v1', artifacts: [] }, /neither an artifact nor a publish/],
    ['artifacts not a list', { version: 'v1', artifacts: {} }, /artifacts must be a list/],
    [
      'an unknown artifact field',
      { version: 'v1', artifacts: [artifact({ mode: 'x' })] },
      /artifacts\[0\] has unknown field\(s\) mode/,
    ],
    [
      'a namespace that is no DNS label',
      { version: 'v1', artifacts: [artifact({ namespace: 'ML' })] },
      /artifacts\[0\]\.namespace/,
    ],
    [
      'a name with a slash',
      { version: 'v1', artifacts: [artifact({ name: 'a/b' })] },
      /artifacts\[0\]\.name/,
    ],
    [
      'version latest with a dot',
      { version: 'v1', artifacts: [artifact({ version: 'v1.0' })] },
      /artifacts\[0\]\.version/,
    ],
    [
      'a digest without the prefix',
      { version: 'v1', artifacts: [artifact({ digest: 'ab'.repeat(32) })] },
      /artifacts\[0\]\.digest/,
    ],
    [
      'a short digest',
      { version: 'v1', artifacts: [artifact({ digest: 'sha256:abc' })] },
      /artifacts\[0\]\.digest/,
    ],
    [
      'an uppercase digest',
      { version: 'v1', artifacts: [artifact({ digest: DIGEST.toUpperCase() })] },
      /artifacts\[0\]\.digest/,
    ],
    [
      'a relative ciphertext path',
      { version: 'v1', artifacts: [artifact({ ciphertextPath: 'cipher/0' })] },
      /ciphertextPath must be a normalized absolute path/,
    ],
    [
      'a path with ..',
      { version: 'v1', artifacts: [artifact({ plaintextDir: '/var/run/strongroom/plain/../x' })] },
      /plaintextDir must be/,
    ],
    [
      'the root as plaintext dir',
      { version: 'v1', artifacts: [artifact({ plaintextDir: '/' })] },
      /plaintextDir must be/,
    ],
    ['a number as uid', { version: 'v1', artifacts: [artifact({ uid: 5 })] }, /artifacts\[0\]\.uid/],
    [
      'nested plaintext directories',
      {
        version: 'v1',
        artifacts: [artifact(), artifact({ name: 'b', plaintextDir: '/var/run/strongroom/plain/0/b' })],
      },
      /overlap/,
    ],
    [
      'a publish key that is not 32 bytes',
      {
        version: 'v1',
        artifacts: [],
        publish: {
          namespace: 'ml',
          name: 'x',
          uid: 'u',
          version: 'v1',
          outputDir: '/o',
          ciphertextPath: '/c/x/v1',
          recipientPublicKey: Buffer.alloc(31).toString('base64'),
          mountPath: '/out',
        },
      },
      /recipientPublicKey/,
    ],
  ])('refuses %s', (_what, value, message) => {
    const error = failure(() => parsePlan(plan(value)));
    expect(error.variable).toBe(ENV.plan);
    expect(error.message).toMatch(message);
  });
});

describe('an artifact read from S3', () => {
  const s3 = {
    endpoint: 'http://10.244.0.1:7070',
    region: 'us-east-1',
    bucket: 'models',
    keyPrefix: 'teams/ml/resnet50/v3/',
    forcePathStyle: true,
    credentialsEnv: {
      accessKeyId: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
      secretAccessKey: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
    },
  };
  const plan = (a: Record<string, unknown>) => JSON.stringify({ version: 'v1', artifacts: [a] });

  it('is parsed with an empty ciphertext path', () => {
    const parsed = parsePlan(plan(artifact({ ciphertextPath: '', s3 })));
    expect(parsed.artifacts[0]?.s3).toEqual(s3);
    expect(parsed.artifacts[0]?.ciphertextPath).toBe('');
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a ciphertext path as well', { ciphertextPath: '/var/run/strongroom/cipher/0/x', s3 }, /must be empty/],
    [
      'credentials from any other variable',
      { ciphertextPath: '', s3: { ...s3, credentialsEnv: { ...s3.credentialsEnv, accessKeyId: 'HOME' } } },
      /accessKeyId/,
    ],
    [
      'a key prefix that climbs out',
      { ciphertextPath: '', s3: { ...s3, keyPrefix: 'a/../b/' } },
      /keyPrefix/,
    ],
    ['a key prefix without the slash', { ciphertextPath: '', s3: { ...s3, keyPrefix: 'a/b' } }, /keyPrefix/],
    ['a bad bucket', { ciphertextPath: '', s3: { ...s3, bucket: 'Models' } }, /bucket/],
    ['an endpoint with a path', { ciphertextPath: '', s3: { ...s3, endpoint: 'http://h:1/x' } }, /endpoint/],
    ['an unknown field', { ciphertextPath: '', s3: { ...s3, acl: 'public' } }, /unknown field\(s\) acl/],
    [
      'forcePathStyle as text',
      { ciphertextPath: '', s3: { ...s3, forcePathStyle: 'yes' } },
      /forcePathStyle/,
    ],
  ])('refuses %s', (_name, overrides, message) => {
    expect(failure(() => parsePlan(plan(artifact(overrides)))).message).toMatch(message);
  });
});
