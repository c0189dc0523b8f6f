/**
 * The app behind the inbound goes down and comes back, again and again, while producer →
 * outbound → inbound → app carries steady load. While it is down every request is answered
 * at once with 502 ERR_UPSTREAM_UNAVAILABLE (never a hang, a reset or a mangled body at the
 * producer, never a crash of either sidecar); once it is back every request succeeds again.
 */
import t from 'tap';
import { pipeline, summary } from '../helpers/pipeline.ts';
import { eventually } from '../helpers/world.ts';

const CYCLES = 3;
const WAIT_MS = 10_000;
const UNAVAILABLE = 'ERR_UPSTREAM_UNAVAILABLE';

t.test(
  'an app that flaps under load: 502 ERR_UPSTREAM_UNAVAILABLE while it is down, success once it is back, nothing hangs or is corrupted',
  async (t) => {
    const pl = await pipeline(t);
    const run = pl.producer.load({ count: 3000, ratePerSecond: 200, concurrency: 16, maxMs: 20_000, bodyBytes: 512 });
    t.teardown(() => run.stop());
    const refusedSoFar = (): number => run.progress().byCode[UNAVAILABLE] ?? 0;
    await eventually(() => run.progress().ok >= 20, WAIT_MS, 'load under way');

    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const refused = refusedSoFar();
      await pl.app.stop();
      const requestsWhileDown = pl.app.requests();
      await eventually(
        () => refusedSoFar() >= refused + 10,
        WAIT_MS,
        `cycle ${cycle}: requests refused while the app is down`,
      );
      t.equal(pl.app.requests(), requestsWhileDown, `cycle ${cycle}: nothing reached the app while it was down`);
      await pl.app.start();
      const ok = run.progress().ok;
      await eventually(
        () => run.progress().ok >= ok + 20,
        WAIT_MS,
        `cycle ${cycle}: requests succeeding again once the app is back`,
      );
    }
    run.stop();
    const r = await run;

    t.equal(r.corrupted, 0, `no body corrupted (${summary(r)})`);
    t.equal(r.duplicated, 0, 'no request reached the app twice');
    t.same(r.byError, {}, 'every request got an answer: no hang, no reset at the producer');
    t.same(Object.keys(r.byStatus).sort(), ['200', '502'], 'answers are 200 or 502');
    t.equal(r.byCode[UNAVAILABLE], r.failed, `every failure is 502 ${UNAVAILABLE} (${summary(r)})`);
    t.same(Object.keys(r.byCode), [UNAVAILABLE], 'and no other refusal code');
    t.ok(r.failed >= CYCLES * 10, `requests were refused in every cycle (${r.failed})`);
    t.equal(r.ok + r.failed, r.sent, 'every request sent is accounted for');
    // the app going away is seen as a refused connection (nothing listens) or a reset one (it went mid-request)
    const refused = await pl.inbound.metric('tollgate_upstream_errors_total', { reason: 'upstream_refused' });
    const reset = await pl.inbound.metric('tollgate_upstream_errors_total', { reason: 'upstream_reset' });
    t.equal(
      refused + reset,
      r.failed,
      `the inbound counted each refusal once as an upstream error (refused ${refused}, reset ${reset})`,
    );
    t.equal(await pl.inbound.metric('tollgate_upstream_errors_total'), r.failed, 'and under no other reason');
    t.equal(
      await pl.outbound.metric('tollgate_upstream_errors_total'),
      0,
      'the outbound saw no upstream error: the inbound answered every time',
    );
    t.ok(pl.inbound.sidecar!.ready() && pl.outbound.sidecar!.ready(), 'both sidecars are still ready');

    const after = await pl.producer.load({ count: 200, concurrency: 8, maxMs: WAIT_MS, bodyBytes: 2048 });
    const afterCounts = { ok: after.ok, failed: after.failed, corrupted: after.corrupted };
    t.same(afterCounts, { ok: 200, failed: 0, corrupted: 0 }, `all succeed once the app stays up (${summary(after)})`);
  },
);
