/**
 * TLS session ticket keys, one set for the whole instance. Each worker's server would
 * otherwise make its own random keys, and a client resuming on another worker than the one
 * that issued its ticket would get a full handshake. The main thread makes 48 random bytes,
 * every inbound listener of every thread uses them, and they are replaced on an interval.
 *
 * Replacing the keys invalidates every outstanding ticket (OpenSSL through Node keeps one key
 * set, no overlap), so the interval is long against the ticket lifetime (sessionTimeout, 300 s
 * on inbound listeners): once an hour, a resumption that straddles a rotation costs one full
 * handshake, i.e. at most 300 / 3600 ≈ 8% of ticket lifetimes are cut short. The hour bounds
 * how much recorded traffic a leaked ticket key can open (TLS 1.2 resumption has no forward
 * secrecy of its own; TLS 1.3's psk_dhe_ke does).
 *
 * These are not used as they are: each inbound listener derives its keys from them and what it
 * trusts (tls/sessionBinding.ts), so a change of CA bundle, CRLs or allow-list rotates the keys
 * at once on every thread (each thread derives the same keys from the same inputs) and no
 * session from before it resumes.
 */
import { randomBytes } from 'node:crypto';
import { TICKET_KEY_BYTES } from '../tls/sessionBinding.ts';

export const TICKET_KEY_ROTATION_MS = 60 * 60 * 1000;

export interface TicketKeys {
  current(): Buffer;
  stop(): void;
}

/** Fresh keys now, then every `intervalMs` (the timer does not hold the process open); `apply` gets each new set. */
export function rotateTicketKeys(
  apply: (keys: Buffer) => void,
  intervalMs: number = TICKET_KEY_ROTATION_MS,
): TicketKeys {
  let keys = randomBytes(TICKET_KEY_BYTES);
  const timer = setInterval(() => {
    keys = randomBytes(TICKET_KEY_BYTES);
    apply(keys);
  }, intervalMs);
  timer.unref();
  return {
    current: () => keys,
    stop: () => clearInterval(timer),
  };
}
