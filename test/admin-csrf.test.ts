/**
 * The admin API refuses what a browser page could send it (cross-site request forgery) and
 * what DNS rebinding would send it (a foreign Host), on every route, GETs included; accepts the
 * bearer scheme in any case; answers every error as `{error: ERR_…, message}`; and still
 * serves the plain local requests of curl and scripts. The issue's own case runs against a real
 * `tollgate run` process: `POST /shutdown` with `Origin: http://evil.example` and a foreign Host
 * is refused and the process keeps running.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { buildAdminApp, type AdminView } from '../src/admin/app.ts';
import { StartupError } from '../src/core/errors.ts';
import { exitWithin, freePort, startTollgate } from './helpers/process.ts';
import {
  captureLogs,
  eventually,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestSidecar,
} from './helpers/world.ts';

const WAIT_MS = 15_000;

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Record<string, unknown>;
}

interface SendOptions {
  /** the Host header to send (default: the address and port dialled); null: none (HTTP/1.0) */
  readonly host?: string | null;
  /** the address to dial (default 127.0.0.1) */
  readonly address?: string;
}

/** One request to 127.0.0.1:port (or ::1) with exactly the headers given; `host: null` sends none (HTTP/1.0). */
function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  opts: SendOptions = {},
): Promise<Answer> {
  const address = opts.address ?? '127.0.0.1';
  const hostHeader =
    opts.host === undefined ? `${address.includes(':') ? `[${address}]` : address}:${port}` : opts.host;
  if (hostHeader === null) return rawHttp10(port, method, path, headers, address);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: address, port, method, path, headers: { host: hostHeader, ...headers }, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** HTTP/1.0 without a Host header, which node's http client cannot send. */
async function rawHttp10(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  address: string,
): Promise<Answer> {
  const socket = net.connect({ host: address, port });
  const lines = [`${method} ${path} HTTP/1.0`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''];
  socket.end(lines.join('\r\n'));
  let text = '';
  socket.setEncoding('utf8');
  for await (const chunk of socket) text += chunk as string;
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  const headerMap: http.IncomingHttpHeaders = {};
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    headerMap[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers: headerMap, body: parse(body) };
}

function parse(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { raw: text };
  }
}

async function adminSidecar(
  t: Test,
  admin: Record<string, unknown> = { listen: '127.0.0.1:0' },
  health = false,
): Promise<{ sc: TestSidecar; port: number }> {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin,
    ...(health ? { health: { listen: '127.0.0.1:0' } } : {}),
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
  });
  return { sc, port: sc.admin!.port };
}

function expectForbidden(t: Test, a: Answer, what: string): void {
  t.equal(a.status, 403, `${what}: 403`);
  t.equal(a.body.error, 'ERR_ADMIN_FORBIDDEN', `${what}: ERR_ADMIN_FORBIDDEN`);
  t.equal(a.headers['x-tollgate-error'], 'ERR_ADMIN_FORBIDDEN', `${what}: x-tollgate-error`);
  t.same(Object.keys(a.body).sort(), ['error', 'message'], `${what}: the {error, message} shape`);
}

t.test(
  "the issue's case on a real process: POST /shutdown with a foreign Origin and Host is 403 and the process keeps running",
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    const port = await freePort();
    const file = join(w.dir, 'tollgate.json');
    await writeFile(
      file,
      JSON.stringify({
        admin: { listen: `127.0.0.1:${port}` },
        identity: ingest.files,
        listeners: [
          { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:9', allow: { any: true } },
        ],
      }),
    );
    const p = startTollgate(t, ['run', '--config', file]);
    await eventually(
      () => p.logs().some((l) => l.msg === 'tollgate started') || !p.running(),
      WAIT_MS,
      'tollgate started',
    );
    t.ok(p.running(), `started (stderr: ${p.stderr()})`);

    const evil = { origin: 'http://evil.example' };
    expectForbidden(
      t,
      await send(port, 'POST', '/shutdown', evil, { host: `evil.example:${port}` }),
      'Origin evil.example + Host evil.example',
    );
    expectForbidden(t, await send(port, 'POST', '/shutdown', evil), 'Origin evil.example alone');
    expectForbidden(
      t,
      await send(port, 'POST', '/shutdown', {}, { host: `evil.example:${port}` }),
      'Host evil.example alone',
    );
    expectForbidden(
      t,
      await send(port, 'POST', '/drain', { 'sec-fetch-site': 'cross-site' }),
      'POST /drain from another site',
    );

    // a later request is answered normally, so the refused ones were handled (not queued) and changed nothing
    const ready = await send(port, 'GET', '/readyz');
    t.equal(ready.status, 200, 'still ready: nothing drained');
    t.ok(p.running(), 'the process did not exit');
    t.notOk(
      p.logs().some((l) => l.msg === 'shutdown requested through the admin API'),
      'no shutdown was requested',
    );
    // the child's log lines reach us through its stdout pipe, possibly after the answers: wait for them (bounded), then count exactly
    const refusedLines = (): number => p.logs().filter((l) => l.msg === 'admin request refused').length;
    const audited = (): number =>
      p
        .logs()
        .filter((l) => l.msg === 'audit request_refused' && l.listener === 'admin' && l.code === 'ERR_ADMIN_FORBIDDEN')
        .length;
    await eventually(() => refusedLines() >= 4 && audited() >= 4, 5_000, 'the refusals logged and audited').catch(
      () => undefined,
    );
    t.equal(refusedLines(), 4, 'one log line per refusal');
    t.equal(audited(), 4, 'one audit event per refusal');
    const metrics = await send(port, 'GET', '/metrics');
    t.match(String(metrics.body.raw), /tollgate_admin_refusals_total\{reason="admin_forbidden"\} 4/, 'counted');

    // the same POST as a local script sends it is still obeyed
    const ok = await send(port, 'POST', '/shutdown');
    t.equal(ok.status, 202, 'a plain local POST /shutdown is 202');
    const finished = await exitWithin(p, WAIT_MS);
    t.equal(finished.code, 0, 'and the process exits 0');
  },
);

t.test(
  'every route refuses browser signals and foreign Hosts, GETs included; curl-like local requests pass',
  async (t) => {
    const { sc, port } = await adminSidecar(t);
    const refusals: Array<[string, Record<string, string>, { host?: string | null }]> = [
      ['Origin of another site', { origin: 'http://evil.example' }, {}],
      ['Origin: null (a sandboxed page or a redirect)', { origin: 'null' }, {}],
      ["Origin of the admin's own address (it serves no pages)", { origin: `http://127.0.0.1:${port}` }, {}],
      ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }, {}],
      ['Sec-Fetch-Site: same-site (a page on another localhost port)', { 'sec-fetch-site': 'same-site' }, {}],
      ['a foreign Host with our port (DNS rebinding)', {}, { host: `evil.example:${port}` }],
      ['a foreign Host without a port', {}, { host: 'evil.example' }],
      ['localhost with another port', {}, { host: `localhost:${port + 1 === 65536 ? 1 : port + 1}` }],
      ['127.0.0.1 without our port (port 80 implied)', {}, { host: '127.0.0.1' }],
      ['a name that ends like localhost', {}, { host: `evil.localhost.example:${port}` }],
      ['a malformed Host', {}, { host: `[::1:${port}` }],
      ['no Host at all (HTTP/1.0)', {}, { host: null }],
    ];
    const routes: Array<[string, string]> = [
      ['GET', '/config'],
      ['GET', '/status'],
      ['GET', '/metrics'],
      ['GET', '/livez'],
      ['GET', '/no-such-route'],
      ['POST', '/drain'],
      ['POST', '/reload'],
    ];
    let count = 0;
    for (const [what, headers, opts] of refusals) {
      for (const [method, path] of routes) {
        expectForbidden(t, await send(port, method, path, headers, opts), `${method} ${path}, ${what}`);
        count++;
      }
    }
    t.equal(sc.ready(), true, 'no refused POST /drain drained anything');
    t.equal(
      await sc.metric('tollgate_admin_refusals_total', { reason: 'admin_forbidden' }),
      count,
      'each refusal counted once',
    );
    t.equal(
      sc.logs.lines.filter((l) => l.msg === 'audit request_refused' && l.code === 'ERR_ADMIN_FORBIDDEN').length,
      count,
      'each refusal audited once',
    );

    const passes: Array<[string, Record<string, string>, { host?: string }]> = [
      ['Host 127.0.0.1 with our port', {}, {}],
      ['Host localhost with our port', {}, { host: `localhost:${port}` }],
      ['Host in upper case', {}, { host: `LOCALHOST:${port}` }],
      ['Sec-Fetch-Site: none (the operator typed the URL)', { 'sec-fetch-site': 'none' }, {}],
      ['Sec-Fetch-Site: same-origin', { 'sec-fetch-site': 'same-origin' }, {}],
    ];
    for (const [what, headers, opts] of passes) {
      const a = await send(port, 'GET', '/status', headers, opts);
      t.equal(a.status, 200, `${what}: 200`);
    }
    t.equal(sc.ready(), true);
  },
);

t.test(
  'the real curl, as an operator runs it, still reads and drives the admin API',
  { skip: existsSync('/usr/bin/curl') ? false : 'no curl' },
  async (t) => {
    const { sc, port } = await adminSidecar(t);
    const run = promisify(execFile);
    const status = await run('curl', ['-sS', '-w', '\\n%{http_code}', `http://127.0.0.1:${port}/status`]);
    t.match(status.stdout, /\n200$/, 'curl GET /status is 200');
    t.match(JSON.parse(status.stdout.slice(0, status.stdout.lastIndexOf('\n'))), { ready: true });
    const local = await run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://localhost:${port}/readyz`,
    ]);
    t.equal(local.stdout, '200', 'curl via localhost is 200');
    const drain = await run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-X',
      'POST',
      `http://127.0.0.1:${port}/drain`,
    ]);
    t.equal(drain.stdout, '202', 'curl -X POST /drain is 202');
    await eventually(() => !sc.ready(), WAIT_MS, 'draining');
    const forged = await run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      'Origin: http://evil.example',
      `http://127.0.0.1:${port}/status`,
    ]);
    t.equal(forged.stdout, '403', 'curl with a foreign Origin is 403');
  },
);

t.test(
  'an admin bound to [::1] accepts its bracketed address and localhost, and refuses the bare or foreign forms',
  async (t) => {
    const { port } = await adminSidecar(t, { listen: '[::1]:0' });
    const v6 = { address: '::1' };
    t.equal((await send(port, 'GET', '/status', {}, v6)).status, 200, `Host [::1]:${port}`);
    t.equal(
      (await send(port, 'GET', '/status', {}, { ...v6, host: `localhost:${port}` })).status,
      200,
      `Host localhost:${port}`,
    );
    expectForbidden(t, await send(port, 'GET', '/status', {}, { ...v6, host: '[::1]' }), 'Host [::1] without a port');
    expectForbidden(
      t,
      await send(port, 'GET', '/status', {}, { ...v6, host: `[::2]:${port}` }),
      'another IPv6 address',
    );
    expectForbidden(t, await send(port, 'GET', '/config', { origin: 'http://evil.example' }, v6), 'Origin over IPv6');
  },
);

t.test(
  'the bearer scheme is matched in any case; a missing or wrong token is 401 with WWW-Authenticate: Bearer',
  async (t) => {
    const w = await world(t);
    await writeFile(join(w.dir, 'admin.token'), 'correct-horse-battery\n', { mode: 0o600 });
    const { sc, port } = await adminSidecar(t, { listen: '127.0.0.1:0', tokenFile: join(w.dir, 'admin.token') });
    for (const header of [
      'Bearer correct-horse-battery',
      'bearer correct-horse-battery',
      'BEARER correct-horse-battery',
      'BeArEr   correct-horse-battery ',
    ]) {
      t.equal(
        (await send(port, 'GET', '/config', { authorization: header })).status,
        200,
        `${JSON.stringify(header)} is accepted`,
      );
    }
    const unauthorized: Array<[string, Record<string, string>]> = [
      ['no Authorization', {}],
      ['a wrong token', { authorization: 'Bearer correct-horse-batterz' }],
      ['a prefix of the token', { authorization: 'Bearer correct-horse' }],
      ['the token under another scheme', { authorization: 'Basic correct-horse-battery' }],
      ['no space after the scheme', { authorization: 'Bearercorrect-horse-battery' }],
      ['the scheme alone', { authorization: 'Bearer' }],
    ];
    for (const [what, headers] of unauthorized) {
      for (const [method, path] of [
        ['GET', '/status'],
        ['POST', '/shutdown'],
        ['GET', '/nothing-here'],
      ] as const) {
        const a = await send(port, method, path, headers);
        t.equal(a.status, 401, `${method} ${path}, ${what}: 401`);
        t.equal(a.headers['www-authenticate'], 'Bearer', `${what}: WWW-Authenticate: Bearer`);
        t.same(
          a.body,
          { error: 'ERR_ADMIN_UNAUTHORIZED', message: 'missing or wrong admin credentials' },
          `${what}: the error shape`,
        );
      }
    }
    t.equal(
      await sc.metric('tollgate_admin_refusals_total', { reason: 'admin_unauthorized' }),
      unauthorized.length * 3,
      'each counted',
    );
    t.equal(sc.ready(), true, 'no unauthorized POST /shutdown did anything');
    // the token does not open the door to a browser page: the browser check comes first
    const withToken = { authorization: 'Bearer correct-horse-battery', origin: 'http://evil.example' };
    expectForbidden(t, await send(port, 'POST', '/drain', withToken), 'a right token with a foreign Origin');
    t.equal(sc.ready(), true);
  },
);

t.test('an empty token file refuses to start, naming admin.tokenFile', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  await writeFile(join(w.dir, 'admin.token'), '\n', { mode: 0o600 });
  const err = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0', tokenFile: 'admin.token' },
    identity: ingest.files,
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:9', allow: { any: true } },
    ],
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof StartupError, 'a startup error');
  t.match((err as StartupError).problems, [/^admin\.tokenFile: .*admin\.token: holds no token$/]);
});

t.test('every admin error has the {error: ERR_…, message} shape with x-tollgate-error', async (t) => {
  const { port } = await adminSidecar(t);
  const cases: Array<[string, string, Record<string, string>, string, number, string]> = [
    ['GET', '/no-such-route', {}, '', 404, 'ERR_ADMIN_NOT_FOUND'],
    ['GET', '/shutdown', {}, '', 405, 'ERR_ADMIN_METHOD_NOT_ALLOWED'],
    ['DELETE', '/reload', {}, '', 405, 'ERR_ADMIN_METHOD_NOT_ALLOWED'],
    ['GET', '/handshakes/recent?limit=0', {}, '', 400, 'ERR_BAD_REQUEST'],
    ['POST', '/drain', { 'content-type': 'application/json' }, '{not json', 400, 'ERR_BAD_REQUEST'],
    [
      'POST',
      '/drain',
      { 'content-type': 'application/json' },
      JSON.stringify({ pad: 'x'.repeat(8192) }),
      413,
      'ERR_PAYLOAD_TOO_LARGE',
    ],
    ['GET', '/audit/head', {}, '', 404, 'ERR_ADMIN_NOT_FOUND'],
  ];
  for (const [method, path, headers, body, status, code] of cases) {
    const a = await new Promise<Answer>((resolve, reject) => {
      const length = body === '' ? {} : { 'content-length': String(Buffer.byteLength(body)) };
      const req = http.request(
        { host: '127.0.0.1', port, method, path, headers: { ...headers, ...length }, agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    t.equal(a.status, status, `${method} ${path}: ${status}`);
    t.equal(a.body.error, code, `${method} ${path}: ${code}`);
    t.equal(a.headers['x-tollgate-error'], code, `${method} ${path}: x-tollgate-error`);
    t.type(a.body.message, 'string', `${method} ${path}: a message`);
    if (status === 405) t.equal(a.headers.allow, 'POST', 'Allow: POST');
    if (status === 400 && path.startsWith('/handshakes'))
      t.match(a.body.problems, [/^limit: /], 'the query problems stay listed');
  }
});

t.test(
  'a reload that is refused, not possible now, or a view that throws: 500 / 409 with the same shape',
  async (t) => {
    let next: Awaited<ReturnType<AdminView['reload']>> = {
      ok: false,
      problems: ['listeners[0].listen: needs a restart'],
      changed: false,
      ignored: null,
    };
    const view: AdminView = {
      status: () => {
        throw new Error('boom');
      },
      reload: () => Promise.resolve(next),
    };
    const logs = captureLogs();
    const app = buildAdminApp({
      log: logs.logger,
      registry: new Registry(),
      token: null,
      readiness: { ready: () => true, reasons: () => [] },
      view,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.teardown(() => app.close());
    const port = (app.server.address() as net.AddressInfo).port;
    const failed = await send(port, 'POST', '/reload');
    t.equal(failed.status, 500);
    t.match(failed.body, {
      error: 'ERR_ADMIN_FAILED',
      message: String,
      ok: false,
      changed: false,
      problems: ['listeners[0].listen: needs a restart'],
    });
    next = { ok: false, problems: ['tollgate is draining; reload ignored'], changed: false, ignored: 'draining' };
    const draining = await send(port, 'POST', '/reload');
    t.equal(draining.status, 409);
    t.match(draining.body, { error: 'ERR_ADMIN_CONFLICT', message: /draining/, ok: false });
    const thrown = await send(port, 'GET', '/status');
    t.equal(thrown.status, 500);
    t.same(
      thrown.body,
      { error: 'ERR_ADMIN_FAILED', message: 'the admin operation failed' },
      'nothing of the exception leaks',
    );
    t.ok(
      logs.lines.some((l) => l.msg === 'admin request failed' && l.err === 'boom'),
      'the exception is logged',
    );
  },
);

t.test(
  'the health server answers probes under any Host (the kubelet sends the pod IP) but refuses browser requests',
  async (t) => {
    const { sc } = await adminSidecar(t, { listen: '127.0.0.1:0' }, true);
    const port = sc.health!.port;
    t.equal(
      (await send(port, 'GET', '/readyz', { 'user-agent': 'kube-probe/1.31' })).status,
      200,
      'a kubelet probe with Host = the address it dialled',
    );
    t.equal((await send(port, 'GET', '/readyz', {}, { host: `10.42.0.17:${port}` })).status, 200, 'Host = a pod IP');
    t.equal(
      (await send(port, 'GET', '/metrics', {}, { host: 'tollgate-gateway.pipeline.svc:15021' })).status,
      200,
      'Prometheus through a Service name',
    );
    expectForbidden(t, await send(port, 'GET', '/metrics', { origin: 'http://evil.example' }), 'health with an Origin');
    expectForbidden(
      t,
      await send(port, 'GET', '/readyz', { 'sec-fetch-site': 'cross-site' }),
      'health from another site',
    );
    const notFound = await send(port, 'GET', '/status');
    t.same(
      notFound.body,
      { error: 'ERR_ADMIN_NOT_FOUND', message: 'no such admin endpoint' },
      'a 404 has the shape too',
    );
  },
);
