/**
 * `HOST:PORT` addresses as they appear in config files and flags:
 * `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`, `0.0.0.0:15443`.
 * IPv6 hosts must be bracketed; DNS names are lower-cased; the port is decimal 0..65535
 * (whether 0 is acceptable is the caller's call: fine to listen on, not to dial).
 */
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import type { HostPort } from './types.ts';

const MAX_PORT = 65535;
const PORT_PATTERN = /^(0|[1-9][0-9]{0,4})$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_DNS_NAME = 253;

/** Read-only after construction: the loopback ranges. BlockList also matches IPv4-mapped IPv6. */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Parse `HOST:PORT`; returns the address, or a message saying what is wrong with it. */
export function parseHostPort(s: string): HostPort | string {
  const split = splitHostPort(s);
  if (typeof split === 'string') return split;
  const [rawHost, rawPort, bracketed] = split;
  const host = bracketed ? checkBracketedHost(rawHost) : checkPlainHost(rawHost);
  if (typeof host !== 'object') return host;
  const port = parsePort(rawPort);
  if (typeof port === 'string') return port;
  return { host: host.host, port };
}

/** `{ host: '::1', port: 80 }` -> `[::1]:80`; the inverse of parseHostPort. */
export function formatHostPort(hp: HostPort): string {
  return isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** 127.0.0.0/8, ::1 (in any spelling, and 127/8 mapped into IPv6), or the name `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  if (family === 0) return false;
  return LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/** An IP literal (unbracketed) or a DNS name, as accepted in the host part of `HOST:PORT`. */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || isDnsName(host);
}

/** Syntax of a DNS name: dot-separated labels of letters, digits and inner hyphens; not all-numeric. */
export function isDnsName(name: string): boolean {
  const lower = name.toLowerCase();
  if (lower.length === 0 || lower.length > MAX_DNS_NAME) return false;
  const labels = lower.split('.');
  if (!labels.every((label) => DNS_LABEL.test(label))) return false;
  // `999.1.1.1` or `1234` are broken IP addresses, not names.
  return !labels.every((label) => /^[0-9]+$/.test(label));
}

function splitHostPort(s: string): [host: string, port: string, bracketed: boolean] | string {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return 'expected HOST:PORT: missing "]" after the IPv6 address';
    if (s[close + 1] !== ':') return 'expected HOST:PORT: missing ":PORT" after "]"';
    return [s.slice(1, close), s.slice(close + 2), true];
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) return 'expected HOST:PORT: missing ":PORT"';
  const host = s.slice(0, colon);
  if (host.includes(':')) return 'expected HOST:PORT: an IPv6 address must be bracketed, as in [::1]:8080';
  return [host, s.slice(colon + 1), false];
}

function checkBracketedHost(host: string): { host: string } | string {
  if (!isIPv6(host)) return `expected HOST:PORT: "${host}" in brackets is not an IPv6 address`;
  return { host: host.toLowerCase() };
}

function checkPlainHost(host: string): { host: string } | string {
  if (host.length === 0) return 'expected HOST:PORT: the host is empty';
  if (isIPv4(host)) return { host };
  if (isDnsName(host)) return { host: host.toLowerCase() };
  return `expected HOST:PORT: "${host}" is neither an IPv4 address nor a DNS name`;
}

function parsePort(port: string): number | string {
  if (!PORT_PATTERN.test(port)) return `expected HOST:PORT: port "${port}" is not a number from 0 to ${MAX_PORT}`;
  const n = Number(port);
  if (n > MAX_PORT) return `expected HOST:PORT: port ${n} is out of range 0..${MAX_PORT}`;
  return n;
}
