/**
 * Exact vectors for the signature base, the HMAC, the verifier's profile and Content-Digest
 * (RFC 9421 Appendix B, RFC 9530 §2 / Appendix B / Appendix D), at unit level: no network.
 *
 * Every expected value below is a literal. The RFC ones are copied from the RFCs (RFC 9421
 * Appendix B, RFC 9530); the "derived" ones (HMACs of RFC bases that the
 * RFC only signs with RSA-PSS, and the tollgate-profile vectors) were recomputed outside
 * tollgate, with Python's hmac/hashlib over hand-written base strings.
 *
 * Note on the profile vector: a first draft of it gave the member with tag="tollgate" but the MAC
 * Gm+S18nbKkrzpkDCXqamZva91Y4DaXag7iIxd+JtmD8= (481-byte base), which is that of the same member with
 * tag="sidecar"; with tag="tollgate" the base is 482 bytes and the MAC is Ot0YjuZL…. Both are
 * asserted below under their true member. tollgate's signer never writes `expires`, so the
 * signRequest vector is the same member without it (463 bytes, MAC lf3EixSv…).
 */
import t from 'tap';
import fc from 'fast-check';
import { createHmac, createSecretKey } from 'node:crypto';
import type { Clock } from '../src/core/clock.ts';
import { TollgateError, type ErrorCode } from '../src/core/errors.ts';
import { contentDigestOf, DigestCheck, parseContentDigest } from '../src/integrity/contentDigest.ts';
import { keyRingFromEntries } from '../src/integrity/keyRing.ts';
import { createReplayCache } from '../src/integrity/replayCache.ts';
import { HeaderIndex, signatureBase, type MessageView } from '../src/integrity/signatureBase.ts';
import { signRequest, SignatureTemplates } from '../src/integrity/signer.ts';
import {
  parseDictionary,
  serializeDictionary,
  serializeInnerList,
  sf,
  type InnerList,
} from '../src/integrity/structuredFields.ts';
import { verifyRequest, type SignatureProfile, type VerifierDeps } from '../src/integrity/verifier.ts';

// ---------------------------------------------------------------------------------------------
// fixtures: RFC 9421 Appendix B.1.5 shared secret and the B.2 test-request

const SECRET_B64 = 'uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==';
const SECRET = Buffer.from(SECRET_B64, 'base64');
const KEY_ID = 'test-shared-secret';
const CREATED = 1618884473;

const BODY = Buffer.from('{"hello": "world"}');
const BODY_LF = Buffer.from('{"hello": "world"}\n');
const SHA512_BODY = 'WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==';
const SHA256_BODY = 'X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=';
const SHA512_BODY_LF = 'YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==';
const SHA256_BODY_LF = 'RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=';
const SHA256_EMPTY = '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';

/** POST /foo?param=Value&Pet=dog HTTP/1.1 with its headers, in order */
const TEST_REQUEST_HEADERS: readonly string[] = [
  'Host',
  'example.com',
  'Date',
  'Tue, 20 Apr 2021 02:07:55 GMT',
  'Content-Type',
  'application/json',
  'Content-Digest',
  `sha-512=:${SHA512_BODY}:`,
  'Content-Length',
  '18',
];

function view(target: string, raw: readonly string[], method = 'GET'): MessageView {
  return { method, target, scheme: 'https', headers: HeaderIndex.fromRaw(raw) };
}

function testRequest(extra: readonly string[] = []): MessageView {
  return view('/foo?param=Value&Pet=dog', [...TEST_REQUEST_HEADERS, ...extra], 'POST');
}

/** The inner list of one member of a Signature-Input field value, as the verifier parses it. */
function member(signatureInput: string, label: string): InnerList {
  const m = parseDictionary(signatureInput).get(label);
  if (m === undefined || m.kind !== 'inner-list') throw new Error(`no inner-list member ${label} in ${signatureInput}`);
  return m;
}

/** The "@signature-params" value of a Signature-Input field line `label=(...)...`. */
function paramsOf(signatureInput: string): string {
  return signatureInput.slice(signatureInput.indexOf('=') + 1);
}

function hmacB64(key: Buffer, base: string): string {
  return createHmac('sha256', key).update(Buffer.from(base, 'ascii')).digest('base64');
}

function fixedClock(seconds: number): Clock {
  return { now: () => seconds * 1000, monotonic: () => BigInt(seconds) * 1_000_000_000n };
}

function deps(opts: { tag?: string; now?: number; requiredComponents?: string[] } = {}): VerifierDeps {
  const clock = fixedClock(opts.now ?? CREATED + 1);
  const profile: SignatureProfile = {
    tag: opts.tag ?? 'tollgate',
    skewSeconds: 30,
    maxAgeSeconds: 300,
    requiredComponents: opts.requiredComponents ?? [],
  };
  return {
    profile,
    keys: () => keyRingFromEntries([[KEY_ID, SECRET]]),
    replay: createReplayCache({ ttlMs: 330_000, maxEntries: 100, clock }),
    clock,
  };
}

/** The code a base construction is refused with (fails the test if it is not refused). */
function refusal(t: Tap, fn: () => unknown): ErrorCode | undefined {
  try {
    const out = fn();
    t.fail(`expected a refusal, got ${JSON.stringify(out)}`);
    return undefined;
  } catch (err) {
    if (!(err instanceof TollgateError)) throw err;
    return err.code;
  }
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** The base line for one covered identifier (the base without its @signature-params line). */
function lineFor(msg: MessageView, identifier: string): string {
  const base = signatureBase(msg, member(`s=(${identifier})`, 's'));
  return base.slice(0, base.lastIndexOf('\n'));
}

// ---------------------------------------------------------------------------------------------
// RFC 9421 B.2.5: hmac-sha256

const B25_INPUT = 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"';
const B25_SIGNATURE = 'sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:';
const B25_BASE =
  '"date": Tue, 20 Apr 2021 02:07:55 GMT\n' +
  '"@authority": example.com\n' +
  '"content-type": application/json\n' +
  '"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"';

t.test('RFC 9421 B.2.5: the base of sig-b25 is the exact four lines and its HMAC is the RFC value', async (t) => {
  const base = signatureBase(testRequest(), member(B25_INPUT, 'sig-b25'));
  t.equal(base, B25_BASE);
  t.equal(Buffer.byteLength(base), 200);
  t.notOk(base.endsWith('\n'), 'no trailing LF');
  t.notOk(base.includes('\r'), 'no CR');
  t.equal(hmacB64(SECRET, base), 'pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=');
  t.equal(
    createHmac('sha256', SECRET).update(base).digest('hex'),
    'a71710c3a1b7023b4c0508f0a3c5f39197ff6f0b392de95b68c939ac6206b44f',
  );
});

t.test(
  "RFC 9421 B.2.5: the common mistakes give the wrong MACs, and tollgate's signer and verifier make none of them",
  async (t) => {
    const b25 = signatureBase(testRequest(), member(B25_INPUT, 'sig-b25'));
    // the listed values really are what each mistake produces over the B.2.5 base
    t.equal(hmacB64(SECRET, b25 + '\n'), '+fep01MNDbkKBi26gY50tRwPw0QUF/5Tq9pGatYX9Pk=', 'a trailing LF');
    t.equal(
      hmacB64(SECRET, b25.replaceAll('\n', '\r\n')),
      '7mus6BA75KPIuLKqJ9sFGAuXFTJMu5cl4sbC1ELyn74=',
      'CRLF line ends',
    );
    t.equal(
      hmacB64(Buffer.from(SECRET_B64), b25),
      '3Yw4F7uZB7WNeq/mlLOjX55ofTgveA44Fai/WhyQH5Q=',
      'the base64 text used as the key',
    );

    // tollgate's signer over the test request: the MAC derived outside tollgate, none of the mistaken ones
    const fields = signRequest(testRequest(), {
      keyId: KEY_ID,
      key: createSecretKey(SECRET),
      tag: 'tollgate',
      created: CREATED,
      nonce: 'n-0001',
    });
    const base = signatureBase(testRequest(), member(fields.signatureInput, fields.label));
    const mistaken: Record<string, string> = {
      trailingLf: hmacB64(SECRET, base + '\n'),
      crlf: hmacB64(SECRET, base.replaceAll('\n', '\r\n')),
      base64TextAsKey: hmacB64(Buffer.from(SECRET_B64), base),
    };
    t.equal(
      fields.signature,
      'tollgate=:lf3EixSv6tCkI9vlMHsWB4wK/3Z5ZPg9b054vKvp8VU=:',
      'the signer writes the derived MAC',
    );
    for (const [mistake, mac] of Object.entries(mistaken))
      t.not(fields.signature, `tollgate=:${mac}:`, `the signer does not make the ${mistake} mistake`);

    // tollgate's verifier: the signer's MAC verifies; each mistaken one is refused as invalid
    const sent = (signature: string): MessageView =>
      testRequest(['Signature-Input', fields.signatureInput, 'Signature', signature]);
    const verified = (signature: string): ReturnType<typeof verifyRequest> =>
      verifyRequest(sent(signature), true, deps({ now: CREATED }));
    t.match(
      verified(fields.signature),
      { ok: true, keyId: KEY_ID, label: 'tollgate' },
      "the verifier accepts the signer's MAC",
    );
    for (const [mistake, mac] of Object.entries(mistaken)) {
      t.match(
        verified(`tollgate=:${mac}:`),
        { ok: false, code: 'ERR_SIG_INVALID' },
        `the verifier refuses the ${mistake} MAC`,
      );
    }
  },
);

t.test('RFC 9421 B.2.5 as published is refused by the verifier: it carries no tollgate tag', async (t) => {
  const v = verifyRequest(
    testRequest(['Signature-Input', B25_INPUT, 'Signature', B25_SIGNATURE]),
    true,
    deps({ now: CREATED }),
  );
  t.equal(v.ok, false);
  if (v.ok) return;
  t.equal(v.code, 'ERR_SIG_MISSING', 'the profile selects signatures by tag; sig-b25 has none');
  t.match(v.detail, /tagged "tollgate"/);
});

t.test(
  'the B.2.5 coverage is refused by the profile even when tagged: for no nonce, then for the coverage floor, until the floor is met',
  async (t) => {
    // each variant is MACed correctly (tollgate base + B.1.5 key), so only the profile can refuse it
    const signed = (input: string): MessageView => {
      const mac = createHmac('sha256', SECRET)
        .update(signatureBase(testRequest(), member(input, 'sig-b25')))
        .digest('base64');
      return testRequest(['Signature-Input', input, 'Signature', `sig-b25=:${mac}:`]);
    };
    const tagged =
      'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret";tag="tollgate"';
    let v = verifyRequest(signed(tagged), true, deps({ now: CREATED }));
    t.match(v, { ok: false, code: 'ERR_SIG_COVERAGE', detail: 'nonce is required', keyId: KEY_ID });

    const withNonce =
      'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret";nonce="n-1";tag="tollgate"';
    v = verifyRequest(signed(withNonce), true, deps({ now: CREATED }));
    t.match(v, { ok: false, code: 'ERR_SIG_COVERAGE', detail: '@method is not covered' });

    const floor =
      'sig-b25=("date" "@authority" "content-type" "@method" "@path" "@query");created=1618884473;keyid="test-shared-secret";nonce="n-1";tag="tollgate"';
    v = verifyRequest(signed(floor), true, deps({ now: CREATED }));
    t.match(
      v,
      { ok: false, code: 'ERR_SIG_COVERAGE', detail: 'content-digest is not covered' },
      'content with an uncovered Content-Digest: the body would be unbound',
    );

    const full =
      'sig-b25=("date" "@authority" "content-type" "@method" "@path" "@query" "content-digest");created=1618884473;keyid="test-shared-secret";nonce="n-1";tag="tollgate"';
    t.match(
      verifyRequest(signed(full), true, deps({ now: CREATED })),
      { ok: true, keyId: KEY_ID, label: 'sig-b25' },
      'with the floor met, the same key and components verify',
    );
  },
);

// ---------------------------------------------------------------------------------------------
// RFC 9421 B.2.1 - B.2.3: exact bases (RSA-PSS in the RFC; HMACs derived with the B.1.5 key)

t.test('RFC 9421 B.2.1: empty coverage with a nonce gives the single @signature-params line', async (t) => {
  const input = 'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"';
  const base = signatureBase(testRequest(), member(input, 'sig-b21'));
  t.equal(base, '"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"');
  t.equal(hmacB64(SECRET, base), 'CwSUL4JPhhCL8uNLp/x9UsYu4u3LsTYXmDjWtPSgf9M=');
});

t.test('RFC 9421 B.2.2: @query-param;name="Pet" and a tag give the exact base', async (t) => {
  const input =
    'sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"';
  const base = signatureBase(testRequest(), member(input, 'sig-b22'));
  t.equal(
    base,
    '"@authority": example.com\n' +
      `"content-digest": sha-512=:${SHA512_BODY}:\n` +
      '"@query-param";name="Pet": dog\n' +
      '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"',
  );
  t.equal(hmacB64(SECRET, base), 'T9MARwVolFf1EW/kyK6L3poGode1QrBHSXpNQ6VQuJQ=');
});

t.test('RFC 9421 B.2.3: full coverage gives the exact nine-line base', async (t) => {
  const input =
    'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"';
  const base = signatureBase(testRequest(), member(input, 'sig-b23'));
  t.equal(
    base,
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n' +
      '"@method": POST\n' +
      '"@path": /foo\n' +
      '"@query": ?param=Value&Pet=dog\n' +
      '"@authority": example.com\n' +
      '"content-type": application/json\n' +
      `"content-digest": sha-512=:${SHA512_BODY}:\n` +
      '"content-length": 18\n' +
      '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"',
  );
  t.equal(hmacB64(SECRET, base), 'BnpHPb7K3/kFwn62Ev14y04zNHPzfwswZafO4M5snVg=');
});

// ---------------------------------------------------------------------------------------------
// tollgate profile vectors (derived, not from any RFC: the B.2 test-request under tollgate's profile)

const PROFILE_LINES =
  '"@method": POST\n' +
  '"@authority": example.com\n' +
  '"@path": /foo\n' +
  '"@query": ?param=Value&Pet=dog\n' +
  `"content-digest": sha-512=:${SHA512_BODY}:\n` +
  '"content-type": application/json\n' +
  '"content-length": 18\n';
const PROFILE_COMPONENTS = '("@method" "@authority" "@path" "@query" "content-digest" "content-type" "content-length")';

interface ProfileVector {
  readonly name: string;
  readonly tag: string;
  readonly input: string;
  readonly bytes: number;
  readonly mac: string;
}

const PROFILE_VECTORS: readonly ProfileVector[] = [
  {
    name: 'the first draft\'s MAC, which is that of tag="sidecar"',
    tag: 'sidecar',
    input: `sig1=${PROFILE_COMPONENTS};created=1618884473;expires=1618884773;nonce="n-0001";keyid="test-shared-secret";alg="hmac-sha256";tag="sidecar"`,
    bytes: 481,
    mac: 'Gm+S18nbKkrzpkDCXqamZva91Y4DaXag7iIxd+JtmD8=',
  },
  {
    name: 'the same member with tag="tollgate"',
    tag: 'tollgate',
    input: `sig1=${PROFILE_COMPONENTS};created=1618884473;expires=1618884773;nonce="n-0001";keyid="test-shared-secret";alg="hmac-sha256";tag="tollgate"`,
    bytes: 482,
    mac: 'Ot0YjuZLgELyQOyaDsDel8/atdgps7bwlMwB+/ebCXA=',
  },
];

for (const vec of PROFILE_VECTORS) {
  t.test(
    `profile vector, ${vec.name}: exact base and MAC, and the verifier accepts it one second after created`,
    async (t) => {
      const base = signatureBase(testRequest(), member(vec.input, 'sig1'));
      t.equal(base, `${PROFILE_LINES}"@signature-params": ${paramsOf(vec.input)}`);
      t.equal(Buffer.byteLength(base), vec.bytes);
      t.equal(hmacB64(SECRET, base), vec.mac);

      const d = deps({ tag: vec.tag, now: CREATED + 1 });
      const msg = testRequest(['Signature-Input', vec.input, 'Signature', `sig1=:${vec.mac}:`]);
      const v = verifyRequest(msg, true, d);
      t.match(v, { ok: true, keyId: KEY_ID, label: 'sig1' });
      if (!v.ok) return;
      t.same(
        v.digests?.map((e) => [e.algorithm, e.value.toString('base64')]),
        [['sha-512', SHA512_BODY]],
        'the body must then match the covered Content-Digest',
      );
      const check = new DigestCheck(v.digests ?? []);
      check.update(BODY);
      t.ok(check.matches(), 'and the RFC body does');

      t.match(verifyRequest(msg, true, d), { ok: false, code: 'ERR_SIG_REPLAYED' }, 'the same nonce again is a replay');
      t.match(
        verifyRequest(msg, true, deps({ tag: vec.tag === 'tollgate' ? 'sidecar' : 'tollgate' })),
        { ok: false, code: 'ERR_SIG_MISSING' },
        'another tag is not ours',
      );
    },
  );
}

t.test('signRequest with created and nonce fixed writes the exact profile member and MAC (no expires)', async (t) => {
  const fields = signRequest(testRequest(), {
    keyId: KEY_ID,
    key: createSecretKey(SECRET),
    tag: 'tollgate',
    created: CREATED,
    nonce: 'n-0001',
  });
  const input = `tollgate=${PROFILE_COMPONENTS};created=1618884473;nonce="n-0001";keyid="test-shared-secret";alg="hmac-sha256";tag="tollgate"`;
  t.equal(fields.label, 'tollgate');
  t.equal(fields.signatureInput, input);
  t.equal(fields.signature, 'tollgate=:lf3EixSv6tCkI9vlMHsWB4wK/3Z5ZPg9b054vKvp8VU=:');
  const base = signatureBase(testRequest(), member(input, 'tollgate'));
  t.equal(base, `${PROFILE_LINES}"@signature-params": ${paramsOf(input)}`);
  t.equal(Buffer.byteLength(base), 463);

  const msg = testRequest(['Signature-Input', fields.signatureInput, 'Signature', fields.signature]);
  t.match(verifyRequest(msg, true, deps({ now: CREATED + 1 })), { ok: true, keyId: KEY_ID, label: 'tollgate' });
});

t.test(
  "the signer's kept Signature-Input text is what the structured-fields serializer writes, for every set of content fields",
  async (t) => {
    const templates = new SignatureTemplates();
    const content: Array<readonly [string, string]> = [
      ['Content-Digest', `sha-256=:${SHA256_BODY}:`],
      ['Content-Type', 'application/json'],
      ['Content-Length', '18'],
    ];
    const cases: Array<{ keyId: string; tag: string; nonce: string }> = [
      { keyId: KEY_ID, tag: 'tollgate', nonce: 'n-0001' },
      { keyId: KEY_ID, tag: 'tollgate', nonce: 'AAECAwQFBgcICQoLDA0ODw' },
      // a nonce and a key id the serializer must escape; then the first key again (the cache starts afresh)
      { keyId: 'key "two" \\ b', tag: 'edge-tag', nonce: 'quote " and \\ backslash' },
      { keyId: KEY_ID, tag: 'tollgate', nonce: 'n-0003' },
    ];
    for (const c of cases)
      for (let present = 0; present < 8; present++) {
        const raw = ['Host', 'example.com'];
        const names: string[] = [];
        content.forEach(([name, value], i) => {
          if ((present & (1 << i)) === 0) return;
          raw.push(name, value);
          names.push(name.toLowerCase());
        });
        const msg = view('/foo?a=1', raw, present === 0 ? 'GET' : 'POST');
        const options = { keyId: c.keyId, key: createSecretKey(SECRET), tag: c.tag, created: CREATED, nonce: c.nonce };
        const kept = signRequest(msg, { ...options, templates });
        const expected = sf.innerList(
          ['@method', '@authority', '@path', '@query', ...names].map((n) => sf.item(sf.string(n))),
          [
            ['created', sf.integer(CREATED)],
            ['nonce', sf.string(c.nonce)],
            ['keyid', sf.string(c.keyId)],
            ['alg', sf.string('hmac-sha256')],
            ['tag', sf.string(c.tag)],
          ],
        );
        const what = `${c.keyId}/${c.nonce}, content fields ${names.join(',') || 'none'}`;
        t.equal(kept.signatureInput, `tollgate=${serializeInnerList(expected)}`, `Signature-Input, ${what}`);
        t.equal(
          kept.signature,
          serializeDictionary(
            new Map([
              [
                'tollgate',
                sf.item(sf.bytes(createHmac('sha256', SECRET).update(signatureBase(msg, expected), 'latin1').digest())),
              ],
            ]),
          ),
          `Signature over the base of that member, ${what}`,
        );
        t.same(signRequest(msg, options), kept, `the same without kept templates, ${what}`);
      }
  },
);

t.test('the profile vector is refused outside its time window and with a flipped MAC bit', async (t) => {
  const vec = PROFILE_VECTORS[1]!;
  const msg = testRequest(['Signature-Input', vec.input, 'Signature', `sig1=:${vec.mac}:`]);
  t.match(
    verifyRequest(msg, true, deps({ now: CREATED - 31 })),
    { ok: false, code: 'ERR_SIG_EXPIRED' },
    'created beyond the skew in the future',
  );
  t.match(
    verifyRequest(msg, true, deps({ now: CREATED + 301 })),
    { ok: false, code: 'ERR_SIG_EXPIRED' },
    'older than maxAge',
  );
  const mac = Buffer.from(vec.mac, 'base64');
  mac[0]! ^= 1;
  const flipped = testRequest(['Signature-Input', vec.input, 'Signature', `sig1=:${mac.toString('base64')}:`]);
  t.match(verifyRequest(flipped, true, deps()), { ok: false, code: 'ERR_SIG_INVALID' });
  const otherQuery = view(
    '/foo?param=Value&Pet=cat',
    [...TEST_REQUEST_HEADERS, 'Signature-Input', vec.input, 'Signature', `sig1=:${vec.mac}:`],
    'POST',
  );
  t.match(
    verifyRequest(otherQuery, true, deps()),
    { ok: false, code: 'ERR_SIG_INVALID' },
    'a different query is a different message',
  );
});

// ---------------------------------------------------------------------------------------------
// RFC 9530 Content-Digest

t.test('RFC 9530 Appendix D: Content-Digest of {"hello": "world"} (18 bytes) for sha-256 and sha-512', async (t) => {
  t.equal(contentDigestOf(BODY), `sha-256=:${SHA256_BODY}:`, 'sha-256 is the default');
  t.equal(contentDigestOf(BODY, 'sha-256'), `sha-256=:${SHA256_BODY}:`);
  t.equal(contentDigestOf(BODY, 'sha-512'), `sha-512=:${SHA512_BODY}:`);
  for (const value of [
    `sha-256=:${SHA256_BODY}:`,
    `sha-512=:${SHA512_BODY}:`,
    `sha-256=:${SHA256_BODY}:, sha-512=:${SHA512_BODY}:`,
  ]) {
    t.ok(digestMatches(value, BODY), `${value.slice(0, 20)}… matches the body`);
    t.notOk(digestMatches(value, BODY_LF), `${value.slice(0, 20)}… does not match the body with a LF`);
  }
});

t.test('RFC 9530 §2 / Appendix B.1: the 19-byte body with a trailing LF', async (t) => {
  t.equal(contentDigestOf(BODY_LF, 'sha-512'), `sha-512=:${SHA512_BODY_LF}:`);
  t.equal(contentDigestOf(BODY_LF, 'sha-256'), `sha-256=:${SHA256_BODY_LF}:`);
  t.ok(digestMatches(`sha-512=:${SHA512_BODY_LF}:`, BODY_LF));
  t.ok(digestMatches(`sha-256=:${SHA256_BODY_LF}:`, BODY_LF));
  t.notOk(digestMatches(`sha-256=:${SHA256_BODY_LF}:`, BODY));
});

t.test('RFC 9530 Appendix B.2: the sha-256 of empty content', async (t) => {
  t.equal(contentDigestOf(Buffer.alloc(0)), `sha-256=:${SHA256_EMPTY}:`);
  t.ok(digestMatches(`sha-256=:${SHA256_EMPTY}:`, Buffer.alloc(0)));
  t.notOk(digestMatches(`sha-256=:${SHA256_EMPTY}:`, Buffer.from(' ')));
});

t.test(
  'RFC 9530 Appendix D deprecated algorithms are refused with ERR_DIGEST_MISMATCH, alone or next to sha-256',
  async (t) => {
    const deprecated: Record<string, string> = {
      md5: ':Sd/dVLAcvNLSq16eXua5uQ==:',
      sha: ':07CavjDP4u3/TungoUHJO/Wzr4c=:',
      unixsum: ':GQU=:',
      unixcksum: ':7zsHAA==:',
      adler: ':OZkGFw==:',
      crc32c: ':Q3lHIA==:',
    };
    for (const [alg, value] of Object.entries(deprecated)) {
      for (const field of [`${alg}=${value}`, `sha-256=:${SHA256_BODY}:, ${alg}=${value}`]) {
        t.equal(
          refusal(t, () => parseContentDigest(field)),
          'ERR_DIGEST_MISMATCH',
          field,
        );
      }
    }
  },
);

t.test(
  'RFC 9530 §2: the inconsistent two-member example is refused for the JSON body, with or without LF',
  async (t) => {
    const field = `sha-256=:d435Qo+nKZ+gLcUHn7GQtQ72hiBVAgqoLsZnZPiTGPk=:, sha-512=:${SHA512_BODY_LF}:`;
    t.same(
      parseContentDigest(field).map((e) => e.algorithm),
      ['sha-256', 'sha-512'],
      'it parses: both algorithms are accepted ones',
    );
    t.notOk(
      digestMatches(field, BODY_LF),
      'the sha-512 member matches the 19-byte body, the sha-256 member does not: refused',
    );
    t.notOk(digestMatches(field, BODY));
    t.ok(digestMatches(`sha-512=:${SHA512_BODY_LF}:`, BODY_LF), 'the sha-512 member alone does match');
  },
);

function digestMatches(field: string, body: Buffer): boolean {
  const check = new DigestCheck(parseContentDigest(field));
  check.update(body);
  return check.matches();
}

t.test('Content-Digest values that are not usable digests are refused', async (t) => {
  for (const field of [
    `sha-256=:${SHA512_BODY}:`, // wrong length for the algorithm
    `sha-256="${SHA256_BODY}"`, // a string, not a byte sequence
    `sha-256=:${SHA256_BODY}:, sha-256=:${SHA256_BODY}:`, // duplicate member
    `sha-384=:${SHA256_BODY}:`, // not an accepted algorithm
    'sha-256', // bare key
    '',
  ]) {
    t.equal(
      refusal(t, () => parseContentDigest(field)),
      'ERR_DIGEST_MISMATCH',
      JSON.stringify(field),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// base construction details (RFC 9421 §2)

t.test(
  'repeated field lines are trimmed and joined with ", " in message order (RFC 9421 §2.1 Cache-Control)',
  async (t) => {
    const msg = view('/', [
      'Host',
      'example.com',
      'Cache-Control',
      'max-age=60',
      'Cache-Control',
      '   must-revalidate',
    ]);
    t.equal(lineFor(msg, '"cache-control"'), '"cache-control": max-age=60, must-revalidate');
  },
);

t.test(
  'internal whitespace of a field value is kept, outer whitespace trimmed, obs-fold becomes one space',
  async (t) => {
    const msg = view('/', ['Example-Dict', '  a=1,    b=2;x=1;y=2,   c=(a   b   c)  ', 'X-Folded', 'one\r\n   two']);
    t.equal(lineFor(msg, '"example-dict"'), '"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)');
    t.equal(lineFor(msg, '"x-folded"'), '"x-folded": one two');
  },
);

t.test('an empty field present in the message gives a line ending in ": "', async (t) => {
  const msg = view('/', ['X-Empty', '']);
  t.equal(lineFor(msg, '"x-empty"'), '"x-empty": ');
});

t.test('an absent covered field is refused, not signed as empty', async (t) => {
  const msg = view('/', ['Host', 'example.com']);
  t.equal(
    refusal(t, () => lineFor(msg, '"x-absent"')),
    'ERR_SIG_INVALID',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"content-digest"')),
    'ERR_DIGEST_MISSING',
    'an absent content-digest has its own code',
  );
});

t.test('field names in identifiers must be lowercase; lookup in the message is case-insensitive', async (t) => {
  const msg = view('/', ['CONTENT-TYPE', 'text/plain']);
  t.equal(lineFor(msg, '"content-type"'), '"content-type": text/plain');
  t.equal(
    refusal(t, () => lineFor(msg, '"Content-Type"')),
    'ERR_SIG_MALFORMED',
  );
});

t.test('@query of a request without a query is "?"; an empty query is "?" too', async (t) => {
  t.equal(lineFor(view('/path', []), '"@query"'), '"@query": ?');
  t.equal(lineFor(view('/path?', []), '"@query"'), '"@query": ?');
  t.equal(lineFor(view('/', []), '"@path"'), '"@path": /');
});

t.test('@path and @query are the raw request-target, never normalised or decoded', async (t) => {
  const msg = view('/a/../b%2F?x', ['Host', 'example.com']);
  t.equal(lineFor(msg, '"@path"'), '"@path": /a/../b%2F');
  t.equal(lineFor(msg, '"@query"'), '"@query": ?x');
  t.equal(lineFor(msg, '"@request-target"'), '"@request-target": /a/../b%2F?x');
  t.equal(lineFor(msg, '"@target-uri"'), '"@target-uri": https://example.com/a/../b%2F?x');
  const q = view('/p?a=%20b+c&d=%zz', []);
  t.equal(lineFor(q, '"@query"'), '"@query": ?a=%20b+c&d=%zz');
});

t.test('@path and @query of an absolute-form request-target', async (t) => {
  const msg = view('https://Example.com/foo?bar=1', ['Host', 'example.com']);
  t.equal(lineFor(msg, '"@path"'), '"@path": /foo');
  t.equal(lineFor(msg, '"@query"'), '"@query": ?bar=1');
  t.equal(lineFor(msg, '"@request-target"'), '"@request-target": https://Example.com/foo?bar=1');
});

t.test('@method keeps its case', async (t) => {
  t.equal(lineFor(view('/', [], 'post'), '"@method"'), '"@method": post');
  t.equal(lineFor(view('/', [], 'POST'), '"@method"'), '"@method": POST');
});

t.test('@authority is the Host lowercased, with the default port 443 dropped and any other port kept', async (t) => {
  t.equal(lineFor(view('/', ['Host', 'Example.COM:443']), '"@authority"'), '"@authority": example.com');
  t.equal(lineFor(view('/', ['Host', 'Example.COM:8443']), '"@authority"'), '"@authority": example.com:8443');
  t.equal(
    lineFor(view('/', ['Host', 'example.com:80']), '"@authority"'),
    '"@authority": example.com:80',
    'port 80 is not the https default',
  );
  t.equal(lineFor(view('/', ['Host', '[::1]:443']), '"@authority"'), '"@authority": [::1]');
  t.equal(lineFor(view('/', ['Host', 'example.com']), '"@scheme"'), '"@scheme": https');
  t.equal(
    refusal(t, () => lineFor(view('/', []), '"@authority"')),
    'ERR_SIG_INVALID',
    'no Host, no @authority',
  );
});

t.test('a header named like a derived component is never used for it', async (t) => {
  const msg = view('/', ['@method', 'DELETE', 'Host', 'example.com'], 'GET');
  t.equal(lineFor(msg, '"@method"'), '"@method": GET');
});

t.test(
  'a duplicate covered identifier is refused with ERR_SIG_MALFORMED, parameter order notwithstanding',
  async (t) => {
    const msg = view('/?Pet=dog', ['Host', 'example.com', 'Priority', 'u=1, i', 'X-H', 'v']);
    t.equal(
      refusal(t, () => lineFor(msg, '"@method" "@method"')),
      'ERR_SIG_MALFORMED',
    );
    t.equal(
      refusal(t, () => lineFor(msg, '"x-h" "x-h"')),
      'ERR_SIG_MALFORMED',
    );
    t.equal(
      refusal(t, () => lineFor(msg, '"@query-param";name="Pet" "@query-param";name="Pet"')),
      'ERR_SIG_MALFORMED',
    );
    t.equal(
      refusal(t, () => lineFor(msg, '"priority";sf;key="u" "priority";key="u";sf')),
      'ERR_SIG_MALFORMED',
    );
    // the same name with different parameters is a different component
    t.equal(lineFor(msg, '"x-h" "x-h";bs'), '"x-h": v\n"x-h";bs: :dg==:');
    t.equal(
      lineFor(msg, '"priority";sf;key="u"'),
      '"priority";sf;key="u": 1',
      'a parsed identifier keeps its parameter order',
    );
    t.equal(lineFor(msg, '"priority";key="u";sf'), '"priority";key="u";sf: 1');
  },
);

t.test('@signature-params in the covered list is refused', async (t) => {
  t.equal(
    refusal(t, () => lineFor(view('/', ['Host', 'example.com']), '"@signature-params"')),
    'ERR_SIG_MALFORMED',
  );
});

t.test(';req and ;tr are refused on a request signature, as are unknown component parameters', async (t) => {
  const msg = view('/', ['Host', 'example.com', 'Content-Type', 'text/plain']);
  for (const id of [
    '"content-type";req',
    '"content-type";tr',
    '"@method";req',
    '"@authority";req',
    '"content-type";foo',
    '"@path";bs',
  ]) {
    t.equal(
      refusal(t, () => lineFor(msg, id)),
      'ERR_SIG_MALFORMED',
      id,
    );
  }
});

t.test('unknown derived components and @status on a request are refused', async (t) => {
  const msg = view('/', ['Host', 'example.com']);
  for (const id of ['"@status"', '"@foo"', '"@METHOD"'])
    t.equal(
      refusal(t, () => lineFor(msg, id)),
      'ERR_SIG_MALFORMED',
      id,
    );
});

t.test(';bs wraps each field line as a byte sequence (RFC 9421 §2.1.3)', async (t) => {
  const two = view('/', ['Example-Header', 'value, with, lots', 'Example-Header', 'of, commas']);
  t.equal(lineFor(two, '"example-header";bs'), '"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:');
  const one = view('/', ['Example-Header', 'value, with, lots, of, commas']);
  t.equal(lineFor(one, '"example-header";bs'), '"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHMsIG9mLCBjb21tYXM=:');
  t.equal(
    lineFor(two, '"example-header"'),
    '"example-header": value, with, lots, of, commas',
    'without bs the lines are joined',
  );
  t.equal(
    refusal(t, () => lineFor(one, '"example-header";bs;sf')),
    'ERR_SIG_MALFORMED',
    'bs with sf',
  );
  t.equal(
    refusal(t, () => lineFor(one, '"example-header";bs;key="a"')),
    'ERR_SIG_MALFORMED',
    'bs with key',
  );
});

t.test(
  ';sf re-serializes a known dictionary field strictly, merging its lines (the RFC Example-Dict, as Priority)',
  async (t) => {
    const msg = view('/', ['Priority', '  a=1,    b=2;x=1;y=2,   c=(a   b   c)', 'Priority', 'd']);
    t.equal(lineFor(msg, '"priority"'), '"priority": a=1,    b=2;x=1;y=2,   c=(a   b   c), d');
    t.equal(lineFor(msg, '"priority";sf'), '"priority";sf: a=1, b=2;x=1;y=2, c=(a b c), d');
    const digest = view('/', ['Content-Digest', `sha-512=:${SHA512_BODY}:,sha-256=:${SHA256_BODY}:`]);
    t.equal(
      lineFor(digest, '"content-digest";sf'),
      `"content-digest";sf: sha-512=:${SHA512_BODY}:, sha-256=:${SHA256_BODY}:`,
    );
  },
);

t.test(';key selects one dictionary member, serialized strictly without its key (RFC 9421 §2.1.2)', async (t) => {
  const msg = view('/', ['Priority', '  a=1, b=2;x=1;y=2, c=(a   b    c), d']);
  t.equal(lineFor(msg, '"priority";key="a"'), '"priority";key="a": 1');
  t.equal(lineFor(msg, '"priority";key="d"'), '"priority";key="d": ?1');
  t.equal(lineFor(msg, '"priority";key="b"'), '"priority";key="b": 2;x=1;y=2');
  t.equal(lineFor(msg, '"priority";key="c"'), '"priority";key="c": (a b c)');
  t.equal(
    refusal(t, () => lineFor(msg, '"priority";key="z"')),
    'ERR_SIG_INVALID',
    'a missing key',
  );
  const digest = view('/', ['Content-Digest', `sha-256=:${SHA256_BODY}:, sha-512=:${SHA512_BODY}:`]);
  t.equal(lineFor(digest, '"content-digest";key="sha-512"'), `"content-digest";key="sha-512": :${SHA512_BODY}:`);
});

t.test(';sf and ;key are refused for a field of unknown structured type or one that does not parse', async (t) => {
  const msg = view('/', ['Example-Dict', 'a=1, b=2', 'Priority', 'a=(', 'Cache-Status', 'ExampleCache; hit']);
  t.equal(
    refusal(t, () => lineFor(msg, '"example-dict";sf')),
    'ERR_SIG_MALFORMED',
    'example-dict has no known type',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"example-dict";key="a"')),
    'ERR_SIG_MALFORMED',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"priority";sf')),
    'ERR_SIG_MALFORMED',
    'malformed value',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"cache-status";key="a"')),
    'ERR_SIG_MALFORMED',
    'key on a list field',
  );
  t.equal(lineFor(msg, '"cache-status";sf'), '"cache-status";sf: ExampleCache;hit', 'a known list field');
});

t.test('a repeated singleton field is refused (two Content-Type lines)', async (t) => {
  const msg = view('/', ['Content-Type', 'application/json', 'Content-Type', 'text/plain']);
  t.equal(
    refusal(t, () => lineFor(msg, '"content-type"')),
    'ERR_SIG_MALFORMED',
  );
  const lengths = view('/', ['Content-Length', '18', 'content-length', '18']);
  t.equal(
    refusal(t, () => lineFor(lengths, '"content-length"')),
    'ERR_SIG_MALFORMED',
    'even with equal values',
  );
});

t.test('a covered value is printable ASCII, space or tab; every other character is refused', async (t) => {
  t.equal(lineFor(view('/', ['X-V', 'a\tb ~!']), '"x-v"'), '"x-v": a\tb ~!', 'tab, space and 0x7E are kept');
  for (const c of ['\x00', '\x08', '\n', '\x0b', '\r', '\x1f', '\x7f', '\x80', '\xff'])
    t.equal(
      refusal(t, () => lineFor(view('/', ['X-V', `a${c}b`]), '"x-v"')),
      'ERR_SIG_MALFORMED',
      `0x${c.charCodeAt(0).toString(16)} inside a value`,
    );
});

t.test('a non-ASCII field value is refused plainly but can be covered with ;bs', async (t) => {
  // Node hands header bytes over as latin1 strings: "café" in UTF-8 is "cafÃ©"
  const msg = view('/', ['X-Name', Buffer.from('café', 'utf8').toString('latin1')]);
  t.equal(
    refusal(t, () => lineFor(msg, '"x-name"')),
    'ERR_SIG_MALFORMED',
  );
  t.equal(lineFor(msg, '"x-name";bs'), `"x-name";bs: :${Buffer.from('café', 'utf8').toString('base64')}:`);
  t.equal(
    refusal(t, () => lineFor(view('/caf\u00e9', []), '"@path"')),
    'ERR_SIG_MALFORMED',
    'a non-ASCII request-target',
  );
});

t.test('@query-param values are the RFC 9421 §2.2.8 examples exactly', async (t) => {
  const msg = view(
    '/path?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something',
    [],
  );
  t.equal(
    lineFor(msg, '"@query-param";name="var"'),
    '"@query-param";name="var": this%20is%20a%20big%0Amultiline%20value',
  );
  t.equal(lineFor(msg, '"@query-param";name="bar"'), '"@query-param";name="bar": with%20plus%20whitespace');
  t.equal(
    lineFor(msg, '"@query-param";name="fa%C3%A7ade%22%3A%20"'),
    '"@query-param";name="fa%C3%A7ade%22%3A%20": something',
  );
  const other = view('/path?param=value&foo=bar&baz=bat%2Dman&qux=', []);
  t.equal(lineFor(other, '"@query-param";name="baz"'), '"@query-param";name="baz": bat-man');
  t.equal(lineFor(other, '"@query-param";name="qux"'), '"@query-param";name="qux": ');
  t.equal(lineFor(other, '"@query-param";name="param"'), '"@query-param";name="param": value');
});

t.test('@query-param uses the form-urlencoded percent-encode set, not encodeURIComponent', async (t) => {
  const msg = view("/p?a=!'()~*-._&b=%7e&c", []);
  t.equal(lineFor(msg, '"@query-param";name="a"'), '"@query-param";name="a": %21%27%28%29%7E*-._');
  t.equal(lineFor(msg, '"@query-param";name="b"'), '"@query-param";name="b": %7E');
  t.equal(
    lineFor(msg, '"@query-param";name="c"'),
    '"@query-param";name="c": ',
    'a name without "=" has the empty value',
  );
});

t.test(
  '@query-param decodes like WHATWG form parsing: invalid UTF-8 becomes U+FFFD, a stray % stays literal, empty pairs are skipped',
  async (t) => {
    const msg = view('/p?bad=%FF&mixed=%C3%A7%FF&stray=%zz&lone=100%', []);
    t.equal(lineFor(msg, '"@query-param";name="bad"'), '"@query-param";name="bad": %EF%BF%BD');
    t.equal(lineFor(msg, '"@query-param";name="mixed"'), '"@query-param";name="mixed": %C3%A7%EF%BF%BD');
    t.equal(lineFor(msg, '"@query-param";name="stray"'), '"@query-param";name="stray": %25zz');
    t.equal(lineFor(msg, '"@query-param";name="lone"'), '"@query-param";name="lone": 100%25');
    const sparse = view('/p?&&a=1&&=x&', []);
    t.equal(
      lineFor(sparse, '"@query-param";name="a"'),
      '"@query-param";name="a": 1',
      'empty sequences between "&" are skipped',
    );
    t.equal(
      lineFor(sparse, '"@query-param";name=""'),
      '"@query-param";name="": x',
      'and are not a parameter with an empty name',
    );
    // the oracle for all of these: WHATWG URLSearchParams, re-encoded with the form set
    const oracle = new URLSearchParams('bad=%FF&mixed=%C3%A7%FF');
    t.equal(oracle.get('bad'), '\uFFFD');
    t.equal(oracle.get('mixed'), '\u00e7\uFFFD');
  },
);

/** the form-urlencoded percent-encode set over UTF-8, space as %20, uppercase hex (RFC 9421 §2.2.8) */
function formEncodeOracle(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8'))
    out += /[A-Za-z0-9*\-._]/.test(String.fromCharCode(b))
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

t.test('@query-param agrees with WHATWG URLSearchParams for any query over a hostile alphabet', async (t) => {
  const piece = fc.constantFrom(
    'a',
    'b',
    'Z',
    '0',
    '%',
    '%2',
    '%20',
    '%3D',
    '%26',
    '%2B',
    '%C3',
    '%A7',
    '%FF',
    '%e2%82%ac',
    '%ED%A0%80',
    '%EF%BB%BF',
    '+',
    '=',
    '&',
    '~',
    '!',
    '*',
    '.',
    '-',
    '_',
    "'",
    '(',
    ')',
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 24 }), (pieces) => {
      const query = pieces.join('');
      const msg = view(`/p?${query}`, []);
      const params = new URLSearchParams(query.startsWith('?') ? `&${query}` : query);
      const counts = new Map<string, number>();
      for (const [k] of params) counts.set(k, (counts.get(k) ?? 0) + 1);
      for (const [k, n] of counts) {
        const id = `"@query-param";name="${formEncodeOracle(k)}"`;
        if (n === 1) {
          if (lineFor(msg, id) !== `${id}: ${formEncodeOracle(params.get(k)!)}`) return false;
        } else if (refusalCode(() => lineFor(msg, id)) !== 'ERR_SIG_MALFORMED') {
          return false;
        }
      }
      return true;
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random queries');
});

function refusalCode(fn: () => unknown): ErrorCode | 'none' {
  try {
    fn();
    return 'none';
  } catch (err) {
    if (err instanceof TollgateError) return err.code;
    throw err;
  }
}

t.test('@query-param is refused without a name, for an absent parameter and for a repeated one', async (t) => {
  const msg = view('/p?a=1&b=2&b=3', []);
  t.equal(
    refusal(t, () => lineFor(msg, '"@query-param"')),
    'ERR_SIG_MALFORMED',
    'no name',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"@query-param";name="a";x')),
    'ERR_SIG_MALFORMED',
    'an extra parameter',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"@query-param";name="z"')),
    'ERR_SIG_INVALID',
    'absent',
  );
  t.equal(
    refusal(t, () => lineFor(msg, '"@query-param";name="b"')),
    'ERR_SIG_MALFORMED',
    'repeated',
  );
});

t.test(
  'the @signature-params line re-serializes the received member: parameter order kept, inner spaces collapsed',
  async (t) => {
    const input = 'sig=(  "@method"   "@path" );keyid="k";created=1;nonce="n"';
    const base = signatureBase(view('/x', []), member(input, 'sig'));
    t.equal(
      base,
      '"@method": GET\n"@path": /x\n"@signature-params": ("@method" "@path");keyid="k";created=1;nonce="n"',
    );
  },
);

t.test(
  'more than four signatures tagged ours are refused as malformed without computing any of them; four are checked',
  async (t) => {
    const d = deps();
    const one = (label: string, nonce: string): { input: string; sig: string } => {
      const f = signRequest(testRequest(), {
        keyId: KEY_ID,
        key: createSecretKey(SECRET),
        tag: 'tollgate',
        created: CREATED,
        nonce,
      });
      return {
        input: f.signatureInput.replace(/^tollgate=/, `${label}=`),
        sig: f.signature.replace(/^tollgate=/, `${label}=`),
      };
    };
    const sigs = (n: number) => Array.from({ length: n }, (_, i) => one(`s${i}`, `n-${n}-${i}`));
    const five = sigs(5);
    const refused = verifyRequest(
      testRequest([
        'Signature-Input',
        five.map((s) => s.input).join(', '),
        'Signature',
        five.map((s) => s.sig).join(', '),
      ]),
      true,
      d,
    );
    t.equal(refused.ok ? null : refused.code, 'ERR_SIG_MALFORMED');
    const four = sigs(4);
    const accepted = verifyRequest(
      testRequest([
        'Signature-Input',
        four.map((s) => s.input).join(', '),
        'Signature',
        four.map((s) => s.sig).join(', '),
      ]),
      true,
      d,
    );
    t.ok(accepted.ok, 'four are fine');
  },
);

t.test('@signature-params is the serialized inner list, however the received member was written', async (t) => {
  const fields = signRequest(testRequest(), {
    keyId: KEY_ID,
    key: createSecretKey(SECRET),
    tag: 'tollgate',
    created: CREATED,
    nonce: 'n-0002',
  });
  const canonical = paramsOf(fields.signatureInput);
  const base = signatureBase(testRequest(), member(fields.signatureInput, 'tollgate'));
  t.ok(base.endsWith(`"@signature-params": ${canonical}`), 'as sent by the signer');
  // the same member with optional spaces, a leading zero and a repeated parameter: same values, other text
  const respaced = `tollgate=( ${canonical.slice(1, canonical.indexOf(')')).replaceAll(' ', '  ')} )${canonical
    .slice(canonical.indexOf(')') + 1)
    .replace('created=', 'created=0')
    .replace(';keyid=', '; keyid=')};alg="x";alg="hmac-sha256"`;
  t.not(paramsOf(respaced), canonical);
  t.equal(
    signatureBase(testRequest(), member(respaced, 'tollgate')),
    base,
    'the base is built from the serialization, not the received text',
  );
  const msg = testRequest(['Signature-Input', respaced, 'Signature', fields.signature]);
  t.match(
    verifyRequest(msg, true, deps({ now: CREATED + 1 })),
    { ok: true, keyId: KEY_ID, label: 'tollgate' },
    'and so verifies',
  );
});
