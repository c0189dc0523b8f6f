/**
 * Peer certificates on the data plane are read with node:crypto's X509Certificate (SPIFFE URI
 * and DNS names from subjectAltName, the SPKI pin from its public key): @peculiar/x509 and its
 * ASN.1 stack (~7 MiB a process) load only to parse a CRL file, when one is configured, and undici
 * (the probe's and the webhook's HTTP client) never loads in `tollgate run`. Checked on a real
 * `tollgate run` with a worker thread, every module each thread loads recorded by a load hook.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN } from './helpers/process.ts';
import { makeCrl, type Teardownable } from './helpers/pki.ts';
import { eventually, startUpstream, world, type World } from './helpers/world.ts';

/** Appends `threadId url` for every module a thread loads to the file named by TOLLGATE_TEST_MODULES. */
const RECORDER = `import { registerHooks } from 'node:module';
import { threadId } from 'node:worker_threads';
import { appendFileSync } from 'node:fs';
registerHooks({
  load(url, context, nextLoad) {
    appendFileSync(process.env.TOLLGATE_TEST_MODULES, threadId + ' ' + url + '\\n');
    return nextLoad(url, context);
  },
});
`;

/** Start `tollgate run` with `config`, stop it once started, and return the module URLs each thread loaded (main thread first). */
async function modulesOfRun(
  t: Teardownable,
  w: World,
  name: string,
  config: Record<string, unknown>,
): Promise<string[][]> {
  const configFile = join(w.dir, `${name}.json`);
  const recorder = join(w.dir, 'record-modules.mjs');
  const record = join(w.dir, `${name}.modules`);
  await writeFile(configFile, JSON.stringify(config));
  await writeFile(recorder, RECORDER);
  const child = spawn(
    process.execPath,
    ['--import', pathToFileURL(recorder).href, BIN, 'run', '--config', configFile],
    {
      env: { ...process.env, TOLLGATE_TEST_MODULES: record },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  t.teardown(() => void child.kill('SIGKILL'));
  const started = (): boolean => out.includes('"msg":"tollgate started"');
  await eventually(() => started() || child.exitCode !== null, 15_000, 'tollgate started');
  if (!started()) throw new Error(`tollgate did not start: ${out}`);
  child.kill('SIGTERM');
  if ((await exited) !== 0) throw new Error(`tollgate did not exit 0: ${out}`);
  const threads = new Map<string, string[]>();
  for (const line of (await readFile(record, 'utf8')).split('\n').filter((l) => l !== '')) {
    const [thread, url] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)];
    threads.set(thread, [...(threads.get(thread) ?? []), url]);
  }
  return [threads.get('0') ?? [], ...[...threads].filter(([id]) => id !== '0').map(([, urls]) => urls)];
}

const fromPackage =
  (name: string) =>
  (url: string): boolean =>
    url.includes(`/node_modules/${name}/`);

t.test(
  'a sidecar parses certificates with node:crypto: @peculiar/x509 loads only for a CRL file, undici never',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { dns: ['localhost'] });
    const app = await startUpstream(t);
    const config = (identity: object): Record<string, unknown> => ({
      workers: 2,
      admin: { listen: null },
      identity,
      listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
    });

    const plain = await modulesOfRun(t, w, 'no-crl', config(ingest.files));
    t.equal(plain.length, 2, 'the main thread and one worker thread');
    t.ok(
      plain[0]!.some((u) => u.endsWith('/dist/certs/identityBundle.js')),
      'the recorder sees the identity loader in the main thread',
    );
    for (const [i, urls] of plain.entries()) {
      const thread = i === 0 ? 'the main thread' : 'the worker thread';
      t.same(urls.filter(fromPackage('@peculiar/x509')), [], `${thread} does not load @peculiar/x509`);
      t.same(urls.filter(fromPackage('@peculiar/asn1-schema')), [], `${thread} does not load its ASN.1 stack`);
      t.same(urls.filter(fromPackage('undici')), [], `${thread} does not load undici`);
      t.same(
        urls.filter((u) => u === 'node:http2' || u.endsWith('/dist/http2/h2Front.js')),
        [],
        `${thread} does not load node:http2 before an HTTP/2 connection comes`,
      );
      t.same(
        urls.filter((u) => u.endsWith('/dist/certs/crlCheck.js')),
        [],
        `${thread} does not load the CRL parser`,
      );
    }

    const crlFile = join(w.dir, 'ca.crl');
    await writeFile(crlFile, await makeCrl(w.ca));
    const withCrl = await modulesOfRun(t, w, 'crl', config({ ...ingest.files, crlFile }));
    t.ok(
      withCrl[0]!.some((u) => u.endsWith('/dist/certs/crlCheck.js')),
      'with identity.crlFile the main thread loads the CRL parser',
    );
    t.ok(withCrl[0]!.some(fromPackage('@peculiar/x509')), 'and @peculiar/x509 with it');
    t.same(withCrl[0]!.filter(fromPackage('undici')), [], 'still no undici');
  },
);
