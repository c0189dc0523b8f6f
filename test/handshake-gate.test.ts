/**
 * The handshake gate (src/proxy/handshakeGate.ts) on an injected clock, injected timers and
 * loop turns, with sockets that only say how many bytes they have read: who is admitted,
 * who is closed to make room, who is refused, and when the ClientHello deadline closes whom.
 * The real thing (sockets on loopback) is test/scenarios/preauth-lockout.test.ts.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { Writable } from 'node:stream';
import {
  HandshakeGate,
  sourceKey,
  type GateClose,
  type GateLimits,
  type GateSocket,
} from '../src/proxy/handshakeGate.ts';
import { RefusalWindow } from '../src/proxy/refusalWindow.ts';
import { RecentHandshakes } from '../src/telemetry/recentHandshakes.ts';
import type { Clock } from '../src/core/clock.ts';

class FakeSocket extends EventEmitter implements GateSocket {
  bytesRead = 0;
  destroyed = false;
  readonly name: string;
  constructor(name: string) {
    super();
    this.name = name;
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

/** a clock, one-shot timers and loop turns that move only when the test says so */
function harness(limits: Partial<GateLimits> = {}) {
  let nowMs = 1_000;
  const clock: Clock = { now: () => nowMs, monotonic: () => BigInt(nowMs) * 1_000_000n };
  let timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  let deferred: Array<() => void> = [];
  const closed: Array<{ name: string; why: GateClose }> = [];
  const gate = new HandshakeGate(
    { maxInProgress: 4, maxPerSource: 4, clientHelloTimeoutMs: 2_000, ...limits },
    {
      clock,
      onClose: (s, why) => closed.push({ name: (s as FakeSocket).name, why }),
      timers: {
        setTimeout(fn, ms) {
          const h = { at: nowMs + ms, fn, live: true };
          timers.push(h);
          return h;
        },
        clearTimeout(h) {
          (h as { live: boolean }).live = false;
        },
        defer: (fn) => deferred.push(fn),
      },
    },
  );
  return {
    gate,
    closed,
    /** one turn of the event loop: what was deferred runs */
    turn() {
      const run = deferred;
      deferred = [];
      for (const fn of run) fn();
    },
    turns(n: number) {
      for (let i = 0; i < n; i++) this.turn();
    },
    /** callbacks deferred to the next turn and not yet run */
    pending(): number {
      return deferred.length;
    },
    /** move the clock, firing due timers in order */
    advance(ms: number) {
      const end = nowMs + ms;
      for (;;) {
        const due = timers.filter((x) => x.live && x.at <= end).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        nowMs = Math.max(nowMs, due.at);
        due.live = false;
        due.fn();
      }
      nowMs = end;
      timers = timers.filter((x) => x.live);
    },
    liveTimers: () => timers.filter((x) => x.live).length,
  };
}

function sockets(prefix: string, n: number): FakeSocket[] {
  return Array.from({ length: n }, (_, i) => new FakeSocket(`${prefix}${i}`));
}

t.test(
  'at the cap, the oldest connection that sent nothing is closed to make room; the new one is admitted',
  async (t) => {
    const h = harness({ maxInProgress: 3 });
    const [a, b, c] = sockets('s', 3);
    for (const s of [a!, b!, c!]) t.equal(h.gate.admit(s, `10.0.0.${s.name}`), 'admitted');
    b!.bytesRead = 5; // b spoke; a is the oldest silent one
    h.turns(2);
    const d = new FakeSocket('d');
    t.equal(h.gate.admit(d, '10.0.0.9'), 'admitted', 'the new connection gets a slot');
    t.same(h.closed, [{ name: 's0', why: 'evicted' }], 'the oldest silent one was closed for it');
    t.ok(a!.destroyed && !b!.destroyed && !c!.destroyed && !d.destroyed);
    t.equal(h.gate.inProgress, 3, 'still at the cap, never above');
  },
);

t.test(
  'at the cap with every holder speaking, the new connection is refused and the holders keep their slots',
  async (t) => {
    const h = harness({ maxInProgress: 2 });
    const holders = sockets('h', 2);
    for (const s of holders) h.gate.admit(s, s.name);
    for (const s of holders) s.bytesRead = 1; // one byte of a ClientHello is enough
    h.turns(2);
    const late = new FakeSocket('late');
    t.equal(h.gate.admit(late, 'x'), 'cap');
    t.ok(late.destroyed, 'the refused one is closed');
    t.same(h.closed, [], 'no holder was closed');
    t.equal(h.gate.inProgress, 2);
  },
);

t.test(
  'a connection accepted in this loop turn or the last is not taken for silent: the new one is refused instead',
  async (t) => {
    const h = harness({ maxInProgress: 2 });
    const burst = sockets('b', 2);
    for (const s of burst) h.gate.admit(s, s.name);
    // same turn as their accept: their ClientHello may be waiting unread in the kernel
    t.equal(h.gate.admit(new FakeSocket('x'), 'x'), 'cap', 'refused in the same turn');
    h.turn();
    t.equal(
      h.gate.admit(new FakeSocket('y'), 'y'),
      'cap',
      'refused one turn later (their bytes are read on the next poll)',
    );
    h.turn();
    t.equal(h.gate.admit(new FakeSocket('z'), 'z'), 'admitted', 'after two turns the silent ones had their chance');
    t.same(h.closed, [{ name: 'b0', why: 'evicted' }]);
    h.turns(5);
    t.equal(h.pending(), 0, 'turns stop being counted once no connection waits for its chance (no endless immediates)');
  },
);

t.test(
  "per source: at its limit a source loses its own oldest silent connection, not another source's older one",
  async (t) => {
    const h = harness({ maxInProgress: 10, maxPerSource: 2 });
    const other = new FakeSocket('other');
    h.gate.admit(other, '192.0.2.1'); // older, silent, from elsewhere
    const mine = sockets('m', 2);
    for (const s of mine) h.gate.admit(s, '192.0.2.2');
    h.turns(2);
    t.equal(h.gate.admit(new FakeSocket('m2'), '192.0.2.2'), 'admitted');
    t.same(h.closed, [{ name: 'm0', why: 'evicted' }], "the source's own oldest silent one");
    t.equal(h.gate.inProgressFrom('192.0.2.2'), 2, 'the source stays at its limit');
    t.notOk(other.destroyed);

    for (const s of [mine[1]!]) s.bytesRead = 10;
    const m2 = [...h.closed];
    h.turns(2);
    // mine[1] speaks, m2 is silent: the next from this source evicts m2
    t.equal(h.gate.admit(new FakeSocket('m3'), '192.0.2.2'), 'admitted');
    t.equal(h.closed.length, m2.length + 1);
    t.same(h.closed.at(-1), { name: 'm2', why: 'evicted' });
  },
);

t.test(
  "per source: when all of a source's handshakes are speaking, its next connection is refused while other sources get in",
  async (t) => {
    const h = harness({ maxInProgress: 10, maxPerSource: 2 });
    const slow = sockets('slow', 2);
    for (const s of slow) {
      h.gate.admit(s, '198.51.100.7');
      s.bytesRead = 3; // a partial ClientHello, then nothing: the handshake timeout's business
    }
    h.turns(2);
    const next = new FakeSocket('next');
    t.equal(h.gate.admit(next, '198.51.100.7'), 'source_cap');
    t.ok(next.destroyed);
    t.equal(h.gate.admit(new FakeSocket('elsewhere'), '198.51.100.8'), 'admitted');
    t.same(h.closed, []);
  },
);

t.test('the ClientHello deadline closes what sent nothing, keeps what spoke, with one timer per gate', async (t) => {
  const h = harness({ maxInProgress: 100, clientHelloTimeoutMs: 2_000 });
  const early = sockets('early', 3);
  for (const s of early) h.gate.admit(s, 'a');
  h.turns(2);
  h.advance(1_000);
  const late = sockets('late', 2);
  for (const s of late) h.gate.admit(s, 'b');
  h.turns(2);
  t.equal(h.liveTimers(), 1, 'one timer, however many connections');
  early[1]!.bytesRead = 1;
  h.advance(999);
  t.same(h.closed, [], 'nothing before the deadline');
  h.advance(1);
  t.same(
    h.closed,
    [
      { name: 'early0', why: 'client_hello_timeout' },
      { name: 'early2', why: 'client_hello_timeout' },
    ],
    'at 2 s: the early silent ones',
  );
  t.notOk(early[1]!.destroyed, 'the one that spoke stays (its handshake timeout is its limit)');
  late[0]!.bytesRead = 100;
  h.gate.done(late[0]); // its handshake completed
  h.advance(1_000);
  t.same(
    h.closed.map((c) => c.name),
    ['early0', 'early2', 'late1'],
    'then the late silent one, at its own deadline',
  );
  t.equal(h.gate.inProgress, 1, 'only the speaking early one holds a slot');
  t.equal(h.liveTimers(), 0, 'no timer once nothing is silent');
});

t.test('the deadline waits for a connection to have had its chance to be read (a stalled loop)', async (t) => {
  const h = harness({ clientHelloTimeoutMs: 2_000 });
  const s = new FakeSocket('s');
  h.gate.admit(s, 'a');
  h.advance(5_000); // the loop was stuck: no turn since the accept
  t.same(h.closed, [], 'not judged before its bytes could be read');
  s.bytesRead = 1;
  h.turns(2);
  h.advance(10);
  t.same(h.closed, [], 'it had spoken');
});

t.test('a slot is released when the handshake is done or the socket closes, once', async (t) => {
  const h = harness({ maxInProgress: 2, maxPerSource: 2 });
  const [a, b] = sockets('x', 2);
  h.gate.admit(a!, 'src');
  h.gate.admit(b!, 'src');
  h.gate.done(a);
  h.gate.done(a);
  t.equal(h.gate.inProgress, 1);
  b!.destroy();
  t.equal(h.gate.inProgress, 0);
  t.equal(h.gate.inProgressFrom('src'), 0);
  h.gate.done(undefined);
  t.equal(h.gate.admit(new FakeSocket('c'), 'src'), 'admitted');
});

t.test(
  "maxPerSource 1: evicting a source's only connection and admitting its new one keeps the count right",
  async (t) => {
    const h = harness({ maxInProgress: 5, maxPerSource: 1 });
    h.gate.admit(new FakeSocket('first'), 'one');
    h.turns(2);
    t.equal(h.gate.admit(new FakeSocket('second'), 'one'), 'admitted');
    t.equal(h.gate.inProgressFrom('one'), 1);
    t.equal(h.gate.inProgress, 1);
  },
);

t.test('sourceKey: IPv4 as is (also IPv4-mapped), IPv6 by its /64', async (t) => {
  t.equal(sourceKey('127.0.0.2'), '127.0.0.2');
  t.equal(sourceKey('::ffff:10.1.2.3'), '10.1.2.3');
  t.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(sourceKey('2001:0db8:0001:0002:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64', 'the same /64, written out');
  t.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(sourceKey('::1'), '0:0:0:0::/64');
  t.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.equal(sourceKey(undefined), 'unknown');
});

t.test('a refusal window: log lines and audit events add up to the metric, the entry counts its window', async (t) => {
  let nowMs = Date.parse('2026-12-01T00:00:00Z');
  const clock: Clock = { now: () => nowMs, monotonic: () => BigInt(nowMs) * 1_000_000n };
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()),
    }),
  );
  const audits: Array<Record<string, unknown>> = [];
  const recent = new RecentHandshakes(8);
  let counted = 0;
  let fire: (() => void) | null = null;
  const w = new RefusalWindow({
    listener: 'ingest',
    count: () => counted++,
    log,
    audit: { record: (_type, fields) => audits.push({ ...fields }), flush: async () => undefined },
    recent,
    clock,
    kind: 'handshake_failure',
    reason: 'handshake_cap',
    code: 'HANDSHAKE_CAP',
    message: 'dropped',
    detail: 'cap',
    auditType: 'handshake_failure',
    timers: { setTimeout: (fn) => (fire = fn) },
  });
  for (let i = 0; i < 7; i++) w.record(`127.0.0.1:${1000 + i}`);
  await new Promise((r) => setImmediate(r));
  t.equal(counted, 7, 'each one counted');
  t.equal(lines.length, 1, 'one log line so far, for the first');
  t.match(lines[0], { msg: 'dropped', code: 'HANDSHAKE_CAP', dropped: 1, remote: '127.0.0.1:1000', level: 40 });
  t.same(audits, [{ listener: 'ingest', reason: 'handshake_cap', code: 'HANDSHAKE_CAP', dropped: 1 }]);
  t.match(recent.list(), [{ count: 7, code: 'HANDSHAKE_CAP', reason: 'handshake_cap', remote: '127.0.0.1:1000' }]);
  nowMs += 10_000;
  fire!();
  await new Promise((r) => setImmediate(r));
  t.match(lines[1], { dropped: 6 }, "the window's end reports the rest");
  t.equal(audits[1]?.dropped, 6);
  w.record('127.0.0.1:2000');
  await new Promise((r) => setImmediate(r));
  t.equal(recent.list().length, 2, 'a new window, a new entry');
  const sum = (xs: Array<Record<string, unknown>>): number => xs.reduce((n, x) => n + Number(x.dropped), 0);
  t.equal(sum(lines), counted, 'log lines add up to the metric');
  t.equal(sum(audits), counted, 'audit events add up to the metric');
  t.equal(
    recent.list().reduce((n, e) => n + e.count, 0),
    counted,
    'entries add up to the metric',
  );
});
