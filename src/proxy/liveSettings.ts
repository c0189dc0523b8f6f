import type { ListenerConfig } from '../config/types.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';

/**
 * The swap point of a listener's live settings (config/reloadPlan.ts says which those are):
 * a config reload hands every listener its new ListenerConfig and integrity stage, and the
 * listener swaps what it holds as one step (for HTTP: httpService.ts's current request path).
 * New requests and connections see the new settings; a request in flight finishes on the path
 * it started on.
 */
export interface LiveSettable {
  applyLive(next: ListenerConfig, integrity: IntegrityStage | null): void;
}
