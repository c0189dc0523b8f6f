/**
 * Both sidecars get new certificates while producer → outbound → inbound → app carries load:
 * each side's identity lives in a Kubernetes Secret volume and is replaced the kubelet's way
 * (one `..data` symlink swap). Nothing in flight fails or is corrupted; connections opened
 * before the swap keep working; new connections carry the new certificates, both the one the
 * inbound serves and the one the outbound presents.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { handshake } from '../helpers/handshake.ts';
import { pipeline, summary, type LoadResult } from '../helpers/pipeline.ts';
import { eventually } from '../helpers/world.ts';

const WAIT_MS = 10_000;
/** the producer's certificates name no SPIFFE ID, so the app sees which one it was by subject (x-tollgate-peer) */
const PRODUCER_DNS = 'producer.example.org';

for (const run of ['in-process', 'process'] as const) {
  t.test(
    `certificates swapped through ..data under load (${run}): 0 failed, 0 corrupted, new connections carry the new certificates`,
    async (t) => {
      const fast = run === 'in-process' ? { deps: { identityTiming: { watchDebounceMs: 50 } } } : {};
      const pl = await pipeline(t, {
        volumes: true,
        inbound: { run, allow: { dns: [PRODUCER_DNS] }, ...fast },
        outbound: { run, leaf: { cn: 'producer-1', spiffe: [], dns: [PRODUCER_DNS, 'localhost'] }, ...fast },
      });
      const before = { inbound: pl.inbound.leaf(), outbound: pl.outbound.leaf() };
      const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;
      const served = async (): Promise<string> => {
        const r = await handshake(pl.inbound.addr, { ca: pl.w.ca.certPem, identity: pl.outbound.leaf() });
        return r.ok ? r.fingerprint256 : `refused: ${r.error}`;
      };
      t.equal(await served(), fingerprint(before.inbound.certPem), 'the inbound serves its first certificate');

      // steady load on a few connections, running through the swap
      const steady = pl.producer.load({
        count: 1500,
        ratePerSecond: 150,
        concurrency: 4,
        maxMs: 20_000,
        bodyBytes: 1024,
      });
      t.teardown(() => steady.stop());
      await eventually(() => steady.progress().ok >= 50, WAIT_MS, 'load under way');

      const next = { inbound: await pl.inbound.rotate(), outbound: await pl.outbound.rotate({ cn: 'producer-2' }) };
      const newServed = fingerprint(next.inbound.certPem);
      await eventually(
        async () => (await served()) === newServed,
        WAIT_MS,
        'a new handshake with the inbound to get its new certificate',
      );
      t.pass('new handshakes with the inbound get its new certificate');
      await eventually(
        async () => (await pl.outbound.metric('tollgate_cert_reloads_total', { result: 'success' })) >= 1,
        WAIT_MS,
        'the outbound to reload',
      );

      // more concurrency than before: the outbound opens new connections to the inbound, with its new certificate
      const burst = await pl.producer.load({ count: 200, concurrency: 16, maxMs: WAIT_MS, bodyBytes: 1024 });
      const ok = steady.progress().ok;
      await eventually(() => steady.progress().ok >= ok + 50, WAIT_MS, 'load to go on after the swap');
      steady.stop();
      const r = await steady;

      const counts = (x: LoadResult): Record<string, number> => ({
        failed: x.failed,
        corrupted: x.corrupted,
        duplicated: x.duplicated,
      });
      t.same(
        counts(r),
        { failed: 0, corrupted: 0, duplicated: 0 },
        `load through the swap: 0 failed, 0 corrupted (${summary(r)})`,
      );
      t.same(
        { ok: burst.ok, ...counts(burst) },
        { ok: 200, failed: 0, corrupted: 0, duplicated: 0 },
        `load after the swap: all ok (${summary(burst)})`,
      );
      const peers = pl.app.peers();
      t.ok(
        (peers.get('CN=producer-1') ?? 0) > 0,
        `requests came with the outbound's first certificate (${JSON.stringify([...peers])})`,
      );
      t.ok((peers.get('CN=producer-2') ?? 0) > 0, 'new connections from the outbound carry its new certificate');
      t.equal(
        [...peers.keys()].sort().join(','),
        'CN=producer-1,CN=producer-2',
        'and no other identity reached the app',
      );
      for (const side of [pl.inbound, pl.outbound]) {
        t.equal(
          await side.metric('tollgate_cert_reloads_total', { result: 'failure' }),
          0,
          `the ${side.role} counted no failed reload`,
        );
      }
      t.equal(
        await pl.inbound.metric('tollgate_tls_handshakes_total', { result: 'failure' }),
        0,
        'the inbound counted no failed handshake',
      );
    },
  );
}
