import type { Exchange } from './exchange.ts';

/**
 * A client's body bytes that came before the exchange had a reader (the stages still deciding, the
 * upstream not yet connected) wait in the exchange's inbox; the side that reads the client stops
 * once the inbox holds `INBOX_HIGH_WATER`, for the reason `PAUSE_INBOX`. Shared by an HTTP/1.1
 * connection and an HTTP/2 stream.
 */

/** reasons to stop reading the client, as bits: reading resumes when none is left */
export const PAUSE_UPSTREAM = 1;
export const PAUSE_INBOX = 2;
export const PAUSE_PIPELINE = 4;

/** unclaimed body bytes held before reading stops */
export const INBOX_HIGH_WATER = 64 * 1024;

/** the side that reads a client's body: it stops and resumes for a reason (a bit above) */
export interface BodySource {
  pauseReading(reason: number): void;
  resumeReading(reason: number): void;
}

/** Hand the inbox to the exchange's reader, or hold it (up to a bound, then `source` stops reading) until there is one. */
export function deliverInbox(ex: Exchange, source: BodySource): void {
  const reader = ex.reader;
  if (reader === null) {
    if (ex.inboxBytes > INBOX_HIGH_WATER) source.pauseReading(PAUSE_INBOX);
    return;
  }
  source.resumeReading(PAUSE_INBOX);
  if (ex.inbox.length > 0) {
    const chunks = ex.inbox;
    ex.inbox = [];
    ex.inboxBytes = 0;
    for (const c of chunks) reader.data(c);
    reader.flush();
  }
  if (ex.bodyComplete && !ex.readerEnded && ex.reader === reader) {
    ex.readerEnded = true;
    reader.end();
  }
}
