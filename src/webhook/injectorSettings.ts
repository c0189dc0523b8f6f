/**
 * What the injector puts into every pod unless the pod's annotations say otherwise: the image,
 * the user the sidecar runs as, resources, the default allow-list of the generated config.
 * The `tollgate webhook` command builds these from `--image` and the optional `--config` file
 * (src/webhook/webhookConfig.ts); tests build them directly.
 */
export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';
export type SidecarLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface SidecarResources {
  readonly cpuRequest: string;
  readonly memoryRequest: string;
  /** null: no limit */
  readonly cpuLimit: string | null;
  readonly memoryLimit: string | null;
}

export interface InjectorSettings {
  readonly image: string;
  readonly imagePullPolicy: PullPolicy;
  /** the sidecar's numeric UID and GID; also the pod fsGroup added when the pod has none */
  readonly runAsUser: number;
  /** the default for `tollgate.dev/native-sidecar` */
  readonly nativeSidecar: boolean;
  readonly resources: SidecarResources;
  /** the allow-list of a generated config when the pod names none (empty: the pod must name one) */
  readonly allow: { readonly spiffe: readonly string[]; readonly dns: readonly string[] };
  readonly logLevel: SidecarLogLevel;
}

export const SIDECAR_LOG_LEVELS: readonly SidecarLogLevel[] = Object.freeze([
  'trace',
  'debug',
  'info',
  'warn',
  'error',
]);
export const PULL_POLICIES: readonly PullPolicy[] = Object.freeze(['Always', 'IfNotPresent', 'Never']);

/** distroless `nonroot` */
export const DEFAULT_SIDECAR_UID = 65532;

/**
 * A small proxy's footprint: the replay cache (up to ~32 MiB when full), buffered bodies
 * (8 MiB each by default) and Node's heap fit in 256Mi for ordinary ingestion traffic.
 * The CPU limit is generous because a throttled proxy adds latency to every request.
 */
export const DEFAULT_SIDECAR_RESOURCES: SidecarResources = Object.freeze({
  cpuRequest: '50m',
  memoryRequest: '64Mi',
  cpuLimit: '1',
  memoryLimit: '256Mi',
});

export function injectorSettings(
  image: string,
  overrides: Partial<Omit<InjectorSettings, 'image'>> = {},
): InjectorSettings {
  return Object.freeze({
    image,
    imagePullPolicy: overrides.imagePullPolicy ?? 'IfNotPresent',
    runAsUser: overrides.runAsUser ?? DEFAULT_SIDECAR_UID,
    nativeSidecar: overrides.nativeSidecar ?? true,
    resources: Object.freeze({ ...DEFAULT_SIDECAR_RESOURCES, ...overrides.resources }),
    allow: Object.freeze({
      spiffe: Object.freeze([...(overrides.allow?.spiffe ?? [])]),
      dns: Object.freeze([...(overrides.allow?.dns ?? [])]),
    }),
    logLevel: overrides.logLevel ?? 'info',
  });
}
