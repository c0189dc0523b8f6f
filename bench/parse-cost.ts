/**
 * What parsing one HTTP/1.1 head costs on Node's llhttp binding, as the core parses it (strict,
 * a parser lent by the pool, the callbacks the core sets), against splitting the same head by hand
 * as the raw-l7 instrument does (bench/macro/baselines/l7-raw.ts: no validation, no framing checks
 * beyond Content-Length). A GET through the proxy parses one request head and one response head;
 * the difference between the two ways is part of what keeps tollgate-l7 from the instrument.
 *
 *   node_modules/.bin/node bench/parse-cost.ts
 *
 * Best of 7 rounds of 200,000 messages each, in this process; no network.
 */
import { loadHttpParser, STRICT } from '../src/http1/parserBinding.ts';
import { ParserPool, type ParserClient } from '../src/http1/parserPool.ts';
const b = loadHttpParser();
const req = Buffer.from('GET /bench?q=1 HTTP/1.1\r\nhost: 127.0.0.1:18443\r\nuser-agent: wrk\r\naccept: */*\r\n\r\n');
const res = Buffer.from(
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 11:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
);
let sink = 0;
const client: ParserClient = {
  onMessageBegin: () => 0,
  onHeaders: () => undefined,
  onHeadersComplete: (_a, _b, raw, _m, url) => {
    sink += (raw?.length ?? 0) + (url?.length ?? 0);
    return 0;
  },
  onBody: (c) => {
    sink += c.length;
  },
  onMessageComplete: () => undefined,
};
const pool = new ParserPool(b, 4);
function hand(buf: Buffer): number {
  const end = buf.indexOf('\r\n\r\n');
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const raw: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const c = l.indexOf(':');
    raw.push(l.slice(0, c), l.slice(c + 1).trim());
    if (l.slice(0, c).toLowerCase() === 'content-length') sink++;
  }
  return raw.length + lines[0]!.length;
}
function time(label: string, n: number, f: () => void): void {
  let best = Infinity;
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  console.log(label.padEnd(48), (best / 1000).toFixed(2), 'µs');
}
const p = pool.acquire(client, 16384);
const rp = b.create();
rp[b.kOnHeadersComplete] = client.onHeadersComplete;
rp[b.kOnBody] = client.onBody;
rp[b.kOnMessageBegin] = client.onMessageBegin;
rp[b.kOnMessageComplete] = client.onMessageComplete;
rp[b.kOnHeaders] = client.onHeaders;
rp.initialize(b.RESPONSE, {}, 16384, STRICT);
const N = 200_000;
time('llhttp request head (execute, keep-alive)', N, () => {
  p.execute(req);
});
time('llhttp response head + 2-byte body', N, () => {
  rp.execute(res);
});
time('llhttp request: acquire + execute + release', N, () => {
  const q = pool.acquire(client, 16384);
  q.execute(req);
  pool.release(q);
});
time('hand split of the request head', N, () => {
  sink += hand(req);
});
time('hand split of the response head', N, () => {
  sink += hand(res);
});
if (sink === 0) throw new Error('nothing was parsed');
