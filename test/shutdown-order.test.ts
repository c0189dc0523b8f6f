/**
 * The order of drain and shutdown (src/lifecycle.ts), on parts that record what is asked of
 * them: inbound listeners of every thread first, outbound ones only once inbound is drained;
 * parts stopped newest first after the drain; the audit's `stop` written last; a failed start
 * undone at once. (lifecycle.test.ts and scenarios/sigterm-under-load.test.ts check the same on
 * a real process under load.)
 */
import t from 'tap';
import { createLifecycle, type Drainable, type Lifecycle } from '../src/lifecycle.ts';
import { createReadiness, type Readiness } from '../src/core/readiness.ts';
import type { AuditSink } from '../src/telemetry/audit.ts';
import { captureLogs } from './helpers/world.ts';

interface Recorded {
  readonly lifecycle: Lifecycle;
  readonly readiness: Readiness;
  /** what happened, in order */
  readonly events: string[];
  readonly deadlines: number[];
}

const DRAIN_MS = 10_000;

function recorded(opts: { closeAudit?: () => Promise<void> } = {}): Recorded {
  const events: string[] = [];
  const readiness = createReadiness();
  const audit: AuditSink = { record: (type) => void events.push(`audit ${type}`), flush: () => Promise.resolve() };
  const lifecycle = createLifecycle({
    readiness,
    audit,
    log: captureLogs().logger,
    drainTimeoutMs: () => DRAIN_MS,
    closeAudit: opts.closeAudit ?? (() => Promise.resolve(void events.push('audit closed'))),
  });
  return { lifecycle, readiness, events, deadlines: [] };
}

/** A part whose drain of each mode resolves when the test says so (or at once). */
function part(
  r: Recorded,
  name: string,
  held: Partial<Record<'inbound' | 'outbound', Promise<void>>> = {},
  clean = true,
): Drainable {
  return {
    async drain(mode, deadline) {
      r.events.push(`${name} drains ${mode}`);
      r.deadlines.push(deadline);
      await held[mode];
      r.events.push(`${name} drained ${mode}`);
      return clean;
    },
  };
}

t.test(
  'a drain runs once: readiness turns 503, inbound listeners of every part drain before any outbound one',
  async (t) => {
    const r = recorded();
    let releaseInbound!: () => void;
    const inboundHeld = new Promise<void>((resolve) => (releaseInbound = resolve));
    r.lifecycle.drains(part(r, 'main', { inbound: inboundHeld }));
    r.lifecycle.drains(part(r, 'workers'));
    r.readiness.markIdentityLoaded();
    r.readiness.markListenersBound();
    const before = Date.now();
    const first = r.lifecycle.drain('admin');
    const again = r.lifecycle.drain('api');
    t.equal(first.started, true);
    t.equal(again.started, false, 'a second drain changes nothing');
    t.equal(again.deadline, first.deadline, 'and reports the drain under way');
    t.ok(
      first.deadline >= before + DRAIN_MS && first.deadline <= Date.now() + DRAIN_MS,
      'the deadline is drainTimeout from now',
    );
    t.equal(r.readiness.ready(), false, 'not ready while draining');
    await new Promise((resolve) => setImmediate(resolve));
    const soFar = ['audit drain', 'main drains inbound', 'workers drains inbound', 'workers drained inbound'];
    t.same(r.events, soFar, 'no outbound listener drains while an inbound one still does');
    releaseInbound();
    t.equal(await first.done, true, 'clean: nothing was cut');
    t.same(r.events.slice(4), [
      'main drained inbound',
      'main drains outbound',
      'workers drains outbound',
      'main drained outbound',
      'workers drained outbound',
    ]);
  },
);

t.test(
  'shutdown drains, stops the parts newest first, then writes the stop event and closes the audit; asked twice, it runs once',
  async (t) => {
    const r = recorded();
    r.lifecycle.onStop(() => void r.events.push('stop tickets'));
    r.lifecycle.onStop(async () => void r.events.push('stop admin'));
    r.lifecycle.drains(part(r, 'main', {}, false));
    r.lifecycle.onStop(() => void r.events.push('stop main'));
    const first = r.lifecycle.shutdown();
    t.equal(r.lifecycle.shutdown(), first, 'the same shutdown');
    t.equal(await first, false, 'not clean when a part cut work in flight');
    t.same(r.events, [
      'audit drain',
      'main drains inbound',
      'main drained inbound',
      'main drains outbound',
      'main drained outbound',
      'stop main',
      'stop admin',
      'stop tickets',
      'audit stop',
      'audit closed',
    ]);
  },
);

t.test(
  'a failed start closes the bound listeners at once, stops what started, and reports nothing of its own',
  async (t) => {
    const r = recorded({ closeAudit: () => Promise.reject(new Error('disk gone')) });
    r.lifecycle.onStop(() => void r.events.push('stop tickets'));
    r.lifecycle.onStop(() => {
      throw new Error('admin would not close');
    });
    r.lifecycle.drains(part(r, 'main'));
    r.lifecycle.onStop(() => void r.events.push('stop main'));
    const before = Date.now();
    await r.lifecycle.abort();
    const undone = [
      'main drains inbound',
      'main drained inbound',
      'main drains outbound',
      'main drained outbound',
      'stop main',
      'stop tickets',
    ];
    t.same(r.events, undone, 'no drain event, no stop event');
    t.ok(
      r.deadlines.every((d) => d >= before && d <= Date.now()),
      'listeners are closed now, not after a drain timeout',
    );
  },
);
