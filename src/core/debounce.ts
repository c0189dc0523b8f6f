/**
 * Collapse a burst of triggers into one call, `ms` after the last of them. The timer is
 * unref'd: a pending call never keeps the process alive.
 */
export interface Debounced {
  trigger(): void;
  cancel(): void;
}

export function debounce(ms: number, fn: () => void): Debounced {
  let timer: NodeJS.Timeout | null = null;
  return {
    trigger() {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
      timer.unref();
    },
    cancel() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
