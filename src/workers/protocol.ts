/**
 * The messages between the main thread and its worker threads (structured clone: Buffers
 * arrive as Uint8Arrays, KeyObjects as KeyObjects). Requests that want an answer carry an id;
 * the worker answers with { type: 'reply', id, value }.
 */
import type { KeyObject } from 'node:crypto';
import type { Config } from '../config/types.ts';
import type { TlsMaterial } from '../tls/contexts.ts';
import type { AuditEventType } from '../telemetry/audit.ts';
import type { NewHandshakeRecord } from '../telemetry/recentHandshakes.ts';
import type { AnomalyRecord } from '../anomaly/recentAnomalies.ts';
import type { SharedReplayHandle } from '../integrity/sharedReplayCache.ts';
import type { ListenerStatus } from '../proxy/dataPlane.ts';

export type KeyEntries = ReadonlyArray<readonly [string, KeyObject]>;

/** workerData: everything a worker needs to start its data plane */
export interface WorkerInit {
  /** 1..workers-1 (the main thread is 0) */
  readonly index: number;
  /** the config, with every listener's port the one the main thread bound (port 0 resolved) */
  readonly config: Config;
  readonly material: TlsMaterial;
  readonly keys: KeyEntries;
  readonly ticketKeys: Uint8Array;
  readonly replay: SharedReplayHandle | null;
}

export type ToWorker =
  | { readonly type: 'material'; readonly material: TlsMaterial }
  | { readonly type: 'keys'; readonly keys: KeyEntries }
  | { readonly type: 'ticketKeys'; readonly keys: Uint8Array }
  /** a config reload's new snapshot (validated by the main thread): every listener swaps its live settings */
  | { readonly type: 'config'; readonly config: Config }
  | { readonly type: 'drain'; readonly id: number; readonly mode: 'inbound' | 'outbound'; readonly deadline: number }
  | { readonly type: 'metrics'; readonly id: number }
  | { readonly type: 'status'; readonly id: number }
  | { readonly type: 'routes'; readonly id: number }
  | { readonly type: 'stop'; readonly id: number };

export type FromWorker =
  | { readonly type: 'ready' }
  /** one log line (JSON, with its newline), written by the main thread's log destination: one writer, no interleaving */
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'failed'; readonly message: string; readonly problems: readonly string[] }
  | { readonly type: 'audit'; readonly event: AuditEventType; readonly fields: Readonly<Record<string, unknown>> }
  | { readonly type: 'handshake'; readonly seq: number; readonly record: NewHandshakeRecord }
  | { readonly type: 'handshakeBump'; readonly seq: number; readonly at: string }
  | { readonly type: 'anomaly'; readonly record: AnomalyRecord }
  | { readonly type: 'reply'; readonly id: number; readonly value: unknown };

/** what a worker's listeners report for /status */
export type WorkerListenerStatus = ListenerStatus;
