/**
 * Certificate expiry: tollgate_cert_expiration_timestamp_seconds for the identity certificate
 * and every CA of the bundle (identity, ca, ca_1, …), updated on reload; a warning when less than
 * a fraction of a certificate's own lifetime is left (identity.expiryWarningFraction, a third by
 * default), at start, at reload, and again on a periodic re-check. The webhook's serving
 * certificate follows the same rule. Certificates are issued per run with chosen windows.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { expiryNotices, loadIdentity, type IdentityFiles } from '../src/certs/identityBundle.ts';
import { validateConfig } from '../src/config/validate.ts';
import { checkServingCert } from '../src/webhook/servingCert.ts';
import { hoursAgo, makeCa, makeLeaf } from './helpers/pki.ts';
import { eventually, startTestSidecar, startUpstream, world, type TestIdentity } from './helpers/world.ts';

const DAY_MS = 86_400_000;
const NO_WATCH = { watchDebounceMs: 3_600_000 };
const LONG_CA = { notBefore: hoursAgo(30 * 24), notAfter: hoursAgo(-40 * 24) };
/** a 24 h certificate with 20 h left (five sixths) and with 7 h left (under a third) */
const DAY_CERT_20H_LEFT = { notBefore: hoursAgo(4), notAfter: hoursAgo(-20) };
const DAY_CERT_7H_LEFT = { notBefore: hoursAgo(17), notAfter: hoursAgo(-7) };

/** one inbound listener that lets any client of the CA through to `target` */
function inboundTo(target: string): Array<Record<string, unknown>> {
  return [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target, allow: { any: true } }];
}

function notAfterSeconds(certPem: string): number {
  return new Date(new X509Certificate(certPem).validTo).getTime() / 1000;
}

function identityFiles(id: TestIdentity, expiryWarningFraction?: number): IdentityFiles {
  return { ...id.files, crlFile: null, ...(expiryWarningFraction === undefined ? {} : { expiryWarningFraction }) };
}

async function loadWarnings(t: Tap, files: IdentityFiles, now = new Date()): Promise<readonly string[]> {
  const loaded = await loadIdentity(files, now);
  if (!loaded.ok) {
    t.fail(`the identity did not load: ${loaded.problems.join('; ')}`);
    return [];
  }
  return loaded.warnings;
}

type Tap = { fail(msg: string): void };

t.test('expiry gauges cover the identity and each CA, and follow a reload', async (t) => {
  const w = await world(t, { notAfter: new Date(Date.now() + 40 * DAY_MS) });
  const second = await makeCa({ cn: 'second CA', notAfter: new Date(Date.now() + 50 * DAY_MS) });
  const ingest = await w.identity('ingest', { notAfter: new Date(Date.now() + 20 * DAY_MS) });
  await writeFile(ingest.files.caFile, w.ca.certPem + second.certPem);
  const app = await startUpstream(t);
  const sc = await startTestSidecar(
    t,
    w.dir,
    { identity: ingest.files, listeners: inboundTo(app.addr) },
    { identityTiming: NO_WATCH },
  );
  const gauge = (cert: string): Promise<number> => sc.metric('tollgate_cert_expiration_timestamp_seconds', { cert });
  t.equal(await gauge('identity'), notAfterSeconds(ingest.certPem), 'identity');
  t.equal(await gauge('ca'), notAfterSeconds(w.ca.certPem), 'ca: the first CA of the bundle');
  t.equal(await gauge('ca_1'), notAfterSeconds(second.certPem), 'ca_1: the second');
  t.notOk(
    sc.logs.lines.some((l) => l.msg === 'certificate expires soon'),
    'every certificate has most of its lifetime left: no warning',
  );

  const next = await makeLeaf(w.ca, { cn: 'ingest-next', notAfter: new Date(Date.now() + 25 * DAY_MS) });
  await writeFile(ingest.files.certFile, next.certPem);
  await writeFile(ingest.files.keyFile, next.keyPem);
  await writeFile(ingest.files.caFile, w.ca.certPem);
  t.match(await sc.reload('api'), { ok: true, changed: true });
  t.equal(await gauge('identity'), notAfterSeconds(next.certPem), 'the reloaded identity');
  t.equal(await gauge('ca'), notAfterSeconds(w.ca.certPem));
  const caSeries = (await sc.registry.getSingleMetric('tollgate_cert_expiration_timestamp_seconds')!.get()).values.map(
    (v) => v.labels.cert,
  );
  t.same(caSeries.sort(), ['ca', 'identity'], 'ca_1 is gone with the CA it stood for');
});

t.test(
  'a 24 h certificate with 20 h left is not warned about; with 7 h left it is, saying what is left of what lifetime',
  async (t) => {
    const w = await world(t, LONG_CA);
    const fresh = await w.identity('fresh', DAY_CERT_20H_LEFT);
    const late = await w.identity('late', DAY_CERT_7H_LEFT);
    t.same(await loadWarnings(t, identityFiles(fresh)), [], '20 h of 24 h left: no warning');
    const warnings = await loadWarnings(t, identityFiles(late));
    t.equal(warnings.length, 1, 'one warning: the CA has 40 of its 70 days left');
    t.match(warnings[0], /^certFile .*tls\.crt: CN=late expires at .+ GMT, 7h of its 24h lifetime left$/);
  },
);

t.test('a CA is held to its own lifetime: 9 of its 29 days left is under a third', async (t) => {
  const w = await world(t, { notBefore: hoursAgo(20 * 24), notAfter: hoursAgo(-9 * 24) });
  const leaf = await w.identity('leaf', DAY_CERT_20H_LEFT);
  const warnings = await loadWarnings(t, identityFiles(leaf));
  t.equal(warnings.length, 1);
  t.match(warnings[0], /^caFile .*ca\.crt: CN=tollgate test CA expires at .*, 9d of its 29d lifetime left$/);
});

t.test('identity.expiryWarningFraction moves the threshold both ways', async (t) => {
  const w = await world(t, LONG_CA);
  const fresh = await w.identity('fresh', DAY_CERT_20H_LEFT);
  const late = await w.identity('late', DAY_CERT_7H_LEFT);
  const early = (await loadWarnings(t, identityFiles(fresh, 0.9))).filter((w) => w.startsWith('certFile'));
  t.match(
    early,
    [/CN=fresh expires at .*, 20h of its 24h lifetime left$/],
    'warn with nine tenths left: 20 h of 24 h is less',
  );
  t.same(await loadWarnings(t, identityFiles(late, 0.25)), [], 'warn with a quarter left: 7 h of 24 h is more');
});

t.test(
  'an expired certificate is always reported, as expired and not as expiring, whatever the fraction',
  async (t) => {
    const w = await world(t, LONG_CA);
    const id = await w.identity('ingest', DAY_CERT_20H_LEFT);
    const loaded = await loadIdentity(identityFiles(id), new Date());
    if (!loaded.ok) throw new Error(loaded.problems.join('; '));
    for (const fraction of [0.01, 0.5, 0.99]) {
      const later = expiryNotices(loaded.bundle, hoursAgo(-21), fraction);
      t.same(
        later.expiring.filter((w) => w.startsWith('certFile')),
        [],
        `fraction ${fraction}: the leaf does not "expire soon"`,
      );
      t.match(later.expired, [/^certFile: CN=ingest expired at /], `fraction ${fraction}: the leaf has expired`);
    }
    const refused = await loadIdentity(identityFiles(id), hoursAgo(-21));
    t.match(refused, { ok: false, problems: [/CN=ingest expired at /] }, 'and it does not load');
  },
);

t.test(
  "a sidecar with less than a third of its certificate's lifetime left warns at start and again on each periodic check",
  async (t) => {
    const w = await world(t, LONG_CA);
    const ingest = await w.identity('ingest', DAY_CERT_7H_LEFT);
    const app = await startUpstream(t);
    const sc = await startTestSidecar(
      t,
      w.dir,
      { identity: ingest.files, listeners: inboundTo(app.addr) },
      { identityTiming: { ...NO_WATCH, expiryCheckIntervalMs: 100 } },
    );
    const warnings = (): Array<Record<string, unknown>> =>
      sc.logs.lines.filter((l) => l.msg === 'certificate expires soon');
    t.match(
      warnings()[0],
      { level: 40, warning: /^certFile: CN=ingest expires at .*, 7h of its 24h lifetime left$/ },
      'warned at start',
    );
    t.equal(warnings().length, 1, 'once: the CA has most of its lifetime left');
    await eventually(() => warnings().length >= 3, 5_000, 'the periodic re-check to warn again');
    t.pass('the periodic check warns again');
  },
);

t.test('a sidecar holds its certificates to the configured identity.expiryWarningFraction', async (t) => {
  const w = await world(t, LONG_CA);
  const ingest = await w.identity('ingest', DAY_CERT_20H_LEFT);
  const app = await startUpstream(t);
  const listeners = inboundTo(app.addr);
  const byDefault = await startTestSidecar(
    t,
    w.dir,
    { identity: ingest.files, listeners },
    { identityTiming: NO_WATCH },
  );
  t.notOk(
    byDefault.logs.lines.some((l) => l.msg === 'certificate expires soon'),
    'by default, 20 h of 24 h left is fine',
  );
  await byDefault.shutdown();
  const strict = await startTestSidecar(
    t,
    w.dir,
    { identity: { ...ingest.files, expiryWarningFraction: 0.9 }, listeners },
    { identityTiming: NO_WATCH },
  );
  t.match(
    strict.logs.lines.find((l) => l.msg === 'certificate expires soon'),
    { level: 40, warning: /CN=ingest expires at .*, 20h of its 24h lifetime left$/ },
    'with 0.9, it is warned about',
  );
});

t.test('a reload that brings a certificate with less than a third of its lifetime left warns', async (t) => {
  const w = await world(t, LONG_CA);
  const ingest = await w.identity('ingest', { notAfter: new Date(Date.now() + 20 * DAY_MS) });
  const app = await startUpstream(t);
  const listeners = inboundTo(app.addr);
  const sc = await startTestSidecar(t, w.dir, { identity: ingest.files, listeners }, { identityTiming: NO_WATCH });
  t.notOk(sc.logs.lines.some((l) => l.msg === 'certificate expires soon'));
  const soon = await makeLeaf(w.ca, { cn: 'ingest-soon', notBefore: hoursAgo(9 * 24), notAfter: hoursAgo(-3 * 24) });
  await writeFile(ingest.files.certFile, soon.certPem);
  await writeFile(ingest.files.keyFile, soon.keyPem);
  t.match(await sc.reload('api'), { ok: true, changed: true });
  const warning = sc.logs.lines.find((l) => l.msg === 'certificate expires soon');
  t.match(warning, { level: 40, warning: /CN=ingest-soon expires at .*, 3d of its 12d lifetime left$/ });
});

t.test('the webhook serving certificate follows the same rule: a third of its lifetime', async (t) => {
  const ca = await makeCa(LONG_CA);
  const files = { certFile: '/tls/tls.crt', keyFile: '/tls/tls.key' };
  const fresh = await makeLeaf(ca, { cn: 'injector', ...DAY_CERT_20H_LEFT });
  const late = await makeLeaf(ca, { cn: 'injector', ...DAY_CERT_7H_LEFT });
  const check = (leaf: { certPem: string; keyPem: string }, now: Date): ReturnType<typeof checkServingCert> =>
    checkServingCert(Buffer.from(leaf.certPem), Buffer.from(leaf.keyPem), files, now);
  const freshResult = check(fresh, new Date());
  t.same(freshResult.ok ? freshResult.warnings : freshResult.problems, [], '20 h of 24 h left: loads, no warning');
  const lateWarning = /^--cert \/tls\/tls\.crt: CN=injector expires at .*, 7h of its 24h lifetime left$/;
  t.match(check(late, new Date()), { ok: true, warnings: [lateWarning] }, '7 h of 24 h left: a warning');
  t.match(check(late, hoursAgo(-8)), { ok: false, problems: [/CN=injector expired at /] }, 'expired: a problem');
});

t.test('identity.expiryWarningFraction must be a number between 0 and 1, both excluded', async (t) => {
  const config = (fraction?: unknown): unknown => ({
    identity: {
      certFile: 'tls.crt',
      keyFile: 'tls.key',
      caFile: 'ca.crt',
      ...(fraction === undefined ? {} : { expiryWarningFraction: fraction }),
    },
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:8080', allow: { any: true } },
    ],
  });
  const validate = (raw: unknown): ReturnType<typeof validateConfig> =>
    validateConfig(raw, { baseDir: '/etc/tollgate', source: null });
  for (const bad of [0, 1, -1, 1.5, 'x', '0.3', null]) {
    t.match(
      validate(config(bad)),
      { ok: false, problems: [{ path: 'identity.expiryWarningFraction', message: /between 0 and 1, both excluded/ }] },
      `${JSON.stringify(bad)} is refused with the key's path`,
    );
  }
  t.match(validate(config(0.25)), { ok: true, config: { identity: { expiryWarningFraction: 0.25 } } }, '0.25 is taken');
  const byDefault = validate(config());
  t.ok(byDefault.ok && Math.abs(byDefault.config.identity.expiryWarningFraction - 1 / 3) < 1e-9, 'absent: a third');
});
