import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'undici';
import { world, startUpstream, startTestSidecar, mtlsClient } from './helpers/world.ts';

t.test('admin serves liveness, readiness, metrics and status on loopback', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const producer = await w.identity('producer', { spiffe: ['spiffe://example.org/producer'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: ['spiffe://example.org/producer'] },
      },
    ],
  });
  const admin = `http://127.0.0.1:${sc.admin!.port}`;
  t.equal(sc.admin!.host, '127.0.0.1');

  const res = await mtlsClient(t, sc.addr(), w.ca, producer).request({ path: '/x', method: 'GET' });
  t.equal(res.statusCode, 200);
  await res.body.dump();

  const live = await request(`${admin}/livez`);
  t.equal(live.statusCode, 200);
  await live.body.dump();
  const ready = await request(`${admin}/readyz`);
  t.equal(ready.statusCode, 200);
  t.same(await ready.body.json(), { ready: true });

  const metrics = await request(`${admin}/metrics`);
  const text = await metrics.body.text();
  t.match(text, /tollgate_tls_handshakes_total\{listener="ingest",result="success",reason=""\} 1/);
  t.match(text, /tollgate_authz_decisions_total\{listener="ingest",decision="allow"\} 1/);
  t.match(
    text,
    /tollgate_requests_total\{listener="ingest",route="default",status_class="2xx",protocol="(?:http\/1\.1|h2)"\} 1/,
  );
  t.match(text, /tollgate_cert_expiration_timestamp_seconds\{cert="identity"\} \d+/);
  t.match(text, /^process_cpu_seconds_total /m);

  const status = (await (await request(`${admin}/status`)).body.json()) as {
    version: string;
    ready: boolean;
    listeners: Array<{ name: string; mode: string }>;
    identity: { spkiPin: string };
  };
  t.equal(status.ready, true);
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  t.equal(status.version, pkg.version, 'the reported version is the package version');
  t.same(
    status.listeners.map((l) => [l.name, l.mode]),
    [['ingest', 'inbound']],
  );
  t.match(status.identity.spkiPin, /^sha256\//);
});

t.test('admin requires the bearer token from tokenFile when one is configured', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const app = await startUpstream(t);
  await writeFile(`${w.dir}/admin.token`, 'correct-horse-battery\n', { mode: 0o600 });
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0', tokenFile: 'admin.token' },
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
  });
  const url = `http://127.0.0.1:${sc.admin!.port}/status`;
  const none = await request(url);
  t.equal(none.statusCode, 401);
  await none.body.dump();
  const wrong = await request(url, { headers: { authorization: 'Bearer correct-horse-batterz' } });
  t.equal(wrong.statusCode, 401);
  await wrong.body.dump();
  const right = await request(url, { headers: { authorization: 'Bearer correct-horse-battery' } });
  t.equal(right.statusCode, 200);
  await right.body.dump();
});

t.test('readiness turns 503 once a shutdown has begun', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
  });
  t.equal(sc.ready(), true);
  const done = sc.shutdown();
  t.equal(sc.ready(), false);
  t.equal(await done, true);
});
