/**
 * Drain and stop, in one place. A drain runs once, whoever asks first (shutdown, POST /drain,
 * the API): readiness turns 503, the inbound listeners of every thread stop accepting and
 * finish what is in flight, then the outbound ones (so the app can finish sending through
 * them), until the deadline drainTimeoutSeconds sets; the admin server stays up. Shutdown is
 * that drain, then every started part stopped, newest first, then the audit's `stop` event
 * written and the audit log closed. A start that fails stops what had started the same way,
 * closing its listeners at once (they served nothing yet).
 */
import type { Logger } from 'pino';
import type { Readiness } from './core/readiness.ts';
import type { AuditSink } from './telemetry/audit.ts';

/** Listeners of one or more threads that drain by mode (a data plane, the worker pool). */
export interface Drainable {
  /** true when nothing in flight was cut */
  drain(mode: 'inbound' | 'outbound', deadline: number): Promise<boolean>;
}

export interface DrainStart {
  /** false when a drain was already under way (the call changed nothing) */
  readonly started: boolean;
  /** epoch ms: what is still in flight then is cut */
  readonly deadline: number;
  /** true once drained with nothing in flight cut */
  readonly done: Promise<boolean>;
}

export interface LifecycleDeps {
  readonly readiness: Readiness;
  readonly audit: AuditSink;
  readonly log: Logger;
  /** how long a drain may take, read when it starts (a reload may have changed drainTimeoutSeconds) */
  readonly drainTimeoutMs: () => number;
  /** make the audit's last events durable: the audit log closed (written and fsync'd), or the sink flushed */
  readonly closeAudit: () => Promise<void>;
}

export interface Lifecycle {
  /** these listeners drain with the others from now on */
  drains(part: Drainable): void;
  /** how a started part stops; parts stop newest first, after the drain */
  onStop(stop: () => unknown): void;
  /** start draining (once); later calls return the drain under way */
  drain(trigger: string): DrainStart;
  /** drain, stop every part, write the audit's last event; true when nothing in flight was cut. Repeating it returns the same promise. */
  shutdown(): Promise<boolean>;
  /** the start failed: close the listeners at once, stop every part started, close the audit log; never throws */
  abort(): Promise<void>;
}

export function createLifecycle(deps: LifecycleDeps): Lifecycle {
  const { readiness, audit, log } = deps;
  const drainables: Drainable[] = [];
  const stops: Array<() => unknown> = [];
  let draining: Omit<DrainStart, 'started'> | null = null;
  let shuttingDown: Promise<boolean> | null = null;

  function drain(trigger: string): DrainStart {
    if (draining !== null) return { started: false, ...draining };
    readiness.markDraining();
    const deadline = Date.now() + deps.drainTimeoutMs();
    audit.record('drain', { deadline: new Date(deadline).toISOString(), trigger });
    log.info({ trigger, deadline: new Date(deadline).toISOString() }, 'draining');
    // the parts there now: a drain asked for while starting has nothing to wait for
    draining = { deadline, done: drainInOrder([...drainables], deadline) };
    return { started: true, ...draining };
  }

  async function shutdown(): Promise<boolean> {
    const clean = await drain('shutdown').done;
    for (const stop of stops.splice(0).reverse()) await stop();
    audit.record('stop', { clean });
    await deps.closeAudit();
    log.info({ clean }, 'stopped');
    return clean;
  }

  return {
    drains: (part) => void drainables.push(part),
    onStop: (stop) => void stops.push(stop),
    drain,
    shutdown: () => (shuttingDown ??= shutdown()),
    async abort() {
      // the start's own error is what the caller reports: a part that fails to stop is not
      await drainInOrder(drainables.splice(0), Date.now()).catch(() => undefined);
      for (const stop of stops.splice(0).reverse())
        await Promise.resolve()
          .then(stop)
          .catch(() => undefined);
      await deps.closeAudit().catch(() => undefined);
    },
  };
}

/** Inbound listeners of every part first, then the outbound ones. */
async function drainInOrder(parts: readonly Drainable[], deadline: number): Promise<boolean> {
  const inbound = await Promise.all(parts.map((p) => p.drain('inbound', deadline)));
  const outbound = await Promise.all(parts.map((p) => p.drain('outbound', deadline)));
  return [...inbound, ...outbound].every(Boolean);
}
