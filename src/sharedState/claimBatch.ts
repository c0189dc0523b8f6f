/**
 * The replay claims of one turn of the event loop, sent to the store together.
 *
 * Requests read from many connections in one poll phase each claim a nonce; the claims are
 * gathered until the loop's check phase (`setImmediate`), then sent as one command (at most
 * `MAX_BATCH` keys each): one write, one reply, one timer, one duration, instead of one of each
 * per request. Within a batch the keys are claimed in order, so a fingerprint claimed twice in
 * one batch is fresh once. How a batch is sent (one script, or one command per key on a cluster)
 * is the store's business: `SendClaims`.
 *
 * Under load a turn brings a handful of claims (about 6 with 16 busy keep-alive connections), so a
 * batch of several claims but fewer than `FULL_BATCH` waits for the next turn's claims too, once.
 * That halves the commands under load (about 12 claims each instead of 6), and with them the
 * client's and the server's work per claim (back-to-back bench runs, GET per proxy-CPU-second
 * against the local cache: 0.72× and 0.80× sent in their own turn, 0.85× and 0.85× held), for
 * one turn more per claim. A lone claim (a turn at a low rate) goes at once.
 */
import type { Clock } from '../core/clock.ts';

export type ClaimVerdict = 'fresh' | 'replayed' | 'unavailable';

/** told the verdict of one claim, once */
export type ClaimDone = (verdict: ClaimVerdict) => void;

/** a claim's answer: the key was set (fresh), was held already (replayed), or none came */
export const SET = 1;
export const HELD = 0;
export const NO_ANSWER = -1;

/**
 * Sends one batch: `keys[i]` to be set for `ttls[i]` milliseconds unless held. `answer` is called
 * once, with one of SET, HELD or NO_ANSWER per key in order, and the error that kept any key
 * unanswered (null when every key was answered).
 */
export type SendClaims = (
  keys: string[],
  ttls: string[],
  answer: (results: ArrayLike<number>, err: Error | null) => void,
) => void;

/** what the store learns from a batch (counted per batch, not per claim) */
export interface BatchOutcome {
  /** the answered claims of a batch: how many, after how long, how many were fresh */
  answered(count: number, fresh: number, seconds: number): void;
  /** the claims of a batch that got no answer, and why */
  failed(count: number, err: Error): void;
}

/** keys per command: a burst of thousands becomes several commands, none holding the server long */
export const MAX_BATCH = 256;
/** a batch this large goes in the turn it was made; a smaller one waits for the next turn's claims (once) */
export const FULL_BATCH = 32;
/** a turn that brought fewer claims than this is not a busy one: its batch goes at once (latency at a low rate stays one turn) */
export const BUSY_TURN = 2;

export class ClaimBatch {
  private readonly send: SendClaims;
  private readonly outcome: BatchOutcome;
  private readonly clock: Clock;
  private keys: string[] = [];
  private ttls: string[] = [];
  private waiting: ClaimDone[] = [];
  /** when the oldest claim of the batch being gathered was made */
  private started = 0n;
  /** the expiry as text, kept for the next claim (one listener's window is the same for every claim) */
  private ttlMs = -1;
  private ttlText = '';
  /** the batch being gathered has waited for a turn's claims already */
  private waited = false;

  constructor(send: SendClaims, outcome: BatchOutcome, clock: Clock) {
    this.send = send;
    this.outcome = outcome;
    this.clock = clock;
  }

  /** claims `key` for `ttlMs`; `done` hears the verdict once the batch is answered */
  add(key: string, ttlMs: number, done: ClaimDone): void {
    if (this.waiting.length === 0) {
      this.started = this.clock.monotonic();
      this.waited = false;
      setImmediate(atCheckPhase, this);
    }
    if (ttlMs !== this.ttlMs) {
      this.ttlMs = ttlMs;
      this.ttlText = String(Math.max(1, Math.ceil(ttlMs)));
    }
    this.keys.push(key);
    this.ttls.push(this.ttlText);
    this.waiting.push(done);
  }

  /** at a check phase: a busy turn's batch (not yet full, not held before) waits for the next turn's claims; else it goes */
  atCheckPhase(): void {
    const n = this.waiting.length;
    if (!this.waited && n >= BUSY_TURN && n < FULL_BATCH) {
      this.waited = true;
      setImmediate(atCheckPhase, this);
      return;
    }
    this.flush();
  }

  /** the claims gathered so far go out (at the check phase of the turn they were made in, or of the next) */
  flush(): void {
    const { keys, ttls, waiting, started } = this;
    if (waiting.length === 0) return;
    this.keys = [];
    this.ttls = [];
    this.waiting = [];
    for (let from = 0; from < keys.length; from += MAX_BATCH) {
      const to = Math.min(keys.length, from + MAX_BATCH);
      const whole = from === 0 && to === keys.length;
      this.sendPart(
        whole ? keys : keys.slice(from, to),
        whole ? ttls : ttls.slice(from, to),
        whole ? waiting : waiting.slice(from, to),
        started,
      );
    }
  }

  private sendPart(keys: string[], ttls: string[], waiting: ClaimDone[], started: bigint): void {
    this.send(keys, ttls, (results, err) => {
      const seconds = Number(this.clock.monotonic() - started) / 1e9;
      let fresh = 0;
      let answered = 0;
      for (let i = 0; i < waiting.length; i++) {
        const r = i < results.length ? results[i] : NO_ANSWER;
        if (r === SET) fresh++;
        if (r === SET || r === HELD) answered++;
      }
      // the state is reported before the verdicts, so a request refused for it sees it already
      if (answered > 0) this.outcome.answered(answered, fresh, seconds);
      if (answered < waiting.length) this.outcome.failed(waiting.length - answered, err ?? MISSING_ANSWER);
      for (let i = 0; i < waiting.length; i++) {
        const r = i < results.length ? results[i] : NO_ANSWER;
        waiting[i]!(r === SET ? 'fresh' : r === HELD ? 'replayed' : 'unavailable');
      }
    });
  }
}

function atCheckPhase(batch: ClaimBatch): void {
  batch.atCheckPhase();
}

const MISSING_ANSWER = new Error('the store answered fewer claims than were sent');
