/**
 * The lean Node load generator, run as its own process:
 *
 *   node bench/macro/loadClient.ts '<json LoadSpec>'
 *
 * Raw `net` / `tls.connect` sockets (client certificate, TCP_NODELAY), preformatted request
 * bytes, the minimal response reader of responseParser.ts, `connections` connections with one
 * request in flight each. Modes: `keepalive`; `new` (a new connection, hence a full TLS
 * handshake, per request); `resume` (a new connection per request resuming the previous
 * connection's TLS session); `idle` (open the connections, one request each, then hold them
 * until stdin closes). With `rate` it is an open loop: requests are due at fixed times and
 * a request that has to wait for a free connection counts its latency from when it was due
 * (queueing included; the generator's own timer slack is not counted).
 *
 * Protocol on stdout: `START` when the warm-up is over (the measured window begins), `END`
 * when it is over, then one JSON line (LoadResult). `READY` in idle mode. Every loop is
 * bounded by time and count; errors (non-2xx, resets, connect failures) are counted.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { contentDigestOf } from '../../src/integrity/contentDigest.ts';
import { MacKeys } from '../../src/integrity/hmac.ts';
import { HeaderIndex } from '../../src/integrity/signatureBase.ts';
import { NonceSource, signRequest } from '../../src/integrity/signer.ts';
import { ResponseParser } from './responseParser.ts';

export interface LoadSpec {
  host: string;
  port: number;
  /** PEM file paths; null = plain TCP */
  tls: { ca: string; cert: string; key: string; servername: string } | null;
  mode: 'keepalive' | 'new' | 'resume' | 'idle';
  method: 'GET' | 'POST';
  path: string;
  bodyBytes: number;
  /** sign every request (fresh nonce) with this HMAC key */
  sign: { keyFile: string; keyId: string; tag: string } | null;
  connections: number;
  warmupMs: number;
  durationMs: number;
  maxRequests: number;
  /** open loop at this many requests per second; null = closed loop */
  rate: number | null;
  /** HTTP/2 load (h2load.ts, h2LoadClient.ts): streams in flight on each connection; this client ignores it */
  streams?: number;
}

export interface LoadResult {
  completed: number;
  errors: { status: number; reset: number; connect: number };
  /** a sample of the non-2xx statuses seen */
  statuses: Record<string, number>;
  elapsedMs: number;
  requestBytes: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number } | null;
  connectionsOpened: number;
  resumed: number;
  /** open loop: requests that waited for a free connection */
  queued: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
const HARD_LIMIT_MS = spec.warmupMs + spec.durationMs + 30_000;
setTimeout(() => {
  process.stderr.write('loadClient: hard time limit reached\n');
  process.exit(3);
}, HARD_LIMIT_MS).unref();

const secureContext = spec.tls
  ? tls.createSecureContext({
      ca: readFileSync(spec.tls.ca),
      cert: readFileSync(spec.tls.cert),
      key: readFileSync(spec.tls.key),
    })
  : null;
const body = spec.bodyBytes > 0 ? Buffer.alloc(spec.bodyBytes, 'x') : null;
const authority = `${spec.host}:${spec.port}`;
const newConnectionPerRequest = spec.mode === 'new' || spec.mode === 'resume';

/* ---------------------------------------------------------------- request bytes */

interface Signer {
  key: KeyObject;
  keyId: string;
  tag: string;
  macs: MacKeys;
  nonces: NonceSource;
}
const signer: Signer | null = spec.sign
  ? {
      key: createSecretKey(Buffer.from(readFileSync(spec.sign.keyFile, 'utf8').trim(), 'base64')),
      keyId: spec.sign.keyId,
      tag: spec.sign.tag,
      macs: new MacKeys(),
      nonces: new NonceSource(),
    }
  : null;

const baseHeaders: Array<[string, string]> = [['host', authority]];
if (body !== null) {
  baseHeaders.push(['content-type', 'application/octet-stream'], ['content-length', String(body.length)]);
  if (signer !== null) baseHeaders.push(['content-digest', contentDigestOf(body)]);
}
const extraHeaders = `user-agent: tollgate-bench\r\n${newConnectionPerRequest ? 'connection: close\r\n' : ''}`;
const headText = (headers: Array<[string, string]>): string =>
  `${spec.method} ${spec.path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}${extraHeaders}\r\n`;
const fixedHead = Buffer.from(headText(baseHeaders), 'latin1');
const rawBase = baseHeaders.flat();

function signedHead(s: Signer): Buffer {
  const fields = signRequest(
    {
      method: spec.method,
      target: spec.path,
      scheme: spec.tls ? 'https' : 'http',
      headers: HeaderIndex.fromRaw(rawBase),
    },
    { keyId: s.keyId, key: s.key, tag: s.tag, macs: s.macs, nonces: s.nonces, created: Math.floor(Date.now() / 1000) },
  );
  return Buffer.from(
    headText([...baseHeaders, ['signature-input', fields.signatureInput], ['signature', fields.signature]]),
    'latin1',
  );
}

/**
 * Signed heads made before any connection opens, so that signing (~10 µs a request) does not
 * compete with the proxy for the 2 cores during the window: each has its own fresh nonce and a
 * `created` a few seconds before it is sent, well within the verifier's max age. Enough for
 * 25,000 req/s (an open loop: its rate) over warm-up + window, at most 150,000 (and at most
 * maxRequests and one per connection more, for a bounded run); past them,
 * heads are signed as sent.
 */
const PRESIGN_RATE = 25_000;
const presigned: Buffer[] = [];
if (signer !== null) {
  const perSecond = spec.rate === null ? PRESIGN_RATE : spec.rate * 1.2; // an open loop sends no more than its rate
  const forTime = Math.max(2_000, Math.ceil(((spec.warmupMs + spec.durationMs) / 1000) * perSecond));
  // a bounded run (the churn) needs no more than it sends, whatever its time bound
  const n = Math.min(150_000, forTime, spec.maxRequests + spec.connections);
  for (let i = 0; i < n; i++) presigned.push(signedHead(signer));
}
let nextPresigned = 0;
let signedLive = 0;
const SENT = Buffer.alloc(0);

function requestHead(): Buffer {
  if (signer === null) return fixedHead;
  if (nextPresigned < presigned.length) {
    const head = presigned[nextPresigned]!;
    presigned[nextPresigned++] = SENT; // let it go once sent
    return head;
  }
  signedLive++;
  return signedHead(signer);
}

/* ---------------------------------------------------------------- accounting */

const MAX_SAMPLES = Math.min(spec.maxRequests, 4_000_000);
const latencies = new Float64Array(MAX_SAMPLES);
let measuring = false;
let stopped = false;
let completed = 0;
let issued = 0;
let queued = 0;
let connectionsOpened = 0;
let resumed = 0;
let requestBytes = 0;
const errors = { status: 0, reset: 0, connect: 0 };
const statuses: Record<string, number> = {};
let windowStart = 0;
let windowEnd = 0;

function record(status: number, startedAt: number): void {
  if (!measuring) return;
  if (status < 200 || status >= 300) {
    errors.status++;
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  if (completed < MAX_SAMPLES) latencies[completed] = performance.now() - startedAt;
  completed++;
  if (completed >= spec.maxRequests) finish();
}

/* ---------------------------------------------------------------- connections */

let lastSession: Buffer | undefined;

class Slot {
  private socket: net.Socket | null = null;
  private readonly parser = new ResponseParser((status, close) => this.onResponse(status, close));
  private startedAt = 0;
  private busy = false;
  private connected = false;
  private connectFailures = 0;
  private pendingSend = false;

  private readonly onIdle: (slot: Slot) => void;

  constructor(onIdle: (slot: Slot) => void) {
    this.onIdle = onIdle;
  }

  get idle(): boolean {
    return !this.busy;
  }

  /** send one request, its latency counted from `since` */
  send(since: number): void {
    this.busy = true;
    this.startedAt = since;
    if (this.socket === null || newConnectionPerRequest) this.open();
    if (this.connected) this.write();
    else this.pendingSend = true;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private open(): void {
    connectionsOpened++;
    this.connected = false;
    this.parser.reset();
    let socket: net.Socket;
    if (secureContext !== null && spec.tls !== null) {
      const s = tls.connect({
        host: spec.host,
        port: spec.port,
        secureContext,
        servername: spec.tls.servername,
        session: spec.mode === 'resume' ? lastSession : undefined,
      });
      if (spec.mode === 'resume') s.on('session', (session: Buffer) => (lastSession = session));
      s.once('secureConnect', () => {
        if (s.isSessionReused()) resumed++;
        this.onConnect(s);
      });
      socket = s;
    } else {
      socket = net.connect(spec.port, spec.host);
      socket.once('connect', () => this.onConnect(socket));
    }
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.socket === socket) this.parser.push(chunk);
    });
    socket.on('error', () => {});
    socket.on('close', () => this.onClose(socket));
    this.socket = socket;
  }

  private onConnect(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.connected = true;
    this.connectFailures = 0;
    if (this.pendingSend) {
      this.pendingSend = false;
      this.write();
    }
  }

  private write(): void {
    const head = requestHead();
    const socket = this.socket!;
    if (body !== null) {
      socket.cork();
      socket.write(head);
      socket.write(body);
      socket.uncork();
      if (measuring) requestBytes += body.length;
    } else {
      socket.write(head);
    }
  }

  private onResponse(status: number, close: boolean): void {
    this.busy = false;
    record(status, this.startedAt);
    if (close || newConnectionPerRequest) {
      const socket = this.socket;
      this.socket = null;
      socket?.end();
      if (socket) setTimeout(() => socket.destroy(), 1_000).unref();
    }
    this.onIdle(this);
  }

  private onClose(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.parser.end();
    if (!this.busy) return;
    // the connection went away with a request in flight
    if (!this.connected) {
      if (measuring) errors.connect++;
      this.connectFailures++;
    } else if (measuring) errors.reset++;
    this.busy = false;
    this.pendingSend = false;
    if (this.connectFailures > 0) setTimeout(() => this.onIdle(this), Math.min(100, 5 * this.connectFailures));
    else this.onIdle(this);
  }
}

/* ---------------------------------------------------------------- drivers */

function finish(): void {
  if (stopped) return;
  stopped = true;
  measuring = false;
  windowEnd = performance.now();
  process.stdout.write('END\n');
  for (const slot of slots) slot.close();
  const n = Math.min(completed, MAX_SAMPLES);
  let latencyMs: LoadResult['latencyMs'] = null;
  if (n > 0) {
    const sorted = latencies.subarray(0, n).sort();
    const at = (q: number): number => sorted[Math.min(n - 1, Math.floor(q * n))]!;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i]!;
    latencyMs = { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: sorted[n - 1]!, mean: sum / n };
  }
  const result: LoadResult = {
    completed,
    errors,
    statuses,
    elapsedMs: windowEnd - windowStart,
    requestBytes,
    latencyMs,
    connectionsOpened,
    resumed,
    queued,
  };
  if (signedLive > 0)
    process.stderr.write(
      `loadClient: the ${presigned.length} pre-signed heads ran out; ${signedLive} were signed as sent\n`,
    );
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

function startWindow(): void {
  measuring = true;
  windowStart = performance.now();
  process.stdout.write('START\n');
  setTimeout(finish, spec.durationMs);
}

const slots: Slot[] = [];

function closedLoop(): void {
  const onIdle = (slot: Slot): void => {
    if (!stopped) slot.send(performance.now());
  };
  for (let i = 0; i < spec.connections; i++) slots.push(new Slot(onIdle));
  for (const slot of slots) slot.send(performance.now());
  setTimeout(startWindow, spec.warmupMs);
}

function openLoop(rate: number): void {
  const backlog: number[] = [];
  const idle: Slot[] = [];
  const onIdle = (slot: Slot): void => {
    if (stopped) return;
    const due = backlog.shift();
    if (due !== undefined) slot.send(due);
    else idle.push(slot);
  };
  for (let i = 0; i < spec.connections; i++) {
    const slot = new Slot(onIdle);
    slots.push(slot);
    idle.push(slot);
  }
  const t0 = performance.now();
  const interval = 1000 / rate;
  let warm = false;
  const tick = (): void => {
    if (stopped) return;
    const now = performance.now();
    if (!warm && now - t0 >= spec.warmupMs) {
      warm = true;
      startWindow();
    }
    const dueCount = Math.floor((now - t0) / interval);
    while (issued < dueCount && issued < spec.maxRequests * 2) {
      const due = t0 + issued * interval;
      issued++;
      const slot = idle.pop();
      // timer granularity is the generator's delay, not the system's: a request sent on a free
      // connection counts from its send; one that waits for a connection counts from when it was due
      if (slot !== undefined) slot.send(performance.now());
      else {
        if (measuring) queued++;
        backlog.push(due);
      }
    }
    setTimeout(tick, 0.5);
  };
  tick();
}

function idleMode(): void {
  // open every connection with one request each (at most 32 handshakes at once), then hold them
  let opened = 0;
  let done = 0;
  const onIdle = (): void => {
    done++;
    if (opened < spec.connections) start();
    else if (done === spec.connections) {
      process.stdout.write(`READY ${JSON.stringify({ opened: spec.connections, errors })}\n`);
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));
      process.stdin.on('close', () => process.exit(0));
    }
  };
  const start = (): void => {
    const slot = new Slot(onIdle);
    slots.push(slot);
    opened++;
    slot.send(performance.now());
  };
  measuring = true;
  for (let i = 0; i < Math.min(32, spec.connections); i++) start();
}

if (spec.mode === 'idle') idleMode();
else if (spec.rate !== null) openLoop(spec.rate);
else closedLoop();
