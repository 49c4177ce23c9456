import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Ends every run with one plain line, "N passed, N failed, N skipped" (and ", N errors" when the run had errors
 * outside any test, such as a test worker that died), that any CI log reader understands, preceded
 * by any report a memory sentinel left (test/harness/memory-sentinel.ts), so that it is in the last lines of the log.
 */
export default class SummaryLineReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[], unhandledErrors: readonly SerializedError[]): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      const tests = [...module.children.allTests()];
      for (const test of tests) {
        const state = test.result().state;
        if (state === 'passed') counts.passed++;
        else if (state === 'failed') counts.failed++;
        else counts.skipped++;
      }
      // A file that failed to load or in a hook (beforeAll, afterAll) is a failure even when no test of it failed.
      if (module.state() === 'failed' && !tests.some((test) => test.result().state === 'failed'))
        counts.failed++;
    }
    process.stdout.write(memoryReports());
    const errors = unhandledErrors.length === 0 ? '' : `, ${unhandledErrors.length} errors`;
    process.stdout.write(
      `\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped${errors}\n`,
    );
  }
}

/** The sentinels' reports of this run, and the run's report directory removed. */
function memoryReports(): string {
  const dir = process.env.STRONGROOM_MEMORY_REPORT_DIR;
  if (dir === undefined) return '';
  let text = '';
  try {
    for (const name of readdirSync(dir).sort()) text += `\n${readFileSync(join(dir, name), 'utf8')}`;
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // No directory: nothing to report.
  }
  return text;
}
