/**
 * The audit seam: every security decision that denies or changes state is handed here.
 * With `audit.file`, the hash-chained, MACed audit log (auditLog.ts) is the sink; without it,
 * events go to the log (logAuditSink), so nothing is silently dropped. Callers pass only
 * non-secret fields: the audit file is not redacted like the logger.
 */
export type AuditEventType =
  | 'start'
  | 'stop'
  | 'drain'
  | 'handshake_failure'
  /** connections refused at accept before any TLS (maxConnections), one event per 10 s window */
  | 'connection_dropped'
  | 'authz_deny'
  | 'upstream_identity'
  | 'request_refused'
  | 'signature_failure'
  | 'replay'
  | 'anomaly'
  | 'reload'
  /** a config file reload (SIGHUP, POST /reload) that changed settings or was refused: what changed, what needs a restart */
  | 'config_reload'
  | 'key_ring_change'
  /** the shared state store (sharedState) became unreachable, or reachable again: one event per change, with onUnavailable */
  | 'shared_state';

export interface AuditSink {
  record(type: AuditEventType, fields: Readonly<Record<string, unknown>>): void;
  /** flush whatever is buffered; resolves when it is durable */
  flush(): Promise<void>;
}

export interface AuditLogTarget {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** An AuditSink that writes each event as one log line (audit: true) and counts it. */
export function logAuditSink(log: AuditLogTarget, count: (type: AuditEventType) => void): AuditSink {
  return {
    record(type, fields) {
      count(type);
      log.info({ audit: true, event: type, ...fields }, `audit ${type}`);
    },
    flush: () => Promise.resolve(),
  };
}
