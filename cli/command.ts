/**
 * How a command's action runs: failures become a message on stderr and an exit code (cli/io.ts), never a stack
 * trace; a CliError keeps its code, an API failure is explained (cli/cluster.ts), anything else is `unavailable`.
 */
import type { Command } from 'commander';
import { explainApiError, type ClusterFlags } from './cluster.ts';
import { CliError, type CliIo } from './io.ts';

/** Wraps a commander action: the last argument commander passes is the Command itself. */
export function action<A extends unknown[]>(
  io: CliIo,
  run: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      const failure = error instanceof CliError ? error : explainApiError(error, 'failed');
      io.err(`strongroom: ${failure.message}\n`);
      io.setExitCode(failure.exitCode);
    }
  };
}

/** The global cluster flags and the command's own options, merged (the command's win). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the options' shape, as commander's own optsWithGlobals does
export function flagsOf<T extends object>(command: Command): T & ClusterFlags {
  return command.optsWithGlobals<T & ClusterFlags>();
}

/** Appends an example section to a command's `--help`. */
export function example(command: Command, ...lines: string[]): Command {
  return command.addHelpText('after', `\nExample:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}
