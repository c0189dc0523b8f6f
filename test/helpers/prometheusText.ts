/**
 * A strict parser of the Prometheus text exposition format 0.0.4, written from the format's
 * specification (not from prom-client, whose output it judges), plus the checks a scrape
 * should pass beyond syntax:
 *
 *   const families = parsePrometheusText(text);          // throws PrometheusTextError (with the line) on any syntax error
 *   const problems = expositionProblems(families);       // [] when every family is well formed
 *   const v = sampleValue(families, 'tollgate_tls_handshakes_total', { reason: 'timeout' });
 *
 * Syntax (rejected when broken): lines end in '\n', including the last; `# HELP name text`
 * (escapes `\\` and `\n` only), `# TYPE name counter|gauge|histogram|summary|untyped`, at most
 * one of each per name and TYPE before the family's first sample; other `#` lines are
 * comments; a sample is `name{label="value",...} value [timestamp]` with metric and label
 * names from their character sets, no `__` label names, label values escaped (`\\`, `\"`,
 * `\n` only), a Go float value (NaN, +Inf, -Inf too) and an integer millisecond timestamp;
 * a family's lines form one group.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** the sample's own name (for a histogram: `x_bucket`, `x_sum`, `x_count`) */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestamp: number | null;
  /** 1-based line number in the text */
  readonly line: number;
}

export interface MetricFamily {
  readonly name: string;
  help: string | null;
  type: MetricType | null;
  readonly samples: Sample[];
}

export class PrometheusTextError extends Error {
  readonly line: number;
  constructor(line: number, message: string, text: string) {
    super(`line ${line}: ${message}: ${JSON.stringify(text.length > 120 ? text.slice(0, 120) + '…' : text)}`);
    this.name = 'PrometheusTextError';
    this.line = line;
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
/**
 * What Go's strconv.ParseFloat accepts, as the format says values are: decimal (with an
 * exponent or not), hexadecimal with a binary exponent, `Inf`/`Infinity` with an optional sign
 * and `NaN`, the last two in any case (prom-client writes NaN as `Nan`, which Go reads).
 */
const FLOAT =
  /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+|[+-]?(?:inf|infinity)|nan)$/i;

/** The number a FLOAT text stands for. */
function parseFloatText(text: string): number {
  const lower = text.toLowerCase();
  if (lower === 'nan') return NaN;
  if (lower.endsWith('inf') || lower.endsWith('infinity')) return lower.startsWith('-') ? -Infinity : Infinity;
  const hex = /^([+-]?)0x([0-9a-f]*)\.?([0-9a-f]*)p([+-]?\d+)$/.exec(lower);
  if (hex !== null) {
    const [, sign, int, frac, exp] = hex as unknown as [string, string, string, string, string];
    const mantissa = parseInt(int + frac || '0', 16) / 16 ** frac.length;
    return (sign === '-' ? -1 : 1) * mantissa * 2 ** Number(exp);
  }
  return Number(text);
}
const TIMESTAMP = /^-?\d+$/;

/** The suffixes a histogram or summary family's samples may carry after the family name. */
const SUFFIXES: Readonly<Record<MetricType, readonly string[]>> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export function parsePrometheusText(text: string): MetricFamily[] {
  if (text.length > 0 && !text.endsWith('\n'))
    throw new PrometheusTextError(
      text.split('\n').length,
      'the last line does not end in a newline',
      text.slice(text.lastIndexOf('\n') + 1),
    );
  const lines = text.split('\n');
  lines.pop();
  const families = new Map<string, MetricFamily>();
  /** names of families whose group has ended (a later line for them is an error) */
  const closed = new Set<string>();
  let current: MetricFamily | null = null;

  const enter = (name: string, lineNo: number, raw: string): MetricFamily => {
    if (current !== null && current.name === name) return current;
    if (closed.has(name)) throw new PrometheusTextError(lineNo, `the lines of ${name} are not one group`, raw);
    if (current !== null) closed.add(current.name);
    const f: MetricFamily = { name, help: null, type: null, samples: [] };
    families.set(name, f);
    current = f;
    return f;
  };

  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const lineNo = i + 1;
    if (raw.includes('\r')) throw new PrometheusTextError(lineNo, 'carriage return in a line', raw);
    if (raw.trim() === '') continue;
    if (raw.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(raw);
      if (m === null) continue; // a comment
      const [, keyword, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string | undefined];
      if (!METRIC_NAME.test(name)) throw new PrometheusTextError(lineNo, `invalid metric name ${name}`, raw);
      const f = enter(name, lineNo, raw);
      if (keyword === 'HELP') {
        if (f.help !== null) throw new PrometheusTextError(lineNo, `second HELP for ${name}`, raw);
        f.help = unescapeHelp(rest ?? '', lineNo, raw);
      } else {
        if (f.type !== null) throw new PrometheusTextError(lineNo, `second TYPE for ${name}`, raw);
        if (f.samples.length > 0) throw new PrometheusTextError(lineNo, `TYPE for ${name} after its samples`, raw);
        const type = (rest ?? '').trim();
        if (!(TYPES as readonly string[]).includes(type))
          throw new PrometheusTextError(lineNo, `unknown type ${JSON.stringify(type)}`, raw);
        f.type = type as MetricType;
      }
      continue;
    }
    const sample = parseSample(raw, lineNo);
    const f = enter(familyOf(sample.name, current), lineNo, raw);
    f.samples.push(sample);
  }
  return [...families.values()];
}

/** Which family a sample belongs to: the current one when the name is its name plus a suffix its type allows. */
function familyOf(name: string, current: MetricFamily | null): string {
  if (current !== null) {
    for (const suffix of SUFFIXES[current.type ?? 'untyped']) if (name === current.name + suffix) return current.name;
  }
  return name;
}

function unescapeHelp(s: string, lineNo: number, raw: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === '\\') out += '\\';
    else if (n === 'n') out += '\n';
    else throw new PrometheusTextError(lineNo, `invalid escape \\${n ?? ''} in HELP`, raw);
  }
  return out;
}

function parseSample(raw: string, lineNo: number): Sample {
  let i = 0;
  const fail = (message: string): never => {
    throw new PrometheusTextError(lineNo, message, raw);
  };
  const skipBlanks = (): void => {
    while (raw[i] === ' ' || raw[i] === '\t') i++;
  };
  skipBlanks();
  const nameMatch = /^[^\s{]+/.exec(raw.slice(i));
  if (nameMatch === null) fail('no metric name');
  const name = nameMatch![0];
  if (!METRIC_NAME.test(name)) fail(`invalid metric name ${name}`);
  i += name.length;
  const labels: Record<string, string> = {};
  const afterName = i;
  skipBlanks();
  if (raw[i] !== '{') i = afterName;
  else {
    i++;
    for (;;) {
      skipBlanks();
      if (raw[i] === '}') {
        i++;
        break;
      }
      const ln = /^[^\s=,}"]+/.exec(raw.slice(i));
      if (ln === null) fail('expected a label name');
      const labelName = ln![0];
      if (!LABEL_NAME.test(labelName)) fail(`invalid label name ${labelName}`);
      if (labelName.startsWith('__')) fail(`reserved label name ${labelName}`);
      if (Object.hasOwn(labels, labelName)) fail(`duplicate label ${labelName}`);
      i += labelName.length;
      skipBlanks();
      if (raw[i] !== '=') fail(`expected = after label ${labelName}`);
      i++;
      skipBlanks();
      if (raw[i] !== '"') fail(`expected a quoted value for label ${labelName}`);
      i++;
      let value = '';
      for (;;) {
        const c = raw[i];
        if (c === undefined) fail(`unterminated value for label ${labelName}`);
        i++;
        if (c === '"') break;
        if (c === '\\') {
          const n = raw[i++];
          if (n === '\\') value += '\\';
          else if (n === '"') value += '"';
          else if (n === 'n') value += '\n';
          else fail(`invalid escape \\${n ?? ''} in the value of label ${labelName}`);
        } else value += c;
      }
      labels[labelName] = value;
      skipBlanks();
      if (raw[i] === ',') {
        i++;
        continue;
      }
      if (raw[i] !== '}') fail(`expected , or } after the value of label ${labelName}`);
    }
  }
  if (raw[i] !== ' ' && raw[i] !== '\t') fail('expected a blank before the value');
  const rest = raw
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  if (rest.length === 0 || rest[0] === '') fail('no value');
  if (rest.length > 2) fail('text after the timestamp');
  const valueText = rest[0]!;
  if (!FLOAT.test(valueText)) fail(`invalid value ${valueText}`);
  const value = parseFloatText(valueText);
  let timestamp: number | null = null;
  if (rest.length === 2) {
    if (!TIMESTAMP.test(rest[1]!)) fail(`invalid timestamp ${rest[1]}`);
    timestamp = Number(rest[1]);
  }
  return { name, labels, value, timestamp, line: lineNo };
}

/**
 * What a well-formed scrape also needs, as a list of problems (empty when all hold): every
 * family has HELP and TYPE; sample names match their family's type; no series appears twice;
 * counters are not negative; a histogram has, per label set, buckets with `le` whose bounds
 * rise and counts never fall, a `+Inf` bucket equal to `_count`, and a `_sum`; a summary's
 * quantiles are in [0, 1] with `_sum` and `_count`.
 */
export function expositionProblems(families: readonly MetricFamily[]): string[] {
  const problems: string[] = [];
  for (const f of families) {
    if (f.help === null) problems.push(`${f.name}: no HELP`);
    if (f.type === null) problems.push(`${f.name}: no TYPE`);
    if (f.samples.length === 0) continue;
    const seen = new Set<string>();
    for (const s of f.samples) {
      const key = seriesKey(s.name, s.labels);
      if (seen.has(key)) problems.push(`line ${s.line}: duplicate series ${key}`);
      seen.add(key);
      if (f.type === 'counter' && !(s.value >= 0)) problems.push(`line ${s.line}: counter ${key} is ${s.value}`);
    }
    if (f.type === 'histogram') problems.push(...histogramProblems(f));
    if (f.type === 'summary') problems.push(...summaryProblems(f));
  }
  return problems;
}

function histogramProblems(f: MetricFamily): string[] {
  const problems: string[] = [];
  const groups = new Map<
    string,
    { buckets: Array<{ le: number; count: number; line: number }>; sum: number | null; count: number | null }
  >();
  const group = (
    labels: Readonly<Record<string, string>>,
  ): { buckets: Array<{ le: number; count: number; line: number }>; sum: number | null; count: number | null } => {
    const key = seriesKey('', labels, 'le');
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = { buckets: [], sum: null, count: null }));
    return g;
  };
  for (const s of f.samples) {
    if (s.name === `${f.name}_bucket`) {
      const le = s.labels.le;
      if (le === undefined) {
        problems.push(`line ${s.line}: ${f.name}_bucket without le`);
        continue;
      }
      const bound = FLOAT.test(le) ? parseFloatText(le) : NaN;
      if (Number.isNaN(bound)) {
        problems.push(`line ${s.line}: ${f.name}_bucket le="${le}" is not a number`);
        continue;
      }
      group(s.labels).buckets.push({ le: bound, count: s.value, line: s.line });
    } else if (s.name === `${f.name}_sum`) group(s.labels).sum = s.value;
    else if (s.name === `${f.name}_count`) group(s.labels).count = s.value;
    else problems.push(`line ${s.line}: ${s.name} in histogram ${f.name}`);
  }
  for (const [key, g] of groups) {
    const where = `${f.name}${key}`;
    if (g.count === null) problems.push(`${where}: no _count`);
    if (g.sum === null) problems.push(`${where}: no _sum`);
    if (g.buckets.length === 0) {
      problems.push(`${where}: no buckets`);
      continue;
    }
    for (let i = 1; i < g.buckets.length; i++) {
      const a = g.buckets[i - 1]!;
      const b = g.buckets[i]!;
      if (!(b.le > a.le)) problems.push(`line ${b.line}: ${where} bucket bounds not rising (${a.le} then ${b.le})`);
      if (!(b.count >= a.count))
        problems.push(`line ${b.line}: ${where} bucket counts fall (${a.count} then ${b.count})`);
    }
    const last = g.buckets.at(-1)!;
    if (last.le !== Infinity) problems.push(`${where}: no le="+Inf" bucket (last)`);
    else if (g.count !== null && last.count !== g.count)
      problems.push(`${where}: +Inf bucket ${last.count} != _count ${g.count}`);
  }
  return problems;
}

function summaryProblems(f: MetricFamily): string[] {
  const problems: string[] = [];
  const sums = new Set<string>();
  const counts = new Set<string>();
  const keys = new Set<string>();
  for (const s of f.samples) {
    const key = seriesKey('', s.labels, 'quantile');
    keys.add(key);
    if (s.name === `${f.name}_sum`) sums.add(key);
    else if (s.name === `${f.name}_count`) counts.add(key);
    else {
      const q = Number(s.labels.quantile);
      if (s.labels.quantile === undefined || !(q >= 0 && q <= 1))
        problems.push(`line ${s.line}: summary ${f.name} sample without a quantile in [0, 1]`);
    }
  }
  for (const key of keys) {
    if (!sums.has(key)) problems.push(`${f.name}${key}: no _sum`);
    if (!counts.has(key)) problems.push(`${f.name}${key}: no _count`);
  }
  return problems;
}

/** `name{a="1",b="2"}` with labels sorted (and one left out), for identity comparisons. */
function seriesKey(name: string, labels: Readonly<Record<string, string>>, without?: string): string {
  const parts = Object.keys(labels)
    .filter((k) => k !== without)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(',')}}`;
}

/**
 * The sum of the samples named `name` whose labels include `labels` (0 when none match, like
 * a counter not yet incremented); for a plain family `name` is the family name.
 */
export function sampleValue(
  families: readonly MetricFamily[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let sum = 0;
  for (const f of families) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
  }
  return sum;
}
