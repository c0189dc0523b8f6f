/**
 * Readiness: /readyz is 503 until the identity has loaded and every listener is bound, 200
 * then, and 503 again once draining begins. The Readiness object on its own, the admin app's
 * use of it, and a real sidecar observed while its start is held up.
 */
import t from 'tap';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { createReadiness } from '../src/core/readiness.ts';
import { buildAdminApp, type AdminReloadResult } from '../src/admin/app.ts';
import { startSidecar } from '../src/main.ts';
import { StartupError } from '../src/core/errors.ts';
import { validateConfig } from '../src/config/validate.ts';
import { makeCrl } from './helpers/pki.ts';
import {
  captureLogs,
  eventually,
  heldUpstream,
  mtlsClient,
  startTestSidecar,
  startUpstream,
  world,
} from './helpers/world.ts';
import { freePort, tryConnect } from './helpers/process.ts';

const WAIT_MS = 10_000;

t.test(
  'a Readiness is ready only once the identity loaded and the listeners are bound, and never again after draining began',
  async (t) => {
    const r = createReadiness();
    t.equal(r.ready(), false);
    t.same(r.reasons(), ['identity not loaded', 'listeners not bound']);
    r.markIdentityLoaded();
    t.equal(r.ready(), false);
    t.same(r.reasons(), ['listeners not bound']);
    r.markListenersBound();
    t.equal(r.ready(), true);
    t.same(r.reasons(), []);
    t.equal(r.draining(), false);
    r.markDraining();
    t.equal(r.ready(), false);
    t.equal(r.draining(), true);
    t.same(r.reasons(), ['draining']);
    r.markListenersBound();
    t.equal(r.ready(), false, 'marking again does not undo draining');
  },
);

t.test('the admin app answers /readyz from the Readiness it is handed: 503 with the reasons, then 200', async (t) => {
  const readiness = createReadiness();
  const reload = async (): Promise<AdminReloadResult> => ({ ok: true, problems: [], changed: false, ignored: null });
  const app = buildAdminApp({
    log: captureLogs().logger,
    registry: new Registry(),
    token: null,
    readiness,
    view: { status: () => ({}), reload },
  });
  t.teardown(() => app.close());
  const get = async (): Promise<{ status: number; body: unknown }> => {
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    return { status: res.statusCode, body: res.json() };
  };
  t.same(await get(), { status: 503, body: { ready: false, reasons: ['identity not loaded', 'listeners not bound'] } });
  readiness.markIdentityLoaded();
  t.same(await get(), { status: 503, body: { ready: false, reasons: ['listeners not bound'] } });
  readiness.markListenersBound();
  t.same(await get(), { status: 200, body: { ready: true } });
  readiness.markDraining();
  t.same(await get(), { status: 503, body: { ready: false, reasons: ['draining'] } });
});

async function readyz(port: number): Promise<{ status: number; body: unknown } | string> {
  try {
    const res = await request(`http://127.0.0.1:${port}/readyz`);
    return { status: res.statusCode, body: await res.body.json() };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

t.test(
  'a starting sidecar answers /readyz 503 while its identity is still loading, 200 once listeners are bound',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    const app = await startUpstream(t);
    // the CRL file is a FIFO: loading the identity waits until the test writes the CRL into it
    const crlFile = join(w.dir, 'ca.crl');
    execFileSync('mkfifo', [crlFile]);
    const adminPort = await freePort();
    const result = validateConfig(
      {
        admin: { listen: `127.0.0.1:${adminPort}` },
        identity: { ...ingest.files, crlFile },
        listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
      },
      { baseDir: w.dir, source: null },
    );
    if (!result.ok) throw new Error('config invalid');
    const starting = startSidecar(result.config, {
      registry: new Registry(),
      log: captureLogs().logger,
      identityTiming: { watchDebounceMs: 3_600_000 },
    });
    let sidecar: Awaited<typeof starting> | null = null;
    t.teardown(async () => {
      // should the test fail before the CRL is written, unblock the load so the start can finish
      if (sidecar === null) await writeFile(crlFile, await makeCrl(w.ca)).catch(() => undefined);
      await (sidecar ?? (await starting.catch(() => null)))?.shutdown();
    });

    let seen: Awaited<ReturnType<typeof readyz>> = 'not asked';
    await eventually(
      async () => typeof (seen = await readyz(adminPort)) !== 'string',
      WAIT_MS,
      'the admin server to answer',
    );
    t.same(
      seen,
      { status: 503, body: { ready: false, reasons: ['identity not loaded', 'listeners not bound'] } },
      'starting: 503, with why',
    );

    await writeFile(crlFile, await makeCrl(w.ca));
    sidecar = await starting;
    t.same(await readyz(adminPort), { status: 200, body: { ready: true } }, 'started: 200');
    t.equal(sidecar.admin?.port, adminPort);
  },
);

t.test('a draining sidecar answers /readyz 503', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const producer = await w.identity('producer');
  const app = await heldUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
  });
  t.same(await readyz(sc.admin!.port), { status: 200, body: { ready: true } });
  const pending = mtlsClient(t, sc.addr(), w.ca, producer).request({ path: '/held', method: 'GET' });
  await eventually(() => app.received() === 1, WAIT_MS, 'the app to receive the request');
  const stopped = sc.shutdown();
  t.same(await readyz(sc.admin!.port), { status: 503, body: { ready: false, reasons: ['draining'] } }, 'draining: 503');
  app.release();
  await (await pending).body.dump();
  t.equal(await stopped, true);
});

t.test('a listener that cannot bind fails the start and shuts the admin server down', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => taken.close(r)));
  const takenPort = (taken.address() as AddressInfo).port;
  const adminPort = await freePort();
  const err = await startTestSidecar(t, w.dir, {
    admin: { listen: `127.0.0.1:${adminPort}` },
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: `127.0.0.1:${takenPort}`,
        target: '127.0.0.1:9',
        allow: { any: true },
      },
    ],
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof StartupError, 'the start fails');
  t.match((err as StartupError).problems, [
    new RegExp(`^listeners\\[0\\]\\.listen: 127\\.0\\.0\\.1:${takenPort}: EADDRINUSE`),
  ]);
  t.equal(await readyz(adminPort), 'ECONNREFUSED', 'and the admin server is no longer listening');
});

t.test('a listener that cannot bind closes the ones bound before it: a failed start leaves no port open', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => taken.close(r)));
  const takenPort = (taken.address() as AddressInfo).port;
  const firstPort = await freePort();
  const err = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      { name: 'first', mode: 'inbound', listen: `127.0.0.1:${firstPort}`, target: '127.0.0.1:9', allow: { any: true } },
      { name: 'second', mode: 'outbound', listen: `127.0.0.1:${takenPort}`, target: '127.0.0.1:9' },
    ],
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof StartupError, 'the start fails');
  t.equal((err as StartupError).message, 'listener second cannot listen');
  t.match((err as StartupError).problems, [
    new RegExp(`^listeners\\[1\\]\\.listen: 127\\.0\\.0\\.1:${takenPort}: EADDRINUSE$`),
  ]);
  t.equal(await tryConnect(firstPort), 'ECONNREFUSED', 'the first listener, bound before, is closed again');
});
