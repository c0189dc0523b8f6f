/**
 * Certificate expiry: tollgate_cert_expiration_timestamp_seconds for the identity certificate
 * and every CA of the bundle (identity, ca, ca_1, …), updated on reload; a warning when fewer
 * than 7 days remain, at start, at reload, and again on a periodic re-check.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { makeCa, makeLeaf } from './helpers/pki.ts';
import { eventually, startTestSidecar, startUpstream, world } from './helpers/world.ts';

const DAY_MS = 86_400_000;
const NO_WATCH = { watchDebounceMs: 3_600_000 };

function notAfterSeconds(certPem: string): number {
  return new Date(new X509Certificate(certPem).validTo).getTime() / 1000;
}

t.test('expiry gauges cover the identity and each CA, and follow a reload', async (t) => {
  const w = await world(t, { notAfter: new Date(Date.now() + 40 * DAY_MS) });
  const second = await makeCa({ cn: 'second CA', notAfter: new Date(Date.now() + 50 * DAY_MS) });
  const ingest = await w.identity('ingest', { notAfter: new Date(Date.now() + 20 * DAY_MS) });
  await writeFile(ingest.files.caFile, w.ca.certPem + second.certPem);
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, { identity: ingest.files, listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }] }, { identityTiming: NO_WATCH });
  const gauge = (cert: string): Promise<number> => sc.metric('tollgate_cert_expiration_timestamp_seconds', { cert });
  t.equal(await gauge('identity'), notAfterSeconds(ingest.certPem), 'identity');
  t.equal(await gauge('ca'), notAfterSeconds(w.ca.certPem), 'ca: the first CA of the bundle');
  t.equal(await gauge('ca_1'), notAfterSeconds(second.certPem), 'ca_1: the second');
  t.notOk(sc.logs.lines.some((l) => l.msg === 'certificate expires soon'), 'nothing expires within 7 days: no warning');

  const next = await makeLeaf(w.ca, { cn: 'ingest-next', notAfter: new Date(Date.now() + 25 * DAY_MS) });
  await writeFile(ingest.files.certFile, next.certPem);
  await writeFile(ingest.files.keyFile, next.keyPem);
  await writeFile(ingest.files.caFile, w.ca.certPem);
  t.match(await sc.reload('api'), { ok: true, changed: true });
  t.equal(await gauge('identity'), notAfterSeconds(next.certPem), 'the reloaded identity');
  t.equal(await gauge('ca'), notAfterSeconds(w.ca.certPem));
  const caSeries = (await sc.registry.getSingleMetric('tollgate_cert_expiration_timestamp_seconds')!.get()).values.map((v) => v.labels.cert);
  t.same(caSeries.sort(), ['ca', 'identity'], 'ca_1 is gone with the CA it stood for');
});

t.test('fewer than 7 days left: a warning at start and again on each periodic check', async (t) => {
  const w = await world(t, { notAfter: new Date(Date.now() + 40 * DAY_MS) });
  const ingest = await w.identity('ingest', { notAfter: new Date(Date.now() + 3 * DAY_MS) });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(
    t,
    w.dir,
    { identity: ingest.files, listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }] },
    { identityTiming: { ...NO_WATCH, expiryCheckIntervalMs: 100 } },
  );
  const warnings = (): Array<Record<string, unknown>> => sc.logs.lines.filter((l) => l.msg === 'certificate expires soon');
  t.match(warnings()[0], { level: 40, warning: /^certFile: CN=ingest expires at .* \(less than 7 days\)$/ }, 'warned at start');
  t.equal(warnings().length, 1, 'once: the CA has 40 days');
  await eventually(() => warnings().length >= 3, 5_000, 'the periodic re-check to warn again');
  t.pass('the periodic check warns again');
});

t.test('a reload that brings a certificate with fewer than 7 days left warns', async (t) => {
  const w = await world(t, { notAfter: new Date(Date.now() + 40 * DAY_MS) });
  const ingest = await w.identity('ingest', { notAfter: new Date(Date.now() + 20 * DAY_MS) });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, { identity: ingest.files, listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }] }, { identityTiming: NO_WATCH });
  t.notOk(sc.logs.lines.some((l) => l.msg === 'certificate expires soon'));
  const soon = await makeLeaf(w.ca, { cn: 'ingest-soon', notAfter: new Date(Date.now() + 2 * DAY_MS) });
  await writeFile(ingest.files.certFile, soon.certPem);
  await writeFile(ingest.files.keyFile, soon.keyPem);
  t.match(await sc.reload('api'), { ok: true, changed: true });
  t.match(sc.logs.lines.find((l) => l.msg === 'certificate expires soon'), { level: 40, warning: /CN=ingest-soon expires at/ });
});
