/** Time, passed in so tests can move it. */
export interface Clock {
  /** milliseconds since the epoch */
  now(): number;
  /** a monotonic reading in nanoseconds, for durations */
  monotonic(): bigint;
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => process.hrtime.bigint(),
});
