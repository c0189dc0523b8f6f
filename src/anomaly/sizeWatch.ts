import { SizeModel, type SizeJudgement } from './sizeModel.ts';

/**
 * The size models of one listener: one per route (learning from every peer) and one per
 * (route, peer identity), up to `maxTrackedPeers` identities. A peer whose own model is still
 * learning — or who arrives once the cap is reached — is judged by the route's model, so a new
 * or untracked peer is never unjudged once the route has learned. Nothing is evicted: the
 * identities come from certificates our CA issued, and a learned model is worth keeping.
 */
export interface SizeWatchOptions {
  readonly minSamples: number;
  readonly threshold: number;
  readonly maxTrackedPeers: number;
}

export interface SizeDecision extends SizeJudgement {
  /** whose model judged: the peer's own, or the route's */
  readonly by: 'peer' | 'route';
}

export class SizeWatch {
  readonly options: SizeWatchOptions;
  private readonly routes = new Map<string, SizeModel>();
  /**
   * route → peer identity → model. Two levels, not one key made of both: a key made per request is
   * a new string, hashed on every lookup; the route and identity strings live as long as their
   * listener and connection and keep their hash.
   */
  private readonly peers = new Map<string, Map<string, SizeModel>>();
  private tracked = 0;

  constructor(options: SizeWatchOptions) {
    this.options = options;
  }

  get trackedPeers(): number {
    return this.tracked;
  }

  judge(route: string, peer: string, bytes: number): SizeDecision {
    const own = this.peers.get(route)?.get(peer);
    if (own !== undefined && own.learned) return { ...own.judge(bytes), by: 'peer' };
    return { ...this.route(route).judge(bytes), by: 'route' };
  }

  /** the typical size for this peer on this route, from the model that judges it (NaN while nothing has learned) */
  typicalSize(route: string, peer: string): number {
    const own = this.peers.get(route)?.get(peer);
    if (own !== undefined && own.learned) return own.typicalSize();
    return this.route(route).typicalSize();
  }

  /** the largest normal size for this peer on this route (Infinity while nothing has learned) */
  upperBound(route: string, peer: string): number {
    const own = this.peers.get(route)?.get(peer);
    if (own !== undefined && own.learned) return own.upperBound();
    return this.route(route).upperBound();
  }

  /**
   * Learn from an accepted request — offer every one, flagged or not: each model learns only
   * what it would itself judge normal (or anything while it is still learning), so what a model
   * flags never teaches it, yet a peer whose sizes the route finds unusual still gets a model
   * of its own.
   */
  learn(route: string, peer: string, bytes: number): void {
    learnIfNormal(this.route(route), bytes);
    let byPeer = this.peers.get(route);
    let own = byPeer?.get(peer);
    if (own === undefined) {
      if (this.tracked >= this.options.maxTrackedPeers) return;
      own = new SizeModel(this.options.minSamples, this.options.threshold);
      if (byPeer === undefined) this.peers.set(route, (byPeer = new Map()));
      byPeer.set(peer, own);
      this.tracked += 1;
    }
    learnIfNormal(own, bytes);
  }

  private route(route: string): SizeModel {
    let model = this.routes.get(route);
    if (model === undefined) {
      model = new SizeModel(this.options.minSamples, this.options.threshold);
      this.routes.set(route, model);
    }
    return model;
  }
}

function learnIfNormal(model: SizeModel, bytes: number): void {
  const { verdict } = model.judge(bytes);
  if (verdict === 'learning' || verdict === 'normal') model.learn(bytes);
}
