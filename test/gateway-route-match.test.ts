import t from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { canonicalPath } from '../src/core/canonicalPath.ts';
import { hostOfAuthority, isRouteHostPattern, RouteMatcher, type RouteMatchSpec } from '../src/gateway/routeMatch.ts';

function route(
  pathPrefix: string,
  host: string | null = null,
  methods: readonly string[] | null = null,
): RouteMatchSpec {
  return { pathPrefix, host, methods };
}

/** Whether a table holding only `spec` takes the request. */
function takes(spec: RouteMatchSpec, host: string, path: string, method = 'GET'): boolean {
  return new RouteMatcher([spec]).match(host, path, method) === 0;
}

// ---------------------------------------------------------------------------------------------
// tables

t.test('a path prefix matches whole segments only', async (t) => {
  const events = route('/v1/events');
  for (const path of ['/v1/events', '/v1/events/', '/v1/events/x', '/v1/events/x/y/', '/v1/events/%3A'])
    t.ok(takes(events, 'a', path), `takes ${path}`);
  for (const path of [
    '/v1/eventsx',
    '/v1/event',
    '/v1/events%2Fx',
    '/v1/events;x',
    '/v1',
    '/',
    '/V1/events',
    '/x/v1/events',
  ])
    t.notOk(takes(events, 'a', path), `not ${path}`);
});

t.test('the prefix "/" takes every path', async (t) => {
  for (const path of ['/', '/a', '/a/', '/v1/events/x']) t.ok(takes(route('/'), 'a', path), path);
});

t.test('an exact host matches in any case, with or without a port or a trailing dot', async (t) => {
  const spec = route('/', 'Api.Example.org');
  for (const host of [
    'api.example.org',
    'API.EXAMPLE.ORG',
    'api.example.org:8443',
    'api.example.org.',
    'Api.Example.Org.:443',
  ])
    t.ok(takes(spec, host, '/'), `takes ${host}`);
  for (const host of [
    'example.org',
    'x.api.example.org',
    'api.example.org.x',
    'api.example.or',
    '',
    'api.example.org..',
    'api.example.org:x',
  ])
    t.notOk(takes(spec, host, '/'), `not ${JSON.stringify(host)}`);
});

t.test('a wildcard host needs at least one whole label before its suffix', async (t) => {
  const spec = route('/', '*.example.org');
  for (const host of ['a.example.org', 'a.b.example.org', 'A.EXAMPLE.ORG:8443', 'a.example.org.', 'x-1.example.org'])
    t.ok(takes(spec, host, '/'), `takes ${host}`);
  for (const host of [
    'example.org',
    'xexample.org',
    '.example.org',
    'a..example.org',
    'example.org.',
    'a.example.org.evil',
    '',
  ])
    t.notOk(takes(spec, host, '/'), `not ${JSON.stringify(host)}`);
});

t.test('an IPv6 host matches with its brackets and port, written bare or bracketed in the route', async (t) => {
  for (const pattern of ['::1', '[::1]']) {
    const spec = route('/', pattern);
    t.ok(takes(spec, '[::1]:8443', '/'), `${pattern} takes [::1]:8443`);
    t.ok(takes(spec, '[::1]', '/'), `${pattern} takes [::1]`);
    t.notOk(takes(spec, '::1', '/'), `${pattern}: a bare IPv6 Host field is not a host`);
    t.notOk(takes(spec, '[::2]', '/'), `${pattern} not [::2]`);
  }
  t.ok(takes(route('/', '2001:DB8::1'), '[2001:db8::1]', '/'), 'IPv6 compares in any case');
});

t.test('a host that is not a plain host name matches only routes without a host', async (t) => {
  for (const host of [
    'a@api.example.org',
    'api example.org',
    'api.example.org/x',
    '[::1',
    '[::1]x',
    ':8443',
    'a:1:2',
    '[zz]',
    '[]',
  ]) {
    t.notOk(takes(route('/', 'api.example.org'), host, '/'), `a host route: not ${JSON.stringify(host)}`);
    t.notOk(takes(route('/', '*.example.org'), host, '/'), `a wildcard route: not ${JSON.stringify(host)}`);
    t.ok(takes(route('/'), host, '/'), `a route for any host: takes ${JSON.stringify(host)}`);
  }
});

t.test('methods are matched exactly and case-sensitively; no list means any method', async (t) => {
  const posts = route('/', null, ['POST', 'PUT']);
  t.ok(takes(posts, 'a', '/', 'POST'));
  t.ok(takes(posts, 'a', '/', 'PUT'));
  t.notOk(takes(posts, 'a', '/', 'post'), 'methods are case-sensitive');
  t.notOk(takes(posts, 'a', '/', 'GET'));
  t.ok(takes(route('/'), 'a', '/', 'PATCH'));
  t.notOk(takes(route('/', null, []), 'a', '/', 'GET'), 'an empty list takes nothing');
});

t.test('the first matching route wins, and no match is -1', async (t) => {
  const m = new RouteMatcher([
    route('/v1/events', 'ingest.example.org', ['POST']),
    route('/v1/events', '*.example.org'),
    route('/v1'),
    route('/', 'admin.example.org'),
  ]);
  t.equal(m.match('ingest.example.org', '/v1/events/x', 'POST'), 0);
  t.equal(m.match('ingest.example.org', '/v1/events/x', 'GET'), 1, 'method differs: the next route');
  t.equal(m.match('other.example.org:443', '/v1/events', 'GET'), 1);
  t.equal(m.match('other.net', '/v1/events', 'POST'), 2, 'host differs: the next route');
  t.equal(m.match('admin.example.org', '/v2', 'GET'), 3);
  t.equal(m.match('other.net', '/v2', 'GET'), -1);
  t.equal(new RouteMatcher([]).match('a', '/', 'GET'), -1, 'an empty table matches nothing');
});

t.test('a route whose prefix or host config validation should have refused is refused at construction', async (t) => {
  for (const prefix of ['', 'v1', '/v1/', '//', '/v1/../x', '/v1/%65', '/a:b', '/v1?x'])
    t.throws(() => new RouteMatcher([route(prefix)]), TypeError, `prefix ${JSON.stringify(prefix)}`);
  for (const host of [
    '',
    'a.org:443',
    '*.',
    '*',
    '*.org:1',
    'a..org',
    '.a.org',
    'a b',
    '[::1]:443',
    '[x]',
    '**.org',
    'a.*.org',
  ])
    t.throws(() => new RouteMatcher([route('/', host)]), TypeError, `host ${JSON.stringify(host)}`);
});

t.test('isRouteHostPattern accepts names, IPv4, IPv6 and *.suffix, without a port', async (t) => {
  for (const host of [
    'a',
    'a.org',
    'A.Org',
    'a.org.',
    '10.0.0.1',
    '::1',
    '[::1]',
    '2001:db8::1',
    '*.a.org',
    '*.org',
    'x_y.org',
  ])
    t.equal(isRouteHostPattern(host), true, host);
  for (const host of ['', 'a.org:1', '10.0.0.1:80', '*.', '*', '*.a.org:1', 'a..b', '[::1]:1', '[::1', 'x/y', '*a.org'])
    t.equal(isRouteHostPattern(host), false, JSON.stringify(host));
});

t.test('hostOfAuthority lowercases, drops the port and one trailing dot, and keeps IPv6 brackets', async (t) => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['Api.Example.ORG', 'api.example.org'],
    ['api.example.org:8443', 'api.example.org'],
    ['api.example.org.', 'api.example.org'],
    ['api.example.org.:8443', 'api.example.org'],
    ['api.example.org:', 'api.example.org'],
    ['10.0.0.1:80', '10.0.0.1'],
    ['[::1]:8443', '[::1]'],
    ['[2001:DB8::1]', '[2001:db8::1]'],
    ['', ''],
    ['api.example.org..', ''],
    ['.api.example.org', ''],
    ['.', ''],
    ['a:b', ''],
    ['user@a', ''],
    ['[::1].:80', ''],
    ['::1', ''],
  ];
  for (const [authority, host] of cases) t.equal(hostOfAuthority(authority), host, JSON.stringify(authority));
});

// ---------------------------------------------------------------------------------------------
// properties against a naive reference, written differently: segments as arrays, hosts as label arrays

/** The request host's labels (an IPv6 literal as one label, brackets kept), or null when it is not a plain host. */
function referenceHostLabels(authority: string): string[] | null {
  const m = /^(?:(\[[0-9a-f:.]+\])|([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?)(?::[0-9]*)?$/i.exec(authority);
  if (m === null) return null;
  return m[1] !== undefined ? [m[1].toLowerCase()] : m[2]!.toLowerCase().split('.');
}

function referenceHostMatches(pattern: string, authority: string): boolean {
  const host = referenceHostLabels(authority);
  if (host === null) return false;
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(2).toLowerCase().replace(/\.$/, '').split('.');
    const below = host.slice(0, host.length - suffix.length);
    return (
      below.length > 0 &&
      below.every((label) => label !== '') &&
      host.slice(below.length).join('.') === suffix.join('.')
    );
  }
  const exact = pattern.includes(':') && !pattern.startsWith('[') ? `[${pattern}]` : pattern;
  return referenceHostLabels(exact)?.join('.') === host.join('.');
}

function segmentsOf(path: string): string[] {
  return path.split('/').slice(1);
}

function referencePathMatches(prefix: string, path: string): boolean {
  const wanted = prefix === '/' ? [] : segmentsOf(prefix);
  const have = segmentsOf(path);
  return wanted.every((segment, i) => have[i] === segment);
}

function referenceMatch(routes: readonly RouteMatchSpec[], host: string, path: string, method: string): number {
  return routes.findIndex(
    (r) =>
      referencePathMatches(r.pathPrefix, path) &&
      (r.host === null || referenceHostMatches(r.host, host)) &&
      (r.methods === null || r.methods.some((m) => m === method)),
  );
}

// small alphabets, so that routes and requests collide often
const PREFIXES = ['/', '/', '/a', '/a', '/b', '/ab', '/a/b', '/a/ab', '/b/a', '/a.b', '/~', '/a/b/a'];
const HOST_PATTERNS = [
  null,
  null,
  'a.org',
  'b.a.org',
  'A.ORG',
  '*.a.org',
  '*.org',
  '*.b.a.org',
  'org',
  '::1',
  '[::1]',
  '10.0.0.1',
];
const METHOD_SETS = [null, null, null, ['GET'], ['POST'], ['GET', 'POST'], ['get'], []];
const REQUEST_HOSTS = [
  ...[
    'a.org',
    'a.org',
    'b.a.org',
    'A.Org:443',
    'b.a.org',
    'b.a.org.',
    'x.b.a.org',
    'X.B.A.ORG:1',
    'org',
    'aorg',
    'ba.org',
    'xa.org',
  ],
  ...['[::1]', '[::1]:8443', '::1', '10.0.0.1:80', '', 'a..org', '.a.org', 'a.org:x', 'a@a.org'],
];
const METHODS = ['GET', 'GET', 'POST', 'get', 'PUT'];
/** spellings of a path segment, several per meaning: "a" and "%61" are one segment once canonical */
const SEGMENTS = [
  'a',
  'a',
  'a',
  '%61',
  'b',
  'b',
  '%62',
  'ab',
  'a%62',
  'a.b',
  'a%2eb',
  '~',
  '%7E',
  '%7e',
  'x',
  'a%3A',
  'a;',
  '',
];

const spec = fc.record({
  pathPrefix: fc.constantFrom(...PREFIXES),
  host: fc.constantFrom(...HOST_PATTERNS),
  methods: fc.constantFrom(...METHOD_SETS),
});
const table = fc.array(spec, { minLength: 1, maxLength: 8 });
const rawPath = fc
  .tuple(fc.array(fc.constantFrom(...SEGMENTS), { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([segments, trailingSlash]) => '/' + segments.join('/') + (trailingSlash && segments.length > 0 ? '/' : ''));
const request = fc.record({
  host: fc.constantFrom(...REQUEST_HOSTS),
  path: rawPath,
  method: fc.constantFrom(...METHODS),
});

/** Every escape decoded: the path as the app behind the gateway reads it. */
function decoded(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

t.test('the matcher picks the same route as a naive reference, over random tables and requests', async () => {
  let matched = 0;
  let runs = 0;
  const indexes = new Set<number>();
  fc.assert(
    fc.property(table, request, (routes, req) => {
      const canonical = canonicalPath(req.path);
      fc.pre(canonical.ok);
      const got = new RouteMatcher(routes).match(req.host, canonical.path, req.method);
      assert.equal(got, referenceMatch(routes, req.host, canonical.path, req.method));
      runs++;
      if (got >= 0) matched++;
      indexes.add(got);
    }),
    { numRuns: 20_000 },
  );
  // a reference that agrees only on "no match", or only on the first route, proves little
  assert.ok(matched > runs / 10 && matched < runs, `matched ${matched} of ${runs}`);
  assert.ok(indexes.size >= 6, `routes chosen: ${[...indexes].sort().join(', ')}`);
});

t.test('a canonical path routes as its decoded form does, so no spelling reaches another route', async () => {
  fc.assert(
    fc.property(table, request, (routes, req) => {
      const canonical = canonicalPath(req.path);
      fc.pre(canonical.ok);
      const matcher = new RouteMatcher(routes);
      assert.equal(
        matcher.match(req.host, canonical.path, req.method),
        referenceMatch(routes, req.host, decoded(req.path), req.method),
        `${req.path} is ${decoded(req.path)} to the app`,
      );
    }),
    { numRuns: 20_000 },
  );
});

t.test('two spellings of one path go to the same route', async (t) => {
  const m = new RouteMatcher([route('/v1/events', null, ['POST']), route('/')]);
  for (const spelling of ['/v1/events/x', '/v1/%65vents/x', '/%76%31/%65%76%65%6E%74%73/x', '/v1/even%74s/x'])
    t.equal(m.match('a', (canonicalPath(spelling) as { path: string }).path, 'POST'), 0, spelling);
});
