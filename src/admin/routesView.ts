/**
 * GET /routes: every gateway listener's routes, their match and policy, their targets as last
 * resolved, and their endpoints with their health. Each event loop (the main thread and every
 * worker) balances on its own, so an endpoint's health is merged over the threads: healthy only
 * when no thread has it ejected, with the threads that do, and counts summed.
 */

/** An endpoint as one thread sees it. */
export interface EndpointState {
  readonly address: string;
  readonly target: string;
  readonly healthy: boolean;
  readonly outstanding: number;
  readonly consecutiveFailures: number;
  readonly ejections: number;
  readonly ejectedUntil: string | null;
  readonly lastFailure: string | null;
}

/** A route as one thread sees it (its match, policy and targets are the same on every thread). */
export interface RouteState {
  readonly name: string;
  readonly endpoints: readonly EndpointState[];
}

export interface GatewayState {
  readonly listener: string;
  readonly routes: readonly RouteState[];
}

/** The main thread's view with every worker's endpoints merged into it. */
export function routesView(main: readonly GatewayState[], workers: ReadonlyArray<readonly GatewayState[]>): unknown {
  const threads = 1 + workers.length;
  return {
    threads,
    listeners: main.map((g) => ({
      listener: g.listener,
      routes: g.routes.map((r) => {
        const seen = workers.map((w) =>
          w.find((x) => x.listener === g.listener)?.routes.find((x) => x.name === r.name),
        );
        return {
          ...r,
          endpoints: r.endpoints.map((e) =>
            merged(
              e,
              seen.map((w) => w?.endpoints.find((x) => x.address === e.address)),
            ),
          ),
        };
      }),
    })),
  };
}

function merged(main: EndpointState, others: ReadonlyArray<EndpointState | undefined>): Record<string, unknown> {
  const all = [main, ...others.filter((o): o is EndpointState => o !== undefined)];
  const ejectedOn = all.filter((e) => !e.healthy).length;
  const until = all.map((e) => e.ejectedUntil).filter((u): u is string => u !== null);
  return {
    address: main.address,
    target: main.target,
    healthy: ejectedOn === 0,
    ejectedOnThreads: ejectedOn,
    outstanding: all.reduce((n, e) => n + e.outstanding, 0),
    consecutiveFailures: Math.max(...all.map((e) => e.consecutiveFailures)),
    ejections: all.reduce((n, e) => n + e.ejections, 0),
    ejectedUntil: until.length === 0 ? null : until.sort().at(-1)!,
    lastFailure: all.find((e) => e.lastFailure !== null)?.lastFailure ?? null,
  };
}
