/**
 * Where things live inside an injected sidecar: container and volume names, mount paths,
 * port names. One place, so the container, the volumes, the generated config and the docs agree.
 */
export const SIDECAR_CONTAINER_NAME = 'tollgate';

export const VOLUMES = Object.freeze({
  identity: 'tollgate-identity',
  keys: 'tollgate-keys',
  config: 'tollgate-config',
  tmp: 'tollgate-tmp',
});

export const MOUNTS = Object.freeze({
  identity: '/var/run/secrets/tollgate/identity',
  keys: '/var/run/secrets/tollgate/keys',
  config: '/etc/tollgate',
  tmp: '/tmp',
});

/** the file name of the config: the key in a user's ConfigMap, and the file the downward API writes */
export const CONFIG_FILE_NAME = 'config.json';
export const CONFIG_PATH = `${MOUNTS.config}/${CONFIG_FILE_NAME}`;

export const IDENTITY_FILES = Object.freeze({
  certFile: `${MOUNTS.identity}/tls.crt`,
  keyFile: `${MOUNTS.identity}/tls.key`,
  caFile: `${MOUNTS.identity}/ca.crt`,
});

/** container port names (at most 15 characters) */
export const PORT_NAMES = Object.freeze({
  inbound: 'tollgate-mtls',
  health: 'tollgate-health',
});

/** read-only for the owner: with the pod's fsGroup, kubelet makes this 0440 owned by that group */
export const SECRET_FILE_MODE = 0o400;
/** the config is not secret */
export const CONFIG_FILE_MODE = 0o444;
export const TMP_SIZE_LIMIT = '16Mi';
