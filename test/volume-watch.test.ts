import t from 'tap';
import { VolumeWatch, type VolumeFlag, type VolumeWatchOptions } from '../src/anomaly/volumeWatch.ts';
import { gauss, mulberry32 } from './helpers/random.ts';

const WINDOW_MS = 10_000;
const OPTIONS: VolumeWatchOptions = { windowMs: WINDOW_MS, minWindows: 10, threshold: 4, maxTrackedPeers: 8 };
/** a fake time axis: window w starts here (not at 0, so nothing depends on the epoch) */
const T0 = 1_700_000_000_000 - (1_700_000_000_000 % WINDOW_MS);
const windowStart = (w: number): number => T0 + w * WINDOW_MS;

/** about 2 KiB, log-normal */
const bodySize = (rng: () => number): number => Math.round(2048 * Math.exp(0.35 * gauss(rng)));
/** about 20 requests: 17..23 */
const steadyCount = (rng: () => number): number => 17 + Math.floor(rng() * 7);

/** `count` requests from `peer`, spread evenly over window `w`; returns every flag raised */
function sendWindow(
  watch: VolumeWatch,
  peer: string,
  w: number,
  count: number,
  size: (i: number) => number,
): VolumeFlag[] {
  const flags: VolumeFlag[] = [];
  for (let i = 0; i < count; i++) {
    flags.push(...watch.record(peer, size(i), windowStart(w) + Math.floor((i * WINDOW_MS) / count)));
  }
  return flags;
}

/** minWindows (or `n`) steady windows for `peer`, from window `from`; returns every flag raised */
function steady(watch: VolumeWatch, peer: string, rng: () => number, from = 0, n = OPTIONS.minWindows): VolumeFlag[] {
  const flags: VolumeFlag[] = [];
  for (let w = from; w < from + n; w++)
    flags.push(...sendWindow(watch, peer, w, steadyCount(rng), () => bodySize(rng)));
  return flags;
}

/** the kinds flagged, sorted (bytes may pass their bound before requests do) */
const kinds = (flags: readonly VolumeFlag[]): string[] => flags.map((f) => f.kind).sort();

t.test('a steady peer (~20 requests per 10 s window) is never flagged', async (t) => {
  const rng = mulberry32(1);
  const watch = new VolumeWatch(OPTIONS);
  t.same(steady(watch, 'a', rng, 0, 200), [], '200 windows, no flag');
});

t.test('nothing is flagged before minWindows windows have been seen', async (t) => {
  const rng = mulberry32(2);
  const watch = new VolumeWatch(OPTIONS);
  const first = sendWindow(watch, 'a', 0, 500, () => 100_000);
  t.same(first, [], 'a huge first window is not flagged');
  t.same(steady(watch, 'a', rng, 1, OPTIONS.minWindows - 2), []);
  // windows 0..minWindows-2 are done: the burst below lands in window minWindows-1, when only
  // minWindows-1 windows have closed
  t.same(
    sendWindow(watch, 'a', OPTIONS.minWindows - 1, 500, () => 100_000),
    [],
    'nor one in the last learning window',
  );
  t.same(
    steady(watch, 'a', rng, OPTIONS.minWindows, 30),
    [],
    'steady traffic after the learning windows is not flagged',
  );
  t.ok(sendWindow(watch, 'a', OPTIONS.minWindows + 30, 500, () => 2048).length > 0, 'once judging, a burst is flagged');
});

t.test('a 10× burst in one window raises exactly one flag per kind, in that window, while it happens', async (t) => {
  const rng = mulberry32(3);
  const watch = new VolumeWatch(OPTIONS);
  t.same(steady(watch, 'a', rng), []);
  const w = OPTIONS.minWindows;
  const perRequest: (readonly VolumeFlag[])[] = [];
  for (let i = 0; i < 200; i++) perRequest.push(watch.record('a', bodySize(rng), windowStart(w) + i * 50));
  const flags = perRequest.flat();
  t.same(kinds(flags), ['volume_bytes', 'volume_requests'], 'one volume_requests and one volume_bytes flag');
  const at = perRequest.findIndex((f) => f.some((x) => x.kind === 'volume_requests'));
  t.ok(at > 0 && at < 100, `flagged at request ${at + 1} of 200, during the burst, not at the window's end`);
  const req = flags.find((f) => f.kind === 'volume_requests')!;
  t.equal(req.count, at + 1, 'the flag carries the running count');
  t.ok(req.expected >= 17 && req.expected <= 23, `expected ~20 (${req.expected})`);
  t.same(
    sendWindow(watch, 'a', w + 1, 20, () => bodySize(rng)),
    [],
    'the next window starts unflagged',
  );
});

t.test('a window of normal request count but 10× the bytes raises one volume_bytes flag only', async (t) => {
  const rng = mulberry32(4);
  const watch = new VolumeWatch(OPTIONS);
  t.same(steady(watch, 'a', rng), []);
  const flags = sendWindow(watch, 'a', OPTIONS.minWindows, 20, () => 10 * bodySize(rng));
  t.same(kinds(flags), ['volume_bytes']);
  t.ok(flags[0]!.expected > 30_000 && flags[0]!.expected < 50_000, `expected ~40 KiB (${flags[0]!.expected})`);
  t.same(
    sendWindow(watch, 'a', OPTIONS.minWindows + 1, 20, () => bodySize(rng)),
    [],
    'the next window starts unflagged',
  );
});

t.test('a burst in the following window is flagged again (flags are per window)', async (t) => {
  const rng = mulberry32(5);
  const watch = new VolumeWatch(OPTIONS);
  t.same(steady(watch, 'a', rng, 0, 30), []);
  t.same(kinds(sendWindow(watch, 'a', 30, 200, () => 2048)), ['volume_bytes', 'volume_requests']);
  t.same(kinds(sendWindow(watch, 'a', 31, 2000, () => 2048)), ['volume_bytes', 'volume_requests']);
});

t.test("idle gaps lower a peer's baseline", async (t) => {
  // the same steady history, then a 10× window straight away or after silent windows: the
  // expected count reported with the flag is lower after the gap
  const expectedAfterGap = (gap: number): number => {
    const rng = mulberry32(6);
    const watch = new VolumeWatch(OPTIONS);
    steady(watch, 'a', rng, 0, 30);
    const flags = sendWindow(watch, 'a', 30 + gap, 200, () => 2048);
    return flags.find((f) => f.kind === 'volume_requests')!.expected;
  };
  const none = expectedAfterGap(0);
  const short = expectedAfterGap(3);
  const long = expectedAfterGap(100);
  t.comment(`expected requests per window after a gap of 0, 3, 100 windows: ${none}, ${short}, ${long}`);
  t.ok(short < none, 'three silent windows lower it');
  t.equal(long, 0, 'a long silence brings it to nothing');

  const rng = mulberry32(7);
  const watch = new VolumeWatch(OPTIONS);
  steady(watch, 'a', rng, 0, 30);
  t.same(
    kinds(sendWindow(watch, 'a', 200, 20, () => 2048)),
    ['volume_bytes', 'volume_requests'],
    'after a long silence even the old rate is unusual',
  );
});

t.test('a long silence clears the baseline even when it is learned slowly (large minWindows)', async (t) => {
  for (const minWindows of [10, 30, 100]) {
    const watch = new VolumeWatch({ ...OPTIONS, minWindows });
    for (let w = 0; w < 3 * minWindows; w++) sendWindow(watch, 'a', w, 400, () => 100);
    // a day of silence (8,640 windows of 10 s), then the peer's old rate again
    const flags = sendWindow(watch, 'a', 3 * minWindows + 8640, 400, () => 100);
    t.same(
      kinds(flags),
      ['volume_bytes', 'volume_requests'],
      `minWindows ${minWindows}: the old rate is unusual again`,
    );
    const req = flags.find((f) => f.kind === 'volume_requests');
    t.equal(req?.expected, 0, `minWindows ${minWindows}: nothing expected`);
    t.ok(
      req !== undefined && req.count <= 17,
      `minWindows ${minWindows}: flagged at request ${req?.count}, at the floor bound (4 spreads of 1 in √count)`,
    );
  }
});

t.test('peers are independent: one noisy peer does not flag another', async (t) => {
  const rng = mulberry32(8);
  const watch = new VolumeWatch(OPTIONS);
  for (let w = 0; w < 40; w++) {
    const quiet = sendWindow(watch, 'quiet', w, steadyCount(rng), () => bodySize(rng));
    if (quiet.length > 0) t.fail(`the quiet peer was flagged in window ${w}`);
    // the noisy peer: steady, then ten times as much in every other window from 20 on
    const noisy = sendWindow(watch, 'noisy', w, w >= 20 && w % 2 === 0 ? 200 : steadyCount(rng), () => bodySize(rng));
    if (w === 20) t.same(kinds(noisy), ['volume_bytes', 'volume_requests'], 'the noisy peer is flagged');
  }
  t.pass('the quiet peer was never flagged');
});

t.test('at most maxTrackedPeers peers are watched; further peers are not', async (t) => {
  const rng = mulberry32(9);
  const watch = new VolumeWatch({ ...OPTIONS, maxTrackedPeers: 2 });
  const peers = ['a', 'b', 'c', 'd'];
  for (let w = 0; w < OPTIONS.minWindows; w++)
    for (const p of peers) sendWindow(watch, p, w, steadyCount(rng), () => bodySize(rng));
  const w = OPTIONS.minWindows;
  t.same(
    peers.map((p) => sendWindow(watch, p, w, 200, () => 2048).length),
    [2, 2, 0, 0],
    'the first two peers are flagged for a burst; the two beyond the cap are not watched',
  );
});
