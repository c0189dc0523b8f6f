import t from 'tap';
import fc from 'fast-check';
import { connectionTokens, fieldValue, isHopByHop, isName, NameSet } from '../src/http1/fields.ts';
import { HOP_BY_HOP_NAMES } from './helpers/hopByHop.ts';

// The field-name comparisons of the HTTP/1.1 core compare by length, then character by character
// with `c | 0x20`, without lowercasing. Their oracle here is the plain way: lowercase, then compare
// or look up in a Set. Field names are ASCII tokens, so the oracle folds ASCII letters only
// (String.prototype.toLowerCase would also fold, say, the Kelvin sign U+212A to "k").
const lower = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** RFC 9110 tchar: what llhttp lets into a field name */
const TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** a name made of tchar, often one of `known` with the case of some letters flipped or one character changed; or any string */
function names(known: readonly string[]): fc.Arbitrary<string> {
  const tchar = fc.constantFrom(...TCHAR);
  const any = fc.array(tchar, { minLength: 1, maxLength: 20 }).map((cs) => cs.join(''));
  const near = fc
    .tuple(fc.constantFrom(...known), fc.array(fc.boolean(), { maxLength: 20 }), fc.nat(), tchar, fc.boolean())
    .map(([name, flips, at, c, change]) => {
      const cased = [...name].map((ch, i) => (flips[i] === true ? ch.toUpperCase() : ch)).join('');
      if (!change) return cased;
      const i = at % cased.length;
      return cased.slice(0, i) + c + cased.slice(i + 1);
    });
  // and any string at all: the comparison is exact without relying on the parser's checks
  return fc.oneof(any, near, fc.string({ minLength: 1, maxLength: 20, unit: 'binary' }));
}

t.test('isHopByHop agrees with lowercasing and a set lookup, for any name', async (t) => {
  const set = new Set(HOP_BY_HOP_NAMES);
  fc.assert(
    fc.property(names(HOP_BY_HOP_NAMES), (name) => isHopByHop(name) === set.has(lower(name))),
    { numRuns: 20_000 },
  );
  for (const name of HOP_BY_HOP_NAMES) {
    t.ok(isHopByHop(name), name);
    t.ok(isHopByHop(name.toUpperCase()), name.toUpperCase());
  }
  // characters that `c | 0x20` maps onto "-" or a digit (no tchar) are not taken for them either
  t.notOk(isHopByHop('keep\ralive'), 'CR is not "-"');
  t.notOk(isHopByHop('Connection '), 'one character longer');
  t.notOk(isHopByHop('connectio'), 'one shorter');
  t.notOk(isHopByHop('conne^tion'), '^ | 0x20 is ~, not a letter');
  t.notOk(isHopByHop('\u0174e'), 'a character beyond Latin-1 whose | 0x20 is no ASCII letter either');
  t.notOk(isHopByHop('http\u0012-settings'), '0x12 | 0x20 is "2"');
});

t.test('isName and NameSet agree with lowercasing, for any name', async (t) => {
  const known = ['content-length', 'x-tollgate-peer', 'signature-input', 'host', 'http2-settings'];
  const set = new NameSet(known);
  fc.assert(
    fc.property(names(known), fc.constantFrom(...known), (name, wanted) => {
      return isName(name, wanted) === (lower(name) === wanted) && set.has(name) === known.includes(lower(name));
    }),
    { numRuns: 20_000 },
  );
  t.ok(isName('Content-Length', 'content-length'));
  t.notOk(isName('Content-Lengths', 'content-length'));
  t.equal(fieldValue(['Server', 'x', 'UPGRADE', 'websocket'], 'upgrade'), 'websocket');
  t.equal(fieldValue(['Server', 'x'], 'upgrade'), '');
});

t.test('connectionTokens: the fields a Connection value names, hop-by-hop names and close left out', async (t) => {
  t.equal(connectionTokens(['CONNECTION', 'Keep-Alive']), null, 'keep-alive alone');
  t.equal(connectionTokens(['Connection', 'close']), null, 'close alone');
  t.same(connectionTokens(['Connection', 'close, X-Foo, TE', 'connection', 'x-bar']), new Set(['x-foo', 'x-bar']));
  t.equal(connectionTokens(['Connections', 'x-foo']), null, 'a field of another name');
});
