// ESLint flat config: typescript-eslint with type information, and a hard rule that workflow code
// stays deterministic (no node builtins, no I/O packages outside `import type`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const ioPackages = ['ssh2', 'pg', 'etcd3', 'undici', 'yaml', 'commander', 'cli-table3'];
const forbiddenInWorkflows = [
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
  ...ioPackages,
  '@temporalio/activity',
  '@temporalio/worker',
  '@temporalio/client',
  '@temporalio/testing',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.pgha/**', 'bin/**', 'test/golden/**', 'test/histories/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: forbiddenInWorkflows.map((name) => ({
            name,
            message: 'workflow code must be deterministic: do I/O in an activity (import type is allowed)',
            allowTypeImports: true,
          })),
          patterns: [
            {
              group: ['**/activities', '**/activities/**'],
              message: 'import activities only as types (proxyActivities)',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  // Boundaries between the top-level modules: the worker does not depend on the clients (the codec and
  // the data converter both use live in converter/), and scripts never depend on the tests.
  {
    files: ['workers/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/clients', '**/clients/**'],
              message:
                'workers/ must not import clients/: put what both need in a shared module (converter/)',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/test', '**/test/**'],
              message: 'scripts/ must not import test/: move what both need into scripts/ or a shared module',
            },
          ],
        },
      ],
    },
  },
  { files: ['**/*.mjs', '**/*.js'], ...tseslint.configs.disableTypeChecked },
);
