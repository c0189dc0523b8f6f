// Lint for tollgate: the TypeScript rules most Node projects run, without the ones that only
// restate what `tsc --strict` already checks; formatting is prettier's (eslint-config-prettier
// turns off the rules that would argue with it).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-console': 'error',
      'prefer-const': 'error',
    },
  },
  {
    // plain JavaScript (bin/): TypeScript does not check these names, so say which globals Node gives
    files: ['**/*.js'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
      },
    },
  },
  {
    // the command line, the benchmarks and the tests may print
    files: ['bench/**', 'test/**', 'bin/**'],
    // tests match aligned table output, where the spaces are what is checked
    rules: { 'no-console': 'off', 'no-regex-spaces': 'off' },
  },
);
