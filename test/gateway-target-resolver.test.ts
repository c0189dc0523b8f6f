/**
 * The gateway's target resolver against a real DNS server on loopback (test/helpers/dnsServer.ts)
 * through a real node:dns Resolver: which addresses become endpoints, when a name is asked again,
 * what a failure leaves in place, the /etc/hosts fallback, literals, and close().
 */
import t from 'tap';
import { Resolver, lookup as systemLookup } from 'node:dns/promises';
import pino from 'pino';
import type { HostPort } from '../src/config/types.ts';
import {
  TargetResolver,
  type AddressLookup,
  type ResolvedEndpoint,
  type TargetResolverDeps,
} from '../src/gateway/targetResolver.ts';
import { startDnsServer, type TestDnsServer } from './helpers/dnsServer.ts';
import type { Teardownable } from './helpers/pki.ts';

const hp = (host: string, port: number): HostPort => ({ host, port });
const keys = (endpoints: readonly ResolvedEndpoint[]): string[] => endpoints.map((e) => e.key);

/**
 * Poll `check` until it holds, failing after `ms`. Local rather than helpers/world.ts's, so this
 * unit's test loads the unit alone and not the whole sidecar.
 */
async function eventually(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A Resolver that asks only `server`, and gives up on a silent one quickly. */
function resolverFor(server: TestDnsServer): Resolver {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([server.address]);
  return resolver;
}

interface Started {
  readonly resolver: TargetResolver;
  /** every set onChange was called with, in order */
  readonly changes: Array<readonly ResolvedEndpoint[]>;
  /** the log lines, parsed */
  readonly logs: Array<Record<string, unknown>>;
}

async function startResolver(t: Teardownable, deps: Omit<TargetResolverDeps, 'log' | 'onChange'>): Promise<Started> {
  const changes: Array<readonly ResolvedEndpoint[]> = [];
  const logs: Array<Record<string, unknown>> = [];
  // pino writes synchronously to a destination with a write method: one line per call
  const log = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const resolver = new TargetResolver({ ...deps, log, onChange: (e) => changes.push(e) });
  t.teardown(() => resolver.close());
  await resolver.start();
  return { resolver, changes, logs };
}

const ms = (iso: string | null): number => (iso === null ? NaN : Date.parse(iso));

t.test(
  'every A and AAAA record of a name becomes an endpoint, in a stable order, from the target it came from',
  async (t) => {
    const dns = await startDnsServer(t);
    dns.set('pods.test', [
      { address: '10.0.0.10', ttl: 30 },
      { address: 'fd00::2', ttl: 30 },
      { address: '10.0.0.9', ttl: 45 },
      { address: 'fd00:0::1', ttl: 30 },
    ]);
    const { resolver, changes } = await startResolver(t, {
      targets: [hp('pods.test', 8080), hp('10.0.0.9', 8080), hp('192.0.2.1', 9000)],
      refreshMs: 60_000,
      resolver: resolverFor(dns),
    });
    const expected = ['10.0.0.9:8080', '10.0.0.10:8080', '[fd00::1]:8080', '[fd00::2]:8080', '192.0.2.1:9000'];
    t.same(
      keys(resolver.current()),
      expected,
      'IPv4 then IPv6 in address order; the literal 10.0.0.9:8080 is a duplicate',
    );
    t.same(
      resolver.current().map((e) => e.target),
      ['pods.test:8080', 'pods.test:8080', 'pods.test:8080', 'pods.test:8080', '192.0.2.1:9000'],
    );
    t.same(resolver.current()[2], {
      key: '[fd00::1]:8080',
      address: 'fd00::1',
      port: 8080,
      target: 'pods.test:8080',
      targetHost: 'pods.test',
    });
    t.equal(changes.length, 1, 'start() reports the first set once');
    t.same(keys(changes[0]!), expected);
    t.same(
      dns.queries.map((q) => `${q.name} ${q.type}`).sort(),
      ['pods.test A', 'pods.test AAAA'],
      'one A and one AAAA query, asked together',
    );
    const status = resolver.status()[0]!;
    t.match(status, { target: 'pods.test:8080', source: 'dns', error: null });
    t.same(status.addresses, ['10.0.0.9', '10.0.0.10', 'fd00::1', 'fd00::2']);
    const untilNext = ms(status.nextAt) - ms(status.resolvedAt);
    t.ok(
      untilNext >= 30_000 && untilNext < 30_100,
      `asked again when the shortest TTL (30 s) runs out: ${untilNext} ms`,
    );
  },
);

t.test('a changed answer is picked up when its 1 s TTL runs out, and onChange gets the new set', async (t) => {
  const dns = await startDnsServer(t);
  dns.set('pods.test', [
    { address: '10.0.0.1', ttl: 1 },
    { address: '10.0.0.2', ttl: 1 },
  ]);
  const { resolver, changes, logs } = await startResolver(t, {
    targets: [hp('pods.test', 80)],
    refreshMs: 30_000,
    resolver: resolverFor(dns),
  });
  t.same(keys(resolver.current()), ['10.0.0.1:80', '10.0.0.2:80']);
  const kept = resolver.current()[1]!;
  const firstAnswer = resolver.status()[0]!.resolvedAt;
  await eventually(() => resolver.status()[0]!.resolvedAt !== firstAnswer, 5000, 'the same answer again after its TTL');
  t.equal(dns.queryCount('pods.test'), 4);
  t.equal(changes.length, 1, 'the same answer again does not call onChange');
  const changedLines = (): Array<Record<string, unknown>> => logs.filter((l) => l.msg === 'target addresses changed');
  t.equal(changedLines().length, 1, 'nor logs a change');

  dns.set('pods.test', [
    { address: '10.0.0.3', ttl: 1 },
    { address: '10.0.0.2', ttl: 1 },
    { address: 'fd00::3', ttl: 1 },
  ]);
  await eventually(() => changes.length === 2, 5000, 'onChange with the new answer');
  t.same(keys(changes[1]!), ['10.0.0.2:80', '10.0.0.3:80', '[fd00::3]:80']);
  t.equal(changes[1]![0], kept, 'the endpoint that stayed is the same object');
  t.same(keys(resolver.current()), keys(changes[1]!));
  t.match(changedLines().at(-1), { level: 30, target: 'pods.test:80', from: 2, to: 3 });
});

t.test('an answer with a TTL longer than refreshMs is asked again after refreshMs, and not before', async (t) => {
  const dns = await startDnsServer(t);
  dns.set('pods.test', [{ address: '10.0.0.1', ttl: 3600 }]);
  const refreshMs = 700;
  const { resolver } = await startResolver(t, {
    targets: [hp('pods.test', 80)],
    refreshMs,
    resolver: resolverFor(dns),
  });
  const status = resolver.status()[0]!;
  const untilNext = ms(status.nextAt) - ms(status.resolvedAt);
  t.ok(untilNext >= refreshMs && untilNext < refreshMs + 50, `next ask planned after refreshMs: ${untilNext} ms`);
  await eventually(() => dns.queryCount('pods.test') >= 4, 5000, 'the name asked again');
  const gap = dns.queries[2]!.at - dns.queries[1]!.at;
  t.ok(gap >= refreshMs - 5, `not asked again before refreshMs: ${gap} ms after the first answer`);
  t.ok(gap < refreshMs + 1000, `asked again soon after refreshMs, not after the TTL: ${gap} ms`);
});

t.test(
  'a DNS server that stops answering leaves the last good endpoints in place and status() shows the error',
  async (t) => {
    const dns = await startDnsServer(t);
    dns.set('pods.test', [
      { address: '10.0.0.1', ttl: 1 },
      { address: 'fd00::1', ttl: 1 },
    ]);
    const { resolver, changes, logs } = await startResolver(t, {
      targets: [hp('pods.test', 80)],
      refreshMs: 1000,
      resolver: resolverFor(dns),
    });
    const good = keys(resolver.current());
    const resolvedAt = resolver.status()[0]!.resolvedAt;
    dns.silent = true;
    await eventually(() => resolver.status()[0]!.error !== null, 5000, 'the failed refresh in status()');
    const stillFailing = (): boolean => logs.some((l) => l.msg === 'target resolution still failing');
    await eventually(stillFailing, 5000, 'a second failed refresh');
    const status = resolver.status()[0]!;
    t.match(status.error, /ETIMEOUT/);
    t.equal(status.resolvedAt, resolvedAt, 'resolvedAt still says when the addresses were last confirmed');
    t.same(status.addresses, ['10.0.0.1', 'fd00::1']);
    t.same(keys(resolver.current()), good, 'the last good endpoints are kept');
    t.equal(changes.length, 1, 'onChange not called');
    const warns = logs.filter((l) => l.level === 40);
    t.equal(warns.length, 1, 'one warn line for two failed refreshes with the same error');
    t.match(warns[0], { target: 'pods.test:80', error: /ETIMEOUT/, addresses: 2 });

    dns.set('pods.test', [{ address: '10.0.0.2', ttl: 1 }]);
    dns.silent = false;
    await eventually(() => changes.length === 2, 5000, 'the answer after the server is back');
    t.same(keys(changes[1]!), ['10.0.0.2:80']);
    t.equal(resolver.status()[0]!.error, null, 'the error is cleared');
  },
);

t.test(
  'a name DNS does not know falls back to the system lookup: localhost gives 127.0.0.1, and ::1 where hosts has it',
  async (t) => {
    const dns = await startDnsServer(t);
    const refreshMs = 5000;
    const { resolver, changes } = await startResolver(t, {
      targets: [hp('localhost', 8080)],
      refreshMs,
      resolver: resolverFor(dns),
    });
    const fromHosts = new Set((await systemLookup('localhost', { all: true })).map((a) => a.address));
    const expected = ['127.0.0.1:8080', ...(fromHosts.has('::1') ? ['[::1]:8080'] : [])];
    t.same(keys(resolver.current()), expected);
    t.same(keys(changes[0] ?? []), expected, 'onChange got it');
    t.equal(dns.queryCount('localhost'), 2, 'DNS was asked first (A and AAAA), and said NXDOMAIN');
    const status = resolver.status()[0]!;
    t.match(status, { target: 'localhost:8080', source: 'lookup', error: null });
    const untilNext = ms(status.nextAt) - ms(status.resolvedAt);
    t.ok(
      untilNext >= refreshMs && untilNext < refreshMs + 50,
      `a lookup answer is asked again after refreshMs: ${untilNext}`,
    );
  },
);

t.test('a name that neither DNS nor the lookup knows contributes no endpoint and shows why', async (t) => {
  const dns = await startDnsServer(t);
  let lookups = 0;
  const lookup: AddressLookup = async (host) => {
    lookups += 1;
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  };
  const { resolver, changes } = await startResolver(t, {
    targets: [hp('nowhere.test', 80), hp('10.1.1.1', 80)],
    refreshMs: 5000,
    resolver: resolverFor(dns),
    lookup,
  });
  t.same(keys(resolver.current()), ['10.1.1.1:80'], 'only the literal');
  t.same(keys(changes[0] ?? []), ['10.1.1.1:80']);
  t.equal(lookups, 1);
  t.match(resolver.status()[0], { target: 'nowhere.test:80', addresses: [], resolvedAt: null, error: /ENOTFOUND/ });
});

t.test('an IP literal is one endpoint and never sends a DNS query', async (t) => {
  const dns = await startDnsServer(t);
  dns.set('pods.test', [{ address: '10.0.0.1', ttl: 1 }]);
  const { resolver } = await startResolver(t, {
    targets: [hp('127.0.0.2', 80), hp('0:0::1', 81), hp('pods.test', 82)],
    refreshMs: 250,
    resolver: resolverFor(dns),
  });
  t.same(keys(resolver.current()), ['127.0.0.2:80', '[::1]:81', '10.0.0.1:82']);
  await eventually(() => dns.queryCount('pods.test') >= 6, 5000, 'the DNS target re-resolved twice');
  t.same(new Set(dns.queries.map((q) => q.name)), new Set(['pods.test']), 'every query was for the DNS name');
  t.match(resolver.status().slice(0, 2), [
    { target: '127.0.0.2:80', source: 'literal', addresses: ['127.0.0.2'], nextAt: null, error: null },
    { target: '[0:0::1]:81', source: 'literal', addresses: ['::1'], nextAt: null, error: null },
  ]);
});

t.test('close() stops re-resolution: the query count stops growing and onChange is not called again', async (t) => {
  const dns = await startDnsServer(t);
  dns.set('closed.test', [{ address: '10.0.0.1', ttl: 1 }]);
  dns.set('ticking.test', [{ address: '10.0.0.2', ttl: 1 }]);
  const closing = await startResolver(t, {
    targets: [hp('closed.test', 80)],
    refreshMs: 500,
    resolver: resolverFor(dns),
  });
  // a second resolver on the same server keeps asking: its queries are the clock this test waits on
  await startResolver(t, { targets: [hp('ticking.test', 80)], refreshMs: 200, resolver: resolverFor(dns) });
  // close right after a refresh completed: nothing is on the wire, the next ask is 500 ms away
  const firstAnswer = closing.resolver.status()[0]!.resolvedAt;
  await eventually(() => closing.resolver.status()[0]!.resolvedAt !== firstAnswer, 5000, 'one refresh before close');
  closing.resolver.close();
  const atClose = dns.queryCount('closed.test');
  dns.set('closed.test', [{ address: '10.0.0.3', ttl: 1 }]);
  const before = dns.queryCount('ticking.test');
  // five refreshes at 200 ms: twice as long as the closed one's interval
  await eventually(() => dns.queryCount('ticking.test') >= before + 10, 5000, 'five refreshes of the other resolver');
  t.equal(dns.queryCount('closed.test'), atClose, 'no query after close()');
  t.equal(closing.changes.length, 1, 'no onChange after close(), though the answer changed');
  t.same(keys(closing.resolver.current()), ['10.0.0.1:80']);
  t.equal(closing.resolver.status()[0]!.nextAt, null);
});

t.test(
  'an answer that arrives after close() is dropped: start() still resolves, and onChange is not called',
  async (t) => {
    const dns = await startDnsServer(t);
    dns.set('pods.test', [{ address: '10.0.0.1', ttl: 1 }]);
    const changes: Array<readonly ResolvedEndpoint[]> = [];
    const resolver = new TargetResolver({
      targets: [hp('pods.test', 80)],
      refreshMs: 200,
      resolver: resolverFor(dns),
      log: pino({ level: 'silent' }),
      onChange: (e) => changes.push(e),
    });
    const starting = resolver.start();
    resolver.close();
    await starting;
    t.equal(dns.queryCount('pods.test'), 2, 'the queries were sent and answered');
    t.same(changes, [], 'no onChange');
    t.same(resolver.current(), []);
    t.match(resolver.status()[0], { addresses: [], resolvedAt: null, nextAt: null });
  },
);
