/**
 * Watch a directory (not the files in it) for changes. This is what Kubernetes Secret and
 * ConfigMap volumes need: they swap a `..data` symlink atomically, and the visible files are
 * symlinks through it, so a watch on a file would follow the old target and go quiet.
 *
 * Every event is passed on as it comes (the caller debounces). The watch is lost when the
 * directory is deleted or replaced; `refresh()` (called before each reload) notices that and
 * watches the directory afresh. Watchers never keep the process alive.
 */
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';

export interface DirWatchLog {
  warn(obj: object, msg: string): void;
}

export interface DirWatchOptions {
  readonly dir: string;
  readonly log: DirWatchLog;
  /** what the directory is, for log lines: "key directory" */
  readonly what: string;
  /** what stays in use while the watch is lost, for log lines: "the current key ring" */
  readonly keeping: string;
  /** called for every change event (and when the watch fails, so the caller re-reads) */
  readonly onChange: () => void;
}

export interface DirWatch {
  /** (re)start the watch when there is none or the directory was replaced */
  refresh(): Promise<void>;
  close(): void;
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'error';
}

export function watchDir(options: DirWatchOptions): DirWatch {
  const { dir, log, what, keeping, onChange } = options;
  let closed = false;
  let watcher: FSWatcher | null = null;
  /** the directory's identity when the watch began: a directory deleted and recreated needs a new watch */
  let watched: { dev: number; ino: number } | null = null;
  /** an event named like the directory itself: it may have been deleted or moved (inotify then goes quiet) */
  let selfEvent = false;

  const cannotWatch = (err: unknown, msg: string): void => {
    log.warn({ dir, code: errCode(err) }, `${msg}; keeping ${keeping} and watching again on the next reload`);
  };

  const stopWatching = (): void => {
    if (watcher !== null) {
      watcher.removeAllListeners();
      watcher.on('error', () => undefined);
      watcher.close();
    }
    watcher = null;
    watched = null;
  };

  const startWatching = (): FSWatcher | null => {
    try {
      const self = basename(dir);
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        if (filename === self) selfEvent = true;
        if (!closed) onChange();
      });
      w.on('error', (err) => {
        if (watcher !== w) return;
        cannotWatch(err, `watching the ${what} failed`);
        stopWatching();
        if (!closed) onChange();
      });
      w.unref();
      watcher = w;
      return w;
    } catch (err) {
      cannotWatch(err, `cannot watch the ${what}`);
      return null;
    }
  };

  // start now (synchronously, so a change right after this returns is seen), then note the
  // directory's identity to notice it being replaced; until that is known, the watch is kept
  const first = startWatching();
  if (first !== null) {
    stat(dir).then(
      (st) => {
        if (watcher === first) watched = { dev: st.dev, ino: st.ino };
      },
      () => undefined,
    );
  }

  return {
    async refresh() {
      if (closed) return;
      let st: Stats;
      try {
        st = await stat(dir);
      } catch (err) {
        if (watcher !== null) cannotWatch(err, `the ${what} is gone`);
        stopWatching();
        return;
      }
      if (closed) return;
      const same = watched === null || (watched.dev === st.dev && watched.ino === st.ino);
      // a directory deleted and made again can reuse the inode number: after a self event, watch afresh
      if (watcher !== null && same && !selfEvent) return;
      selfEvent = false;
      stopWatching();
      if (startWatching() !== null) watched = { dev: st.dev, ino: st.ino };
    },
    close() {
      closed = true;
      stopWatching();
    },
  };
}
