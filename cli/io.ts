/**
 * What every `strongroom` command shares: where it writes, the exit codes it ends with, and the error that carries
 * one. Exit codes (docs/cli.md):
 *
 * | code | meaning |
 * | ---- | ------- |
 * | 0 | done; or the check passed |
 * | 1 | a check failed: `verify` found a problem, `doctor` found a failing check, `audit verify` found tampering |
 * | 2 | bad usage: an unknown flag, a missing argument, an unreadable input file |
 * | 3 | refused: the API server's rules (RBAC, admission policies) or Strongroom's own rules said no |
 * | 4 | not found: the named object, version or file does not exist |
 * | 5 | unavailable: the cluster, the storage or the operator could not be reached, or failed |
 */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  refused: 3,
  notFound: 4,
  unavailable: 5,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Where the commands write; tests and the main entry point pass process streams. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly setExitCode: (code: number) => void;
  /** Whether stderr is a terminal (progress bars are drawn only then). Default false. */
  readonly interactive?: boolean;
}

/** A command failed for a reason the user can act on; the message says it, `exitCode` classifies it. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode: ExitCode;
  constructor(exitCode: ExitCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/** Bad usage (exit 2). */
export function usageError(message: string, options?: ErrorOptions): CliError {
  return new CliError(EXIT.usage, message, options);
}
