/**
 * The config file a sidecar started from, watched: when its bytes change, `onChange` runs (the
 * caller reloads, which validates the whole file and applies it or changes nothing). The
 * directory is watched, not the file, so a ConfigMap volume's atomic symlink swap is seen; an
 * event for another file of the directory, or a write that leaves the bytes as they were, is
 * not a change. Bursts of events (an editor's save, the kubelet's swap) are one change.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { debounce } from '../core/debounce.ts';
import { watchDir, type DirWatchLog } from '../core/dirWatch.ts';

export interface ConfigFileWatch {
  /** a reload (whatever asked for it) read the file: its bytes now are not a change to report */
  sync(): Promise<void>;
  close(): void;
}

/** how long a burst of directory events is let settle before the file is read (a SIGHUP or POST /reload sent right after a write usually syncs first) */
const SETTLE_MS = 500;

export async function watchConfigFile(file: string, log: DirWatchLog, onChange: () => void): Promise<ConfigFileWatch> {
  let seen = await digestOf(file);
  let closed = false;
  const check = debounce(SETTLE_MS, () => {
    void dirWatch.refresh();
    void digestOf(file).then((digest) => {
      if (closed || digest === null || digest === seen) return;
      seen = digest;
      onChange();
    });
  });
  const dirWatch = watchDir({
    dir: dirname(file),
    log,
    what: 'config directory',
    keeping: 'the config in use',
    onChange: () => check.trigger(),
  });
  return {
    async sync() {
      seen = (await digestOf(file)) ?? seen;
    },
    close() {
      closed = true;
      check.cancel();
      dirWatch.close();
    },
  };
}

/** the file's bytes as a digest; null when it cannot be read now (a swap in progress: the next event reads it) */
async function digestOf(file: string): Promise<string | null> {
  try {
    return createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  } catch {
    return null;
  }
}
