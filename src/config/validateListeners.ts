/**
 * The `listeners` section: each listener's common fields, the part its mode adds (inbound:
 * allow-list, loopback target; outbound: server name, verification, loopback listen), its
 * anomaly and limits, and distinct names across the list.
 */
import { DEFAULT_ANOMALY, DEFAULT_LIMITS, DEFAULT_PROTOCOL } from './defaults.ts';
import { formatHostPort, isLoopbackHost } from './hostPort.ts';
import type { HostPort, LimitsConfig, ListenerConfig, ListenerMode, TargetProtocol } from './types.ts';
import { validateListenerIntegrity } from './validateIntegrity.ts';
import { validateRoutes } from './validateRoutes.ts';
import { validateAnomaly } from './validateAnomaly.ts';
import { EMPTY_ALLOW, EMPTY_VERIFY, validateAllow, validateVerify } from './validatePeers.ts';
import {
  at,
  booleanValue,
  checkKeys,
  isObject,
  listenAddress,
  misplacedAs,
  nonNegativeInteger,
  nonNegativeNumber,
  oneOf,
  positiveInteger,
  read,
  report,
  REQUIRED,
  seconds,
  section,
  targetAddress,
  UNSET_ADDRESS,
  type Ctx,
  type Obj,
  labelName,
  serverNameValue,
  ok,
  bad,
  type Parser,
} from './validateReaders.ts';

export function validateListeners(ctx: Ctx, value: unknown, path: string, keysDir: string | null): ListenerConfig[] {
  if (value === undefined) {
    report(ctx, path, 'required: at least one listener');
    return [];
  }
  if (!Array.isArray(value)) {
    report(ctx, path, 'expected an array of listeners');
    return [];
  }
  if (value.length === 0) report(ctx, path, 'at least one listener is required');
  const listeners = value.map((item: unknown, i) => validateListener(ctx, item, `${path}[${i}]`, keysDir));
  checkDistinctNames(ctx, listeners, path);
  return listeners;
}

const COMMON_LISTENER_KEYS = [
  'name',
  'mode',
  'protocol',
  'listen',
  'target',
  'integrity',
  'anomaly',
  'limits',
  'http2',
];
const INBOUND_ONLY_KEYS = ['allow', 'unsafeTarget', 'targetProtocol'];
const OUTBOUND_ONLY_KEYS = ['serverName', 'verify', 'unsafeListen'];

function validateListener(ctx: Ctx, value: unknown, path: string, keysDir: string | null): ListenerConfig {
  if (!isObject(value)) {
    report(ctx, path, 'expected an object');
    return placeholderListener('', UNSET_ADDRESS);
  }
  const o = value;
  const name = read(ctx, o, path, 'name', labelName, '', REQUIRED);
  const mode = read(ctx, o, path, 'mode', oneOf(['inbound', 'outbound', 'gateway'] as const), null, REQUIRED);
  if (mode === 'gateway') return validateGateway(ctx, o, path, name, keysDir);
  checkListenerKeys(ctx, o, path, mode);
  const protocol = read(ctx, o, path, 'protocol', oneOf(['http', 'tcp'] as const), DEFAULT_PROTOCOL);
  const listen = read(ctx, o, path, 'listen', listenAddress, UNSET_ADDRESS, REQUIRED);
  const target = read(ctx, o, path, 'target', targetAddress, UNSET_ADDRESS, REQUIRED);
  const common: ListenerCommon = {
    name,
    protocol,
    listen,
    target,
    http2: readHttp2(ctx, o, path, protocol),
    anomaly: validateAnomaly(ctx, o.anomaly, at(path, 'anomaly')),
    limits: validateLimits(ctx, o.limits, at(path, 'limits')),
  };
  if (mode === 'inbound') return assembleListener(common, validateInboundPart(ctx, o, path, common, keysDir));
  if (mode === 'outbound') return assembleListener(common, validateOutboundPart(ctx, o, path, common, keysDir));
  return placeholderListener(name, listen);
}

/** Fields in a fixed, readable order (this is what `GET /config` shows). */
function assembleListener(c: ListenerCommon, m: ModePart): ListenerConfig {
  return {
    name: c.name,
    mode: m.mode,
    protocol: c.protocol,
    listen: c.listen,
    target: c.target,
    allow: m.allow,
    serverName: m.serverName,
    verify: m.verify,
    integrity: m.integrity,
    anomaly: c.anomaly,
    limits: c.limits,
    unsafeTarget: m.unsafeTarget,
    unsafeListen: m.unsafeListen,
    http2: c.http2,
    targetProtocol: m.targetProtocol,
    routes: [],
  };
}

/** `http2`: on by default for HTTP; a TCP listener carries bytes, so it has nothing to offer */
function readHttp2(ctx: Ctx, o: Obj, path: string, protocol: ListenerConfig['protocol']): boolean {
  const on = read(ctx, o, path, 'http2', booleanValue, protocol === 'http');
  if (on && protocol !== 'http')
    report(ctx, at(path, 'http2'), 'only an HTTP listener speaks HTTP/2 (protocol "tcp" passes bytes)');
  return on && protocol === 'http';
}

/** the largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1) */
const MAX_WINDOW = 2 ** 31 - 1;

const windowBytes: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) >= 65_535 && (v as number) <= MAX_WINDOW
    ? ok(v as number)
    : bad(`expected 65535 to ${MAX_WINDOW} (RFC 9113's initial window up to its largest)`);

type ListenerCommon = Pick<ListenerConfig, 'name' | 'protocol' | 'listen' | 'target' | 'anomaly' | 'limits' | 'http2'>;
type ModePart = Omit<ListenerConfig, keyof ListenerCommon | 'routes'>;

function checkListenerKeys(ctx: Ctx, o: Obj, path: string, mode: Exclude<ListenerMode, 'gateway'> | null): void {
  if (mode === null) {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...INBOUND_ONLY_KEYS, ...OUTBOUND_ONLY_KEYS]);
  } else if (mode === 'inbound') {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...INBOUND_ONLY_KEYS], {
      misplaced: misplacedAs(OUTBOUND_ONLY_KEYS, 'is for outbound listeners only'),
    });
  } else {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...OUTBOUND_ONLY_KEYS], {
      misplaced: misplacedAs(INBOUND_ONLY_KEYS, 'is for inbound listeners only'),
    });
  }
}

const GATEWAY_KEYS = [
  'name',
  'mode',
  'protocol',
  'listen',
  'allow',
  'integrity',
  'anomaly',
  'limits',
  'routes',
  'http2',
];

/**
 * Gateway: mTLS in as inbound, then an ordered route table; each route names its own targets,
 * so the listener has none (and, sending to other hosts by design, needs no unsafeTarget).
 */
function validateGateway(ctx: Ctx, o: Obj, path: string, name: string, keysDir: string | null): ListenerConfig {
  checkKeys(ctx, o, path, GATEWAY_KEYS, {
    misplaced: new Map([
      ['target', 'a gateway sends to the targets of its routes (routes[].targets)'],
      ['unsafeTarget', 'a gateway sends to the targets of its routes; use upstreamTls or integrity.sign on a route'],
      ...OUTBOUND_ONLY_KEYS.map((k): [string, string] => [k, 'is for outbound listeners only']),
    ]),
  });
  const protocol = read(ctx, o, path, 'protocol', oneOf(['http', 'tcp'] as const), DEFAULT_PROTOCOL);
  if (protocol !== 'http') report(ctx, at(path, 'protocol'), 'a gateway routes HTTP requests: expected "http"');
  const integrity = validateListenerIntegrity(ctx, o.integrity, at(path, 'integrity'), 'gateway', 'http', keysDir);
  const anomaly = validateAnomaly(ctx, o.anomaly, at(path, 'anomaly'));
  const limits = validateLimits(ctx, o.limits, at(path, 'limits'));
  return {
    name,
    mode: 'gateway',
    protocol: 'http',
    listen: read(ctx, o, path, 'listen', listenAddress, UNSET_ADDRESS, REQUIRED),
    target: UNSET_ADDRESS,
    allow: validateAllow(ctx, o.allow, at(path, 'allow')),
    serverName: '',
    verify: EMPTY_VERIFY,
    integrity,
    anomaly,
    limits,
    unsafeTarget: false,
    unsafeListen: false,
    http2: read(ctx, o, path, 'http2', booleanValue, true),
    targetProtocol: 'http1',
    routes: validateRoutes(ctx, o.routes, at(path, 'routes'), { integrity, limits, anomaly, keysDir }),
  };
}

/** Inbound: TLS in, plaintext out to the local app, so the target stays on loopback unless said otherwise. */
function validateInboundPart(ctx: Ctx, o: Obj, path: string, common: ListenerCommon, keysDir: string | null): ModePart {
  const unsafeTarget = read(ctx, o, path, 'unsafeTarget', booleanValue, false);
  if (common.target !== UNSET_ADDRESS && !unsafeTarget && !isLoopbackHost(common.target.host)) {
    report(
      ctx,
      at(path, 'target'),
      `${formatHostPort(common.target)} is off loopback; an inbound listener sends plaintext to its target, so set unsafeTarget: true if this is intended`,
    );
  }
  return {
    mode: 'inbound',
    allow: validateAllow(ctx, o.allow, at(path, 'allow')),
    serverName: common.target.host,
    verify: EMPTY_VERIFY,
    integrity: validateListenerIntegrity(ctx, o.integrity, at(path, 'integrity'), 'inbound', common.protocol, keysDir),
    unsafeTarget,
    unsafeListen: false,
    targetProtocol: readTargetProtocol(ctx, o, path, common.protocol),
  };
}

/** inbound `targetProtocol`: HTTP/1.1 to the app unless it speaks h2c (gRPC servers do); HTTP listeners only */
function readTargetProtocol(ctx: Ctx, o: Obj, path: string, protocol: ListenerConfig['protocol']): TargetProtocol {
  const value = read(ctx, o, path, 'targetProtocol', oneOf(['http1', 'h2c'] as const), 'http1');
  if (value === 'h2c' && protocol !== 'http')
    report(
      ctx,
      at(path, 'targetProtocol'),
      'only an HTTP listener speaks h2c to its app (protocol "tcp" passes bytes)',
    );
  return value;
}

/** Outbound: plaintext in from the local app, so the listen address stays on loopback unless said otherwise. */
function validateOutboundPart(
  ctx: Ctx,
  o: Obj,
  path: string,
  common: ListenerCommon,
  keysDir: string | null,
): ModePart {
  const unsafeListen = read(ctx, o, path, 'unsafeListen', booleanValue, false);
  if (common.listen !== UNSET_ADDRESS && !unsafeListen && !isLoopbackHost(common.listen.host)) {
    report(
      ctx,
      at(path, 'listen'),
      `${formatHostPort(common.listen)} is off loopback; an outbound listener accepts plaintext, so set unsafeListen: true if this is intended`,
    );
  }
  return {
    mode: 'outbound',
    allow: EMPTY_ALLOW,
    serverName: read(ctx, o, path, 'serverName', serverNameValue, common.target.host),
    verify: validateVerify(ctx, o.verify, at(path, 'verify')),
    integrity: validateListenerIntegrity(ctx, o.integrity, at(path, 'integrity'), 'outbound', common.protocol, keysDir),
    unsafeTarget: false,
    unsafeListen,
    targetProtocol: 'http1',
  };
}

function validateLimits(ctx: Ctx, value: unknown, path: string): LimitsConfig {
  const o = section(ctx, value, path, Object.keys(DEFAULT_LIMITS));
  const d = DEFAULT_LIMITS;
  const requestsPerSecond = read(ctx, o, path, 'requestsPerSecond', nonNegativeNumber, d.requestsPerSecond);
  const burst = read(ctx, o, path, 'burst', nonNegativeInteger, d.burst);
  const maxConcurrentHandshakes = read(
    ctx,
    o,
    path,
    'maxConcurrentHandshakes',
    positiveInteger,
    d.maxConcurrentHandshakes,
  );
  // 0 (the default) derives it from the cap; a value above the cap would never apply
  const perSource = read(ctx, o, path, 'maxHandshakesPerSource', nonNegativeInteger, d.maxHandshakesPerSource);
  if (perSource > maxConcurrentHandshakes) {
    report(
      ctx,
      at(path, 'maxHandshakesPerSource'),
      `at most maxConcurrentHandshakes (${maxConcurrentHandshakes}); 0 derives a quarter of it`,
    );
  }
  return {
    maxBodyBytes: read(ctx, o, path, 'maxBodyBytes', positiveInteger, d.maxBodyBytes),
    maxHeaderBytes: read(ctx, o, path, 'maxHeaderBytes', positiveInteger, d.maxHeaderBytes),
    requestsPerSecond,
    // A rate with no burst would refuse everything; 0 means "one second's worth".
    burst: requestsPerSecond > 0 && burst === 0 ? Math.max(1, Math.ceil(requestsPerSecond)) : burst,
    maxConnections: read(ctx, o, path, 'maxConnections', positiveInteger, d.maxConnections),
    maxConcurrentHandshakes,
    maxHandshakesPerSource: perSource === 0 ? Math.max(1, Math.ceil(maxConcurrentHandshakes / 4)) : perSource,
    clientHelloTimeoutSeconds: read(ctx, o, path, 'clientHelloTimeoutSeconds', seconds, d.clientHelloTimeoutSeconds),
    handshakeTimeoutSeconds: read(ctx, o, path, 'handshakeTimeoutSeconds', seconds, d.handshakeTimeoutSeconds),
    headersTimeoutSeconds: read(ctx, o, path, 'headersTimeoutSeconds', seconds, d.headersTimeoutSeconds),
    bodyTimeoutSeconds: read(ctx, o, path, 'bodyTimeoutSeconds', seconds, d.bodyTimeoutSeconds),
    minBodyBytesPerSecond: read(ctx, o, path, 'minBodyBytesPerSecond', nonNegativeInteger, d.minBodyBytesPerSecond),
    idleTimeoutSeconds: read(ctx, o, path, 'idleTimeoutSeconds', seconds, d.idleTimeoutSeconds),
    upstreamTimeoutSeconds: read(ctx, o, path, 'upstreamTimeoutSeconds', seconds, d.upstreamTimeoutSeconds),
    http2MaxConcurrentStreams: read(
      ctx,
      o,
      path,
      'http2MaxConcurrentStreams',
      positiveInteger,
      d.http2MaxConcurrentStreams,
    ),
    http2HeaderTableBytes: read(ctx, o, path, 'http2HeaderTableBytes', nonNegativeInteger, d.http2HeaderTableBytes),
    http2StreamWindowBytes: read(ctx, o, path, 'http2StreamWindowBytes', windowBytes, d.http2StreamWindowBytes),
    http2ConnectionWindowBytes: read(
      ctx,
      o,
      path,
      'http2ConnectionWindowBytes',
      windowBytes,
      d.http2ConnectionWindowBytes,
    ),
    http2MaxResetsPerSecond: read(ctx, o, path, 'http2MaxResetsPerSecond', positiveInteger, d.http2MaxResetsPerSecond),
    http2MaxPingsPerSecond: read(ctx, o, path, 'http2MaxPingsPerSecond', positiveInteger, d.http2MaxPingsPerSecond),
    http2MaxSettingsPerSecond: read(
      ctx,
      o,
      path,
      'http2MaxSettingsPerSecond',
      positiveInteger,
      d.http2MaxSettingsPerSecond,
    ),
  };
}

function checkDistinctNames(ctx: Ctx, listeners: readonly ListenerConfig[], path: string): void {
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    if (l.name === '') return;
    const first = seen.get(l.name);
    if (first === undefined) seen.set(l.name, i);
    else report(ctx, `${path}[${i}].name`, `"${l.name}" is already the name of ${path}[${first}]`);
  });
}

/** A listener that failed early (no mode): enough for the name and address checks. */
function placeholderListener(name: string, listen: HostPort): ListenerConfig {
  return {
    name,
    mode: 'inbound',
    protocol: DEFAULT_PROTOCOL,
    listen,
    target: UNSET_ADDRESS,
    allow: EMPTY_ALLOW,
    serverName: '',
    verify: EMPTY_VERIFY,
    integrity: { verify: false, sign: false, keyId: null },
    http2: false,
    targetProtocol: 'http1',
    anomaly: DEFAULT_ANOMALY,
    limits: DEFAULT_LIMITS,
    unsafeTarget: false,
    unsafeListen: false,
    routes: [],
  };
}
