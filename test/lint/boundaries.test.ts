/**
 * The import boundaries of eslint.config.js bite: the repository's own ESLint configuration, run through ESLint's
 * Node API on small snippets placed (by name only) in each folder, reports a violating import and passes an allowed
 * one. Only the two boundary rules run, without type information, so the snippets need not exist on disk.
 */
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({
  cwd: join(import.meta.dirname, '..', '..'),
  overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
  ruleFilter: ({ ruleId }) => ruleId === 'no-restricted-imports' || ruleId === 'no-restricted-syntax',
});

/** The boundary messages ESLint reports for `code` as if it were the file `filePath`. */
async function violations(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  if (result === undefined) throw new Error(`ESLint returned no result for ${filePath}`);
  const fatal = result.messages.filter((m) => m.fatal === true);
  if (fatal.length > 0) throw new Error(`ESLint could not parse ${filePath}: ${fatal[0]?.message ?? ''}`);
  return result.messages.map((m) => `${m.ruleId ?? ''}: ${m.message}`);
}

const refused: [file: string, code: string, message: RegExp][] = [
  ['core/kms/x.ts', "import { a } from '../../operator/pki/certificates.ts';", /core\/ imports only core\//],
  ['core/x.ts', "import { a } from '../operator/config.ts';", /core\/ imports only core\//],
  ['core/injection/testing/x.ts', "import { a } from '../../../sidecar/identity.ts';", /core\/ imports only/],
  ['core/kms/x.ts', "import type { A } from '../../proto/keybroker.ts';", /core\/ imports only core\//],
  ['core/kms/x.ts', "export * from '../../sidecar/identity.ts';", /core\/ imports only core\//],
  ['core/kms/x.ts', "export const m = import('../../operator/operator.ts');", /core\/ imports only core\//],
  ['core/kms/x.ts', "import { a } from '../../test/hsm/softhsm.ts';", /core\/ imports only core\//],
  ['sidecar/x.ts', "import { a } from '../operator/pki/certificates.ts';", /sidecar\/ imports only core\//],
  ['sidecar/x.ts', "export const m = import('../operator/operator.ts');", /sidecar\/ imports only core\//],
  ['sidecar/deep/x.ts', "import { a } from '../../test/harness/stack.ts';", /sidecar\/ imports only core\//],
  [
    'operator/broker/x.ts',
    "import { a } from '../../test/harness/workload.ts';",
    /operator\/ never imports test\//,
  ],
  ['operator/x.ts', "import { a } from '../bench/report.ts';", /operator\/ never imports test\/ or bench\//],
  [
    'operator/kube/x.ts',
    "export const m = import('../../test/cluster/pki.ts');",
    /operator\/ never imports test\//,
  ],
  ['cli/x.ts', "import { a } from '../test/cluster/pki.ts';", /cli\/ imports only core\//],
  ['cli/x.ts', "import { a } from '../operator/pki/certificates.ts';", /cli\/ imports only core\//],
  ['operator/broker/x.ts', "import type { A } from '@grpc/grpc-js/build/src/server-call.js';", /private/],
  ['test/harness/x.ts', "import { a } from '@kubernetes/client-node/dist/gen/index.js';", /private/],
  ['core/x.test.ts', "import { a } from 'winston/lib/winston/logger.js';", /private/],
  ['bench/x.ts', "export const m = import('prom-client/lib/registry.js');", /private/],
  ['sidecar/x.ts', "import { a } from 'some-package/lib';", /private/],
];

const allowed: [file: string, code: string][] = [
  ['core/kms/x.ts', "import { a } from '../envelope/format.ts';\nimport { b } from './provider.ts';"],
  ['core/kms/x.ts', "import { a } from '../../core/api/index.ts';"],
  ['core/injection/testing/x.ts', "import { a } from '../../api/index.ts';"],
  ['core/kms/x.ts', "import { a } from 'node:crypto';\nimport * as grpc from '@grpc/grpc-js';"],
  ['core/kms/x.test.ts', "import { a } from '../../test/hsm/softhsm.ts';"],
  ['core/audit/testdata/x.ts', "import { a } from '../../../test/cluster/pki.ts';"],
  [
    'sidecar/x.ts',
    "import { a } from '../core/logging/index.ts';\nimport { b } from '../proto/keybroker.ts';",
  ],
  ['sidecar/x.ts', "import { a } from './identity.ts';\nexport const m = import('../core/kms/gcp.ts');"],
  ['sidecar/x.test.ts', "import { a } from '../operator/pki/certificates.ts';"],
  [
    'operator/broker/x.ts',
    "import { a } from '../../core/api/index.ts';\nimport { b } from '../../sidecar/x.ts';",
  ],
  ['operator/x.ts', "export const m = import('../core/kms/pkcs11.ts');"],
  ['operator/kube/x.test.ts', "import { a } from '../../test/cluster/pki.ts';"],
  ['test/harness/x.ts', "import { a } from '../../operator/operator.ts';\nimport { b } from 'vitest/node';"],
  ['bench/x.ts', "import { a } from '../test/harness/stack.ts';"],
  ['proto/x.ts', "import { a } from './generated/strongroom/v1/KeyBroker.ts';"],
];

describe('import boundaries', () => {
  it.each(refused)('refuses in %s: %s', async (file, code, message) => {
    const found = await violations(file, code);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(message);
  });

  it.each(allowed)('allows in %s: %s', async (file, code) => {
    expect(await violations(file, code)).toEqual([]);
  });
});
