import type { Clock } from './clock.ts';

/**
 * Call `fn` once the clock reaches `at` (epoch ms). Node fires timers longer than 2^31-1 ms
 * at once, so a far deadline is reached in steps. The timer is unref'd: it never keeps the
 * process alive.
 */
export interface Wake {
  cancel(): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export function wakeAt(clock: Clock, at: number, fn: () => void): Wake {
  let timer: NodeJS.Timeout | null = null;
  const arm = (): void => {
    const wait = at - clock.now();
    if (wait <= 0) {
      timer = null;
      fn();
      return;
    }
    timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
    timer.unref();
  };
  timer = setTimeout(arm, Math.max(0, Math.min(at - clock.now(), MAX_TIMER_MS)));
  timer.unref();
  return {
    cancel() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
