/**
 * A strict JSON reader for log lines: RFC 8259's grammar, and an object that repeats a member
 * name is an error (JSON.parse keeps the last one silently; strict consumers such as some log
 * pipelines refuse the line). Returns the value, or throws with the offset and the reason.
 */
export function parseStrictJson(text: string): unknown {
  const r = new Reader(text);
  r.space();
  const value = r.value();
  r.space();
  if (r.at < text.length) r.fail('text after the value');
  return value;
}

/** The problem with a line, or null when it is strict JSON. */
export function strictJsonProblem(text: string): string | null {
  try {
    parseStrictJson(text);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class Reader {
  at = 0;
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }

  fail(why: string): never {
    throw new Error(`${why} at offset ${this.at}`);
  }

  space(): void {
    while (this.at < this.text.length && ' \t\r\n'.includes(this.text[this.at]!)) this.at += 1;
  }

  value(): unknown {
    const c = this.text[this.at];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = this.at;
    const m = NUMBER.exec(this.text);
    if (m === null) this.fail('expected a value');
    this.at += m[0].length;
    return Number(m[0]);
  }

  object(): Record<string, unknown> {
    this.at += 1;
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    this.space();
    if (this.text[this.at] === '}') {
      this.at += 1;
      return out;
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail('expected a member name');
      const name = this.string();
      if (seen.has(name)) this.fail(`duplicate member name "${name}"`);
      seen.add(name);
      this.space();
      if (this.text[this.at] !== ':') this.fail('expected ":"');
      this.at += 1;
      this.space();
      Object.defineProperty(out, name, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.space();
      const c = this.text[this.at++];
      if (c === '}') return out;
      if (c !== ',') this.fail('expected "," or "}"');
    }
  }

  array(): unknown[] {
    this.at += 1;
    const out: unknown[] = [];
    this.space();
    if (this.text[this.at] === ']') {
      this.at += 1;
      return out;
    }
    for (;;) {
      this.space();
      out.push(this.value());
      this.space();
      const c = this.text[this.at++];
      if (c === ']') return out;
      if (c !== ',') this.fail('expected "," or "]"');
    }
  }

  string(): string {
    this.at += 1;
    let out = '';
    for (;;) {
      const c = this.text[this.at];
      if (c === undefined) this.fail('unterminated string');
      if (c === '"') {
        this.at += 1;
        return out;
      }
      if (c < ' ') this.fail('control character in a string');
      if (c !== '\\') {
        out += c;
        this.at += 1;
        continue;
      }
      const e = this.text[this.at + 1];
      if (e === 'u') {
        const hex = this.text.slice(this.at + 2, this.at + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        this.at += 6;
      } else if (e !== undefined && e in ESCAPES) {
        out += ESCAPES[e];
        this.at += 2;
      } else {
        this.fail('bad escape');
      }
    }
  }
}
