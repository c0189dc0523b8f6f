/**
 * `tollgate probe`: connect to a TLS endpoint the way tollgate would (same groups, ciphers,
 * TLS >= 1.2), record what was negotiated and what the server presented, and judge it.
 *
 * The connection is made with `rejectUnauthorized: false` so that a broken endpoint can still
 * be inspected; trust is judged afterwards from what OpenSSL found when it verified the chain
 * against the given CA (`authorized` / `authorizationError`), the hostname with
 * `tls.checkServerIdentity`, and validity against the clock. Nothing here throws for a network
 * or TLS failure: those end up in the report's `error`. judgeProbe.ts turns the report into checks.
 *
 * Only the probe command loads this folder; the listeners never do.
 */
import tls, { type ConnectionOptions, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { classifyHandshakeFailure } from '../tls/handshakeFailure.ts';
import { parseSubjectAltName, peerIdentity, spkiPinOf } from '../tls/peerIdentity.ts';
import { tlsPolicy } from '../tls/policy.ts';

const DAY_MS = 86_400_000;
/** ALPN offered unless told otherwise: what HTTP servers and gRPC speak. */
export const DEFAULT_PROBE_ALPN: readonly string[] = ['h2', 'http/1.1'];
/** After the handshake, how long to wait for a late refusal (TLS 1.3 servers judge the client certificate after the client has finished). */
const MIN_SETTLE_MS = 200;
const MAX_SETTLE_MS = 2000;

export interface ProbeOptions {
  readonly host: string;
  readonly port: number;
  /** PEM trust bundle the server's chain must verify against */
  readonly ca: string | Buffer;
  /** client certificate and key (PEM), offered if the server asks for one */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** the name the certificate must match, and the SNI when it is a DNS name; defaults to `host` */
  readonly serverName?: string;
  /** bound on the whole probe: TCP connect, handshake and the wait for a late refusal */
  readonly timeoutMs: number;
  /** ALPN protocols to offer; default h2, http/1.1 */
  readonly alpn?: readonly string[];
}

export interface CertificateSummary {
  readonly subject: string;
  readonly issuer: string;
  /** hex, as OpenSSL prints it */
  readonly serial: string;
  /** ISO 8601 */
  readonly notBefore: string;
  readonly notAfter: string;
  /** `URI:spiffe://…`, `DNS:name`, `IP Address:127.0.0.1`, … */
  readonly subjectAltNames: readonly string[];
  readonly spkiPin: string;
  readonly isCa: boolean;
  readonly selfSigned: boolean;
}

export interface LeafSummary {
  readonly subject: string;
  readonly spiffe: readonly string[];
  readonly dns: readonly string[];
  readonly ips: readonly string[];
  readonly spkiPin: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** whole days from the probe until notAfter; negative once expired */
  readonly daysLeft: number;
}

export type ProbeStage = 'connect' | 'handshake' | 'after-handshake';

export interface ProbeError {
  /** where it went wrong: TCP connect, TLS handshake, or right after the handshake (a late refusal) */
  readonly stage: ProbeStage;
  /** Node's error code (ECONNREFUSED, ERR_SSL_…), or ETIMEDOUT / ECONNRESET set by the probe */
  readonly code: string;
  /**
   * refused, timeout, dns, unreachable, closed, or for TLS failures one of the handshake failure
   * reasons (no_client_cert, unknown_ca, cert_expired, bad_certificate, protocol_version, …)
   */
  readonly reason: string;
  readonly message: string;
}

export type ClientCertificateStatus = 'accepted' | 'not-required' | 'required' | 'refused' | 'unknown';

export interface ProbeReport {
  /** HOST:PORT as dialled */
  readonly endpoint: string;
  readonly serverName: string;
  /** the SNI sent, or null when the server name is an IP address (RFC 6066 forbids those) */
  readonly sni: string | null;
  readonly probedAt: string;
  /** the TLS handshake completed (even if the server then refused us, or the chain is untrusted) */
  readonly handshake: boolean;
  readonly offered: {
    readonly minVersion: string;
    readonly groups: readonly string[];
    readonly alpn: readonly string[];
  };
  readonly tlsVersion: string | null;
  readonly cipher: string | null;
  /** the key-exchange group (X25519MLKEM768, X25519, P-256, …), or null when the runtime does not say */
  readonly group: string | null;
  /** whether that group is a hybrid post-quantum one */
  readonly postQuantum: boolean;
  readonly alpn: string | null;
  /** leaf first, then each issuer up to the self-signed trust anchor where known */
  readonly chain: readonly CertificateSummary[];
  readonly leaf: LeafSummary | null;
  readonly trust: {
    /** the chain verified against the CA (the leaf's own validity period aside); null when not known */
    readonly verified: boolean | null;
    /** OpenSSL's verification result, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED */
    readonly error: string | null;
  };
  readonly hostname: { readonly matches: boolean | null; readonly error: string | null };
  readonly clientCertificate: {
    readonly offered: boolean;
    readonly status: ClientCertificateStatus;
    readonly detail: string;
  };
  readonly error: ProbeError | null;
  readonly timing: { readonly connectMs: number | null; readonly handshakeMs: number | null };
}

/** What the server showed at the end of the handshake (or at a handshake failure, for TLS 1.2). */
interface Seen {
  tlsVersion: string | null;
  cipher: string | null;
  /** getEphemeralKeyInfo(): `{}` when unknown */
  keyInfo: object | null;
  alpn: string | null;
  chain: X509Certificate[];
  legacyLeaf: DetailedPeerCertificate | null;
  authorized: boolean | null;
  authorizationError: string | null;
}

export async function probeEndpoint(opts: ProbeOptions): Promise<ProbeReport> {
  const policy = tlsPolicy('TLSv1.2');
  const serverName = opts.serverName ?? opts.host;
  const sni = isIP(serverName) === 0 ? serverName : null;
  const alpn = [...(opts.alpn ?? DEFAULT_PROBE_ALPN)];
  const offeredCert = opts.cert !== undefined && opts.key !== undefined;
  const connectOptions: ConnectionOptions = {
    host: opts.host,
    port: opts.port,
    ca: opts.ca,
    rejectUnauthorized: false,
    // the hostname is judged separately, so `authorized` speaks for the chain alone
    checkServerIdentity: () => undefined,
    minVersion: policy.minVersion,
    maxVersion: policy.maxVersion,
    ciphers: policy.ciphers,
    ecdhCurve: policy.ecdhCurve,
    ALPNProtocols: alpn,
  };
  if (sni !== null) connectOptions.servername = sni;
  if (offeredCert) {
    connectOptions.cert = opts.cert;
    connectOptions.key = opts.key;
  }

  const probedAt = new Date();
  const started = performance.now();
  // throws synchronously for unusable options (a key that does not match its certificate): the caller's problem
  const socket = tls.connect(connectOptions);

  return new Promise<ProbeReport>((resolve) => {
    let stage: ProbeStage = 'connect';
    let connectMs: number | null = null;
    let handshakeMs: number | null = null;
    let seen: Seen | null = null;
    let done = false;
    let settleTimer: NodeJS.Timeout | undefined;

    const finish = (error: ProbeError | null): void => {
      if (done) return;
      done = true;
      clearTimeout(overall);
      clearTimeout(settleTimer);
      if (error === null) {
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      } else {
        socket.destroy();
      }
      resolve(
        buildReport({
          opts,
          serverName,
          sni,
          alpnOffered: alpn,
          groupsOffered: policy.ecdhCurve.split(':'),
          minVersion: policy.minVersion,
          offeredCert,
          probedAt,
          seen,
          stage,
          error,
          connectMs,
          handshakeMs,
        }),
      );
    };

    const overall = setTimeout(() => {
      const what = stage === 'connect' ? 'TCP connection' : stage === 'handshake' ? 'TLS handshake' : 'answer';
      finish({ stage, code: 'ETIMEDOUT', reason: 'timeout', message: `no ${what} within ${opts.timeoutMs} ms` });
    }, opts.timeoutMs);

    socket.once('connect', () => {
      connectMs = round(performance.now() - started);
      stage = 'handshake';
    });
    socket.once('secureConnect', () => {
      handshakeMs = round(performance.now() - started - (connectMs ?? 0));
      stage = 'after-handshake';
      seen = observe(socket, true);
      // Give a TLS 1.3 server the time to refuse our (missing) client certificate: its alert, or its
      // hang-up, arrives about one round trip after our Finished.
      const remaining = opts.timeoutMs - (performance.now() - started);
      const settle = Math.min(
        Math.max(MIN_SETTLE_MS, 3 * (connectMs ?? 0) + 50),
        MAX_SETTLE_MS,
        Math.max(0, remaining - 1),
      );
      settleTimer = setTimeout(() => finish(null), settle);
    });
    socket.on('data', () => undefined); // a server that talks first is still a live connection
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // TLS 1.2 refusals come before secureConnect; the certificate is still there to show
      if (seen === null && stage === 'handshake') seen = observe(socket, false);
      finish(describeError(err, stage, offeredCert));
    });
    socket.on('close', () => {
      if (stage === 'after-handshake') {
        finish({
          stage,
          code: 'ECONNRESET',
          reason: 'closed',
          message: offeredCert
            ? 'the server closed the connection right after the handshake: it probably refused the client certificate'
            : 'the server closed the connection right after the handshake',
        });
      } else {
        const during = stage === 'connect' ? 'TCP connect' : 'TLS handshake';
        finish({
          stage,
          code: 'ECONNRESET',
          reason: 'closed',
          message: `the connection was closed during the ${during}`,
        });
      }
    });
  });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function observe(socket: TLSSocket, complete: boolean): Seen {
  const legacy = safe(() => socket.getPeerCertificate(true)) ?? null;
  const legacyLeaf = legacy !== null && legacy.raw !== undefined ? legacy : null;
  const keyInfo = complete ? (safe(() => socket.getEphemeralKeyInfo()) ?? null) : null;
  const cipher = complete ? (safe(() => socket.getCipher()) ?? null) : null;
  return {
    tlsVersion: complete ? (socket.getProtocol() ?? null) : null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    keyInfo,
    alpn: complete && typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
    chain: legacyLeaf === null ? [] : walkChain(legacyLeaf),
    legacyLeaf,
    authorized: complete ? socket.authorized : null,
    authorizationError: complete && socket.authorizationError !== undefined ? String(socket.authorizationError) : null,
  };
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** leaf -> issuer -> … until a self-signed certificate (Node points its issuerCertificate at itself) or the end. */
function walkChain(leaf: DetailedPeerCertificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur: DetailedPeerCertificate | undefined = leaf;
  while (cur !== undefined && cur.raw !== undefined && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    out.push(new X509Certificate(cur.raw));
    const next: DetailedPeerCertificate | undefined = cur.issuerCertificate;
    if (next === undefined || next === cur || next.fingerprint256 === cur.fingerprint256) break;
    cur = next;
  }
  return out;
}

/** Client-side alerts the server-side classifier has no entry for. */
const CLIENT_SIDE_REASONS: Readonly<Record<string, string>> = {
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no_client_cert',
};

function describeError(err: NodeJS.ErrnoException, stage: ProbeStage, offeredCert: boolean): ProbeError {
  // a failure without a code of its own (Node always sets one for socket and TLS errors)
  const code = err.code ?? 'unknown';
  const opensslReason = (err as { reason?: unknown }).reason;
  const detail = typeof opensslReason === 'string' ? opensslReason : err.message.split('\n')[0]!;
  if (stage === 'connect') {
    const reason =
      code === 'ECONNREFUSED'
        ? 'refused'
        : code === 'ETIMEDOUT'
          ? 'timeout'
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? 'dns'
            : code === 'EHOSTUNREACH' || code === 'ENETUNREACH'
              ? 'unreachable'
              : 'other';
    const message =
      reason === 'refused' ? 'connection refused' : reason === 'dns' ? `cannot resolve the host (${code})` : detail;
    return { stage, code, reason, message };
  }
  const reason = CLIENT_SIDE_REASONS[code] ?? (code === 'ECONNRESET' ? 'closed' : classifyHandshakeFailure(err));
  let message = detail;
  if (reason === 'no_client_cert') {
    message = offeredCert
      ? `the server requires a client certificate and did not get one it accepts (${detail})`
      : `the server requires a client certificate and none was offered (${detail}); pass --cert and --key`;
  } else if (reason === 'closed') {
    const when = stage === 'after-handshake' ? 'right after the handshake' : 'during the handshake';
    message = offeredCert
      ? `the server hung up ${when}: it probably refused the client certificate`
      : `the server hung up ${when}`;
  } else if (!offeredCert && /handshake failure/i.test(detail)) {
    message = `${detail}: a TLS 1.2 server that requires a client certificate answers this way when none is offered`;
  } else if (reason === 'protocol_version' || reason === 'no_shared_cipher') {
    message = `${detail}: the server shares no protocol version, cipher or group with tollgate's TLS policy`;
  }
  return { stage, code, reason, message };
}

interface ReportInput {
  opts: ProbeOptions;
  serverName: string;
  sni: string | null;
  alpnOffered: string[];
  groupsOffered: string[];
  minVersion: string;
  offeredCert: boolean;
  probedAt: Date;
  seen: Seen | null;
  stage: ProbeStage;
  error: ProbeError | null;
  connectMs: number | null;
  handshakeMs: number | null;
}

function buildReport(r: ReportInput): ProbeReport {
  const seen = r.seen;
  const chain = seen?.chain ?? [];
  const leafCert = chain[0];
  const leaf = leafCert === undefined ? null : leafSummary(leafCert, r.probedAt);
  const group = groupName(seen?.keyInfo ?? null);
  return {
    endpoint: isIP(r.opts.host) === 6 ? `[${r.opts.host}]:${r.opts.port}` : `${r.opts.host}:${r.opts.port}`,
    serverName: r.serverName,
    sni: r.sni,
    probedAt: r.probedAt.toISOString(),
    handshake: r.stage === 'after-handshake',
    offered: { minVersion: r.minVersion, groups: r.groupsOffered, alpn: r.alpnOffered },
    tlsVersion: seen?.tlsVersion ?? null,
    cipher: seen?.cipher ?? null,
    group,
    postQuantum: group !== null && /MLKEM/i.test(group),
    alpn: seen?.alpn ?? null,
    chain: chain.map(summarize),
    leaf,
    trust: judgeTrust(seen, chain, r.probedAt),
    hostname: judgeHostname(seen, r.serverName),
    clientCertificate: clientCertificateOutcome(r),
    error: r.error,
    timing: { connectMs: r.connectMs, handshakeMs: r.handshakeMs },
  };
}

/**
 * Node names classic groups as OpenSSL's curve names (prime256v1) and reports TLS 1.3 groups
 * it has no key type for (the ML-KEM hybrids) as `{ type: 'TLSGroup', name }`; some 22.x
 * releases return `{}` for those, which shows as null.
 */
const CURVE_NAMES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

export function groupName(info: object | null): string | null {
  const name = (info as { name?: unknown } | null)?.name;
  if (typeof name !== 'string' || name === '') return null;
  return CURVE_NAMES[name] ?? name;
}

function summarize(x: X509Certificate): CertificateSummary {
  return {
    subject: oneLine(x.subject),
    issuer: oneLine(x.issuer),
    serial: x.serialNumber,
    notBefore: iso(new Date(x.validFrom)),
    notAfter: iso(new Date(x.validTo)),
    subjectAltNames: parseSubjectAltName(x.subjectAltName ?? '').map(([kind, value]) => `${kind}:${value}`),
    spkiPin: spkiPinOf(x),
    isCa: x.ca,
    selfSigned: x.subject === x.issuer && safe(() => x.verify(x.publicKey)) === true,
  };
}

/** ISO 8601 without the milliseconds certificates never have */
function iso(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

function oneLine(dn: string): string {
  return dn.split('\n').join(', ');
}

function leafSummary(x: X509Certificate, now: Date): LeafSummary {
  const id = peerIdentity(x);
  const ips = parseSubjectAltName(x.subjectAltName ?? '')
    .filter(([kind]) => kind === 'IP Address')
    .map(([, value]) => value);
  const notAfter = new Date(x.validTo);
  return {
    subject: id.subject,
    spiffe: id.spiffe,
    dns: id.dns,
    ips,
    spkiPin: id.spkiPin,
    notBefore: iso(new Date(x.validFrom)),
    notAfter: iso(notAfter),
    daysLeft: Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS),
  };
}

const TIME_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/**
 * OpenSSL stops at the first problem it finds. Its last step checks each certificate's
 * signature and then its dates, leaf last; so when the only problem reported is the leaf's
 * dates (no issuer out of its own period), everything else about the chain held. The leaf's
 * validity is then judged on its own, and the chain counts as verified.
 */
function judgeTrust(seen: Seen | null, chain: X509Certificate[], now: Date): ProbeReport['trust'] {
  if (seen === null || seen.authorized === null) return { verified: null, error: null };
  if (seen.authorized) return { verified: true, error: null };
  const error = seen.authorizationError;
  if (error !== null && TIME_ERRORS.has(error)) {
    const issuersInPeriod = chain.slice(1).every((c) => inPeriod(c, now));
    return { verified: issuersInPeriod, error };
  }
  return { verified: false, error };
}

function inPeriod(x: X509Certificate, now: Date): boolean {
  const t = now.getTime();
  return new Date(x.validFrom).getTime() <= t && t <= new Date(x.validTo).getTime();
}

function judgeHostname(seen: Seen | null, serverName: string): ProbeReport['hostname'] {
  if (seen === null || seen.legacyLeaf === null) return { matches: null, error: null };
  const err = tls.checkServerIdentity(serverName, seen.legacyLeaf);
  return err === undefined ? { matches: true, error: null } : { matches: false, error: err.message };
}

/** Failures after the client offered its certificate that mean the server would not take it. */
const REFUSED_CERTIFICATE: ReadonlySet<string> = new Set([
  'closed',
  'unknown_ca',
  'bad_certificate',
  'cert_expired',
  'cert_revoked',
]);

function clientCertificateOutcome(r: ReportInput): ProbeReport['clientCertificate'] {
  const offered = r.offeredCert;
  const e = r.error;
  if (e === null && r.stage === 'after-handshake') {
    return offered
      ? {
          offered,
          status: 'accepted',
          detail:
            'offered; the server kept the connection after the handshake (Node cannot tell whether it asked for it)',
        }
      : { offered, status: 'not-required', detail: 'none offered; the server did not require one' };
  }
  if (e !== null && e.reason === 'no_client_cert') {
    const detail = offered
      ? 'the server wanted a client certificate it accepts'
      : 'the server requires one and none was offered';
    return { offered, status: 'required', detail };
  }
  if (e !== null && e.stage !== 'connect' && offered && REFUSED_CERTIFICATE.has(e.reason)) {
    return { offered, status: 'refused', detail: `the server refused the connection after seeing it (${e.reason})` };
  }
  return {
    offered,
    status: 'unknown',
    detail: offered ? 'offered; the probe did not get far enough to tell' : 'none offered',
  };
}
