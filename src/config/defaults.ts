/**
 * Every default value of the configuration, in one place. validate.ts fills any field a
 * config file (or the quick-command flags) leaves out from these. All objects are frozen.
 */
import type {
  AnomalyConfig,
  Config,
  HostPort,
  LimitsConfig,
  PassiveHealthConfig,
  SharedStateConfig,
  TlsMinVersion,
} from './types.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

/** Per-listener limits. `requestsPerSecond: 0` turns rate limiting off. */
export const DEFAULT_LIMITS: LimitsConfig = Object.freeze({
  maxBodyBytes: 16 * MIB,
  maxHeaderBytes: 16 * KIB,
  requestsPerSecond: 0,
  /** 0 = derived: with a rate set and no burst given, the burst is ceil(requestsPerSecond). */
  burst: 0,
  maxConnections: 1024,
  maxConcurrentHandshakes: 128,
  /** 0 = derived: a quarter of maxConcurrentHandshakes (at least 1), so one address cannot hold every slot */
  maxHandshakesPerSource: 0,
  /** a real client sends its ClientHello right after connecting; 2 s allows for a lost packet or two */
  clientHelloTimeoutSeconds: 2,
  handshakeTimeoutSeconds: 10,
  headersTimeoutSeconds: 10,
  /** nginx's client_body_timeout is 60 s; a sidecar's peers are machines on a data-centre network */
  bodyTimeoutSeconds: 10,
  /** Kestrel's minimum is 240 B/s; ingestion clients send far faster than 1 KiB/s unless they trickle on purpose */
  minBodyBytesPerSecond: 1024,
  idleTimeoutSeconds: 120,
  upstreamTimeoutSeconds: 30,
  /** HAProxy's and nghttp2's usual 100; nginx 128 */
  http2MaxConcurrentStreams: 100,
  /** RFC 9113's initial value */
  http2HeaderTableBytes: 4 * KIB,
  /** enough for a 16 KiB request in one round trip per stream; bounded: 100 streams × 256 KiB is what one connection may buffer */
  http2StreamWindowBytes: 256 * KIB,
  http2ConnectionWindowBytes: 1 * MIB,
  /** a client cancels a stream now and then; a rapid-reset attack cancels thousands a second (CVE-2023-44487) */
  http2MaxResetsPerSecond: 100,
  /** keepalive and BDP probes send a few; a PING flood sends thousands */
  http2MaxPingsPerSecond: 20,
  /** a client sends SETTINGS at the start and rarely after */
  http2MaxSettingsPerSecond: 10,
});

/** the limits of a listener that only HTTP/2 connections use (a route may not set them: they belong to the connection) */
export const HTTP2_LIMIT_KEYS = [
  'http2MaxConcurrentStreams',
  'http2HeaderTableBytes',
  'http2StreamWindowBytes',
  'http2ConnectionWindowBytes',
  'http2MaxResetsPerSecond',
  'http2MaxPingsPerSecond',
  'http2MaxSettingsPerSecond',
] as const;

/** Per-listener payload-size watching: learn from 200 authenticated samples, flag beyond 4 (spread units). */
export const DEFAULT_ANOMALY: AnomalyConfig = Object.freeze({
  mode: 'observe',
  minSamples: 200,
  threshold: 4,
  maxTrackedPeers: 1000,
});

/**
 * A gateway route's passive health: three failures in a row (a connect refused or timed out, a
 * reset, a 5xx) take an endpoint out for 5 s, doubled for each ejection after a return, up to 5 min.
 */
export const DEFAULT_PASSIVE_HEALTH: PassiveHealthConfig = Object.freeze({
  consecutiveFailures: 3,
  ejectSeconds: 5,
  maxEjectSeconds: 300,
});

/** A gateway target's DNS name is asked again after its TTL, and at least this often. */
export const DEFAULT_DNS_REFRESH_SECONDS = 30;

/** Routes of one gateway listener: each name is a metric label, so their number is bounded. */
export const MAX_ROUTES = 500;

/** Shared state's settings other than where the store is: fail closed, both replay and rate limits shared. */
export const DEFAULT_SHARED_STATE = Object.freeze({
  topology: 'standalone',
  keyPrefix: 'tollgate:',
  timeoutMs: 50,
  onUnavailable: 'refuse',
  replay: true,
  rateLimits: true,
} as const satisfies Partial<SharedStateConfig>);

/** Message-signature profile shared by all listeners. */
export const DEFAULT_INTEGRITY: Config['integrity'] = Object.freeze({
  tag: 'tollgate',
  skewSeconds: 30,
  maxAgeSeconds: 300,
  bodyMode: 'buffer',
  maxBufferedBytes: 8 * MIB,
  /** about 16-32 MiB when full; enough for ~3,000 verified requests per second over maxAge + skew */
  replayCacheEntries: 1_000_000,
  requiredComponents: Object.freeze([]) as readonly string[],
});

/** Admin API: loopback only unless configured otherwise. `admin.listen: null` means no admin server. */
export const DEFAULT_ADMIN: Config['admin'] = Object.freeze({
  listen: Object.freeze({ host: '127.0.0.1', port: 15000 }) satisfies HostPort,
  tokenFile: null,
});

/** Health server (kubelet probes, Prometheus): none unless `health.listen` is given. */
export const DEFAULT_HEALTH: Config['health'] = Object.freeze({ listen: null });

/**
 * A CRL past its nextUpdate: warn (and stop checking revocation from it) rather than refuse
 * every peer, since a CRL publisher that is late would otherwise take the whole mesh down.
 */
export const DEFAULT_CRL_STALE: Config['identity']['crlStale'] = 'warn';

/**
 * "Expires soon" is less than a third of the certificate's own lifetime left: cert-manager renews at
 * two thirds by default, so the warning means renewal is late (a 24 h certificate: under 8 h left).
 */
export const DEFAULT_EXPIRY_WARNING_FRACTION: Config['identity']['expiryWarningFraction'] = 1 / 3;

export const DEFAULT_TLS: Config['tls'] = Object.freeze({ minVersion: 'TLSv1.2' satisfies TlsMinVersion });

export const DEFAULT_KEYS: Config['keys'] = Object.freeze({ dir: null });

/** No audit log unless `audit.file` (and its `audit.keyFile`) are given; rotated at 64 MiB, 10 rotated files kept. */
export const DEFAULT_AUDIT: Config['audit'] = Object.freeze({
  file: null,
  keyFile: null,
  maxFileBytes: 64 * 1024 * 1024,
  maxFiles: 10,
});

export const DEFAULT_LOG: Config['log'] = Object.freeze({ level: 'info', access: false });

/** SIGTERM: seconds in-flight requests get before a forced exit. */
export const DEFAULT_DRAIN_TIMEOUT_SECONDS = 20;

/**
 * One event loop: a sidecar next to one app rarely needs more, and a single thread keeps the
 * footprint small. Gateways set `workers: "auto"` (one per CPU of the cgroup quota).
 */
export const DEFAULT_WORKERS = 1;
/** the most event loops `workers` may ask for */
export const MAX_WORKERS = 64;

/** Listener protocol when none is given. */
export const DEFAULT_PROTOCOL = 'http' as const;
