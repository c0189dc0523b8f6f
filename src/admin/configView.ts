import type { Config, HostPort } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';

/**
 * The effective configuration as `/config` shows it: every default applied, paths absolute,
 * addresses as "host:port" (the config file's spelling). Secrets are only ever named by file
 * in a config (tokenFile, keyFile, keys.dir), so there is nothing to redact; as a guard,
 * any key that looks like it holds a secret value rather than a path is dropped.
 */
const SECRET_VALUE_KEY = /^(token|secret|password|key)$/i;

export function configView(config: Config): unknown {
  return render(config);
}

function render(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(render);
  if (value === null || typeof value !== 'object') return value;
  // an address a listener does not have (a gateway's target: its routes have theirs) is null, not ":0"
  if (isHostPort(value)) return value.host === '' && value.port === 0 ? null : formatHostPort(value);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_VALUE_KEY.test(k)) continue;
    out[k] = render(v);
  }
  return out;
}

function isHostPort(v: object): v is HostPort {
  const keys = Object.keys(v);
  return keys.length === 2 && 'host' in v && 'port' in v && typeof v.host === 'string' && typeof v.port === 'number';
}
