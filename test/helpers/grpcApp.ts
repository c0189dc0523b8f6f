/**
 * A gRPC service for interoperability tests, served and called by @grpc/grpc-js (an independent
 * implementation of gRPC over HTTP/2), defined without a .proto: generic method definitions whose
 * messages are JSON in a Buffer. The server records what reached it (metadata per call, calls
 * cancelled); the client wraps each kind of call in a promise of everything the client saw
 * (messages, initial metadata, status with its trailing metadata).
 *
 *   const app = await startGrpcApp(t);                          // h2c on 127.0.0.1:port
 *   const c = grpcClient(t, pl.outbound.addr);                  // insecure: h2c with prior knowledge
 *   const r = await c.unary({ id: 'u1', payload: 'abc' });      // r.status.code, r.value, r.headers
 */
import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import grpc, {
  type ClientDuplexStream,
  type Metadata,
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type StatusObject,
} from '@grpc/grpc-js';
import type { Teardownable } from './pki.ts';

export const SERVICE = 'tollgate.test.Interop';

/** One message either way: what the methods read and answer (JSON) */
export interface Msg {
  /** the call's id, which the server records metadata and cancellations under */
  readonly id?: string;
  /** position in a stream */
  readonly i?: number;
  readonly payload?: string;
  /** sha-256 (hex) of what the server received (its payload, or a stream's payloads in order) */
  readonly digest?: string;
  /** server streaming: how many messages to send, each `size` characters */
  readonly n?: number;
  readonly size?: number;
  /** client streaming: messages received */
  readonly count?: number;
  /** unary: answer with this status instead (and trailing metadata x-trailer) */
  readonly fail?: { readonly code: number; readonly details: string };
  /** unary: send initial metadata (x-initial, x-initial-bin) and trailing metadata (x-trailer, x-trailer-bin) */
  readonly meta?: boolean;
  /** the request metadata the server saw (text keys only, first value each) */
  readonly seen?: Readonly<Record<string, string>>;
}

export function serialize(m: Msg): Buffer {
  return Buffer.from(JSON.stringify(m));
}

export function deserialize(b: Buffer): Msg {
  return JSON.parse(b.toString('utf8')) as Msg;
}

export function digestOf(...parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

function method(name: string, requestStream: boolean, responseStream: boolean): MethodDefinition<Msg, Msg> {
  return {
    path: `/${SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  };
}

/** The service (keys as the server's implementation names them): unary echo, server streaming count, client streaming sum, bidirectional chat, and a call that never answers */
export const METHODS = {
  Echo: method('Echo', false, false),
  Count: method('Count', false, true),
  Sum: method('Sum', true, false),
  Chat: method('Chat', true, true),
  Hang: method('Hang', false, false),
} as const;

const DEFINITION: ServiceDefinition = METHODS;

/* ------------------------------------------------------------------------------ the server */

export interface GrpcApp {
  readonly server: grpc.Server;
  /** "127.0.0.1:port" */
  readonly addr: string;
  /** calls started, by method name (Echo, Count, …) */
  calls(name: string): number;
  /** the request metadata of the call with this id */
  metadataOf(id: string): Metadata | undefined;
  /** the ids of calls the server saw cancelled (the client's RST_STREAM, or the deadline) */
  cancelled(): readonly string[];
  /** resolves when the call with this id is cancelled */
  whenCancelled(id: string): Promise<void>;
}

function seenOf(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) if (typeof v === 'string') out[k] = v;
  return out;
}

/** A grpc-js server on 127.0.0.1:0 (insecure: h2c), stopped with `t`. */
export async function startGrpcApp(t: Teardownable): Promise<GrpcApp> {
  const server = new grpc.Server();
  const calls = new Map<string, number>();
  const metadata = new Map<string, Metadata>();
  const cancelled: string[] = [];
  const waiters = new Map<string, Array<() => void>>();

  const started = (name: string, id: string | undefined, call: EventEmitter & { metadata: Metadata }): void => {
    calls.set(name, (calls.get(name) ?? 0) + 1);
    if (id === undefined) return;
    metadata.set(id, call.metadata);
    call.on('cancelled', () => {
      cancelled.push(id);
      for (const w of waiters.get(id) ?? []) w();
      waiters.delete(id);
    });
  };

  server.addService(DEFINITION, {
    Echo(call: ServerUnaryCall<Msg, Msg>, done: grpc.sendUnaryData<Msg>) {
      const req = call.request;
      started('Echo', req.id, call);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', `bye ${req.id ?? ''}`);
      if (req.fail !== undefined) {
        done({ code: req.fail.code, details: req.fail.details, metadata: trailer });
        return;
      }
      if (req.meta === true) {
        const initial = new grpc.Metadata();
        initial.set('x-initial', `hello ${req.id ?? ''}`);
        initial.set('x-initial-bin', Buffer.from([0, 1, 2, 0xfe, 0xff]));
        call.sendMetadata(initial);
        trailer.set('x-trailer-bin', Buffer.from([0xff, 0, 0x7f]));
      }
      const payload = req.payload ?? '';
      done(null, { id: req.id, payload, digest: digestOf(payload), seen: seenOf(call.metadata) }, trailer);
    },
    Count(call: ServerWritableStream<Msg, Msg>) {
      const req = call.request;
      started('Count', req.id, call);
      const n = req.n ?? 0;
      const size = req.size ?? 16;
      for (let i = 0; i < n; i++) {
        const payload = String(i % 10).repeat(size);
        call.write({ i, payload, digest: digestOf(payload) });
      }
      call.end();
    },
    Sum(call: ServerReadableStream<Msg, Msg>, done: grpc.sendUnaryData<Msg>) {
      const parts: string[] = [];
      let id: string | undefined;
      let inOrder = true;
      calls.set('Sum', (calls.get('Sum') ?? 0) + 1);
      call.on('data', (m: Msg) => {
        if (id === undefined && m.id !== undefined) {
          id = m.id;
          metadata.set(id, call.metadata);
        }
        if (m.i !== parts.length) inOrder = false;
        parts.push(m.payload ?? '');
      });
      call.on('end', () => {
        if (!inOrder) done({ code: grpc.status.DATA_LOSS, details: 'messages out of order' });
        else done(null, { id, count: parts.length, digest: digestOf(...parts) });
      });
    },
    Chat(call: ServerDuplexStream<Msg, Msg>) {
      calls.set('Chat', (calls.get('Chat') ?? 0) + 1);
      call.on('data', (m: Msg) => call.write({ id: m.id, i: m.i, digest: digestOf(m.payload ?? '') }));
      call.on('end', () => call.end());
    },
    Hang(call: ServerUnaryCall<Msg, Msg>) {
      // never answers: the call ends when the client (or a proxy on its behalf) gives up
      started('Hang', call.request.id, call);
    },
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  t.teardown(() => server.forceShutdown());
  return {
    server,
    addr: `127.0.0.1:${port}`,
    calls: (name) => calls.get(name) ?? 0,
    metadataOf: (id) => metadata.get(id),
    cancelled: () => [...cancelled],
    whenCancelled: (id) =>
      cancelled.includes(id)
        ? Promise.resolve()
        : new Promise<void>((resolve) => waiters.set(id, [...(waiters.get(id) ?? []), resolve])),
  };
}

/* ------------------------------------------------------------------------------ the client */

/** Everything the client saw of one call */
export interface CallOutcome {
  readonly status: StatusObject;
  /** the response initial metadata, or null when there was none (trailers-only) */
  readonly headers: Metadata | null;
  /** unary and client streaming: the answer, or null */
  readonly value: Msg | null;
  /** server streaming and bidi: the messages, in order */
  readonly messages: readonly Msg[];
}

export interface CallOptions {
  readonly metadata?: Metadata;
  /** milliseconds from now */
  readonly deadlineMs?: number;
}

export interface GrpcClient {
  readonly client: grpc.Client;
  unary(req: Msg, opts?: CallOptions): Promise<CallOutcome>;
  hang(req: Msg, opts?: CallOptions): Promise<CallOutcome>;
  serverStream(req: Msg, opts?: CallOptions): Promise<CallOutcome>;
  clientStream(messages: readonly Msg[], opts?: CallOptions): Promise<CallOutcome>;
  /** a bidirectional call, to drive by hand; `outcome` settles with its status once it ended */
  bidi(opts?: CallOptions): { call: ClientDuplexStream<Msg, Msg>; outcome: Promise<CallOutcome> };
}

function optionsOf(opts: CallOptions): { metadata: Metadata; options: grpc.CallOptions } {
  return {
    metadata: opts.metadata ?? new grpc.Metadata(),
    options: opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs },
  };
}

interface Observable {
  on(event: 'metadata', f: (m: Metadata) => void): unknown;
  on(event: 'status', f: (s: StatusObject) => void): unknown;
}

/** status and initial metadata of a call, and (streams) its messages until it ended */
function observe(
  call: Observable & NodeJS.EventEmitter,
  readable: boolean,
  value: () => Msg | null,
): Promise<CallOutcome> {
  let headers: Metadata | null = null;
  const messages: Msg[] = [];
  call.on('metadata', (m: Metadata) => (headers = m));
  if (readable) {
    call.on('data', (m: Msg) => messages.push(m));
    call.on('error', () => undefined);
  }
  const status = new Promise<StatusObject>((resolve) => call.on('status', resolve));
  // a stream's last messages may be delivered after its status: wait for its end too
  const ended = readable
    ? new Promise<void>((resolve) => (call.once('end', resolve), call.once('close', resolve)))
    : null;
  return status.then(async (s) => {
    if (ended !== null) await ended;
    return { status: s, headers, value: value(), messages };
  });
}

/** A grpc-js client to `addr` (insecure: h2c with prior knowledge), closed with `t`. */
export function grpcClient(t: Teardownable, addr: string): GrpcClient {
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const m = METHODS;

  const unaryCall = (path: string, req: Msg, opts: CallOptions): Promise<CallOutcome> => {
    const { metadata, options } = optionsOf(opts);
    let value: Msg | null = null;
    const call = client.makeUnaryRequest(path, serialize, deserialize, req, metadata, options, (_err, v) => {
      value = v ?? null;
    });
    return observe(call, false, () => value);
  };

  return {
    client,
    unary: (req, opts = {}) => unaryCall(m.Echo.path, req, opts),
    hang: (req, opts = {}) => unaryCall(m.Hang.path, req, opts),
    serverStream(req, opts = {}) {
      const { metadata, options } = optionsOf(opts);
      const call = client.makeServerStreamRequest(m.Count.path, serialize, deserialize, req, metadata, options);
      return observe(call, true, () => null);
    },
    clientStream(messages, opts = {}) {
      const { metadata, options } = optionsOf(opts);
      let value: Msg | null = null;
      const call = client.makeClientStreamRequest(m.Sum.path, serialize, deserialize, metadata, options, (_e, v) => {
        value = v ?? null;
      });
      const outcome = observe(call, false, () => value);
      for (const msg of messages) call.write(msg);
      call.end();
      return outcome;
    },
    bidi(opts = {}) {
      const { metadata, options } = optionsOf(opts);
      const call = client.makeBidiStreamRequest(m.Chat.path, serialize, deserialize, metadata, options);
      return { call, outcome: observe(call, true, () => null) };
    },
  };
}
