/**
 * The `strongroom` command: the `audit` group (`verify`, `prove`, `checkpoint`, `tail`, `keygen`) and the grant review
 * commands `approve` and `deny`. Run as `node operator/cli/strongroom.ts <command>`.
 */
import { Command } from 'commander';
import { auditCommand, EXIT_USAGE, type CliIo } from './audit.ts';
import { reviewCommands } from './grant-review.ts';

export function program(io: CliIo): Command {
  const strongroom = new Command('strongroom')
    .description('Strongroom: encrypted ML artifacts released only to authorized pods')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addCommand(auditCommand(io));
  for (const command of reviewCommands(io)) strongroom.addCommand(command);
  return strongroom;
}

const io: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  setExitCode: (code) => {
    process.exitCode = code;
  },
};

if (import.meta.main) {
  try {
    await program(io).parseAsync(process.argv);
  } catch (err) {
    // exitOverride: commander throws for --help (exit 0) and for usage errors (exit non-zero), after printing.
    const code = (err as { exitCode?: unknown }).exitCode;
    process.exitCode = typeof code === 'number' && code !== 0 ? EXIT_USAGE : 0;
  }
}
