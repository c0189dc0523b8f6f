/**
 * Whether this sidecar should get traffic, and if not, why. Created in main and handed to
 * whatever answers probes (the admin API and the health server, /readyz): ready once the
 * identity has loaded and every listener is bound, and never again once draining began.
 */
export interface Readiness {
  /** the first identity load succeeded */
  markIdentityLoaded(): void;
  /** every listener is bound */
  markListenersBound(): void;
  /** shutdown began: not ready from now on */
  markDraining(): void;
  ready(): boolean;
  draining(): boolean;
  /** why not ready (empty when ready), in a fixed order */
  reasons(): string[];
}

export function createReadiness(): Readiness {
  let identityLoaded = false;
  let listenersBound = false;
  let draining = false;
  return {
    markIdentityLoaded: () => void (identityLoaded = true),
    markListenersBound: () => void (listenersBound = true),
    markDraining: () => void (draining = true),
    ready: () => identityLoaded && listenersBound && !draining,
    draining: () => draining,
    reasons() {
      const reasons: string[] = [];
      if (!identityLoaded) reasons.push('identity not loaded');
      if (!listenersBound) reasons.push('listeners not bound');
      if (draining) reasons.push('draining');
      return reasons;
    },
  };
}
