import t from 'tap';
import { expectConfig, expectProblems } from './helpers/config.ts';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ANOMALY, DEFAULT_INTEGRITY, DEFAULT_LIMITS } from '../src/config/defaults.ts';
import { formatHostPort, isLoopbackHost, parseHostPort } from '../src/config/hostPort.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { formatProblem, validateConfig } from '../src/config/validate.ts';
import type { ConfigProblem, ConfigResult } from '../src/config/types.ts';

/** The interface's first example config (a health server, an anomaly section; README.md, "Configuration" has today's), verbatim: it must keep validating. */
const INTERFACE_EXAMPLE = `{
  "admin":  { "listen": "127.0.0.1:15000", "tokenFile": null },
  "health": { "listen": "0.0.0.0:15021" },
  "identity": { "certFile": "tls.crt", "keyFile": "tls.key", "caFile": "ca.crt", "crlFile": null },
  "tls": { "minVersion": "TLSv1.2" },
  "keys": { "dir": "keys/" },
  "integrity": { "tag": "tollgate", "skewSeconds": 30, "maxAgeSeconds": 300,
                 "bodyMode": "buffer", "maxBufferedBytes": 8388608 },
  "audit": { "file": "audit.log", "keyFile": "audit.key" },
  "log": { "level": "info" },
  "listeners": [
    { "name": "ingest", "mode": "inbound", "protocol": "http",
      "listen": "0.0.0.0:15443", "target": "127.0.0.1:8080",
      "allow": { "spiffe": ["spiffe://example.org/producer"], "dns": [], "cn": [], "spkiPins": [] },
      "integrity": { "verify": true },
      "anomaly": { "mode": "observe" },
      "limits": { "maxBodyBytes": 16777216 } },
    { "name": "to-warehouse", "mode": "outbound", "protocol": "http",
      "listen": "127.0.0.1:15001", "target": "warehouse.example.org:15443",
      "serverName": "warehouse", "verify": { "spiffe": ["spiffe://example.org/warehouse"], "spkiPins": [] },
      "integrity": { "sign": true, "keyId": "k1" } }
  ]
}`;

/** The part of a tap test tempDir uses. */
interface TestLike {
  teardown(fn: () => unknown): void;
}

const PIN = `sha256/${Buffer.alloc(32, 7).toString('base64')}`;
const BASE_DIR = '/etc/tollgate';

async function tempDir(t: TestLike): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A small valid config: one inbound, one outbound listener. */
function baseRaw(): Record<string, unknown> {
  return {
    identity: { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt' },
    keys: { dir: 'keys' },
    listeners: [
      {
        name: 'in',
        mode: 'inbound',
        listen: '0.0.0.0:0',
        target: '127.0.0.1:8080',
        allow: { spiffe: ['spiffe://example.org/producer'] },
      },
      { name: 'out', mode: 'outbound', listen: '127.0.0.1:0', target: 'warehouse.example.org:15443' },
    ],
  };
}

/**
 * A copy of `raw` with values set at paths like `listeners[0].allow.any`; `undefined` deletes.
 */
function withChanges(raw: Record<string, unknown>, changes: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(raw);
  for (const [path, value] of Object.entries(changes)) {
    const parts = path.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== '');
    let node = copy as Record<string, unknown>;
    for (const part of parts.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    const last = parts.at(-1) as string;
    if (value === undefined) delete node[last];
    else node[last] = value;
  }
  return copy;
}

function validate(raw: unknown): ConfigResult {
  return validateConfig(raw, { baseDir: BASE_DIR, source: null });
}

function allFrozen(value: unknown, path = 'config'): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const here = Object.isFrozen(value) ? [] : [path];
  return [...here, ...Object.entries(value).flatMap(([k, v]) => allFrozen(v, `${path}.${k}`))];
}

t.test('the interface example file validates, with defaults applied and paths resolved', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'tollgate.json');
  await writeFile(file, INTERFACE_EXAMPLE);
  const config = expectConfig(await loadConfigFile(file));

  t.equal(config.source, file);
  t.same(config.admin, { listen: { host: '127.0.0.1', port: 15000 }, tokenFile: null });
  t.same(config.health, { listen: { host: '0.0.0.0', port: 15021 } });
  t.same(config.identity, {
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    caFile: join(dir, 'ca.crt'),
    crlFile: null,
    crlStale: 'warn',
    expiryWarningFraction: 1 / 3,
  });
  t.equal(config.keys.dir, join(dir, 'keys'));
  t.same(config.audit, {
    file: join(dir, 'audit.log'),
    keyFile: join(dir, 'audit.key'),
    maxFileBytes: 64 * 1024 * 1024,
    maxFiles: 10,
  });
  t.same(config.integrity, DEFAULT_INTEGRITY);
  t.equal(config.drainTimeoutSeconds, 20, 'drain timeout defaulted');

  const [ingest, toWarehouse] = config.listeners;
  t.match(ingest, {
    name: 'ingest',
    mode: 'inbound',
    protocol: 'http',
    listen: { host: '0.0.0.0', port: 15443 },
    target: { host: '127.0.0.1', port: 8080 },
    allow: { any: false, spiffe: ['spiffe://example.org/producer'], dns: [], cn: [], spkiPins: [] },
    integrity: { verify: true, sign: false, keyId: null },
    unsafeTarget: false,
  });
  t.same(ingest?.anomaly, DEFAULT_ANOMALY, 'anomaly minSamples and threshold defaulted');
  t.same(
    ingest?.limits,
    { ...DEFAULT_LIMITS, maxHandshakesPerSource: 32 },
    'the other limits defaulted (the per-source handshake limit derived from the cap)',
  );
  t.match(toWarehouse, {
    name: 'to-warehouse',
    mode: 'outbound',
    target: { host: 'warehouse.example.org', port: 15443 },
    serverName: 'warehouse',
    verify: { spiffe: ['spiffe://example.org/warehouse'], spkiPins: [] },
    integrity: { verify: false, sign: true, keyId: 'k1' },
  });
});

t.test('a minimal config gets every default', async (t) => {
  const config = expectConfig(validate(baseRaw()));
  t.same(config.admin, { listen: { host: '127.0.0.1', port: 15000 }, tokenFile: null }, 'admin on loopback');
  t.same(config.health, { listen: null }, 'no health server unless asked');
  t.same(config.tls, { minVersion: 'TLSv1.2' });
  t.same(config.log, { level: 'info', access: false });
  t.same(config.audit, { file: null, keyFile: null, maxFileBytes: 64 * 1024 * 1024, maxFiles: 10 });
  t.same(config.integrity, {
    tag: 'tollgate',
    skewSeconds: 30,
    maxAgeSeconds: 300,
    bodyMode: 'buffer',
    maxBufferedBytes: 8 * 1024 * 1024,
    replayCacheEntries: 1_000_000,
    requiredComponents: [],
  });
  t.equal(config.drainTimeoutSeconds, 20);
  t.equal(config.identity.crlFile, null);
  const [inbound, outbound] = config.listeners;
  t.same(inbound?.limits, {
    maxBodyBytes: 16 * 1024 * 1024,
    maxHeaderBytes: 16384,
    requestsPerSecond: 0,
    burst: 0,
    maxConnections: 1024,
    maxConcurrentHandshakes: 128,
    maxHandshakesPerSource: 32,
    clientHelloTimeoutSeconds: 2,
    handshakeTimeoutSeconds: 10,
    headersTimeoutSeconds: 10,
    bodyTimeoutSeconds: 10,
    minBodyBytesPerSecond: 1024,
    idleTimeoutSeconds: 120,
    upstreamTimeoutSeconds: 30,
    http2MaxConcurrentStreams: 100,
    http2HeaderTableBytes: 4096,
    http2StreamWindowBytes: 256 * 1024,
    http2ConnectionWindowBytes: 1024 * 1024,
    http2MaxResetsPerSecond: 100,
    http2MaxPingsPerSecond: 20,
    http2MaxSettingsPerSecond: 10,
  });
  t.equal(inbound?.http2, true, 'an HTTP listener offers HTTP/2 by default');
  t.equal(inbound?.targetProtocol, 'http1', 'and speaks HTTP/1.1 to its app');
  t.same(inbound?.anomaly, { mode: 'observe', minSamples: 200, threshold: 4, maxTrackedPeers: 1000 });
  t.equal(inbound?.protocol, 'http');
  t.same(inbound?.integrity, { verify: false, sign: false, keyId: null }, 'verify off by default');
  t.equal(outbound?.serverName, 'warehouse.example.org', 'serverName defaults to the target host');
  t.same(outbound?.verify, { spiffe: [], spkiPins: [] });
  t.same(outbound?.integrity, { verify: false, sign: false, keyId: null }, 'sign off by default');
});

t.test('the validated config is deeply frozen', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'tollgate.json');
  await writeFile(file, INTERFACE_EXAMPLE);
  const result = await loadConfigFile(file);
  t.ok(Object.isFrozen(result));
  const config = expectConfig(result);
  t.same(allFrozen(config), [], 'every nested object and array is frozen');
  t.ok(Object.isFrozen(config.listeners[0]?.allow.spiffe));
  t.ok(Object.isFrozen(config.listeners[1]?.limits));
  t.throws(() => {
    (config.listeners as ListenerArray).push(config.listeners[0]);
  }, TypeError);
  t.throws(() => {
    (config.admin as { listen: unknown }).listen = null;
  }, TypeError);
  const bad = validate({});
  t.ok(Object.isFrozen(bad));
  t.same(allFrozen(bad), [], 'problem lists are frozen too');
});

type ListenerArray = unknown[];

t.test('relative paths resolve against the config file folder, not the working directory', async (t) => {
  const dir = await tempDir(t);
  const nested = join(dir, 'etc', 'tollgate');
  await mkdir(nested, { recursive: true });
  const raw = withChanges(baseRaw(), {
    identity: { certFile: 'certs/tls.crt', keyFile: '../secret/tls.key', caFile: '/abs/ca.crt', crlFile: 'ca.crl' },
    admin: { listen: '127.0.0.1:0', tokenFile: 'admin.token' },
    audit: { file: 'audit.log', keyFile: 'audit.key' },
    keys: { dir: './keys/' },
  });
  const file = join(nested, 'tollgate.json');
  await writeFile(file, JSON.stringify(raw));
  const config = expectConfig(await loadConfigFile(file));
  t.equal(config.identity.certFile, join(nested, 'certs', 'tls.crt'));
  t.equal(config.identity.keyFile, join(dir, 'etc', 'secret', 'tls.key'));
  t.equal(config.identity.caFile, '/abs/ca.crt', 'absolute paths stay');
  t.equal(config.identity.crlFile, join(nested, 'ca.crl'));
  t.equal(config.admin.tokenFile, join(nested, 'admin.token'));
  t.equal(config.audit.file, join(nested, 'audit.log'));
  t.equal(config.audit.keyFile, join(nested, 'audit.key'));
  t.equal(config.keys.dir, join(nested, 'keys'));
});

t.test('a file that is not JSON is one problem with its position', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'broken.json');
  await writeFile(file, '{\n  "listeners": [],\n}\n');
  const problems = expectProblems(await loadConfigFile(file));
  t.equal(problems.length, 1);
  t.equal(problems[0]?.path, 'config');
  t.match(problems[0]?.message, /^invalid JSON: .*position \d+/);
});

t.test('an empty file is invalid JSON', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'empty.json');
  await writeFile(file, '');
  const problems = expectProblems(await loadConfigFile(file));
  t.match(problems, [{ path: 'config', message: /^invalid JSON/ }]);
});

t.test('a file with a UTF-8 byte order mark still loads', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'bom.json');
  await writeFile(file, `\uFEFF${JSON.stringify(baseRaw())}`);
  expectConfig(await loadConfigFile(file));
});

t.test('an unreadable file is a problem naming the file', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope.json');
  t.same(expectProblems(await loadConfigFile(missing)), [
    { path: 'config', message: `cannot read ${missing}: no such file` },
  ]);
  t.match(expectProblems(await loadConfigFile(dir)), [
    { path: 'config', message: `cannot read ${dir}: is a directory` },
  ]);
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.json');
    await writeFile(locked, '{}');
    await chmod(locked, 0o000);
    t.match(expectProblems(await loadConfigFile(locked)), [{ path: 'config', message: /permission denied/ }]);
  }
});

t.test('a config that is not an object is one problem', async (t) => {
  for (const raw of [null, [], 'x', 42]) {
    t.same(expectProblems(validate(raw)), [{ path: 'config', message: 'expected a JSON object' }]);
  }
});

interface Rule {
  readonly name: string;
  readonly changes: Record<string, unknown>;
  readonly path: string;
  readonly message: string | RegExp;
}

const RULES: readonly Rule[] = [
  // unknown keys, at every level
  {
    name: 'an unknown top-level key',
    changes: { listenerz: [] },
    path: 'listenerz',
    message: 'unknown key (did you mean listeners?)',
  },
  {
    name: 'a typo inside a listener',
    changes: { 'listeners[0].alow': {} },
    path: 'listeners[0].alow',
    message: /unknown key \(did you mean allow\?\)/,
  },
  {
    name: 'a typo inside allow',
    changes: { 'listeners[0].allow.spife': ['spiffe://a/b'] },
    path: 'listeners[0].allow.spife',
    message: /did you mean spiffe/,
  },
  {
    name: 'a typo inside limits',
    changes: { 'listeners[0].limits.maxBodySize': 1 },
    path: 'listeners[0].limits.maxBodySize',
    message: /unknown key/,
  },
  {
    name: 'an unknown key in identity',
    changes: { 'identity.chainFile': 'x' },
    path: 'identity.chainFile',
    message: /unknown key/,
  },
  {
    name: 'an odd key name is quoted in the path',
    changes: { 'log.my key': 1 },
    path: 'log["my key"]',
    message: 'unknown key',
  },
  // secrets
  {
    name: 'an inline token',
    changes: { 'admin.token': 'hunter2' },
    path: 'admin.token',
    message: /secrets are never written inline.*file/,
  },
  {
    name: 'an inline key',
    changes: { 'identity.key': 'abc' },
    path: 'identity.key',
    message: /secrets are never written inline/,
  },
  {
    name: 'an inline password',
    changes: { password: 'abc' },
    path: 'password',
    message: /secrets are never written inline/,
  },
  {
    name: 'an inline secret',
    changes: { 'audit.secret': 'abc' },
    path: 'audit.secret',
    message: /secrets are never written inline/,
  },
  {
    name: 'a key inline in keys',
    changes: { 'keys.k1': 'c2VjcmV0' },
    path: 'keys.k1',
    message: /secrets are never written inline/,
  },
  {
    name: 'an inline PEM',
    changes: { 'identity.cert': '-----BEGIN CERTIFICATE-----' },
    path: 'identity.cert',
    message: /secrets are never written inline/,
  },
  // listeners
  { name: 'no listeners', changes: { listeners: undefined }, path: 'listeners', message: /required/ },
  {
    name: 'an empty listener list',
    changes: { listeners: [] },
    path: 'listeners',
    message: 'at least one listener is required',
  },
  {
    name: 'listeners not an array',
    changes: { listeners: {} },
    path: 'listeners',
    message: 'expected an array of listeners',
  },
  {
    name: 'a listener that is not an object',
    changes: { 'listeners[1]': 'out' },
    path: 'listeners[1]',
    message: 'expected an object',
  },
  {
    name: 'a listener without a name',
    changes: { 'listeners[0].name': undefined },
    path: 'listeners[0].name',
    message: 'required',
  },
  {
    name: 'an uppercase listener name',
    changes: { 'listeners[0].name': 'Ingest' },
    path: 'listeners[0].name',
    message: /metric label/,
  },
  {
    name: 'a listener name with a dot',
    changes: { 'listeners[0].name': 'a.b' },
    path: 'listeners[0].name',
    message: /lowercase letters/,
  },
  {
    name: 'a duplicate listener name',
    changes: { 'listeners[1].name': 'in' },
    path: 'listeners[1].name',
    message: '"in" is already the name of listeners[0]',
  },
  {
    name: 'a missing mode',
    changes: { 'listeners[0].mode': undefined },
    path: 'listeners[0].mode',
    message: 'required',
  },
  {
    name: 'an unknown mode',
    changes: { 'listeners[0].mode': 'sideways' },
    path: 'listeners[0].mode',
    message: 'expected one of "inbound", "outbound", "gateway"',
  },
  {
    name: 'an inbound listener turned gateway without routes',
    changes: { 'listeners[0].mode': 'gateway', 'listeners[0].target': undefined },
    path: 'listeners[0].routes',
    message: 'required: a gateway listener needs at least one route',
  },
  {
    name: 'an unknown protocol',
    changes: { 'listeners[0].protocol': 'h2' },
    path: 'listeners[0].protocol',
    message: 'expected one of "http", "tcp"',
  },
  // addresses
  {
    name: 'a listen address without a port',
    changes: { 'listeners[0].listen': '0.0.0.0' },
    path: 'listeners[0].listen',
    message: /^expected HOST:PORT/,
  },
  {
    name: 'an unbracketed IPv6 listen address',
    changes: { 'listeners[0].listen': '::1:8443' },
    path: 'listeners[0].listen',
    message: /^expected HOST:PORT.*bracket/,
  },
  {
    name: 'a port out of range',
    changes: { 'listeners[0].listen': '0.0.0.0:65536' },
    path: 'listeners[0].listen',
    message: /^expected HOST:PORT.*out of range/,
  },
  {
    name: 'a listen address that is not a string',
    changes: { 'listeners[0].listen': 8443 },
    path: 'listeners[0].listen',
    message: /^expected HOST:PORT/,
  },
  {
    name: 'a missing listen address',
    changes: { 'listeners[0].listen': undefined },
    path: 'listeners[0].listen',
    message: 'required',
  },
  {
    name: 'a missing target',
    changes: { 'listeners[1].target': undefined },
    path: 'listeners[1].target',
    message: 'required',
  },
  {
    name: 'a target on port 0',
    changes: { 'listeners[0].target': '127.0.0.1:0' },
    path: 'listeners[0].target',
    message: /port from 1 to 65535/,
  },
  {
    name: 'a bad host',
    changes: { 'listeners[1].target': 'bad_host:80' },
    path: 'listeners[1].target',
    message: /^expected HOST:PORT/,
  },
  {
    name: 'two listeners on one address',
    changes: { 'listeners[0].listen': '127.0.0.1:15001', 'listeners[1].listen': '127.0.0.1:15001' },
    path: 'listeners[1].listen',
    message: '127.0.0.1:15001 collides with listeners[0].listen (127.0.0.1:15001)',
  },
  {
    name: 'a listener on a port the wildcard already holds',
    changes: { 'listeners[0].listen': '0.0.0.0:15001', 'listeners[1].listen': '127.0.0.1:15001' },
    path: 'listeners[1].listen',
    message: /collides with listeners\[0\]\.listen/,
  },
  {
    name: 'a listener on the admin address',
    changes: { 'listeners[1].listen': '127.0.0.1:15000' },
    path: 'listeners[1].listen',
    message: /collides with admin\.listen/,
  },
  // inbound
  {
    name: 'inbound without allow',
    changes: { 'listeners[0].allow': undefined },
    path: 'listeners[0].allow',
    message: 'at least one of spiffe, dns, cn, spkiPins, or any: true',
  },
  {
    name: 'inbound with empty allow lists',
    changes: { 'listeners[0].allow': { spiffe: [], dns: [], cn: [], spkiPins: [] } },
    path: 'listeners[0].allow',
    message: 'at least one of spiffe, dns, cn, spkiPins, or any: true',
  },
  {
    name: 'inbound with any: false alone',
    changes: { 'listeners[0].allow': { any: false } },
    path: 'listeners[0].allow',
    message: 'at least one of spiffe, dns, cn, spkiPins, or any: true',
  },
  {
    name: 'allow.any not a boolean',
    changes: { 'listeners[0].allow': { any: 'yes' } },
    path: 'listeners[0].allow.any',
    message: 'expected true or false',
  },
  {
    name: 'allow not an object',
    changes: { 'listeners[0].allow': 'any' },
    path: 'listeners[0].allow',
    message: /^expected an object/,
  },
  {
    name: 'a SPIFFE ID without a path',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://example.org'] },
    path: 'listeners[0].allow.spiffe[0]',
    message: /^expected spiffe:\/\/trust-domain\/path/,
  },
  {
    name: 'a SPIFFE ID with another scheme',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://ok.org/a', 'https://example.org/a'] },
    path: 'listeners[0].allow.spiffe[1]',
    message: /^expected spiffe:\/\//,
  },
  {
    name: 'a SPIFFE trust domain in uppercase',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://Example.org/a'] },
    path: 'listeners[0].allow.spiffe[0]',
    message: /trust domain/,
  },
  {
    name: 'a SPIFFE path with ..',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://example.org/a/../b'] },
    path: 'listeners[0].allow.spiffe[0]',
    message: /path segments/,
  },
  {
    name: 'a SPIFFE path with an empty segment',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://example.org/a//b'] },
    path: 'listeners[0].allow.spiffe[0]',
    message: /path segments/,
  },
  {
    name: 'a partial SPIFFE wildcard',
    changes: { 'listeners[0].allow.spiffe': ['spiffe://example.org/ns/*'] },
    path: 'listeners[0].allow.spiffe[0]',
    message: /path segments/,
  },
  {
    name: 'a SPIFFE entry that is not a string',
    changes: { 'listeners[0].allow.spiffe': [42] },
    path: 'listeners[0].allow.spiffe[0]',
    message: 'expected a string',
  },
  {
    name: 'allow.spiffe not an array',
    changes: { 'listeners[0].allow.spiffe': 'spiffe://a/b' },
    path: 'listeners[0].allow.spiffe',
    message: 'expected an array of strings',
  },
  {
    name: 'a pin without sha256/',
    changes: { 'listeners[0].allow.spkiPins': [Buffer.alloc(32).toString('base64')] },
    path: 'listeners[0].allow.spkiPins[0]',
    message: /^expected sha256\//,
  },
  {
    name: 'a pin of the wrong length',
    changes: { 'listeners[0].allow.spkiPins': [`sha256/${Buffer.alloc(20).toString('base64')}`] },
    path: 'listeners[0].allow.spkiPins[0]',
    message: /32 bytes/,
  },
  {
    name: 'a pin in a non-canonical spelling',
    changes: { 'listeners[0].allow.spkiPins': [`${PIN.slice(0, -2)}B=`] },
    path: 'listeners[0].allow.spkiPins[0]',
    message: /32 bytes/,
  },
  {
    name: 'a wildcard DNS name',
    changes: { 'listeners[0].allow.dns': ['*.example.org'] },
    path: 'listeners[0].allow.dns[0]',
    message: /wildcard/,
  },
  {
    name: 'an invalid DNS name',
    changes: { 'listeners[0].allow.dns': ['exa mple'] },
    path: 'listeners[0].allow.dns[0]',
    message: 'expected a DNS name',
  },
  {
    name: 'an empty CN',
    changes: { 'listeners[0].allow.cn': [''] },
    path: 'listeners[0].allow.cn[0]',
    message: 'expected a non-empty string',
  },
  {
    name: 'an inbound target off loopback',
    changes: { 'listeners[0].target': '10.0.0.5:8080' },
    path: 'listeners[0].target',
    message: /10\.0\.0\.5:8080 is off loopback.*unsafeTarget: true/,
  },
  {
    name: 'an inbound target by remote name',
    changes: { 'listeners[0].target': 'app.svc:8080' },
    path: 'listeners[0].target',
    message: /off loopback/,
  },
  {
    name: 'unsafeTarget not a boolean',
    changes: { 'listeners[0].unsafeTarget': 'true' },
    path: 'listeners[0].unsafeTarget',
    message: 'expected true or false',
  },
  {
    name: 'verify on inbound',
    changes: { 'listeners[0].verify': { spiffe: [] } },
    path: 'listeners[0].verify',
    message: 'is for outbound listeners only',
  },
  {
    name: 'serverName on inbound',
    changes: { 'listeners[0].serverName': 'x' },
    path: 'listeners[0].serverName',
    message: 'is for outbound listeners only',
  },
  {
    name: 'unsafeListen on inbound',
    changes: { 'listeners[0].unsafeListen': true },
    path: 'listeners[0].unsafeListen',
    message: 'is for outbound listeners only',
  },
  {
    name: 'integrity.sign on inbound',
    changes: { 'listeners[0].integrity': { sign: true } },
    path: 'listeners[0].integrity.sign',
    message: /is for outbound listeners only/,
  },
  {
    name: 'integrity.keyId on inbound',
    changes: { 'listeners[0].integrity': { keyId: 'k1' } },
    path: 'listeners[0].integrity.keyId',
    message: /is for outbound listeners only/,
  },
  {
    name: 'integrity.verify without keys.dir',
    changes: { keys: undefined, 'listeners[0].integrity': { verify: true } },
    path: 'listeners[0].integrity.verify',
    message: /needs keys\.dir/,
  },
  {
    name: 'integrity.verify not a boolean',
    changes: { 'listeners[0].integrity': { verify: 1 } },
    path: 'listeners[0].integrity.verify',
    message: 'expected true or false',
  },
  // outbound
  {
    name: 'an outbound listen off loopback',
    changes: { 'listeners[1].listen': '0.0.0.0:15001' },
    path: 'listeners[1].listen',
    message: /0\.0\.0\.0:15001 is off loopback.*unsafeListen: true/,
  },
  {
    name: 'allow on outbound',
    changes: { 'listeners[1].allow': { any: true } },
    path: 'listeners[1].allow',
    message: 'is for inbound listeners only',
  },
  {
    name: 'unsafeTarget on outbound',
    changes: { 'listeners[1].unsafeTarget': true },
    path: 'listeners[1].unsafeTarget',
    message: 'is for inbound listeners only',
  },
  {
    name: 'integrity.verify on outbound',
    changes: { 'listeners[1].integrity': { verify: true } },
    path: 'listeners[1].integrity.verify',
    message: /is for inbound listeners only/,
  },
  {
    name: 'a bad serverName',
    changes: { 'listeners[1].serverName': 'not a name' },
    path: 'listeners[1].serverName',
    message: /DNS name or an IP/,
  },
  {
    name: 'a bad verify.spiffe',
    changes: { 'listeners[1].verify': { spiffe: ['warehouse'] } },
    path: 'listeners[1].verify.spiffe[0]',
    message: /^expected spiffe:/,
  },
  {
    name: 'a bad verify.spkiPins',
    changes: { 'listeners[1].verify': { spkiPins: ['sha1/abc'] } },
    path: 'listeners[1].verify.spkiPins[0]',
    message: /^expected sha256\//,
  },
  {
    name: 'a typo in verify',
    changes: { 'listeners[1].verify': { spkiPin: [PIN] } },
    path: 'listeners[1].verify.spkiPin',
    message: /did you mean spkiPins/,
  },
  {
    name: 'sign without keyId',
    changes: { 'listeners[1].integrity': { sign: true } },
    path: 'listeners[1].integrity.keyId',
    message: /required when sign is true/,
  },
  {
    name: 'sign with a null keyId',
    changes: { 'listeners[1].integrity': { sign: true, keyId: null } },
    path: 'listeners[1].integrity.keyId',
    message: /required when sign is true/,
  },
  {
    name: 'sign without keys.dir',
    changes: { keys: undefined, 'listeners[1].integrity': { sign: true, keyId: 'k1' } },
    path: 'listeners[1].integrity.sign',
    message: /needs keys\.dir/,
  },
  {
    name: 'a keyId that escapes the key folder',
    changes: { 'listeners[1].integrity': { sign: true, keyId: '../k1' } },
    path: 'listeners[1].integrity.keyId',
    message: /key id/,
  },
  {
    name: 'a keyId that is not a string',
    changes: { 'listeners[1].integrity': { sign: true, keyId: 1 } },
    path: 'listeners[1].integrity.keyId',
    message: /key id/,
  },
  // tcp
  {
    name: 'verify on a tcp listener',
    changes: { 'listeners[0].protocol': 'tcp', 'listeners[0].integrity': { verify: true } },
    path: 'listeners[0].integrity.verify',
    message: /tcp listener carries no HTTP messages/,
  },
  {
    name: 'sign on a tcp listener',
    changes: { 'listeners[1].protocol': 'tcp', 'listeners[1].integrity': { sign: true, keyId: 'k1' } },
    path: 'listeners[1].integrity.sign',
    message: /tcp listener carries no HTTP messages/,
  },
  // identity
  { name: 'no identity', changes: { identity: undefined }, path: 'identity', message: 'required' },
  {
    name: 'identity without certFile',
    changes: { 'identity.certFile': undefined },
    path: 'identity.certFile',
    message: 'required',
  },
  {
    name: 'identity without keyFile',
    changes: { 'identity.keyFile': undefined },
    path: 'identity.keyFile',
    message: 'required',
  },
  {
    name: 'identity without caFile',
    changes: { 'identity.caFile': undefined },
    path: 'identity.caFile',
    message: 'required',
  },
  { name: 'an empty certFile', changes: { 'identity.certFile': '' }, path: 'identity.certFile', message: /file path/ },
  {
    name: 'a crlFile that is not a path',
    changes: { 'identity.crlFile': true },
    path: 'identity.crlFile',
    message: /file path/,
  },
  {
    name: 'a crlStale that is neither warn nor refuse',
    changes: { 'identity.crlStale': 'ignore' },
    path: 'identity.crlStale',
    message: 'expected one of "warn", "refuse"',
  },
  // numbers
  {
    name: 'maxBodyBytes 0',
    changes: { 'listeners[0].limits': { maxBodyBytes: 0 } },
    path: 'listeners[0].limits.maxBodyBytes',
    message: 'expected a positive integer',
  },
  {
    name: 'maxBodyBytes fractional',
    changes: { 'listeners[0].limits': { maxBodyBytes: 1.5 } },
    path: 'listeners[0].limits.maxBodyBytes',
    message: 'expected a positive integer',
  },
  {
    name: 'maxBodyBytes as text',
    changes: { 'listeners[0].limits': { maxBodyBytes: '16MiB' } },
    path: 'listeners[0].limits.maxBodyBytes',
    message: 'expected a positive integer',
  },
  {
    name: 'maxConnections negative',
    changes: { 'listeners[0].limits': { maxConnections: -1 } },
    path: 'listeners[0].limits.maxConnections',
    message: 'expected a positive integer',
  },
  {
    name: 'a negative rate',
    changes: { 'listeners[0].limits': { requestsPerSecond: -1 } },
    path: 'listeners[0].limits.requestsPerSecond',
    message: /≥ 0/,
  },
  {
    name: 'a fractional burst',
    changes: { 'listeners[0].limits': { burst: 0.5 } },
    path: 'listeners[0].limits.burst',
    message: /integer/,
  },
  {
    name: 'a per-source handshake limit above the cap',
    changes: { 'listeners[0].limits': { maxConcurrentHandshakes: 8, maxHandshakesPerSource: 9 } },
    path: 'listeners[0].limits.maxHandshakesPerSource',
    message: 'at most maxConcurrentHandshakes (8); 0 derives a quarter of it',
  },
  {
    name: 'a negative per-source handshake limit',
    changes: { 'listeners[0].limits': { maxHandshakesPerSource: -1 } },
    path: 'listeners[0].limits.maxHandshakesPerSource',
    message: /integer ≥ 0/,
  },
  {
    name: 'a zero ClientHello deadline',
    changes: { 'listeners[0].limits': { clientHelloTimeoutSeconds: 0 } },
    path: 'listeners[0].limits.clientHelloTimeoutSeconds',
    message: 'expected a positive number of seconds',
  },
  {
    name: 'a zero timeout',
    changes: { 'listeners[0].limits': { idleTimeoutSeconds: 0 } },
    path: 'listeners[0].limits.idleTimeoutSeconds',
    message: 'expected a positive number of seconds',
  },
  {
    name: 'a zero body timeout',
    changes: { 'listeners[0].limits': { bodyTimeoutSeconds: 0 } },
    path: 'listeners[0].limits.bodyTimeoutSeconds',
    message: 'expected a positive number of seconds',
  },
  {
    name: 'a negative minimum body rate',
    changes: { 'listeners[0].limits': { minBodyBytesPerSecond: -1 } },
    path: 'listeners[0].limits.minBodyBytesPerSecond',
    message: 'expected an integer ≥ 0',
  },
  {
    name: 'a timeout Node timers cannot hold',
    changes: { 'listeners[0].limits': { upstreamTimeoutSeconds: 3e6 } },
    path: 'listeners[0].limits.upstreamTimeoutSeconds',
    message: /at most \d+ seconds/,
  },
  {
    name: 'a timeout that is not finite',
    changes: { drainTimeoutSeconds: '20s' },
    path: 'drainTimeoutSeconds',
    message: 'expected a positive number of seconds',
  },
  {
    name: 'minSamples 0',
    changes: { 'listeners[0].anomaly': { minSamples: 0 } },
    path: 'listeners[0].anomaly.minSamples',
    message: 'expected a positive integer',
  },
  {
    name: 'a negative threshold',
    changes: { 'listeners[0].anomaly': { threshold: -2 } },
    path: 'listeners[0].anomaly.threshold',
    message: 'expected a positive number',
  },
  {
    name: 'an unknown anomaly mode',
    changes: { 'listeners[0].anomaly': { mode: 'warn' } },
    path: 'listeners[0].anomaly.mode',
    message: 'expected one of "off", "observe", "block"',
  },
  {
    name: 'skew above max age',
    changes: { integrity: { skewSeconds: 600 } },
    path: 'integrity.skewSeconds',
    message: 'must not exceed maxAgeSeconds (300)',
  },
  {
    name: 'an unknown body mode',
    changes: { integrity: { bodyMode: 'spool' } },
    path: 'integrity.bodyMode',
    message: /"buffer", "stream"/,
  },
  {
    name: 'maxBufferedBytes 0',
    changes: { integrity: { maxBufferedBytes: 0 } },
    path: 'integrity.maxBufferedBytes',
    message: 'expected a positive integer',
  },
  { name: 'an empty tag', changes: { integrity: { tag: '' } }, path: 'integrity.tag', message: /printable ASCII/ },
  {
    name: 'a tag with a quote',
    changes: { integrity: { tag: 'a"b' } },
    path: 'integrity.tag',
    message: /printable ASCII/,
  },
  {
    name: 'replayCacheEntries 0',
    changes: { integrity: { replayCacheEntries: 0 } },
    path: 'integrity.replayCacheEntries',
    message: 'expected a positive integer',
  },
  {
    name: 'an unknown derived component',
    changes: { integrity: { requiredComponents: ['@status'] } },
    path: 'integrity.requiredComponents[0]',
    message: /not a request component/,
  },
  {
    name: 'an uppercase field name',
    changes: { integrity: { requiredComponents: ['date', 'Content-Type'] } },
    path: 'integrity.requiredComponents[1]',
    message: /lowercase HTTP field name/,
  },
  {
    name: 'requiredComponents not a list',
    changes: { integrity: { requiredComponents: 'date' } },
    path: 'integrity.requiredComponents',
    message: /array of strings/,
  },
  // tls, log
  {
    name: 'TLS 1.1',
    changes: { tls: { minVersion: 'TLSv1.1' } },
    path: 'tls.minVersion',
    message: 'TLS below 1.2 is not allowed',
  },
  {
    name: 'TLS 1.0',
    changes: { tls: { minVersion: 'TLSv1' } },
    path: 'tls.minVersion',
    message: 'TLS below 1.2 is not allowed',
  },
  {
    name: 'an unknown TLS version',
    changes: { tls: { minVersion: '1.3' } },
    path: 'tls.minVersion',
    message: 'expected "TLSv1.2" or "TLSv1.3"',
  },
  {
    name: 'an unknown log level',
    changes: { log: { level: 'verbose' } },
    path: 'log.level',
    message: /expected one of "trace", "debug", "info"/,
  },
  // admin, health, audit
  {
    name: 'admin off loopback without a token',
    changes: { admin: { listen: '0.0.0.0:15000' } },
    path: 'admin.tokenFile',
    message: /required when the admin server listens off loopback \(0\.0\.0\.0:15000\)/,
  },
  {
    name: 'a bad admin address',
    changes: { admin: { listen: 'localhost' } },
    path: 'admin.listen',
    message: /^expected HOST:PORT/,
  },
  {
    name: 'a bad health address',
    changes: { health: { listen: 15021 } },
    path: 'health.listen',
    message: /^expected HOST:PORT/,
  },
  { name: 'admin not an object', changes: { admin: '127.0.0.1:15000' }, path: 'admin', message: 'expected an object' },
  {
    name: 'an audit file without its key',
    changes: { audit: { file: 'audit.log' } },
    path: 'audit.keyFile',
    message: /required when audit\.file is set/,
  },
  {
    name: 'an audit key without a file',
    changes: { audit: { keyFile: 'audit.key' } },
    path: 'audit.file',
    message: /required when audit\.keyFile is set/,
  },
];

t.test('every rule reports its problem at its path', async (t) => {
  t.ok(validate(baseRaw()).ok, 'the base config is valid');
  for (const rule of RULES) {
    const result = validate(withChanges(baseRaw(), rule.changes));
    const problems = result.ok ? [] : result.problems;
    const found = problems.filter((p) => p.path === rule.path);
    const matches = found.some((p) =>
      typeof rule.message === 'string' ? p.message === rule.message : rule.message.test(p.message),
    );
    t.ok(matches, rule.name, { found: problems.map(formatProblem), wanted: `${rule.path}: ${String(rule.message)}` });
  }
});

t.test('each rule reports only its own problem', async (t) => {
  // Guards against cascades: one mistake should read as one problem, not a page of them.
  for (const rule of RULES) {
    const result = validate(withChanges(baseRaw(), rule.changes));
    const problems = result.ok ? [] : result.problems;
    t.equal(problems.length, 1, rule.name, { found: problems.map(formatProblem) });
  }
});

t.test('several problems are all reported at once, in document order', async (t) => {
  const raw = {
    identity: { certFile: 'tls.crt' },
    tls: { minVersion: 'SSLv3' },
    listeners: [
      { name: 'in', mode: 'inbound', listen: '0.0.0.0:15443', target: '127.0.0.1:8080', allow: { spiffe: [] } },
      { name: 'in', mode: 'inbound', listen: '0.0.0.0:x', target: '10.1.1.1:80', allow: { any: true } },
      { name: 'out', mode: 'outbound', listen: '0.0.0.0:15001', target: 'w:1', integrity: { sign: true } },
    ],
  };
  const problems = expectProblems(validate(raw));
  t.same(
    problems.map((p) => p.path),
    [
      'identity.keyFile',
      'identity.caFile',
      'tls.minVersion',
      'listeners[0].allow',
      'listeners[1].listen',
      'listeners[1].target',
      'listeners[2].listen',
      'listeners[2].integrity.sign',
      'listeners[2].integrity.keyId',
      'listeners[1].name',
    ],
  );
  t.equal(
    formatProblem(problems.find((p) => p.path === 'listeners[0].allow') as ConfigProblem),
    'listeners[0].allow: at least one of spiffe, dns, cn, spkiPins, or any: true',
  );
  t.match(formatProblem(problems[4] as ConfigProblem), /^listeners\[1\]\.listen: expected HOST:PORT/);
});

t.test('allow.any needs no other rule, and keeps pins when given with them', async (t) => {
  const anyOnly = expectConfig(validate(withChanges(baseRaw(), { 'listeners[0].allow': { any: true } })));
  t.same(anyOnly.listeners[0]?.allow, { any: true, spiffe: [], dns: [], cn: [], spkiPins: [] });
  const anyWithPins = expectConfig(
    validate(
      withChanges(baseRaw(), { 'listeners[0].allow': { any: true, spkiPins: [PIN], spiffe: ['spiffe://a.org/x'] } }),
    ),
  );
  t.same(anyWithPins.listeners[0]?.allow, {
    any: true,
    spiffe: ['spiffe://a.org/x'],
    dns: [],
    cn: [],
    spkiPins: [PIN],
  });
  const pinsOnly = expectConfig(validate(withChanges(baseRaw(), { 'listeners[0].allow': { spkiPins: [PIN] } })));
  t.same(pinsOnly.listeners[0]?.allow.spkiPins, [PIN], 'pins alone are an identity rule');
});

t.test('identity rules of each kind are accepted', async (t) => {
  const allow = {
    spiffe: ['spiffe://example.org/ns/prod/sa/producer', 'spiffe://partner.example/*'],
    dns: ['producer.example.org', 'Localhost'],
    cn: ['producer', 'Producer Service'],
    spkiPins: [PIN],
  };
  const config = expectConfig(validate(withChanges(baseRaw(), { 'listeners[0].allow': allow })));
  t.same(config.listeners[0]?.allow, { any: false, ...allow });
});

t.test('unsafe flags allow plaintext off loopback when said explicitly', async (t) => {
  const config = expectConfig(
    validate(
      withChanges(baseRaw(), {
        'listeners[0].target': 'app.default.svc:8080',
        'listeners[0].unsafeTarget': true,
        'listeners[1].listen': '0.0.0.0:15001',
        'listeners[1].unsafeListen': true,
      }),
    ),
  );
  t.match(config.listeners[0], { target: { host: 'app.default.svc', port: 8080 }, unsafeTarget: true });
  t.match(config.listeners[1], { listen: { host: '0.0.0.0', port: 15001 }, unsafeListen: true });
});

t.test('loopback targets in any spelling need no unsafe flag', async (t) => {
  for (const target of ['127.0.0.1:8080', '127.8.9.10:80', '[::1]:8080', 'localhost:8080', 'LOCALHOST:8080']) {
    t.ok(validate(withChanges(baseRaw(), { 'listeners[0].target': target })).ok, target);
  }
});

t.test('tcp listeners accept anomaly settings and need no keys', async (t) => {
  const config = expectConfig(
    validate(
      withChanges(baseRaw(), {
        keys: undefined,
        'listeners[0].protocol': 'tcp',
        'listeners[0].anomaly': { mode: 'block' },
        'listeners[0].integrity': { verify: false },
        'listeners[1].protocol': 'tcp',
      }),
    ),
  );
  t.equal(config.listeners[0]?.protocol, 'tcp');
  t.equal(config.keys.dir, null);
});

t.test('outbound signing with a key id and a key folder is accepted', async (t) => {
  const config = expectConfig(
    validate(withChanges(baseRaw(), { 'listeners[1].integrity': { sign: true, keyId: 'k-2026.03' } })),
  );
  t.same(config.listeners[1]?.integrity, { verify: false, sign: true, keyId: 'k-2026.03' });
  t.equal(config.keys.dir, join(BASE_DIR, 'keys'));
});

t.test('admin may be switched off, or bound publicly with a token file', async (t) => {
  const off = expectConfig(validate(withChanges(baseRaw(), { admin: { listen: null } })));
  t.same(off.admin, { listen: null, tokenFile: null });
  const pub = expectConfig(
    validate(withChanges(baseRaw(), { admin: { listen: '0.0.0.0:15000', tokenFile: 'admin.token' } })),
  );
  t.same(pub.admin, { listen: { host: '0.0.0.0', port: 15000 }, tokenFile: join(BASE_DIR, 'admin.token') });
  const health = expectConfig(validate(withChanges(baseRaw(), { health: { listen: '[::]:15021' } })));
  t.same(health.health.listen, { host: '::', port: 15021 });
});

t.test('listeners on port 0 never collide', async (t) => {
  const config = expectConfig(
    validate(withChanges(baseRaw(), { admin: { listen: '127.0.0.1:0' }, health: { listen: '127.0.0.1:0' } })),
  );
  t.equal(config.listeners.length, 2);
});

t.test('a rate without a burst gets one second of burst', async (t) => {
  const derived = expectConfig(validate(withChanges(baseRaw(), { 'listeners[0].limits': { requestsPerSecond: 2.5 } })));
  t.same(derived.listeners[0]?.limits, {
    ...DEFAULT_LIMITS,
    requestsPerSecond: 2.5,
    burst: 3,
    maxHandshakesPerSource: 32,
  });
  const explicit = expectConfig(
    validate(withChanges(baseRaw(), { 'listeners[0].limits': { requestsPerSecond: 100, burst: 20 } })),
  );
  t.equal(explicit.listeners[0]?.limits.burst, 20);
});

t.test('the per-source handshake limit is a quarter of the cap unless given', async (t) => {
  const derived = expectConfig(
    validate(withChanges(baseRaw(), { 'listeners[0].limits': { maxConcurrentHandshakes: 10 } })),
  );
  t.equal(derived.listeners[0]?.limits.maxHandshakesPerSource, 3, 'ceil(10 / 4)');
  const one = expectConfig(validate(withChanges(baseRaw(), { 'listeners[0].limits': { maxConcurrentHandshakes: 1 } })));
  t.equal(one.listeners[0]?.limits.maxHandshakesPerSource, 1, 'at least 1');
  const explicit = expectConfig(
    validate(
      withChanges(baseRaw(), {
        'listeners[0].limits': { maxHandshakesPerSource: 128, clientHelloTimeoutSeconds: 1.5 },
      }),
    ),
  );
  t.equal(explicit.listeners[0]?.limits.maxHandshakesPerSource, 128, 'as many as the cap: no per-source limit');
  t.equal(explicit.listeners[0]?.limits.clientHelloTimeoutSeconds, 1.5);
});

t.test('TLS 1.3 only and the other log levels are accepted', async (t) => {
  const config = expectConfig(
    validate(withChanges(baseRaw(), { tls: { minVersion: 'TLSv1.3' }, log: { level: 'silent' } })),
  );
  t.equal(config.tls.minVersion, 'TLSv1.3');
  t.equal(config.log.level, 'silent');
});

t.test('HOST:PORT parsing', async (t) => {
  t.same(parseHostPort('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  t.same(parseHostPort('[::1]:8080'), { host: '::1', port: 8080 });
  t.same(parseHostPort('localhost:8080'), { host: 'localhost', port: 8080 });
  t.same(parseHostPort('0.0.0.0:15443'), { host: '0.0.0.0', port: 15443 });
  t.same(
    parseHostPort('Warehouse.Example.org:0'),
    { host: 'warehouse.example.org', port: 0 },
    'names lower-cased; port 0 parses',
  );
  t.same(parseHostPort('[::]:65535'), { host: '::', port: 65535 });
  for (const bad of [
    '',
    ':80',
    '127.0.0.1',
    '127.0.0.1:',
    '127.0.0.1:65536',
    '127.0.0.1:-1',
    '127.0.0.1:+80',
    '127.0.0.1:080',
    '::1:80',
    '[::1]',
    '[::1]80',
    '[127.0.0.1]:80',
    '[::1:80',
    '999.1.1.1:80',
    'a_b:80',
    'a b:80',
    'host:8080x',
  ]) {
    t.match(parseHostPort(bad), /^expected HOST:PORT/, JSON.stringify(bad));
  }
  t.equal(formatHostPort({ host: '::1', port: 8080 }), '[::1]:8080');
  t.equal(formatHostPort({ host: '127.0.0.1', port: 8080 }), '127.0.0.1:8080');
  for (const s of ['127.0.0.1:8080', '[::1]:8080', 'localhost:1', '[fe80::1]:443']) {
    const hp = parseHostPort(s);
    t.equal(typeof hp === 'string' ? hp : formatHostPort(hp), s, `${s} round-trips`);
  }
});

t.test('loopback means 127.0.0.0/8, ::1 and localhost only', async (t) => {
  for (const host of [
    '127.0.0.1',
    '127.255.255.254',
    '::1',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    'localhost',
    'LocalHost',
  ]) {
    t.ok(isLoopbackHost(host), host);
  }
  for (const host of ['0.0.0.0', '::', '128.0.0.1', '10.0.0.1', '::2', 'localhost.example.org', 'mylocalhost', '']) {
    t.notOk(isLoopbackHost(host), host);
  }
});
