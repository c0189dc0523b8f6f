/**
 * A hand-written SVG bar chart, no dependency: one panel per scenario, one horizontal bar per
 * target showing requests (MiB for POST 1 MiB) per proxy-CPU-second, mean of the reps. The bar
 * ends at the mean, marked by a tick, and the mean is written right there; the reps' min–max is a
 * whisker under the bar, written in grey after the mean, so the figure never reads as the
 * maximum. Rows whose reps disagree (noise.ts) carry a red "noisy" tag. idle-rss shows MiB of
 * RSS (shorter is better) and latency the p99.
 *
 * No text may leave the canvas: without a renderer to measure it, text is sized with a
 * conservative width per character (textWidth), long lines are wrapped and the plot area shrinks
 * until the longest label after its bar fits.
 */
import { noiseOf, shortNoise, NOISE_RULE } from './noise.ts';
import type { Results, Row } from './report.ts';

const COLOURS: Record<string, string> = {
  direct: '#9e9e9e',
  'baseline-l4': '#90caf9',
  'baseline-l7': '#42a5f5',
  'raw-l7': '#b39ddb',
  'raw-l7-llhttp': '#9575cd',
  'raw-l7-checks': '#7e57c2',
  'tollgate-l4': '#a5d6a7',
  'tollgate-l7': '#66bb6a',
  'tollgate-l7-checks': '#2e7d32',
  'tollgate-e2e': '#1b5e20',
  'tollgate-e2e-pass': '#81c784',
  'tollgate-l7-checks-w2': '#00897b',
  'tollgate-l7-checks-redis': '#d84315',
  'tollgate-gw50': '#9ccc65',
  'tollgate-gw50-checks': '#558b2f',
  'haproxy-l4': '#ffcc80',
  'haproxy-l7': '#fb8c00',
  'baseline-h2': '#1e88e5',
  'tollgate-h2': '#26a69a',
  'tollgate-h2-checks': '#00695c',
  'haproxy-h2': '#ef6c00',
};

export const CANVAS_WIDTH = 900;
const MARGIN = 10;
const LABEL_W = 170;
/** between the mean marker and the start of the mean label */
export const MEAN_LABEL_GAP = 4;
const BAR_H = 14;
const ROW_PITCH = BAR_H + 12;
const MIN_PLOT_W = 200;
/** after the PASS / FAIL / n/a mark of a target row */
const CHECK_TEXT_X = 56;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const finite = (xs: Array<number | null>): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));
const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Width in px of `text` at `fontSize`, erring wide: per-character widths (in em) at or above
 * those of DejaVu Sans and Arial, the usual sans-serif fonts, and bold 12% wider.
 */
export function textWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) {
    if ('mwMW@%—…'.includes(ch)) em += 1;
    else if (ch >= 'A' && ch <= 'Z') em += 0.78;
    else if (ch >= '0' && ch <= '9') em += 0.64;
    else if (" ijlI.,:;'!|".includes(ch)) em += 0.34;
    else if ('frt()[]-/'.includes(ch)) em += 0.44;
    else em += 0.64;
  }
  return em * fontSize * (bold ? 1.12 : 1);
}

/** Greedy word wrap to maxWidth; a word longer than a line is cut. */
export function wrapText(text: string, maxWidth: number, fontSize: number, bold = false): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if (textWidth(candidate, fontSize, bold) <= maxWidth) {
      line = candidate;
      continue;
    }
    if (line !== '') lines.push(line);
    line = word;
    while (textWidth(line, fontSize, bold) > maxWidth && line.length > 1) {
      let cut = line.length - 1;
      while (cut > 1 && textWidth(line.slice(0, cut), fontSize, bold) > maxWidth) cut--;
      lines.push(line.slice(0, cut));
      line = line.slice(cut);
    }
  }
  if (line !== '') lines.push(line);
  return lines.length > 0 ? lines : [''];
}

interface TextStyle {
  size: number;
  bold?: boolean;
  fill?: string;
}

/** Wrapped text from x to the right edge, first baseline at y; returns the elements and the last baseline */
function block(
  x: number,
  y: number,
  text: string,
  style: TextStyle,
  lineHeight = Math.round(style.size * 1.3),
): { svg: string[]; lastY: number } {
  const lines = wrapText(text, CANVAS_WIDTH - MARGIN - x, style.size, style.bold);
  const attrs = `font-size="${style.size}"${style.bold ? ' font-weight="bold"' : ''}${style.fill ? ` fill="${style.fill}"` : ''}`;
  const svg = lines.map((l, i) => `<text x="${x}" y="${y + i * lineHeight}" ${attrs}>${esc(l)}</text>`);
  return { svg, lastY: y + (lines.length - 1) * lineHeight };
}

interface Bar {
  target: string;
  mean: number;
  min: number;
  max: number;
  reps: number;
  /** "" when the reps agree */
  noisy: string;
}

function figuresOf(name: string, r: Row): number[] {
  if (name === 'idle-rss' || name === 'churn-rss') return finite(r.value).map((v) => v / 1048576);
  if (name === 'latency-1000rps') return finite(r.p99);
  return finite(r.perProxyCpuSecond);
}

function unitLabel(name: string): string {
  if (name === 'idle-rss') return 'RSS MiB with idle mTLS connections (lower is better)';
  if (name === 'churn-rss') return 'RSS MiB after the handshake churn, settled (lower is better)';
  if (name === 'latency-1000rps') return 'p99 latency ms at 1,000 req/s (lower is better)';
  return name === 'post-1m' ? 'MiB per proxy-CPU-second' : 'requests per proxy-CPU-second';
}

function barsOf(name: string, unit: 'req' | 'MiB' | 'bytes', rows: Row[]): Bar[] {
  const bars: Bar[] = [];
  for (const r of rows) {
    const v = figuresOf(name, r);
    if (v.length === 0) continue;
    const noise = noiseOf(r, unit);
    const noisy = noise.length > 0 ? `noisy: ${shortNoise(noise)}` : '';
    bars.push({ target: r.target, mean: avg(v), min: Math.min(...v), max: Math.max(...v), reps: v.length, noisy });
  }
  return bars;
}

const fmt = (v: number): string =>
  v >= 100 ? Math.round(v).toLocaleString('en') : v >= 10 ? v.toFixed(1) : v.toFixed(2);

const LABEL_SIZE = 11;

interface LabelPart {
  text: string;
  fill?: string;
  bold?: boolean;
}

/** the text after the bar: the mean, then the range in grey, then the noisy tag, one space apart */
function labelParts(b: Bar): LabelPart[] {
  const parts: LabelPart[] = [{ text: fmt(b.mean) }];
  if (b.reps > 1) parts.push({ text: `(${fmt(b.min)}–${fmt(b.max)})`, fill: '#666' });
  if (b.noisy !== '') parts.push({ text: b.noisy, fill: '#c62828', bold: true });
  return parts;
}

const partsWidth = (parts: LabelPart[]): number =>
  parts.reduce((w, p) => w + textWidth(p.text, LABEL_SIZE, p.bold), 0) +
  textWidth(' ', LABEL_SIZE) * (parts.length - 1);

/** the separating spaces stay outside the tspans: renderers drop a tspan's leading space */
function labelContent(parts: LabelPart[]): string {
  const tspan = (p: LabelPart): string =>
    `<tspan${p.fill ? ` fill="${p.fill}"` : ''}${p.bold ? ' font-weight="bold"' : ''}>${esc(p.text)}</tspan>`;
  return parts.map((p) => (p.fill || p.bold ? tspan(p) : esc(p.text))).join(' ');
}

/** The widest plot where every bar's label, written after the bar's end (its mean), stays on the canvas */
export function plotWidth(bars: ReadonlyArray<{ mean: number; labelWidth: number }>, max: number): number {
  const room = CANVAS_WIDTH - MARGIN - LABEL_W;
  let w = room;
  for (const b of bars) {
    const f = b.mean / max;
    if (f > 0) w = Math.min(w, (room - MEAN_LABEL_GAP - b.labelWidth) / f);
  }
  return Math.max(MIN_PLOT_W, Math.floor(w));
}

function panel(name: string, bars: Bar[], y0: number): { svg: string[]; y: number } {
  const svg: string[] = [];
  let y = y0;
  svg.push(`<text x="${MARGIN}" y="${y}" font-size="13" font-weight="bold">${esc(name)}</text>`);
  const unit = block(LABEL_W, y, unitLabel(name), { size: 11, fill: '#555' });
  svg.push(...unit.svg);
  y = unit.lastY + 8;
  const max = Math.max(...bars.map((b) => b.max)) || 1;
  const labels = bars.map(labelParts);
  const plotW = plotWidth(
    bars.map((b, i) => ({ mean: b.mean, labelWidth: partsWidth(labels[i]!) })),
    max,
  );
  const xOf = (v: number): number => LABEL_W + (v / max) * plotW;
  bars.forEach((b, i) => {
    const colour = COLOURS[b.target] ?? '#607d8b';
    const xMean = Math.max(LABEL_W + 1, xOf(b.mean));
    const whiskerY = y + BAR_H + 4;
    svg.push(
      `<text x="${LABEL_W - 6}" y="${y + BAR_H - 3}" font-size="11" text-anchor="end">${esc(b.target)}</text>`,
      `<rect class="mean-bar" x="${LABEL_W}" y="${y}" width="${(xMean - LABEL_W).toFixed(1)}" height="${BAR_H}" fill="${colour}"/>`,
      `<line class="mean-marker" x1="${xMean.toFixed(1)}" x2="${xMean.toFixed(1)}" y1="${y - 1}" y2="${whiskerY + 2}" stroke="#000" stroke-width="2"/>`,
    );
    if (b.reps > 1) {
      const [x1, x2] = [xOf(b.min).toFixed(1), xOf(b.max).toFixed(1)];
      const d = `M${x1} ${whiskerY - 2}V${whiskerY + 2}M${x1} ${whiskerY}H${x2}M${x2} ${whiskerY - 2}V${whiskerY + 2}`;
      svg.push(`<path class="range" d="${d}" stroke="#555" stroke-width="1" fill="none"/>`);
    }
    const labelX = (xMean + MEAN_LABEL_GAP).toFixed(1);
    svg.push(
      `<text class="mean-label" x="${labelX}" y="${y + BAR_H - 3}" font-size="${LABEL_SIZE}">${labelContent(labels[i]!)}</text>`,
    );
    y += ROW_PITCH;
  });
  return { svg, y: y + 6 };
}

export function renderSvg(res: Results): string {
  const parts: string[] = [];
  const when = `${res.startedAt.slice(0, 16).replace('T', ' ')} UTC`;
  const title = `tollgate macro benchmark (${res.mode}) — ${when}, ${res.machine.cores} cores, Node ${res.machine.node}, upstream ${res.tools.upstream}`;
  const head = block(MARGIN, 22, title, { size: 16, bold: true }, 20);
  parts.push(...head.svg);
  const reps = res.durations.reps;
  const legend = `Bar and figure at its end: mean of ${reps} rep(s) (tick: the mean); whisker under the bar and grey figures: min–max of the reps; noisy: ${NOISE_RULE}.`;
  const legendBlock = block(MARGIN, head.lastY + 18, legend, { size: 11, fill: '#555' });
  parts.push(...legendBlock.svg);
  let y = legendBlock.lastY + 12;
  for (const s of res.scenarios) {
    const bars = barsOf(s.name, s.unit, res.summary.scenarios[s.name] ?? []);
    if (bars.length === 0) continue;
    y += 14;
    const p = panel(s.name, bars, y);
    parts.push(...p.svg);
    y = p.y;
  }
  y += 6;
  parts.push(`<text x="${MARGIN}" y="${y}" font-size="13" font-weight="bold">targets of the issue</text>`);
  for (const c of res.summary.checks) {
    y += 16;
    const mark = c.pass === null ? 'n/a' : c.pass ? 'PASS' : 'FAIL';
    const colour = c.pass === null ? '#777' : c.pass ? '#2e7d32' : '#c62828';
    parts.push(`<text x="${MARGIN}" y="${y}" font-size="11" font-weight="bold" fill="${colour}">${mark}</text>`);
    const line = block(CHECK_TEXT_X, y, `${c.name}: ${c.detail} (required ${c.required})`, { size: 11 }, 14);
    parts.push(...line.svg);
    y = line.lastY;
    if (c.baseline.pass !== null) {
      const reference = `reference ${c.baseline.target}, same run: ${c.baseline.detail}, ${c.baseline.pass ? 'PASS' : 'FAIL'}`;
      const ref = block(CHECK_TEXT_X, y + 14, reference, { size: 10, fill: '#555' }, 13);
      parts.push(...ref.svg);
      y = ref.lastY;
    }
  }
  y += 16;
  const w = CANVAS_WIDTH;
  const open = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${y}" viewBox="0 0 ${w} ${y}" font-family="sans-serif">`;
  return `${open}\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}
