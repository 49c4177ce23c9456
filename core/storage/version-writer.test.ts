import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EnvelopeError,
  decryptDirectory,
  generateRecipientKeyPair,
  treeDigest,
  unsealDek,
  type RecipientKeyPair,
} from '../envelope/index.ts';
import {
  StorageError,
  recipientKeyFingerprint,
  versionDirectory,
  writeVersion,
  type WriteVersionOptions,
} from './index.ts';

const artifact = { uid: '8d0c5a4e-1f7b-4c39-9a51-2b7e0d3c6f11', name: 'resnet50' };
const MARKER = '.strongroom-complete';

let dir: string;
let recipient: RecipientKeyPair;

beforeAll(async () => {
  recipient = await generateRecipientKeyPair();
});
beforeEach(async () => {
  dir = await mkdtemp('/dev/shm/version-writer-');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A plaintext tree with nested directories, a name with a space, an empty file and the publish marker. */
async function plaintextTree(): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>([
    ['config.json', Buffer.from('{"layers":50}\n')],
    ['model card.md', Buffer.from('# ResNet-50\n')],
    ['weights/layer 1/w.bin', randomBytes(300_000)],
    ['weights/b.bin', randomBytes(17)],
    ['weights/empty', Buffer.alloc(0)],
  ]);
  for (const [path, bytes] of files) {
    await mkdir(join(dir, 'out', ...path.split('/').slice(0, -1)), { recursive: true });
    await writeFile(join(dir, 'out', ...path.split('/')), bytes);
  }
  await writeFile(join(dir, 'out', MARKER), 'done\n');
  return files;
}

function options(extra: Partial<WriteVersionOptions> = {}): WriteVersionOptions {
  return {
    source: join(dir, 'out'),
    storageRoot: join(dir, 'volume'),
    storagePath: 'models/resnet50',
    artifact,
    version: 'v2',
    recipientPublicKey: recipient.publicKey,
    exclude: [MARKER],
    ...extra,
  };
}

async function refusal(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof StorageError)) throw new Error(`expected a StorageError, got ${String(error)}`);
  return error;
}

/** Every entry under `path`, recursively (relative paths). */
async function tree(path: string): Promise<string[]> {
  return (await readdir(path, { recursive: true })).sort();
}

describe('writeVersion', () => {
  it('round-trips through decryptDirectory: byte-identical files, the marker left out, the digest and key fingerprint right', async () => {
    const files = await plaintextTree();
    const written = await writeVersion(options());

    expect(written.path).toBe(join(dir, 'volume', 'models', 'resnet50', 'v2'));
    expect(written.path).toBe(
      versionDirectory(
        join(dir, 'volume'),
        { storage: { path: 'models/resnet50' } },
        {
          name: 'v2',
        },
      ),
    );
    expect(written.size).toBe([...files.values()].reduce((n, b) => n + b.length, 0));
    // Nothing else beside the version: no staging directory left behind.
    expect(await readdir(join(dir, 'volume', 'models', 'resnet50'))).toEqual(['v2']);
    // Ciphertext only: no plaintext name or content on the volume.
    const onDisk = await tree(written.path);
    expect(onDisk.filter((p) => p.includes('weights') || p.includes('card'))).toEqual([]);
    expect(onDisk).toContain('manifest.sre');
    const weights = files.get('weights/layer 1/w.bin') ?? Buffer.alloc(0);
    for (const entry of onDisk.filter((p) => p.endsWith('.sre'))) {
      const bytes = await readFile(join(written.path, entry));
      expect(bytes.includes(weights.subarray(1000, 1064))).toBe(false);
    }
    // Readable by a reader's sidecar with another UID; nothing writable by others.
    expect((await stat(written.path)).mode & 0o777).toBe(0o755);
    expect((await stat(join(written.path, 'objects'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(written.path, 'manifest.sre'))).mode & 0o777).toBe(0o644);
    expect((await stat(join(written.path, 'objects', '000000.sre'))).mode & 0o777).toBe(0o644);

    // The fingerprint is SHA-256 of the DER SubjectPublicKeyInfo: the fixed X25519 SPKI prefix and the raw key.
    const spki = Buffer.concat([
      Buffer.from('302a300506032b656e032100', 'hex'),
      Buffer.from(recipient.publicKey, 'base64'),
    ]);
    expect(written.keyFingerprint).toBe(`sha256:${createHash('sha256').update(spki).digest('hex')}`);
    expect(recipientKeyFingerprint(recipient.publicKey)).toBe(written.keyFingerprint);

    // Only the recipient private key opens the DEK, and only for this artifact and version.
    const context = { artifactUid: artifact.uid, artifactName: artifact.name, version: 'v2' };
    await expect(
      unsealDek(recipient.privateKey, written.sealedKey, { ...context, version: 'v3' }),
    ).rejects.toThrow(EnvelopeError);
    const dek = await unsealDek(recipient.privateKey, written.sealedKey, context);
    const manifest = await decryptDirectory(written.path, join(dir, 'plain'), {
      dek,
      keyId: `${artifact.uid}/v2`,
      context,
    });
    dek.fill(0);
    expect(await tree(join(dir, 'plain'))).not.toContain(MARKER);
    expect(manifest.files.map((f) => f.path).sort()).toEqual([...files.keys()].sort());
    for (const [path, bytes] of files)
      expect((await readFile(join(dir, 'plain', ...path.split('/')))).equals(bytes), path).toBe(true);
    expect(treeDigest(manifest)).toBe(written.digest);
    // The digest is what coreutils computes in the plaintext tree.
    const shell = await new Promise<string>((resolve, reject) => {
      execFile(
        'sh',
        ['-c', "find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum -- | sha256sum"],
        { cwd: join(dir, 'plain') },
        (error, stdout) => {
          if (error) reject(new Error('sha256sum pipeline failed', { cause: error }));
          else resolve(stdout);
        },
      );
    });
    expect(written.digest).toBe(`sha256:${shell.slice(0, 64)}`);
  });

  it('refuses an existing version directory, even an empty one, and leaves it as it was', async () => {
    await plaintextTree();
    const existing = join(dir, 'volume', 'models', 'resnet50', 'v2');
    await mkdir(existing, { recursive: true });
    let error = await refusal(writeVersion(options()));
    expect(error.kind).toBe('exists');
    expect(await readdir(existing)).toEqual([]);

    await writeFile(join(existing, 'manifest.sre'), 'someone else');
    error = await refusal(writeVersion(options()));
    expect(error.kind).toBe('exists');
    expect(error.message).toMatch(/versions are immutable/);
    expect(await readFile(join(existing, 'manifest.sre'), 'utf8')).toBe('someone else');
    expect(await readdir(join(dir, 'volume', 'models', 'resnet50'))).toEqual(['v2']);

    // A second write of a version that was written is refused the same way.
    const other = await writeVersion(options({ version: 'v3' }));
    expect((await refusal(writeVersion(options({ version: 'v3' })))).kind).toBe('exists');
    expect(await tree(other.path)).toContain('manifest.sre');
  });

  it.skipIf(process.getuid?.() !== 0)(
    'a volume that fills up mid-way leaves neither the version nor its staging directory',
    async () => {
      await plaintextTree();
      await writeFile(join(dir, 'out', 'big.bin'), randomBytes(2 << 20));
      const volume = join(dir, 'volume');
      await mkdir(volume);
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', volume]);
      try {
        const error = await refusal(writeVersion(options()));
        expect(error.kind).toBe('io');
        expect(error.cause).toBeDefined();
        expect(await tree(volume)).toEqual(['models', 'models/resnet50']);
        // With room again, the same version can be written: nothing blocks it.
        await rm(join(dir, 'out', 'big.bin'));
        const written = await writeVersion(options());
        expect(await readdir(join(volume, 'models', 'resnet50'))).toEqual(['v2']);
        expect(written.size).toBeGreaterThan(300_000);
      } finally {
        await run('umount', [volume]);
      }
    },
  );

  it('a tree with no bytes fails after encrypting, and leaves nothing', async () => {
    await mkdir(join(dir, 'out', 'sub'), { recursive: true });
    await writeFile(join(dir, 'out', 'sub', 'a'), '');
    await writeFile(join(dir, 'out', 'b'), '');
    await writeFile(join(dir, 'out', MARKER), 'the marker is not content');
    const error = await refusal(writeVersion(options()));
    expect(error.kind).toBe('empty');
    expect(await tree(join(dir, 'volume'))).toEqual(['models', 'models/resnet50']);
  });

  it('refuses symlinks, names sha256sum would escape, bad keys, versions and paths before writing anything', async () => {
    await plaintextTree();
    await symlink('/etc/passwd', join(dir, 'out', 'weights', 'link'));
    let error = await refusal(writeVersion(options()));
    expect(error.kind).toBe('unsafe-path');
    expect(error.message).toMatch(/weights\/link: only regular files/);
    await rm(join(dir, 'out', 'weights', 'link'));

    await writeFile(join(dir, 'out', 'new\nline'), 'x');
    error = await refusal(writeVersion(options()));
    expect(error.kind).toBe('unsafe-path');
    await rm(join(dir, 'out', 'new\nline'));

    for (const key of ['', 'AAAA', Buffer.alloc(33).toString('base64'), `${recipient.publicKey} `]) {
      error = await refusal(writeVersion(options({ recipientPublicKey: key })));
      expect(error.kind).toBe('invalid');
    }
    for (const version of ['latest', 'V2', '-v2', 'v2/..', '..', '', 'a'.repeat(64)])
      expect((await refusal(writeVersion(options({ version })))).kind).toBe('invalid');
    for (const storagePath of ['../escape', '/abs', 'a/../b', 'a//b', './a', 'a/.'])
      expect((await refusal(writeVersion(options({ storagePath })))).kind).toBe('invalid');
    expect((await refusal(writeVersion(options({ storageRoot: 'relative/root' })))).kind).toBe('invalid');
    expect((await refusal(writeVersion(options({ artifact: { uid: '', name: 'x' } })))).kind).toBe('invalid');
    expect((await refusal(writeVersion(options({ source: join(dir, 'missing') })))).kind).toBe('io');
    await expect(stat(join(dir, 'volume'))).rejects.toThrow(/ENOENT/);
  });

  it('writes into the root itself when the storage path is empty', async () => {
    await plaintextTree();
    const written = await writeVersion(options({ storagePath: '' }));
    expect(written.path).toBe(join(dir, 'volume', 'v2'));
    expect(await readdir(join(dir, 'volume'))).toEqual(['v2']);
  });
});

describe('versionDirectory', () => {
  const spec = (path: string) => ({ storage: { persistentVolumeClaim: { claimName: 'models' }, path } });

  it('is <root>/<spec.storage.path>/<version.path ?? version.name>', () => {
    expect(versionDirectory('/mnt/c', spec('vision/resnet'), { name: 'v3' })).toBe('/mnt/c/vision/resnet/v3');
    expect(versionDirectory('/mnt/c/', spec('r'), { name: 'v3', path: 'v3-finetuned/x.y' })).toBe(
      '/mnt/c/r/v3-finetuned/x.y',
    );
  });

  it('refuses anything that could leave the root, and malformed names', () => {
    const bad: [string, { name: string; path?: string }][] = [
      ['../up', { name: 'v1' }],
      ['a/../../b', { name: 'v1' }],
      ['/etc', { name: 'v1' }],
      ['ok', { name: 'v1', path: '..' }],
      ['ok', { name: 'v1', path: '../../etc' }],
      ['ok', { name: 'v1', path: '/etc' }],
      ['ok', { name: '..' }],
      ['ok', { name: 'a/b' }],
      ['ok', { name: '' }],
      ['', { name: 'v1' }],
    ];
    for (const [path, version] of bad) {
      const call = () => versionDirectory('/mnt/c', spec(path), version);
      expect(call, `${path} ${JSON.stringify(version)}`).toThrow(StorageError);
    }
    expect(() => versionDirectory('mnt/c', spec('ok'), { name: 'v1' })).toThrow(/must be absolute/);
  });
});

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${stderr}`, { cause: error }));
      else resolve();
    });
  });
}
