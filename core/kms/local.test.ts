import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeKmsProvider } from './conformance.ts';
import { FileKeySetStore, LocalKmsProvider } from './local.ts';
import { KmsError } from './provider.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-local-kms-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
describeKmsProvider('local (file-backed key set)', () =>
  Promise.resolve({
    provider: new LocalKmsProvider(new FileKeySetStore(join(dir, 'conformance.json'))),
    newKeyId: () => `kek-${++n}`,
  }),
);

describe('local KMS storage', () => {
  it('keeps the key set in a private file that a second instance reads, and erases destroyed material from it', async () => {
    const path = join(dir, 'shared.json');
    const a = new LocalKmsProvider(new FileKeySetStore(path));
    await a.createKey('artifacts/resnet50');
    const aad = Buffer.from('ctx');
    const wrapped = await a.wrap('artifacts/resnet50', randomBytes(32), aad);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const b = new LocalKmsProvider(new FileKeySetStore(path));
    expect((await b.unwrap(wrapped, aad)).length).toBe(32);
    const material = (
      JSON.parse(readFileSync(path, 'utf8')) as {
        keys: Record<string, { versions: { material?: string }[] }>;
      }
    ).keys['artifacts/resnet50']?.versions[0]?.material;
    expect(material).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await b.destroyKey('artifacts/resnet50');
    expect(readFileSync(path, 'utf8')).not.toContain(material);
  });

  it('refuses a write based on a stale revision instead of losing a concurrent change', async () => {
    const store = new FileKeySetStore(join(dir, 'race.json'));
    await new LocalKmsProvider(store).createKey('k1');
    const stale = await store.load();
    await new LocalKmsProvider(store).createKey('k2');
    const error = await store
      .save(stale?.data ?? { format: 'strongroom-local-kms/v1', keys: {} }, stale?.revision ?? null)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmsError);
    expect((error as KmsError).code).toBe('unavailable');
  });

  it('rejects malformed key ids', async () => {
    const p = new LocalKmsProvider(new FileKeySetStore(join(dir, 'ids.json')));
    await expect(p.createKey('Bad Key!')).rejects.toThrow(/bad key id/);
  });
});
