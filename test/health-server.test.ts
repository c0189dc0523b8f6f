/**
 * The health server on `health.listen`: read-only /livez, /readyz and /metrics for the
 * kubelet and Prometheus, nothing else, no token; readiness follows the sidecar's.
 */
import t from 'tap';
import net from 'node:net';
import { request } from 'undici';
import { world, startUpstream, startTestSidecar, type Test } from './helpers/world.ts';
import { StartupError } from '../src/core/errors.ts';

async function healthSidecar(t: Test) {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    health: { listen: '127.0.0.1:0' },
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
  });
  const base = `http://127.0.0.1:${sc.health!.port}`;
  return { sc, base };
}

t.test('the health server answers /livez, /readyz and /metrics, and nothing else', async (t) => {
  const { base } = await healthSidecar(t);
  const live = await request(`${base}/livez`);
  t.equal(live.statusCode, 200);
  t.same(await live.body.json(), { status: 'ok' });
  const ready = await request(`${base}/readyz`);
  t.equal(ready.statusCode, 200);
  t.same(await ready.body.json(), { ready: true });
  const metrics = await request(`${base}/metrics`);
  t.equal(metrics.statusCode, 200);
  t.match(await metrics.body.text(), /^tollgate_cert_expiration_timestamp_seconds\{cert="identity"\} /m);
  for (const path of ['/status', '/config', '/reload', '/certs']) {
    const res = await request(`${base}${path}`, { method: path === '/reload' ? 'POST' : 'GET' });
    t.equal(res.statusCode, 404, `${path} is not on the health server`);
    await res.body.dump();
  }
  const post = await request(`${base}/readyz`, { method: 'POST' });
  t.equal(post.statusCode, 405, 'read-only: other methods are refused');
  t.equal(post.headers.allow, 'GET, HEAD');
  await post.body.dump();
});

t.test('health /readyz turns 503 with its reason once draining begins', async (t) => {
  const { sc, base } = await healthSidecar(t);
  sc.readiness.markDraining();
  const res = await request(`${base}/readyz`);
  t.equal(res.statusCode, 503);
  t.same(await res.body.json(), { ready: false, reasons: ['draining'] });
});

t.test('a health address that is taken fails start naming health.listen', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const port = (blocker.address() as net.AddressInfo).port;
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const err = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    health: { listen: `127.0.0.1:${port}` },
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:9', allow: { any: true } },
    ],
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof StartupError);
  t.match((err as StartupError).problems.join('\n'), /^health\.listen: 127\.0\.0\.1:\d+: EADDRINUSE/);
});
