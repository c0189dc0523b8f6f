/**
 * Errno codes in words. `EADDRINUSE` alone sends an operator to a search engine; the CLI
 * prints `EADDRINUSE: the address is already in use by another process`. The code stays in
 * the text (it is what people grep for), the sentence follows it.
 */

/** What a code means for a file or folder. */
const FILE_SENTENCES: Readonly<Record<string, string>> = Object.freeze({
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied (check the owner and mode of the file and of the folders above it)',
  EPERM: 'operation not permitted',
  EEXIST: 'it already exists',
  EISDIR: 'it is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
  ENOTEMPTY: 'the directory is not empty',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  EMFILE: 'this process has too many open files (raise ulimit -n)',
  ENFILE: 'the system has too many open files',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the file name is too long',
  EBUSY: 'the resource is busy',
  EIO: 'an input/output error from the device',
});

/** What a code means for a socket: binding, dialling, resolving. */
const SOCKET_SENTENCES: Readonly<Record<string, string>> = Object.freeze({
  EADDRINUSE: 'the address is already in use by another process',
  EADDRNOTAVAIL: 'no network interface on this machine has that address',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EPERM: 'operation not permitted (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  ECONNREFUSED: 'nothing is listening there (connection refused)',
  ECONNRESET: 'the other side reset the connection',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'no route to that host',
  ENETUNREACH: 'the network is unreachable',
  ENOTFOUND: 'the host name does not resolve (DNS)',
  EAI_AGAIN: 'the DNS lookup failed for now (try again)',
  EAFNOSUPPORT: 'this machine does not support that address family (IPv6 off?)',
});

export type ErrnoContext = 'file' | 'socket';

/** The sentence for `code`, or undefined for a code this table does not know. */
export function errnoSentence(code: string, context: ErrnoContext = 'file'): string | undefined {
  const first = context === 'socket' ? SOCKET_SENTENCES : FILE_SENTENCES;
  const second = context === 'socket' ? FILE_SENTENCES : SOCKET_SENTENCES;
  return first[code] ?? second[code];
}

/** `CODE: sentence` for a known code, the code alone otherwise. */
export function errnoText(code: string, context: ErrnoContext = 'file'): string {
  const sentence = errnoSentence(code, context);
  return sentence === undefined ? code : `${code}: ${sentence}`;
}

/** A foreign error as the CLI shows it: its errno code with the sentence, or its message. */
export function systemErrorText(err: unknown, context: ErrnoContext = 'file'): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && errnoSentence(code, context) !== undefined) return errnoText(code, context);
  return err instanceof Error ? err.message : String(err);
}

/** A code standing as a word and not already explained (not followed by `:`). */
const CODE_IN_TEXT = /\b(E[A-Z0-9_]{2,})\b(?!:)/g;

/** Every known errno code in `text` followed by its sentence; the rest of the text untouched. */
export function explainErrno(text: string, context: ErrnoContext = 'file'): string {
  return text.replace(CODE_IN_TEXT, (code: string) => errnoText(code, context));
}
