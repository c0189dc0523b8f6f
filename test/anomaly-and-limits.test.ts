/**
 * Payload-size anomalies and abuse limits with real mTLS on loopback, a fresh PKI per test:
 * observe mode passes and counts, block mode refuses before the body goes upstream (declared
 * length, Expect: 100-continue, and a chunked body cut when its running count crosses the
 * learned bound), flagged sizes never teach the model, the peer cap falls back to the route's
 * model, the accounting of a chunked 413, per-identity rate limits with Retry-After, the cap on
 * concurrent handshakes, a silent TCP client dropped, slow headers cut, and the payload-size
 * histogram. Each refusal or flag: the status, x-tollgate-error, one log line, one metric
 * increment, one audit event, and what the app saw.
 *
 * Already covered elsewhere (not repeated): the 413 status and cut-off upstream of a chunked body
 * over maxBodyBytes, and of a declared one (connection-semantics.test.ts); one log line, one
 * metric and one audit event for a declared body over maxBodyBytes (refusal-accounting.test.ts).
 */
import t from 'tap';
import https from 'node:https';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import type http from 'node:http';
import type { Client } from 'undici';
import {
  world,
  startUpstream,
  startTestSidecar,
  mtlsClient,
  eventually,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type Upstream,
  type World,
} from './helpers/world.ts';
import { PRODUCER } from './helpers/identities.ts';
import { join } from 'node:path';
import { writeKey, signedHeaders } from './helpers/signing.ts';

const OTHER = 'spiffe://example.org/other';
/** learning is quick: 20 accepted requests */
const MIN_SAMPLES = 20;
/** the sizes a producer normally sends: around 1 KB, spread a little */
const NORMAL = Array.from({ length: MIN_SAMPLES }, (_, i) => 800 + ((i * 37) % 400));
const MEDIAN = 1000;
const HUGE = 100 * MEDIAN;
/** upper bound for any single wait */
const WAIT_MS = 10_000;

/* ------------------------------------------------------------------ fixtures */

interface Setup {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly app: Upstream;
  /** requests the app started (whether or not they completed) */
  readonly started: () => number;
  readonly producer: TestIdentity;
  readonly other: TestIdentity;
  readonly client: Client;
  readonly otherClient: Client;
  /** a raw request as the producer (or `as`) */
  raw(opts: RawOptions, as?: TestIdentity): Promise<RawResponse>;
}

/** An inbound sidecar allowing two producer identities, in front of the echoing test app. */
async function setup(t: Test, listener: Record<string, unknown>): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const other = await w.identity('other', { spiffe: [OTHER] });
  const app = await startUpstream(t);
  let started = 0;
  app.server.on('request', () => (started += 1));
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER, OTHER] },
        ...listener,
      },
    ],
  });
  return {
    w,
    sc,
    app,
    started: () => started,
    producer,
    other,
    client: mtlsClient(t, sc.addr(), w.ca, producer),
    otherClient: mtlsClient(t, sc.addr(), w.ca, other),
    raw: (opts, as = producer) => rawRequest(sc.addr(), w, as, opts),
  };
}

/** One POST of `size` bytes with a Content-Length; resolves with its status (the body read). */
async function post(client: Client, size: number, path = '/events'): Promise<number> {
  const res = await client.request({
    path,
    method: 'POST',
    body: Buffer.alloc(size, 'a'),
    headers: { 'content-type': 'application/octet-stream' },
    headersTimeout: WAIT_MS,
    bodyTimeout: WAIT_MS,
  });
  await res.body.dump();
  return res.statusCode;
}

/** Teach the model: MIN_SAMPLES normal requests, all accepted, and wait until each was recorded (learning happens then). */
async function train(t: Test, s: Setup, client: Client = s.client): Promise<void> {
  const before = await s.sc.metric('tollgate_requests_total', { status_class: '2xx' });
  const statuses: number[] = [];
  for (const size of NORMAL) statuses.push(await post(client, size));
  t.same(
    statuses,
    NORMAL.map(() => 200),
    'every training request accepted',
  );
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { status_class: '2xx' })) === before + NORMAL.length,
    WAIT_MS,
    'training requests recorded',
  );
}

interface RawOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: http.OutgoingHttpHeaders;
  /** written one after another; with no content-length header Node sends them chunked */
  readonly chunks?: Buffer[];
  /** send the headers, then the chunks only once the server says 100 Continue */
  readonly expectContinue?: boolean;
}

interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** the server sent 100 Continue */
  readonly continued: boolean;
  /** request body bytes the client handed to its socket */
  readonly written: number;
}

/**
 * One request with node:https on a fresh connection. The body chunks are written one at a
 * time, each after the previous was flushed, and no more once a response has arrived — a
 * server that refuses early gets to answer before the client fills the connection.
 */
function rawRequest(addr: string, w: World, as: TestIdentity, opts: RawOptions): Promise<RawResponse> {
  const i = addr.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    let continued = false;
    let responded = false;
    let written = 0;
    const req = https.request({
      host: addr.slice(0, i),
      port: Number(addr.slice(i + 1)),
      method: opts.method ?? 'POST',
      path: opts.path ?? '/events',
      headers: { ...opts.headers, ...(opts.expectContinue === true ? { expect: '100-continue' } : {}) },
      agent: false,
      servername: 'localhost',
      ca: w.ca.certPem,
      cert: as.certPem,
      key: as.keyPem,
      timeout: WAIT_MS,
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => {
      if (!responded) reject(err);
    });
    req.on('response', (res) => {
      responded = true;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', () => undefined);
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString('utf8'),
          continued,
          written,
        });
        req.destroy();
      });
    });
    const chunks = [...(opts.chunks ?? [])];
    const writeNext = (): void => {
      if (responded || req.destroyed) return;
      const c = chunks.shift();
      if (c === undefined) {
        req.end();
        return;
      }
      written += c.length;
      req.write(c, () => setImmediate(writeNext));
    };
    if (opts.expectContinue === true) {
      req.on('continue', () => {
        continued = true;
        writeNext();
      });
      req.flushHeaders();
    } else {
      writeNext();
    }
  });
}

/** Log lines with this message (and these fields). */
function logs(sc: TestSidecar, msg: string, fields: Record<string, unknown> = {}): Array<Record<string, unknown>> {
  return sc.logs.lines.filter((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
}

/** Audit events of one type (the audit seam writes each as one log line). */
function audits(sc: TestSidecar, event: string): Array<Record<string, unknown>> {
  return sc.logs.lines.filter((l) => l.audit === true && l.event === event);
}

/** count and sum of a histogram's series with these labels */
async function histogram(
  sc: TestSidecar,
  name: string,
  labels: Record<string, string>,
): Promise<{ count: number; sum: number }> {
  const m = sc.registry.getSingleMetric(name);
  if (m === undefined) return { count: 0, sum: 0 };
  const out = { count: 0, sum: 0 };
  for (const v of (await m.get()).values) {
    const l = v.labels as Record<string, unknown>;
    if (!Object.entries(labels).every(([k, val]) => String(l[k]) === val)) continue;
    const metricName = (v as { metricName?: string }).metricName;
    if (metricName === `${name}_count`) out.count += v.value;
    if (metricName === `${name}_sum`) out.sum += v.value;
  }
  return out;
}

function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

/** A TCP connection that never starts TLS; resolved once connected. */
async function silentSocket(t: Test, addr: string): Promise<net.Socket> {
  const s = net.connect(splitAddr(addr));
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  await once(s, 'connect', { signal: AbortSignal.timeout(WAIT_MS) });
  return s;
}

/**
 * A connection from `localAddress` that sends the first byte of a ClientHello and stalls: it
 * holds a handshake slot (a silent one would be closed to make room), until handshakeTimeoutSeconds.
 */
async function stalledHandshake(t: Test, addr: string, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ ...splitAddr(addr), localAddress });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  await once(s, 'connect', { signal: AbortSignal.timeout(WAIT_MS) });
  s.write(Buffer.from([0x16]));
  return s;
}

/** An mTLS connection attempt: the connected socket, or the error that ended it before the handshake completed. */
function tlsAttempt(
  t: Test,
  addr: string,
  w: World,
  as: TestIdentity,
): Promise<{ socket: TLSSocket; err: null } | { socket: null; err: Error }> {
  return new Promise((resolve) => {
    const s = tls.connect({
      ...splitAddr(addr),
      servername: 'localhost',
      ca: w.ca.certPem,
      cert: as.certPem,
      key: as.keyPem,
    });
    t.teardown(() => s.destroy());
    const timer = setTimeout(() => s.destroy(new Error('client-side wait expired')), WAIT_MS);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.on('error', () => undefined);
      resolve({ socket: s, err: null });
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      resolve({ socket: null, err });
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ socket: null, err: new Error('closed before the handshake completed') });
    });
  });
}

/* ---------------------------------------------------------------- observe mode */

t.test(
  'observe: after learning, a 100x body passes and is counted once as too_large; a tiny body as too_small',
  async (t) => {
    const s = await setup(t, { anomaly: { mode: 'observe', minSamples: MIN_SAMPLES } });
    await train(t, s);
    t.equal(await s.sc.metric('tollgate_payload_anomalies_total'), 0, 'nothing flagged while learning');

    t.equal(await post(s.client, HUGE), 200, 'the 100x body is forwarded');
    const big = s.app.seen.at(-1)!;
    t.equal(big.bodyLength, HUGE, 'the app received all of it');
    t.notOk(big.aborted);
    t.equal(
      await s.sc.metric('tollgate_payload_anomalies_total', {
        listener: 'ingest',
        route: 'default',
        kind: 'too_large',
      }),
      1,
      'one too_large',
    );
    const observed = logs(s.sc, 'payload anomaly observed');
    t.equal(observed.length, 1, 'one log line');
    t.match(observed[0], { level: 40, kind: 'too_large', value: HUGE, peer: PRODUCER });
    t.ok(
      Number(observed[0]?.expected) >= 800 && Number(observed[0]?.expected) <= 1200,
      `the typical size is about 1 KB (${String(observed[0]?.expected)})`,
    );
    const events = audits(s.sc, 'anomaly');
    t.equal(events.length, 1, 'one audit event');
    t.match(events[0], {
      listener: 'ingest',
      route: 'default',
      peer: PRODUCER,
      kind: 'too_large',
      value: HUGE,
      action: 'observed',
    });
    t.equal(await s.sc.metric('tollgate_audit_events_total', { type: 'anomaly' }), 1);
    t.equal(logs(s.sc, 'request refused').length, 0, 'nothing refused');

    t.equal(await post(s.client, 1), 200, 'a tiny body is forwarded too');
    t.equal(s.app.seen.at(-1)?.bodyLength, 1);
    t.equal(await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_small' }), 1, 'one too_small');
    t.equal(await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }), 1, 'too_large unchanged');
    t.equal(logs(s.sc, 'payload anomaly observed', { kind: 'too_small' }).length, 1);
    t.match(audits(s.sc, 'anomaly').at(-1), { kind: 'too_small', value: 1, action: 'observed' });
    t.equal(await s.sc.metric('tollgate_audit_events_total', { type: 'anomaly' }), 2);

    t.equal(await post(s.client, MEDIAN), 200, 'a normal body is not flagged');
    t.equal(await s.sc.metric('tollgate_payload_anomalies_total'), 2);

    // a chunked 100x body (no Content-Length) is flagged once, as its count crosses the bound, and streams on
    const chunked = await s.raw({ chunks: Array.from({ length: HUGE / 500 }, () => Buffer.alloc(500, 'c')) });
    t.equal(chunked.status, 200);
    t.equal(JSON.parse(chunked.body).bodyLength, HUGE, 'the app received all of it');
    t.equal(
      await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }),
      2,
      'counted once, not once per chunk',
    );
    t.equal(logs(s.sc, 'payload anomaly observed', { kind: 'too_large' }).length, 2);
    t.equal(audits(s.sc, 'anomaly').length, 3);
    t.equal(
      await s.sc.metric('tollgate_requests_total', { status_class: '4xx' }),
      0,
      'nothing refused in observe mode',
    );
  },
);

t.test(
  'observe: the model does not learn from what it flags — after 50 flagged 100x bodies, a 100x body is still flagged',
  async (t) => {
    const s = await setup(t, { anomaly: { mode: 'observe', minSamples: MIN_SAMPLES } });
    await train(t, s);
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) statuses.push(await post(s.client, HUGE));
    t.ok(
      statuses.every((x) => x === 200),
      '50 flagged bodies, all passed on',
    );
    await eventually(
      async () => (await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' })) === 50,
      WAIT_MS,
      '50 flags',
    );
    t.equal(await post(s.client, HUGE), 200);
    await eventually(
      async () => (await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' })) === 51,
      WAIT_MS,
      'the 51st flagged too',
    );
    t.equal(logs(s.sc, 'payload anomaly observed').length, 51, 'one log line each');
    t.equal(audits(s.sc, 'anomaly').length, 51, 'one audit event each');
    t.equal(await post(s.client, MEDIAN), 200);
    t.equal(await s.sc.metric('tollgate_payload_anomalies_total'), 51, 'a normal size is still normal');
  },
);

/* ---------------------------------------------------------------- block mode */

t.test('block: a 100x body with Content-Length is refused with 422 before it goes upstream', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'block', minSamples: MIN_SAMPLES } });
  await train(t, s);
  const startedBefore = s.started();

  const res = await s.raw({ headers: { 'content-length': HUGE }, chunks: [Buffer.alloc(HUGE, 'b')] });
  t.equal(res.status, 422);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_ANOMALY');
  t.match(JSON.parse(res.body), { error: 'ERR_PAYLOAD_ANOMALY', message: String });
  t.equal(s.started(), startedBefore, 'the app saw nothing');

  t.equal(
    await s.sc.metric('tollgate_payload_anomalies_total', { listener: 'ingest', route: 'default', kind: 'too_large' }),
    1,
    'one metric increment',
  );
  const refused = logs(s.sc, 'request refused', { code: 'ERR_PAYLOAD_ANOMALY' });
  t.equal(refused.length, 1, 'one log line');
  t.match(refused[0], { kind: 'too_large', bytes: HUGE });
  t.equal(logs(s.sc, 'payload anomaly observed').length, 0, 'not also logged as observed');
  const events = audits(s.sc, 'anomaly');
  t.equal(events.length, 1, 'one audit event');
  t.match(events[0], {
    listener: 'ingest',
    route: 'default',
    code: 'ERR_PAYLOAD_ANOMALY',
    peer: PRODUCER,
    kind: 'too_large',
    action: 'blocked',
  });
  t.equal(audits(s.sc, 'request_refused').length, 0, 'audited as an anomaly, not twice');
  t.equal(await s.sc.metric('tollgate_audit_events_total', { type: 'anomaly' }), 1);
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { status_class: '4xx' })) === 1,
    WAIT_MS,
    'the 422 counted',
  );

  t.equal(await post(s.client, MEDIAN), 200, 'a normal body still goes through');
});

t.test('block: with Expect: 100-continue the client gets 422 without ever sending its body', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'block', minSamples: MIN_SAMPLES } });
  await train(t, s);
  const startedBefore = s.started();

  const res = await s.raw({
    headers: { 'content-length': HUGE },
    chunks: [Buffer.alloc(HUGE, 'c')],
    expectContinue: true,
  });
  t.equal(res.status, 422);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_ANOMALY');
  t.equal(res.continued, false, 'no 100 Continue');
  t.equal(res.written, 0, 'the body was never sent');
  t.equal(s.started(), startedBefore, 'the app saw nothing');
  t.equal(await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }), 1);
  t.equal(logs(s.sc, 'request refused', { code: 'ERR_PAYLOAD_ANOMALY' }).length, 1);
  t.equal(audits(s.sc, 'anomaly').length, 1);

  // a normal size with Expect: 100-continue is told to go on and is forwarded
  const ok = await s.raw({
    headers: { 'content-length': MEDIAN },
    chunks: [Buffer.alloc(MEDIAN, 'd')],
    expectContinue: true,
  });
  t.equal(ok.status, 200);
  t.equal(ok.continued, true, '100 Continue for a body that is wanted');
  t.equal(s.app.seen.at(-1)?.bodyLength, MEDIAN);
});

t.test('block: a chunked 100x body is cut when its running count crosses the learned bound', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'block', minSamples: MIN_SAMPLES } });
  await train(t, s);
  const completeBefore = s.app.seen.filter((r) => !r.aborted).length;
  const startedBefore = s.started();

  const chunks = Array.from({ length: HUGE / 500 }, () => Buffer.alloc(500, 'e'));
  const res = await s.raw({ chunks });
  t.equal(res.status, 422, 'refused: the response had not started');
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_ANOMALY');
  t.ok(res.written < HUGE, `the client stopped early (${res.written} of ${HUGE} bytes written)`);

  // the app saw an aborted request or none at all, never the complete body
  await eventually(
    () => s.app.seen.length - NORMAL.length === s.started() - startedBefore,
    WAIT_MS,
    'the app to finish every request it started',
  );
  t.equal(s.app.seen.filter((r) => !r.aborted).length, completeBefore, 'no complete request reached the app');
  t.ok(
    s.app.seen.every((r) => r.bodyLength < 10 * MEDIAN),
    'the app never saw much more than the bound',
  );

  t.equal(await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }), 1, 'one metric increment');
  const refused = logs(s.sc, 'request refused', { code: 'ERR_PAYLOAD_ANOMALY' });
  t.equal(refused.length, 1, 'one log line');
  t.match(
    refused[0],
    { level: 40, detail: /^body passed \d+ bytes, the largest normal size$/ },
    'cut at the learned bound',
  );
  t.equal(logs(s.sc, 'payload anomaly observed').length, 0, 'not also logged as observed');
  const events = audits(s.sc, 'anomaly');
  t.equal(events.length, 1, 'one audit event');
  t.match(events[0], {
    listener: 'ingest',
    route: 'default',
    code: 'ERR_PAYLOAD_ANOMALY',
    action: 'blocked',
    peer: PRODUCER,
  });
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { status_class: '4xx' })) === 1,
    WAIT_MS,
    'the 422 counted',
  );
  t.equal(await post(s.client, MEDIAN), 200, 'the sidecar keeps serving');
});

/* ---------------------------------------------------------------- peer cap */

t.test(
  'peer cap: past maxTrackedPeers a new identity is judged by the route model and never gets one of its own',
  async (t) => {
    const s = await setup(t, { anomaly: { mode: 'observe', minSamples: MIN_SAMPLES, maxTrackedPeers: 1 } });
    await train(t, s); // the producer: the route model and the producer's own (the one tracked peer)

    t.equal(await post(s.otherClient, HUGE), 200);
    t.equal(
      await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }),
      1,
      'flagged by the route model although it trained nothing',
    );
    t.match(audits(s.sc, 'anomaly')[0], { peer: OTHER, kind: 'too_large' });

    // the other peer keeps sending 100x bodies: untracked, it never learns them as its normal
    const statuses: number[] = [];
    for (let i = 0; i <= MIN_SAMPLES; i++) statuses.push(await post(s.otherClient, HUGE));
    t.ok(
      statuses.every((x) => x === 200),
      'observe mode passes them all on',
    );
    await eventually(
      async () => (await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' })) === MIN_SAMPLES + 2,
      WAIT_MS,
      'every one flagged',
    );
    t.equal(logs(s.sc, 'payload anomaly observed', { peer: OTHER }).length, MIN_SAMPLES + 2);
  },
);

t.test('peer cap, the contrast: under maxTrackedPeers a peer with its own model learns its own normal', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'observe', minSamples: MIN_SAMPLES, maxTrackedPeers: 2 } });
  await train(t, s);
  // the route flags the other peer's sizes while its own model learns them
  const statuses: number[] = [];
  for (let i = 0; i < MIN_SAMPLES; i++) statuses.push(await post(s.otherClient, HUGE + i * 1000));
  t.ok(statuses.every((x) => x === 200));
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { status_class: '2xx' })) === 2 * MIN_SAMPLES,
    WAIT_MS,
    'recorded',
  );
  t.equal(
    await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }),
    MIN_SAMPLES,
    'flagged by the route while learning',
  );
  t.equal(await post(s.otherClient, HUGE + 5000), 200);
  t.equal(
    await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }),
    MIN_SAMPLES,
    'its own model finds it normal',
  );
  t.equal(await post(s.client, HUGE), 200);
  t.equal(
    await s.sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }),
    MIN_SAMPLES + 1,
    "still unusual for the producer's model",
  );
});

/* ---------------------------------------------------------------- hard limits */

t.test('a chunked body over maxBodyBytes: 413 with one log line, one audit event and one 4xx', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'off' }, limits: { maxBodyBytes: 4096 } });
  const chunks = Array.from({ length: 32 }, () => Buffer.alloc(512, 'f'));
  const res = await s.raw({ chunks });
  t.equal(res.status, 413);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE');
  t.ok(res.written < 32 * 512, `the client stopped early (${res.written} bytes written)`);
  t.equal(logs(s.sc, 'request refused', { code: 'ERR_PAYLOAD_TOO_LARGE' }).length, 1, 'one log line');
  const events = audits(s.sc, 'request_refused');
  t.equal(events.length, 1, 'one audit event');
  t.match(events[0], { code: 'ERR_PAYLOAD_TOO_LARGE', peer: PRODUCER });
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { listener: 'ingest', status_class: '4xx' })) === 1,
    WAIT_MS,
    'one 4xx',
  );
  t.equal(await s.sc.metric('tollgate_audit_events_total', { type: 'request_refused' }), 1);
  await eventually(() => s.app.seen.length === s.started(), WAIT_MS, 'the app to finish what it started');
  t.same(
    s.app.seen.filter((r) => !r.aborted),
    [],
    'the app never saw a complete body',
  );
});

t.test(
  'rate limit: the 4th immediate request of a peer gets 429 with Retry-After; another identity is not limited; after Retry-After the peer gets through',
  async (t) => {
    const s = await setup(t, { anomaly: { mode: 'off' }, limits: { requestsPerSecond: 2, burst: 3 } });
    const get = async (client: Client) => {
      const res = await client.request({ path: '/r', method: 'GET', headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS });
      const body = await res.body.text();
      return { status: res.statusCode, headers: res.headers, body };
    };
    for (let i = 0; i < 3; i++) t.equal((await get(s.client)).status, 200, `request ${i + 1} within the burst`);
    const limited = await get(s.client);
    const limitedAt = Date.now();
    t.equal(limited.status, 429);
    t.equal(limited.headers['x-tollgate-error'], 'ERR_RATE_LIMITED');
    t.match(JSON.parse(limited.body), { error: 'ERR_RATE_LIMITED' });
    const retryAfter = Number(limited.headers['retry-after']);
    t.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2,
      `Retry-After is whole seconds, at least 1 (${String(limited.headers['retry-after'])})`,
    );

    t.equal((await get(s.otherClient)).status, 200, 'another identity is not limited at the same time');
    t.equal(s.app.seen.length, 4, 'the app saw the three within the burst and the other peer');

    t.equal(logs(s.sc, 'request refused', { code: 'ERR_RATE_LIMITED' }).length, 1, 'one log line');
    const events = audits(s.sc, 'request_refused');
    t.equal(events.length, 1, 'one audit event');
    t.match(events[0], { code: 'ERR_RATE_LIMITED', peer: PRODUCER });
    await eventually(
      async () => (await s.sc.metric('tollgate_requests_total', { status_class: '4xx' })) === 1,
      WAIT_MS,
      'one 4xx',
    );

    // wait out Retry-After (bounded), then the same peer gets through again
    await eventually(() => Date.now() >= limitedAt + retryAfter * 1000, retryAfter * 1000 + 1000, 'Retry-After');
    t.equal((await get(s.client)).status, 200, 'through again after Retry-After');
    t.equal(logs(s.sc, 'request refused', { code: 'ERR_RATE_LIMITED' }).length, 1);
  },
);

t.test(
  'handshake cap: while stalled handshakes hold every slot a new mTLS connection is dropped as handshake_cap; once they go, it succeeds',
  async (t) => {
    // per address as many as in all: the test's own connections from 127.0.0.1 may overlap
    const s = await setup(t, {
      anomaly: { mode: 'off' },
      limits: { maxConcurrentHandshakes: 2, maxHandshakesPerSource: 2 },
    });
    // from two other addresses, so the cap is what refuses (not the per-address limit)
    const silent = [
      await stalledHandshake(t, s.sc.addr(), '127.0.0.2'),
      await stalledHandshake(t, s.sc.addr(), '127.0.0.3'),
    ];

    const dropped = await tlsAttempt(t, s.sc.addr(), s.w, s.producer);
    t.ok(dropped.err, `the mTLS connection was dropped (${dropped.err?.message ?? 'it connected'})`);
    t.ok(
      silent.every((x) => !x.destroyed),
      'the silent connections still hold their slots',
    );
    // the server handles the drop in its own turn of the event loop; wait for it (bounded)
    await eventually(
      () => logs(s.sc, 'connections dropped at accept: too many TLS handshakes in progress').length === 1,
      WAIT_MS,
      'the drop logged',
    );
    await eventually(() => audits(s.sc, 'handshake_failure').length >= 1, WAIT_MS, 'the drop audited');
    t.match(
      logs(s.sc, 'connections dropped at accept: too many TLS handshakes in progress')[0],
      { level: 40, dropped: 1, inProgress: 2, max: 2 },
      'one log line',
    );
    t.match(
      audits(s.sc, 'handshake_failure')[0],
      { listener: 'ingest', reason: 'handshake_cap', dropped: 1 },
      'audited as the cap',
    );
    t.equal(audits(s.sc, 'handshake_failure').length, 1, 'one audit event');
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', {
        listener: 'ingest',
        result: 'failure',
        reason: 'handshake_cap',
      }),
      1,
      'one handshake failure counted, as handshake_cap',
    );
    t.equal(logs(s.sc, 'TLS handshake failed').length, 0, 'not logged again as a handshake failure');
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason: 'other' }),
      0,
      'not as other',
    );
    t.equal(await s.sc.metric('tollgate_tls_handshakes_total', { result: 'success' }), 0, 'no handshake completed');
    t.equal(s.started(), 0, 'the app saw nothing');

    for (const x of silent) x.destroy();
    // the server sees the closes shortly after; poll with fresh connections, bounded
    let ok: Awaited<ReturnType<typeof tlsAttempt>> | null = null;
    await eventually(
      async () => {
        ok = await tlsAttempt(t, s.sc.addr(), s.w, s.producer);
        return ok.err === null;
      },
      WAIT_MS,
      'an mTLS connection to succeed once the slots are free',
    );
    ok!.socket?.destroy();
    const after = await s.client.request({
      path: '/after',
      method: 'GET',
      headersTimeout: WAIT_MS,
      bodyTimeout: WAIT_MS,
    });
    t.equal(after.statusCode, 200, 'requests go through again');
    await after.body.dump();
    t.equal(s.app.seen.length, 1);
    t.ok((await s.sc.metric('tollgate_tls_handshakes_total', { result: 'success' })) >= 1, 'handshakes complete again');
    t.equal(
      logs(s.sc, 'connections dropped at accept: too many TLS handshakes in progress').length,
      1,
      'nothing more dropped',
    );
  },
);

t.test(
  'a silent TCP client is dropped after handshakeTimeoutSeconds, counted as a timeout, and frees its handshake slot',
  async (t) => {
    const s = await setup(t, {
      anomaly: { mode: 'off' },
      limits: { handshakeTimeoutSeconds: 1, maxConcurrentHandshakes: 1 },
    });
    const start = Date.now();
    const silent = await silentSocket(t, s.sc.addr());
    await once(silent, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    const elapsed = Date.now() - start;
    t.ok(elapsed >= 900, `dropped only after about a second (${elapsed} ms)`);
    await eventually(
      async () => (await s.sc.metric('tollgate_tls_handshakes_total', { result: 'failure', reason: 'timeout' })) === 1,
      WAIT_MS,
      'the timeout counted',
    );
    t.equal(logs(s.sc, 'TLS handshake failed', { reason: 'timeout' }).length, 1, 'one log line');
    t.match(audits(s.sc, 'handshake_failure'), [{ reason: 'timeout' }], 'one audit event');
    const ok = await tlsAttempt(t, s.sc.addr(), s.w, s.producer);
    t.equal(ok.err, null, 'the slot it held is free again');
  },
);

t.test(
  'slow headers: a client that sends part of a request head and stalls is cut after headersTimeoutSeconds',
  async (t) => {
    const s = await setup(t, { anomaly: { mode: 'off' }, limits: { headersTimeoutSeconds: 1 } });
    const conn = await tlsAttempt(t, s.sc.addr(), s.w, s.producer);
    if (conn.err !== null) throw conn.err;
    const sock = conn.socket;
    let received = '';
    sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const start = Date.now();
    sock.write('POST /slow HTTP/1.1\r\nHost: localhost\r\nX-Partial: ');
    await once(sock, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    const elapsed = Date.now() - start;
    t.ok(elapsed >= 900, `cut only after about a second (${elapsed} ms)`);
    t.match(received, /^HTTP\/1\.1 408 /, 'answered 408 Request Timeout, then closed');
    t.equal(s.started(), 0, 'the app saw nothing');
  },
);

/* ---------------------------------------------------------------- payload sizes */

t.test('tollgate_payload_bytes observes one request and one response sample per proxied request', async (t) => {
  const s = await setup(t, { anomaly: { mode: 'off' } });
  const sizes = [1234, 0, 50_000];
  let responseBytes = 0;
  for (const size of sizes) {
    const res = await s.client.request({
      path: '/p',
      method: size === 0 ? 'GET' : 'POST',
      ...(size === 0 ? {} : { body: Buffer.alloc(size, 'g') }),
    });
    responseBytes += Buffer.byteLength(await res.body.text());
  }
  await eventually(
    async () => (await s.sc.metric('tollgate_requests_total', { status_class: '2xx' })) === sizes.length,
    WAIT_MS,
    'recorded',
  );
  const request = await histogram(s.sc, 'tollgate_payload_bytes', {
    listener: 'ingest',
    route: 'default',
    direction: 'request',
  });
  const response = await histogram(s.sc, 'tollgate_payload_bytes', {
    listener: 'ingest',
    route: 'default',
    direction: 'response',
  });
  t.same(request, { count: sizes.length, sum: 1234 + 50_000 }, 'one request sample each, the body sizes');
  t.same(response, { count: sizes.length, sum: responseBytes }, 'one response sample each, the response sizes');

  // a chunked body is counted as it streams
  const res = await s.raw({ chunks: [Buffer.alloc(700, 'h'), Buffer.alloc(300, 'h')] });
  t.equal(res.status, 200);
  await eventually(
    async () => (await histogram(s.sc, 'tollgate_payload_bytes', { direction: 'request' })).count === 4,
    WAIT_MS,
    'the chunked one recorded',
  );
  t.equal((await histogram(s.sc, 'tollgate_payload_bytes', { direction: 'request' })).sum, 1234 + 50_000 + 1000);
  t.equal(
    (await histogram(s.sc, 'tollgate_payload_bytes', { direction: 'response' })).sum,
    responseBytes + Buffer.byteLength(res.body),
  );
});

t.test(
  'with signatures verified, the size model judges authenticated requests only: an unsigned or replayed one raises no anomaly',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { dns: ['localhost'] });
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const key = await writeKey(join(w.dir, 'keys'), 'k1');
    const app = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      identity: ingest.files,
      keys: { dir: 'keys' },
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
          integrity: { verify: true },
          anomaly: { mode: 'block', minSamples: MIN_SAMPLES },
        },
      ],
    });
    const client = mtlsClient(t, sc.addr(), w.ca, producer);
    const send = async (headers: Record<string, string>, body: Buffer): Promise<{ status: number; error: unknown }> => {
      const res = await client.request({
        path: '/events',
        method: 'POST',
        headers,
        body,
        headersTimeout: WAIT_MS,
        bodyTimeout: WAIT_MS,
      });
      await res.body.dump();
      return { status: res.statusCode, error: res.headers['x-tollgate-error'] };
    };
    const signed = (body: Buffer): Record<string, string> =>
      signedHeaders({ method: 'POST', path: '/events', authority: sc.addr(), body, key });
    for (const size of NORMAL)
      t.equal((await send(signed(Buffer.alloc(size, 'a')), Buffer.alloc(size, 'a'))).status, 200);

    const huge = Buffer.alloc(HUGE, 'a');
    t.match(
      await send({ 'content-length': String(HUGE) }, huge),
      { status: 401, error: 'ERR_SIG_MISSING' },
      'unsigned and huge: refused for the signature',
    );
    const replayed = signed(Buffer.alloc(MEDIAN, 'a'));
    t.equal((await send(replayed, Buffer.alloc(MEDIAN, 'a'))).status, 200, 'a normal signed request');
    t.match(
      await send(replayed, Buffer.alloc(MEDIAN, 'a')),
      { status: 401, error: 'ERR_SIG_REPLAYED' },
      'its replay: refused as a replay',
    );
    t.same(sc.recentAnomalies.list(), [], 'no anomaly recorded for either');
    t.equal(await sc.metric('tollgate_payload_anomalies_total'), 0, 'none counted');

    t.match(
      await send(signed(huge), huge),
      { status: 422, error: 'ERR_PAYLOAD_ANOMALY' },
      'signed and huge: the size model blocks it',
    );
    t.equal(await sc.metric('tollgate_payload_anomalies_total', { kind: 'too_large' }), 1);
  },
);
