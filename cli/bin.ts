/**
 * The entry point of the bundled command (cli/build.ts): runs the program unconditionally. In the bundle every
 * module shares one `import.meta`, so the bundle defines `import.meta.main` as false (no module's "run when main"
 * block fires, cli/strongroom.ts's included) and this file runs main instead. The name it was invoked as decides the
 * usage line: `kubectl-strongroom` (npm's second bin name, and kubectl's plugin lookup) prints `kubectl strongroom`.
 * Also the entry of the single executable (`node cli/build.ts --sea`), which is CommonJS: no top-level await here.
 */
import { runAsProcess } from './strongroom.ts';

void runAsProcess();
