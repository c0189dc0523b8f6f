/**
 * The `route` label of request metrics, log lines and audit events where no configured route
 * names it: every request of an inbound or outbound listener, and what a gateway refuses
 * before it chose a route (a route name cannot start with "_", so the two never meet).
 */
export const DEFAULT_ROUTE = 'default';
export const UNROUTED_ROUTE = '_unrouted';
