/**
 * The files a config names, for `tollgate check`. A config with problems has no typed form,
 * yet the operator fixing it wants to hear about the certificate that is missing too, in the
 * same list: so the raw JSON's file paths are looked at as far as they can be on their own
 * (the identity loaded whole when its three files are named, the key ring, the audit key,
 * the admin token), with the same messages a valid config gets.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadIdentity } from '../certs/identityBundle.ts';
import { loadKeyFile } from '../core/keyFile.ts';
import { loadKeyRing } from '../integrity/keyRing.ts';

type Obj = Readonly<Record<string, unknown>>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `raw.section.key` as an absolute path, when it is a non-empty string. */
function pathAt(raw: Obj, section: string, key: string, baseDir: string): string | null {
  const s = raw[section];
  const v = isObject(s) ? s[key] : undefined;
  return typeof v === 'string' && v !== '' ? resolve(baseDir, v) : null;
}

/** Problems with the files a config that did not validate names, each as `path …` like the loaders say it. */
export async function namedFileProblems(raw: unknown, baseDir: string, now: Date): Promise<string[]> {
  if (!isObject(raw)) return [];
  const at = (section: string, key: string): string | null => pathAt(raw, section, key, baseDir);
  const problems: string[] = [];

  const [certFile, keyFile, caFile, crlFile] = [
    at('identity', 'certFile'),
    at('identity', 'keyFile'),
    at('identity', 'caFile'),
    at('identity', 'crlFile'),
  ];
  if (certFile !== null && keyFile !== null && caFile !== null) {
    const crlStale =
      isObject(raw.identity) && (raw.identity.crlStale === 'refuse' || raw.identity.crlStale === 'warn')
        ? raw.identity.crlStale
        : undefined;
    const identity = await loadIdentity(
      { certFile, keyFile, caFile, crlFile, ...(crlStale === undefined ? {} : { crlStale }) },
      now,
    );
    if (!identity.ok) problems.push(...identity.problems.map((p) => `identity.${p}`));
  } else {
    // without all three the identity cannot be judged whole: say which named files cannot be read
    const named = Object.entries({ certFile, keyFile, caFile, crlFile }).filter(
      (e): e is [string, string] => e[1] !== null,
    );
    for (const [key, file] of named) {
      const problem = await unreadable(file);
      if (problem !== null) problems.push(`identity.${key} ${file}: ${problem}`);
    }
  }

  const keysDir = at('keys', 'dir');
  if (keysDir !== null) {
    const ring = await loadKeyRing(keysDir);
    if (!ring.ok) problems.push(...ring.problems.map((p) => `keys.dir: ${p}`));
  }
  const auditKey = at('audit', 'keyFile');
  if (auditKey !== null) {
    const key = await loadKeyFile(auditKey);
    if (!key.ok) problems.push(`audit.keyFile: ${key.problem}`);
  }
  const token = await tokenFileProblem(at('admin', 'tokenFile'));
  if (token !== null) problems.push(token);
  return problems;
}

/** The admin token file cannot be read or holds no token: what start would fail on. */
export async function tokenFileProblem(file: string | null): Promise<string | null> {
  if (file === null) return null;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return `admin.tokenFile: ${file}: ${errorCode(err)}`;
  }
  return text.trim() === '' ? `admin.tokenFile: ${file}: holds no token` : null;
}

async function unreadable(file: string): Promise<string | null> {
  try {
    await readFile(file);
    return null;
  } catch (err) {
    return errorCode(err);
  }
}

/** the errno code (the CLI adds its sentence when it prints the problem), or the message */
function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? (err as Error).message;
}
