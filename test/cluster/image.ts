import { createHash } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { run } from './kubectl.ts';

export interface ImageConfig {
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env?: readonly string[];
  readonly user?: string;
  readonly workingDir?: string;
}

async function mustRun(file: string, args: readonly string[]): Promise<void> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

/**
 * Writes a docker-archive image tarball (one layer) from a root filesystem directory, with no daemon and no registry.
 * containerd imports it with `ctr images import`; podman and docker load it too.
 */
export async function writeImageArchive(
  rootfs: string,
  ref: string,
  out: string,
  config: ImageConfig,
): Promise<void> {
  const staging = mkdtempSync(`${out}.staging-`);
  try {
    const layer = join(staging, 'layer.tar');
    // Reproducible: sorted names, root-owned, epoch mtimes.
    await mustRun('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-C',
      rootfs,
      '-cf',
      layer,
      '.',
    ]);
    const diffId = `sha256:${createHash('sha256').update(readFileSync(layer)).digest('hex')}`;
    const imageConfig = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Entrypoint: config.entrypoint ?? null,
        Cmd: config.cmd ?? null,
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...(config.env ?? [])],
        WorkingDir: config.workingDir ?? '/',
        User: config.user ?? '',
      },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created_by: 'strongroom test/cluster/image.ts' }],
    });
    const configName = `${createHash('sha256').update(imageConfig).digest('hex')}.json`;
    writeFileSync(join(staging, configName), imageConfig);
    writeFileSync(
      join(staging, 'manifest.json'),
      JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: ['layer.tar'] }]),
    );
    await mustRun('tar', [
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-C',
      staging,
      '-cf',
      out,
      'manifest.json',
      configName,
      'layer.tar',
    ]);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The busybox tools linked into the test image. */
const BUSYBOX_APPLETS = [
  'sh',
  'sleep',
  'ls',
  'cat',
  'echo',
  'id',
  'mount',
  'df',
  'wget',
  'test',
  'touch',
  'cut',
  'grep',
  'true',
  'head',
  'sha256sum',
  'stat',
  'rm',
  'mkdir',
  // Services and DNS checks (services.int.test.ts), routes (node.int.test.ts).
  'ip',
  'nslookup',
  'httpd',
  'hostname',
  'timeout',
  'date',
  'seq',
];

/**
 * Builds the two images every test node needs from Debian's static busybox: `localhost/pause:test` (the sandbox
 * image; set in containerd's config so it is never pulled) and `localhost/busybox:test` for test pods.
 */
export async function buildBaseImages(dir: string): Promise<{ pause: string; busybox: string }> {
  const rootfs = join(dir, 'busybox-rootfs');
  for (const d of ['bin', 'tmp', 'proc', 'sys', 'dev', 'etc'])
    mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of BUSYBOX_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n',
  );
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  const pause = join(dir, 'pause.tar');
  const busybox = join(dir, 'busybox.tar');
  await writeImageArchive(rootfs, PAUSE_IMAGE, pause, {
    entrypoint: ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1; done'],
  });
  await writeImageArchive(rootfs, BUSYBOX_IMAGE, busybox, { entrypoint: ['/bin/sh'] });
  return { pause, busybox };
}

export const PAUSE_IMAGE = 'localhost/pause:test';
export const BUSYBOX_IMAGE = 'localhost/busybox:test';
