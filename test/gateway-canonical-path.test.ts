import t from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { canonicalPath, isCanonicalPrefix } from '../src/core/canonicalPath.ts';

function refusal(target: string): string | null {
  const r = canonicalPath(target);
  return r.ok ? null : r.detail;
}

function canonical(target: string): string | null {
  const r = canonicalPath(target);
  return r.ok ? r.path : null;
}

// ---------------------------------------------------------------------------------------------
// tables

const REFUSED: ReadonlyArray<readonly [why: string, targets: readonly string[], detail: RegExp]> = [
  [
    'a target that is not origin-form',
    ['', '*', 'http://a.example/x', 'a.example:443', 'v1/events', '?q'],
    /origin-form/,
  ],
  ['a fragment', ['/a#b', '/a#', '/#', '/a?q#f', '/a?q=1&r=#'], /fragment/],
  [
    'a malformed percent-encoding',
    ['/%', '/a%', '/%2', '/a%2/b', '/%zz', '/%g0', '/%0g', '/a%%41', '/%-1'],
    /malformed/,
  ],
  ['an encoded slash', ['/a%2Fb', '/a%2fb', '/%2F', '/a/%2f/'], /encoded slash/],
  ['an encoded backslash', ['/a%5Cb', '/a%5cb', '/%5C..'], /encoded backslash/],
  ['an encoded NUL', ['/a%00', '/%00/a'], /encoded NUL/],
  ['a raw backslash', ['/a\\b', '/\\', '/a/..\\b'], /backslash/],
  [
    'a raw NUL or control character',
    ['/a\u0000', '/a\tb', '/a\rb', '/a\nb', '/a\u001fb', '/a\u007fb', '/a?q=\u0001'],
    /control/,
  ],
  ['a space', ['/a b', '/a?q= '], /space/],
  ['a byte outside ASCII', ['/caf\u00e9', '/a\u0080', '/a\u00ff', '/a\u4e00', '/a?\u00e9'], /outside ASCII/],
  ['a dot segment', ['/.', '/..', '/./a', '/../a', '/a/.', '/a/..', '/a/../b', '/a/./', '/a/../'], /dot segment/],
  [
    'a dot segment formed by decoding',
    ['/%2e', '/%2E', '/%2e%2e', '/%2E%2e', '/.%2e', '/%2e.', '/a/%2e%2e/b', '/a/.%2E/', '/a/%2e'],
    /dot segment/,
  ],
  ['an empty segment', ['//', '//a', '/a//b', '/a//', '/a/b//', '///'], /empty segment/],
  [
    'an empty or dot segment hidden behind parameters',
    ['/..;x/a', '/a/.;/b', '/;x', '/a/;/b', '/a/..%3Bx', '/%2e%2e;', '/a/%3B'],
    /parameters/,
  ],
];

t.test('every class of ambiguous or malformed target is refused with a detail naming it', async (t) => {
  for (const [why, targets, detail] of REFUSED)
    for (const target of targets) t.match(refusal(target), detail, `${why}: ${JSON.stringify(target)}`);
});

t.test('a refusal detail never repeats the request target', async (t) => {
  for (const [, targets] of REFUSED)
    for (const target of targets.filter((x) => x.length > 3))
      t.notMatch(refusal(target), target, JSON.stringify(target));
});

const CANONICAL: ReadonlyArray<readonly [target: string, path: string]> = [
  ['/', '/'],
  ['/?', '/'],
  ['/?a=b', '/'],
  ['/v1/events', '/v1/events'],
  ['/v1/events/', '/v1/events/'],
  ['/v1/events?x=%2F..//', '/v1/events'],
  ['/v1/%65vents/x', '/v1/events/x'],
  ['/%41%5a%61%7a%30%39%2d%2e%5f%7e', '/AZaz09-._~'],
  ['/%7E%7e', '/~~'],
  ['/a%3ab', '/a%3Ab'],
  ['/a%3Ab', '/a%3Ab'],
  ['/%c3%a9t%C3%A9', '/%C3%A9t%C3%A9'],
  ['/a%20b', '/a%20b'],
  ['/a%25b', '/a%25b'],
  ['/a%252fb', '/a%252fb'],
  ['/a%0a', '/a%0A'],
  ['/a%7f', '/a%7F'],
  ['/V1/Events', '/V1/Events'],
  ['/...', '/...'],
  ['/a.', '/a.'],
  ['/.a/..b/', '/.a/..b/'],
  ['/a%2e%2e%2e', '/a...'],
  ['/a;b', '/a;b'],
  ['/a/b;..', '/a/b;..'],
  ["/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="],
];

t.test('unreserved escapes are decoded, other escapes uppercased, and nothing else changes', async (t) => {
  for (const [target, path] of CANONICAL) t.equal(canonical(target), path, JSON.stringify(target));
});

t.test('a path that needs no change comes back as the same string', async (t) => {
  const target = '/v1/events/batch';
  const r = canonicalPath(target);
  t.ok(r.ok && r.path === target);
});

t.test(
  'a route prefix must be canonical, whole, without a trailing slash, and spelled in unreserved characters',
  async (t) => {
    for (const p of ['/', '/v1', '/v1/events', '/a-b_c.d~e', '/v1/events.json', '/...'])
      t.equal(isCanonicalPrefix(p), true, p);
    for (const p of [
      '',
      'v1',
      '//',
      '/v1/',
      '/v1//events',
      '/v1/./events',
      '/v1/..',
      '/v1?x',
      '/v1#x',
      '/v1/%65vents',
      '/v1/%3A',
      '/v1/a:b',
      '/v1;x',
      '/v1/a b',
      '/v1\\events',
      '/caf\u00e9',
      '*',
    ])
      t.equal(isCanonicalPrefix(p), false, JSON.stringify(p));
  },
);

// ---------------------------------------------------------------------------------------------
// properties

/**
 * Pieces a target is made of: the characters that matter to the rules, and escapes of the ones that matter most.
 * A lone "%" next to hex digit pieces makes escapes, well-formed or not. The pieces that always refuse are rarer, so
 * that about half the targets are accepted and the canonical form is exercised as much as the refusals.
 */
const COMMON_PIECES = '/ / / / . . % ; ? ~ : 0 2 3 5 7 a A b C e E f F %2e %2E %3b %3A %41 %7e %25 %c3%a9'.split(' ');
const RARE_PIECES = ['#', '\\', ' ', '\u0000', '\u00e9', 'g', 'z', '%2f', '%2F', '%5c', '%00'];

const piece = fc.oneof(
  { arbitrary: fc.constantFrom(...COMMON_PIECES), weight: 30 },
  { arbitrary: fc.constantFrom(...RARE_PIECES), weight: 1 },
);
const target = fc
  .tuple(fc.nat(9), fc.array(piece, { maxLength: 16 }))
  // mostly origin-form, so that the rules past the first character are exercised
  .map(([dice, pieces]) => (dice > 0 ? '/' : '') + pieces.join(''));

const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** Every escape decoded, one byte a character: the meaning of a path, whatever the spelling. */
function fullyDecoded(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * The rules written the slow, obvious way: reject whole-target characters, cut the query, split into segments, and
 * decode each segment's escapes one at a time. null when refused.
 */
function referenceCanonical(target: string): string | null {
  if (!target.startsWith('/') || target.includes('#')) return null;
  for (const ch of target) if (ch <= ' ' || ch >= '\u007f') return null;
  const query = target.indexOf('?');
  const path = query === -1 ? target : target.slice(0, query);
  if (path.includes('\\')) return null;
  const segments = path.slice(1).split('/');
  const out: string[] = [];
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s]!;
    const last = s === segments.length - 1;
    if (segment === '' && !last) return null;
    let decoded = '';
    let spelled = '';
    for (let i = 0; i < segment.length;) {
      if (segment[i] !== '%') {
        decoded += segment[i];
        spelled += segment[i];
        i++;
        continue;
      }
      const hex = segment.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return null;
      const ch = String.fromCharCode(parseInt(hex, 16));
      if (ch === '/' || ch === '\\' || ch === '\u0000') return null;
      decoded += ch;
      spelled += UNRESERVED.test(ch) ? ch : '%' + hex.toUpperCase();
      i += 3;
    }
    if (decoded === '.' || decoded === '..') return null;
    const beforeParameters = decoded.split(';')[0];
    if (decoded.includes(';') && (beforeParameters === '' || beforeParameters === '.' || beforeParameters === '..'))
      return null;
    out.push(spelled);
  }
  return '/' + out.join('/');
}

t.test(
  'a canonical path never throws, is a fixed point, and has no //, dot segment, or risky or lowercase escape',
  async () => {
    fc.assert(
      fc.property(target, (target) => {
        const r = canonicalPath(target);
        if (!r.ok) return;
        const path = r.path;
        assert.deepEqual(canonicalPath(path), { ok: true, path }, 'canonical twice is canonical once');
        assert.ok(path.startsWith('/'));
        assert.ok(!path.includes('//'), 'no empty segment');
        assert.ok(!path.includes('?') && !path.includes('#'));
        const segments = path.split('/');
        assert.ok(!segments.includes('.') && !segments.includes('..'), 'no dot segment');
        assert.ok(!/%(2F|5C|00)/i.test(path), 'no encoded /, \\ or NUL');
        for (const [escape] of path.matchAll(/%.{0,2}/g)) {
          assert.match(escape, /^%[0-9A-F]{2}$/, 'only well-formed escapes, in uppercase');
          assert.ok(!UNRESERVED.test(fullyDecoded(escape)), 'no escaped unreserved character');
        }
        const query = target.indexOf('?');
        assert.equal(fullyDecoded(path), fullyDecoded(query === -1 ? target : target.slice(0, query)), 'same meaning');
      }),
      { numRuns: 20_000 },
    );
  },
);

t.test('the verdict and the canonical path agree with a naive reference implementation', async () => {
  fc.assert(
    fc.property(target, (target) => {
      assert.equal(canonical(target), referenceCanonical(target), JSON.stringify(target));
    }),
    { numRuns: 20_000 },
  );
});

t.test('arbitrary strings, not only path-like ones, never throw and agree with the reference', async () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      for (const target of [s, '/' + s])
        assert.equal(canonical(target), referenceCanonical(target), JSON.stringify(target));
    }),
    { numRuns: 5_000 },
  );
});

t.test('isCanonicalPrefix accepts exactly the canonical unreserved paths without a trailing slash', async () => {
  fc.assert(
    fc.property(target, (p) => {
      const expected =
        (p === '/' || (!p.endsWith('/') && /^(\/[A-Za-z0-9\-._~]+)+$/.test(p))) && referenceCanonical(p) === p;
      assert.equal(isCanonicalPrefix(p), expected, JSON.stringify(p));
    }),
    { numRuns: 5_000 },
  );
});
