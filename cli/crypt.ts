/**
 * `strongroom keygen`, `encrypt` and `decrypt`: Strongroom's envelope format (docs/format.md) on files and
 * directories with explicit keys, age-style, no cluster involved.
 *
 * - `keygen -o id.key` writes an X25519 identity (mode 0600, never over an existing file) and prints its public key.
 * - `encrypt --recipient <key|@file> -o OUT IN` draws a fresh data key (DEK), encrypts IN with it (a file into the
 *   single-file format, a directory into the directory format: `manifest.sre` + `objects/`), seals the DEK to the
 *   recipient with HPKE (`sealDek`, the same sealing `strongroom publish` uses) and writes the sealed DEK to a small
 *   JSON file beside the output, `OUT.sealed-key.json` (`--sealed-key` to choose). The artifact context bound into
 *   every envelope and into the seal (uid, name, version) is `--artifact-uid/--artifact-name/--artifact-version`,
 *   by default `local`, the input's base name and `v1`; it is recorded in the sealed-key file (HPKE authenticates it:
 *   an edited context does not open).
 * - `decrypt --identity id.key -o OUT IN` unseals the DEK, then decrypts all or nothing: OUT must not exist, output
 *   goes to a staging name beside it and appears only when every byte verified (a directory's files are also checked
 *   against the manifest's SHA-256). A wrong identity, a tampered byte or a missing file leaves nothing behind.
 *
 * Exit codes: 0 done; 1 the ciphertext does not verify (tampered, truncated, another context); 2 bad usage (OUT
 * exists, an unreadable key file); 3 the identity cannot open the sealed key; 4 the input does not exist.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { link, lstat, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { isSea } from 'node:sea';
import { Command, InvalidArgumentError } from 'commander';
import {
  decryptDirectory,
  decryptFile,
  encryptDirectory,
  encryptFile,
  EnvelopeError,
  generateRecipientKeyPair,
  listTree,
  MANIFEST_FILE,
  newDek,
  recipientKeyFromPem,
  SEAL_SUITE,
  sealDek,
  SegmentPool,
  unsealDek,
  type SealContext,
  type SealedDek,
} from '../core/envelope/index.ts';
import { action, example } from './command.ts';
import { CliError, EXIT, usageError, type CliIo } from './io.ts';
import { formatBytes, startProgress, type Progress } from './progress.ts';

// ---------------------------------------------------------------------------------------------------------------
// Keys.

/** The line of an identity file that holds the private key. */
export const IDENTITY_PREFIX = 'STRONGROOM-X25519-IDENTITY:';
/** The DER prefix of an X25519 PKCS#8 private key, followed by the 32 raw bytes. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The raw public key (base64) of a raw X25519 private key. */
export function publicKeyOf(privateKey: Uint8Array): string {
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519, privateKey]),
    format: 'der',
    type: 'pkcs8',
  });
  return recipientKeyFromPem(createPublicKey(key).export({ format: 'pem', type: 'spki' }).toString());
}

/** The text of an identity file. */
export function formatIdentity(privateKey: Uint8Array, now: Date): string {
  return (
    `# strongroom X25519 identity, created ${now.toISOString()}\n` +
    `# public key: ${publicKeyOf(privateKey)}\n` +
    `${IDENTITY_PREFIX}${Buffer.from(privateKey).toString('base64')}\n`
  );
}

/** The raw private key of an identity file's text; throws CliError (usage) if there is none. */
export function parseIdentity(text: string, path: string): Buffer {
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith(IDENTITY_PREFIX));
  const key = line === undefined ? undefined : Buffer.from(line.slice(IDENTITY_PREFIX.length), 'base64');
  if (key?.length !== 32)
    throw usageError(
      `${path} is not a strongroom identity (no ${IDENTITY_PREFIX} line with a 32-byte key): make one with strongroom keygen`,
    );
  return key;
}

function rawPublicKey(base64: string, what: string): string {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== base64)
    throw usageError(`${what} is not a base64 32-byte X25519 public key`);
  return base64;
}

/**
 * A recipient from `--recipient`: a base64 X25519 public key, or `@file` holding one (a line of base64, an identity
 * file, whose public key is derived, or a PEM SubjectPublicKeyInfo such as a ModelArtifact's
 * `status.recipientPublicKey.publicKeyPem`).
 */
export async function parseRecipient(value: string): Promise<string> {
  if (!value.startsWith('@')) return rawPublicKey(value.trim(), `--recipient ${JSON.stringify(value)}`);
  const path = value.slice(1);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw usageError(`cannot read the recipient file ${path}: ${(cause as Error).message}`, { cause });
  }
  return recipientFromText(text, path);
}

export function recipientFromText(text: string, path: string): string {
  if (text.includes(IDENTITY_PREFIX)) return publicKeyOf(parseIdentity(text, path));
  if (text.includes('-----BEGIN PUBLIC KEY-----')) {
    try {
      return recipientKeyFromPem(text);
    } catch (cause) {
      throw usageError(`${path} holds a PEM public key that is not an X25519 key`, { cause });
    }
  }
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw usageError(`${path} holds no public key`);
  return rawPublicKey(line, `the key in ${path}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The sealed-key file.

export const SEALED_KEY_FORMAT = 'strongroom-sealed-key/v1';
export const SEALED_KEY_SUFFIX = '.sealed-key.json';

/** What `encrypt` writes beside its output, and `decrypt` needs: not secret (only the identity opens it). */
export interface SealedKeyFile {
  readonly format: typeof SEALED_KEY_FORMAT;
  /** What was encrypted: one file (the single-file format) or a directory (manifest + objects). */
  readonly kind: 'file' | 'directory';
  /** The key id written in every envelope header: `<artifact uid>/<version>`. */
  readonly keyId: string;
  /** The artifact context bound into every envelope and into the seal. */
  readonly context: SealContext;
  /** The recipient's public key, base64 (informational: which identity opens it). */
  readonly recipient: string;
  readonly sealedKey: SealedDek;
}

export function parseSealedKeyFile(text: string, path: string): SealedKeyFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw usageError(`${path} is not JSON: ${(cause as Error).message}`, { cause });
  }
  const o = raw as Partial<Record<keyof SealedKeyFile, unknown>>;
  const context = o.context as Partial<Record<keyof SealContext, unknown>> | undefined;
  const sealed = o.sealedKey as Partial<Record<keyof SealedDek, unknown>> | undefined;
  if (
    o.format !== SEALED_KEY_FORMAT ||
    (o.kind !== 'file' && o.kind !== 'directory') ||
    typeof o.keyId !== 'string' ||
    typeof context?.artifactUid !== 'string' ||
    typeof context.artifactName !== 'string' ||
    typeof context.version !== 'string' ||
    sealed?.suite !== SEAL_SUITE ||
    typeof sealed.enc !== 'string' ||
    typeof sealed.ciphertext !== 'string'
  )
    throw usageError(`${path} is not a ${SEALED_KEY_FORMAT} file`);
  return {
    format: SEALED_KEY_FORMAT,
    kind: o.kind,
    keyId: o.keyId,
    context: {
      artifactUid: context.artifactUid,
      artifactName: context.artifactName,
      version: context.version,
    },
    recipient: typeof o.recipient === 'string' ? o.recipient : '',
    sealedKey: { suite: SEAL_SUITE, enc: sealed.enc, ciphertext: sealed.ciphertext },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function mustBeAbsent(path: string, what: string): Promise<void> {
  if (await exists(path))
    throw usageError(
      `${what} ${path} already exists: choose another name or remove it (nothing is overwritten)`,
    );
}

/** A staging name beside `target`; the progress watcher and a crash's leftovers are recognizable by it. */
function stagingName(target: string): string {
  return join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
}

/** Moves the finished file `temp` to `target` only if `target` does not exist (link, then unlink the temp). */
async function placeExclusively(temp: string, target: string): Promise<void> {
  try {
    await link(temp, target);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST')
      throw usageError(`${target} appeared while working; it was left alone`, { cause });
    throw cause;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Bytes written so far under the staging names of `target` (files are pre-sized, so per file). */
async function stagedBytes(target: string): Promise<number> {
  const marker = `${basename(target)}.partial-`;
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    const info = await lstat(path).catch(() => undefined);
    if (info === undefined) return;
    if (info.isFile()) total += info.size;
    else if (info.isDirectory())
      for (const child of await readdir(path).catch(() => [] as string[])) await walk(join(path, child));
  };
  for (const name of await readdir(dirname(target)).catch(() => [] as string[]))
    if (name.includes(marker)) await walk(join(dirname(target), name));
  return total;
}

/** Runs `work` with a progress bar that follows the staged output (only drawn on a terminal). */
async function withProgress<T>(
  io: CliIo,
  label: string,
  total: number,
  target: string,
  work: () => Promise<T>,
  scale = 1,
): Promise<{ result: T; progress: Progress }> {
  const progress = startProgress(io, label, total);
  const timer =
    io.interactive === true
      ? setInterval(() => {
          void stagedBytes(target).then((bytes) => {
            progress.update(Math.min(total, Math.floor(bytes * scale)));
          });
        }, 250)
      : undefined;
  try {
    const result = await work();
    progress.update(total);
    return { result, progress };
  } catch (error) {
    progress.stop();
    throw error;
  } finally {
    if (timer !== undefined) clearInterval(timer);
  }
}

/** A worker pool for large inputs (segments in parallel); small inputs are faster on this thread. */
function poolFor(bytes: number, jobs: number | undefined): SegmentPool | undefined {
  // A single executable has no segment-worker file beside it to start workers from.
  if (isSea()) return undefined;
  const size = jobs ?? Math.min(8, availableParallelism());
  return size > 1 && bytes >= 8 << 20 ? new SegmentPool(size) : undefined;
}

/** An envelope failure as a CliError with the exit code of its kind. */
export function explainEnvelopeError(error: unknown, doing: string): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof EnvelopeError) {
    const code = error.kind === 'invalid' ? EXIT.usage : error.kind === 'io' ? EXIT.unavailable : EXIT.failed;
    const detail = error.cause instanceof Error ? ` (${error.cause.message})` : '';
    return new CliError(code, `${doing}: ${error.message}${detail}; nothing was written`, { cause: error });
  }
  return new CliError(
    EXIT.unavailable,
    `${doing}: ${error instanceof Error ? error.message : String(error)}`,
    {
      cause: error,
    },
  );
}

async function inputKind(input: string): Promise<{ kind: 'file' | 'directory'; size: number }> {
  let info;
  try {
    info = await stat(input);
  } catch (cause) {
    throw new CliError(
      EXIT.notFound,
      `${input} does not exist or cannot be read: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  if (info.isFile()) return { kind: 'file', size: info.size };
  if (info.isDirectory()) return { kind: 'directory', size: 0 };
  throw usageError(`${input} is neither a regular file nor a directory`);
}

// ---------------------------------------------------------------------------------------------------------------
// encrypt / decrypt as functions (the commands are thin over them; tests call them too).

export interface EncryptRequest {
  readonly input: string;
  readonly output: string;
  readonly recipient: string;
  readonly sealedKeyPath?: string;
  readonly artifactUid?: string;
  readonly artifactName?: string;
  readonly artifactVersion?: string;
  readonly jobs?: number;
}

export interface CryptSummary {
  readonly kind: 'file' | 'directory';
  readonly files: number;
  readonly bytes: number;
  readonly output: string;
  readonly sealedKeyPath: string;
}

export async function encryptPath(io: CliIo, request: EncryptRequest): Promise<CryptSummary> {
  const input = resolve(request.input);
  const output = resolve(request.output);
  const sealedKeyPath = resolve(request.sealedKeyPath ?? `${request.output}${SEALED_KEY_SUFFIX}`);
  const { kind, size } = await inputKind(input);
  await mustBeAbsent(output, 'the output');
  await mustBeAbsent(sealedKeyPath, 'the sealed-key file');
  const context: SealContext = {
    artifactUid: request.artifactUid ?? 'local',
    artifactName: request.artifactName ?? basename(input),
    version: request.artifactVersion ?? 'v1',
  };
  const keyId = `${context.artifactUid}/${context.version}`;
  let files = 1;
  let bytes = size;
  if (kind === 'directory') {
    let paths: string[];
    try {
      paths = await listTree(input);
    } catch (error) {
      throw explainEnvelopeError(error, `encrypting ${input}`);
    }
    files = paths.length;
    bytes = 0;
    for (const p of paths) bytes += (await stat(join(input, ...p.split('/')))).size;
  }
  const dek = newDek();
  const pool = poolFor(bytes, request.jobs);
  try {
    const sealed = await sealDek(request.recipient, dek, context);
    const { progress } = await withProgress(io, 'encrypt', bytes, output, async () => {
      try {
        if (kind === 'file') {
          const temp = stagingName(output);
          try {
            await encryptFile(input, temp, {
              dek,
              keyId,
              context: { ...context, path: '' },
              digest: false,
              ...(pool ? { pool } : {}),
            });
          } catch (error) {
            await rm(temp, { force: true });
            throw error;
          }
          await placeExclusively(temp, output);
        } else {
          await encryptDirectory(input, output, { dek, keyId, context, ...(pool ? { pool } : {}) });
        }
      } catch (error) {
        throw explainEnvelopeError(error, `encrypting ${input}`);
      }
    });
    const keyFile: SealedKeyFile = {
      format: SEALED_KEY_FORMAT,
      kind,
      keyId,
      context,
      recipient: request.recipient,
      sealedKey: sealed,
    };
    try {
      await writeFile(sealedKeyPath, `${JSON.stringify(keyFile, null, 2)}\n`, { flag: 'wx', mode: 0o644 });
    } catch (cause) {
      await rm(output, { recursive: true, force: true });
      throw usageError(`cannot write the sealed-key file ${sealedKeyPath}: ${(cause as Error).message}`, {
        cause,
      });
    }
    progress.finish();
    return { kind, files, bytes, output, sealedKeyPath };
  } finally {
    dek.fill(0);
    await pool?.close();
  }
}

export interface DecryptRequest {
  readonly input: string;
  readonly output: string;
  readonly identity: string;
  readonly sealedKeyPath?: string;
  readonly jobs?: number;
}

export async function decryptPath(io: CliIo, request: DecryptRequest): Promise<CryptSummary> {
  const input = resolve(request.input);
  const output = resolve(request.output);
  const sealedKeyPath = resolve(
    request.sealedKeyPath ?? `${request.input.replace(/\/+$/, '')}${SEALED_KEY_SUFFIX}`,
  );
  const { kind, size } = await inputKind(input);
  await mustBeAbsent(output, 'the output');
  let identityText: string;
  try {
    identityText = await readFile(request.identity, 'utf8');
  } catch (cause) {
    throw usageError(`cannot read the identity ${request.identity}: ${(cause as Error).message}`, { cause });
  }
  const privateKey = parseIdentity(identityText, request.identity);
  let keyText: string;
  try {
    keyText = await readFile(sealedKeyPath, 'utf8');
  } catch (cause) {
    throw new CliError(
      EXIT.notFound,
      `cannot read the sealed-key file ${sealedKeyPath} (encrypt writes it beside its output; name it with --sealed-key): ${(cause as Error).message}`,
      { cause },
    );
  }
  const keyFile = parseSealedKeyFile(keyText, sealedKeyPath);
  if (keyFile.kind !== kind)
    throw usageError(`${sealedKeyPath} is the key of a ${keyFile.kind}, but ${input} is a ${kind}`);
  if (kind === 'directory' && !(await exists(join(input, MANIFEST_FILE))))
    throw usageError(`${input} is not an encrypted directory (no ${MANIFEST_FILE})`);
  let dek: Buffer;
  try {
    dek = await unsealDek(privateKey, keyFile.sealedKey, keyFile.context);
  } catch (error) {
    throw new CliError(
      EXIT.refused,
      `the identity ${request.identity} (public key ${publicKeyOf(privateKey)}) cannot open ${sealedKeyPath}: it was sealed to ${keyFile.recipient || 'another key'}, or it was altered; nothing was written`,
      { cause: error },
    );
  } finally {
    privateKey.fill(0);
  }
  const encryptedBytes = kind === 'file' ? size : await stagedSourceBytes(input);
  const pool = poolFor(encryptedBytes, request.jobs);
  try {
    let files = 1;
    let bytes = 0;
    const { progress } = await withProgress(io, 'decrypt', encryptedBytes, output, async () => {
      try {
        if (kind === 'file') {
          const temp = stagingName(output);
          try {
            const result = await decryptFile(input, temp, {
              dek,
              context: { ...keyFile.context, path: '' },
              ...(pool ? { pool } : {}),
            });
            if (result.keyId !== keyFile.keyId)
              throw new EnvelopeError(
                'wrong-context',
                `the file names key ${result.keyId}, not ${keyFile.keyId}`,
              );
            bytes = result.plaintextLength;
          } catch (error) {
            await rm(temp, { force: true });
            throw error;
          }
          await placeExclusively(temp, output);
        } else {
          const manifest = await decryptDirectory(input, output, {
            dek,
            keyId: keyFile.keyId,
            context: keyFile.context,
            checkDigests: true,
            ...(pool ? { pool } : {}),
          });
          files = manifest.files.length;
          bytes = manifest.files.reduce((sum, f) => sum + f.size, 0);
        }
      } catch (error) {
        throw explainEnvelopeError(error, `decrypting ${input}`);
      }
    });
    progress.finish();
    return { kind, files, bytes, output, sealedKeyPath };
  } finally {
    dek.fill(0);
    await pool?.close();
  }
}

async function stagedSourceBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(join(dir, 'objects')).catch(() => [] as string[]))
    total += (await stat(join(dir, 'objects', name)).catch(() => ({ size: 0 }))).size;
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// The commands.

function jobsOption(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1 || n > 64) throw new InvalidArgumentError('not a number from 1 to 64');
  return n;
}

interface KeygenOptions {
  output?: string;
}
interface EncryptOptions {
  output: string;
  recipient: string;
  sealedKey?: string;
  artifactUid?: string;
  artifactName?: string;
  artifactVersion?: string;
  jobs?: number;
}
interface DecryptOptions {
  output: string;
  identity: string;
  sealedKey?: string;
  jobs?: number;
}

function summaryLine(verb: string, input: string, s: CryptSummary): string {
  const what = s.kind === 'directory' ? `${String(s.files)} file${s.files === 1 ? '' : 's'}, ` : '';
  return `${verb} ${input} -> ${s.output} (${what}${formatBytes(s.bytes)})\n`;
}

/** `keygen`, `encrypt`, `decrypt`, added to the `strongroom` program. */
export function cryptCommands(io: CliIo): Command[] {
  const keygen = example(
    new Command('keygen')
      .description('make an X25519 identity for encrypt/decrypt; prints its public key')
      .option(
        '-o, --output <file>',
        'write the identity here (mode 0600, never over an existing file); default stdout',
      )
      .action(
        action(io, async (options: KeygenOptions) => {
          const pair = await generateRecipientKeyPair();
          try {
            const text = formatIdentity(pair.privateKey, new Date());
            if (options.output === undefined) {
              io.out(text);
              return;
            }
            try {
              await writeFile(options.output, text, { flag: 'wx', mode: 0o600 });
            } catch (cause) {
              if ((cause as NodeJS.ErrnoException).code === 'EEXIST')
                throw usageError(`${options.output} already exists: an identity is never overwritten`, {
                  cause,
                });
              throw usageError(`cannot write ${options.output}: ${(cause as Error).message}`, { cause });
            }
            io.err(`Public key: ${pair.publicKey}\n`);
            io.out(`${pair.publicKey}\n`);
          } finally {
            pair.privateKey.fill(0);
          }
        }),
      ),
    'strongroom keygen -o alice.key > alice.pub',
  );

  const encrypt = example(
    new Command('encrypt')
      .description(
        `encrypt a file or a directory to a recipient's X25519 key; the sealed data key goes to OUT${SEALED_KEY_SUFFIX}`,
      )
      .argument('<in>', 'a file or a directory')
      .requiredOption('-o, --output <out>', 'the encrypted file or directory (must not exist)')
      .requiredOption(
        '-r, --recipient <key|@file>',
        'base64 X25519 public key, or @file (a .pub, an identity or a PEM key)',
      )
      .option('--sealed-key <file>', `where to write the sealed data key (default OUT${SEALED_KEY_SUFFIX})`)
      .option('--artifact-uid <uid>', 'context: the artifact uid bound into the ciphertext (default local)')
      .option('--artifact-name <name>', "context: the artifact name (default the input's base name)")
      .option('--artifact-version <version>', 'context: the version (default v1)')
      .option('-j, --jobs <n>', 'worker threads for large inputs', jobsOption)
      .action(
        action(io, async (input: string, options: EncryptOptions) => {
          const recipient = await parseRecipient(options.recipient);
          const summary = await encryptPath(io, {
            input,
            output: options.output,
            recipient,
            ...(options.sealedKey === undefined ? {} : { sealedKeyPath: options.sealedKey }),
            ...(options.artifactUid === undefined ? {} : { artifactUid: options.artifactUid }),
            ...(options.artifactName === undefined ? {} : { artifactName: options.artifactName }),
            ...(options.artifactVersion === undefined ? {} : { artifactVersion: options.artifactVersion }),
            ...(options.jobs === undefined ? {} : { jobs: options.jobs }),
          });
          io.out(summaryLine('encrypted', input, summary) + `sealed key: ${summary.sealedKeyPath}\n`);
        }),
      ),
    'strongroom encrypt -r @alice.pub -o model.enc ./model',
    "kubectl get ma resnet50 -o jsonpath='{.status.recipientPublicKey.publicKeyPem}' > resnet50.pem",
    'strongroom encrypt -r @resnet50.pem --artifact-uid <uid> --artifact-name resnet50 --artifact-version v3 -o v3 ./model',
  );

  const decrypt = example(
    new Command('decrypt')
      .description('decrypt a file or directory made by encrypt, all or nothing (OUT must not exist)')
      .argument('<in>', 'the encrypted file or directory')
      .requiredOption('-o, --output <out>', 'the decrypted file or directory (must not exist)')
      .requiredOption('-i, --identity <file>', 'the identity file (strongroom keygen)')
      .option('--sealed-key <file>', `the sealed data key (default IN${SEALED_KEY_SUFFIX})`)
      .option('-j, --jobs <n>', 'worker threads for large inputs', jobsOption)
      .action(
        action(io, async (input: string, options: DecryptOptions) => {
          const summary = await decryptPath(io, {
            input,
            output: options.output,
            identity: options.identity,
            ...(options.sealedKey === undefined ? {} : { sealedKeyPath: options.sealedKey }),
            ...(options.jobs === undefined ? {} : { jobs: options.jobs }),
          });
          io.out(summaryLine('decrypted', input, summary));
        }),
      ),
    'strongroom decrypt -i alice.key -o ./model-copy model.enc',
  );
  return [keygen, encrypt, decrypt];
}
