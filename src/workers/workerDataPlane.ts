/**
 * A worker thread's data plane: the one composition (proxy/dataPlane.ts) over what the main
 * thread hands in (TLS material and key ring, the shared replay cache, the shared ticket
 * keys), with what the thread observes forwarded with `send`: audit events, failed handshakes,
 * anomalies. It keeps the client context for outbound listeners itself, rebuilt with each new
 * TLS material.
 */
import type { KeyObject } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import { clientSecureContext, type TlsMaterial } from '../tls/contexts.ts';
import type { KeyRing } from '../integrity/keyRing.ts';
import type { ReplayCache } from '../integrity/replayCache.ts';
import { startDataPlane, type DataPlane } from '../proxy/dataPlane.ts';
import type { Config } from '../config/types.ts';
import { RecentAnomalies, type AnomalyRecord } from '../anomaly/recentAnomalies.ts';
import { RecentHandshakes, type HandshakeRecord, type NewHandshakeRecord } from '../telemetry/recentHandshakes.ts';
import type { FromWorker, KeyEntries, WorkerInit } from './protocol.ts';

export interface WorkerDataPlaneDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly policy: TlsPolicy;
  readonly replay: ReplayCache | null;
  readonly send: (m: FromWorker) => void;
}

export interface WorkerDataPlane extends Pick<DataPlane, 'drain' | 'status' | 'routes' | 'close'> {
  setMaterial(material: TlsMaterial): void;
  setTicketKeys(keys: Uint8Array): void;
  setKeys(keys: KeyEntries): void;
  /** a reloaded config (validated by the main thread): each listener swaps its live settings */
  setConfig(config: Config): void;
}

/** Structured clone turns Buffers into Uint8Arrays; TLS and crypto want Buffers. */
function buffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function materialOf(m: TlsMaterial): TlsMaterial {
  // the revoked set arrives as a Set (structured clone keeps it)
  return Object.freeze({
    certPem: buffer(m.certPem),
    keyPem: buffer(m.keyPem),
    caPem: buffer(m.caPem),
    crls: m.crls.map(buffer),
    revoked: m.revoked,
  });
}

/** A ring over KeyObjects as the main thread sent them. */
export function ringOf(entries: KeyEntries): KeyRing {
  const keys = new Map<string, KeyObject>(entries.map(([id, key]) => [id, key]));
  const ids = Object.freeze([...keys.keys()].sort());
  return Object.freeze({ get: (id: string) => keys.get(id), ids, size: ids.length });
}

/** Audit events go to the main thread, whose single writer keeps the hash chain. */
function forwardedAudit(send: (m: FromWorker) => void, log: Logger): AuditSink {
  return {
    record(event, fields) {
      try {
        send({ type: 'audit', event, fields });
      } catch (err) {
        log.error({ event, err: (err as Error).message }, 'audit event could not be sent to the main thread');
      }
    },
    flush: () => Promise.resolve(),
  };
}

/** Failed handshakes go to the main thread's list; a later bump of the same entry follows it there. */
class ForwardedHandshakes extends RecentHandshakes {
  private seq = 0;
  private readonly seqOf = new WeakMap<HandshakeRecord, number>();
  private readonly send: (m: FromWorker) => void;

  constructor(send: (m: FromWorker) => void) {
    super(1);
    this.send = send;
  }

  override add(record: NewHandshakeRecord): HandshakeRecord {
    const entry = super.add(record);
    const seq = ++this.seq;
    this.seqOf.set(entry, seq);
    this.send({ type: 'handshake', seq, record });
    return entry;
  }

  override bump(entry: HandshakeRecord, at: string): void {
    super.bump(entry, at);
    const seq = this.seqOf.get(entry);
    if (seq !== undefined) this.send({ type: 'handshakeBump', seq, at });
  }
}

class ForwardedAnomalies extends RecentAnomalies {
  private readonly send: (m: FromWorker) => void;

  constructor(send: (m: FromWorker) => void) {
    super(1);
    this.send = send;
  }

  override add(record: AnomalyRecord): void {
    super.add(record);
    this.send({ type: 'anomaly', record });
  }
}

export async function startWorkerDataPlane(init: WorkerInit, deps: WorkerDataPlaneDeps): Promise<WorkerDataPlane> {
  const { log, policy, send } = deps;
  let material = materialOf(init.material);
  let client: SecureContext = clientSecureContext(material, policy);
  let ring = ringOf(init.keys);

  const plane = await startDataPlane(init.config, {
    log,
    metrics: deps.metrics,
    audit: forwardedAudit(send, log),
    clock: deps.clock,
    policy,
    material,
    clientContext: () => client,
    ticketKeys: buffer(init.ticketKeys),
    recentHandshakes: new ForwardedHandshakes(send),
    recentAnomalies: new ForwardedAnomalies(send),
    // the main thread watches keys.dir and sends every new ring
    keys: { keysFrom: () => ring, ...(deps.replay === null ? {} : { replay: deps.replay }) },
    listen: { reusePort: true },
    thread: `worker ${init.index}`,
  });
  log.debug({ listeners: plane.listeners.map((l) => l.name) }, 'worker listening');

  return {
    setMaterial(m) {
      const next = materialOf(m);
      try {
        const nextClient = clientSecureContext(next, policy);
        for (const l of plane.inbound) l.setTlsMaterial(next);
        material = next;
        client = nextClient;
      } catch (err) {
        // the main thread validated this material; a thread that cannot use it keeps the old
        log.error(
          { err: (err as Error).message },
          'worker could not apply the new TLS material; keeping the current one',
        );
        for (const l of plane.inbound) l.setTlsMaterial(material);
      }
    },
    setKeys(keys) {
      ring = ringOf(keys);
    },
    setTicketKeys: (keys) => plane.setTicketKeys(buffer(keys)),
    setConfig: (next) => plane.applyConfig(next),
    drain: (mode, deadline) => plane.drain(mode, deadline),
    status: () => plane.status(),
    routes: () => plane.routes(),
    close: () => plane.close(),
  };
}
