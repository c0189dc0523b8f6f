import type { IncomingMessage } from 'node:http';
import { TollgateError } from '../core/errors.ts';
import type { DigestCheck } from '../integrity/contentDigest.ts';
import type { BodyDeadline } from './bodyDeadline.ts';

/**
 * The three ways a request body travels upstream, each within a stated bound:
 *
 * - countedBody: streamed as it arrives, counted against the limit and the learned size.
 * - collectBody: held in memory up to a cap, for checking or signing before any byte leaves.
 * - digestCheckedBody: streamed while hashed, the last chunk held back until the digest
 *   matches; a mismatch throws, which aborts the upstream request before it is complete.
 *
 * Each is timed by the body's BodyDeadline (minimum data rate), when it has one.
 */

/** The client went away before its body was complete. */
export class ClientClosedError extends Error {
  readonly code = 'ECONNRESET';
  constructor() {
    super('client closed the connection before the request body was complete');
    this.name = 'ClientClosedError';
  }
}

/**
 * Counts one request body as it streams: the hard limit (ERR_PAYLOAD_TOO_LARGE) and, when a
 * size model has learned, the largest normal size — crossing it calls `crossed`, which flags
 * the anomaly and says whether to block (ERR_PAYLOAD_ANOMALY) or let the body go on.
 */
export class BodyMeter {
  readonly limit: number;
  bytes = 0;
  private bound = Infinity;
  private crossed: ((bytes: number, bound: number) => boolean) | null = null;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** watch for the body passing `bound`; called at most once per request */
  watch(bound: number, crossed: (bytes: number, bound: number) => boolean): void {
    this.bound = bound;
    this.crossed = crossed;
  }

  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limit) throw new TollgateError('ERR_PAYLOAD_TOO_LARGE', `body over ${this.limit} bytes`);
    if (this.bytes > this.bound && this.crossed !== null) {
      const block = this.crossed(this.bytes, this.bound);
      this.crossed = null;
      if (block) throw new TollgateError('ERR_PAYLOAD_ANOMALY', `body passed ${this.bound} bytes, the largest normal size`);
    }
  }
}

/** A request body passed through while counted by its meter and timed by its deadline (bodies streamed as they arrive). */
export async function* countedBody(req: IncomingMessage, meter: BodyMeter, deadline: BodyDeadline | null): AsyncGenerator<Buffer> {
  deadline?.waiting();
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      deadline?.received(chunk.length);
      deadline?.holding();
      meter.add(chunk.length);
      yield chunk;
      deadline?.waiting();
    }
  } finally {
    deadline?.done();
  }
}

/**
 * Read the whole body into one Buffer, refusing more than `limit` bytes. On the limit the
 * reading stops and the request is left paused (the caller answers 413 and closes the
 * connection); the socket is not destroyed, so that answer can still be sent.
 */
export function collectBody(req: IncomingMessage, limit: number, deadline: BodyDeadline | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = (): void => {
      deadline?.done();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      deadline?.received(chunk.length);
      total += chunk.length;
      if (total > limit) {
        cleanup();
        req.pause();
        reject(new TollgateError('ERR_PAYLOAD_TOO_LARGE', `body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      if (req.complete) return;
      cleanup();
      reject(new ClientClosedError());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    // read as fast as it comes: all the time until the end is the client's
    deadline?.waiting();
  });
}

/** What a streamed, digest-checked body reports back when it ends well. */
export interface DigestVerified {
  digestVerified(bytes: number): void;
}

/**
 * Stream the body while hashing it. Every chunk but the last goes upstream as soon as the
 * upstream takes it; the last is released only once the digest matches. A mismatch (or a
 * body over `limit`) throws, so undici aborts the upstream request: the upstream never
 * receives a complete body that did not verify.
 */
export async function* digestCheckedBody(
  req: IncomingMessage,
  check: DigestCheck,
  meter: BodyMeter,
  report: DigestVerified,
  deadline: BodyDeadline | null,
): AsyncGenerator<Buffer> {
  let held: Buffer | null = null;
  deadline?.waiting();
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      deadline?.received(chunk.length);
      deadline?.holding();
      meter.add(chunk.length);
      check.update(chunk);
      if (held !== null) yield held;
      held = chunk;
      deadline?.waiting();
    }
  } finally {
    deadline?.done();
  }
  if (!check.matches()) throw new TollgateError('ERR_DIGEST_MISMATCH', 'Content-Digest does not match the streamed body');
  report.digestVerified(check.bytes);
  if (held !== null) yield held;
}
