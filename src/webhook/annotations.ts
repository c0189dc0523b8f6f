/**
 * The pod annotations the injector reads (prefix `tollgate.dev/`), and the ones it writes back.
 * Names are part of the public interface (README.md, "Annotate a workload"): add, never rename.
 */
export const ANNOTATIONS = Object.freeze({
  /** `"enabled"` opts a pod in; anything else (or nothing) leaves it alone */
  inject: 'tollgate.dev/inject',
  /** written back: `"injected"` */
  status: 'tollgate.dev/status',
  /** the mTLS port peers dial (default 15443) */
  inboundPort: 'tollgate.dev/inbound-port',
  /** the app's port on 127.0.0.1 that verified traffic is forwarded to (generated config) */
  appPort: 'tollgate.dev/app-port',
  /** kubelet probes and Prometheus: `/livez`, `/readyz`, `/metrics` on the pod IP (default 15021) */
  healthPort: 'tollgate.dev/health-port',
  /** the admin API on 127.0.0.1 (default 15000) */
  adminPort: 'tollgate.dev/admin-port',
  /** a ConfigMap (key `config.json`) holding the whole tollgate config; replaces the generated one */
  config: 'tollgate.dev/config',
  /** a Secret with `tls.crt`, `tls.key`, `ca.crt` (a cert-manager Certificate's Secret has exactly these) */
  identitySecret: 'tollgate.dev/identity-secret',
  /** a Secret with one HMAC key file per key id (`tollgate keys new`); turns on signature verification */
  keysSecret: 'tollgate.dev/keys-secret',
  /** `"true"` (default): an init container with restartPolicy Always; `"false"`: the first app container */
  nativeSidecar: 'tollgate.dev/native-sidecar',
  /** generated config: comma-separated SPIFFE IDs allowed to connect (`spiffe://td/*` for a trust domain) */
  allowSpiffe: 'tollgate.dev/allow-spiffe',
  /** generated config: comma-separated DNS SANs allowed to connect */
  allowDns: 'tollgate.dev/allow-dns',
  /** generated config: `http` (default) or `tcp` */
  protocol: 'tollgate.dev/protocol',
  /** generated config: trace, debug, info (default), warn, error */
  logLevel: 'tollgate.dev/log-level',
  cpuRequest: 'tollgate.dev/cpu-request',
  memoryRequest: 'tollgate.dev/memory-request',
  cpuLimit: 'tollgate.dev/cpu-limit',
  memoryLimit: 'tollgate.dev/memory-limit',
  /** written back: the generated config (JSON), which the sidecar reads as a file through the downward API */
  generatedConfig: 'tollgate.dev/generated-config',
});

export const INJECT_ENABLED = 'enabled';
export const STATUS_INJECTED = 'injected';

/** kubectl's default container for logs/exec; set in classic mode so it stays the app's first container */
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';
