/**
 * The entry point of the bundled command (cli/build.ts): runs the program unconditionally. In the bundle every
 * module shares one `import.meta`, so the bundle defines `import.meta.main` as false (no module's "run when main"
 * block fires, cli/strongroom.ts's included) and this file runs main instead. The name it was invoked as decides the
 * usage line: `kubectl-strongroom` (npm's second bin name, and kubectl's plugin lookup) prints `kubectl strongroom`.
 * Also the entry of the single executable (`node cli/build.ts --sea`), which is CommonJS: no top-level await here.
 */
import { main } from './strongroom.ts';

// `strongroom get grants -A | head`: a closed pipe ends the output quietly, as it does for kubectl.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });

// The checkout's kubectl plugin (cli/kubectl-strongroom, a shell script) says so in STRONGROOM_INVOKED_AS.
const invokedAs =
  /kubectl-strongroom(\.m?js)?$/.test(process.argv[1] ?? '') ||
  process.env['STRONGROOM_INVOKED_AS'] === 'kubectl-strongroom'
    ? 'kubectl strongroom'
    : 'strongroom';
void main(
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
