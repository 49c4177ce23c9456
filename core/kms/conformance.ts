/**
 * The behaviour every KmsProvider must show, as a vitest suite each provider's tests run against a real backend
 * (a file-backed local key set, the real GCP client against a local KMS server, a real SoftHSM token).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KmsError,
  rewrapToPrimary,
  type KmsErrorCode,
  type KmsProvider,
  type WrappedKey,
} from './provider.ts';

export interface ConformanceSetup {
  readonly provider: KmsProvider;
  /** A key id that is valid for this provider and does not exist yet; called once per test that needs one. */
  newKeyId(): string;
  teardown?(): Promise<void>;
}

async function expectKmsError(promise: Promise<unknown>, code: KmsErrorCode): Promise<KmsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KmsError);
  expect((error as KmsError).code, (error as Error).message).toBe(code);
  return error as KmsError;
}

export function describeKmsProvider(label: string, setup: () => Promise<ConformanceSetup>): void {
  describe(`${label}: KMS provider conformance`, () => {
    let s: ConformanceSetup;
    const aad = Buffer.from('strongroom/v1 artifact=resnet50 version=v3');
    beforeAll(async () => {
      s = await setup();
    });
    afterAll(async () => {
      await s.provider.close();
      await s.teardown?.();
    });

    it('wraps and unwraps a DEK bound to associated data, under version 1', async () => {
      const keyId = s.newKeyId();
      await s.provider.createKey(keyId);
      const dek = randomBytes(32);
      const wrapped = await s.provider.wrap(keyId, dek, aad);
      expect(wrapped.provider).toBe(s.provider.name);
      expect(wrapped.keyId).toBe(keyId);
      expect(wrapped.keyVersion).toBe('1');
      expect(Buffer.from(wrapped.ciphertext, 'base64').includes(dek)).toBe(false);
      expect((await s.provider.unwrap(wrapped, aad)).equals(dek)).toBe(true);
      // Fresh randomness per wrap: the same DEK never wraps to the same bytes twice.
      expect((await s.provider.wrap(keyId, dek, aad)).ciphertext).not.toBe(wrapped.ciphertext);
    });

    it('refuses other associated data, tampered ciphertext and a wrapped key from another key', async () => {
      const keyId = s.newKeyId();
      const other = s.newKeyId();
      await s.provider.createKey(keyId);
      await s.provider.createKey(other);
      const wrapped = await s.provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(
        s.provider.unwrap(wrapped, Buffer.from('strongroom/v1 artifact=resnet50 version=v4')),
        'unwrap-failed',
      );
      const bytes = Buffer.from(wrapped.ciphertext, 'base64');
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
      await expectKmsError(
        s.provider.unwrap({ ...wrapped, ciphertext: bytes.toString('base64') }, aad),
        'unwrap-failed',
      );
      await expectKmsError(s.provider.unwrap({ ...wrapped, keyId: other }, aad), 'unwrap-failed');
    });

    it('rejects bad input with clear errors', async () => {
      const keyId = s.newKeyId();
      await expectKmsError(s.provider.wrap(keyId, randomBytes(32), aad), 'not-found');
      await s.provider.createKey(keyId);
      await expectKmsError(s.provider.createKey(keyId), 'invalid');
      await expectKmsError(s.provider.wrap(keyId, new Uint8Array(0), aad), 'invalid');
      await expectKmsError(s.provider.wrap(keyId, randomBytes(65), aad), 'invalid');
      const wrapped = await s.provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(s.provider.unwrap({ ...wrapped, provider: 'somewhere-else' }, aad), 'invalid');
      await expectKmsError(s.provider.unwrap({ ...wrapped, keyVersion: '99' }, aad), 'not-found');
    });

    it('rotates: the new version becomes primary, old wrapped keys still unwrap and rewrap without the DEK changing', async () => {
      const keyId = s.newKeyId();
      await s.provider.createKey(keyId);
      const dek = randomBytes(32);
      const old = await s.provider.wrap(keyId, dek, aad);
      expect(await s.provider.rotate(keyId)).toBe('2');
      const versions = await s.provider.versions(keyId);
      expect(versions.map((v) => [v.version, v.state, v.primary])).toEqual([
        ['1', 'enabled', false],
        ['2', 'enabled', true],
      ]);
      expect((await s.provider.unwrap(old, aad)).equals(dek)).toBe(true);
      expect((await s.provider.wrap(keyId, dek, aad)).keyVersion).toBe('2');
      const rewrapped = await rewrapToPrimary(s.provider, old, aad);
      expect(rewrapped.keyVersion).toBe('2');
      expect((await s.provider.unwrap(rewrapped, aad)).equals(dek)).toBe(true);
      expect(await rewrapToPrimary(s.provider, rewrapped, aad)).toBe(rewrapped);
    });

    it('destroying a version makes what it wrapped permanently unrecoverable; the primary cannot be destroyed', async () => {
      const keyId = s.newKeyId();
      await s.provider.createKey(keyId);
      const wrappedV1 = await s.provider.wrap(keyId, randomBytes(32), aad);
      await s.provider.rotate(keyId);
      const wrappedV2 = await s.provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(s.provider.destroyVersion(keyId, '2'), 'invalid');
      await s.provider.destroyVersion(keyId, '1');
      await expectKmsError(s.provider.unwrap(wrappedV1, aad), 'destroyed');
      expect((await s.provider.versions(keyId)).find((v) => v.version === '1')?.state).toBe('destroyed');
      expect((await s.provider.unwrap(wrappedV2, aad)).length).toBe(32);
      // A later rotation never brings the destroyed version back.
      await s.provider.rotate(keyId);
      await expectKmsError(s.provider.unwrap(wrappedV1, aad), 'destroyed');
    });

    it('destroying a dedicated key shreds everything wrapped under any of its versions', async () => {
      const keyId = s.newKeyId();
      await s.provider.createKey(keyId);
      const a = await s.provider.wrap(keyId, randomBytes(32), aad);
      await s.provider.rotate(keyId);
      const b = await s.provider.wrap(keyId, randomBytes(32), aad);
      await s.provider.destroyKey(keyId);
      await expectKmsError(s.provider.unwrap(a, aad), 'destroyed');
      await expectKmsError(s.provider.unwrap(b, aad), 'destroyed');
      await expectKmsError(s.provider.wrap(keyId, randomBytes(32), aad), 'destroyed');
    });
  });
}

export type { WrappedKey };
