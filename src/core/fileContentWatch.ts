/**
 * Files watched for a change of their bytes: the config file a sidecar started from, the TLS and
 * password files of the shared state store. Their directories are watched, not the files (a
 * Kubernetes ConfigMap or Secret volume swaps a `..data` symlink; see dirWatch.ts); a burst of
 * events is one check, `settleMs` after the last; `onChange` runs when the files' bytes, read
 * together, differ from the last seen. An event for another file of a directory, a write that
 * leaves the bytes as they were, or a file that cannot be read right now (a swap in progress: the
 * next event reads it) is not a change.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { debounce } from './debounce.ts';
import { watchDir, type DirWatch, type DirWatchLog } from './dirWatch.ts';

export interface FileContentWatchOptions {
  readonly files: readonly string[];
  readonly log: DirWatchLog;
  /** for log lines: "config directory" */
  readonly what: string;
  /** for log lines: what stays in use while a watch is lost */
  readonly keeping: string;
  readonly settleMs: number;
  readonly onChange: () => void;
}

export interface FileContentWatch {
  /** the files were read by someone else (a reload): their bytes now are not a change to report */
  sync(): Promise<void>;
  close(): void;
}

export async function watchFileContents(opts: FileContentWatchOptions): Promise<FileContentWatch> {
  let seen = await digestOf(opts.files);
  let closed = false;
  const check = debounce(opts.settleMs, () => {
    for (const w of watches) void w.refresh();
    void digestOf(opts.files).then((digest) => {
      if (closed || digest === null || digest === seen) return;
      seen = digest;
      opts.onChange();
    });
  });
  const watches: DirWatch[] = [...new Set(opts.files.map((f) => dirname(f)))].map((dir) =>
    watchDir({ dir, log: opts.log, what: opts.what, keeping: opts.keeping, onChange: () => check.trigger() }),
  );
  return {
    async sync() {
      seen = (await digestOf(opts.files)) ?? seen;
    },
    close() {
      closed = true;
      check.cancel();
      for (const w of watches) w.close();
    },
  };
}

/** the files' bytes, in order, as one digest; null when one cannot be read */
async function digestOf(files: readonly string[]): Promise<string | null> {
  const h = createHash('sha256');
  try {
    for (const f of files) h.update(await readFile(f)).update('\0');
  } catch {
    return null;
  }
  return h.digest('hex');
}
