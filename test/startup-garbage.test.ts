/**
 * The collection a thread runs once it has started (src/core/startupGarbage.ts): V8 offers the
 * `gc` it needs on this runtime, the young generation ends at its smallest, and `gc` is exposed
 * neither to the process nor to contexts made afterwards.
 */
import t from 'tap';
import { getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { collectStartupGarbage } from '../src/core/startupGarbage.ts';

const newSpaceBytes = (): number =>
  getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? -1;

t.test('collectStartupGarbage collects on this runtime and leaves the young generation at its smallest', async (t) => {
  // survivors of many scavenges make V8 grow the young generation
  const kept: object[] = [];
  for (let i = 0; i < 400_000; i++) kept.push({ i, s: `x${i}` });
  const grown = newSpaceBytes();
  t.ok(grown > 2 * 1024 * 1024, `new space grew beyond its smallest (${grown} bytes), so a shrink shows`);
  t.equal(collectStartupGarbage(), true, 'V8 gave the gc function');
  const after = newSpaceBytes();
  t.ok(after <= grown, `new space ${grown} → ${after} bytes`);
  t.ok(after <= 2 * 1024 * 1024, 'at most 2 MiB: the smallest young generation');
  t.equal(kept.length, 400_000, 'what is referenced stays');
});

t.test('gc is not left exposed to the process or to contexts made later', async (t) => {
  collectStartupGarbage();
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no global gc');
  t.equal(runInNewContext('typeof gc'), 'undefined', 'nor in a new context');
});
