/**
 * Real SoftHSM2 tokens for tests, in a private temporary token directory.
 *
 * SoftHSM2 reads its configuration (the token directory) from the file named by SOFTHSM2_CONF, once, when the
 * library is initialized, and a process initializes it once. So every token this process creates lives in one
 * temporary directory whose configuration is put into SOFTHSM2_CONF before the first token exists (and so before
 * any provider loads the module); the directory goes when the last token is cleaned up. The environment variable
 * must reach the C library's getenv(): that holds on a process's main thread (vitest's default `forks` pool), not
 * in a worker thread, whose process.env is a private copy.
 *
 * SoftHSM2 missing is an error, never a reason to skip: `npm run host-setup` installs it (Debian package softhsm2).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMainThread } from 'node:worker_threads';

const run = promisify(execFile);

/** Where Debian (and Ubuntu, Fedora, Homebrew) put the SoftHSM2 PKCS#11 module. */
const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

export interface SoftHsmToken {
  /** Path of the SoftHSM2 PKCS#11 module. */
  readonly module: string;
  readonly tokenLabel: string;
  /** User PIN. */
  readonly pin: string;
  /** Security officer PIN. */
  readonly soPin: string;
  /** The token directory, and the configuration file in SOFTHSM2_CONF. */
  readonly tokenDir: string;
  readonly conf: string;
  /** Deletes the token; the last cleanup removes the temporary directory and restores SOFTHSM2_CONF. */
  cleanup(): Promise<void>;
}

const SETUP_HINT =
  'run `npm run host-setup` (it installs the Debian package softhsm2), or `apt-get install softhsm2`';

export function softHsmModule(): string {
  const fromEnv = process.env['STRONGROOM_SOFTHSM2_MODULE'];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`STRONGROOM_SOFTHSM2_MODULE=${fromEnv} does not exist`);
    return fromEnv;
  }
  const found = MODULE_CANDIDATES.find((p) => existsSync(p));
  if (!found)
    throw new Error(
      `SoftHSM2 is not installed: no libsofthsm2.so in ${MODULE_CANDIDATES.join(', ')}. The pkcs11 KMS tests need a ` +
        `real SoftHSM2 token: ${SETUP_HINT}.`,
    );
  return found;
}

interface Shared {
  readonly dir: string;
  readonly conf: string;
  readonly previousConf: string | undefined;
  /** A safety net for a run that ends without cleaning up (a failed setup, an interrupted test). */
  readonly removeOnExit: () => void;
  tokens: number;
}

let shared: Promise<Shared> | undefined;

async function sharedDir(): Promise<Shared> {
  if (!isMainThread)
    throw new Error(
      'SoftHSM2 tokens need SOFTHSM2_CONF in the real process environment, which a worker thread cannot set: ' +
        "run these tests in vitest's `forks` pool",
    );
  shared ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strongroom-softhsm-'));
    const removeOnExit = () => {
      rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', removeOnExit);
    const conf = join(dir, 'softhsm2.conf');
    await writeFile(
      conf,
      [
        `directories.tokendir = ${join(dir, 'tokens')}`,
        'objectstore.backend = file',
        'log.level = ERROR',
        'slots.removable = false',
        '',
      ].join('\n'),
    );
    await mkdir(join(dir, 'tokens'), { mode: 0o700 });
    const previousConf = process.env['SOFTHSM2_CONF'];
    process.env['SOFTHSM2_CONF'] = conf;
    return { dir, conf, previousConf, removeOnExit, tokens: 0 };
  })();
  return shared;
}

/** One token fewer; the last one takes the directory with it and restores SOFTHSM2_CONF. */
async function release(s: Shared): Promise<void> {
  s.tokens--;
  if (s.tokens > 0) return;
  shared = undefined;
  if (s.previousConf === undefined) delete process.env['SOFTHSM2_CONF'];
  else process.env['SOFTHSM2_CONF'] = s.previousConf;
  process.off('exit', s.removeOnExit);
  await rm(s.dir, { recursive: true, force: true });
}

async function util(args: readonly string[], conf: string): Promise<string> {
  try {
    const { stdout } = await run('softhsm2-util', args, { env: { ...process.env, SOFTHSM2_CONF: conf } });
    return stdout;
  } catch (e) {
    const error = e as NodeJS.ErrnoException & { stderr?: string };
    /* eslint-disable preserve-caught-error -- the caught error's command line carries the PINs */
    if (error.code === 'ENOENT')
      throw new Error(`SoftHSM2 is not installed: softhsm2-util is not on PATH. ${SETUP_HINT}.`);
    throw new Error(`softhsm2-util ${args[0] ?? ''} failed: ${error.stderr?.trim() || String(error.code)}`);
    /* eslint-enable preserve-caught-error */
  }
}

/**
 * Initializes a fresh token (user PIN and SO PIN random) and returns where it is. Call before the PKCS#11 module
 * is first loaded in this process, so that SOFTHSM2_CONF is already in place.
 */
export async function createSoftHsmToken(
  label = `strongroom-${randomBytes(4).toString('hex')}`,
): Promise<SoftHsmToken> {
  const module = softHsmModule();
  const s = await sharedDir();
  s.tokens++;
  const pin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  try {
    await util(['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', pin], s.conf);
  } catch (e) {
    await release(s);
    throw e;
  }
  let cleaned = false;
  return {
    module,
    tokenLabel: label,
    pin,
    soPin,
    tokenDir: join(s.dir, 'tokens'),
    conf: s.conf,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      if (s.tokens > 1) await util(['--delete-token', '--token', label], s.conf).catch(() => undefined);
      await release(s);
    },
  };
}
