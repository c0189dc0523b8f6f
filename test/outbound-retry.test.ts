/**
 * The outbound's answer to the race HTTP/1.1 leaves open: an upstream closes an idle keep-alive
 * connection (a draining tollgate) just as the outbound writes the next request on it. An
 * idempotent request the outbound holds whole (RFC 9110 §9.2.2) that got no response byte on a
 * reused connection is sent once more on a new connection; nothing else is retried (a POST,
 * signed or not, gets 502), nor is a request whose body streamed through. Here the upstream is a
 * plain mTLS server that hangs up on the second request of each connection without answering.
 */
import t from 'tap';
import https from 'node:https';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { contentDigestOf } from '../src/integrity/contentDigest.ts';
import { ID_HEADER, pipeline } from './helpers/pipeline.ts';
import { freePort } from './helpers/process.ts';
import { makeLeaf } from './helpers/pki.ts';
import { INGEST } from './helpers/identities.ts';
import type { Teardownable } from './helpers/pki.ts';
import { eventually, type World } from './helpers/world.ts';

interface Seen {
  readonly conn: number;
  readonly nth: number;
  readonly nonce: string;
  readonly answered: boolean;
  readonly id: string;
}

/** An mTLS upstream on `port` with the inbound's identity that answers the first request of each connection and hangs up on the second, unanswered. */
async function hangUpOnSecond(t: Teardownable, w: World, port: number): Promise<Seen[]> {
  const leaf = await makeLeaf(w.ca, { cn: 'ingest', spiffe: [INGEST] });
  const seen: Seen[] = [];
  const perConn = new WeakMap<Socket, { id: number; n: number }>();
  let conns = 0;
  const server = https.createServer(
    { key: leaf.keyPem, cert: leaf.certPem, ca: w.ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      let c = perConn.get(req.socket);
      if (c === undefined) {
        c = { id: ++conns, n: 0 };
        perConn.set(req.socket, c);
      }
      c.n += 1;
      const nonce = /nonce="([^"]+)"/.exec(String(req.headers['signature-input']))?.[1] ?? '';
      const answer = c.n !== 2;
      seen.push({ conn: c.id, nth: c.n, nonce, answered: answer, id: String(req.headers[ID_HEADER] ?? '') });
      if (!answer) {
        req.socket.destroy();
        return;
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    },
  );
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return seen;
}

t.test(
  'an idempotent request whose reused connection is lost before any response byte is sent once more, on a new connection',
  async (t) => {
    const port = await freePort();
    const pl = await pipeline(t, { outbound: { listener: { target: `127.0.0.1:${port}` } } });
    const seen = await hangUpOnSecond(t, pl.w, port);

    const first = await pl.producer.request({ method: 'GET', path: '/one', headers: { [ID_HEADER]: 'one' } });
    t.equal(first.status, 200, 'the first request is answered');
    const second = await pl.producer.request({ method: 'GET', path: '/two', headers: { [ID_HEADER]: 'two' } });
    t.equal(second.status, 200, `the second request succeeds (got ${second.status} ${second.code ?? ''})`);

    const copies = seen.filter((s) => s.id === 'two');
    t.same(
      copies.map((s) => [s.conn, s.nth, s.answered]),
      [
        [1, 2, false],
        [2, 1, true],
      ],
      'first on the kept-alive connection (hung up on), then once more on a new one (answered)',
    );
    t.equal(copies[0]?.nonce, copies[1]?.nonce, 'with the same signature: the request is sent again as it was');
    t.ok((copies[0]?.nonce.length ?? 0) > 0, 'the request was signed');
    t.ok(
      pl.outbound.logs().some((l) => String(l.msg).startsWith('upstream connection lost before a response')),
      'the retry was logged',
    );
  },
);

t.test('a non-idempotent request is never sent again, even signed and held whole: 502', async (t) => {
  const port = await freePort();
  const pl = await pipeline(t, { outbound: { listener: { target: `127.0.0.1:${port}` } } });
  const seen = await hangUpOnSecond(t, pl.w, port);

  t.equal(
    (
      await pl.producer.request({
        method: 'POST',
        path: '/one',
        headers: { [ID_HEADER]: 'one' },
        body: randomBytes(512),
      })
    ).status,
    200,
  );
  const second = await pl.producer.request({
    method: 'POST',
    path: '/two',
    headers: { [ID_HEADER]: 'two' },
    body: randomBytes(512),
  });
  t.equal(second.status, 502, 'refused');
  t.equal(second.code, 'ERR_UPSTREAM_UNAVAILABLE', 'ERR_UPSTREAM_UNAVAILABLE');
  t.equal(seen.filter((s) => s.id === 'two').length, 1, 'the upstream saw it once');
});

t.test(
  'a request whose body streamed through (the app sent its own Content-Digest) is not sent again: 502',
  async (t) => {
    const port = await freePort();
    const pl = await pipeline(t, { outbound: { listener: { target: `127.0.0.1:${port}` } } });
    const seen = await hangUpOnSecond(t, pl.w, port);

    t.equal(
      (await pl.producer.request({ method: 'POST', path: '/one', headers: { [ID_HEADER]: 'one' }, body: 'x' })).status,
      200,
    );
    const body = randomBytes(512);
    const second = await pl.producer.request({
      method: 'POST',
      path: '/two',
      headers: { [ID_HEADER]: 'two', 'content-digest': contentDigestOf(body) },
      body,
    });
    t.equal(second.status, 502, 'refused');
    t.equal(second.code, 'ERR_UPSTREAM_UNAVAILABLE', 'ERR_UPSTREAM_UNAVAILABLE');
    await eventually(
      () => pl.outbound.logs().some((l) => l.code === 'ERR_UPSTREAM_UNAVAILABLE' && l.reason === 'upstream_reset'),
      5_000,
      'the refusal',
    );
    t.equal(seen.filter((s) => s.id === 'two').length, 1, 'the upstream saw it once');
  },
);
