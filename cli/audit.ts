/**
 * `strongroom audit …`: verify a log offline, print inclusion proofs and checkpoints, follow a log.
 * Exit codes (cli/io.ts): 0 verified, 1 tampering or a failed check, 2 bad usage or unreadable input.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../core/api/validation.ts';
import { explainApiError, loadKubeConfig, type ClusterFlags } from './cluster.ts';
import { CliError, EXIT, type CliIo } from './io.ts';
import {
  AUDIT_CHECKPOINTS_CONFIGMAP,
  formatFindings,
  generateNoteKey,
  parseVerifierKey,
  tailLog,
  verifyInclusion,
  verifyLog,
  writerOf,
  type NoteVerifier,
  type VerifyReport,
} from '../core/audit/index.ts';
import { CoreV1Api } from '@kubernetes/client-node';

class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A Go-style duration (`90s`, `15m`, `1h30m`) in ms. */
function durationMs(value: string): number {
  const ms = /^(?:0|(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+)$/.test(value) ? parseDuration(value) : [];
  if (Array.isArray(ms)) throw new InvalidArgumentError('not a duration such as 90s, 15m or 1h30m');
  return Math.round(ms);
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError('not a non-negative integer');
  return n;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function loadVerifiers(path: string | undefined): Promise<NoteVerifier[] | undefined> {
  if (path === undefined) return undefined;
  const text = await readText(path, 'public key');
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  try {
    return keys.map((k) => parseVerifierKey(k));
  } catch (err) {
    throw new UsageError(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The flags of `audit verify` that decide what the log is checked against (`prove` and `checkpoint` take some). */
interface VerifyFlags {
  readonly publicKey?: string;
  readonly trustedCheckpoint?: string;
  readonly origin?: string;
  readonly maxGapMs?: number;
  readonly strict?: boolean;
  readonly maxCheckpointAge?: number;
}

async function loadReport(
  logPath: string,
  opts: VerifyFlags,
  fetched?: (bytes: Buffer) => string | undefined,
): Promise<VerifyReport> {
  let bytes: Buffer;
  try {
    bytes = await readFile(logPath);
  } catch (err) {
    throw new UsageError(`cannot read log ${logPath}: ${(err as Error).message}`, { cause: err });
  }
  const verifiers = await loadVerifiers(opts.publicKey);
  const trusted =
    opts.trustedCheckpoint === undefined
      ? fetched?.(bytes)
      : await readText(opts.trustedCheckpoint, 'trusted checkpoint');
  return verifyLog(bytes, {
    ...(verifiers === undefined ? {} : { verifiers }),
    ...(trusted === undefined ? {} : { trustedCheckpoint: trusted }),
    ...(opts.origin === undefined ? {} : { origin: opts.origin }),
    ...(opts.maxGapMs === undefined ? {} : { maxGapMs: opts.maxGapMs }),
    ...(opts.maxCheckpointAge === undefined ? {} : { maxCheckpointAgeMs: opts.maxCheckpointAge }),
    strict: opts.strict === true,
  });
}

/** The origin a log's header names (undefined when there is no readable header). */
function headerOrigin(bytes: Buffer): string | undefined {
  const end = bytes.indexOf(10);
  try {
    const header = JSON.parse(bytes.toString('utf8', 0, end < 0 ? bytes.length : end)) as {
      origin?: unknown;
    };
    return typeof header.origin === 'string' ? header.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The checkpoints published in ConfigMap strongroom-audit-checkpoints (data: writer → signed note), read as the user
 * through their kubeconfig; `-n` is the operator's namespace.
 */
async function fetchPublished(flags: ClusterFlags): Promise<{ where: string; data: Record<string, string> }> {
  let kc;
  try {
    kc = loadKubeConfig(flags);
  } catch (err) {
    throw new CliError(EXIT.usage, `cannot load the kubeconfig: ${(err as Error).message}`, { cause: err });
  }
  const namespace = flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const where = `ConfigMap ${namespace}/${AUDIT_CHECKPOINTS_CONFIGMAP}`;
  try {
    const cm = await kc
      .makeApiClient(CoreV1Api)
      .readNamespacedConfigMap({ namespace, name: AUDIT_CHECKPOINTS_CONFIGMAP });
    return { where, data: cm.data ?? {} };
  } catch (error) {
    throw explainApiError(error, `reading ${where} (-n is the operator's namespace)`);
  }
}

/** The JSON summary of one log's report. */
function summary(report: VerifyReport): Record<string, unknown> {
  return {
    ok: report.ok,
    origin: report.origin,
    entries: report.entries,
    checkpoints: report.checkpoints,
    latest:
      report.latest === undefined
        ? null
        : { size: report.latest.size, rootHash: report.latest.rootHash.toString('base64') },
    findings: report.findings,
  };
}

function withoutPath(s: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s).filter(([key]) => key !== 'path'));
}

/** Origins claimed by more than one log: every replica has its own origin, so that is a fork or a copy. */
function duplicateOrigins(reports: readonly { report: VerifyReport }[]): string[] {
  const counts = new Map<string, number>();
  for (const { report } of reports)
    if (report.origin !== undefined) counts.set(report.origin, (counts.get(report.origin) ?? 0) + 1);
  return [...counts].filter(([, n]) => n > 1).map(([origin]) => origin);
}

/**
 * The log files the arguments stand for: a file as given; a directory, the `*.log` files in it and in its
 * subdirectories (one level: a directory of per-replica directories), sorted. A directory with none is a usage error.
 */
async function logFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
    } catch (err) {
      throw new UsageError(`cannot read log ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (!info.isDirectory()) {
      files.push(path);
      continue;
    }
    const found: string[] = [];
    const scan = async (dir: string, depth: number): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        throw new UsageError(`cannot read directory ${dir}: ${(err as Error).message}`, { cause: err });
      }
      for (const entry of entries) {
        const child = join(dir, entry.name);
        if (entry.isFile() && entry.name.endsWith('.log')) found.push(child);
        else if (entry.isDirectory() && depth < 1) await scan(child, depth + 1);
      }
    };
    await scan(path, 0);
    if (found.length === 0) throw new UsageError(`no *.log file in ${path} or its subdirectories`);
    files.push(...found.sort());
  }
  return [...new Set(files)];
}

/** Runs an action, turning UsageError (and other failures) into exit code 2 with a message. */
function guarded<A extends unknown[]>(
  io: CliIo,
  action: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      io.err(`strongroom: ${(err as Error).message}\n`);
      io.setExitCode(err instanceof CliError ? err.exitCode : EXIT.usage);
    }
  };
}

export function auditCommand(io: CliIo): Command {
  // Set before the subcommands are defined, so that they inherit it: usage errors throw instead of exiting.
  const audit = new Command('audit')
    .addHelpText('after', '\nExample:\n  strongroom audit verify audit/ --public-key audit.vkey\n')
    .description('tamper-evident audit log: verify, prove, tail')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  audit
    .command('verify')
    .addHelpText(
      'after',
      '\nExample:\n  strongroom audit verify audit/ --public-key audit.vkey --trusted-checkpoint last.checkpoint\n',
    )
    .description(
      'verify logs offline: signatures, tree vs every checkpoint, consistency, sequence, time, gaps. Several logs ' +
        '(one per operator replica) are each verified independently; a directory stands for the *.log files in ' +
        'it and in its subdirectories',
    )
    .argument('<logs...>', 'log files, or directories of them (e.g. one per replica)')
    .option('--public-key <file>', 'trusted verifier key(s), one `name+hash+key` per line')
    .option(
      '--trusted-checkpoint <file>',
      'a signed checkpoint the log must extend (detects rollback and forks); one log only',
    )
    .option(
      '--fetch-checkpoint',
      "use as the trusted checkpoint of each log the one its writer published in ConfigMap strongroom-audit-checkpoints (read with your kubeconfig; -n is the operator's namespace)",
    )
    .option(
      '--max-checkpoint-age <duration>',
      'warn stale-checkpoint (an error with --strict) when the newest signed checkpoint covers no entry younger than this (e.g. 10m)',
      durationMs,
    )
    .option('--origin <origin>', 'the origin the log must have; one log only')
    .option(
      '--max-gap-ms <ms>',
      'largest silence allowed between entries (default: 2 × heartbeat interval)',
      nonNegativeInt,
    )
    .option('--strict', 'treat warnings (unsigned tail, torn tail, restarts, a stale checkpoint) as failures')
    .option('--json', 'print the report as JSON')
    .action(
      guarded(
        io,
        async (
          paths: string[],
          opts: VerifyFlags & { json?: boolean; fetchCheckpoint?: boolean },
          command: Command,
        ) => {
          const logs = await logFiles(paths);
          if (logs.length > 1 && (opts.origin !== undefined || opts.trustedCheckpoint !== undefined))
            throw new UsageError(
              `--origin and --trusted-checkpoint name one log, and ${logs.length} were given: verify it alone`,
            );
          if (opts.fetchCheckpoint === true && opts.trustedCheckpoint !== undefined)
            throw new UsageError(
              '--fetch-checkpoint and --trusted-checkpoint both name the trusted checkpoint: give one',
            );
          const published =
            opts.fetchCheckpoint === true
              ? await fetchPublished(command.optsWithGlobals<ClusterFlags>())
              : undefined;
          /** Logs whose writer published nothing: with --fetch-checkpoint they fail (nothing to check them against). */
          const unpublished = new Map<string, string>();
          const reports: { path: string; report: VerifyReport }[] = [];
          for (const path of logs) {
            const fetched =
              published === undefined
                ? undefined
                : (bytes: Buffer): string | undefined => {
                    const origin = opts.origin ?? headerOrigin(bytes);
                    const writer = origin === undefined ? undefined : writerOf(origin);
                    const note = writer === undefined ? undefined : published.data[writer];
                    if (note === undefined)
                      unpublished.set(
                        path,
                        writer === undefined
                          ? `the log's origin ${origin ?? '(none)'} names no writer: no published checkpoint to check it against`
                          : `no checkpoint of writer ${writer} in ${published.where}: nothing to check the log against`,
                      );
                    return note;
                  };
            const report = await loadReport(path, opts, fetched);
            const missing = unpublished.get(path);
            reports.push({
              path,
              report:
                missing === undefined
                  ? report
                  : {
                      ...report,
                      ok: false,
                      findings: [
                        ...report.findings,
                        { kind: 'no-trusted-checkpoint', severity: 'error', message: missing },
                      ],
                    },
            });
          }
          const single = paths.length === 1 && logs.length === 1 && logs[0] === paths[0];
          const duplicates = duplicateOrigins(reports);
          const ok = reports.every((r) => r.report.ok) && duplicates.length === 0;
          if (opts.json === true) {
            const summaries = reports.map(({ path, report }) => ({ path, ...summary(report) }));
            const [only] = summaries;
            io.out(
              JSON.stringify(
                single && only !== undefined
                  ? withoutPath(only)
                  : { ok, logs: summaries, duplicateOrigins: duplicates },
                null,
                2,
              ) + '\n',
            );
          } else {
            for (const { path, report } of reports) {
              const findings = formatFindings(report);
              const prefix = single ? '' : `${path}: `;
              if (findings.length > 0) (report.ok ? io.out : io.err)(findings + '\n');
              const latest =
                report.latest === undefined
                  ? 'none'
                  : `size ${report.latest.size}, root ${report.latest.rootHash.toString('base64')}`;
              io.out(
                `${prefix}${report.ok ? 'OK' : 'FAILED'}: ${report.entries} entries, ${report.checkpoints} signed checkpoints, latest ${latest} (origin ${report.origin ?? 'unknown'})\n`,
              );
            }
            for (const origin of duplicates)
              io.err(`FAILED: more than one log claims origin ${origin}: each replica writes its own\n`);
            if (!single)
              io.out(
                `${ok ? 'OK' : 'FAILED'}: ${reports.filter((r) => r.report.ok).length} of ${reports.length} logs verified\n`,
              );
          }
          io.setExitCode(ok ? EXIT.ok : EXIT.failed);
        },
      ),
    );

  audit
    .command('prove')
    .addHelpText(
      'after',
      '\nExample:\n  strongroom audit prove audit/strongroom-0.log --entry 42 --public-key audit.vkey\n',
    )
    .description('print the inclusion proof of an entry against the latest signed checkpoint')
    .argument('<log>', 'the log file')
    .requiredOption('--entry <n>', 'the entry (seq)', nonNegativeInt)
    .option('--public-key <file>', 'trusted verifier key(s)')
    .action(
      guarded(io, async (log: string, opts: { entry: number; publicKey?: string }) => {
        const report = await loadReport(log, opts);
        const latest = report.latest;
        if (!report.ok || latest === undefined) {
          io.err(`${formatFindings(report)}\nstrongroom: the log does not verify; no proof is printed\n`);
          io.setExitCode(EXIT.failed);
          return;
        }
        if (opts.entry >= latest.size) {
          io.err(
            `strongroom: entry ${opts.entry} is not covered by the latest signed checkpoint (size ${latest.size})\n`,
          );
          io.setExitCode(EXIT.failed);
          return;
        }
        const leaf = report.tree.leaf(opts.entry);
        const proof = report.tree.inclusionProof(opts.entry, latest.size);
        if (!verifyInclusion(opts.entry, latest.size, leaf, proof, latest.rootHash)) {
          throw new Error('internal error: the proof does not verify');
        }
        io.out(
          JSON.stringify(
            {
              origin: latest.origin,
              entry: opts.entry,
              treeSize: latest.size,
              leafHash: leaf.toString('hex'),
              inclusionProof: proof.map((p) => p.toString('hex')),
              rootHash: latest.rootHash.toString('hex'),
              checkpoint: latest.note,
            },
            null,
            2,
          ) + '\n',
        );
        io.setExitCode(EXIT.ok);
      }),
    );

  audit
    .command('checkpoint')
    .addHelpText(
      'after',
      '\nExample:\n  strongroom audit checkpoint audit/strongroom-0.log --public-key audit.vkey > last.checkpoint\n',
    )
    .description(
      'print the latest signed checkpoint of a verified log (save it to pass as --trusted-checkpoint later)',
    )
    .argument('<log>', 'the log file')
    .option('--public-key <file>', 'trusted verifier key(s)')
    .action(
      guarded(io, async (log: string, opts: { publicKey?: string }) => {
        const report = await loadReport(log, opts);
        if (!report.ok || report.latest === undefined) {
          io.err(`${formatFindings(report)}\nstrongroom: the log does not verify\n`);
          io.setExitCode(EXIT.failed);
          return;
        }
        io.out(report.latest.note);
        io.setExitCode(EXIT.ok);
      }),
    );

  audit
    .command('tail')
    .addHelpText('after', '\nExample:\n  strongroom audit tail audit/strongroom-0.log --from 100\n')
    .description('print entries (one JSON line each) as they are written')
    .argument('<log>', 'the log file')
    .option('--from <seq>', 'start at this entry', nonNegativeInt)
    .option('--no-follow', 'stop at the end of the file')
    .option('--checkpoints', 'print checkpoint records too')
    .action(
      guarded(io, async (log: string, opts: { from?: number; follow: boolean; checkpoints?: boolean }) => {
        const controller = new AbortController();
        const stop = (): void => {
          controller.abort();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          for await (const record of tailLog(log, {
            follow: opts.follow,
            fromSeq: opts.from ?? 0,
            signal: controller.signal,
          })) {
            if (record.kind === 'entry' || opts.checkpoints === true) io.out(record.line + '\n');
          }
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
        io.setExitCode(EXIT.ok);
      }),
    );

  audit
    .command('keygen')
    .addHelpText('after', '\nExample:\n  strongroom audit keygen --name strongroom.example/audit\n')
    .description(
      'generate an Ed25519 checkpoint key pair for an origin (prints the signer and verifier keys)',
    )
    .requiredOption('--name <origin>', 'the key name, conventionally the log origin')
    .action(
      guarded(io, (opts: { name: string }) => {
        const keys = generateNoteKey(opts.name);
        io.out(`${JSON.stringify(keys, null, 2)}\n`);
        io.setExitCode(EXIT.ok);
        return Promise.resolve();
      }),
    );

  return audit;
}
