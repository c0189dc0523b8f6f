/**
 * docs/reference.md indexes the public contract, and this file keeps the index honest: the
 * names are read from what the code builds (a metrics registry with its series initialised,
 * the validator's output and problems, the admin and health apps' routes, the command and
 * annotation tables, the error table) and each must appear in the reference, with the same
 * type, labels, default or status. Links from docs/ into README.md and between the docs must
 * lead to a heading that exists.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { ERRORS, ERROR_CODES } from '../src/core/errors.ts';
import { validateConfig } from '../src/config/validate.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';
import { initialiseSeries } from '../src/telemetry/metricSeries.ts';
import { createWebhookMetrics } from '../src/webhook/webhookMetrics.ts';
import { ANNOTATIONS } from '../src/webhook/annotations.ts';
import { COMMANDS } from '../src/cli/commands.ts';
import { buildAdminApp } from '../src/admin/app.ts';
import { buildHealthApp } from '../src/admin/healthApp.ts';
import type { ConfigResult } from '../src/config/types.ts';
import { expectConfig } from './helpers/config.ts';
import { captureLogs } from './helpers/world.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REFERENCE = join(ROOT, 'docs', 'reference.md');
const DOCS = [join(ROOT, 'docs', 'architecture.md'), REFERENCE];

/* ------------------------------------------------------------------ reading markdown */

/** The text under the `## heading` (up to the next `## `), or a failing empty string. */
function section(markdown: string, heading: string): string {
  const lines = markdown.split('\n');
  const start = lines.indexOf(`## ${heading}`);
  if (start < 0) return '';
  const end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** The cells of every table row whose first cell is a single `code span` (header and separator rows have none). */
function codeRows(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.split('\n')) {
    if (!/^\|\s*`[^`]+`\s*\|/.test(line)) continue;
    rows.push(
      line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

function unquote(cell: string): string {
  return cell.replace(/^`|`$/g, '');
}

/** Every `code span` of a text. */
function codeSpans(text: string): Set<string> {
  return new Set([...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchors(markdown: string): Set<string> {
  return new Set(markdown.split('\n').flatMap((l) => (/^#{1,6} /.test(l) ? [slug(l.replace(/^#+ /, ''))] : [])));
}

async function reference(): Promise<string> {
  return readFile(REFERENCE, 'utf8');
}

/* ------------------------------------------------------------------ configs the validator judges */

/** The smallest config with one listener of each mode; every default is left to the validator. */
const BASE = Object.freeze({
  identity: { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt' },
  listeners: [
    {
      name: 'in',
      mode: 'inbound',
      listen: '127.0.0.1:1',
      target: '127.0.0.1:2',
      allow: { spiffe: ['spiffe://example.org/a'], dns: ['a.example.org'] },
    },
    { name: 'out', mode: 'outbound', listen: '127.0.0.1:3', target: 'peer.example.org:4' },
  ],
});

/** The same with its inbound listener allowed by CN only, for the allow rules BASE sets itself. */
const BASE_BY_CN = Object.freeze({
  ...BASE,
  listeners: [{ ...BASE.listeners[0]!, allow: { cn: ['a'] } }, BASE.listeners[1]!],
});

function validate(raw: unknown): ConfigResult {
  return validateConfig(raw, { baseDir: '/etc/tollgate', source: null });
}

type Json = Record<string, unknown>;

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A host:port once validated: a value, not a section. */
function isHostPort(v: Json): boolean {
  const keys = Object.keys(v).sort();
  return keys.length === 2 && keys[0] === 'host' && keys[1] === 'port';
}

/** The dotted key paths a validated config holds (listeners as `listeners[].…`, both modes merged). */
function keyPaths(value: Json, prefix: string): string[] {
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    if (prefix === '' && key === 'source') continue; // where the config came from, not a key
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if (prefix === '' && key === 'listeners')
      out.push(path, ...(v as Json[]).flatMap((l) => keyPaths(l, 'listeners[]')));
    else if (isPlainObject(v) && !isHostPort(v)) out.push(...keyPaths(v, path));
    else out.push(path);
  }
  return [...new Set(out)];
}

/** A copy of `raw` with the value at a dotted path set (or removed, for undefined). */
function withValue(raw: Json, path: string, value: unknown): Json {
  const copy = structuredClone(raw) as Json;
  const parts = path.split('.');
  let at = copy;
  for (const p of parts.slice(0, -1)) {
    if (!isPlainObject(at[p])) at[p] = {};
    at = at[p] as Json;
  }
  if (value === undefined) delete at[parts.at(-1)!];
  else at[parts.at(-1)!] = value;
  return copy;
}

/** The value at a concrete dotted path (`listeners.0.allow.dns`), or undefined. */
function valueAt(raw: Json, path: string): unknown {
  let at: unknown = raw;
  for (const p of path.split('.'))
    at = isPlainObject(at) || Array.isArray(at) ? (at as Record<string, unknown>)[p] : undefined;
  return at;
}

/** `listeners[].x` on listener i as a concrete path; other paths unchanged. */
function onListener(path: string, i: number): string {
  return path.replace(/^listeners\[\]/, `listeners.${i}`);
}

/** Set a path that may be on a listener: `listeners.0.limits` needs the array kept an array. */
function withListenerValue(raw: Json, path: string, value: unknown): Json {
  const m = /^listeners\.(\d+)\.(.+)$/.exec(path);
  if (m === null) return withValue(raw, path, value);
  const copy = structuredClone(raw) as Json;
  const listeners = copy.listeners as Json[];
  listeners[Number(m[1])] = withValue(listeners[Number(m[1])]!, m[2]!, value);
  return copy;
}

/* ------------------------------------------------------------------ tests */

t.test('every config key the validator accepts is in the reference, and the reference names no other', async (t) => {
  const accepted = keyPaths(expectConfig(validate(BASE)) as unknown as Json, '').sort();
  t.ok(
    accepted.includes('listeners[].limits.maxBodyBytes') && accepted.includes('admin.listen'),
    'the walk finds nested and top-level keys',
  );
  const documented = codeRows(section(await reference(), 'Configuration')).map((r) => unquote(r[0]!));
  t.same([...documented].sort(), accepted, 'docs/reference.md "Configuration" lists exactly the accepted keys');
  t.equal(new Set(documented).size, documented.length, 'each key once');
});

t.test(
  "each default the reference gives is what the validator fills in, and each 'required' key is required",
  async (t) => {
    const base = BASE as unknown as Json;
    const rows = codeRows(section(await reference(), 'Configuration'));
    let literals = 0;
    let required = 0;
    for (const [keyCell, defaultCell] of rows) {
      const key = unquote(keyCell!);
      const literal = /^`([^`]+)`/.exec(defaultCell!);
      if (literal !== null) {
        // written into a config that leaves it out, the documented default must change nothing (on a listener of either mode)
        const value: unknown = JSON.parse(literal[1]!);
        const paths = key.startsWith('listeners[].') ? [0, 1].map((i) => onListener(key, i)) : [key];
        const same = [BASE, BASE_BY_CN].some((b) => {
          const without = JSON.stringify(expectConfig(validate(b)));
          return paths.some((path) => {
            if (valueAt(b as unknown as Json, path) !== undefined) return false; // the base must leave it out
            const r = validate(withListenerValue(b as unknown as Json, path, value));
            return r.ok && JSON.stringify(r.config) === without;
          });
        });
        t.ok(same, `${key}: ${literal[1]} is the default`);
        literals += 1;
      } else if (defaultCell === 'required') {
        const path = key.startsWith('listeners[].') ? onListener(key, 0) : key;
        const r = validate(withListenerValue(base, path, undefined));
        const expected = path.replace(/^listeners\.(\d+)/, 'listeners[$1]');
        t.ok(
          !r.ok && r.problems.some((p) => p.path === expected),
          `${key}: leaving it out is a problem at ${expected}`,
        );
        required += 1;
      }
    }
    t.ok(literals > 40 && required > 5, `checked ${literals} defaults and ${required} required keys`);
  },
);

/** A gateway with one route whose optional sections (allow, upstreamTls) are set, so a walk of it meets their keys. */
const GATEWAY_ROUTE = Object.freeze({
  name: 'r',
  match: { pathPrefix: '/a' },
  allow: { spiffe: ['spiffe://example.org/a'] },
  targets: ['127.0.0.1:6'],
  upstreamTls: { verify: { spiffe: ['spiffe://example.org/b'] } },
});

/** The same with its allow-list by CN and no server identity demanded, for the lists GATEWAY_ROUTE sets itself. */
const GATEWAY_ROUTE_BY_CN = Object.freeze({ ...GATEWAY_ROUTE, allow: { cn: ['a'] }, upstreamTls: {} });

function gatewayWith(route: Json): Json {
  return {
    identity: BASE.identity,
    listeners: [{ name: 'gw', mode: 'gateway', listen: '127.0.0.1:5', allow: { any: true }, routes: [route] }],
  };
}

/** The route of a gateway config, validated. */
function validatedRoute(raw: Json): Json {
  return expectConfig(validate(gatewayWith(raw))).listeners[0]!.routes[0]! as unknown as Json;
}

/** The dotted key paths of a validated route, as `listeners[].routes[].…`. */
function routeKeyPaths(route: Json, prefix = 'listeners[].routes[]'): string[] {
  return Object.entries(route).flatMap(([key, v]) =>
    isPlainObject(v) && !isHostPort(v) ? routeKeyPaths(v, `${prefix}.${key}`) : [`${prefix}.${key}`],
  );
}

const ROUTE_PREFIX = 'listeners[].routes[].';

t.test(
  'every key a gateway route accepts is in the reference\'s "Gateway routes" with its default, and no other',
  async (t) => {
    const base = GATEWAY_ROUTE as unknown as Json;
    const route = validatedRoute(base);
    // a validated route also carries the listener's connection limits: a key is the route's when a route may set it
    const accepted = routeKeyPaths(route).filter((path) => {
      const key = path.slice(ROUTE_PREFIX.length);
      return validate(gatewayWith(withValue(base, key, valueAt(base, key) ?? valueAt(route, key)))).ok;
    });
    t.ok(
      accepted.includes(`${ROUTE_PREFIX}match.pathPrefix`) &&
        accepted.includes(`${ROUTE_PREFIX}passiveHealth.ejectSeconds`) &&
        !accepted.includes(`${ROUTE_PREFIX}limits.maxConnections`),
      'the walk finds the route keys and leaves out the listener-only limits',
    );
    const rows = codeRows(section(await reference(), 'Gateway routes'));
    const documented = rows.map((r) => unquote(r[0]!));
    t.same(
      [...documented].sort(),
      accepted.sort(),
      'docs/reference.md "Gateway routes" lists exactly the accepted keys',
    );
    t.equal(new Set(documented).size, documented.length, 'each key once');

    for (const [keyCell, defaultCell] of rows) {
      const key = unquote(keyCell!).slice(ROUTE_PREFIX.length);
      const literal = /^`([^`]+)`/.exec(defaultCell!);
      if (literal !== null) {
        // written into a route that leaves it out, the documented default must change nothing
        const same = [GATEWAY_ROUTE, GATEWAY_ROUTE_BY_CN].some((b) => {
          const raw = b as unknown as Json;
          if (valueAt(raw, key) !== undefined) return false;
          const r = validate(gatewayWith(withValue(raw, key, JSON.parse(literal[1]!))));
          return r.ok && JSON.stringify(r.config.listeners[0]!.routes[0]) === JSON.stringify(validatedRoute(raw));
        });
        t.ok(same, `${key}: ${literal[1]} is the default`);
      } else if (defaultCell === 'required') {
        const r = validate(gatewayWith(withValue(base, key, undefined)));
        const expected = `listeners[0].routes[0].${key}`;
        t.ok(
          !r.ok && r.problems.some((p) => p.path === expected),
          `${key}: leaving it out is a problem at ${expected}`,
        );
      }
    }
  },
);

/** The smallest sharedState: a plaintext store on loopback, every other key left to the validator. */
const SHARED_STATE = Object.freeze({ url: 'redis://127.0.0.1:6379' });

t.test(
  'every key sharedState accepts is in the reference\'s "Shared state" with its default, and no other',
  async (t) => {
    const base = withValue(BASE as unknown as Json, 'sharedState', SHARED_STATE);
    const validated = expectConfig(validate(base)).sharedState as unknown as Json;
    const accepted = Object.keys(validated).map((k) => `sharedState.${k}`);
    t.ok(accepted.includes('sharedState.onUnavailable'), 'the walk finds the keys');
    const rows = codeRows(section(await reference(), 'Shared state'));
    t.same(
      rows.map((r) => unquote(r[0]!)).sort(),
      accepted.sort(),
      'docs/reference.md "Shared state" lists exactly them',
    );
    const without = JSON.stringify(validated);
    for (const [keyCell, defaultCell] of rows) {
      const key = unquote(keyCell!);
      const literal = /^`([^`]+)`/.exec(defaultCell!);
      if (literal !== null) {
        // written into a config that leaves it out, the documented default must change nothing
        const r = validate(withValue(base, key, JSON.parse(literal[1]!)));
        t.ok(r.ok && JSON.stringify(r.config.sharedState) === without, `${key}: ${literal[1]} is the default`);
      } else {
        t.equal(defaultCell, 'required', `${key}: a default or "required"`);
        const r = validate(withValue(base, key, undefined));
        t.ok(!r.ok && r.problems.some((p) => p.path === key), `${key}: leaving it out is a problem at ${key}`);
      }
    }
  },
);

/** Series exist from the start for: an inbound listener that verifies and watches sizes, an outbound one, shared state, and the injector. */
async function startedRegistry(): Promise<Registry> {
  const registry = new Registry();
  const config = expectConfig(
    validate(
      withListenerValue(
        withValue(withValue(BASE as unknown as Json, 'keys.dir', 'keys'), 'sharedState', SHARED_STATE),
        'listeners.0.integrity',
        { verify: true },
      ),
    ),
  );
  initialiseSeries(createMetrics(registry), config, '0.0.0-test');
  createWebhookMetrics(registry);
  return registry;
}

t.test(
  'every metric tollgate registers is in the reference with its type and label names, and the reference names no other',
  async (t) => {
    const registry = await startedRegistry();
    const families = await registry.getMetricsAsJSON();
    t.ok(families.length > 20, 'the registry holds the metrics');
    const rows = new Map(codeRows(section(await reference(), 'Metrics')).map((r) => [unquote(r[0]!), r]));
    t.same([...rows.keys()].sort(), families.map((f) => f.name).sort(), 'the same metric names');
    for (const f of families) {
      const row = rows.get(f.name);
      if (row === undefined) continue;
      t.equal(row[1], f.type, `${f.name} is a ${f.type}`);
      const labelNames = [
        ...((registry.getSingleMetric(f.name) as unknown as { labelNames: readonly string[] }).labelNames ?? []),
      ];
      t.same([...codeSpans(row[2]!)].sort(), labelNames.sort(), `${f.name}: labels ${labelNames.join(', ') || 'none'}`);
    }
  },
);

/** Labels whose values come from a closed list in the code (listener, route, cert and version labels come from elsewhere). */
const CLOSED_LABELS = new Set([
  'result',
  'reason',
  'decision',
  'status_class',
  'direction',
  'kind',
  'type',
  'outcome',
  'operation',
]);

t.test('every value of a closed label set that a started registry holds is named in the reference', async (t) => {
  const families = await (await startedRegistry()).getMetricsAsJSON();
  const named = codeSpans(section(await reference(), 'Metrics'));
  const values = new Set<string>();
  for (const f of families) {
    for (const sample of f.values) {
      for (const [label, value] of Object.entries(sample.labels)) {
        if (CLOSED_LABELS.has(label) && value !== '') values.add(String(value));
      }
    }
  }
  t.ok(
    values.has('handshake_cap') &&
      values.has('replay_cache_full') &&
      values.has('key_ring_change') &&
      values.has('degraded'),
    'the closed sets were read',
  );
  t.same([...values].filter((v) => !named.has(v)).sort(), [], 'no closed label value is missing from the reference');
});

t.test("the reference's error table has every code of the error table with its status and metric reason", async (t) => {
  const rows = codeRows(section(await reference(), 'Error codes'));
  const documented = new Map(rows.map((r) => [unquote(r[0]!), { status: Number(r[1]), reason: unquote(r[2]!) }]));
  t.same([...documented.keys()].sort(), [...ERROR_CODES].sort(), 'the same codes');
  for (const code of ERROR_CODES)
    t.same(documented.get(code), { status: ERRORS[code].status, reason: ERRORS[code].reason }, code);
});

/** `METHOD /path` of each route an app serves; the first method printed is the one the route is for (405 handlers come after). */
async function routesOf(app: ReturnType<typeof buildAdminApp>): Promise<string[]> {
  await app.ready();
  const printed = app.printRoutes({ commonPrefix: false });
  await app.close();
  return [...printed.matchAll(/(\/\S*) \(([A-Z]+)/g)].map((m) => `${m[2]} ${m[1]}`);
}

t.test('every route of the admin and health servers is in the reference with its method', async (t) => {
  const log = captureLogs().logger;
  const readiness = { ready: () => true, reasons: () => [] };
  const admin = await routesOf(
    buildAdminApp({
      log,
      registry: new Registry(),
      token: null,
      readiness,
      view: { status: () => ({}), reload: () => Promise.reject(new Error('not here')) },
    }),
  );
  const health = await routesOf(buildHealthApp({ log, registry: new Registry(), readiness }));
  t.ok(
    admin.includes('POST /reload') && admin.includes('GET /status') && health.includes('GET /readyz'),
    'the routes were read',
  );
  const named = codeSpans(section(await reference(), 'Admin and health endpoints'));
  t.same(
    [...admin, ...health].filter((r) => !named.has(r)),
    [],
    'each route is named as `METHOD /path`',
  );
});

t.test('every command and every pod annotation is in the reference', async (t) => {
  const text = await reference();
  const commands = section(text, 'Commands');
  for (const c of COMMANDS) t.match(commands, `\`tollgate ${c.name}`, `tollgate ${c.name}`);
  const annotations = codeSpans(section(text, 'Kubernetes annotations'));
  for (const name of Object.values(ANNOTATIONS)) t.ok(annotations.has(name), name);
});

t.test('every link from docs/ to a heading leads to a heading that exists', async (t) => {
  let links = 0;
  for (const doc of DOCS) {
    const text = await readFile(doc, 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]*)#([^)\s]+)\)/g)) {
      const target = m[1] === '' ? doc : resolve(dirname(doc), m[1]!);
      const known = anchors(await readFile(target, 'utf8'));
      t.ok(known.has(m[2]!), `${doc.slice(ROOT.length)}: ${m[1]}#${m[2]}`);
      links += 1;
    }
  }
  t.ok(links > 10, `checked ${links} links`);
});

t.test(
  'every source file the docs name exists, so a moved module cannot leave the docs pointing nowhere',
  async (t) => {
    let named = 0;
    for (const doc of DOCS) {
      const text = await readFile(doc, 'utf8');
      for (const m of text.matchAll(/`((?:[a-z0-9]+\/)+[A-Za-z0-9]+\.ts)`/g)) {
        const path = m[1]!;
        // test/… from the repository's root, anything else from src/
        const candidates = path.startsWith('test/') ? [join(ROOT, path)] : [join(ROOT, 'src', path), join(ROOT, path)];
        const found = await Promise.all(
          candidates.map((c) =>
            readFile(c).then(
              () => true,
              () => false,
            ),
          ),
        );
        t.ok(found.some(Boolean), `${doc.slice(ROOT.length)}: ${path}`);
        named += 1;
      }
    }
    t.ok(named > 10, `checked ${named} file names`);
  },
);
