import type { ErrorCode } from './errors.ts';

/** What a stage on the request path returns: go on, or stop with a stable code. */
export type Decision =
  { readonly allow: true } | { readonly allow: false; readonly code: ErrorCode; readonly detail?: string };

export const ALLOW: Decision = Object.freeze({ allow: true });

export function deny(code: ErrorCode, detail?: string): Decision {
  return detail === undefined ? { allow: false, code } : { allow: false, code, detail };
}
