/**
 * Every log line is strict JSON: no repeated member name (JSON.parse keeps the last silently;
 * strict log consumers refuse the line). The suite's own harness checks every line that an
 * in-process sidecar (helpers/world.ts) or a `bin/tollgate.js` process (helpers/process.ts)
 * logs with the reader below, and fails the test that produced a bad one; here the reader
 * itself is shown to catch what it must.
 */
import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger } from '../src/telemetry/logger.ts';
import { parseStrictJson, strictJsonProblem } from './helpers/strictJson.ts';

t.test('the strict reader refuses a repeated member name at any depth, and what JSON itself refuses', async (t) => {
  t.match(strictJsonProblem('{"peer":"a","x":1,"peer":"b"}'), /duplicate member name "peer"/);
  t.match(strictJsonProblem('{"a":{"b":1,"b":2}}'), /duplicate member name "b"/);
  t.match(strictJsonProblem('[{"k":1},{"k":2,"k":3}]'), /duplicate member name "k"/);
  for (const bad of [
    '{"a":1,}',
    '{a:1}',
    "{'a':1}",
    '{"a":01}',
    '{"a":1} x',
    '{"a":"\u0001"}',
    '{"a":"\\x"}',
    '[1,]',
    '',
  ]) {
    t.not(strictJsonProblem(bad), null, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('the strict reader reads what JSON.parse reads, the same', async (t) => {
  const samples = [
    '{"a":1,"b":[true,false,null],"c":{"d":"e\\n\\u00e9\\"/"},"n":-1.5e3}',
    '[]',
    '{}',
    '"x"',
    '0',
    ' {"a" : [ 1 , 2 ] } ',
  ];
  for (const text of samples) t.same(parseStrictJson(text), JSON.parse(text), text);
  t.same(
    Object.keys(parseStrictJson('{"__proto__":1}') as object),
    ['__proto__'],
    'a "__proto__" member is data, not a prototype',
  );
});

t.test("a pino child's binding logged again makes a line the harness fails on (so its check can fail)", async (t) => {
  const lines: string[] = [];
  const log = createLogger({
    level: 'info',
    destination: new Writable({
      write: (c: Buffer, _e, cb) => (lines.push(...c.toString().split('\n').filter(Boolean)), cb()),
    }),
  });
  log.child({ peer: 'a' }).info({ peer: 'a' }, 'twice');
  log.child({ peer: 'a' }).info({ route: 'r' }, 'once');
  await new Promise((r) => setImmediate(r));
  t.equal(lines.length, 2);
  t.match(strictJsonProblem(lines[0]!), /duplicate member name "peer"/);
  t.equal(strictJsonProblem(lines[1]!), null);
});
