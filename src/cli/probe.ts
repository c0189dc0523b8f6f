import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseHostPort } from '../config/hostPort.ts';
import { isSpkiPin } from '../core/spkiPin.ts';
import { judgeProbe, type ProbeCheck, type ProbeExpectations } from '../probe/judgeProbe.ts';
import { probeEndpoint, type ProbeReport } from '../probe/probeEndpoint.ts';
import { PROBE_COMMAND } from './commands.ts';
import { parseCommand, type FlagValues } from './flagSpec.ts';
import { answerUnparsed, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, printFlagProblems, type Output } from './output.ts';

const MAX_TIMEOUT_SECONDS = 300;

interface Problem {
  path: string;
  message: string;
}

interface ProbeArgs {
  host: string;
  port: number;
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
  timeoutMs: number;
  alpn?: string[];
  json: boolean;
  expect: ProbeExpectations;
}

/**
 * `tollgate probe HOST:PORT --ca F …`: inspect a TLS endpoint and check it against expectations.
 * Exit 0 when every check holds, 1 when any fails (each listed), 2 for bad usage.
 */
export async function probeCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const parsed = parseCommand(PROBE_COMMAND, argv);
  if (parsed.kind === 'help') return answerUnparsed(o, PROBE_COMMAND, parsed);
  // what did parse is checked too, so every problem is listed in one run
  const args = await checkArgs(parsed.values, parsed.operand, cwd);
  const syntax = parsed.kind === 'problems' ? parsed.problems : [];
  const problems = [...syntax, ...('host' in args ? [] : args).filter((p) => !syntax.some((q) => q.path === p.path))];
  if (problems.length > 0 || !('host' in args)) {
    printFlagProblems(o, PROBE_COMMAND.name, problems);
    return EXIT_USAGE;
  }

  let report: ProbeReport;
  try {
    report = await probeEndpoint({
      host: args.host,
      port: args.port,
      ca: args.ca,
      ...(args.cert !== undefined && args.key !== undefined ? { cert: args.cert, key: args.key } : {}),
      ...(args.serverName !== undefined ? { serverName: args.serverName } : {}),
      ...(args.alpn !== undefined ? { alpn: args.alpn } : {}),
      timeoutMs: args.timeoutMs,
    });
  } catch (err) {
    // only unusable TLS options get here (the files parsed, but OpenSSL refused them together)
    o.err(`tollgate probe: ${(err as Error).message.split('\n')[0]}`);
    return EXIT_USAGE;
  }
  const checks = judgeProbe(report, args.expect);
  const ok = checks.every((c) => c.ok);
  if (args.json) o.out(JSON.stringify({ ...report, checks, ok }, null, 2));
  else for (const line of renderTable(report, checks, ok)) o.out(line);
  return ok ? EXIT_OK : EXIT_FAILURE;
}

type Values = Partial<FlagValues<(typeof PROBE_COMMAND)['flags']>>;

/** Every usage problem at once, each named by its flag; or the arguments, files read and parsed. */
async function checkArgs(v: Values, endpoint: string | undefined, cwd: string): Promise<ProbeArgs | Problem[]> {
  const problems: Problem[] = [];

  let host = '';
  let port = 0;
  if (endpoint === undefined) problems.push({ path: 'HOST:PORT', message: 'required (the endpoint to probe)' });
  else {
    const hp = parseHostPort(endpoint);
    if (typeof hp === 'string') problems.push({ path: 'HOST:PORT', message: `${endpoint}: ${hp}` });
    else if (hp.port === 0) problems.push({ path: 'HOST:PORT', message: `${endpoint}: port 0 cannot be dialled` });
    else ({ host, port } = hp);
  }

  let ca: Buffer | undefined;
  if (v.ca === undefined)
    problems.push({ path: '--ca', message: 'required (the CA bundle the server chain must verify against)' });
  else ca = await readPem(v.ca, '--ca', 'certificate', cwd, problems);

  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  if (v.cert !== undefined && v.key === undefined) problems.push({ path: '--key', message: 'required with --cert' });
  if (v.key !== undefined && v.cert === undefined) problems.push({ path: '--cert', message: 'required with --key' });
  if (v.cert !== undefined) cert = await readPem(v.cert, '--cert', 'certificate', cwd, problems);
  if (v.key !== undefined) key = await readPem(v.key, '--key', 'key', cwd, problems);
  if (cert !== undefined && key !== undefined) {
    const certObj = new X509Certificate(cert);
    let keyObj: KeyObject | undefined;
    try {
      keyObj = createPrivateKey(key);
    } catch {
      // reported by readPem already
    }
    if (keyObj !== undefined && !certObj.checkPrivateKey(keyObj))
      problems.push({ path: '--key', message: `${v.key}: does not match the certificate in --cert` });
  }

  const serverName = v['server-name'];
  if (serverName !== undefined && serverName.trim() === '')
    problems.push({ path: '--server-name', message: 'must not be empty' });

  const spiffe = v['expect-spiffe'] ?? [];
  for (const id of spiffe) {
    if (!/^spiffe:\/\/[^/]+/.test(id))
      problems.push({ path: '--expect-spiffe', message: `${id}: not a SPIFFE ID (spiffe://TRUST-DOMAIN/PATH)` });
  }
  const spkiPins = v['expect-spki-pin'] ?? [];
  for (const pin of spkiPins) {
    if (!isSpkiPin(pin))
      problems.push({
        path: '--expect-spki-pin',
        message: `${pin}: not an SPKI pin (sha256/ + base64 of 32 bytes, as printed by tollgate certs pin)`,
      });
  }

  let minDaysValid = 0;
  if (v['min-days-valid'] !== undefined) {
    const n = Number(v['min-days-valid']);
    if (!/^[0-9]+$/.test(v['min-days-valid']) || !Number.isSafeInteger(n))
      problems.push({ path: '--min-days-valid', message: `${v['min-days-valid']}: not a whole number of days` });
    else minDaysValid = n;
  }

  let timeoutMs = 0; // --timeout has a default (PROBE_COMMAND), so it is absent only when it did not parse
  if (v.timeout !== undefined) {
    const s = Number(v.timeout);
    if (v.timeout.trim() === '' || !Number.isFinite(s) || s <= 0 || s > MAX_TIMEOUT_SECONDS) {
      problems.push({
        path: '--timeout',
        message: `${v.timeout}: seconds, more than 0 and at most ${MAX_TIMEOUT_SECONDS}`,
      });
    } else timeoutMs = Math.round(s * 1000);
  }

  const alpn = v.alpn;
  if (alpn !== undefined) {
    for (const p of alpn) {
      if (p.length === 0 || Buffer.byteLength(p) > 255)
        problems.push({ path: '--alpn', message: `${JSON.stringify(p)}: a protocol name of 1 to 255 bytes` });
    }
  }

  if (problems.length > 0 || ca === undefined) return problems;
  const args: ProbeArgs = {
    host,
    port,
    ca,
    timeoutMs,
    json: v.json === true,
    expect: { minDaysValid, spiffe, spkiPins },
  };
  if (cert !== undefined && key !== undefined) {
    args.cert = cert;
    args.key = key;
  }
  if (serverName !== undefined) args.serverName = serverName;
  if (alpn !== undefined) args.alpn = alpn;
  return args;
}

/** Read a PEM file and check it holds what the flag promises; a problem naming the flag otherwise. */
async function readPem(
  file: string,
  flag: string,
  kind: 'certificate' | 'key',
  cwd: string,
  problems: Problem[],
): Promise<Buffer | undefined> {
  let data: Buffer;
  try {
    data = await readFile(resolve(cwd, file));
  } catch (err) {
    problems.push({ path: flag, message: `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
    return undefined;
  }
  try {
    if (kind === 'certificate') new X509Certificate(data);
    else createPrivateKey(data);
    return data;
  } catch {
    problems.push({
      path: flag,
      message: `${file}: not a PEM ${kind === 'certificate' ? 'certificate' : 'private key'}`,
    });
    return undefined;
  }
}

/** Aligned `key  value` lines, the chain one line per certificate, then one line per check. */
export function renderTable(r: ProbeReport, checks: readonly ProbeCheck[], ok: boolean): string[] {
  const rows: Array<[string, string]> = [];
  const dash = '-';
  rows.push(['endpoint', r.endpoint]);
  rows.push(['server name', r.sni === null ? `${r.serverName} (no SNI: an IP address)` : r.serverName]);
  if (r.error !== null)
    rows.push(['error', `${r.error.message} [${r.error.reason}, ${r.error.code}, during ${r.error.stage}]`]);
  rows.push(['TLS version', r.tlsVersion ?? dash]);
  rows.push(['cipher', r.cipher ?? dash]);
  rows.push([
    'group',
    r.group === null
      ? r.handshake
        ? 'not reported by this runtime'
        : dash
      : r.postQuantum
        ? `${r.group} (hybrid post-quantum)`
        : r.group,
  ]);
  rows.push(['ALPN', r.alpn ?? (r.handshake ? 'none' : dash)]);
  rows.push(['client cert', `${r.clientCertificate.status}: ${r.clientCertificate.detail}`]);
  if (r.chain.length === 0) rows.push(['chain', dash]);
  r.chain.forEach((c, i) => {
    const sans = c.subjectAltNames.length === 0 ? '' : `  SAN ${c.subjectAltNames.join(', ')}`;
    const anchor = c.selfSigned ? '  (self-signed)' : '';
    rows.push([
      i === 0 ? 'chain' : '',
      `[${i}] ${c.subject}  issuer ${c.issuer}  serial ${c.serial}  ${c.notBefore} .. ${c.notAfter}${sans}  ${c.spkiPin}${anchor}`,
    ]);
  });
  const leaf = r.leaf;
  rows.push(['SPIFFE IDs', leaf === null ? dash : leaf.spiffe.length === 0 ? 'none' : leaf.spiffe.join(', ')]);
  rows.push(['DNS names', leaf === null ? dash : leaf.dns.length === 0 ? 'none' : leaf.dns.join(', ')]);
  if (leaf !== null && leaf.ips.length > 0) rows.push(['IP addresses', leaf.ips.join(', ')]);
  rows.push(['SPKI pin', leaf?.spkiPin ?? dash]);
  rows.push(['valid from', leaf?.notBefore ?? dash]);
  rows.push([
    'valid to',
    leaf === null ? dash : `${leaf.notAfter} (${leaf.daysLeft >= 0 ? `${leaf.daysLeft} days left` : 'expired'})`,
  ]);

  const width = Math.max(...rows.map(([k]) => k.length), 'checks'.length) + 2;
  const lines = rows.map(([k, v]) => k.padEnd(width) + v);
  const nameWidth = Math.max(...checks.map((c) => c.name.length)) + 2;
  lines.push('checks');
  for (const c of checks) lines.push(`  ${c.ok ? '✔' : '✘'} ${c.name.padEnd(nameWidth)}${c.detail}`);
  const failed = checks.filter((c) => !c.ok).length;
  lines.push(ok ? 'result: ok' : `result: FAILED (${failed} of ${checks.length} checks)`);
  return lines;
}
