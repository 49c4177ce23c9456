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

/**
 * Awaits a promise that must reject with a KmsError: of `code` and with a message matching `message`, when given.
 * Shared by every KMS test.
 */
export async function expectKmsError(
  promise: Promise<unknown>,
  code?: KmsErrorCode,
  message?: RegExp,
): Promise<KmsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KmsError);
  if (code !== undefined) expect((error as KmsError).code, (error as Error).message).toBe(code);
  if (message !== undefined) expect((error as Error).message).toMatch(message);
  return error as KmsError;
}

export function describeKmsProvider(label: string, setup: () => Promise<ConformanceSetup>): void {
  describe(`${label}: KMS provider conformance`, () => {
    let s: ConformanceSetup | undefined;
    const aad = Buffer.from('strongroom/v1 artifact=resnet50 version=v3');
    beforeAll(async () => {
      s = await setup();
    });
    afterAll(async () => {
      // When setup failed there is nothing to close; its own error is the one to report.
      await s?.provider.close();
      await s?.teardown?.();
    });
    const ready = (): ConformanceSetup => {
      if (!s) throw new Error(`${label}: setup failed`);
      return s;
    };

    it('wraps and unwraps a DEK bound to associated data, under version 1', async () => {
      const keyId = ready().newKeyId();
      await ready().provider.createKey(keyId);
      const dek = randomBytes(32);
      const wrapped = await ready().provider.wrap(keyId, dek, aad);
      expect(wrapped.provider).toBe(ready().provider.name);
      expect(wrapped.keyId).toBe(keyId);
      expect(wrapped.keyVersion).toBe('1');
      expect(Buffer.from(wrapped.ciphertext, 'base64').includes(dek)).toBe(false);
      expect((await ready().provider.unwrap(wrapped, aad)).equals(dek)).toBe(true);
      // Fresh randomness per wrap: the same DEK never wraps to the same bytes twice.
      expect((await ready().provider.wrap(keyId, dek, aad)).ciphertext).not.toBe(wrapped.ciphertext);
    });

    it('refuses other associated data, tampered ciphertext and a wrapped key from another key', async () => {
      const keyId = ready().newKeyId();
      const other = ready().newKeyId();
      await ready().provider.createKey(keyId);
      await ready().provider.createKey(other);
      const wrapped = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(
        ready().provider.unwrap(wrapped, Buffer.from('strongroom/v1 artifact=resnet50 version=v4')),
        'unwrap-failed',
      );
      const bytes = Buffer.from(wrapped.ciphertext, 'base64');
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
      await expectKmsError(
        ready().provider.unwrap({ ...wrapped, ciphertext: bytes.toString('base64') }, aad),
        'unwrap-failed',
      );
      await expectKmsError(ready().provider.unwrap({ ...wrapped, keyId: other }, aad), 'unwrap-failed');
    });

    it('rejects bad input with clear errors', async () => {
      const keyId = ready().newKeyId();
      await expectKmsError(ready().provider.wrap(keyId, randomBytes(32), aad), 'not-found');
      await ready().provider.createKey(keyId);
      await expectKmsError(ready().provider.createKey(keyId), 'invalid');
      await expectKmsError(ready().provider.wrap(keyId, new Uint8Array(0), aad), 'invalid');
      await expectKmsError(ready().provider.wrap(keyId, randomBytes(65), aad), 'invalid');
      const wrapped = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(
        ready().provider.unwrap({ ...wrapped, provider: 'somewhere-else' }, aad),
        'invalid',
      );
      await expectKmsError(ready().provider.unwrap({ ...wrapped, keyVersion: '99' }, aad), 'not-found');
    });

    it('rotates: the new version becomes primary, old wrapped keys still unwrap and rewrap without the DEK changing', async () => {
      const keyId = ready().newKeyId();
      await ready().provider.createKey(keyId);
      const dek = randomBytes(32);
      const old = await ready().provider.wrap(keyId, dek, aad);
      expect(await ready().provider.rotate(keyId)).toBe('2');
      const versions = await ready().provider.versions(keyId);
      expect(versions.map((v) => [v.version, v.state, v.primary])).toEqual([
        ['1', 'enabled', false],
        ['2', 'enabled', true],
      ]);
      expect((await ready().provider.unwrap(old, aad)).equals(dek)).toBe(true);
      expect((await ready().provider.wrap(keyId, dek, aad)).keyVersion).toBe('2');
      const rewrapped = await rewrapToPrimary(ready().provider, old, aad);
      expect(rewrapped.keyVersion).toBe('2');
      expect((await ready().provider.unwrap(rewrapped, aad)).equals(dek)).toBe(true);
      expect(await rewrapToPrimary(ready().provider, rewrapped, aad)).toBe(rewrapped);
    });

    it('destroying a version makes what it wrapped permanently unrecoverable; the primary cannot be destroyed', async () => {
      const keyId = ready().newKeyId();
      await ready().provider.createKey(keyId);
      const wrappedV1 = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await ready().provider.rotate(keyId);
      const wrappedV2 = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await expectKmsError(ready().provider.destroyVersion(keyId, '2'), 'invalid');
      await ready().provider.destroyVersion(keyId, '1');
      await expectKmsError(ready().provider.unwrap(wrappedV1, aad), 'destroyed');
      expect((await ready().provider.versions(keyId)).find((v) => v.version === '1')?.state).toBe(
        'destroyed',
      );
      expect((await ready().provider.unwrap(wrappedV2, aad)).length).toBe(32);
      // A later rotation never brings the destroyed version back.
      await ready().provider.rotate(keyId);
      await expectKmsError(ready().provider.unwrap(wrappedV1, aad), 'destroyed');
    });

    it('destroying a dedicated key shreds everything wrapped under any of its versions', async () => {
      const keyId = ready().newKeyId();
      await ready().provider.createKey(keyId);
      const a = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await ready().provider.rotate(keyId);
      const b = await ready().provider.wrap(keyId, randomBytes(32), aad);
      await ready().provider.destroyKey(keyId);
      await expectKmsError(ready().provider.unwrap(a, aad), 'destroyed');
      await expectKmsError(ready().provider.unwrap(b, aad), 'destroyed');
      await expectKmsError(ready().provider.wrap(keyId, randomBytes(32), aad), 'destroyed');
    });
  });
}

export type { WrappedKey };
