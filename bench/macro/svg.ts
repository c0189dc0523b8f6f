/**
 * A hand-written SVG bar chart, no dependency: one panel per scenario, one horizontal bar per
 * target showing requests (MiB for POST 1 MiB) per proxy-CPU-second, mean of the reps, with the
 * spread of the reps as a thin line and the value written at the end of the bar. idle-rss shows
 * MiB of RSS (shorter is better) and latency the added p99 over direct.
 */
import type { Results, Row } from './report.ts';

const COLOURS: Record<string, string> = {
  direct: '#9e9e9e',
  'baseline-l4': '#90caf9',
  'baseline-l7': '#42a5f5',
  'raw-l7': '#b39ddb',
  'raw-l7-checks': '#7e57c2',
  'tollgate-l4': '#a5d6a7',
  'tollgate-l7': '#66bb6a',
  'tollgate-l7-checks': '#2e7d32',
  'tollgate-e2e': '#1b5e20',
  'tollgate-l7-checks-w2': '#00897b',
  'haproxy-l4': '#ffcc80',
  'haproxy-l7': '#fb8c00',
};

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const finite = (xs: Array<number | null>): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));
const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

interface Bar {
  target: string;
  mean: number;
  min: number;
  max: number;
}

function barsOf(name: string, rows: Row[]): { bars: Bar[]; label: string } {
  const pick = (r: Row): number[] => {
    if (name === 'idle-rss') return finite(r.value).map((v) => v / 1048576);
    if (name === 'latency-1000rps') return finite(r.p99);
    return finite(r.perProxyCpuSecond);
  };
  const bars: Bar[] = [];
  for (const r of rows) {
    const v = pick(r);
    if (v.length === 0) continue;
    bars.push({ target: r.target, mean: avg(v), min: Math.min(...v), max: Math.max(...v) });
  }
  const label =
    name === 'idle-rss' ? 'RSS MiB with idle mTLS connections (lower is better)' : name === 'latency-1000rps' ? 'p99 latency ms at 1,000 req/s (lower is better)' : name === 'post-1m' ? 'MiB per proxy-CPU-second' : 'requests per proxy-CPU-second';
  return { bars, label };
}

const fmt = (v: number): string => (v >= 100 ? Math.round(v).toLocaleString('en') : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function renderSvg(res: Results): string {
  const width = 900;
  const labelW = 170;
  const barH = 16;
  const gap = 4;
  const plotW = width - labelW - 110;
  const parts: string[] = [];
  let y = 40;
  parts.push(`<text x="10" y="22" font-size="16" font-weight="bold">tollgate macro benchmark (${esc(res.mode)}) — ${esc(res.startedAt.slice(0, 16).replace('T', ' '))} UTC, ${res.machine.cores} cores, Node ${esc(res.machine.node)}, upstream ${esc(res.tools.upstream)}</text>`);
  for (const s of res.scenarios) {
    const { bars, label } = barsOf(s.name, res.summary.scenarios[s.name] ?? []);
    if (bars.length === 0) continue;
    y += 14;
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(s.name)}</text><text x="${labelW}" y="${y}" font-size="11" fill="#555">${esc(label)}; thin line: min–max of ${res.durations.reps} rep(s)</text>`);
    y += 8;
    const max = Math.max(...bars.map((b) => b.max)) || 1;
    for (const b of bars) {
      const w = Math.max(1, (b.mean / max) * plotW);
      const colour = COLOURS[b.target] ?? '#607d8b';
      parts.push(
        `<text x="${labelW - 6}" y="${y + barH - 4}" font-size="11" text-anchor="end">${esc(b.target)}</text>`,
        `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colour}"/>`,
        `<line x1="${(labelW + (b.min / max) * plotW).toFixed(1)}" x2="${(labelW + (b.max / max) * plotW).toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#000" stroke-width="1.5"/>`,
        `<text x="${(labelW + (b.max / max) * plotW + 6).toFixed(1)}" y="${y + barH - 4}" font-size="11">${fmt(b.mean)}</text>`,
      );
      y += barH + gap;
    }
    y += 10;
  }
  const checks = res.summary.checks;
  y += 6;
  parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">targets of the issue</text>`);
  for (const c of checks) {
    y += 16;
    const mark = c.pass === null ? 'n/a' : c.pass ? 'PASS' : 'FAIL';
    const colour = c.pass === null ? '#777' : c.pass ? '#2e7d32' : '#c62828';
    parts.push(`<text x="10" y="${y}" font-size="11"><tspan fill="${colour}" font-weight="bold">${mark}</tspan> ${esc(c.name)}: ${esc(c.detail)} (required ${esc(c.required)})</text>`);
    if (c.baseline.pass !== null) {
      y += 14;
      parts.push(`<text x="46" y="${y}" font-size="10" fill="#555">reference ${esc(c.baseline.target)}, same run: ${esc(c.baseline.detail)}, ${c.baseline.pass ? 'PASS' : 'FAIL'}</text>`);
    }
  }
  y += 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}
