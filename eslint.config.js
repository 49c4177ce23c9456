// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'proto/generated/**'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.strictTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/require-await': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // @kubernetes/client-node's models (V1ObjectMeta, V1Secret, ...) are declared as classes but are plain data:
      // the client serializes whatever object it is given and its own docs build them as literals.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  ...importBoundaries(),
);

/**
 * Import boundaries: core/ imports only core/; sidecar/ imports only core/, proto/ and itself;
 * operator/, sidecar/, core/ and cli/ never import test/ or bench/; nothing imports a package's private build
 * output (`<pkg>/build/…`, `<pkg>/dist/…`, `<pkg>/lib/…`). Node builtins and packages are always allowed. Tests
 * (`*.test.ts`) and test data (`testdata/`) are not shipped in the image and may use the test harness and any
 * folder, but not a package's private paths.
 *
 * `no-restricted-imports` sees only the import's text, not the importing file, so a relative path is judged per
 * folder and per depth: from `core/a/b.ts`, `../../` is the repository root. One block per folder and depth lists
 * every pattern that applies to its files (a later block's options replace an earlier block's). Dynamic `import()`,
 * which `no-restricted-imports` does not check, gets the same patterns through `no-restricted-syntax`.
 * test/lint/boundaries.test.ts proves that each boundary bites.
 * @returns {import('eslint').Linter.Config[]}
 */
function importBoundaries() {
  const privatePackagePath = {
    regex: String.raw`^(?:@[^/]+/)?[^./][^/]*/(?:build|dist|lib)(?:/|$)`,
    message: "a package's build/, dist/ or lib/ is private: import its public entry point",
  };
  /**
   * Per folder: the only top-level folders it may import (`only`), or those it must never import (`never`).
   * @type {Record<string, { only: string[] } | { never: string[] }>}
   */
  const folders = {
    core: { only: ['core'] },
    sidecar: { only: ['core', 'proto', 'sidecar'] },
    operator: { never: ['test', 'bench'] },
    cli: { only: ['core', 'proto', 'cli'] },
  };
  /** The depths that get a block (`core/a.ts` is 1, `core/a/b.ts` 2): a file nested deeper goes unchecked. */
  const depths = [1, 2, 3, 4, 5];
  /** @param {{ regex: string, message: string }[]} patterns */
  const rules = (patterns) => ({
    'no-restricted-imports': ['error', { patterns }],
    'no-restricted-syntax': [
      'error',
      // esquery's regex literal cannot hold a `/`, hence \x2F.
      ...patterns.map(({ regex, message }) => ({
        selector: `ImportExpression[source.value=/${regex.replaceAll('/', String.raw`\x2F`)}/]`,
        message,
      })),
    ],
  });
  /** @type {import('eslint').Linter.Config[]} */
  const blocks = [{ files: ['**/*.{ts,js}'], rules: rules([privatePackagePath]) }];
  for (const [folder, allowed] of Object.entries(folders)) {
    for (const depth of depths) {
      const root = String.raw`^(?:\.\./){${depth}}`;
      const boundary =
        'only' in allowed
          ? {
              regex: `${root}(?!(?:${allowed.only.join('|')})/)`,
              message: `${folder}/ imports only ${allowed.only.map((f) => `${f}/`).join(', ')}, Node builtins and packages`,
            }
          : {
              regex: `${root}(?:${allowed.never.join('|')})(?:/|$)`,
              message: `${folder}/ never imports ${allowed.never.map((f) => `${f}/`).join(' or ')}`,
            };
      blocks.push({
        files: [`${folder}/${'*/'.repeat(depth - 1)}*.{ts,js}`],
        ignores: ['**/*.test.ts', '**/testdata/**'],
        rules: rules([privatePackagePath, boundary]),
      });
    }
  }
  return blocks;
}
