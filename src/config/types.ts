/**
 * The validated, frozen configuration. Every field is filled (defaults applied);
 * file paths are absolute. Produced by config/validate.ts from a raw JSON value,
 * and by cli flag parsing for `tollgate inbound|outbound`.
 */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type ListenerMode = 'inbound' | 'outbound' | 'gateway';
export type Protocol = 'http' | 'tcp';
export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3';
export type AnomalyMode = 'off' | 'observe' | 'block';
export type BodyMode = 'buffer' | 'stream';
/** What a CRL past its nextUpdate means: keep serving without it (warn), or refuse what it covers (refuse). */
export type CrlStale = 'warn' | 'refuse';

/** Who may connect to an inbound listener. Pins, when given, must match in addition to an identity rule. */
export interface AllowConfig {
  readonly any: boolean;
  readonly spiffe: readonly string[];
  readonly dns: readonly string[];
  readonly cn: readonly string[];
  readonly spkiPins: readonly string[];
}

/** What an outbound listener demands of the server it dials (besides chain + serverName). */
export interface VerifyConfig {
  readonly spiffe: readonly string[];
  readonly spkiPins: readonly string[];
}

/** how an inbound listener speaks to its app */
export type TargetProtocol = 'http1' | 'h2c';
/** how a gateway route speaks to its targets: also HTTP/2 over its upstreamTls */
export type RouteTargetProtocol = TargetProtocol | 'h2';

export interface LimitsConfig {
  readonly maxBodyBytes: number;
  readonly maxHeaderBytes: number;
  /** per peer identity; 0 = no rate limit */
  readonly requestsPerSecond: number;
  readonly burst: number;
  readonly maxConnections: number;
  /**
   * TLS handshakes in progress at once (inbound). At the cap, the oldest connection that has not
   * sent a byte of its ClientHello is closed to make room; only when none is silent is the new one dropped.
   */
  readonly maxConcurrentHandshakes: number;
  /** TLS handshakes in progress at once from one source address (IPv6: one /64); 0 in defaults = a quarter of maxConcurrentHandshakes */
  readonly maxHandshakesPerSource: number;
  /** a connection that has sent no byte of a ClientHello by then is closed (counted as a handshake timeout) */
  readonly clientHelloTimeoutSeconds: number;
  readonly handshakeTimeoutSeconds: number;
  readonly headersTimeoutSeconds: number;
  /**
   * A request body may wait this long for its next bytes, and gets this long before its data
   * rate is judged (time spent waiting on a slow upstream is not counted); then 408 ERR_BODY_TIMEOUT
   */
  readonly bodyTimeoutSeconds: number;
  /** after bodyTimeoutSeconds, a body must average at least this many bytes per second; 0 = no rate, only the gap limit */
  readonly minBodyBytesPerSecond: number;
  readonly idleTimeoutSeconds: number;
  readonly upstreamTimeoutSeconds: number;
  /** HTTP/2: streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS) */
  readonly http2MaxConcurrentStreams: number;
  /** HTTP/2: the HPACK dynamic table a client's header compression may use (SETTINGS_HEADER_TABLE_SIZE) */
  readonly http2HeaderTableBytes: number;
  /** HTTP/2: the receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE) and of the whole connection */
  readonly http2StreamWindowBytes: number;
  readonly http2ConnectionWindowBytes: number;
  /** HTTP/2 floods: streams a client may cancel (RST_STREAM), PINGs and SETTINGS it may send, per second, before GOAWAY */
  readonly http2MaxResetsPerSecond: number;
  readonly http2MaxPingsPerSecond: number;
  readonly http2MaxSettingsPerSecond: number;
}

export interface AnomalyConfig {
  readonly mode: AnomalyMode;
  readonly minSamples: number;
  readonly threshold: number;
  /** peer identities with their own size model and volume watch; others are judged by the route's model */
  readonly maxTrackedPeers: number;
}

export interface ListenerIntegrityConfig {
  /** inbound: verify signatures and digests */
  readonly verify: boolean;
  /** outbound: sign requests */
  readonly sign: boolean;
  /** outbound: the key id to sign with */
  readonly keyId: string | null;
}

/** What a gateway route matches: a path prefix on whole segments, optionally a host (exact or `*.suffix`) and methods. */
export interface RouteMatchConfig {
  readonly pathPrefix: string;
  /** null: any host */
  readonly host: string | null;
  /** null: any method */
  readonly methods: readonly string[] | null;
}

/** mTLS origination from a gateway route to its targets, with the instance identity and the outbound side's checks. */
export interface RouteUpstreamTlsConfig {
  /** the name sent (SNI) and checked; null: each target's host */
  readonly serverName: string | null;
  readonly verify: VerifyConfig;
}

/** When a gateway route stops sending to one of its endpoints, and for how long. */
export interface PassiveHealthConfig {
  /** connect failures, resets or 5xx answers in a row that eject an endpoint */
  readonly consecutiveFailures: number;
  /** the first ejection's length; each ejection after a return doubles it */
  readonly ejectSeconds: number;
  readonly maxEjectSeconds: number;
}

/** One route of a gateway listener; every policy section defaults to the listener's. */
export interface RouteConfig {
  /** the `route` metric label */
  readonly name: string;
  readonly match: RouteMatchConfig;
  /** narrows the listener's allow-list (a peer must pass both); null: the listener's alone */
  readonly allow: AllowConfig | null;
  /** host:port each; a DNS name stands for every A/AAAA record it has */
  readonly targets: readonly HostPort[];
  /** DNS names are asked again after their TTL, and at least this often */
  readonly dnsRefreshSeconds: number;
  /** null: plaintext to the targets */
  readonly upstreamTls: RouteUpstreamTlsConfig | null;
  /** HTTP/1.1 to the targets, or HTTP/2: `h2c` in cleartext, `h2` over upstreamTls */
  readonly targetProtocol: RouteTargetProtocol;
  /** verify: as the listener's unless set; sign + keyId: re-sign the request with the gateway's key */
  readonly integrity: ListenerIntegrityConfig;
  readonly limits: LimitsConfig;
  readonly anomaly: AnomalyConfig;
  readonly passiveHealth: PassiveHealthConfig;
}

export interface ListenerConfig {
  readonly name: string;
  readonly mode: ListenerMode;
  readonly protocol: Protocol;
  readonly listen: HostPort;
  readonly target: HostPort;
  /** inbound only */
  readonly allow: AllowConfig;
  /** outbound only: TLS server name to send (SNI) and check; defaults to target.host */
  readonly serverName: string;
  /** outbound only */
  readonly verify: VerifyConfig;
  readonly integrity: ListenerIntegrityConfig;
  readonly anomaly: AnomalyConfig;
  readonly limits: LimitsConfig;
  readonly unsafeTarget: boolean;
  readonly unsafeListen: boolean;
  /**
   * HTTP listeners: offer HTTP/2 beside HTTP/1.1 (ALPN h2 on TLS; on an outbound listener, h2c with
   * prior knowledge from the local app, and h2 to the remote tollgate for what came over HTTP/2)
   */
  readonly http2: boolean;
  /** inbound only: how to speak to the local app; `h2c` (HTTP/2 without TLS) for gRPC servers */
  readonly targetProtocol: TargetProtocol;
  /** gateway only (empty otherwise): in order, the first match wins */
  readonly routes: readonly RouteConfig[];
}

/**
 * Replay cache and rate limits shared by every replica, in Redis or Valkey. Absent: each process
 * keeps its own, as without it.
 */
export interface SharedStateConfig {
  /** `rediss://host:port[/db]` (TLS), or `redis://` (plaintext: loopback only unless unsafePlaintext) */
  readonly url: string;
  /** one server (or a Sentinel-managed primary behind one address), or a Redis Cluster reached through this seed node */
  readonly topology: 'standalone' | 'cluster';
  /** the CA bundle the server's certificate must chain to (rediss) */
  readonly caFile: string | null;
  /** our client certificate and key for the server (rediss; both or neither) */
  readonly certFile: string | null;
  readonly keyFile: string | null;
  /** the AUTH password, by file (a URL never carries one) */
  readonly passwordFile: string | null;
  /** prepended to every key, so one server can hold several deployments */
  readonly keyPrefix: string;
  /** the longest a request waits for the store before it counts as unavailable */
  readonly timeoutMs: number;
  /** the store cannot be reached: refuse (503 ERR_SHARED_STATE_UNAVAILABLE, fail closed) or fall back to this process's own state */
  readonly onUnavailable: 'refuse' | 'local';
  /** a (keyid, nonce) is accepted once per deployment */
  readonly replay: boolean;
  /** a peer's rate limit holds across replicas */
  readonly rateLimits: boolean;
  /** allow `redis://` (no TLS) to a host off loopback */
  readonly unsafePlaintext: boolean;
}

export interface Config {
  /** the file the config came from (null for flag-built configs) */
  readonly source: string | null;
  readonly admin: { readonly listen: HostPort | null; readonly tokenFile: string | null };
  readonly health: { readonly listen: HostPort | null };
  readonly identity: {
    readonly certFile: string;
    readonly keyFile: string;
    readonly caFile: string;
    readonly crlFile: string | null;
    readonly crlStale: CrlStale;
    /** a certificate with less than this part of its lifetime (notAfter − notBefore) left is warned about; in (0, 1) */
    readonly expiryWarningFraction: number;
  };
  readonly tls: { readonly minVersion: TlsMinVersion };
  readonly keys: { readonly dir: string | null };
  readonly integrity: {
    readonly tag: string;
    readonly skewSeconds: number;
    readonly maxAgeSeconds: number;
    readonly bodyMode: BodyMode;
    readonly maxBufferedBytes: number;
    /** the most live (keyid, nonce) pairs remembered; when full, new signatures get 503 */
    readonly replayCacheEntries: number;
    /** components every verified signature must cover, on top of the floor (@method, @authority, @path, @query, content-digest, content-type) */
    readonly requiredComponents: readonly string[];
  };
  readonly audit: {
    readonly file: string | null;
    readonly keyFile: string | null;
    /** a file that would grow past this is rotated to FILE.1 (the chain continues in the new FILE) */
    readonly maxFileBytes: number;
    /** rotated files kept (FILE.1 … FILE.maxFiles) */
    readonly maxFiles: number;
  };
  /** `access`: one JSON line per request (msg "access"), off by default. */
  readonly log: {
    readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
    readonly access: boolean;
  };
  /** SIGTERM: how long in-flight requests get before a forced exit */
  readonly drainTimeoutSeconds: number;
  /**
   * Event loops serving the listeners (the main thread + workers - 1 worker threads, every
   * listener bound with reusePort); "auto": one per CPU the cgroup quota allows.
   */
  readonly workers: number | 'auto';
  /** null: replay cache and rate limits per process */
  readonly sharedState: SharedStateConfig | null;
  readonly listeners: readonly ListenerConfig[];
}

/** One problem found in a config, named by its path (`listeners[1].allow`) or flag (`--target`). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export type ConfigResult =
  { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };
