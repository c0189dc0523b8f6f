import type { Clock } from '../core/clock.ts';
import { TollgateError } from '../core/errors.ts';
import type { BodyClock } from '../http1/exchange.ts';

/**
 * The minimum data rate of one request body (HAProxy's and nginx's answer to a client that
 * trickles its body to hold a connection; Kestrel's MinRequestBodyDataRate, Apache's
 * mod_reqtimeout `body=…,MinRate=…`):
 *
 * - no gap while tollgate waits for body bytes may last `gapMs`;
 * - after a grace of `gapMs`, the body must average `bytesPerSecond`: the time spent waiting
 *   for the client may not exceed `gapMs` + bytes received / `bytesPerSecond`.
 *
 * Only time tollgate spends waiting for the client counts: while the body is held because the
 * upstream does not take it yet (backpressure), or before the body is asked for (an upstream
 * still connecting, `Expect: 100-continue` not yet answered), the clock stands still. The
 * readers say which is which: `waiting()` when they want the next chunk, `received(n)` when it
 * came, and the client connection says `holding()` while it stops reading for the upstream and
 * `waiting()` when it reads again; `done()` at the end. One timer per body, re-armed only when
 * it fires (not per chunk). On expiry `expired` gets ERR_BODY_TIMEOUT: the request path cuts an
 * upstream request already under way (the app never gets a complete body), answers 408 and
 * closes the connection.
 */
export class BodyDeadline implements BodyClock {
  private readonly gapMs: number;
  /** milliseconds of waiting each byte earns; 0 = no rate, only the gap */
  private readonly msPerByte: number;
  private readonly clock: Clock;
  private readonly expired: (err: TollgateError) => void;
  private bytes = 0;
  /** waiting time before the current wait began */
  private waitedMs = 0;
  /** waiting time at the last chunk, for the gap */
  private waitedAtDataMs = 0;
  /** when the current wait began (ms, monotonic), or -1 when not waiting */
  private waitingSince = -1;
  private timer: NodeJS.Timeout | null = null;
  private over = false;

  constructor(gapMs: number, bytesPerSecond: number, clock: Clock, expired: (err: TollgateError) => void) {
    this.gapMs = gapMs;
    this.msPerByte = bytesPerSecond > 0 ? 1000 / bytesPerSecond : 0;
    this.clock = clock;
    this.expired = expired;
    this.fire = this.fire.bind(this);
  }

  /** the reader wants the next chunk: the client's clock runs */
  waiting(): void {
    if (this.over || this.waitingSince >= 0) return;
    this.waitingSince = this.nowMs();
    if (this.timer === null) this.arm(this.remainingMs(this.waitingSince));
  }

  /** a chunk of `n` bytes came */
  received(n: number): void {
    this.bytes += n;
    this.waitedAtDataMs = this.waitedMs + (this.waitingSince >= 0 ? this.nowMs() - this.waitingSince : 0);
  }

  /** the reader hands the chunk on (and may wait for the upstream): the clock stands still */
  holding(): void {
    if (this.waitingSince < 0) return;
    this.waitedMs += this.nowMs() - this.waitingSince;
    this.waitingSince = -1;
  }

  /** the body is complete, or the request is over: never fires */
  done(): void {
    this.over = true;
    this.waitingSince = -1;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** how much longer the client may keep us waiting from `now` (≤ 0: too long already) */
  private remainingMs(now: number): number {
    const waited = this.waitedMs + (this.waitingSince >= 0 ? now - this.waitingSince : 0);
    const gapLeft = this.gapMs - (waited - this.waitedAtDataMs);
    if (this.msPerByte === 0) return gapLeft;
    const rateLeft = this.gapMs + this.bytes * this.msPerByte - waited;
    return Math.min(gapLeft, rateLeft);
  }

  private fire(): void {
    this.timer = null;
    // not waiting (the body is held for the upstream, or done): the client is not to blame now
    if (this.over || this.waitingSince < 0) return;
    const left = this.remainingMs(this.nowMs());
    if (left > 0) return this.arm(left);
    this.done();
    this.expired(
      new TollgateError(
        'ERR_BODY_TIMEOUT',
        `request body slower than the minimum data rate (${this.bytes} bytes so far)`,
      ),
    );
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(ms)));
    // a body in flight keeps its connection (and so the process) busy anyway
    this.timer.unref();
  }

  private nowMs(): number {
    return Number(this.clock.monotonic()) / 1e6;
  }
}
