/**
 * The main thread's side of `workers` > 1: starts workers - 1 worker threads (workerMain.ts)
 * once the main thread's listeners are bound (so port 0 is resolved and every thread binds the
 * same ports), hands them what is per instance, and relays what they report.
 *
 * Failure policy: a worker that exits or throws while the instance is not stopping is logged
 * and reported through `onFailure`; the sidecar then drains what is left and the process exits
 * 1 (fail closed) rather than restarting the thread. A restart would hide the fault, and a
 * thread that died inside the shared replay cache's critical section would leave its lock
 * held; a supervisor (kubelet, systemd) restarting the whole process is the safe recovery.
 */
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { GatewayRoutes } from '../proxy/dataPlane.ts';
import type { TlsMaterial } from '../tls/contexts.ts';
import type { KeyRing } from '../integrity/keyRing.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import type { RecentHandshakes, HandshakeRecord } from '../telemetry/recentHandshakes.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import type { SharedReplayHandle } from '../integrity/sharedReplayCache.ts';
import type { MetricsJson } from './aggregateRegistry.ts';
import type { FromWorker, KeyEntries, ToWorker, WorkerInit, WorkerListenerStatus } from './protocol.ts';

export interface WorkerPoolOptions {
  /** threads to start (workers - 1) */
  readonly count: number;
  /** the config with bound ports */
  readonly config: Config;
  readonly material: TlsMaterial;
  readonly keys: KeyRing;
  readonly ticketKeys: Buffer;
  readonly replay: SharedReplayHandle | null;
  readonly log: Logger;
  readonly audit: AuditSink;
  readonly recentHandshakes: RecentHandshakes;
  readonly recentAnomalies: RecentAnomalies;
  /** a worker died while the instance was not stopping */
  readonly onFailure: (problem: string) => void;
  /** the worker script (tests); workerMain.ts by default */
  readonly entry?: URL;
}

export interface WorkerPool {
  readonly size: number;
  setMaterial(material: TlsMaterial): void;
  setKeys(ring: KeyRing): void;
  setTicketKeys(keys: Buffer): void;
  /** a reloaded config: each worker swaps its listeners' live settings and its log level */
  setConfig(config: Config): void;
  /** every worker drains its listeners of this mode; true when none cut anything in flight */
  drain(mode: 'inbound' | 'outbound', deadline: number): Promise<boolean>;
  /** every worker's registry as JSON (a worker that does not answer in time is left out and logged) */
  metrics(): Promise<MetricsJson[]>;
  status(): Promise<WorkerListenerStatus[][]>;
  /** every worker's gateway routes with their endpoints' health as that thread sees it */
  routes(): Promise<GatewayRoutes[][]>;
  /** stop every worker (after drain) and wait until they have exited */
  stop(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 5_000;
/** a worker's recent-handshake entries the main thread still can bump, per worker */
const BUMPABLE = 64;

export function keyEntries(ring: KeyRing): KeyEntries {
  return ring.ids.flatMap((id) => {
    const key = ring.get(id);
    return key === undefined ? [] : [[id, key] as const];
  });
}

interface Thread {
  readonly index: number;
  readonly worker: Worker;
  readonly exited: Promise<void>;
  readonly bumpable: Map<number, HandshakeRecord>;
  /** false once the thread has exited: requests to it are answered with their fallback at once */
  alive: boolean;
}

/** Start the threads; resolves once every one has bound its listeners, rejects (after stopping them all) if one cannot. */
export async function startWorkerPool(opts: WorkerPoolOptions): Promise<WorkerPool> {
  const entry = opts.entry ?? new URL(`./workerMain${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  const log = opts.log.child({ component: 'workers' });
  // workers' log lines are written as they are by the main logger's destination
  const destination = (opts.log as unknown as Record<symbol, { write(line: string): void } | undefined>)[
    pino.symbols.streamSym
  ];
  let stopping = false;
  let nextId = 0;
  /** requests waiting for a reply; one to a thread that exits is answered with its fallback */
  const pending = new Map<
    number,
    { readonly thread: number; readonly resolve: (v: unknown) => void; readonly giveUp: () => void }
  >();
  const threads: Thread[] = [];
  const readiness: Array<Promise<void>> = [];

  for (let index = 1; index <= opts.count; index++) {
    const init: WorkerInit = {
      index,
      config: opts.config,
      material: opts.material,
      keys: keyEntries(opts.keys),
      ticketKeys: opts.ticketKeys,
      replay: opts.replay,
    };
    const worker = new Worker(entry, { workerData: init, name: `tollgate-worker-${index}` });
    const bumpable = new Map<number, HandshakeRecord>();
    let settle: { resolve: () => void; reject: (e: Error) => void } | null = null;
    readiness.push(new Promise<void>((resolve, reject) => (settle = { resolve, reject })));
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready':
          settle?.resolve();
          return;
        case 'log':
          destination?.write(m.line);
          return;
        case 'failed':
          settle?.reject(Object.assign(new Error(m.message), { problems: m.problems }));
          return;
        case 'audit':
          opts.audit.record(m.event, { ...m.fields, worker: index });
          return;
        case 'handshake': {
          bumpable.set(m.seq, opts.recentHandshakes.add(m.record));
          if (bumpable.size > BUMPABLE) bumpable.delete(bumpable.keys().next().value!);
          return;
        }
        case 'handshakeBump': {
          const e = bumpable.get(m.seq);
          if (e !== undefined) opts.recentHandshakes.bump(e, m.at);
          return;
        }
        case 'anomaly':
          opts.recentAnomalies.add(m.record);
          return;
        case 'reply': {
          const p = pending.get(m.id);
          pending.delete(m.id);
          p?.resolve(m.value);
          return;
        }
      }
    });
    worker.on('error', (err) => {
      log.error({ worker: index, err: err.message, stack: err.stack }, 'worker thread failed');
    });
    const thread: { alive: boolean } = { alive: true };
    const exited = new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        thread.alive = false;
        for (const p of [...pending.values()]) if (p.thread === index) p.giveUp();
        settle?.reject(new Error(`worker ${index} exited (code ${code}) before it was ready`));
        if (!stopping) {
          log.error({ worker: index, code }, 'worker thread exited unexpectedly: stopping the instance (fail closed)');
          opts.onFailure(`worker ${index} exited unexpectedly (code ${code})`);
        }
        resolve();
      });
    });
    threads.push(Object.assign(thread, { index, worker, exited, bumpable }));
  }

  function post(t: Thread, m: ToWorker): void {
    try {
      t.worker.postMessage(m);
    } catch (err) {
      log.error({ worker: t.index, type: m.type, err: (err as Error).message }, 'message to worker failed');
    }
  }

  function request<T>(t: Thread, make: (id: number) => ToWorker, timeoutMs: number, fallback: T): Promise<T> {
    if (!t.alive) return Promise.resolve(fallback);
    const id = ++nextId;
    return new Promise<T>((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        log.warn({ worker: t.index, timeoutMs }, 'worker did not answer in time');
        resolve(fallback);
      }, timeoutMs);
      timer.unref();
      pending.set(id, {
        thread: t.index,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        giveUp: () => {
          clearTimeout(timer);
          pending.delete(id);
          resolve(fallback);
        },
      });
      post(t, make(id));
    });
  }

  async function stop(): Promise<void> {
    stopping = true;
    await Promise.all(threads.map((t) => request(t, (id) => ({ type: 'stop', id }), REQUEST_TIMEOUT_MS, false)));
    await Promise.all(
      threads.map(async (t) => {
        await t.worker.terminate();
        await t.exited;
      }),
    );
  }

  try {
    await Promise.all(readiness);
  } catch (err) {
    await stop();
    throw err;
  }
  log.info({ workers: threads.length + 1 }, 'worker threads listening');

  return {
    size: threads.length,
    setMaterial: (material) => threads.forEach((t) => post(t, { type: 'material', material })),
    setKeys: (ring) => {
      const keys = keyEntries(ring);
      threads.forEach((t) => post(t, { type: 'keys', keys }));
    },
    setTicketKeys: (keys) => threads.forEach((t) => post(t, { type: 'ticketKeys', keys })),
    setConfig: (config) => threads.forEach((t) => post(t, { type: 'config', config })),
    async drain(mode, deadline) {
      // a worker gets until the deadline plus a margin to answer
      const wait = Math.max(0, deadline - Date.now()) + REQUEST_TIMEOUT_MS;
      const results = await Promise.all(
        threads.map((t) => request(t, (id) => ({ type: 'drain', id, mode, deadline }), wait, false)),
      );
      return results.every(Boolean);
    },
    metrics: () =>
      Promise.all(
        threads.map((t) => request<MetricsJson>(t, (id) => ({ type: 'metrics', id }), REQUEST_TIMEOUT_MS, [])),
      ),
    status: () =>
      Promise.all(
        threads.map((t) =>
          request<WorkerListenerStatus[]>(t, (id) => ({ type: 'status', id }), REQUEST_TIMEOUT_MS, []),
        ),
      ),
    routes: () =>
      Promise.all(
        threads.map((t) => request<GatewayRoutes[]>(t, (id) => ({ type: 'routes', id }), REQUEST_TIMEOUT_MS, [])),
      ),
    stop,
  };
}
