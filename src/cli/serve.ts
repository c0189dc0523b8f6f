import type { Config } from '../config/types.ts';
import { startSidecar, type Sidecar } from '../main.ts';
import { StartupError } from '../core/errors.ts';
import { collectStartupGarbage } from '../core/startupGarbage.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, printProblems, type Output } from './output.ts';

/**
 * Run a sidecar in the foreground until a signal: SIGTERM/SIGINT drain and stop (exit 0 when
 * nothing in flight was cut, 1 otherwise; a second signal, or the drain deadline passing by
 * more than a grace period, forces exit 1); SIGHUP reloads (the config file's live settings,
 * keys, certificates: main.ts reload()), ignored while draining.
 * POST /shutdown on the admin API does what SIGTERM does. With `workers`, a worker thread that
 * dies makes the instance drain what is left and exit 1 (fail closed; the supervisor restarts it).
 * tollgate installs these handlers itself, so it behaves as PID 1 in a container.
 */
export interface ServeOptions {
  /** called once everything listens */
  readonly onStarted?: (s: Sidecar) => void;
  /**
   * A startup problem in the words the operator used: `inbound`/`outbound` name the flag
   * (`--listen`) where a config file names its path (`listeners[0].listen`).
   */
  readonly problemText?: (problem: string) => string;
}

export async function serve(config: Config, o: Output, opts: ServeOptions = {}): Promise<number> {
  let sidecar: Sidecar;
  // POST /shutdown: the same path as SIGTERM (set once the handlers are in place)
  let requestShutdown: () => void = () => undefined;
  let workerFailed: (problem: string) => void = () => undefined;
  try {
    sidecar = await startSidecar(config, {
      requestShutdown: () => requestShutdown(),
      workerFailed: (problem) => workerFailed(problem),
    });
  } catch (err) {
    if (err instanceof StartupError) {
      printProblems(o, `tollgate: ${err.message}`, err.problems.map(opts.problemText ?? ((p) => p)));
      return err.usage ? EXIT_USAGE : EXIT_FAILURE;
    }
    throw err;
  }
  // what starting left behind goes now, not whenever load first makes V8 collect
  collectStartupGarbage();
  opts.onStarted?.(sidecar);
  return new Promise<number>((resolve) => {
    let stopping = false;
    let failed = false;
    const stop = (signal: NodeJS.Signals | 'admin' | 'worker'): void => {
      if (stopping) {
        sidecar.log.error({ signal }, 'second signal while draining: exiting now');
        sidecar.log.flush();
        process.exit(EXIT_FAILURE);
      }
      stopping = true;
      sidecar.log.info({ signal }, 'draining');
      const force = setTimeout(
        () => {
          sidecar.log.error('drain did not finish in time: exiting now');
          sidecar.log.flush();
          process.exit(EXIT_FAILURE);
        },
        (sidecar.config.drainTimeoutSeconds + 5) * 1000,
      );
      force.unref();
      sidecar.shutdown().then(
        (clean) => finish(clean && !failed ? EXIT_OK : EXIT_FAILURE),
        (err: Error) => {
          sidecar.log.error({ err: err.message }, 'shutdown failed');
          finish(EXIT_FAILURE);
        },
      );
    };
    const reload = (): void => {
      if (stopping) {
        sidecar.log.info('SIGHUP ignored while draining');
        return;
      }
      void sidecar.reload('sighup');
    };
    const finish = (code: number): void => {
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGHUP', reload);
      sidecar.log.flush(() => resolve(code));
    };
    requestShutdown = () => stop('admin');
    workerFailed = (problem) => {
      sidecar.log.error({ problem }, 'a worker thread failed: draining and exiting 1');
      failed = true;
      if (!stopping) stop('worker');
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', reload);
  });
}
