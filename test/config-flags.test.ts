import t from 'tap';
import { expectConfig, expectProblems } from './helpers/config.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromFlags, problemInFlagTerms, quickModeFlags } from '../src/config/flags.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { formatProblem } from '../src/config/validate.ts';
import type { Config } from '../src/config/types.ts';

const PIN = `sha256/${Buffer.alloc(32, 9).toString('base64')}`;
const CWD = '/srv/app';

const IDENTITY_FLAGS = ['--cert', 'tls.crt', '--key', 'tls.key', '--ca', 'ca.crt'];
const INBOUND_MINIMAL = ['--listen', '0.0.0.0:0', '--target', '127.0.0.1:8080', ...IDENTITY_FLAGS, '--allow-any'];
const OUTBOUND_MINIMAL = ['--listen', '127.0.0.1:0', '--target', 'warehouse.example.org:15443', ...IDENTITY_FLAGS];

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-flags-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function problemsOf(mode: 'inbound' | 'outbound', argv: string[]): string[] {
  return expectProblems(configFromFlags(mode, argv, CWD)).map(formatProblem);
}

/** The config file a set of flags stands for, loaded the ordinary way. */
async function loadEquivalentFile(dir: string, raw: unknown): Promise<Config> {
  const file = join(dir, 'tollgate.json');
  await writeFile(file, JSON.stringify(raw, null, 2));
  return expectConfig(await loadConfigFile(file));
}

t.test('inbound flags build the same config as the equivalent file', async (t) => {
  const dir = await tempDir(t);
  const argv = [
    '--listen',
    '0.0.0.0:15443',
    '--target',
    '127.0.0.1:8080',
    '--cert',
    'tls.crt',
    '--key',
    'tls.key',
    '--ca',
    'ca.crt',
    '--crl',
    'ca.crl',
    '--allow-spiffe',
    'spiffe://example.org/producer',
    '--allow-spiffe',
    'spiffe://example.org/batch',
    '--allow-dns',
    'producer.example.org',
    '--allow-cn',
    'producer',
    '--allow-spki-pin',
    PIN,
    '--protocol',
    'http',
    '--keys',
    'keys',
    '--admin',
    '127.0.0.1:15000',
    '--log-level',
    'debug',
    '--access-log',
    '--max-body-bytes',
    '1048576',
    '--idle-timeout',
    '30',
  ];
  const fromFlags = expectConfig(configFromFlags('inbound', argv, dir));
  const fromFile = await loadEquivalentFile(dir, {
    admin: { listen: '127.0.0.1:15000' },
    identity: { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt', crlFile: 'ca.crl' },
    keys: { dir: 'keys' },
    log: { level: 'debug', access: true },
    listeners: [
      {
        name: 'inbound',
        mode: 'inbound',
        protocol: 'http',
        listen: '0.0.0.0:15443',
        target: '127.0.0.1:8080',
        allow: {
          spiffe: ['spiffe://example.org/producer', 'spiffe://example.org/batch'],
          dns: ['producer.example.org'],
          cn: ['producer'],
          spkiPins: [PIN],
        },
        integrity: { verify: true },
        limits: { maxBodyBytes: 1048576, idleTimeoutSeconds: 30 },
      },
    ],
  });
  t.equal(fromFlags.source, null, 'flag-built configs have no source file');
  t.same(fromFlags, { ...fromFile, source: null });
  t.equal(fromFlags.identity.crlFile, join(dir, 'ca.crl'), 'paths resolve against the working directory');
  t.same(fromFlags.listeners[0]?.integrity, { verify: true, sign: false, keyId: null }, '--keys turns verification on');
});

t.test('outbound flags build the same config as the equivalent file', async (t) => {
  const dir = await tempDir(t);
  const argv = [
    '--listen',
    '127.0.0.1:15001',
    '--target',
    'warehouse.example.org:15443',
    ...IDENTITY_FLAGS,
    '--server-name',
    'warehouse',
    '--verify-spiffe',
    'spiffe://example.org/warehouse',
    '--verify-spiffe',
    'spiffe://example.org/warehouse-canary',
    '--verify-spki-pin',
    PIN,
    '--protocol',
    'http',
    '--keys',
    'keys',
    '--sign-key-id',
    'k1',
  ];
  const fromFlags = expectConfig(configFromFlags('outbound', argv, dir));
  const fromFile = await loadEquivalentFile(dir, {
    admin: { listen: null },
    identity: { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt' },
    keys: { dir: 'keys' },
    listeners: [
      {
        name: 'outbound',
        mode: 'outbound',
        protocol: 'http',
        listen: '127.0.0.1:15001',
        target: 'warehouse.example.org:15443',
        serverName: 'warehouse',
        verify: {
          spiffe: ['spiffe://example.org/warehouse', 'spiffe://example.org/warehouse-canary'],
          spkiPins: [PIN],
        },
        integrity: { sign: true, keyId: 'k1' },
      },
    ],
  });
  t.same(fromFlags, { ...fromFile, source: null });
  t.same(fromFlags.listeners[0]?.integrity, { verify: false, sign: true, keyId: 'k1' });
});

t.test('quick commands run no admin server unless --admin is given', async (t) => {
  const config = expectConfig(configFromFlags('inbound', INBOUND_MINIMAL, CWD));
  t.same(config.admin, { listen: null, tokenFile: null });
  t.same(config.health, { listen: null });
  t.same(
    config.listeners[0]?.allow,
    { any: true, spiffe: [], dns: [], cn: [], spkiPins: [] },
    '--allow-any alone is enough',
  );
  t.same(config.identity, {
    certFile: join(CWD, 'tls.crt'),
    keyFile: join(CWD, 'tls.key'),
    caFile: join(CWD, 'ca.crt'),
    crlFile: null,
    crlStale: 'warn',
    expiryWarningFraction: 1 / 3,
  });
  const withAdmin = expectConfig(configFromFlags('inbound', [...INBOUND_MINIMAL, '--admin', '127.0.0.1:0'], CWD));
  t.same(withAdmin.admin.listen, { host: '127.0.0.1', port: 0 });
});

t.test('an outbound quick command needs no verify flags and defaults serverName to the target host', async (t) => {
  const config = expectConfig(configFromFlags('outbound', OUTBOUND_MINIMAL, CWD));
  t.match(config.listeners[0], {
    name: 'outbound',
    mode: 'outbound',
    serverName: 'warehouse.example.org',
    verify: { spiffe: [], spkiPins: [] },
    integrity: { sign: false, keyId: null },
  });
});

t.test('the flag-built config is deeply frozen', async (t) => {
  const result = configFromFlags('outbound', OUTBOUND_MINIMAL, CWD);
  t.ok(Object.isFrozen(result));
  const config = expectConfig(result);
  for (const value of [
    config,
    config.listeners,
    config.listeners[0],
    config.listeners[0]?.verify.spiffe,
    config.identity,
  ]) {
    t.ok(Object.isFrozen(value));
  }
  const bad = configFromFlags('outbound', [], CWD);
  t.ok(Object.isFrozen(bad));
  t.ok(Object.isFrozen(expectProblems(bad)));
});

t.test('missing required flags are each reported', async (t) => {
  t.same(problemsOf('inbound', []), [
    '--listen: required',
    '--target: required',
    '--cert: required',
    '--key: required',
    '--ca: required',
    '--allow-*: at least one of --allow-spiffe, --allow-dns, --allow-cn, --allow-spki-pin, or --allow-any',
  ]);
  t.same(problemsOf('outbound', ['--listen', '127.0.0.1:0']), [
    '--target: required',
    '--cert: required',
    '--key: required',
    '--ca: required',
  ]);
});

t.test(
  'unknown flags and stray arguments are problems named as typed; the word after an unknown flag is its value',
  async (t) => {
    t.same(problemsOf('inbound', [...INBOUND_MINIMAL, '--frobnicate', '-x', 'its-value', 'extra']), [
      '--frobnicate: unknown flag',
      '-x: unknown flag',
      'extra: unexpected argument (flags are --name VALUE)',
    ]);
  },
);

t.test('a mistyped flag gets "did you mean" the flag of this command it is closest to', async (t) => {
  t.same(problemsOf('inbound', [...INBOUND_MINIMAL, '--allow-spife', 'spiffe://example.org/a']), [
    '--allow-spife: unknown flag (did you mean --allow-spiffe?)',
  ]);
  t.same(problemsOf('outbound', [...OUTBOUND_MINIMAL, '--server-nme', 'x']), [
    '--server-nme: unknown flag (did you mean --server-name?)',
  ]);
  t.same(problemsOf('outbound', [...OUTBOUND_MINIMAL, '--verify-spife', 'x']), [
    '--verify-spife: unknown flag (did you mean --verify-spiffe?)',
  ]);
});

t.test('startup problems of a flag-built config are put in flag terms; others stay as they are', async (t) => {
  t.equal(
    problemInFlagTerms('listeners[0].listen: 127.0.0.1:8443: EADDRINUSE'),
    '--listen: 127.0.0.1:8443: EADDRINUSE',
  );
  t.equal(problemInFlagTerms('admin.listen: 127.0.0.1:15000: EADDRINUSE'), '--admin: 127.0.0.1:15000: EADDRINUSE');
  t.equal(problemInFlagTerms('admin.tokenFile: /t: holds no token'), '--admin-token-file: /t: holds no token');
  t.equal(
    problemInFlagTerms('health.listen: 127.0.0.1:15021: EADDRINUSE'),
    'health.listen: 127.0.0.1:15021: EADDRINUSE',
    'no flag sets health.listen',
  );
  t.equal(problemInFlagTerms('workers: no reusePort'), 'workers: no reusePort');
  t.equal(
    problemInFlagTerms('identity.certFile /x/tls.crt: ENOENT'),
    '--cert /x/tls.crt: ENOENT',
    'a path followed by the file it names',
  );
  t.equal(problemInFlagTerms('keys.dir: /k: short: key is 16 bytes'), '--keys: /k: short: key is 16 bytes');
});

t.test('the help of each quick command lists exactly the flags its parser takes for it', async (t) => {
  for (const mode of ['inbound', 'outbound'] as const) {
    const other = mode === 'inbound' ? 'outbound' : 'inbound';
    const names = quickModeFlags(mode).map((f) => f.name);
    t.ok(
      quickModeFlags(mode).every((f) => f.description.length > 0),
      `${mode}: every flag has a description`,
    );
    for (const name of quickModeFlags(other)
      .map((f) => f.name)
      .filter((n) => !names.includes(n))) {
      t.match(
        problemsOf(mode, [`--${name}`]).join('\n'),
        `--${name}: is for ${other} only`,
        `${mode}: --${name} is refused as ${other}'s`,
      );
    }
    for (const name of names) {
      t.notMatch(problemsOf(mode, [`--${name}`]).join('\n'), `--${name}: unknown flag`, `${mode}: --${name} is known`);
    }
  }
});

t.test('flags of the other command are problems', async (t) => {
  t.same(
    problemsOf('outbound', [
      ...OUTBOUND_MINIMAL,
      '--allow-spiffe',
      'spiffe://example.org/a',
      '--allow-dns',
      'a',
      '--allow-cn',
      'a',
      '--allow-spki-pin',
      PIN,
      '--allow-any',
      '--unsafe-target',
    ]),
    [
      '--allow-spiffe: is for inbound only',
      '--allow-dns: is for inbound only',
      '--allow-cn: is for inbound only',
      '--allow-spki-pin: is for inbound only',
      '--allow-any: is for inbound only',
      '--unsafe-target: is for inbound only',
    ],
  );
  t.same(
    problemsOf('inbound', [
      ...INBOUND_MINIMAL,
      '--server-name',
      'x',
      '--verify-spiffe',
      'spiffe://example.org/a',
      '--verify-spki-pin',
      PIN,
      '--sign-key-id',
      'k1',
      '--unsafe-listen',
    ]),
    [
      '--server-name: is for outbound only',
      '--verify-spiffe: is for outbound only',
      '--verify-spki-pin: is for outbound only',
      '--sign-key-id: is for outbound only',
      '--unsafe-listen: is for outbound only',
    ],
  );
});

t.test('malformed flags: missing values, values on switches, repeats of single flags', async (t) => {
  t.same(problemsOf('inbound', ['--target', '127.0.0.1:8080', ...IDENTITY_FLAGS, '--allow-any=yes', '--listen']), [
    '--allow-any: takes no value',
    '--listen: needs a value',
    '--allow-*: at least one of --allow-spiffe, --allow-dns, --allow-cn, --allow-spki-pin, or --allow-any',
  ]);
  t.match(problemsOf('inbound', ['--listen', '--target', '127.0.0.1:8080', ...IDENTITY_FLAGS, '--allow-any']), [
    /^--listen: needs a value \(the next word, --target, is a flag\)$/,
  ]);
  t.same(problemsOf('inbound', [...INBOUND_MINIMAL, '--target', '127.0.0.1:9090', '--allow-any']), [
    '--target: given more than once',
    '--allow-any: given more than once',
  ]);
});

t.test('repeated list flags are collected in order', async (t) => {
  const config = expectConfig(
    configFromFlags(
      'inbound',
      [
        '--listen',
        '0.0.0.0:0',
        '--target',
        '127.0.0.1:8080',
        ...IDENTITY_FLAGS,
        '--allow-dns',
        'b.example.org',
        '--allow-dns',
        'a.example.org',
        '--allow-cn',
        'one',
        '--allow-cn',
        'two',
        '--allow-spiffe=spiffe://example.org/x',
      ],
      CWD,
    ),
  );
  t.same(config.listeners[0]?.allow, {
    any: false,
    spiffe: ['spiffe://example.org/x'],
    dns: ['b.example.org', 'a.example.org'],
    cn: ['one', 'two'],
    spkiPins: [],
  });
});

t.test('validation problems are renamed to the flag they came from', async (t) => {
  t.same(
    problemsOf('inbound', ['--listen', '0.0.0.0:0', '--target', '10.0.0.5:8080', ...IDENTITY_FLAGS, '--allow-any']),
    [
      '--target: 10.0.0.5:8080 is off loopback; an inbound listener sends plaintext to its target, so add --unsafe-target if this is intended',
    ],
  );
  t.same(problemsOf('outbound', ['--listen', '0.0.0.0:15001', '--target', 'w:1', ...IDENTITY_FLAGS]), [
    '--listen: 0.0.0.0:15001 is off loopback; an outbound listener accepts plaintext, so add --unsafe-listen if this is intended',
  ]);
  t.same(
    problemsOf('inbound', [
      '--listen',
      '0.0.0.0',
      '--target',
      '127.0.0.1:0',
      ...IDENTITY_FLAGS,
      '--allow-spiffe',
      'spiffe://example.org/ok',
      '--allow-spiffe',
      'spiffe://Example.org/bad',
      '--allow-spki-pin',
      'sha256/short',
      '--allow-dns',
      '*.example.org',
    ]),
    [
      '--listen: expected HOST:PORT: missing ":PORT"',
      '--target: expected HOST:PORT with a port from 1 to 65535',
      '--allow-spiffe: "spiffe://Example.org/bad": expected spiffe://trust-domain/path or spiffe://trust-domain/*; a trust domain is lowercase letters, digits, ".", "-" and "_"',
      '--allow-dns: "*.example.org": wildcard DNS names are not supported; list each name',
      '--allow-spki-pin: "sha256/short": expected sha256/ followed by the base64 of 32 bytes (see tollgate certs pin)',
    ],
  );
  t.same(
    problemsOf('outbound', [
      ...OUTBOUND_MINIMAL,
      '--server-name',
      'not a name',
      '--verify-spiffe',
      'warehouse',
      '--verify-spki-pin',
      'md5/x',
      '--keys',
      'keys',
      '--sign-key-id',
      '../k1',
    ]),
    [
      '--server-name: expected a DNS name or an IP address',
      '--verify-spiffe: "warehouse": expected spiffe://trust-domain/path or spiffe://trust-domain/*',
      '--verify-spki-pin: "md5/x": expected sha256/ followed by the base64 of 32 bytes (see tollgate certs pin)',
      '--sign-key-id: expected a key id: letters, digits, ".", "_" and "-", not starting with "." (it names a file in --keys)',
    ],
  );
  t.same(
    problemsOf('inbound', [
      ...INBOUND_MINIMAL,
      '--protocol',
      'udp',
      '--log-level',
      'loud',
      '--max-body-bytes',
      '16MiB',
      '--idle-timeout',
      '0',
      '--admin',
      'localhost',
    ]),
    [
      '--admin: expected HOST:PORT: missing ":PORT"',
      '--log-level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent"',
      '--protocol: expected one of "http", "tcp"',
      '--max-body-bytes: expected a positive integer',
      '--idle-timeout: expected a positive number of seconds',
    ],
  );
});

t.test('the unsafe flags allow plaintext off loopback', async (t) => {
  const inbound = expectConfig(
    configFromFlags(
      'inbound',
      ['--listen', '0.0.0.0:0', '--target', '10.0.0.5:8080', ...IDENTITY_FLAGS, '--allow-any', '--unsafe-target'],
      CWD,
    ),
  );
  t.match(inbound.listeners[0], { target: { host: '10.0.0.5', port: 8080 }, unsafeTarget: true });
  const outbound = expectConfig(
    configFromFlags(
      'outbound',
      ['--listen', '0.0.0.0:15001', '--target', 'w:1', ...IDENTITY_FLAGS, '--unsafe-listen'],
      CWD,
    ),
  );
  t.match(outbound.listeners[0], { listen: { host: '0.0.0.0', port: 15001 }, unsafeListen: true });
});

t.test('--protocol tcp with --keys is a problem; tcp without keys is fine', async (t) => {
  const tcpKeysMessage = 'a tcp listener carries no HTTP messages to sign or verify';
  t.same(problemsOf('inbound', [...INBOUND_MINIMAL, '--protocol', 'tcp', '--keys', 'keys']), [
    `--keys: ${tcpKeysMessage}`,
  ]);
  t.same(problemsOf('outbound', [...OUTBOUND_MINIMAL, '--protocol', 'tcp', '--keys', 'keys', '--sign-key-id', 'k1']), [
    `--keys: ${tcpKeysMessage}`,
    `--sign-key-id: ${tcpKeysMessage}`,
  ]);
  const tcp = expectConfig(configFromFlags('inbound', [...INBOUND_MINIMAL, '--protocol', 'tcp'], CWD));
  t.equal(tcp.listeners[0]?.protocol, 'tcp');
});

t.test('signing needs both --keys and --sign-key-id', async (t) => {
  t.same(problemsOf('outbound', [...OUTBOUND_MINIMAL, '--sign-key-id', 'k1']), [
    '--sign-key-id: needs --keys (the folder of HMAC key files)',
  ]);
  t.same(problemsOf('outbound', [...OUTBOUND_MINIMAL, '--keys', 'keys']), [
    '--keys: needs --sign-key-id (the id of the key to sign with)',
  ]);
});

t.test('a public admin address needs --admin-token-file', async (t) => {
  t.same(problemsOf('inbound', [...INBOUND_MINIMAL, '--admin', '0.0.0.0:15000']), [
    '--admin-token-file: required when the admin server listens off loopback (0.0.0.0:15000)',
  ]);
  const config = expectConfig(
    configFromFlags(
      'inbound',
      [...INBOUND_MINIMAL, '--admin', '0.0.0.0:15000', '--admin-token-file', 'admin.token'],
      CWD,
    ),
  );
  t.same(config.admin, { listen: { host: '0.0.0.0', port: 15000 }, tokenFile: join(CWD, 'admin.token') });
});

t.test('several flag problems are all reported at once, every one named by a flag', async (t) => {
  const problems = expectProblems(
    configFromFlags(
      'inbound',
      [
        '--listen',
        '0.0.0.0:0',
        '--target',
        '10.1.1.1:80',
        '--cert',
        'c',
        '--bogus',
        '--server-name',
        'x',
        '--protocol',
        'tcp',
        '--keys',
        'k',
      ],
      CWD,
    ),
  );
  t.same(
    problems.map((p) => p.path),
    ['--bogus', '--server-name', '--key', '--ca', '--keys', '--target', '--allow-*'],
  );
  t.ok(
    problems.every((p) => p.path.startsWith('-')),
    'no config paths leak into flag problems',
  );
});
