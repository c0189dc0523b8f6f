/**
 * What failed upstream is told apart: a name that does not resolve, a refused connection, a
 * reset, no route, a timeout, a wrong identity and a malformed response each have their own
 * reason (tollgate_upstream_errors_total's label, the log line's message), while the client
 * sees only the stable code. The errors classified here are the ones Node itself produces
 * (real sockets on loopback where one can be had without leaving the machine).
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { TollgateError, UPSTREAM_FAILURES, UPSTREAM_FAILURE_REASONS } from '../src/core/errors.ts';
import { upstreamFailure } from '../src/proxy/upstreamError.ts';

/** The error a real connect produces. */
async function connectError(port: number): Promise<Error> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const [err] = (await once(socket, 'error').catch((e: unknown) => [e])) as [Error];
  return err;
}

t.test('a refused connection, as Node reports it, is upstream_refused', async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  const err = await connectError(port);
  t.same(upstreamFailure(err), { code: 'ERR_UPSTREAM_UNAVAILABLE', reason: 'upstream_refused' });
});

t.test('a connection the peer resets, as Node reports it, is upstream_reset', async (t) => {
  const server = net.createServer((s) => s.resetAndDestroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  socket.on('connect', () => socket.write('GET / HTTP/1.1\r\n\r\n'));
  const [err] = (await once(socket, 'error').catch((e: unknown) => [e])) as [Error];
  t.same(upstreamFailure(err), { code: 'ERR_UPSTREAM_UNAVAILABLE', reason: 'upstream_reset' });
});

t.test(
  "a name that does not resolve (getaddrinfo's ENOTFOUND and EAI_AGAIN) is upstream_dns, not a refused connection",
  async (t) => {
    // the shape of Node's lookup errors; a real lookup would send a query off this machine
    for (const code of ['ENOTFOUND', 'EAI_AGAIN']) {
      const err = Object.assign(new Error(`getaddrinfo ${code} events.pipeline.svc`), {
        code,
        syscall: 'getaddrinfo',
        hostname: 'events.pipeline.svc',
      });
      t.same(upstreamFailure(err), { code: 'ERR_UPSTREAM_UNAVAILABLE', reason: 'upstream_dns' }, code);
    }
    t.match(UPSTREAM_FAILURES.upstream_dns.message, /name does not resolve/);
  },
);

t.test(
  'timeouts, no route, identity and protocol failures each have their reason; anything else is upstream_unavailable',
  async (t) => {
    const cases: Array<[unknown, string, string]> = [
      [Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }), 'ERR_UPSTREAM_TIMEOUT', 'upstream_timeout'],
      [Object.assign(new Error('x'), { code: 'EHOSTUNREACH' }), 'ERR_UPSTREAM_UNAVAILABLE', 'upstream_unreachable'],
      [Object.assign(new Error('x'), { code: 'ENETUNREACH' }), 'ERR_UPSTREAM_UNAVAILABLE', 'upstream_unreachable'],
      [Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }), 'ERR_UPSTREAM_IDENTITY', 'upstream_identity'],
      [new TollgateError('ERR_UPSTREAM_PROTOCOL'), 'ERR_UPSTREAM_PROTOCOL', 'upstream_protocol'],
      [new TollgateError('ERR_UPSTREAM_IDENTITY'), 'ERR_UPSTREAM_IDENTITY', 'upstream_identity'],
      [
        Object.assign(new Error('wrapped'), { cause: { code: 'ECONNREFUSED' } }),
        'ERR_UPSTREAM_UNAVAILABLE',
        'upstream_refused',
      ],
      [new Error('something else'), 'ERR_UPSTREAM_UNAVAILABLE', 'upstream_unavailable'],
    ];
    for (const [err, code, reason] of cases)
      t.same(upstreamFailure(err), { code, reason }, `${(err as Error).message} -> ${reason}`);
  },
);

t.test('every upstream reason belongs to an upstream code and has a sentence of its own', async (t) => {
  const messages = new Set<string>();
  for (const reason of UPSTREAM_FAILURE_REASONS) {
    // every endpoint of a gateway route ejected is an upstream failure too, with its own code
    t.match(UPSTREAM_FAILURES[reason].code, /^ERR_(UPSTREAM_|NO_HEALTHY_UPSTREAM$)/, reason);
    messages.add(UPSTREAM_FAILURES[reason].message);
  }
  t.equal(messages.size, UPSTREAM_FAILURE_REASONS.length, 'no two reasons share a message');
});
