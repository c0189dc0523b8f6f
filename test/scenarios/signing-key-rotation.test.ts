/**
 * The signing key is rotated under load without a restart: producer → outbound → inbound → app
 * carries ~100 requests a second; the shared key ring gains k2 (the inbound's watch picks it
 * up), the outbound's config switches `keyId` k1 → k2 and the real outbound process gets a
 * SIGHUP. No request is refused or corrupted, the inbound passes k2 signatures to the app after
 * the switch, and once k1 is deleted (the rotation's last step) traffic still flows: the
 * inbound verifies k2, and the outbound's key ring no longer needs k1.
 */
import t from 'tap';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type http from 'node:http';
import { echo, pipeline, summary } from '../helpers/pipeline.ts';
import { writeKey } from '../helpers/signing.ts';
import { eventually } from '../helpers/world.ts';

const WAIT_MS = 15_000;

t.test(
  'keyId k1 → k2 by SIGHUP under 100 req/s: 0 refused, 0 corrupted, the inbound sees k2 signatures after the switch',
  async (t) => {
    // the key id of each request as the app received it (the inbound forwards the signature fields it verified)
    const keyIds: string[] = [];
    const app: http.RequestListener = (req, res) => {
      const input = req.headers['signature-input'];
      const m = typeof input === 'string' ? /keyid="([^"]+)"/.exec(input) : null;
      keyIds.push(m?.[1] ?? 'none');
      echo(req, res);
    };
    const pl = await pipeline(t, {
      app,
      outbound: { run: 'process' },
      inbound: { deps: { identityTiming: { watchDebounceMs: 50 } } },
    });

    const run = pl.producer.load({ count: 2000, ratePerSecond: 100, concurrency: 16, maxMs: 20_000, bodyBytes: 512 });
    t.teardown(() => run.stop());
    await eventually(() => run.progress().ok >= 100, WAIT_MS, 'load under way');

    // 1. the key ring gains k2: the inbound takes it up through its watch of keys.dir
    await writeKey(pl.keysDir, 'k2');
    await eventually(
      async () => (await pl.inbound.metric('tollgate_key_ring_keys')) === 2,
      WAIT_MS,
      'the inbound to hold k1 and k2',
    );

    // 2. the outbound's config switches to k2; SIGHUP on the real process
    await pl.outbound.rewriteConfig((raw) => {
      const l = (raw.listeners as Array<Record<string, unknown>>)[0]!;
      l.integrity = { sign: true, keyId: 'k2' };
    });
    const switchedAt = keyIds.length;
    pl.outbound.signal('SIGHUP');
    await eventually(
      () => pl.outbound.logs().some((l) => l.msg === 'configuration reloaded'),
      WAIT_MS,
      'the outbound to reload',
    );
    const changed = ['listeners[0].integrity.keyId'];
    const line = (msg: string): Record<string, unknown> | undefined => pl.outbound.logs().find((l) => l.msg === msg);
    t.match(
      line('configuration reloaded'),
      { trigger: 'sighup', changed, restartRequired: [] },
      'the log line says what changed',
    );
    t.match(
      line('audit config_reload'),
      { ok: true, trigger: 'sighup', changed },
      'and the audit event (a log line: no audit.file here)',
    );
    await eventually(() => keyIds.slice(switchedAt).includes('k2'), WAIT_MS, 'k2 signatures to arrive');
    const firstK2 = keyIds.indexOf('k2', switchedAt);
    await eventually(() => keyIds.length >= firstK2 + 116, WAIT_MS, '116 more requests after the switch');
    // a request in flight at the switch finishes on the snapshot it started with: at most the 16 the producer keeps open
    const stragglers = keyIds.slice(firstK2).filter((k) => k === 'k1').length;
    t.ok(stragglers <= 16, `only requests in flight at the switch are still signed with k1 (${stragglers})`);
    t.same([...new Set(keyIds.slice(-100))], ['k2'], 'after them every request is signed with k2');

    // 3. k1 is retired: the inbound verifies k2, and the outbound's ring may drop k1
    await rm(join(pl.keysDir, 'k1'));
    await eventually(
      async () => (await pl.inbound.metric('tollgate_key_ring_keys')) === 1,
      WAIT_MS,
      'the inbound to drop k1',
    );
    await eventually(
      async () => (await pl.outbound.metric('tollgate_key_ring_keys')) === 1,
      WAIT_MS,
      'the outbound to drop k1',
    );
    const ok = run.progress().ok;
    await eventually(() => run.progress().ok >= ok + 100, WAIT_MS, 'load to go on without k1');
    run.stop();
    const r = await run;

    const bad = { failed: r.failed, corrupted: r.corrupted, duplicated: r.duplicated };
    t.same(bad, { failed: 0, corrupted: 0, duplicated: 0 }, `0 refused, 0 corrupted (${summary(r)})`);
    t.ok(
      r.ok >= 300,
      `a real load went through: at least 100 before, 100 after the switch and 100 after k1 went (${r.ok} ok)`,
    );
    t.ok(keyIds.includes('k1'), 'k1 signatures before the switch');
    t.equal(
      await pl.inbound.metric('tollgate_signature_checks_total', { result: 'unknown_key' }),
      0,
      'the inbound never met an unknown key',
    );
    t.equal(
      await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }),
      keyIds.length,
      'and verified every request the app got',
    );
    const ringFailures = await pl.outbound.metric('tollgate_key_ring_reloads_total', { result: 'failure' });
    t.equal(ringFailures, 0, "the outbound's ring reloads never failed (k1 was no longer required)");
    t.equal(
      await pl.outbound.metric('tollgate_audit_events_total', { type: 'config_reload' }),
      1,
      'one config_reload audit event',
    );
  },
);
