import t from 'tap';
import { world, startTestSidecar } from './helpers/world.ts';
import { StartupError } from '../src/main.ts';

/** Settings this build validates but cannot honour yet must refuse to start, never run weaker. */
t.test('the audit file refuses to start until it exists', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const err = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    audit: { file: 'audit.log', keyFile: 'audit.key' },
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: '127.0.0.1:9',
        allow: { any: true },
      },
    ],
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof StartupError, 'start is refused');
  const paths = (err as StartupError).problems.map((p) => p.split(':')[0]);
  t.same(paths, ['audit.file']);
  t.equal((err as StartupError).usage, true, 'a configuration problem: exit 2');
});
