/**
 * How the benchmark's results read, from a synthetic results object (no load is generated):
 * the chart keeps every text on its canvas, writes each mean at the bar's mean marker (not at
 * the far end of the range), and flags rows whose reps disagree, as latest.md and the console
 * summary do; the run's progress line counts steps and estimates the time left from the pace.
 */
import t from 'tap';
import { noiseOf, NOISE_LIMITS } from '../bench/macro/noise.ts';
import { estimateLeftMs, formatClock, plannedMs, Progress, progressLine } from '../bench/macro/progress.ts';
import { noisyRows, printSummary, renderMarkdown, type Check, type Results, type Row } from '../bench/macro/report.ts';
import { DURATIONS, SCENARIOS } from '../bench/macro/scenarios.ts';
import { MEAN_LABEL_GAP, renderSvg, textWidth } from '../bench/macro/svg.ts';
import { TARGET_INFO } from '../bench/macro/targets.ts';

function row(
  target: string,
  figures: { value?: number[]; perCpu?: Array<number | null>; p99?: Array<number | null> },
): Row {
  const perCpu = figures.perCpu ?? [1000, 1020];
  return {
    target,
    value: figures.value ?? perCpu.filter((v) => v !== null).map((v) => v * 0.9),
    perProxyCpuSecond: perCpu,
    cpuUtilisation: perCpu.map(() => 0.9),
    p50: perCpu.map(() => 0.5),
    p99: figures.p99 ?? perCpu.map(() => 1.5),
    p999: perCpu.map(() => 3),
    rssPeakBytes: perCpu.map(() => 100 * 1048576),
    errors: perCpu.map(() => 0),
    failures: [],
    vsDirect: null,
    vsBaseline: null,
    vsHaproxy: null,
    addedP50Ms: null,
    addedP99Ms: null,
    addedP999Ms: null,
  };
}

const longCheck: Check = {
  name: 'L7 with all checks vs baseline-l7, GET keep-alive, a name long enough to need more than one line on its own',
  target: 'tollgate-l7-checks',
  scenario: 'get-keepalive',
  measured: 0.99,
  required: '≥ 1.6× baseline-l7 per proxy-CPU-second',
  pass: false,
  detail:
    '0.99× (per rep: 1.08, 0.90; tollgate-l7-checks 23,456 / 20,477, baseline-l7 21,761 / 22,709; 0.31× HAProxy), and then some more words to wrap',
  baseline: {
    target: 'raw-l7-checks',
    measured: 1.37,
    pass: true,
    detail:
      '1.37× (per rep: 1.39, 1.36), with a reference detail as long as the measured one, long enough to wrap as well',
  },
};

const LONG_NODE = 'v24.21.0-with-a-rather-long-version-suffix';

/** Two reps; get-keepalive has a steady row, a row with the range far from its mean and a noisy row. */
function results(): Results {
  const scenario = (name: string) => {
    const s = SCENARIOS.find((x) => x.name === name)!;
    return {
      name: s.name,
      description: s.description,
      unit: s.unit,
      bodyBytes: s.bodyBytes,
      connections: s.connections,
      rate: s.rate,
    };
  };
  return {
    version: 1,
    mode: 'full',
    startedAt: '2026-12-02T10:45:00.000Z',
    wallSeconds: 874,
    git: 'abc1234',
    machine: {
      cpuModel: 'Test CPU',
      cores: 2,
      memoryBytes: 8 * 2 ** 30,
      kernel: 'Linux 6.1',
      node: LONG_NODE,
      openssl: '3.5.0',
      clockTicksPerSecond: 100,
    },
    tools: {
      upstream: 'nginx',
      upstreamVersion: '1.22.1',
      wrk: '4.2.0',
      ab: null,
      haproxy: '2.6',
      loadClient: 'bench/macro/loadClient.ts',
    },
    durations: DURATIONS.full,
    targets: [TARGET_INFO['baseline-l7'], TARGET_INFO['tollgate-l7'], TARGET_INFO['tollgate-l7-checks-w2']],
    scenarios: [scenario('get-keepalive'), scenario('latency-1000rps')],
    notes: [],
    cells: [],
    summary: {
      scenarios: {
        'get-keepalive': [
          row('baseline-l7', { perCpu: [21_761, 22_709] }),
          row('tollgate-l7', { value: [20_000, 21_000], perCpu: [10_000, 30_000] }), // noisy per proxy-CPU-second: ×3
          row('tollgate-l7-checks-w2', { perCpu: [19_879, 19_984] }),
        ],
        'latency-1000rps': [
          row('baseline-l7', { value: [1000, 1000], perCpu: [6_453, 6_500], p99: [0.6, 0.7] }),
          row('tollgate-l7', { value: [1000, 1000], perCpu: [6_000, 6_100], p99: [10.5, 40.6] }), // noisy p99, as in the issue
        ],
      },
      checks: [longCheck],
    },
  };
}

interface SvgText {
  attrs: Record<string, string>;
  /** the text content with each run's own weight */
  runs: Array<{ text: string; bold: boolean }>;
}

const attrsOf = (s: string): Record<string, string> =>
  Object.fromEntries([...s.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
const unescape = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

function textsOf(svg: string): SvgText[] {
  return [...svg.matchAll(/<text([^>]*)>(.*?)<\/text>/g)].map((m) => {
    const attrs = attrsOf(m[1]!);
    const bold = attrs['font-weight'] === 'bold';
    const runs: SvgText['runs'] = [];
    for (const part of m[2]!.matchAll(/<tspan([^>]*)>(.*?)<\/tspan>|([^<]+)/g)) {
      if (part[3] !== undefined) runs.push({ text: unescape(part[3]), bold });
      else runs.push({ text: unescape(part[2]!), bold: bold || attrsOf(part[1]!)['font-weight'] === 'bold' });
    }
    return { attrs, runs };
  });
}

const plain = (x: SvgText): string => x.runs.map((r) => r.text).join('');

t.test('no text of the chart extends beyond the canvas, the title wrapped onto more lines', async (t) => {
  const svg = renderSvg(results());
  const canvas = Number(attrsOf(svg.slice(0, svg.indexOf('>')))['width']);
  t.equal(canvas, 900);
  const texts = textsOf(svg);
  t.ok(texts.length > 20, 'texts found');
  for (const x of texts) {
    const size = Number(x.attrs['font-size']);
    const width = x.runs.reduce((w, r) => w + textWidth(r.text, size, r.bold), 0);
    const left = Number(x.attrs['x']);
    if (x.attrs['text-anchor'] === 'end') t.ok(left - width >= 0, `"${plain(x)}" starts on the canvas`);
    else t.ok(left + width <= canvas, `"${plain(x)}" ends within ${canvas} px (at ${(left + width).toFixed(0)})`);
  }
  const title = texts.filter((x) => x.attrs['font-size'] === '16');
  t.ok(title.length >= 2, 'the title takes more than one line');
  const whole = `tollgate macro benchmark (full) — 2026-12-02 10:45 UTC, 2 cores, Node ${LONG_NODE}, upstream nginx`;
  t.equal(title.map(plain).join(' '), whole, 'the whole title, nothing cut');
  const firstPanel = texts.find((x) => plain(x) === 'get-keepalive')!;
  t.ok(
    Number(firstPanel.attrs['y']) > Number(title.at(-1)!.attrs['y']) + 16,
    'the panels start below the last line of the title',
  );
  t.ok(
    texts.some((x) => plain(x).startsWith('reference raw-l7-checks')),
    'long target rows are wrapped, not cut',
  );
});

t.test('the mean label sits at the mean marker, left of the end of the range', async (t) => {
  const svg = renderSvg(results());
  const markers = [...svg.matchAll(/<line class="mean-marker" x1="([\d.]+)"/g)].map((m) => Number(m[1]));
  const labels = textsOf(svg).filter((x) => x.attrs['class'] === 'mean-label');
  const ranges = [...svg.matchAll(/<path class="range" d="M([\d.]+) [^H]*H([\d.]+)/g)].map(
    (m) => [Number(m[1]), Number(m[2])] as const,
  );
  t.equal(markers.length, 5, 'one mean marker per bar');
  t.equal(labels.length, 5);
  t.equal(ranges.length, 5);
  for (let i = 0; i < markers.length; i++) {
    const [min, max] = ranges[i]!;
    t.equal(
      Number(labels[i]!.attrs['x']),
      Number((markers[i]! + MEAN_LABEL_GAP).toFixed(1)),
      'the label starts just after the mean marker',
    );
    // two reps: the mean is halfway along the range
    t.ok(Math.abs(markers[i]! - (min + max) / 2) <= 0.2, `the marker is at the mean (${markers[i]} in ${min}–${max})`);
  }
  // tollgate-l7 in get-keepalive: reps 10,000 and 30,000, so the mean is far from the maximum
  const wide = labels[1]!;
  t.match(plain(wide), /^20,000 \(10,000–30,000\)/, 'the mean is written first, the range after it');
  t.ok(Number(wide.attrs['x']) < ranges[1]![1] - 50, 'the mean label is well left of the maximum');
});

t.test(
  'rows whose reps disagree are flagged in the chart, the markdown and the summary; steady rows are not',
  async (t) => {
    const res = results();
    const svg = renderSvg(res);
    const labels = textsOf(svg)
      .filter((x) => x.attrs['class'] === 'mean-label')
      .map(plain);
    t.same(
      labels.map((l) => l.includes('noisy')),
      [false, true, false, false, true],
      'the noisy rows carry the tag on the chart',
    );
    t.match(labels[1]!, /noisy: per CPU-s ×3\.00/);
    t.match(labels[4]!, /noisy: p99 ×3\.87/);

    t.same(
      noisyRows(res).map((n) => `${n.scenario} ${n.target}`),
      ['get-keepalive tollgate-l7', 'latency-1000rps tollgate-l7'],
    );
    const md = renderMarkdown(res);
    t.match(md, /^\| tollgate-l7 ⚠ noisy \|/m);
    t.notMatch(md, /baseline-l7 ⚠ noisy/);
    t.notMatch(md, /tollgate-l7-checks-w2 ⚠ noisy/);
    t.match(md, /p99 ms 10\.5 vs 40\.6 \(×3\.87 > ×2\)/);
    t.match(md, /^- 2 row\(s\) noisy/m);

    const printed: string[] = [];
    printSummary(res, (line) => printed.push(line));
    t.same(
      printed.filter((l) => l.startsWith('warning:')),
      [
        'warning: noisy reps in get-keepalive / tollgate-l7: per proxy-CPU-s 10,000 vs 30,000 (×3.00 > ×1.15)',
        'warning: noisy reps in latency-1000rps / tollgate-l7: p99 ms 10.5 vs 40.6 (×3.87 > ×2)',
      ],
    );
  },
);

t.test('a row is noisy only past the stated limits, and never with a single rep', async (t) => {
  t.same(NOISE_LIMITS, { throughput: 1.15, p99: 2 });
  const figures = (r: Row): string[] => noiseOf(r, 'req').map((d) => d.figure);
  t.same(figures(row('a', { perCpu: [1000, 1140] })), [], '14% apart is steady');
  t.same(figures(row('a', { perCpu: [1000, 1160] })), ['req/s', 'per proxy-CPU-s'], '16% apart is noisy');
  t.same(figures(row('a', { p99: [1, 1.9] })), [], 'p99 ×1.9 is steady');
  t.same(figures(row('a', { p99: [1, 2.1] })), ['p99 ms']);
  t.same(figures(row('a', { perCpu: [1000], p99: [1] })), [], 'one rep cannot disagree');
  t.same(figures(row('a', { perCpu: [1000, null], p99: [null, null] })), [], 'a missing figure is not noise');
  const rss = row('a', { value: [100 * 1048576, 130 * 1048576] });
  t.same(
    noiseOf(rss, 'bytes').map((d) => [d.figure, d.low, d.high]),
    [['RSS MiB', 100, 130]],
  );
});

t.test('the progress line counts steps and estimates the time left from the pace so far', async (t) => {
  t.equal(formatClock(7_400), '0:07');
  t.equal(formatClock(750_000), '12:30');
  t.equal(formatClock(3_723_000), '1:02:03');
  t.equal(
    progressLine(12, 84, 'rep 1/2 tollgate-l7 post-16k', 151_000, 842_000),
    '[12/84] rep 1/2 tollgate-l7 post-16k … 2:31 elapsed, ~14:02 left',
  );

  t.equal(estimateLeftMs(0, 0, 40_000), 40_000, 'before a step finished, the plan');
  t.equal(
    estimateLeftMs(30_000, 10_000, 20_000),
    60_000,
    'three times slower than planned so far: three times the plan left',
  );
  t.equal(estimateLeftMs(30_000, 10_000, 0), 0);

  const d = DURATIONS.full;
  const get = SCENARIOS.find((s) => s.name === 'get-keepalive')!;
  const latency = SCENARIOS.find((s) => s.name === 'latency-1000rps')!;
  t.equal(plannedMs(get, d, false), d.warmupMs + d.durationMs);
  t.ok(
    plannedMs(get, d, true) > plannedMs(get, d, false) + d.targetWarmupMs - 1,
    'the first window after a start includes the start and its warm-up',
  );
  t.equal(plannedMs(latency, d, false), d.warmupMs + d.latencyMs);

  let now = 1_000_000;
  const lines: string[] = [];
  const steps = [
    { key: 'a', label: 'rep 1/1 direct get-keepalive', plannedMs: 1_000 },
    { key: 'b', label: 'rep 1/1 tollgate-l7 get-keepalive', plannedMs: 1_000 },
    { key: 'c', label: 'rep 1/1 tollgate-l7 latency-1000rps', plannedMs: 2_000 },
  ];
  const progress = new Progress(
    steps,
    () => now,
    (l) => lines.push(l),
  );
  progress.start('a');
  now += 3_000;
  progress.finish('a');
  progress.skip('b'); // its target did not start
  progress.start('c');
  now += 6_000;
  progress.finish('c');
  t.same(lines, [
    '[1/3] rep 1/1 direct get-keepalive … 0:00 elapsed, ~0:04 left',
    '[3/3] rep 1/1 tollgate-l7 latency-1000rps … 0:03 elapsed, ~0:06 left',
  ]);
});
