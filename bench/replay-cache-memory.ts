/**
 * Replay cache memory and speed benchmark.
 *
 *   node_modules/.bin/node --expose-gc bench/replay-cache-memory.ts
 *
 * Fills a replay cache (maxEntries 1,000,000, ttl 330 s, default buckets) with
 * 1,000,000 distinct nonces shaped like real ones (22-char base64url of 16
 * random bytes), spread over the ttl on a fake clock so all buckets are used,
 * and reports the heap + ArrayBuffer growth per entry against a 128 MiB budget
 * for the million. It also times checkAndInsert for fresh inserts and for
 * replays of every inserted nonce.
 *
 * Nonces come in batches from an AES-128-CTR keystream under a random key, so
 * they are indistinguishable from random bytes yet can be made again for the
 * replay pass: the script never holds more than one batch of strings.
 *
 * Exit status 0 when within budget and every verdict was right, 1 otherwise.
 * The last line of output is a JSON summary.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import type { Clock } from '../src/core/clock.ts';
import { createReplayCache, type ReplayVerdict } from '../src/integrity/replayCache.ts';

const ENTRIES = 1_000_000;
const TTL_MS = 330_000;
const BUDGET_MIB = 128;
const BATCH = 10_000;
const KEY_IDS = ['client-a-2024', 'client-b-2024', 'batch-signer', 'edge-7f3a'];

const gc = globalThis.gc;
if (gc === undefined) {
  console.error('run with --expose-gc: node_modules/.bin/node --expose-gc bench/replay-cache-memory.ts');
  process.exit(1);
}

function settle(): number {
  for (let i = 0; i < 4; i++) gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const streamKey = randomBytes(16);
/** batch b of nonces, the same every time it is asked for */
function nonceBatch(b: number): string[] {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(b, 0);
  const bytes = createCipheriv('aes-128-ctr', streamKey, iv).update(Buffer.alloc(16 * BATCH));
  const out: string[] = new Array<string>(BATCH);
  for (let i = 0; i < BATCH; i++) out[i] = bytes.toString('base64url', 16 * i, 16 * i + 16);
  return out;
}

let fakeNow = 1_700_000_000_000;
const start = fakeNow;
const clock: Clock = { now: () => fakeNow, monotonic: () => BigInt(fakeNow) * 1_000_000n };

const before = settle();
const cache = createReplayCache({ ttlMs: TTL_MS, maxEntries: ENTRIES, clock });

let falseReplays = 0;
let insertNs = 0n;
const batches = ENTRIES / BATCH;
for (let b = 0; b < batches; b++) {
  const nonces = nonceBatch(b);
  const base = b * BATCH;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < BATCH; i++) {
    const n = base + i;
    // spread over [start, start + ttl - 1): everything is still live at the end
    fakeNow = start + Math.floor((n * (TTL_MS - 1)) / ENTRIES);
    if (cache.checkAndInsert(KEY_IDS[n & 3]!, nonces[i]!) !== 'fresh') falseReplays++;
  }
  insertNs += process.hrtime.bigint() - t0;
}

const after = settle();
const live = cache.size;
const bytes = after - before;
const bytesPerEntry = bytes / ENTRIES;
const totalMiB = bytes / 2 ** 20;

let missedReplays = 0;
let replayNs = 0n;
for (let b = 0; b < batches; b++) {
  const nonces = nonceBatch(b);
  const base = b * BATCH;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < BATCH; i++) {
    const verdict: ReplayVerdict = cache.checkAndInsert(KEY_IDS[(base + i) & 3]!, nonces[i]!);
    if (verdict !== 'replayed') missedReplays++;
  }
  replayNs += process.hrtime.bigint() - t0;
}

// at capacity: a lookup that misses every bucket and is refused
const extra = nonceBatch(batches);
const t0 = process.hrtime.bigint();
let notFull = 0;
for (let i = 0; i < BATCH; i++) if (cache.checkAndInsert('client-a-2024', extra[i]!) !== 'full') notFull++;
const fullNs = process.hrtime.bigint() - t0;

const opsPerSec = (ops: number, ns: bigint): number => Math.round(ops / (Number(ns) / 1e9));
const summary = {
  bench: 'replay-cache-memory',
  entries: ENTRIES,
  live,
  ttlMs: TTL_MS,
  bytesPerEntry: Math.round(bytesPerEntry * 10) / 10,
  totalMiB: Math.round(totalMiB * 10) / 10,
  budgetMiB: BUDGET_MIB,
  freshOpsPerSec: opsPerSec(ENTRIES, insertNs),
  replayOpsPerSec: opsPerSec(ENTRIES, replayNs),
  fullOpsPerSec: opsPerSec(BATCH, fullNs),
  falseReplays,
  missedReplays,
  notFull,
  pass: false,
};
summary.pass = totalMiB <= BUDGET_MIB && live === ENTRIES && falseReplays === 0 && missedReplays === 0 && notFull === 0;

console.log(
  `entries inserted     ${ENTRIES.toLocaleString('en')} over ${TTL_MS / 1000} s (live at end: ${live.toLocaleString('en')})`,
);
console.log(
  `memory               ${summary.bytesPerEntry} bytes/entry, ${summary.totalMiB} MiB total (heapUsed + arrayBuffers)`,
);
console.log(`fresh inserts        ${summary.freshOpsPerSec.toLocaleString('en')} ops/s`);
console.log(`replay lookups       ${summary.replayOpsPerSec.toLocaleString('en')} ops/s`);
console.log(`refused when full    ${summary.fullOpsPerSec.toLocaleString('en')} ops/s`);
console.log(
  `wrong verdicts       ${falseReplays} false replays, ${missedReplays} missed replays, ${notFull} not refused when full`,
);
console.log(`${summary.pass ? 'PASS' : 'FAIL'}: ${summary.totalMiB} MiB for 1M entries, budget ${BUDGET_MIB} MiB`);
console.log(JSON.stringify(summary));
process.exit(summary.pass ? 0 : 1);
