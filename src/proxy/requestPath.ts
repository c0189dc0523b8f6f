import type { Counter } from 'prom-client';
import type { CounterSeries, HistogramSeries } from '../telemetry/boundSeries.ts';
import type { Logger } from 'pino';
import { ERRORS, REFUSAL_BODIES, type ErrorCode, type UpstreamFailureReason } from '../core/errors.ts';
import { ALLOW, deny, type Decision } from '../core/decision.ts';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import { statusClass, type Metrics } from '../telemetry/metrics.ts';
import type { ClientProtocol, Exchange } from '../http1/exchange.ts';
import type { UpstreamConnection, UpstreamLink, RequestFraming } from '../http1/upstreamConnection.ts';
import type { ServerConnection } from '../http1/serverConnection.ts';
import type { ConnectionContext } from './connectionContext.ts';
import type { Upstream } from '../http1/upstreamPool.ts';
import {
  fieldLines,
  fieldValue,
  forwardedList,
  IDEMPOTENT_METHODS,
  NameSet,
  onlyChunked,
  PEER_HEADER,
} from '../http1/fields.ts';
import type { AnomalyStage, Flagged } from '../anomaly/anomalyStage.ts';
import type { PeerRateLimiter } from '../limits/tokenBucket.ts';
import { HeaderIndex, type MessageView } from '../integrity/signatureBase.ts';
import { verifyRequest } from '../integrity/verifier.ts';
import { signRequest } from '../integrity/signer.ts';
import {
  ArrivingDigest,
  contentDigestValue,
  DigestCheck,
  digestsMatch,
  isAcceptableContentDigest,
  type ExpectedDigest,
} from '../integrity/contentDigest.ts';
import type { ClientConnection } from './connectionContext.ts';
import { upstreamFailure } from './upstreamError.ts';
import { BodyDeadline } from './bodyDeadline.ts';
import { type Refusals, refusalAnswer, type RefusalSubject } from './refusals.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import { pipeSockets } from './tcpPipe.ts';
import { millis, targetForLog, type AccessEnd, type AccessLog } from '../telemetry/accessLog.ts';
import { authorizePeer, type CompiledAllow } from '../policy/authz.ts';
import { hash } from 'node:crypto';
import { nonceFingerprint } from '../integrity/nonceFingerprint.ts';
import type { ClaimVerdict, SharedRate, SharedStore } from '../sharedState/sharedStore.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

/**
 * The HTTP request path of one listener, on the HTTP/1.1 core (src/http1/). An exchange
 * passes the listener's header-phase stages in order, each allowing it or refusing it with
 * an ERR_ code; then its body is handled by the listener's body strategy; then it goes
 * upstream. The chains, as code:
 *
 *   inbound:  authorized at the handshake → well-formed request → peer rate → declared size
 *             → signature verified → size anomaly                → body: stream- or buffer-verify
 *             (without integrity: the same, with no signature)
 *   outbound: well-formed request → rate → declared size → signed (when the body is not needed)
 *                                                                  → body: buffer-sign
 *   gateway:  authorized at the handshake → well-formed request → routed (canonical path, first
 *             matching route), then the route's own path:
 *             allowed on the route → peer rate → declared size → signature verified → size anomaly
 *                                                                  → body: as inbound (re-signed when the route says so)
 *   any, without integrity:                                         → body: pass through
 *
 * Every refusal, whoever decides it (a stage, the parser, a body check, the upstream), goes
 * through `refuse`: one answer, one log line, one metric, one audit event (refusals.ts).
 */
export interface RequestPathDeps {
  readonly listener: ListenerConfig;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly clock: Clock;
  readonly refusals: Refusals;
  /** the `route` label: `default` on inbound and outbound listeners, the route's name on a gateway */
  readonly route: string;
  /** the header-phase stages and the body strategy (inboundChain, outboundChain, gatewayChain, routeChain) */
  readonly chain: Chain;
  /** the limits that apply per request (a gateway route's own, else the listener's) */
  readonly limits: ListenerConfig['limits'];
  readonly pool: Upstream;
  /** a gateway route that narrows the listener's allow-list, or null */
  readonly allow: CompiledAllow | null;
  /** a gateway route that re-signs what it forwards with the gateway's key, or null */
  readonly resign: SignStage | null;
  /** the gateway: the path of the route an exchange goes to, or a refusal; null elsewhere */
  readonly router: Router | null;
  /** replay cache and rate limits shared by the replicas (sharedState), or null: this process's own */
  readonly shared: SharedStore | null;
  /** outbound: the Host to send (the target's authority); inbound: null (keep the client's) */
  readonly hostOverride: string | null;
  /** the upstream speaks HTTP/2 (an app over h2c, a remote tollgate over h2): gRPC may go there */
  readonly upstreamHttp2: boolean;
  /** inbound: set x-tollgate-peer to the verified identity */
  readonly setPeerHeader: boolean;
  readonly isDraining: () => boolean;
  readonly integrity: IntegrityStage | null;
  readonly anomaly: AnomalyStage | null;
  readonly rateLimiter: PeerRateLimiter | null;
  /** counts tunnels (accepted upgrades) */
  readonly upgrades: ReturnType<Counter['labels']>;
  /** one line per request when on */
  readonly accessLog: AccessLog;
}

/**
 * One header-phase stage: allow, or refuse with a code. A stage that asks the shared state store
 * returns LATER and, once answered, hands its decision to `path.resumed` itself (a callback, not a
 * promise: no promise, reaction and microtask per request on the hot path).
 */
export type Stage = (path: RequestPath, ex: Exchange, conn: ClientConnection) => Decision | typeof LATER;

/** a stage's answer: the decision comes later, through RequestPath.resumed */
export const LATER = Symbol('later');

/** What happens to a request body, chosen once per listener. */
export type BodyStrategy = 'pass' | 'stream-verify' | 'buffer-verify' | 'buffer-sign';

export interface Chain {
  readonly stages: readonly Stage[];
  readonly body: BodyStrategy;
}

/** The gateway's choice of route for an exchange: the route's path, or a refusal (ERR_BAD_PATH, ERR_NO_ROUTE). */
export type Router = (ex: Exchange) => RequestPath | Decision;

type SignStage = IntegrityStage & { kind: 'sign' };

/**
 * The inbound chain. With shared state, the rate is the replicas' shared bucket and a verified
 * nonce is claimed once for the whole deployment (after this process's own cache, which answers
 * a replay it has seen without a round trip).
 */
export function inboundChain(integrity: IntegrityStage | null, shared: SharedStore | null = null): Chain {
  const rate = shared?.settings.rateLimits === true ? withinSharedRate : withinRate;
  if (integrity?.kind === 'verify') {
    const verified = shared?.settings.replay === true ? [signatureVerified, claimedOnce] : [signatureVerified];
    // the size anomaly is judged on authenticated messages only: an unsigned, forged or replayed request is refused
    // before it can raise an alarm (or, in block mode, be refused for its size instead of what it really is)
    return {
      stages: [authorizedAtHandshake, wellFormed, carriedOverHttp2, rate, declaredSize, ...verified, sizeAnomaly],
      body: integrity.bodyMode === 'stream' ? 'stream-verify' : 'buffer-verify',
    };
  }
  return {
    stages: [authorizedAtHandshake, wellFormed, carriedOverHttp2, rate, declaredSize, sizeAnomaly],
    body: 'pass',
  };
}

/** The outbound chain (the local app's requests, signed on their way to the remote peer). */
export function outboundChain(integrity: IntegrityStage | null): Chain {
  if (integrity?.kind === 'sign')
    return { stages: [wellFormed, carriedOverHttp2, withinRate, declaredSize, signedNow], body: 'buffer-sign' };
  return { stages: [wellFormed, carriedOverHttp2, withinRate, declaredSize], body: 'pass' };
}

/** A gateway listener's own chain, up to the choice of route; the route's chain follows (routeChain). */
export const GATEWAY_CHAIN: Chain = {
  stages: [authorizedAtHandshake, originFormTarget, wellFormed, routed],
  body: 'pass',
};

/** A gateway route's chain: the inbound one after its handshake and well-formed stages (the gateway's own), with the route's allow-list first. */
export function routeChain(integrity: IntegrityStage | null, shared: SharedStore | null = null): Chain {
  const inbound = inboundChain(integrity, shared);
  return { stages: [allowedOnRoute, ...inbound.stages.slice(2)], body: inbound.body };
}

/* ------------------------------------------------------------------ the stages */

/** The authorization decided once at the handshake, before any upstream was dialled; the connection then closes. */
function authorizedAtHandshake(_path: RequestPath, ex: Exchange, conn: ClientConnection): Decision {
  if (conn.ctx.allowed) return ALLOW;
  ex.closeAfter = true;
  return DENY_PEER;
}

/**
 * Gateway: only an origin-form target is routed (an absolute-form one, even naming the Host's own
 * authority, or `*` could be read two ways by what is behind); CONNECT is wellFormed's to refuse.
 */
function originFormTarget(_path: RequestPath, ex: Exchange): Decision {
  if (ex.target.charCodeAt(0) === 0x2f /* / */ || ex.method === 'CONNECT') return ALLOW;
  return deny('ERR_BAD_PATH', 'the request target is not origin-form');
}

/** Gateway: the route the request goes to (its path then takes the exchange), chosen on the canonical path. */
function routed(path: RequestPath, ex: Exchange): Decision {
  const chosen = path.deps.router!(ex);
  if (!(chosen instanceof RequestPath)) return chosen;
  ex.owner = chosen;
  return ALLOW;
}

/** Gateway: a route's own allow-list narrows the listener's (the peer passed that at its handshake). */
function allowedOnRoute(path: RequestPath, _ex: Exchange, conn: ClientConnection): Decision {
  const allow = path.deps.allow;
  const peer = conn.ctx.peer;
  if (allow === null) return ALLOW;
  if (peer !== null && path.allowedPeer(peer, allow)) return ALLOW;
  return deny('ERR_PEER_NOT_ALLOWED', `not allowed on route ${path.deps.route}`);
}

/**
 * gRPC is carried over HTTP/2 end to end (its status travels in trailers, which HTTP/1.1 here
 * does not pass): a call that came over HTTP/1.1, or whose upstream speaks HTTP/1.1, is refused.
 */
function carriedOverHttp2(path: RequestPath, ex: Exchange): Decision {
  if (!ex.grpc || (ex.protocol === 'h2' && path.deps.upstreamHttp2)) return ALLOW;
  return ex.protocol === 'h2' ? DENY_GRPC_UPSTREAM : DENY_GRPC_DOWNSTREAM;
}

/**
 * What the parser lets through but a security proxy must not guess about: CONNECT, codings
 * other than chunked, Host missing (HTTP/1.0 too) or repeated, a target that is not origin-form (an
 * absolute-form target naming the Host's own authority is rewritten to origin-form).
 */
function wellFormed(_path: RequestPath, ex: Exchange): Decision {
  if (ex.method === 'CONNECT') return DENY_CONNECT;
  const f = ex.framing;
  if (f.transferEncoding !== '' && !onlyChunked(f.transferEncoding)) return DENY_CODING;
  // HTTP/1.0 may leave Host out, but the request goes upstream as HTTP/1.1, which may not (and signatures cover the authority)
  if (f.hosts !== 1) return deny('ERR_BAD_REQUEST', f.hosts > 1 ? 'more than one Host field' : 'no Host field');
  const t = ex.target;
  if (t.charCodeAt(0) === 0x2f /* / */) return ALLOW;
  if (t === '*')
    return ex.method === 'OPTIONS'
      ? ALLOW
      : deny('ERR_BAD_REQUEST', 'asterisk-form target on a method other than OPTIONS');
  const origin = originFormOf(t, f.host);
  if (origin === null)
    return deny('ERR_BAD_REQUEST', 'a request target that is not origin-form, or names another authority than Host');
  ex.target = origin;
  return ALLOW;
}

function withinRate(path: RequestPath, ex: Exchange): Decision {
  const limiter = path.deps.rateLimiter;
  if (limiter === null) return ALLOW;
  const rate = limiter.take(ex.peer, path.deps.clock.now());
  if (rate.ok) return ALLOW;
  ex.extraFields = `retry-after: ${rate.retryAfterSeconds}\r\n`;
  return DENY_RATE;
}

/**
 * The peer's bucket shared by every replica (one script on the store). The store unreachable:
 * refused with 503 (`onUnavailable: refuse`), or this process's own bucket decides (`local`).
 */
function withinSharedRate(path: RequestPath, ex: Exchange, conn: ClientConnection): Decision | typeof LATER {
  const limiter = path.deps.rateLimiter;
  const shared = path.deps.shared!;
  if (limiter === null) return ALLOW;
  const { requestsPerSecond, burst } = limiter.options;
  shared.take(path.bucketPrefix + path.peerKey(ex.peer), requestsPerSecond, burst).then(
    (r) => path.resumed(ex, conn, sharedRateDecision(path, ex, r)),
    (err: Error) => path.resumed(ex, conn, deny('ERR_SHARED_STATE_UNAVAILABLE', err.message)),
  );
  return LATER;
}

function sharedRateDecision(path: RequestPath, ex: Exchange, r: SharedRate | 'unavailable'): Decision {
  if (r === 'unavailable') {
    if (path.deps.shared!.settings.onUnavailable === 'refuse') return DENY_SHARED_STATE;
    path.degraded('rate');
    return withinRate(path, ex);
  }
  if (r.ok) return ALLOW;
  ex.extraFields = `retry-after: ${r.retryAfterSeconds}\r\n`;
  return DENY_RATE;
}

/**
 * A verified nonce, claimed for the whole deployment: one SET NX on its keyed fingerprint. Of
 * copies sent to several replicas at once, exactly one is fresh. The store unreachable: refused
 * with 503, or accepted on this process's own cache (which it already passed) when `local`.
 */
function claimedOnce(path: RequestPath, ex: Exchange, conn: ClientConnection): Decision | typeof LATER {
  const integrity = path.deps.integrity as IntegrityStage & { kind: 'verify' };
  const fingerprint = nonceFingerprint(integrity.verifier, ex.keyId!, ex.nonce!);
  if (fingerprint === null) return deny('ERR_SIG_UNKNOWN_KEY', 'the key left the ring while the request was checked');
  const p = integrity.verifier.profile;
  // the store gathers the claims of this turn into one command (sharedState/claimBatch.ts)
  path.deps.shared!.claim(fingerprint, (p.maxAgeSeconds + p.skewSeconds) * 1000, (verdict) =>
    path.resumed(ex, conn, claimDecision(path, ex, verdict)),
  );
  return LATER;
}

function claimDecision(path: RequestPath, ex: Exchange, verdict: ClaimVerdict): Decision {
  if (verdict === 'replayed') return DENY_REPLAYED_ELSEWHERE;
  if (verdict === 'unavailable') {
    if (path.deps.shared!.settings.onUnavailable === 'refuse') return DENY_SHARED_STATE;
    path.degraded('replay');
  }
  // a request with a body is counted once its digest matched (the body strategy)
  if (!ex.hasBody) path.deps.refusals.countSignature('ok');
  return ALLOW;
}

function declaredSize(path: RequestPath, ex: Exchange): Decision {
  const length = ex.framing.contentLength;
  if (length > path.maxBodyBytes) return DENY_TOO_LARGE;
  // a declared body that cannot fit the check buffer is refused before its signature spends a nonce
  if (length > path.bufferLimit && (path.body === 'buffer-verify' || path.body === 'buffer-sign')) {
    if (path.body === 'buffer-verify' || !isAcceptableDigestField(ex.framing.contentDigest)) return DENY_TOO_LARGE;
  }
  return ALLOW;
}

function sizeAnomaly(path: RequestPath, ex: Exchange): Decision {
  if (path.deps.anomaly === null || ex.framing.contentLength <= 0) return ALLOW;
  return path.judgeSize(ex, ex.framing.contentLength) ? DENY_ANOMALY : ALLOW;
}

/** Inbound: the request's signature (headers only; the body is checked against its Content-Digest by the body strategy). */
function signatureVerified(path: RequestPath, ex: Exchange): Decision {
  const integrity = path.deps.integrity as IntegrityStage & { kind: 'verify' };
  const view: MessageView = {
    method: ex.method,
    target: ex.target,
    scheme: 'https',
    headers: HeaderIndex.fromRaw(ex.rawHeaders),
  };
  const v = verifyRequest(view, ex.hasBody, integrity.verifier);
  ex.keyId = v.keyId;
  if (!v.ok) return deny(v.code, v.detail);
  ex.nonce = v.nonce;
  const digests = v.digests ?? NO_DIGESTS;
  if (!ex.hasBody) {
    // no content: a Content-Digest, if sent, must still be the digest of nothing
    if (!digestsMatch(digests, EMPTY))
      return deny('ERR_DIGEST_MISMATCH', 'Content-Digest does not match an empty body');
    // with a shared replay store the signature is good once the deployment-wide claim holds (claimedOnce counts it)
    if (path.deps.shared?.settings.replay !== true) path.deps.refusals.countSignature('ok');
    return ALLOW;
  }
  ex.strategy = digests;
  return ALLOW;
}

/** Outbound: sign now what needs no body work (no body, or the app's own acceptable Content-Digest); the rest is signed once buffered. */
function signedNow(path: RequestPath, ex: Exchange): Decision {
  if (ex.hasBody && !isAcceptableDigestField(ex.framing.contentDigest)) return ALLOW;
  const fields = path.outgoingFields(ex, 'none');
  const refused = path.sign(ex, fields);
  if (refused !== null) return deny(refused);
  ex.strategy = fields;
  return ALLOW;
}

/* ------------------------------------------------------------------ the path */

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

export class RequestPath {
  readonly deps: RequestPathDeps;
  readonly stages: readonly Stage[];
  readonly body: BodyStrategy;
  readonly maxBodyBytes: number;
  /** the most body bytes held in memory for a check or a signature */
  readonly bufferLimit: number;
  readonly bodyGapMs: number;
  readonly minBodyRate: number;
  readonly idleTimeoutMs: number;
  /** by the protocol an exchange came over, then by status class */
  readonly requestsByClass: Record<ClientProtocol, Record<string, CounterSeries>>;
  readonly duration: HistogramSeries;
  readonly requestBytes: HistogramSeries;
  readonly responseBytes: HistogramSeries;
  /** what the fields sent upstream leave out, for this direction */
  readonly drops: (typeof DROPS)['inbound'];

  /** a route's allow-list decisions, per peer identity (the same identity object for every connection of one certificate) */
  readonly allowedPeers = new WeakMap<PeerIdentity, boolean>();
  /** peers' bucket keys in the shared store (bounded: cleared when full), after this path's `listener:route:` */
  readonly peerKeys = new Map<string, string>();
  readonly bucketPrefix: string;

  constructor(deps: RequestPathDeps) {
    this.deps = deps;
    this.drops = DROPS[deps.hostOverride !== null ? 'outbound' : deps.resign !== null ? 'resigned' : 'inbound'];
    this.stages = deps.chain.stages;
    this.body = deps.chain.body;
    const limits = deps.limits;
    this.maxBodyBytes = limits.maxBodyBytes;
    this.bufferLimit = Math.min(this.maxBodyBytes, deps.integrity?.maxBufferedBytes ?? this.maxBodyBytes);
    this.bodyGapMs = limits.bodyTimeoutSeconds * 1000;
    this.minBodyRate = limits.minBodyBytesPerSecond;
    this.idleTimeoutMs = limits.idleTimeoutSeconds * 1000;
    const name = deps.listener.name;
    const route = deps.route;
    this.bucketPrefix = `${name}:${route}:`;
    const byClass = (protocol: ClientProtocol): Record<string, CounterSeries> =>
      Object.fromEntries(STATUS_CLASSES.map((c) => [c, deps.metrics.requests.labels(name, route, c, protocol)]));
    this.requestsByClass = { 'http/1.1': byClass('http/1.1'), h2: byClass('h2') };
    this.duration = deps.metrics.requestDuration.labels(name, route);
    this.requestBytes = deps.metrics.payloadBytes.labels(name, route, 'request');
    this.responseBytes = deps.metrics.payloadBytes.labels(name, route, 'response');
  }

  /** the shared state store was unavailable and this process's own state answered (onUnavailable: local) */
  degraded(operation: 'replay' | 'rate'): void {
    this.deps.metrics.sharedStateOperations.labels(operation, 'degraded').inc();
  }

  /** a peer's identity as a bucket key in the shared store: a digest, fixed length whatever the identity */
  peerKey(peer: string): string {
    let key = this.peerKeys.get(peer);
    if (key === undefined) {
      key = hash('sha256', peer, 'base64url').slice(0, 22);
      if (this.peerKeys.size >= MAX_PEER_KEYS) this.peerKeys.clear();
      this.peerKeys.set(peer, key);
    }
    return key;
  }

  allowedPeer(peer: PeerIdentity, allow: CompiledAllow): boolean {
    let allowed = this.allowedPeers.get(peer);
    if (allowed === undefined) {
      allowed = authorizePeer(allow, peer).allowed;
      this.allowedPeers.set(peer, allowed);
    }
    return allowed;
  }

  /** An exchange's turn on its connection: the stages, then its body, then upstream. */
  start(ex: Exchange, conn: ClientConnection): void {
    ex.owner = this;
    const peer = conn.ctx.peer;
    ex.peer = peer?.display ?? LOCAL_PEER;
    ex.peerHeader = peer?.headerValue ?? LOCAL_PEER;
    if (this.deps.isDraining()) ex.closeAfter = true;
    if (ex.parserRefusal !== null) return this.refuse(ex, ex.parserRefusal, { cause: ex.rawHeaders[0] ?? null });
    this.stagesFrom(ex, conn, 0);
  }

  /**
   * The header-phase stages from `first` on. A stage that asks the shared state store answers
   * later: the chain goes on from the next stage when it has (unless the client left meanwhile).
   */
  stagesFrom(ex: Exchange, conn: ClientConnection, first: number): void {
    const stages = this.stages;
    for (let i = first; i < stages.length; i++) {
      ex.stage = i;
      const d = stages[i]!(this, ex, conn);
      if (d === LATER) return;
      if (!d.allow) return this.refuse(ex, d.code, d.detail === undefined ? null : { detail: d.detail });
    }
    // the gateway: the chosen route's path takes the exchange from here (its own stages, body and upstream)
    if (ex.owner !== this) return (ex.owner as RequestPath).start(ex, conn);
    this.afterStages(ex, conn);
  }

  /** the decision of the stage that answered LATER: refuse, or go on with the next (unless the client left meanwhile) */
  resumed(ex: Exchange, conn: ClientConnection, d: Decision): void {
    if (ex.finished || ex.clientGone) return;
    if (!d.allow) return this.refuse(ex, d.code, d.detail === undefined ? null : { detail: d.detail });
    this.stagesFrom(ex, conn, ex.stage + 1);
  }

  /** every stage allowed the exchange: its body, then upstream */
  afterStages(ex: Exchange, conn: ClientConnection): void {
    if (!ex.hasBody)
      return this.forward(
        ex,
        conn,
        ex.strategy === null ? this.outgoingFields(ex, 'none') : (ex.strategy as string[]),
        null,
        'none',
      );
    switch (this.body) {
      case 'pass':
        return this.stream(ex, conn, this.outgoingFields(ex, 'none'), null);
      case 'stream-verify':
        return this.stream(
          ex,
          conn,
          this.outgoingFields(ex, 'none'),
          new DigestCheck(ex.strategy as readonly ExpectedDigest[]),
        );
      case 'buffer-verify': {
        const digest = new ArrivingDigest((ex.strategy as readonly ExpectedDigest[]).map((d) => d.algorithm));
        return this.collect(ex, conn, digest, (body) => this.verifiedBody(ex, conn, digest, body));
      }
      case 'buffer-sign': {
        if (ex.strategy !== null) return this.stream(ex, conn, ex.strategy as string[], null);
        const digest = new ArrivingDigest(SIGNED_DIGEST);
        return this.collect(ex, conn, digest, (body) => this.signedBody(ex, conn, digest, body));
      }
    }
  }

  /* ---------------------------------------------------------------- bodies */

  /** Stream the body upstream as it comes (counted, timed, hashed when `check` is given: the last chunk waits for the verdict). */
  stream(ex: Exchange, conn: ClientConnection, fields: string[], check: DigestCheck | null): void {
    const framing: RequestFraming = ex.chunked ? 'chunked' : 'length';
    this.forward(ex, conn, fields, null, framing, (up) => {
      const reader = new StreamedBody(this, ex, conn, up, check);
      conn.sendContinue(ex);
      ex.read(reader);
    });
  }

  /** Hold the whole body (up to the buffer limit), hashed as it arrives, then `done`. */
  collect(ex: Exchange, conn: ClientConnection, digest: ArrivingDigest, done: (body: HeldBody) => void): void {
    conn.sendContinue(ex);
    ex.read(new CollectedBody(this, ex, conn, digest, done));
  }

  verifiedBody(ex: Exchange, conn: ClientConnection, digest: ArrivingDigest, body: HeldBody): void {
    if (!digest.matches(ex.strategy as readonly ExpectedDigest[]))
      return this.refuse(ex, 'ERR_DIGEST_MISMATCH', { detail: 'Content-Digest does not match the body' });
    this.deps.refusals.countSignature('ok');
    // a chunked body's size is known only now: judged whole, before any byte goes upstream
    if (ex.chunked && this.judgeSize(ex, body.bytes)) return this.refuse(ex, 'ERR_PAYLOAD_ANOMALY', null);
    const fields = this.outgoingFields(ex, 'length');
    fields.push('content-length', String(body.bytes));
    this.forward(ex, conn, fields, body, 'length');
  }

  signedBody(ex: Exchange, conn: ClientConnection, digest: ArrivingDigest, body: HeldBody): void {
    const fields = this.outgoingFields(ex, 'content');
    fields.push('content-digest', contentDigestValue(digest.digests()[0]!), 'content-length', String(body.bytes));
    const refused = this.sign(ex, fields);
    if (refused !== null) return this.refuse(ex, refused, null);
    this.forward(ex, conn, fields, body, 'length');
  }

  /* ---------------------------------------------------------------- upstream */

  /**
   * Send the exchange upstream on a pooled connection: its head, a body held whole, or (with
   * `streaming`) the body as it comes. One exchange of a connection at a time, so the pool
   * sees a client's pipelined requests one after another.
   */
  forward(
    ex: Exchange,
    conn: ClientConnection,
    fields: string[],
    body: HeldBody | null,
    framing: RequestFraming,
    streaming?: (up: UpstreamLink) => void,
  ): void {
    // a gateway route that re-signs: the producer's signature was verified and left out; the gateway's covers what goes upstream
    if (this.deps.resign !== null) {
      const refused = this.sign(ex, fields, this.deps.resign);
      if (refused !== null) return this.refuse(ex, refused, null);
    }
    // a body held whole has its content-length among the fields (the signature may cover it)
    let head = `${ex.method} ${ex.target} HTTP/1.1\r\n${fieldLines(fields)}`;
    if (body === null && framing === 'chunked') head += 'transfer-encoding: chunked\r\n';
    if (ex.upgrade && ex.framing.upgrade !== 'h2c') {
      head += `connection: upgrade\r\nupgrade: ${fieldValue(ex.rawHeaders, 'upgrade')}\r\n`;
      // a refused upgrade ends the connection: what the client sends after it is not HTTP
      ex.closeAfter = true;
    }
    head += '\r\n';
    ex.sentHead = head;
    ex.sentFields = fields;
    ex.heldBody = body === null ? null : body.chunks;
    if (body !== null) ex.bodyClock?.done();
    this.deps.pool.acquire((err, up) => {
      if (ex.finished || ex.clientGone) {
        if (up !== null) this.deps.pool.release(up, true);
        return;
      }
      if (err !== null || up === null) return this.upstreamFailed(ex, err ?? new Error('no upstream connection'));
      if (this.deps.accessLog.enabled) ex.upstreamAt = this.deps.clock.monotonic();
      up.begin(ex, conn, head, body === null ? null : body.chunks, framing);
      if (streaming !== undefined) streaming(up);
    }, ex);
  }

  /** UpstreamEvents: the upstream's final head came (the access log's upstream time). */
  answered(ex: Exchange): void {
    if (this.deps.accessLog.enabled) ex.upstreamHeadAt = this.deps.clock.monotonic();
    this.deps.pool.answered(ex.upstream as UpstreamLink, ex.status);
  }

  /** UpstreamEvents: the response is complete and relayed. */
  completed(ex: Exchange): void {
    this.record(ex);
    this.logAccess(ex, 'complete');
    (ex.host as ClientConnection).done(ex);
  }

  /**
   * UpstreamEvents: the exchange failed upstream. An idempotent request whose whole body is
   * held, that found a reused connection closed under it before any response byte (the race
   * keep-alive leaves open: the app closed an idle connection as the request went out), is
   * sent once more on a new connection (RFC 9110 §9.2.2); nothing else is retried.
   */
  failed(ex: Exchange, up: UpstreamLink, err: Error): void {
    const conn = ex.host as ClientConnection;
    if (ex.clientGone || ex.finished) {
      conn.ctx.log.debug(
        { method: ex.method },
        'client closed before the response completed; upstream request aborted',
      );
      if (!ex.finished) this.logAccess(ex, 'client_closed');
      return conn.done(ex);
    }
    this.deps.pool.failedOn(up, err);
    const lost = (err as { code?: unknown }).code === 'ECONNRESET' || (err as { code?: unknown }).code === 'EPIPE';
    const whole = !ex.hasBody || ex.heldBody !== null;
    if (
      lost &&
      whole &&
      up.uses > 1 &&
      !up.gotResponseBytes &&
      !ex.retried &&
      !ex.responded &&
      IDEMPOTENT_METHODS.has(ex.method)
    ) {
      ex.retried = true;
      conn.ctx.log.info(
        { method: ex.method, cause: 'ECONNRESET' },
        'upstream connection lost before a response: retrying once on a new connection',
      );
      this.deps.pool.fresh((e, fresh) => {
        if (ex.finished || ex.clientGone) {
          if (fresh !== null) this.deps.pool.release(fresh, true);
          return;
        }
        if (e !== null || fresh === null) return this.upstreamFailed(ex, e ?? err);
        if (this.deps.accessLog.enabled) ex.upstreamAt = this.deps.clock.monotonic();
        fresh.begin(ex, conn, ex.sentHead, ex.heldBody, ex.heldBody !== null ? 'length' : 'none');
      }, ex);
      return;
    }
    this.upstreamFailed(ex, err);
  }

  upstreamFailed(ex: Exchange, err: Error): void {
    const failure = upstreamFailure(err);
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code;
    this.refuse(ex, failure.code, { err: err.message, cause, retried: ex.retried }, failure.reason);
  }

  /** UpstreamEvents: the app switched protocols (101): from here the two sockets are one L4 pipe. */
  upgraded(ex: Exchange, up: UpstreamConnection, upstreamRest: Buffer | null): void {
    // only an HTTP/1.1 connection carries an upgrade
    const conn = ex.host as ServerConnection<ConnectionContext>;
    ex.status = 101;
    conn.handOver();
    const down = conn.socket;
    if (upstreamRest !== null) down.write(upstreamRest);
    if (ex.tunnelBytes !== null) up.socket.write(ex.tunnelBytes);
    this.deps.upgrades.inc();
    this.record(ex);
    this.logAccess(ex, 'upgraded');
    conn.done(ex);
    down.resume();
    up.socket.resume();
    pipeSockets(down, up.socket, this.idleTimeoutMs, {
      closed: (stats) => conn.ctx.log.debug({ ...stats, error: stats.error?.message }, 'upgraded connection closed'),
    });
  }

  /** The client left while the exchange was in flight: its upstream request is cut. */
  abandoned(ex: Exchange, conn: ClientConnection): void {
    ex.bodyClock?.done();
    const up = ex.upstream as UpstreamLink | null;
    if (up !== null && up.ex === ex) up.abort();
    conn.ctx.log.debug({ method: ex.method }, 'client closed before the response completed');
    this.logAccess(ex, 'client_closed');
    conn.done(ex);
  }

  /** The body was refused while it came (too large, an anomaly, a digest, too slow, malformed): its upstream request is cut. */
  bodyRefused(ex: Exchange, _conn: ClientConnection, code: ErrorCode, detail?: string): void {
    ex.bodyClock?.done();
    ex.reader = null;
    const up = ex.upstream as UpstreamLink | null;
    if (up !== null && up.ex === ex) up.abort();
    this.refuse(ex, code, detail === undefined ? null : { detail });
  }

  /* ---------------------------------------------------------------- refusals and records */

  /** The one refusal of an exchange: accounted (log, metric, audit), then answered, or the connection cut if the response had begun. */
  refuse(
    ex: Exchange,
    code: ErrorCode,
    detail: Record<string, unknown> | null,
    upstream?: UpstreamFailureReason,
  ): void {
    const conn = ex.host as ClientConnection;
    if (ex.finished) return;
    const f = ex.anomaly;
    const why =
      code === 'ERR_PAYLOAD_ANOMALY' && f !== null
        ? { ...detail, action: 'blocked', kind: f.kind, bytes: f.value, expected: f.expected }
        : detail;
    this.deps.refusals.account(code, this.subjectOf(ex, conn), why, upstream);
    ex.code = code;
    if (ex.clientGone) {
      this.logAccess(ex, 'client_closed');
      return conn.done(ex);
    }
    if (ex.responded) {
      // a response already under way cannot be turned into a refusal: it is cut short
      conn.cut();
      this.logAccess(ex, 'cut');
      return conn.done(ex);
    }
    ex.status = ERRORS[code].status;
    const close =
      ex.closeAfter ||
      !ex.bodyComplete ||
      ex.upgrade ||
      ex.parserRefusal !== null ||
      CLOSING_CODES.has(code) ||
      this.deps.isDraining();
    if (close) ex.closeAfter = true;
    ex.responded = true;
    ex.continuePending = false;
    const withBody = ex.method !== 'HEAD';
    conn.write(refusalAnswer(code, close, ex.extraFields, withBody));
    this.record(ex);
    this.logAccess(ex, 'refused');
    conn.done(ex);
  }

  /**
   * The access log's line for an exchange that ended, when the access log is on (the connection's logger names the
   * listener, connection and peer).
   */
  logAccess(ex: Exchange, end: AccessEnd): void {
    if (!this.deps.accessLog.enabled) return;
    const now = this.deps.clock.monotonic();
    const parsed = ex.parserRefusal === null;
    const target = parsed ? targetForLog(ex.target) : null;
    const upstreamNs =
      ex.upstreamAt > 0n && ex.upstreamHeadAt >= ex.upstreamAt ? ex.upstreamHeadAt - ex.upstreamAt : -1n;
    (ex.host as ClientConnection).ctx.log.info(
      {
        route: this.deps.route,
        method: parsed ? ex.method : null,
        path: target?.path ?? null,
        query: target?.query ?? null,
        status: ex.status,
        code: ex.code,
        end,
        bytesIn: ex.bodyBytes,
        // a refusal's answer is its fixed body (none for HEAD)
        bytesOut:
          end === 'refused' && ex.code !== null
            ? ex.method === 'HEAD'
              ? 0
              : REFUSAL_BODIES[ex.code].length
            : ex.responseBytes,
        durationMs: millis(now - ex.startedAt),
        upstreamMs: upstreamNs < 0n ? null : millis(upstreamNs),
        keyId: ex.keyId,
        retried: ex.retried,
      },
      'access',
    );
  }

  subjectOf(ex: Exchange, conn: ClientConnection): RefusalSubject {
    return {
      log: conn.ctx.log,
      route: this.deps.route,
      peer: conn.ctx.peer?.display ?? null,
      method: ex.parserRefusal === null ? ex.method : null,
      path: ex.parserRefusal === null ? pathOf(ex.target) : null,
      keyId: ex.keyId,
    };
  }

  /** Judge a body size known before forwarding; true when it must be refused (block mode). */
  judgeSize(ex: Exchange, bytes: number): boolean {
    const anomaly = this.deps.anomaly;
    if (anomaly === null) return false;
    const f = anomaly.judge(this.deps.route, ex.peer, bytes);
    if (f === null) return false;
    return this.sizeFlagged(ex, f);
  }

  /** Count one size anomaly; true when it must be blocked (the refusal then logs and audits it). */
  sizeFlagged(ex: Exchange, f: Flagged): boolean {
    const anomaly = this.deps.anomaly!;
    anomaly.flagged(
      this.deps.route,
      ex.peer,
      f,
      anomaly.block ? 'blocked' : 'observed',
      (ex.host as ClientConnection).ctx,
    );
    if (anomaly.block) ex.anomaly = f;
    return anomaly.block;
  }

  /** The exchange's answer is written: request metrics, payload sizes, and what the size and volume models learn. */
  record(ex: Exchange): void {
    this.requestsByClass[ex.protocol][statusClass(ex.status)]!.inc();
    this.duration.observe(Number(this.deps.clock.monotonic() - ex.startedAt) / 1e9);
    if (ex.forwarded) {
      this.requestBytes.observe(ex.bodyBytes);
      this.responseBytes.observe(ex.responseBytes);
    }
    const anomaly = this.deps.anomaly;
    if (anomaly !== null && ex.status < 400 && ex.status > 0)
      anomaly.accepted(
        this.deps.route,
        ex.peer,
        ex.bodyBytes > 0 ? ex.bodyBytes : null,
        (ex.host as ClientConnection).ctx,
      );
  }

  /** The fields to send upstream: hop-by-hop ones removed, x-tollgate-peer set (inbound) or Host replaced (outbound). */
  outgoingFields(ex: Exchange, drop: Drop): string[] {
    const d = this.deps;
    const fields = forwardedList(ex.rawHeaders, this.drops[drop]);
    if (d.hostOverride !== null) fields.push('host', d.hostOverride);
    if (d.setPeerHeader) fields.push(PEER_HEADER, ex.peerHeader);
    return fields;
  }

  /** Add Signature-Input and Signature to the outgoing fields; a refusal when the signing key is gone. */
  sign(ex: Exchange, fields: string[], stage = this.deps.integrity as SignStage): ErrorCode | null {
    const key = stage.keys().get(stage.keyId);
    if (key === undefined) return 'ERR_SIG_UNKNOWN_KEY';
    const view: MessageView = {
      method: ex.method,
      target: ex.target,
      scheme: 'https',
      headers: HeaderIndex.fromRaw(fields),
    };
    const s = signRequest(view, {
      keyId: stage.keyId,
      key,
      macs: stage.macs,
      nonces: stage.nonces,
      templates: stage.templates,
      tag: stage.tag,
      created: Math.floor(this.deps.clock.now() / 1000),
    });
    fields.push('signature-input', s.signatureInput, 'signature', s.signature);
    return null;
  }

  /** The body deadline of an exchange whose body is being read: too slow a client gets 408. */
  deadlineFor(ex: Exchange, conn: ClientConnection): BodyDeadline {
    const d = new BodyDeadline(this.bodyGapMs, this.minBodyRate, this.deps.clock, (err) =>
      this.bodyRefused(ex, conn, 'ERR_BODY_TIMEOUT', err.message),
    );
    ex.bodyClock = d;
    return d;
  }
}

/* ------------------------------------------------------------------ body readers */

/**
 * A body streamed upstream: counted against the limit (and, when chunked, the largest normal
 * size), timed, and — in stream-verify — hashed, with the last chunk held back until the
 * whole body matched its Content-Digest, so the app never gets a complete body that did not.
 */
class StreamedBody {
  readonly path: RequestPath;
  readonly ex: Exchange;
  readonly conn: ClientConnection;
  readonly up: UpstreamLink;
  readonly check: DigestCheck | null;
  readonly deadline: BodyDeadline;
  /** a chunked body passing this many bytes is judged as a size anomaly, once (then Infinity) */
  watchBound: number;
  bytes = 0;
  held: Buffer | null = null;
  stopped = false;

  constructor(path: RequestPath, ex: Exchange, conn: ClientConnection, up: UpstreamLink, check: DigestCheck | null) {
    this.path = path;
    this.ex = ex;
    this.conn = conn;
    this.up = up;
    this.check = check;
    const anomaly = path.deps.anomaly;
    this.watchBound = ex.chunked && anomaly !== null ? anomaly.upperBound(path.deps.route, ex.peer) : Infinity;
    this.deadline = path.deadlineFor(ex, conn);
    this.deadline.waiting();
  }

  data(chunk: Buffer): void {
    if (this.stopped) return;
    this.deadline.received(chunk.length);
    this.bytes += chunk.length;
    if (this.bytes > this.path.maxBodyBytes)
      return this.stop('ERR_PAYLOAD_TOO_LARGE', `body over ${this.path.maxBodyBytes} bytes`);
    if (this.bytes > this.watchBound) {
      const anomaly = this.path.deps.anomaly!;
      const bound = this.watchBound;
      this.watchBound = Infinity;
      const route = this.path.deps.route;
      const f = { kind: 'too_large', value: this.bytes, expected: anomaly.sizes.typicalSize(route, this.ex.peer) };
      if (this.path.sizeFlagged(this.ex, f))
        return this.stop('ERR_PAYLOAD_ANOMALY', `body passed ${bound} bytes, the largest normal size`);
    }
    if (this.check === null) return this.up.data(chunk);
    this.check.update(chunk);
    if (this.held !== null) this.up.data(this.held);
    this.held = chunk;
  }

  flush(): void {
    if (!this.stopped) this.up.flush();
  }

  end(): void {
    if (this.stopped) return;
    this.deadline.done();
    if (this.check !== null) {
      if (!this.check.matches())
        return this.stop('ERR_DIGEST_MISMATCH', 'Content-Digest does not match the streamed body');
      this.path.deps.refusals.countSignature('ok');
      if (this.held !== null) this.up.data(this.held);
      this.held = null;
    }
    this.up.end();
  }

  stop(code: ErrorCode, detail: string): void {
    this.stopped = true;
    this.path.bodyRefused(this.ex, this.conn, code, detail);
  }
}

/** A body held whole: its chunks as they came (never copied into one buffer) and their total. */
export interface HeldBody {
  readonly chunks: Buffer[];
  readonly bytes: number;
}

/** A body held whole, up to the buffer limit, hashed as it arrives, then handed on. */
class CollectedBody {
  readonly path: RequestPath;
  readonly ex: Exchange;
  readonly conn: ClientConnection;
  readonly digest: ArrivingDigest;
  readonly done: (body: HeldBody) => void;
  readonly deadline: BodyDeadline;
  chunks: Buffer[] = [];
  bytes = 0;
  stopped = false;

  constructor(
    path: RequestPath,
    ex: Exchange,
    conn: ClientConnection,
    digest: ArrivingDigest,
    done: (body: HeldBody) => void,
  ) {
    this.path = path;
    this.ex = ex;
    this.conn = conn;
    this.digest = digest;
    this.done = done;
    this.deadline = path.deadlineFor(ex, conn);
    this.deadline.waiting();
  }

  data(chunk: Buffer): void {
    if (this.stopped) return;
    this.deadline.received(chunk.length);
    this.bytes += chunk.length;
    if (this.bytes > this.path.bufferLimit) {
      this.stopped = true;
      this.chunks = [];
      return this.path.bodyRefused(
        this.ex,
        this.conn,
        'ERR_PAYLOAD_TOO_LARGE',
        `body over ${this.path.bufferLimit} bytes`,
      );
    }
    this.digest.update(chunk);
    this.chunks.push(chunk);
  }

  flush(): void {
    // held until the end anyway
  }

  end(): void {
    if (this.stopped) return;
    this.deadline.done();
    const body: HeldBody = { chunks: this.chunks, bytes: this.bytes };
    this.chunks = [];
    this.done(body);
  }
}

/* ------------------------------------------------------------------ small things */

const LOCAL_PEER = 'local';
/** what the outbound computes for a body it signs */
const SIGNED_DIGEST = ['sha-256'] as const;
const EMPTY = Buffer.alloc(0);
const NO_DIGESTS: readonly ExpectedDigest[] = [];
/** what the fields sent upstream leave out: per direction (inbound: the client's x-tollgate-peer; outbound: Host), and the body's own fields when tollgate sets them */
const DROPS = {
  inbound: {
    none: new NameSet([PEER_HEADER]),
    length: new NameSet([PEER_HEADER, 'content-length']),
    content: new NameSet([PEER_HEADER, 'content-length', 'content-digest']),
  },
  /** a gateway route that re-signs: the producer's signature is replaced by the gateway's */
  resigned: {
    none: new NameSet([PEER_HEADER, 'signature', 'signature-input']),
    length: new NameSet([PEER_HEADER, 'signature', 'signature-input', 'content-length']),
    content: new NameSet([PEER_HEADER, 'signature', 'signature-input', 'content-length', 'content-digest']),
  },
  outbound: {
    none: new NameSet(['host']),
    length: new NameSet(['host', 'content-length']),
    content: new NameSet(['host', 'content-length', 'content-digest']),
  },
} as const;
type Drop = keyof (typeof DROPS)['inbound'];
/** refusals after which the connection is not trusted with another request */
const CLOSING_CODES: ReadonlySet<ErrorCode> = new Set([
  'ERR_BAD_REQUEST',
  'ERR_BAD_PATH',
  'ERR_UNSUPPORTED_CODING',
  'ERR_METHOD_NOT_ALLOWED',
]);
const DENY_PEER = deny('ERR_PEER_NOT_ALLOWED');
const DENY_CONNECT = deny('ERR_METHOD_NOT_ALLOWED', 'CONNECT is not proxied');
const DENY_CODING = deny('ERR_UNSUPPORTED_CODING');
const DENY_GRPC_UPSTREAM = deny('ERR_GRPC_NEEDS_HTTP2', 'the upstream of this listener or route speaks HTTP/1.1');
const DENY_GRPC_DOWNSTREAM = deny('ERR_GRPC_NEEDS_HTTP2', 'a gRPC call came over HTTP/1.1');
const DENY_RATE = deny('ERR_RATE_LIMITED');
const DENY_TOO_LARGE = deny('ERR_PAYLOAD_TOO_LARGE');
const DENY_ANOMALY = deny('ERR_PAYLOAD_ANOMALY');
const DENY_SHARED_STATE = deny('ERR_SHARED_STATE_UNAVAILABLE');
const DENY_REPLAYED_ELSEWHERE = deny('ERR_SIG_REPLAYED', 'nonce already accepted by this deployment');
const MAX_PEER_KEYS = 10_000;

function isAcceptableDigestField(value: string | null): boolean {
  return value !== null && isAcceptableContentDigest(value);
}

/**
 * An absolute-form target (`http://host:port/path?q`) as origin-form, when its authority is
 * the Host field's (RFC 9112 §3.2.2: a server must use the target's authority and may not
 * let the two disagree); null for anything else.
 */
function originFormOf(target: string, host: string): string | null {
  const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(target);
  if (m === null) return null;
  if (m[1]!.toLowerCase() !== host.toLowerCase() || m[1] === '') return null;
  const rest = m[2]!;
  return rest === '' ? '/' : rest.charCodeAt(0) === 0x3f /* ? */ ? `/${rest}` : rest;
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}
