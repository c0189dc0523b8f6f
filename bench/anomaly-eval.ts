/**
 * Payload-size anomaly evaluation: synthetic traffic replayed through a running tollgate.
 *
 *   npm run build && node_modules/.bin/node bench/anomaly-eval.ts [--quick]
 *
 * A `tollgate run` process with three inbound HTTP listeners in `block` mode (each standing for
 * a route of an ingestion service: events ~2 KiB, metrics ~300 B, batches ~64 KiB, log-normal
 * sizes), two producer identities per route, keep-alive mTLS clients. Each (route, producer)
 * first sends clean traffic until the models have learned (minSamples), then clean traffic
 * with outliers mixed in at 2%: 2x, 5x, 10x, 100x the route's median, and tiny bodies (1-10 B).
 * Block mode makes every verdict visible: 422 ERR_PAYLOAD_ANOMALY = flagged. Requests carry
 * `Expect: 100-continue`, so a refused body is never uploaded. Printed per
 * magnitude: recall (outliers flagged) and, for clean traffic, the false-positive rate.
 * Targets: recall >= 99% at >= 10x and for tiny bodies; false positives <= 0.5%.
 * Every loop is bounded by a count; traffic stays on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import { createDevPki, writeDevPki } from '../src/certs/devPki.ts';

const QUICK = process.argv.includes('--quick');
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIN_SAMPLES = 200;
const THRESHOLD = 4;
/** clean requests per (route, producer) after learning */
const CLEAN = QUICK ? 1_000 : 8_000;
const OUTLIER_SHARE = 0.02;

interface Route {
  readonly name: string;
  readonly median: number;
  readonly sigma: number;
}
const ROUTES: readonly Route[] = [
  { name: 'events', median: 2048, sigma: 0.35 },
  { name: 'metrics', median: 300, sigma: 0.25 },
  { name: 'batches', median: 65536, sigma: 0.45 },
];
const PRODUCERS = ['producer-a', 'producer-b'];
const MAGNITUDES = ['2x', '5x', '10x', '100x', 'tiny'] as const;
type Magnitude = (typeof MAGNITUDES)[number];

/** a seeded PRNG (mulberry32), so runs are comparable */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function logNormal(random: () => number, median: number, sigma: number): number {
  const u = Math.max(random(), 1e-12);
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  return Math.max(1, Math.round(median * Math.exp(sigma * z)));
}

function outlierSize(random: () => number, route: Route, m: Magnitude): number {
  const jitter = 1 + (random() - 0.5) * 0.02;
  if (m === 'tiny') return 1 + Math.floor(random() * 10);
  return Math.round(route.median * Number.parseInt(m, 10) * jitter);
}

async function startApp(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(202, { 'content-length': 0 }).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-anomaly-eval-'));
  const app = await startApp();
  const appAddr = `127.0.0.1:${(app.address() as AddressInfo).port}`;
  const pki = await createDevPki({ trustDomain: 'example.org', identities: ['ingest', ...PRODUCERS], validityDays: 1 });
  await writeDevPki(join(dir, 'pki'), pki);
  const config = {
    admin: { listen: '127.0.0.1:0' },
    identity: { certFile: 'pki/ingest/tls.crt', keyFile: 'pki/ingest/tls.key', caFile: 'pki/ingest/ca.crt' },
    log: { level: 'info' },
    listeners: ROUTES.map((r) => ({
      name: r.name,
      mode: 'inbound',
      listen: '127.0.0.1:0',
      target: appAddr,
      allow: { spiffe: PRODUCERS.map((p) => `spiffe://example.org/${p}`) },
      anomaly: { mode: 'block', minSamples: MIN_SAMPLES, threshold: THRESHOLD },
    })),
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const child = spawn(process.execPath, [join(ROOT, 'bin/tollgate.js'), 'run', '--config', join(dir, 'config.json')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  try {
    const addresses = await listenerAddresses(() => out, 20_000);
    const results = await Promise.all(
      ROUTES.flatMap((route, ri) =>
        PRODUCERS.map((producer, pi) =>
          runStream(addresses[route.name]!, route, pki.ca.certPem, pki.identities[producer]!, rng(1 + ri * 10 + pi)),
        ),
      ),
    );
    return report(results);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    app.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The listener addresses from the "tollgate started" log line. */
async function listenerAddresses(output: () => string, ms: number): Promise<Record<string, string>> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (const line of output().split('\n')) {
      if (!line.includes('tollgate started')) continue;
      const parsed = JSON.parse(line) as { listeners: Array<{ name: string; address: string }> };
      return Object.fromEntries(parsed.listeners.map((l) => [l.name, l.address]));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`tollgate did not start:\n${output()}`);
}

interface StreamResult {
  readonly route: string;
  readonly learningFlagged: number;
  readonly clean: { sent: number; flagged: number };
  readonly outliers: Record<Magnitude, { sent: number; flagged: number }>;
}

async function runStream(
  address: string,
  route: Route,
  ca: string,
  id: { certPem: string; keyPem: string },
  random: () => number,
): Promise<StreamResult> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: 1,
    ca,
    cert: id.certPem,
    key: id.keyPem,
    servername: 'ingest',
  });
  const send = (size: number): Promise<boolean> =>
    new Promise((resolve, reject) => {
      const req = https.request({
        host,
        port,
        agent,
        method: 'POST',
        path: `/${route.name}`,
        headers: { 'content-type': 'application/octet-stream', 'content-length': size, expect: '100-continue' },
      });
      req.once('continue', () => req.end(Buffer.alloc(size, 0x61)));
      req.once('response', (res) => {
        res.resume();
        res.once('end', () => {
          if (res.statusCode !== 202 && res.statusCode !== 422)
            reject(new Error(`unexpected ${res.statusCode} on ${route.name}`));
          else resolve(res.statusCode === 422);
          // a refusal answered before the body was sent leaves the request unfinished: drop that connection
          if (!req.writableEnded) req.destroy();
        });
      });
      req.once('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    });
  try {
    let learningFlagged = 0;
    // learning: enough clean requests for the peer's own model (the route's learns from both peers)
    for (let i = 0; i < MIN_SAMPLES + 10; i++)
      if (await send(logNormal(random, route.median, route.sigma))) learningFlagged++;
    const clean = { sent: 0, flagged: 0 };
    const outliers = Object.fromEntries(MAGNITUDES.map((m) => [m, { sent: 0, flagged: 0 }])) as Record<
      Magnitude,
      { sent: number; flagged: number }
    >;
    const total = Math.round(CLEAN / (1 - OUTLIER_SHARE));
    for (let i = 0; i < total; i++) {
      if (random() < OUTLIER_SHARE) {
        const m = MAGNITUDES[Math.floor(random() * MAGNITUDES.length)]!;
        outliers[m].sent++;
        if (await send(outlierSize(random, route, m))) outliers[m].flagged++;
      } else {
        clean.sent++;
        if (await send(logNormal(random, route.median, route.sigma))) clean.flagged++;
      }
    }
    return { route: route.name, learningFlagged, clean, outliers };
  } finally {
    agent.destroy();
  }
}

function report(results: readonly StreamResult[]): number {
  const sum = (pick: (r: StreamResult) => { sent: number; flagged: number }) =>
    results.reduce((acc, r) => ({ sent: acc.sent + pick(r).sent, flagged: acc.flagged + pick(r).flagged }), {
      sent: 0,
      flagged: 0,
    });
  const pct = (x: { sent: number; flagged: number }) =>
    x.sent === 0 ? '-' : `${((100 * x.flagged) / x.sent).toFixed(2)}%`;
  const rows: Array<[string, { sent: number; flagged: number }, string]> = [
    ...MAGNITUDES.map(
      (m) =>
        [`outliers ${m === 'tiny' ? 'tiny (1-10 B)' : `${m} median`}`, sum((r) => r.outliers[m]), 'recall'] as [
          string,
          { sent: number; flagged: number },
          string,
        ],
    ),
    ['clean traffic', sum((r) => r.clean), 'false positives'],
  ];
  console.log(
    `anomaly evaluation: ${ROUTES.length} routes x ${PRODUCERS.length} producers, block mode, minSamples ${MIN_SAMPLES}, threshold ${THRESHOLD}, ${OUTLIER_SHARE * 100}% outliers`,
  );
  console.log('');
  console.log('| traffic | sent | flagged | rate |');
  console.log('|---|---:|---:|---:|');
  for (const [name, x, what] of rows) console.log(`| ${name} | ${x.sent} | ${x.flagged} | ${pct(x)} ${what} |`);
  const learning = results.reduce((a, r) => a + r.learningFlagged, 0);
  console.log('');
  console.log(`flagged while the peers' own models were still learning (route models judge then): ${learning}`);
  const recall = (m: Magnitude) => sum((r) => r.outliers[m]);
  const ok =
    [recall('10x'), recall('100x'), recall('tiny')].every((x) => x.sent === 0 || x.flagged / x.sent >= 0.99) &&
    sum((r) => r.clean).flagged / Math.max(1, sum((r) => r.clean).sent) <= 0.005;
  console.log(ok ? 'PASS: recall >= 99% at >= 10x and tiny, false positives <= 0.5%' : 'FAIL: a target was missed');
  console.log(JSON.stringify({ ok, rows: rows.map(([name, x]) => ({ name, ...x })) }));
  return ok ? 0 : 1;
}

process.exitCode = await main();
