/**
 * Message integrity from the command line: `tollgate inbound --keys DIR` verifies,
 * `tollgate outbound --keys DIR --sign-key-id ID` signs, `tollgate keys new` writes keys they
 * load, and `tollgate check` refuses a key ring that cannot be used — as real processes.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PRODUCER } from './helpers/identities.ts';
import { exitWithin, startTollgate, type Running } from './helpers/process.ts';
import { eventually, plainClient, startUpstream, world, mtlsClient, sha256 } from './helpers/world.ts';
import type { Teardownable } from './helpers/pki.ts';

async function started(p: Running): Promise<string> {
  await eventually(
    () => p.logs().some((l) => l.msg === 'tollgate started') || p.exitCode() !== null,
    15_000,
    'tollgate started',
  );
  const line = p.logs().find((l) => l.msg === 'tollgate started');
  if (line === undefined) throw new Error(`tollgate did not start: ${p.stderr()}`);
  return (line.listeners as Array<{ address: string }>)[0]!.address;
}

async function keysNew(t: Teardownable, dir: string, id: string): Promise<void> {
  const r = await exitWithin(startTollgate(t, ['keys', 'new', '--out', dir, '--id', id]), 15_000);
  if (r.code !== 0) throw new Error(`keys new failed: ${r.stderr}`);
}

t.test(
  'outbound --keys --sign-key-id and inbound --keys, as processes, carry a signed request to the app and refuse an unsigned one',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'], dns: ['localhost'] });
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const keys = join(w.dir, 'keys');
    await keysNew(t, keys, 'k1');
    const app = await startUpstream(t);

    const inbound = startTollgate(t, [
      'inbound',
      '--listen',
      '127.0.0.1:0',
      '--target',
      app.addr,
      '--cert',
      ingest.files.certFile,
      '--key',
      ingest.files.keyFile,
      '--ca',
      ingest.files.caFile,
      '--allow-spiffe',
      PRODUCER,
      '--keys',
      keys,
      '--admin',
      '127.0.0.1:0',
    ]);
    const inboundAddr = await started(inbound);
    const outbound = startTollgate(t, [
      'outbound',
      '--listen',
      '127.0.0.1:0',
      '--target',
      inboundAddr,
      '--server-name',
      'localhost',
      '--cert',
      producer.files.certFile,
      '--key',
      producer.files.keyFile,
      '--ca',
      producer.files.caFile,
      '--keys',
      keys,
      '--sign-key-id',
      'k1',
      '--admin',
      '127.0.0.1:0',
    ]);
    const outboundAddr = await started(outbound);

    const body = JSON.stringify({ event: 'signed' });
    const res = await plainClient(t, outboundAddr).request({
      path: '/events',
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    t.equal(res.statusCode, 200, 'the signed request went through');
    await res.body.dump();
    t.equal(app.seen[0]?.bodySha256, sha256(body), 'the app got the body');
    t.match(String(app.seen[0]?.headers['signature-input']), /keyid="k1"/);

    const unsigned = await mtlsClient(t, inboundAddr, w.ca, producer).request({
      path: '/events',
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    t.equal(unsigned.statusCode, 401);
    t.equal(unsigned.headers['x-tollgate-error'], 'ERR_SIG_MISSING');
    await unsigned.body.dump();
    t.equal(app.seen.length, 1, 'the unsigned request never reached the app');

    inbound.kill('SIGTERM');
    outbound.kill('SIGTERM');
    t.equal((await exitWithin(inbound, 15_000)).code, 0);
    t.equal((await exitWithin(outbound, 15_000)).code, 0);
  },
);

t.test(
  'inbound --keys refuses to start on an unusable key file, naming --keys and never printing the key',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    const keys = join(w.dir, 'keys');
    await keysNew(t, keys, 'good');
    await writeFile(join(keys, 'short'), Buffer.alloc(16, 7).toString('base64') + '\n', { mode: 0o600 });
    const r = await exitWithin(
      startTollgate(t, [
        'inbound',
        '--listen',
        '127.0.0.1:0',
        '--target',
        '127.0.0.1:9',
        '--cert',
        ingest.files.certFile,
        '--key',
        ingest.files.keyFile,
        '--ca',
        ingest.files.caFile,
        '--allow-any',
        '--keys',
        keys,
      ]),
      15_000,
    );
    t.equal(r.code, 2, 'a configuration problem');
    t.match(r.stderr, /  - --keys: .*short.*16 bytes/, 'named by the flag given');
    t.notMatch(r.stderr, /keys\.dir/, 'not by the config path the flags became');
    t.notMatch(r.stderr + r.stdout, Buffer.alloc(16, 7).toString('base64'), 'the key text is not printed');
  },
);

t.test('check --config lists the key ring, and refuses a signing key id that is not in it', async (t) => {
  const w = await world(t);
  const producer = await w.identity('producer');
  const keys = join(w.dir, 'keys');
  await keysNew(t, keys, 'k1');
  const config = (keyId: string) => ({
    admin: { listen: null },
    identity: { certFile: producer.files.certFile, keyFile: producer.files.keyFile, caFile: producer.files.caFile },
    keys: { dir: keys },
    listeners: [
      {
        name: 'out',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: 'ingest.example.org:15443',
        integrity: { sign: true, keyId },
      },
    ],
  });
  await writeFile(join(w.dir, 'good.json'), JSON.stringify(config('k1')));
  await writeFile(join(w.dir, 'bad.json'), JSON.stringify(config('k2')));
  const good = await exitWithin(startTollgate(t, ['check', '--config', join(w.dir, 'good.json')]), 15_000);
  t.equal(good.code, 0, good.stderr);
  t.match(good.stdout, /keys k1/);
  const bad = await exitWithin(startTollgate(t, ['check', '--config', join(w.dir, 'bad.json')]), 15_000);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /listeners\[0\]\.integrity\.keyId: key k2 is not in keys\.dir/);
});
