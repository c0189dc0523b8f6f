/**
 * Config file -> ConfigResult: read, parse JSON, validate. Relative paths in the file
 * resolve against the file's own folder, whatever the working directory is.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ConfigProblem, ConfigResult } from './types.ts';
import { validateConfig } from './validate.ts';

export async function loadConfigFile(file: string): Promise<ConfigResult> {
  return (await readConfigFile(file)).result;
}

/** A config file read and validated, with what it held before validation (for `check`, which looks at the files it names even when it is invalid). */
export interface ReadConfig {
  readonly result: ConfigResult;
  /** the parsed JSON; undefined when the file could not be read or parsed */
  readonly raw: unknown;
  /** the folder relative paths in the file resolve against */
  readonly baseDir: string;
}

export async function readConfigFile(file: string): Promise<ReadConfig> {
  const source = resolve(file);
  const baseDir = dirname(source);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (err) {
    return { result: configProblem(`cannot read ${source}: ${readFailureReason(err)}`), raw: undefined, baseDir };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(stripByteOrderMark(text));
  } catch (err) {
    // V8's message carries the position: `... in JSON at position 11 (line 3 column 1)`.
    return {
      result: configProblem(`invalid JSON: ${err instanceof Error ? err.message : String(err)}`),
      raw: undefined,
      baseDir,
    };
  }
  return { result: validateConfig(raw, { baseDir, source }), raw, baseDir };
}

const READ_FAILURES: Readonly<Record<string, string>> = Object.freeze({
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
});

function readFailureReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== undefined && READ_FAILURES[code] !== undefined) return READ_FAILURES[code];
  return err instanceof Error ? err.message : String(err);
}

/** Editors on some systems save UTF-8 with a BOM, which JSON.parse rejects. */
function stripByteOrderMark(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function configProblem(message: string): ConfigResult {
  const problem: ConfigProblem = Object.freeze({ path: 'config', message });
  return Object.freeze({ ok: false, problems: Object.freeze([problem]) });
}
