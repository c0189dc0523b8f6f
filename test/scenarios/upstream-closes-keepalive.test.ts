/**
 * An app that closes its keep-alive connections on its own schedule, racing the inbound's reuse
 * of them: after every N responses (politely, with `Connection: close`, and abruptly, with a
 * FIN right after the response and no warning) and after a short idle time it never
 * advertised. Whatever the app does to its own connections, every request through
 * producer → outbound → inbound → app arrives once, intact, and gets its answer.
 */
import t from 'tap';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { echo, pipeline, summary, type LoadOptions } from '../helpers/pipeline.ts';
import type { Test } from '../helpers/world.ts';

const LOAD: LoadOptions = { count: 250, concurrency: 8, maxMs: 15_000, bodyBytes: 512 };

/** requests answered on each app connection, to close it after the Nth */
const answered = new WeakMap<Socket, number>();

function closeAfter(n: number, how: 'polite' | 'abrupt'): http.RequestListener {
  return (req, res) => {
    const socket = req.socket;
    const count = (answered.get(socket) ?? 0) + 1;
    answered.set(socket, count);
    if (count % n !== 0) return echo(req, res);
    if (how === 'polite') res.setHeader('connection', 'close');
    // abrupt: the response goes out as a keep-alive one, then the app hangs up unannounced (closed once flushed)
    else res.once('finish', () => socket.end(() => socket.destroy()));
    echo(req, res);
  };
}

async function expectClean(
  t: Test,
  app: http.RequestListener,
  setup?: (server: http.Server) => void,
  load: LoadOptions = LOAD,
): Promise<void> {
  const pl = await pipeline(t, { app });
  setup?.(pl.app.server);
  const r = await pl.producer.load(load);
  t.equal(r.sent, load.count, `all ${load.count} requests were sent (${summary(r)})`);
  const refused = (): string =>
    JSON.stringify(
      pl.inbound
        .logs()
        .filter((l) => String(l.code).startsWith('ERR_'))
        .map((l) => [l.code, l.err, l.cause])
        .slice(0, 3),
    );
  t.equal(r.failed, 0, `none failed (${summary(r)}; the inbound refused ${refused()})`);
  t.equal(r.corrupted, 0, 'none corrupted');
  t.equal(r.duplicated, 0, 'none reached the app twice');
  t.ok(
    pl.app.connections() > 1,
    `the app closed connections and the inbound opened new ones (${pl.app.connections()} connections)`,
  );
  t.equal(await pl.inbound.metric('tollgate_upstream_errors_total'), 0, 'the inbound counted no upstream error');
}

t.test(
  'an app that closes each connection after 5 requests with Connection: close: every request succeeds',
  async (t) => {
    await expectClean(t, closeAfter(5, 'polite'));
  },
);

t.test('an app that hangs up after every 5th response without warning: every request succeeds', async (t) => {
  await expectClean(t, closeAfter(5, 'abrupt'));
});

/**
 * An app that closes connections idle for 20 ms, never saying so (no Keep-Alive header, as Go's
 * IdleTimeout or gunicorn's keepalive): whatever request the inbound sends on such a connection
 * at that moment races the close.
 */
function idleCloser(t: Test): (server: http.Server) => void {
  return (server) => {
    server.keepAliveTimeout = 0;
    const last = new Map<Socket, number>();
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      last.delete(req.socket);
      res.once('finish', () => last.set(req.socket, Date.now()));
    });
    const timer = setInterval(() => {
      for (const [s, at] of last) {
        if (Date.now() - at < 20) continue;
        last.delete(s);
        // as Node's own keep-alive timeout and Go's IdleTimeout do: the connection is gone, nothing more is read
        s.destroy();
      }
    }, 5);
    t.teardown(() => clearInterval(timer));
  };
}

/** paced, so connections do sit idle for about the app's timeout between requests */
/**
 * Paced so that a connection often waits about as long as the app's idle limit between requests
 * (one request every ~22 ms): the inbound reuses its warmest connection, so a faster pace keeps
 * one connection busy and the app never closes it, and the race would not be run at all.
 */
const PACED: LoadOptions = { count: 120, ratePerSecond: 45, concurrency: 8, maxMs: 15_000, bodyBytes: 512 };

t.test(
  'an app that closes connections idle for 20 ms without advertising it: every idempotent request succeeds',
  async (t) => {
    await expectClean(t, echo, idleCloser(t), { ...PACED, method: 'PUT' });
  },
);

/*
 * A POST lost the same way is not sent again: the inbound cannot tell an app that closed an idle
 * connection from one that read the request and then died, and the app behind it has no replay
 * cache (RFC 9110, 9.2.2; HAProxy and Envoy answer 502/503 here too unless told to retry). What
 * holds is that the producer gets an answer, the right code, and never a body twice or mangled.
 */
t.test(
  'the same app under POSTs: each request is delivered once and intact, or refused at once with 502 ERR_UPSTREAM_UNAVAILABLE',
  async (t) => {
    const pl = await pipeline(t);
    idleCloser(t)(pl.app.server);
    const r = await pl.producer.load(PACED);
    t.equal(r.sent, PACED.count, summary(r));
    t.equal(r.corrupted, 0, 'none corrupted');
    t.equal(r.duplicated, 0, 'none reached the app twice');
    t.same(r.byError, {}, 'every request got an answer: no hang, no reset at the producer');
    t.equal(
      r.byCode.ERR_UPSTREAM_UNAVAILABLE ?? 0,
      r.failed,
      `every failure is 502 ERR_UPSTREAM_UNAVAILABLE (${summary(r)})`,
    );
    t.equal(await pl.inbound.metric('tollgate_upstream_errors_total'), r.failed, 'each counted once by the inbound');
    const after = await pl.producer.load({ ...PACED, count: 50, method: 'PUT' });
    t.equal(after.ok, 50, `the inbound keeps serving: idempotent requests all succeed (${summary(after)})`);
  },
);
