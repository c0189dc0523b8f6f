import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { AuditEventType, AuditSink } from '../telemetry/audit.ts';
import type { HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';
import type { HandshakeRecord, RecentHandshakes } from '../telemetry/recentHandshakes.ts';

/**
 * Connections refused in bulk before TLS (the handshake cap, the ClientHello deadline,
 * maxConnections) are a flood's signature; one log line, audit event and /handshakes/recent
 * entry each would turn the flood into a log flood, an audit-chain flood and an empty ring.
 * So each is counted in its metric one by one, and reported per window (10 s):
 *
 * - the first refusal of a window: one log line and one audit event with `dropped: 1`, and a
 *   /handshakes/recent entry whose `count` grows with each refusal of the window;
 * - at the window's end, when more followed: one log line and one audit event with `dropped`
 *   the number of the others.
 *
 * So the `dropped` of the log lines (and of the audit events) add up to the metric, and each
 * entry's `count` is its window's share of it.
 */
export const REFUSAL_WINDOW_MS = 10_000;

export interface RefusalWindowTimers {
  setTimeout(fn: () => void, ms: number): unknown;
}

export interface RefusalWindowOptions {
  readonly listener: string;
  /** the metric, counted once per refusal */
  readonly count: () => void;
  readonly log: Logger;
  readonly audit: AuditSink;
  readonly recent: RecentHandshakes;
  readonly clock: Clock;
  readonly kind: HandshakeRecord['kind'];
  readonly reason: HandshakeFailureReason | null;
  /** stable code in the log line, the audit event and the entry: HANDSHAKE_CAP, CLIENT_HELLO_TIMEOUT… */
  readonly code: string;
  /** the log message */
  readonly message: string;
  /** the entry's explanation */
  readonly detail: string;
  readonly auditType: AuditEventType;
  /** state worth logging with each line (the limit, what is in progress) */
  readonly logFields?: () => Record<string, unknown>;
  readonly windowMs?: number;
  readonly timers?: RefusalWindowTimers;
}

const systemTimers: RefusalWindowTimers = { setTimeout: (fn, ms) => setTimeout(fn, ms).unref() };

export class RefusalWindow {
  private readonly o: RefusalWindowOptions;
  private readonly windowMs: number;
  private readonly timers: RefusalWindowTimers;
  private entry: HandshakeRecord | null = null;
  /** refusals of the open window not yet in a log line */
  private unreported = 0;

  constructor(options: RefusalWindowOptions) {
    this.o = options;
    this.windowMs = options.windowMs ?? REFUSAL_WINDOW_MS;
    this.timers = options.timers ?? systemTimers;
  }

  /** one refusal, from `remote` (host:port, or null) */
  record(remote: string | null): void {
    const o = this.o;
    o.count();
    const at = new Date(o.clock.now()).toISOString();
    if (this.entry !== null) {
      o.recent.bump(this.entry, at);
      this.unreported++;
      return;
    }
    this.entry = o.recent.add({
      at,
      listener: o.listener,
      side: 'server',
      kind: o.kind,
      reason: o.reason,
      remote,
      peer: null,
      tlsVersion: null,
      code: o.code,
      detail: `${o.detail} (count: refused in this ${this.windowMs / 1000} s window; remote: the first)`,
    });
    this.report(1, remote);
    this.timers.setTimeout(this.close, this.windowMs);
  }

  private report(dropped: number, remote: string | null): void {
    const o = this.o;
    const fields = { code: o.code, dropped, ...(o.logFields?.() ?? {}) };
    o.log.warn(remote === null ? fields : { ...fields, remote }, o.message);
    o.audit.record(o.auditType, {
      listener: o.listener,
      reason: o.reason ?? o.code.toLowerCase(),
      code: o.code,
      dropped,
    });
  }

  /** the window's end: what followed the first refusal is reported, and the next one opens a new window */
  private readonly close = (): void => {
    if (this.unreported > 0) this.report(this.unreported, null);
    this.unreported = 0;
    this.entry = null;
  };
}
