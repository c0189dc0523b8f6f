/**
 * `tollgate webhook` as a real process on loopback, called the way the API server calls it:
 * HTTPS to the Service's DNS name (checked against the caBundle), POST /mutate with an
 * AdmissionReview. Malformed input gets 400 and the process keeps serving; the certificate is
 * reloaded when its Secret volume changes; bad flags exit 2; SIGTERM drains and exits 0.
 * GET /metrics counts admissions by outcome from a first scrape of zeros, and passes promtool.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'undici';
import { exitWithin, startTollgate, type Running } from './helpers/process.ts';
import { makeCa, makeLeaf, tempDir, type Teardownable, type TestCa } from './helpers/pki.ts';
import { secretVolume, type SecretVolume } from './helpers/secretVolume.ts';
import { eventually, type Test } from './helpers/world.ts';
import { goldenFile, reviewFixtures, type DecodedAnswer } from './helpers/admission.ts';
import { expositionProblems, parsePrometheusText, sampleValue, type MetricFamily } from './helpers/prometheusText.ts';
import { NEEDS_PROMTOOL, promtoolCheckMetrics } from './helpers/promtool.ts';
import { ADMISSION_SERIES } from '../src/webhook/webhookMetrics.ts';

const SERVICE_DNS = 'tollgate-injector.tollgate-system.svc';
const IMAGE = 'registry.example.com/tollgate:0.1.0';
const STARTUP_MS = 15_000;

interface Webhook {
  readonly p: Running;
  readonly address: string;
  readonly ca: TestCa;
  readonly volume: SecretVolume;
  readonly dir: string;
}

async function servingLeaf(
  ca: TestCa,
  cn = 'tollgate-injector',
): Promise<{ certPem: string; keyPem: string; serial: string }> {
  const leaf = await makeLeaf(ca, { cn, dns: [SERVICE_DNS, `${SERVICE_DNS}.cluster.local`], ips: [], eku: 'server' });
  return { certPem: leaf.certPem, keyPem: leaf.keyPem, serial: new X509Certificate(leaf.certPem).serialNumber };
}

async function startWebhook(t: Teardownable, extra: string[] = []): Promise<Webhook & { serial: string }> {
  const ca = await makeCa();
  const dir = await tempDir(t, 'tollgate-webhook-');
  const leaf = await servingLeaf(ca);
  const volume = await secretVolume(join(dir, 'tls'), { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem });
  const p = startTollgate(t, [
    'webhook',
    '--listen',
    '127.0.0.1:0',
    '--cert',
    volume.path('tls.crt'),
    '--key',
    volume.path('tls.key'),
    '--image',
    IMAGE,
    ...extra,
  ]);
  await eventually(() => started(p) !== undefined || !p.running(), STARTUP_MS, 'tollgate webhook started');
  const line = started(p);
  if (line === undefined) throw new Error(`the webhook did not start\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
  return { p, address: String(line.address), ca, volume, dir, serial: leaf.serial };
}

function started(p: Running): Record<string, unknown> | undefined {
  return p.logs().find((l) => l.msg === 'tollgate webhook started');
}

/** An HTTPS client that trusts only the caBundle and checks the Service DNS name, as the API server does. */
function apiServer(t: Teardownable, w: { address: string; ca: TestCa }): Client {
  const client = new Client(`https://${w.address}`, { connect: { ca: w.ca.certPem, servername: SERVICE_DNS } });
  t.teardown(() => client.destroy());
  return client;
}

async function post(
  client: Client,
  body: string | Buffer,
  contentType = 'application/json',
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await client.request({ method: 'POST', path: '/mutate', headers: { 'content-type': contentType }, body });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

/** What the webhook answers to a request head sent alone on a new TLS connection (its first response, whole). */
function answerToHead(w: { address: string; ca: TestCa }, head: string): Promise<string> {
  const [host, port] = w.address.split(':');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port: Number(port), ca: w.ca.certPem, servername: SERVICE_DNS }, () =>
      socket.write(head),
    );
    let text = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text);
      if (end >= 0 && length !== null && text.length >= end + 4 + Number(length[1])) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.once('error', reject);
    socket.once('close', () => resolve(text));
  });
}

/** The serial number of the certificate a new TLS connection is served. */
function servedSerial(w: { address: string; ca: TestCa }): Promise<string> {
  const [host, port] = w.address.split(':');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port: Number(port), ca: w.ca.certPem, servername: SERVICE_DNS }, () => {
      const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
      socket.end();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}

const native = reviewFixtures().find((f) => f.name === 'deployment-pod-native')!;

t.test(
  'POST /mutate over HTTPS answers the AdmissionReview with the JSONPatch, as the API server expects',
  async (t) => {
    const w = await startWebhook(t);
    const client = apiServer(t, w);
    const { status, json } = await post(client, native.text);
    t.equal(status, 200);
    t.equal(json.apiVersion, 'admission.k8s.io/v1');
    t.equal(json.kind, 'AdmissionReview');
    const response = json.response as {
      uid: string;
      allowed: boolean;
      patchType: string;
      patch: string;
      warnings?: string[];
    };
    t.equal(response.uid, native.review.request.uid, 'the uid is copied');
    t.equal(response.allowed, true);
    t.equal(response.patchType, 'JSONPatch');
    const expected = JSON.parse(readFileSync(goldenFile(native.name), 'utf8')) as DecodedAnswer;
    t.same(
      JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')),
      expected.patch,
      'the same patch as the golden file',
    );

    const denied = await post(client, reviewFixtures().find((f) => f.name === 'host-network')!.text);
    t.match(
      denied.json.response,
      { allowed: false, status: { code: 403, message: /hostNetwork/ } },
      'an opted-in pod that cannot be injected is denied',
    );
    const untouched = await post(client, reviewFixtures().find((f) => f.name === 'opted-out')!.text);
    t.same(
      Object.keys(untouched.json.response as object).sort(),
      ['allowed', 'uid'],
      'a pod that did not opt in: allowed, no patch',
    );

    for (const path of ['/livez', '/readyz']) {
      const res = await client.request({ method: 'GET', path });
      t.equal(res.statusCode, 200, `${path} is 200`);
      await res.body.dump();
    }
    const [host, port] = w.address.split(':');
    const version = await new Promise<string | null>((resolve, reject) => {
      const s = tls.connect({ host, port: Number(port), ca: w.ca.certPem, servername: SERVICE_DNS }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.once('error', reject);
    });
    t.equal(version, 'TLSv1.3', 'TLS 1.3 with a modern client');
    const old = await new Promise<string>((resolve) => {
      const s = tls.connect(
        {
          host,
          port: Number(port),
          ca: w.ca.certPem,
          servername: SERVICE_DNS,
          maxVersion: 'TLSv1.2',
          ciphers: 'AES128-SHA',
        },
        () => resolve('connected'),
      );
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    t.not(old, 'connected', "tollgate's TLS policy: no TLS 1.2 without ECDHE and AEAD");
    const log = w.p.logs().find((l) => l.msg === 'admission reviewed' && l.outcome === 'injected');
    t.match(
      log,
      { uid: native.review.request.uid, namespace: 'pipeline', generateName: 'ingest-6b8f9c7d5-', dryRun: false },
      'one log line per review',
    );
    t.notMatch(w.p.stdout(), /ingest-keys.*tls\.key|BEGIN/, 'no key material in the logs');
  },
);

async function webhookMetrics(t: Test, client: Client): Promise<{ text: string; families: MetricFamily[] }> {
  const res = await client.request({ method: 'GET', path: '/metrics' });
  t.equal(res.statusCode, 200, 'GET /metrics is 200');
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'Prometheus text format 0.0.4');
  const text = await res.body.text();
  return { text, families: parsePrometheusText(text) };
}

t.test(
  'GET /metrics counts every admission by outcome from a first scrape of zeros, times it, and serves the process metrics',
  async (t) => {
    const w = await startWebhook(t);
    const client = apiServer(t, w);
    const before = await webhookMetrics(t, client);
    t.same(expositionProblems(before.families), [], 'well formed');
    const admissions = (families: MetricFamily[]): string[] =>
      families
        .find((f) => f.name === 'tollgate_webhook_admissions_total')!
        .samples.map((s) => `${s.labels.outcome}/${s.labels.reason}=${s.value}`)
        .sort();
    const zeros = Object.values(ADMISSION_SERIES).map(([outcome, reason]) => `${outcome}/${reason}=0`);
    t.same(admissions(before.families), zeros.sort(), 'every outcome and reason at 0 before any review');
    t.equal(
      sampleValue(before.families, 'tollgate_webhook_admission_duration_seconds_count'),
      0,
      'no admission timed yet',
    );
    const names = before.families.map((f) => f.name);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_total_bytes']) {
      t.ok(names.includes(name), `${name} is served`);
    }
    t.same(
      names.filter((n) => !/^(tollgate_webhook_|process_|nodejs_)/.test(n)),
      [],
      'nothing of the sidecar, no tollgate_process_ names',
    );

    const fixture = (name: string): string => reviewFixtures().find((f) => f.name === name)!.text;
    t.equal((await post(client, native.text)).status, 200);
    t.equal((await post(client, fixture('host-network'))).status, 200);
    t.equal((await post(client, fixture('opted-out'))).status, 200);
    t.equal((await post(client, '{"apiVersion":')).status, 400);
    t.equal((await post(client, native.text, 'text/plain')).status, 415);
    const get = await client.request({ method: 'GET', path: '/mutate' });
    t.equal(get.statusCode, 405, 'a GET /mutate is not an admission');
    await get.body.dump();
    const refused = await client.request({ method: 'POST', path: '/metrics', body: 'x' });
    t.equal(refused.statusCode, 405, 'POST /metrics: 405');
    t.equal(refused.headers.allow, 'GET, HEAD');
    await refused.body.dump();

    const after = await webhookMetrics(t, client);
    t.same(expositionProblems(after.families), [], 'still well formed');
    const counted = admissions(after.families).filter((s) => !s.endsWith('=0'));
    const expected = [
      'denied/=1',
      'error/bad_review=1',
      'error/unsupported_media_type=1',
      'injected/=1',
      'skipped/not_opted_in=1',
    ];
    t.same(counted, expected, 'each review under what it was answered');
    t.equal(
      sampleValue(after.families, 'tollgate_webhook_admission_duration_seconds_count'),
      5,
      'five admissions timed',
    );
    const seconds = sampleValue(after.families, 'tollgate_webhook_admission_duration_seconds_sum');
    t.ok(seconds > 0 && seconds < 5, `taking some time (${seconds} s in all)`);

    t.test('and passes promtool check metrics', { skip: NEEDS_PROMTOOL }, async (t) => {
      for (const [what, text] of [
        ['before any review', before.text],
        ['after five', after.text],
      ] as const) {
        const verdict = await promtoolCheckMetrics(text);
        t.equal(verdict.code, 0, `${what}: exit 0`);
        t.equal(verdict.output, '', `${what}: no problem named`);
      }
    });
  },
);

t.test('malformed input gets a 4xx with a message, never a crash, and the webhook keeps serving', async (t) => {
  const w = await startWebhook(t);
  const client = apiServer(t, w);
  const bad = await post(client, '{"apiVersion":');
  t.equal(bad.status, 400);
  t.match(bad.json, { error: 'bad_review', message: /^the body is not JSON/ });
  const v1beta1 = await post(
    client,
    JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }),
  );
  t.equal(v1beta1.status, 400);
  t.match(v1beta1.json.message, /apiVersion must be admission\.k8s\.io\/v1/);
  const noUid = await post(
    client,
    JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { operation: 'CREATE' } }),
  );
  t.equal(noUid.status, 400);
  t.match(noUid.json.message, /request\.uid: required/);
  const text = await post(client, native.text, 'text/plain');
  t.equal(text.status, 415, 'not JSON by content type');
  // declared, not sent: a client still writing 5 MiB when the 413 comes may see its socket closed (EPIPE)
  const huge = await answerToHead(
    w,
    `POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${5 * 1024 * 1024}\r\n\r\n`,
  );
  t.match(huge, /^HTTP\/1\.1 413 /, 'a body declared over 4 MiB is refused before it is sent');
  t.match(huge, /"error":"too_large"/);

  const fresh = apiServer(t, w);
  const get = await fresh.request({ method: 'GET', path: '/mutate' });
  t.equal(get.statusCode, 405);
  t.equal(get.headers.allow, 'POST');
  await get.body.dump();
  const missing = await fresh.request({ method: 'GET', path: '/nope' });
  t.equal(missing.statusCode, 404);
  await missing.body.dump();

  // a client that sends half a request and vanishes
  const [host, port] = w.address.split(':');
  await new Promise<void>((resolve) => {
    const s = tls.connect({ host, port: Number(port), ca: w.ca.certPem, servername: SERVICE_DNS }, () => {
      s.write(
        'POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"apiVersion"',
      );
      s.destroy();
      resolve();
    });
    s.once('error', () => resolve());
  });
  // a client that speaks plain HTTP to the TLS port
  await new Promise<void>((resolve) => {
    const s = net.connect(Number(port), host, () => s.end('GET /livez HTTP/1.1\r\nhost: x\r\n\r\n'));
    s.on('data', () => undefined);
    s.once('close', () => resolve());
    s.once('error', () => resolve());
  });

  t.ok(w.p.running(), 'still running');
  const ok = await post(fresh, native.text);
  t.equal(ok.status, 200, 'and still answering reviews');
  t.equal((ok.json.response as { allowed: boolean }).allowed, true);
});

t.test(
  'the serving certificate is reloaded when its Secret volume changes, and a bad update keeps the current one',
  async (t) => {
    const w = await startWebhook(t);
    t.equal(await servedSerial(w), w.serial, 'serves the first certificate');
    const client = apiServer(t, w);
    const keepAlive = await post(client, native.text);
    t.equal(keepAlive.status, 200, 'a keep-alive connection is open before the rotation');

    const next = await servingLeaf(w.ca, 'tollgate-injector-renewed');
    await w.volume.update({ 'tls.crt': next.certPem, 'tls.key': next.keyPem });
    await eventually(
      async () => (await servedSerial(w)) === next.serial,
      10_000,
      'the renewed certificate to be served',
    );
    t.pass('new connections get the renewed certificate, without a restart');
    // the line may reach us through the child's stdout a little after the new certificate is served
    const reloadLogged = (): boolean =>
      w.p.logs().some((l) => l.msg === 'webhook certificate reloaded' && l.serial === next.serial);
    await eventually(reloadLogged, 5_000, 'the reload to be logged').catch(() => undefined);
    t.ok(reloadLogged(), 'the reload is logged');
    t.equal((await post(client, native.text)).status, 200, 'the connection opened before the rotation still works');

    const other = await servingLeaf(w.ca, 'mismatch');
    await w.volume.update({ 'tls.crt': next.certPem, 'tls.key': other.keyPem });
    await eventually(
      () => w.p.logs().some((l) => l.msg === 'webhook certificate reload failed; keeping the current certificate'),
      10_000,
      'the failed reload to be logged',
    );
    const failed = w.p
      .logs()
      .find((l) => l.msg === 'webhook certificate reload failed; keeping the current certificate');
    t.match(JSON.stringify(failed?.problems), /does not match the certificate/, 'the problem is named');
    t.equal(await servedSerial(w), next.serial, 'the current certificate stays in use');
    t.ok(w.p.running(), 'still running');
  },
);

t.test('SIGHUP re-reads the certificate', async (t) => {
  const ca = await makeCa();
  // the webhook watches the directory of --cert/--key; there they are symlinks to files in
  // another directory, so rewriting those files raises no event the watch sees, and the
  // 60 s poll is far off: only SIGHUP can make the new certificate served within this test
  const watched = await tempDir(t, 'tollgate-webhook-hup-');
  const store = await tempDir(t, 'tollgate-webhook-hup-store-');
  const first = await servingLeaf(ca);
  await writeFile(join(store, 'tls.crt'), first.certPem);
  await writeFile(join(store, 'tls.key'), first.keyPem, { mode: 0o600 });
  await symlink(join(store, 'tls.crt'), join(watched, 'tls.crt'));
  await symlink(join(store, 'tls.key'), join(watched, 'tls.key'));
  const p = startTollgate(t, [
    'webhook',
    '--listen',
    '127.0.0.1:0',
    '--cert',
    join(watched, 'tls.crt'),
    '--key',
    join(watched, 'tls.key'),
    '--image',
    IMAGE,
  ]);
  await eventually(() => started(p) !== undefined || !p.running(), STARTUP_MS, 'tollgate webhook started');
  const w = { address: String(started(p)?.address), ca };
  t.equal(await servedSerial(w), first.serial, 'serves the first certificate');

  const second = await servingLeaf(ca, 'second');
  await writeFile(join(store, 'tls.key'), second.keyPem);
  await writeFile(join(store, 'tls.crt'), second.certPem);
  p.kill('SIGHUP');
  await eventually(async () => (await servedSerial(w)) === second.serial, 10_000, 'the new certificate after SIGHUP');
  t.pass('served after SIGHUP');
  t.ok(
    p.logs().some((l) => l.msg === 'SIGHUP: reloading the certificate'),
    'the signal is logged',
  );
  const reloaded = (): boolean =>
    p.logs().some((l) => l.msg === 'webhook certificate reloaded' && l.serial === second.serial);
  await eventually(reloaded, 5_000, 'the reload to be logged').catch(() => undefined);
  t.ok(reloaded(), 'the reload is logged');
  t.ok(p.running(), 'still running');
});

t.test('SIGTERM and SIGINT drain and exit 0', async (t) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const w = await startWebhook(t);
    const client = apiServer(t, w);
    t.equal((await post(client, native.text)).status, 200);
    w.p.kill(signal);
    const done = await exitWithin(w.p, 15_000, `webhook after ${signal}`);
    t.equal(done.code, 0, `${signal}: exit 0 (stderr: ${done.stderr})`);
    t.ok(
      w.p.logs().some((l) => l.msg === 'tollgate webhook stopped'),
      `${signal}: logged the stop`,
    );
  }
});

t.test('bad usage exits 2 naming every bad flag; a port in use exits 1', async (t) => {
  const run = async (args: string[]): Promise<{ code: number | null; stderr: string }> => {
    const done = await exitWithin(startTollgate(t, ['webhook', ...args]), 15_000, `tollgate webhook ${args.join(' ')}`);
    return { code: done.code, stderr: done.stderr };
  };
  const none = await run([]);
  t.equal(none.code, 2);
  for (const flag of ['--listen', '--cert', '--key', '--image'])
    t.match(none.stderr, `  - ${flag}: required`, `${flag} is required`);

  const bad = await run([
    '--listen',
    'nowhere',
    '--cert',
    'a',
    '--key',
    'b',
    '--image',
    'registry.example.com/tollgate:latest',
    '--bogus',
    'x',
    'stray',
  ]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--listen: /, 'the listen address');
  t.match(
    bad.stderr,
    /--image: registry\.example\.com\/tollgate:latest uses the latest tag; pin a version tag or a digest/,
  );
  t.match(bad.stderr, /--bogus: unknown flag/);
  t.match(bad.stderr, /stray: unexpected argument/);
  const untagged = await run(['--listen', '127.0.0.1:0', '--cert', 'a', '--key', 'b', '--image', 'tollgate']);
  t.match(untagged.stderr, /--image: tollgate has no tag, which means latest/);

  const ca = await makeCa();
  const dir = await tempDir(t, 'tollgate-webhook-usage-');
  const leaf = await servingLeaf(ca);
  await writeFile(join(dir, 'tls.crt'), leaf.certPem);
  await writeFile(join(dir, 'tls.key'), (await servingLeaf(ca)).keyPem, { mode: 0o600 });
  const mismatch = await run([
    '--listen',
    '127.0.0.1:0',
    '--cert',
    join(dir, 'tls.crt'),
    '--key',
    join(dir, 'tls.key'),
    '--image',
    IMAGE,
  ]);
  t.equal(mismatch.code, 2, 'a key that does not match the certificate is a configuration problem');
  t.match(mismatch.stderr, /--key .*: does not match the certificate/);
  const missing = await run([
    '--listen',
    '127.0.0.1:0',
    '--cert',
    join(dir, 'none.crt'),
    '--key',
    join(dir, 'none.key'),
    '--image',
    IMAGE,
  ]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--cert .*none\.crt: cannot read \(ENOENT\b/);
  t.match(missing.stderr, /--key .*none\.key: cannot read \(ENOENT\b/);

  await writeFile(join(dir, 'tls.key'), leaf.keyPem, { mode: 0o600 });
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      sidecar: { runAsUser: 0, resources: { cpuRequest: 'lots' }, colour: 'blue' },
      drainTimeoutSeconds: -1,
    }),
  );
  const config = await run([
    '--listen',
    '127.0.0.1:0',
    '--cert',
    join(dir, 'tls.crt'),
    '--key',
    join(dir, 'tls.key'),
    '--image',
    IMAGE,
    '--config',
    join(dir, 'config.json'),
  ]);
  t.equal(config.code, 2);
  for (const path of [
    'sidecar.colour: unknown key',
    'sidecar.runAsUser: ',
    'sidecar.resources.cpuRequest: ',
    'drainTimeoutSeconds: ',
  ])
    t.match(config.stderr, `  - ${path}`, path);

  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as net.AddressInfo).port;
  const busy = await run([
    '--listen',
    `127.0.0.1:${port}`,
    '--cert',
    join(dir, 'tls.crt'),
    '--key',
    join(dir, 'tls.key'),
    '--image',
    IMAGE,
  ]);
  t.equal(busy.code, 1, 'a port in use is a runtime failure');
  t.match(busy.stderr, /cannot listen on --listen 127\.0\.0\.1:\d+: EADDRINUSE/);
});
