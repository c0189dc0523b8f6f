/**
 * What every macro run starts from: a fresh dev PKI (`ingest` serves, `producer` is the client),
 * an HMAC key, the upstream, and the files and ports a target and a load are given.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevPki, writeDevPki } from '../../src/certs/devPki.ts';
import type { LoadContext } from './measure.ts';
import { allocatorEnvOf, localAllocator, type TargetContext } from './targets.ts';
import type { Tools } from './tools.ts';
import { startUpstream, type Upstream } from './upstream.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY_ID = 'k1';

export interface Fixtures {
  readonly ctx: TargetContext;
  /** the client's certificate and the key it signs with, for a LoadContext */
  readonly client: Pick<LoadContext, 'files' | 'keyFile' | 'keyId'>;
  readonly upstream: Upstream;
  /** the image's allocator on this machine, or null when it is not installed */
  readonly allocator: string | null;
}

export async function prepareFixtures(workDir: string, tools: Tools): Promise<Fixtures> {
  const pki = await createDevPki({ trustDomain: 'example.org', identities: ['ingest', 'producer'], validityDays: 1 });
  const pkiDir = join(workDir, 'pki');
  await writeDevPki(pkiDir, pki);
  const keysDir = join(workDir, 'keys');
  execFileSync(process.execPath, [join(ROOT, 'bin', 'tollgate.js'), 'keys', 'new', '--out', keysDir, '--id', KEY_ID], {
    stdio: 'ignore',
  });
  const upstream = await startUpstream(tools.nginx, workDir);
  // every Node target runs with the image's allocator when this machine has it, the baselines too
  const allocator = localAllocator();
  return {
    ctx: {
      workDir,
      upstreamPort: upstream.port,
      pkiDir,
      keysDir,
      keyId: KEY_ID,
      haproxy: tools.haproxy,
      allocatorEnv: allocatorEnvOf(allocator),
    },
    client: {
      files: {
        ca: join(pkiDir, 'producer', 'ca.crt'),
        cert: join(pkiDir, 'producer', 'tls.crt'),
        key: join(pkiDir, 'producer', 'tls.key'),
      },
      keyFile: join(keysDir, KEY_ID),
      keyId: KEY_ID,
    },
    upstream,
    allocator,
  };
}
