import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';
import SummaryLineReporter from './test/summary-reporter.ts';

// Where test workers that outgrow their memory limit leave a report (test/harness/memory-sentinel.ts); one
// directory per run, inherited by every worker, printed at the end by SummaryLineReporter.
process.env.STRONGROOM_MEMORY_REPORT_DIR ??= mkdtempSync(join(tmpdir(), 'strongroom-memory-'));
const setupFiles = ['test/harness/memory-sentinel.ts'];

export default defineConfig({
  test: {
    reporters: ['default', new SummaryLineReporter()],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{core,operator,cli,sidecar,proto,test,bench}/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', 'node_modules/**'],
          environment: 'node',
          setupFiles,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['{core,operator,cli,sidecar,proto,test}/**/*.int.test.ts'],
          globalSetup: ['test/cluster/global-setup.ts'],
          setupFiles,
          // One real cluster is shared by every file; files run one after another so that they never race
          // for the node, and each test gets generous time because real pods take seconds to start.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
