/**
 * Config file -> ConfigResult: read, parse JSON, validate. Relative paths in the file
 * resolve against the file's own folder, whatever the working directory is.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ConfigProblem, ConfigResult } from './types.ts';
import { validateConfig } from './validate.ts';

export async function loadConfigFile(file: string): Promise<ConfigResult> {
  const source = resolve(file);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (err) {
    return configProblem(`cannot read ${source}: ${readFailureReason(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(stripByteOrderMark(text));
  } catch (err) {
    // V8's message carries the position: `... in JSON at position 11 (line 3 column 1)`.
    return configProblem(`invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return validateConfig(raw, { baseDir: dirname(source), source });
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
