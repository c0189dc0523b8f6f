/**
 * `tollgate webhook --listen H:P --cert F --key F --image IMAGE [--config FILE]`: the Kubernetes
 * sidecar injector. Every bad flag is reported at once (exit 2); a certificate that does not
 * load is a configuration problem (exit 2); a port that cannot be bound is a runtime failure
 * (exit 1). SIGTERM/SIGINT: readiness 503, stop accepting, finish in-flight reviews, exit 0
 * (1 if any had to be cut, or on a second signal). SIGHUP re-reads the certificate, which is
 * also reloaded whenever its directory changes. tollgate installs these handlers itself, so it
 * behaves as PID 1 in a container.
 */
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { Registry } from '../telemetry/promClient.ts';
import { parseHostPort } from '../config/hostPort.ts';
import { unknownFlagMessage } from '../core/closestName.ts';
import { systemErrorText } from '../core/errnoText.ts';
import type { HostPort } from '../config/types.ts';
import { createLogger } from '../telemetry/logger.ts';
import { collectRuntimeMetrics } from '../telemetry/metrics.ts';
import { tlsPolicy } from '../tls/policy.ts';
import { watchServingCert } from '../webhook/certReload.ts';
import { imageReferenceProblem } from '../webhook/imageReference.ts';
import { createWebhookServer, type WebhookServer } from '../webhook/server.ts';
import { loadServingCert } from '../webhook/servingCert.ts';
import { defaultWebhookConfig, loadWebhookConfigFile, type WebhookConfig } from '../webhook/webhookConfig.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, printProblems, type Output } from './output.ts';

/** every flag the webhook takes; test/cli-help.test.ts checks WEBHOOK_COMMAND (its --help) lists exactly these */
export const FLAGS = ['listen', 'cert', 'key', 'image', 'config'] as const;
type Flag = (typeof FLAGS)[number];
const REQUIRED: readonly Flag[] = ['listen', 'cert', 'key', 'image'];

interface Flags {
  readonly listen: HostPort;
  readonly cert: string;
  readonly key: string;
  readonly image: string;
  readonly config: string | null;
}

interface Problem {
  readonly path: string;
  readonly message: string;
}

export async function webhookCommand(argv: string[], o: Output): Promise<number> {
  const parsed = readFlags(argv);
  if (!parsed.ok) {
    printProblems(o, 'tollgate webhook: invalid flags', parsed.problems);
    return EXIT_USAGE;
  }
  const flags = parsed.flags;
  let config: WebhookConfig = defaultWebhookConfig(flags.image);
  if (flags.config !== null) {
    const loaded = await loadWebhookConfigFile(flags.config, flags.image);
    if (!loaded.ok) {
      printProblems(o, `${flags.config}: invalid webhook configuration`, loaded.problems);
      return EXIT_USAGE;
    }
    config = loaded.config;
  }
  const files = { certFile: flags.cert, keyFile: flags.key };
  const cert = await loadServingCert(files, new Date());
  if (!cert.ok) {
    printProblems(o, 'tollgate webhook: the serving certificate cannot be used', cert.problems);
    return EXIT_USAGE;
  }

  const log = createLogger({ level: config.logLevel });
  for (const warning of cert.warnings) log.warn(warning);
  // the webhook's own registry, served at GET /metrics: its admissions and the process metrics
  const registry = new Registry();
  collectRuntimeMetrics(registry);
  let server: WebhookServer;
  try {
    server = createWebhookServer({
      cert: cert.cert,
      policy: tlsPolicy('TLSv1.2'),
      injector: config.injector,
      log,
      registry,
    });
  } catch (err) {
    printProblems(o, 'tollgate webhook: the serving certificate cannot be used', [
      `--cert/--key: the TLS stack refused them: ${(err as Error).message}`,
    ]);
    return EXIT_USAGE;
  }
  let address: string;
  try {
    address = await server.listen(flags.listen);
  } catch (err) {
    o.err(
      `tollgate webhook: cannot listen on --listen ${flags.listen.host}:${flags.listen.port}: ${systemErrorText(err, 'socket')}`,
    );
    return EXIT_FAILURE;
  }
  const reloader = watchServingCert({
    files,
    initial: cert.cert,
    apply: (c) => server.setCertificate(c),
    log,
    now: () => new Date(),
  });
  log.info(
    { address, image: config.injector.image, serial: cert.cert.leaf.serialNumber, notAfter: cert.cert.leaf.validTo },
    'tollgate webhook started',
  );
  const code = await untilStopped(server, log, config.drainTimeoutSeconds, () => void reloader.reload());
  reloader.close();
  await new Promise<void>((resolve) => log.flush(() => resolve()));
  return code;
}

/** Serve until SIGTERM/SIGINT; SIGHUP reloads the certificate. */
function untilStopped(server: WebhookServer, log: Logger, drainSeconds: number, reload: () => void): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.error({ signal }, 'second signal while draining: exiting now');
        log.flush();
        process.exit(EXIT_FAILURE);
      }
      stopping = true;
      log.info({ signal }, 'draining');
      server.drain(drainSeconds * 1000).then((clean) => {
        if (!clean) log.warn('reviews still in flight at the drain deadline were cut');
        log.info('tollgate webhook stopped');
        finish(clean ? EXIT_OK : EXIT_FAILURE);
      });
    };
    const onHup = (): void => {
      if (stopping) return;
      log.info('SIGHUP: reloading the certificate');
      reload();
    };
    const finish = (code: number): void => {
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGHUP', onHup);
      resolve(code);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', onHup);
  });
}

type FlagsResult = { ok: true; flags: Flags } | { ok: false; problems: Problem[] };

function readFlags(argv: string[]): FlagsResult {
  const problems: Problem[] = [];
  const options = Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }]));
  let tokens;
  try {
    ({ tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true }));
  } catch (err) {
    return { ok: false, problems: [{ path: 'argv', message: (err as Error).message }] };
  }
  const values = new Map<Flag, string>();
  for (const token of tokens) {
    if (token.kind === 'positional') {
      problems.push({ path: token.value, message: 'unexpected argument (flags are --name VALUE)' });
      continue;
    }
    if (token.kind !== 'option') continue;
    const name = token.name as Flag;
    if (!FLAGS.includes(name)) {
      problems.push({
        path: token.rawName,
        message: `${unknownFlagMessage(token.name, FLAGS)}; the webhook takes ${FLAGS.map((f) => `--${f}`).join(', ')}`,
      });
    } else if (token.value === undefined) {
      problems.push({ path: token.rawName, message: 'needs a value' });
    } else if (token.inlineValue !== true && token.value.startsWith('-')) {
      problems.push({ path: token.rawName, message: `needs a value (the next word, ${token.value}, is a flag)` });
    } else if (values.has(name)) {
      problems.push({ path: token.rawName, message: 'given more than once' });
    } else {
      values.set(name, token.value);
    }
  }
  for (const name of REQUIRED) {
    if (!values.has(name) && !problems.some((p) => p.path === `--${name}`))
      problems.push({ path: `--${name}`, message: 'required' });
  }
  let listen: HostPort | null = null;
  const listenValue = values.get('listen');
  if (listenValue !== undefined) {
    const hp = parseHostPort(listenValue);
    if (typeof hp === 'string') problems.push({ path: '--listen', message: hp });
    else listen = hp;
  }
  const image = values.get('image');
  if (image !== undefined) {
    const problem = imageReferenceProblem(image);
    if (problem !== null) problems.push({ path: '--image', message: problem });
  }
  for (const name of ['cert', 'key', 'config'] as const) {
    if (values.get(name) === '') problems.push({ path: `--${name}`, message: 'needs a file name' });
  }
  if (problems.length > 0 || listen === null) return { ok: false, problems };
  return {
    ok: true,
    flags: {
      listen,
      cert: values.get('cert')!,
      key: values.get('key')!,
      image: values.get('image')!,
      config: values.get('config') ?? null,
    },
  };
}
