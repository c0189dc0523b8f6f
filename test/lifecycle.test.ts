/**
 * Process lifecycle of `tollgate run`, as a real process: SIGTERM/SIGINT drain (stop accepting,
 * finish what is in flight, exit 0), a drain deadline that cuts work exits 1, SIGHUP reloads
 * and keeps serving.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Teardownable } from './helpers/pki.ts';
import { exitWithin, startTollgate as start, tryConnect, type Running } from './helpers/process.ts';
import {
  eventually,
  heldUpstream,
  mtlsClient,
  startUpstream,
  world,
  type TestIdentity,
  type World,
} from './helpers/world.ts';
import { PRODUCER } from './helpers/identities.ts';

const DAY_MS = 86_400_000;
const CONCURRENT = 20;
const UPSTREAM_DELAY_MS = 200;

interface Setup {
  w: World;
  ingest: TestIdentity;
  producer: TestIdentity;
}

async function setup(t: Teardownable): Promise<Setup> {
  const w = await world(t, { notAfter: new Date(Date.now() + 30 * DAY_MS) });
  const leaf = { notAfter: new Date(Date.now() + 20 * DAY_MS) };
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'], ...leaf });
  const producer = await w.identity('producer', { spiffe: [PRODUCER], ...leaf });
  return { w, ingest, producer };
}

/** Start `tollgate run` in front of `target`; resolve with the process and its listener address once it logs that it started. */
async function startTollgate(
  t: Teardownable,
  s: Setup,
  target: string,
  drainTimeoutSeconds: number,
): Promise<{ p: Running; address: string; port: number }> {
  const config = {
    admin: { listen: null },
    drainTimeoutSeconds,
    identity: { certFile: s.ingest.files.certFile, keyFile: s.ingest.files.keyFile, caFile: s.ingest.files.caFile },
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        protocol: 'http',
        listen: '127.0.0.1:0',
        target,
        allow: { spiffe: [PRODUCER] },
      },
    ],
  };
  const file = join(s.w.dir, 'tollgate.json');
  await writeFile(file, JSON.stringify(config));
  const p = start(t, ['run', '--config', file]);
  const started = (): Record<string, unknown> | undefined => p.logs().find((l) => l.msg === 'tollgate started');
  await eventually(() => started() !== undefined || !p.running(), 15_000, 'tollgate started');
  const line = started();
  if (line === undefined) throw new Error(`tollgate did not start; stderr: ${p.stderr()}`);
  const address = (line.listeners as Array<{ address: string }>)[0]!.address;
  return { p, address, port: Number(address.slice(address.lastIndexOf(':') + 1)) };
}

interface Outcome {
  status: number | null;
  body: string;
  error: string | null;
}

t.test('SIGTERM under load: every in-flight request completes, new connections are refused, exit 0', async (t) => {
  const s = await setup(t);
  // the app answers each request UPSTREAM_DELAY_MS after it arrived, but not before the test releases it
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const received: string[] = [];
  const app = await startUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      received.push(req.url ?? '');
      const slow = new Promise((r) => setTimeout(r, UPSTREAM_DELAY_MS));
      void Promise.all([slow, released]).then(() => {
        const body = JSON.stringify({ url: req.url, peer: req.headers['x-tollgate-peer'] });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
    });
  });
  const { p, address, port } = await startTollgate(t, s, app.addr, 10);

  let settled = 0;
  const inFlight: Array<Promise<Outcome>> = [];
  for (let i = 0; i < CONCURRENT; i++) {
    const client = mtlsClient(t, address, s.w.ca, s.producer);
    inFlight.push(
      client
        .request({ path: `/req/${i}`, method: 'GET' })
        .then(async (res) => ({ status: res.statusCode, body: await res.body.text(), error: null }))
        .catch((err: Error) => ({
          status: null,
          body: '',
          error: `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`,
        }))
        .finally(() => (settled += 1)),
    );
  }
  await eventually(() => received.length === CONCURRENT, 15_000, `the app to receive all ${CONCURRENT} requests`);
  t.equal(settled, 0, 'no request has finished yet: all are in flight');

  p.kill('SIGTERM');
  await eventually(async () => (await tryConnect(port)) === 'ECONNREFUSED', 5_000, 'new connections to be refused');
  t.pass('new connections are refused while draining');
  t.ok(p.running(), 'still running while requests are in flight');
  t.equal(settled, 0, 'draining did not cut any in-flight request');

  release();
  const outcomes = await Promise.all(inFlight);
  outcomes.forEach((o, i) => {
    t.equal(o.status, 200, `request ${i} completed with 200${o.error === null ? '' : ` (error: ${o.error})`}`);
    t.same(
      o.status === 200 ? JSON.parse(o.body) : null,
      { url: `/req/${i}`, peer: PRODUCER },
      `request ${i} got its own body`,
    );
  });

  const done = await exitWithin(p, 15_000);
  t.equal(done.code, 0, `exit 0 (stderr: ${p.stderr()})`);
  // a drain cut by its deadline would log clean: false and exit 1; the last-resort timer logs its own line
  t.ok(
    p.logs().some((l) => l.msg === 'stopped' && l.clean === true),
    'logged a clean stop: the drain finished within its deadline',
  );
  t.notOk(
    p.logs().some((l) => l.msg === 'drain did not finish in time: exiting now'),
    'not stopped by the last-resort timer',
  );
});

t.test('a drain deadline shorter than an in-flight request: the request is cut and the process exits 1', async (t) => {
  const s = await setup(t);
  let received = 0;
  const app = await startUpstream(t, (req) => {
    req.resume();
    req.on('end', () => (received += 1)); // and never answer
  });
  const { p, address } = await startTollgate(t, s, app.addr, 1);
  const client = mtlsClient(t, address, s.w.ca, s.producer);
  const outcome = client
    .request({ path: '/never', method: 'GET' })
    .then(async (res) => ({
      status: res.statusCode as number | null,
      error: null as string | null,
      body: await res.body.text(),
    }))
    .catch((err: Error) => ({ status: null, error: (err as NodeJS.ErrnoException).code ?? err.message, body: '' }));
  await eventually(() => received === 1, 10_000, 'the app to receive the request');

  const signalledAt = Date.now();
  p.kill('SIGTERM');
  const done = await exitWithin(p, 10_000);
  const elapsed = Date.now() - signalledAt;
  t.equal(done.code, 1, `exit 1: in-flight work was cut (stderr: ${p.stderr()})`);
  t.ok(elapsed >= 900, `not before the 1 s deadline (took ${elapsed} ms)`);
  t.notOk(
    p.logs().some((l) => l.msg === 'drain did not finish in time: exiting now'),
    'cut at the drain deadline, not by the last-resort timer',
  );
  const o = await outcome;
  t.equal(o.status, null, `the client's request failed (got ${String(o.status)} ${o.body})`);
  t.ok(o.error !== null, `with an error (${String(o.error)})`);
  t.ok(
    p.logs().some((l) => l.msg === 'stopped' && l.clean === false),
    'logged an unclean stop',
  );
});

t.test('SIGINT drains like SIGTERM: exit 0 when idle', async (t) => {
  const s = await setup(t);
  const app = await startUpstream(t);
  const { p, address } = await startTollgate(t, s, app.addr, 10);
  const client = mtlsClient(t, address, s.w.ca, s.producer);
  const res = await client.request({ path: '/', method: 'GET' });
  await res.body.dump();
  t.equal(res.statusCode, 200, 'serving before the signal');
  await client.close();

  p.kill('SIGINT');
  const done = await exitWithin(p, 10_000);
  t.equal(done.code, 0, `exit 0 (stderr: ${p.stderr()})`);
  t.equal(done.signal, null, 'exited by itself, not killed by the signal');
  t.ok(
    p.logs().some((l) => l.msg === 'draining' && l.signal === 'SIGINT'),
    'logged that SIGINT started the drain',
  );
});

t.test('SIGHUP with an unchanged identity reloads and keeps serving', async (t) => {
  const s = await setup(t);
  const app = await startUpstream(t);
  const { p, address } = await startTollgate(t, s, app.addr, 10);

  const before = mtlsClient(t, address, s.w.ca, s.producer);
  const r1 = await before.request({ path: '/before', method: 'GET' });
  await r1.body.dump();
  t.equal(r1.statusCode, 200, 'serving before SIGHUP');
  await before.close();

  p.kill('SIGHUP');
  await eventually(
    () => p.logs().some((l) => l.msg === 'certificates reloaded') || !p.running(),
    10_000,
    'the reload to be logged',
  );
  t.ok(p.running(), `still running after SIGHUP (stderr: ${p.stderr()})`);
  t.ok(
    p.logs().some((l) => l.msg === 'certificates reloaded'),
    'logged the reload',
  );

  // a new client: a new connection and handshake, with the reloaded material
  const after = mtlsClient(t, address, s.w.ca, s.producer);
  const r2 = await after.request({ path: '/after', method: 'GET' });
  const body = (await r2.body.json()) as { url: string };
  t.equal(r2.statusCode, 200, 'a request after SIGHUP succeeds');
  t.equal(body.url, '/after', 'and reaches the app');
  await after.close();
  t.ok(p.running(), 'still running');

  p.kill('SIGTERM');
  const done = await exitWithin(p, 10_000);
  t.equal(done.code, 0, 'and still drains cleanly afterwards');
});

function send(client: ReturnType<typeof mtlsClient>, path: string): Promise<Outcome> {
  return client
    .request({ path, method: 'GET' })
    .then(async (res) => ({
      status: res.statusCode as number | null,
      body: await res.body.text(),
      error: null as string | null,
    }))
    .catch((err: Error) => ({ status: null, body: '', error: (err as NodeJS.ErrnoException).code ?? err.message }));
}

t.test('SIGHUP while draining is ignored: the drain finishes and the process exits 0', async (t) => {
  const s = await setup(t);
  const app = await heldUpstream(t);
  const { p, address, port } = await startTollgate(t, s, app.addr, 10);
  const pending = send(mtlsClient(t, address, s.w.ca, s.producer), '/held');
  await eventually(() => app.received() === 1, 10_000, 'the app to receive the request');

  p.kill('SIGTERM');
  await eventually(async () => (await tryConnect(port)) === 'ECONNREFUSED', 5_000, 'the drain to start');
  p.kill('SIGHUP');
  await eventually(
    () => p.logs().some((l) => l.msg === 'SIGHUP ignored while draining') || !p.running(),
    10_000,
    'SIGHUP to be noted',
  );
  t.ok(p.running(), 'SIGHUP did not stop the process');
  t.notOk(
    p.logs().some((l) => l.msg === 'certificates reloaded'),
    'and did not reload',
  );

  app.release();
  const o = await pending;
  t.equal(o.status, 200, `the in-flight request still completes (${String(o.error)})`);
  t.equal(o.body, 'done /held', 'with its body');
  const done = await exitWithin(p, 15_000);
  t.equal(done.code, 0, 'exit 0');
});

t.test('a second SIGTERM while draining exits 1 at once', async (t) => {
  const s = await setup(t);
  const app = await heldUpstream(t);
  const { p, address, port } = await startTollgate(t, s, app.addr, 30);
  const pending = send(mtlsClient(t, address, s.w.ca, s.producer), '/held');
  await eventually(() => app.received() === 1, 10_000, 'the app to receive the request');

  p.kill('SIGTERM');
  await eventually(async () => (await tryConnect(port)) === 'ECONNREFUSED', 5_000, 'the drain to start');
  t.ok(p.running(), 'the first SIGTERM waits for the in-flight request');
  p.kill('SIGTERM');
  const done = await exitWithin(p, 10_000);
  t.equal(done.code, 1, 'exit 1: forced');
  // the reason, not the time: the second signal's own exit, not the end of the 30 s drain
  t.ok(
    p.logs().some((l) => l.msg === 'second signal while draining: exiting now'),
    'exited for the second signal',
  );
  t.notOk(
    p.logs().some((l) => l.msg === 'stopped'),
    'without the drain having ended',
  );
  const o = await pending;
  t.equal(o.status, null, 'the cut request failed on the client');
});
