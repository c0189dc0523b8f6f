/**
 * The listeners of one worker thread and what they need, composed like main.ts composes the
 * main thread's (same listener factories, same integrity stages), with the per-instance parts
 * handed in: TLS material and key ring from the main thread, the shared replay cache, the
 * shared ticket keys. Audit events, failed handshakes and anomalies are forwarded with `send`.
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
import { startIntegrity } from '../integrity/integrityRuntime.ts';
import { createInboundListener, type InboundListener } from '../proxy/inboundListener.ts';
import { createOutboundListener } from '../proxy/outboundListener.ts';
import type { Listener } from '../proxy/listener.ts';
import type { LiveSettable } from '../proxy/liveSettings.ts';
import type { Config } from '../config/types.ts';
import { RecentAnomalies, type AnomalyRecord } from '../anomaly/recentAnomalies.ts';
import { RecentHandshakes, type HandshakeRecord, type NewHandshakeRecord } from '../telemetry/recentHandshakes.ts';
import type { FromWorker, KeyEntries, WorkerInit, WorkerListenerStatus } from './protocol.ts';
import { AccessLog } from '../telemetry/accessLog.ts';

export interface DataPlaneDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly policy: TlsPolicy;
  readonly replay: ReplayCache | null;
  readonly send: (m: FromWorker) => void;
}

export interface DataPlane {
  setMaterial(material: TlsMaterial): void;
  setKeys(keys: KeyEntries): void;
  setTicketKeys(keys: Uint8Array): void;
  /** a reloaded config (validated by the main thread): each listener swaps its live settings */
  setConfig(config: Config): void;
  /** drain this thread's listeners of one mode; true when nothing in flight was cut */
  drain(mode: 'inbound' | 'outbound', deadline: number): Promise<boolean>;
  status(): WorkerListenerStatus[];
  close(): void;
}

/** Structured clone turns Buffers into Uint8Arrays; TLS and crypto want Buffers. */
function buffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function materialOf(m: TlsMaterial): TlsMaterial {
  // the revoked set arrives as a Set (structured clone keeps it)
  return Object.freeze({ certPem: buffer(m.certPem), keyPem: buffer(m.keyPem), caPem: buffer(m.caPem), crls: m.crls.map(buffer), revoked: m.revoked });
}

/** A ring over KeyObjects as the main thread sent them. */
export function ringOf(entries: KeyEntries): KeyRing {
  const keys = new Map<string, KeyObject>(entries.map(([id, key]) => [id, key]));
  const ids = Object.freeze([...keys.keys()].sort());
  return Object.freeze({ get: (id: string) => keys.get(id), ids, size: ids.length });
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

export async function startDataPlane(init: WorkerInit, deps: DataPlaneDeps): Promise<DataPlane> {
  const { config } = init;
  const { log, metrics, clock, policy, send } = deps;
  const audit: AuditSink = {
    record(event, fields) {
      try {
        send({ type: 'audit', event, fields });
      } catch (err) {
        log.error({ event, err: (err as Error).message }, 'audit event could not be sent to the main thread');
      }
    },
    flush: () => Promise.resolve(),
  };
  let material = materialOf(init.material);
  let client: SecureContext = clientSecureContext(material, policy);
  let ring = ringOf(init.keys);
  let ticketKeys = buffer(init.ticketKeys);

  const integrityStart = await startIntegrity(config, {
    log,
    metrics,
    audit,
    clock,
    keysFrom: () => ring,
    ...(deps.replay === null ? {} : { replay: deps.replay }),
  });
  if (!integrityStart.ok) throw Object.assign(new Error('keys do not load'), { problems: integrityStart.problems });
  const integrity = integrityStart.runtime;
  const recentHandshakes = new ForwardedHandshakes(send);
  const recentAnomalies = new ForwardedAnomalies(send);
  const accessLog = new AccessLog(config.log.access);

  const listeners: Listener[] = config.listeners.map((l) =>
    l.mode === 'inbound'
      ? createInboundListener({ config: l, policy, material, metrics, audit, log: log.child({ listener: l.name }), clock, integrity: integrity.stageFor(l), recentAnomalies, recentHandshakes, ticketKeys, accessLog })
      : createOutboundListener({ config: l, clientContext: () => client, metrics, audit, log: log.child({ listener: l.name }), clock, integrity: integrity.stageFor(l), recentHandshakes, accessLog }),
  );
  const inbound = listeners.filter((l): l is InboundListener => l.mode === 'inbound');
  let started = 0;
  try {
    for (const l of listeners) {
      await l.start({ reusePort: true });
      started++;
    }
  } catch (err) {
    await Promise.all(listeners.slice(0, started).map((l) => l.drain(Date.now())));
    integrity.close();
    const failed = config.listeners[started]!;
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw Object.assign(new Error(`listener ${failed.name} cannot listen`), { problems: [`listeners[${started}].listen: ${failed.listen.host}:${failed.listen.port}: ${code} (worker ${init.index})`] });
  }
  log.debug({ listeners: listeners.map((l) => l.name) }, 'worker listening');

  return {
    setMaterial(m) {
      const next = materialOf(m);
      try {
        const nextClient = clientSecureContext(next, policy);
        for (const l of inbound) l.setTlsMaterial(next);
        material = next;
        client = nextClient;
      } catch (err) {
        // the main thread validated this material; a thread that cannot use it keeps the old
        log.error({ err: (err as Error).message }, 'worker could not apply the new TLS material; keeping the current one');
        for (const l of inbound) l.setTlsMaterial(material);
      }
    },
    setKeys(keys) {
      ring = ringOf(keys);
    },
    setTicketKeys(keys) {
      ticketKeys = buffer(keys);
      for (const l of inbound) l.setTicketKeys(ticketKeys);
    },
    setConfig(next) {
      accessLog.enabled = next.log.access;
      listeners.forEach((l, i) => {
        const c = next.listeners[i];
        if (c !== undefined) (l as Listener & LiveSettable).applyLive(c, integrity.stageFor(c));
      });
    },
    async drain(mode, deadline) {
      const results = await Promise.all(listeners.filter((l) => l.mode === mode).map((l) => l.drain(deadline)));
      return results.every(Boolean);
    },
    status: () => listeners.map((l) => ({ name: l.name, connections: l.connections(), accepting: !l.draining() })),
    close() {
      integrity.close();
    },
  };
}
