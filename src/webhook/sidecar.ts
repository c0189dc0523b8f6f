/**
 * The sidecar container and its volumes, as Kubernetes objects. Pure builders: settings in,
 * plain JSON out. Secrets reach the sidecar only as read-only files in volumes mounted into
 * the sidecar alone, never as environment variables.
 */
import { ANNOTATIONS } from './annotations.ts';
import type { InjectorSettings } from './injectorSettings.ts';
import type { SidecarSettings } from './podSettings.ts';
import {
  CONFIG_FILE_MODE,
  CONFIG_FILE_NAME,
  CONFIG_PATH,
  MOUNTS,
  PORT_NAMES,
  SECRET_FILE_MODE,
  SIDECAR_CONTAINER_NAME,
  TMP_SIZE_LIMIT,
  VOLUMES,
} from './sidecarLayout.ts';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** startup: checked every second for up to two minutes; the app starts once this passes (native mode) */
const STARTUP_PROBE = { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 } as const;
const READINESS_PROBE = { periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 } as const;
const LIVENESS_PROBE = { periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 } as const;

export function sidecarContainer(settings: SidecarSettings, injector: InjectorSettings): JsonObject {
  const probe = (path: string, timing: Readonly<Record<string, number>>): JsonObject => ({
    httpGet: { path, port: settings.healthPort, scheme: 'HTTP' },
    ...timing,
  });
  const mounts: JsonObject[] = [{ name: VOLUMES.identity, mountPath: MOUNTS.identity, readOnly: true }];
  if (settings.keysSecret !== null) mounts.push({ name: VOLUMES.keys, mountPath: MOUNTS.keys, readOnly: true });
  mounts.push({ name: VOLUMES.config, mountPath: MOUNTS.config, readOnly: true });
  mounts.push({ name: VOLUMES.tmp, mountPath: MOUNTS.tmp });

  const limits: JsonObject = {};
  if (settings.resources.cpuLimit !== null) limits.cpu = settings.resources.cpuLimit;
  if (settings.resources.memoryLimit !== null) limits.memory = settings.resources.memoryLimit;

  return {
    name: SIDECAR_CONTAINER_NAME,
    image: injector.image,
    imagePullPolicy: injector.imagePullPolicy,
    args: ['run', '--config', CONFIG_PATH],
    // a restartable init container is a native sidecar: started before the app, stopped after it
    ...(settings.native ? { restartPolicy: 'Always' } : {}),
    ports: [
      { name: PORT_NAMES.inbound, containerPort: settings.inboundPort, protocol: 'TCP' },
      { name: PORT_NAMES.health, containerPort: settings.healthPort, protocol: 'TCP' },
    ],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ],
    resources: {
      requests: { cpu: settings.resources.cpuRequest, memory: settings.resources.memoryRequest },
      ...(Object.keys(limits).length > 0 ? { limits } : {}),
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: injector.runAsUser,
      runAsGroup: injector.runAsUser,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    startupProbe: probe('/readyz', STARTUP_PROBE),
    readinessProbe: probe('/readyz', READINESS_PROBE),
    livenessProbe: probe('/livez', LIVENESS_PROBE),
    volumeMounts: mounts,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

export function sidecarVolumes(settings: SidecarSettings): JsonObject[] {
  const volumes: JsonObject[] = [
    {
      name: VOLUMES.identity,
      secret: {
        secretName: settings.identitySecret,
        defaultMode: SECRET_FILE_MODE,
        // naming the keys makes a Secret without one of them fail the mount loudly
        items: ['tls.crt', 'tls.key', 'ca.crt'].map((key) => ({ key, path: key })),
      },
    },
  ];
  if (settings.keysSecret !== null) {
    volumes.push({ name: VOLUMES.keys, secret: { secretName: settings.keysSecret, defaultMode: SECRET_FILE_MODE } });
  }
  volumes.push(
    settings.config.kind === 'configMap'
      ? {
          name: VOLUMES.config,
          configMap: {
            name: settings.config.name,
            defaultMode: CONFIG_FILE_MODE,
            items: [{ key: CONFIG_FILE_NAME, path: CONFIG_FILE_NAME }],
          },
        }
      : {
          name: VOLUMES.config,
          // the generated config travels in a pod annotation; the downward API writes it as a file
          downwardAPI: {
            defaultMode: CONFIG_FILE_MODE,
            items: [
              {
                path: CONFIG_FILE_NAME,
                fieldRef: { fieldPath: `metadata.annotations['${ANNOTATIONS.generatedConfig}']` },
              },
            ],
          },
        },
  );
  volumes.push({ name: VOLUMES.tmp, emptyDir: { medium: 'Memory', sizeLimit: TMP_SIZE_LIMIT } });
  return volumes;
}
