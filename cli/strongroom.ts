/**
 * The `strongroom` command (also the kubectl plugin `kubectl strongroom`): publish and read encrypted artifacts,
 * request and review grants, gate CI/CD, check an install, verify the audit log. docs/cli.md documents every command;
 * exit codes are in cli/io.ts. Run from a checkout as `node cli/strongroom.ts <command>`; installed with npm as
 * `strongroom` and `kubectl-strongroom`.
 */
import { Command } from 'commander';
import { auditCommand } from './audit.ts';
import { addClusterFlags } from './cluster.ts';
import { cryptCommands } from './crypt.ts';
import { describeCommand } from './describe.ts';
import { doctorCommand } from './doctor.ts';
import { getCommand } from './get.ts';
import { grantCommands } from './grants.ts';
import { reviewCommands } from './grant-review.ts';
import { publishCommand } from './publish.ts';
import { EXIT, type CliIo } from './io.ts';
import { verifyCommand } from './verify.ts';

/** The program; each command module contributes its commands. */
export function program(io: CliIo, name = 'strongroom'): Command {
  const strongroom = addClusterFlags(
    new Command(name)
      .description('Strongroom: encrypted ML artifacts, released only to authorized pods')
      .exitOverride()
      .configureOutput({ writeOut: io.out, writeErr: io.err })
      .showSuggestionAfterError(),
  );
  const commands: Command[] = [
    publishCommand(io),
    ...reviewCommands(io),
    auditCommand(io),
    getCommand(io),
    describeCommand(io),
    ...grantCommands(io),
    ...cryptCommands(io),
    verifyCommand(io),
    doctorCommand(io),
  ];
  for (const command of commands) strongroom.addCommand(command);
  configureTree(strongroom, io);
  strongroom.addHelpText(
    'after',
    `
Examples:
  strongroom publish resnet50 ./model --version v2 -n ml-dev
  strongroom get artifacts -A
  strongroom doctor

Exit codes: 0 ok, 1 a check failed, 2 bad usage, 3 refused, 4 not found, 5 unavailable (docs/cli.md).
`,
  );
  return strongroom;
}

/** Every command, however it was built: usage errors throw (main turns them into exit 2), output goes to `io`, and
 * `--help` lists the global flags too. */
function configureTree(command: Command, io: CliIo): void {
  command
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .configureHelp({ showGlobalOptions: true });
  for (const sub of command.commands) configureTree(sub, io);
}

/** Runs the program on `argv` (as process.argv: node, script, args...). */
export async function main(io: CliIo, argv: readonly string[], name?: string): Promise<void> {
  try {
    await program(io, name).parseAsync([...argv]);
  } catch (err) {
    // exitOverride: commander throws for --help and --version (exit 0) and for usage errors, after printing.
    const code = (err as { exitCode?: unknown }).exitCode;
    io.setExitCode(typeof code === 'number' && code !== 0 ? EXIT.usage : EXIT.ok);
  }
}

/**
 * Runs the program as this process: its streams, its argv, its exit code. The name it was invoked as decides the
 * usage line: `kubectl-strongroom` (npm's second bin name, kubectl's plugin lookup, or the checkout's plugin script,
 * which says so in STRONGROOM_INVOKED_AS) prints `kubectl strongroom`.
 */
export async function runAsProcess(): Promise<void> {
  // `strongroom get grants -A | head`: a closed pipe ends the output quietly, as it does for kubectl.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  const invokedAs =
    /kubectl-strongroom(\.m?js)?$/.test(process.argv[1] ?? '') ||
    process.env['STRONGROOM_INVOKED_AS'] === 'kubectl-strongroom'
      ? 'kubectl strongroom'
      : 'strongroom';
  await main(
    {
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
      setExitCode: (code) => {
        process.exitCode = code;
      },
      interactive: process.stderr.isTTY,
    },
    process.argv,
    invokedAs,
  );
}

if (import.meta.main) await runAsProcess();
