import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Client } from 'undici';
import { createDevPki, writeDevPki } from '../certs/devPki.ts';
import { validateConfig } from '../config/validate.ts';
import { formatHostPort } from '../config/hostPort.ts';
import { createLogger } from '../telemetry/logger.ts';
import { startSidecar, type Sidecar } from '../main.ts';
import { DEMO_COMMAND } from './commands.ts';
import { parseCommand } from './flagSpec.ts';
import { answerUnparsed, EXIT_FAILURE, EXIT_OK, printProblems, type Output } from './output.ts';

const TRUST_DOMAIN = 'example.org';
const EVENTS = 30;
/** the demo's size model judges after this many events (the default, 200, is for production traffic) */
const DEMO_MIN_SAMPLES = 20;
const KEY_ID = 'demo-k1';

/**
 * `tollgate demo`: everything on one machine with embedded defaults. A dev PKI in a temp
 * folder, a shared HMAC key, a sample ingestion app, an inbound sidecar in front of it that
 * verifies signatures and an outbound sidecar for a producer that signs, traffic through
 * them, and attempts that must be refused (one of them a replay of a real signed request).
 * Prints what passed and what was refused and why; runs until Ctrl-C (or exits with --once).
 */
export async function demoCommand(argv: string[], o: Output): Promise<number> {
  const parsed = parseCommand(DEMO_COMMAND, argv);
  if (parsed.kind !== 'ok') return answerUnparsed(o, DEMO_COMMAND, parsed);
  const once = parsed.values.once;
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-demo-'));
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const pki = await createDevPki({
      trustDomain: TRUST_DOMAIN,
      identities: ['producer', 'ingest', 'intruder'],
      validityDays: 1,
    });
    await writeDevPki(join(dir, 'pki'), pki);
    await mkdir(join(dir, 'keys'), { mode: 0o700 });
    await writeFile(join(dir, 'keys', KEY_ID), randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    const app = await startIngestionApp();
    stops.push(() => new Promise((r) => app.server.close(r)));

    const ingest = await sidecarFor('ingest', dir, {
      name: 'ingest',
      mode: 'inbound',
      listen: '127.0.0.1:0',
      target: formatHostPort(app.address),
      allow: { spiffe: [`spiffe://${TRUST_DOMAIN}/producer`] },
      integrity: { verify: true },
      anomaly: { mode: 'observe', minSamples: DEMO_MIN_SAMPLES },
    });
    stops.push(() => ingest.shutdown());
    const inboundAddress = formatHostPort(ingest.listeners[0]!.address());
    const producer = await sidecarFor('producer', dir, {
      name: 'to-ingest',
      mode: 'outbound',
      listen: '127.0.0.1:0',
      target: inboundAddress,
      serverName: 'ingest',
      verify: { spiffe: [`spiffe://${TRUST_DOMAIN}/ingest`] },
      integrity: { sign: true, keyId: KEY_ID },
    });
    stops.push(() => producer.shutdown());
    const outboundAddress = formatHostPort(producer.listeners[0]!.address());

    const sent = await sendEvents(`http://${outboundAddress}`, EVENTS);
    const oversized = await sendEvents(`http://${outboundAddress}`, 1, 100);
    const noCert = await attempt(inboundAddress, pki.ca.certPem, null);
    const noCertReason = await handshakeFailureReason(ingest);
    const intruder = await attempt(inboundAddress, pki.ca.certPem, pki.identities.intruder!);
    const unsigned = await attempt(inboundAddress, pki.ca.certPem, pki.identities.producer!);
    const captured = app.lastSigned();
    const replay =
      captured === null
        ? 'nothing to replay (no signed request reached the app)'
        : await attempt(inboundAddress, pki.ca.certPem, pki.identities.producer!, captured);
    // read once every attempt is over, from the list /anomalies/recent serves, so the two agree
    const anomalies = await anomalySummary(ingest);

    o.out(`tollgate demo: two sidecars on loopback, dev PKI in ${join(dir, 'pki')}`);
    o.out('');
    o.out(
      `  producer ─plain─▶ outbound ${outboundAddress} ─mTLS─▶ inbound ${inboundAddress} ─plain─▶ ingestion app ${formatHostPort(app.address)}`,
    );
    o.out(`             (spiffe://${TRUST_DOMAIN}/producer)          (spiffe://${TRUST_DOMAIN}/ingest)`);
    o.out('');
    o.out('passed:');
    const ok = sent.filter((s) => s.status === 202).length;
    o.out(
      `  ✔ ${ok}/${EVENTS} signed events accepted by the app (HTTP 202); it saw x-tollgate-peer: ${app.peers().join(', ') || '(none)'}`,
    );
    if (captured !== null) o.out(`    Signature-Input: ${captured.headers['signature-input']}`);
    o.out('flagged:');
    o.out(
      `  ⚠ one event 100x the usual size: HTTP ${oversized[0]?.status ?? '-'} (observe mode lets it through); flagged: ${anomalies.text}`,
    );
    o.out('refused:');
    o.out(`  ✘ client without a certificate: ${noCert}; the inbound sidecar counted reason ${noCertReason}`);
    o.out(`  ✘ spiffe://${TRUST_DOMAIN}/intruder (valid certificate, not on the allow-list): ${intruder}`);
    o.out(`  ✘ the producer's certificate, but no signature: ${unsigned}`);
    o.out(`  ✘ the last signed event sent again, byte for byte (a replay): ${replay}`);
    o.out('');
    if (once) {
      // the sidecars stop when --once returns: their admin URLs would be dead links
      o.out(
        'admin: run `npm run demo` (without --once) to keep both sidecars up and explore /status, /metrics, /anomalies/recent',
      );
    } else {
      o.out('admin:');
      o.out(
        `  ingest sidecar    http://${formatHostPort(ingest.admin!)}/status   /metrics   /anomalies/recent   /handshakes/recent`,
      );
      o.out(`  producer sidecar  http://${formatHostPort(producer.admin!)}/status   /metrics`);
      o.out(`logs: ${join(dir, 'ingest.log')}, ${join(dir, 'producer.log')} (removed on exit)`);
    }
    const success =
      ok === EVENTS &&
      anomalies.tooLarge === 1 &&
      anomalies.total === 1 &&
      anomalies.counted === anomalies.total &&
      noCert.startsWith('refused') &&
      intruder.includes('ERR_PEER_NOT_ALLOWED') &&
      unsigned.includes('ERR_SIG_MISSING') &&
      replay.includes('ERR_SIG_REPLAYED');
    if (!success) o.err('tollgate demo: something that should have passed did not (see above)');
    if (!once) {
      o.out('');
      o.out('running; Ctrl-C to stop');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    return success ? EXIT_OK : EXIT_FAILURE;
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

async function sidecarFor(identity: string, dir: string, listener: Record<string, unknown>): Promise<Sidecar> {
  const raw = {
    admin: { listen: '127.0.0.1:0' },
    identity: {
      certFile: `pki/${identity}/tls.crt`,
      keyFile: `pki/${identity}/tls.key`,
      caFile: `pki/${identity}/ca.crt`,
    },
    keys: { dir: 'keys' },
    listeners: [listener],
  };
  const result = validateConfig(raw, { baseDir: dir, source: null });
  if (!result.ok) {
    printProblems({ out: () => undefined, err: (l) => process.stderr.write(l + '\n') }, 'demo config', result.problems);
    throw new Error('the demo configuration does not validate');
  }
  const log = createLogger({
    level: 'info',
    destination: pino.destination({ dest: join(dir, `${identity}.log`), sync: false }),
  });
  return startSidecar(result.config, { log });
}

/** The reason label of the inbound sidecar's failed handshakes (polled briefly: the server sees the failure after the client does). */
async function handshakeFailureReason(sidecar: Sidecar): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const { values } = await sidecar.metrics.handshakes.get();
    const failed = values.find((v) => v.labels.result === 'failure' && v.value > 0);
    if (failed !== undefined) return String(failed.labels.reason);
    await new Promise((r) => setTimeout(r, 20));
  }
  return '(none counted)';
}

interface IngestionApp {
  server: http.Server;
  address: { host: string; port: number };
  /** the x-tollgate-peer values the app has seen */
  peers(): string[];
  /** the last signed request the app accepted, as it arrived (for the replay attempt) */
  lastSigned(): SignedCapture | null;
}

/** The headers that make a signed request, and its body. */
interface SignedCapture {
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

const REPLAYED_HEADERS = ['signature-input', 'signature', 'content-digest', 'content-type', 'content-length', 'host'];

/** A small ingestion service: POST /events takes a JSON object (or array of them) and counts it. */
async function startIngestionApp(): Promise<IngestionApp> {
  const peers = new Set<string>();
  let accepted = 0;
  let lastSigned: SignedCapture | null = null;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const peer = req.headers['x-tollgate-peer'];
      if (typeof peer === 'string') peers.add(peer);
      if (req.method !== 'POST' || req.url !== '/events') {
        res.writeHead(404).end();
        return;
      }
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
        accepted += Array.isArray(body) ? body.length : 1;
        if (req.headers['signature'] !== undefined) {
          const headers: Record<string, string> = {};
          for (const name of REPLAYED_HEADERS)
            if (typeof req.headers[name] === 'string') headers[name] = req.headers[name];
          lastSigned = { headers, body: Buffer.concat(chunks) };
        }
        res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted }));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid JSON"}');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address() as AddressInfo;
  return { server, address: { host: a.address, port: a.port }, peers: () => [...peers], lastSigned: () => lastSigned };
}

/**
 * What the inbound sidecar's size model flagged: the entries /anomalies/recent lists, by kind
 * (the demo's refused attempts are refused before the size model judges them, so they add none).
 */
async function anomalySummary(
  sidecar: Sidecar,
): Promise<{ text: string; total: number; counted: number; tooLarge: number }> {
  const entries = sidecar.recentAnomalies.list();
  const byKind = new Map<string, number>();
  for (const e of entries) byKind.set(e.kind, (byKind.get(e.kind) ?? 0) + 1);
  const counted = (await sidecar.metrics.payloadAnomalies.get()).values.reduce((sum, v) => sum + v.value, 0);
  const kinds = [...byKind].map(([kind, n]) => `${n} ${kind}`).join(', ');
  const agree =
    counted === entries.length
      ? 'the same in /anomalies/recent and tollgate_payload_anomalies_total'
      : `tollgate_payload_anomalies_total says ${counted}`;
  return {
    text: entries.length === 0 ? `nothing (${agree})` : `${kinds} (${agree})`,
    total: entries.length,
    counted,
    tooLarge: byKind.get('too_large') ?? 0,
  };
}

/** POST n JSON events; `scale` pads each to about that many times the usual size. */
async function sendEvents(origin: string, n: number, scale = 1): Promise<Array<{ status: number }>> {
  const client = new Client(origin);
  try {
    const out: Array<{ status: number }> = [];
    for (let i = 0; i < n; i++) {
      const event = { event: 'page_view', seq: i, at: new Date().toISOString() };
      const body = JSON.stringify(
        scale === 1 ? event : { ...event, padding: 'x'.repeat(JSON.stringify(event).length * (scale - 1)) },
      );
      const res = await client.request({
        path: '/events',
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      await res.body.dump();
      out.push({ status: res.statusCode });
    }
    return out;
  } finally {
    await client.close();
  }
}

/** A direct mTLS attempt at the inbound listener (a fresh unsigned event, or a captured signed one), returning what happened in words. */
async function attempt(
  address: string,
  caPem: string,
  identity: { certPem: string; keyPem: string } | null,
  replay?: SignedCapture,
): Promise<string> {
  const client = new Client(`https://${address}`, {
    connect: {
      ca: caPem,
      servername: 'ingest',
      ...(identity === null ? {} : { cert: identity.certPem, key: identity.keyPem }),
    },
  });
  try {
    const res = await client.request(
      replay === undefined
        ? { path: '/events', method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }
        : { path: '/events', method: 'POST', body: replay.body, headers: replay.headers },
    );
    const code = res.headers['x-tollgate-error'];
    await res.body.dump();
    return res.statusCode === 202
      ? `NOT refused (HTTP ${res.statusCode})`
      : `refused with HTTP ${res.statusCode} ${String(code ?? '')}`;
  } catch (err) {
    return `refused during the TLS handshake (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  } finally {
    await client.destroy();
  }
}
