import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { KmsError } from '../../core/kms/provider.ts';
import { KmsRunnable } from './open-kms.ts';

describe('KmsRunnable', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A local KMS in a temporary file that counts its closes. */
  class CountingKms extends LocalKmsProvider {
    closed = 0;
    override close(): Promise<void> {
      this.closed++;
      return super.close();
    }
  }

  function local(): CountingKms {
    const dir = mkdtempSync(join(tmpdir(), 'strongroom-kms-'));
    dirs.push(dir);
    return new CountingKms(new FileKeySetStore(join(dir, 'keyset.json')));
  }

  it('fails every call until started, forwards to the opened KMS, and closes it on stop', async () => {
    const opened = local();
    let opens = 0;
    const kms = new KmsRunnable('local', () => {
      opens++;
      return Promise.resolve(opened);
    });
    expect(kms.provider.name).toBe('local');
    expect(opens).toBe(0);
    const early = kms.provider.createKey('strongroom-internal');
    await expect(early).rejects.toBeInstanceOf(KmsError);
    await expect(early).rejects.toMatchObject({ code: 'unavailable' });

    await kms.start();
    expect(opens).toBe(1);
    await kms.provider.createKey('strongroom-internal');
    const aad = Buffer.from('aad');
    const wrapped = await kms.provider.wrap('strongroom-internal', Buffer.alloc(32, 7), aad);
    expect([...(await kms.provider.unwrap(wrapped, aad))]).toEqual([...Buffer.alloc(32, 7)]);
    expect(await kms.provider.rotate('strongroom-internal')).toBe('2');
    expect((await kms.provider.versions('strongroom-internal')).map((v) => v.version)).toEqual(['1', '2']);

    // Holders of the provider cannot close it: only the runnable's stop does.
    await kms.provider.close();
    expect(opened.closed).toBe(0);
    await kms.stop();
    expect(opened.closed).toBe(1);
    await expect(kms.provider.versions('strongroom-internal')).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('a failing open fails its start', async () => {
    const kms = new KmsRunnable('pkcs11', () => Promise.reject(new Error('no token')));
    await expect(kms.start()).rejects.toThrow('no token');
    await kms.stop();
  });
});
