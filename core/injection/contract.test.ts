import { describe, expect, expectTypeOf, it } from 'vitest';
import { loadCrds, type Schema } from '../api/generate.ts';
import type { ModelArtifactStorageS3 } from '../api/index.ts';
import {
  ENV,
  S3_CREDENTIALS_ENV,
  S3_DEFAULT_REGION,
  S3_ENV_PREFIX,
  S3_SECRET_KEYS,
  s3AccessKeyIdEnv,
  s3SecretAccessKeyEnv,
  type PlannedArtifact,
  type PlannedS3Source,
} from './contract.ts';

describe('the S3 part of the sidecar contract', () => {
  it('has exactly the shape the sidecar is written against', () => {
    expectTypeOf<PlannedS3Source>().toEqualTypeOf<{
      readonly endpoint?: string;
      readonly region: string;
      readonly bucket: string;
      readonly keyPrefix: string;
      readonly forcePathStyle: boolean;
      readonly credentialsEnv: { readonly accessKeyId: string; readonly secretAccessKey: string };
    }>();
    expectTypeOf<PlannedArtifact['s3']>().toEqualTypeOf<PlannedS3Source | undefined>();
    expectTypeOf<PlannedArtifact['ciphertextPath']>().toEqualTypeOf<string>();
  });

  it('names the credential variables STRONGROOM_S3_<i>_ACCESS_KEY_ID and _SECRET_ACCESS_KEY', () => {
    expect([s3AccessKeyIdEnv(0), s3SecretAccessKeyEnv(0)]).toEqual([
      'STRONGROOM_S3_0_ACCESS_KEY_ID',
      'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
    ]);
    expect(s3AccessKeyIdEnv(15)).toBe('STRONGROOM_S3_15_ACCESS_KEY_ID');
    for (let i = 0; i < 20; i++) {
      for (const name of [s3AccessKeyIdEnv(i), s3SecretAccessKeyEnv(i)]) {
        expect(name).toMatch(S3_CREDENTIALS_ENV);
        expect(name.startsWith(S3_ENV_PREFIX)).toBe(true);
        expect(Object.values(ENV)).not.toContain(name);
      }
    }
    for (const name of [
      'STRONGROOM_S3_01_ACCESS_KEY_ID',
      'STRONGROOM_S3__ACCESS_KEY_ID',
      'STRONGROOM_S3_0_SESSION_TOKEN',
      'STRONGROOM_S3_0_ACCESS_KEY_ID_X',
    ])
      expect(name).not.toMatch(S3_CREDENTIALS_ENV);
    expect(Object.values(ENV).some((name) => S3_CREDENTIALS_ENV.test(name))).toBe(false);
    expect(S3_SECRET_KEYS).toEqual({
      accessKeyId: 'AWS_ACCESS_KEY_ID',
      secretAccessKey: 'AWS_SECRET_ACCESS_KEY',
    });
  });

  it('defaults region and forcePathStyle as the CRD does', async () => {
    const ma = (await loadCrds()).find((c) => c.spec.names.kind === 'ModelArtifact');
    const s3: Schema | undefined =
      ma?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec?.properties?.storage?.properties?.s3;
    expect(s3?.properties?.region?.default).toBe(S3_DEFAULT_REGION);
    expect(s3?.properties?.forcePathStyle?.default).toBe(true);
    expectTypeOf<ModelArtifactStorageS3['credentialsSecretRef']>().toEqualTypeOf<{ name: string }>();
  });
});
