/**
 * Hot reload of the webhook's serving certificate. The certificate's and the key's directories
 * are watched (a Kubernetes Secret volume swaps its `..data` symlink, so a watch on the files
 * would follow the old target), changes are debounced, and a slow poll catches anything a watch
 * misses. A reload reads both files, checks them, and hands them to `apply` (which swaps the
 * server's SecureContext for new connections); on any problem the current certificate stays.
 */
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { debounce } from '../core/debounce.ts';
import { watchDir, type DirWatch } from '../core/dirWatch.ts';
import { loadServingCert, type ServingCert, type ServingCertFiles } from './servingCert.ts';

export interface CertReloadOptions {
  readonly files: ServingCertFiles;
  readonly initial: ServingCert;
  /** install a checked certificate; throws when the TLS stack refuses it */
  readonly apply: (cert: ServingCert) => void;
  readonly log: Logger;
  readonly now: () => Date;
  readonly debounceMs?: number; // default 200
  readonly pollMs?: number; // default 60 s; 0 turns polling off
}

export type ReloadResult =
  { readonly ok: true; readonly changed: boolean } | { readonly ok: false; readonly problems: readonly string[] };

export interface CertReloader {
  current(): ServingCert;
  reload(): Promise<ReloadResult>;
  close(): void;
}

const DEFAULT_DEBOUNCE_MS = 200;
const DEFAULT_POLL_MS = 60_000;

export function watchServingCert(options: CertReloadOptions): CertReloader {
  const { files, apply, log, now } = options;
  let cert = options.initial;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  const attempt = async (): Promise<ReloadResult> => {
    if (closed) return { ok: false, problems: ['the certificate watcher is closed'] };
    await Promise.all(watches.map((w) => w.refresh()));
    const loaded = await loadServingCert(files, now());
    if (closed) return { ok: false, problems: ['the certificate watcher is closed'] };
    if (!loaded.ok) {
      log.error({ problems: loaded.problems }, 'webhook certificate reload failed; keeping the current certificate');
      return { ok: false, problems: loaded.problems };
    }
    if (loaded.cert.certPem.equals(cert.certPem) && loaded.cert.keyPem.equals(cert.keyPem))
      return { ok: true, changed: false };
    try {
      apply(loaded.cert);
    } catch (err) {
      const problem = `the TLS stack refused the new certificate: ${(err as Error).message}`;
      log.error({ problems: [problem] }, 'webhook certificate reload failed; keeping the current certificate');
      return { ok: false, problems: [problem] };
    }
    cert = loaded.cert;
    for (const warning of loaded.warnings) log.warn(warning);
    log.info({ serial: cert.leaf.serialNumber, notAfter: cert.leaf.validTo }, 'webhook certificate reloaded');
    return { ok: true, changed: true };
  };

  /** one reload at a time, in order, so an older read never replaces a newer one */
  const reload = (): Promise<ReloadResult> => {
    const run = queue.then(attempt, attempt).catch((err: unknown): ReloadResult => {
      log.error(
        { err: (err as Error).message },
        'webhook certificate reload failed unexpectedly; keeping the current certificate',
      );
      return { ok: false, problems: [(err as Error).message] };
    });
    queue = run;
    return run;
  };

  const debounced = debounce(options.debounceMs ?? DEFAULT_DEBOUNCE_MS, () => void reload());
  const dirs = [...new Set([dirname(files.certFile), dirname(files.keyFile)])];
  const watches: DirWatch[] = dirs.map((dir) =>
    watchDir({
      dir,
      log,
      what: 'certificate directory',
      keeping: 'the current certificate',
      onChange: () => debounced.trigger(),
    }),
  );
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  const poll = pollMs > 0 ? setInterval(() => void reload(), pollMs) : null;
  poll?.unref();

  return {
    current: () => cert,
    reload,
    close() {
      closed = true;
      debounced.cancel();
      if (poll !== null) clearInterval(poll);
      for (const w of watches) w.close();
    },
  };
}
