// Types for bin/nodeRuntime.js (plain JavaScript, so that it parses on the old Nodes it turns away).
export declare const MIN_NODE_MAJOR: number;
export declare const REEXEC_MARK: string;
export type RuntimeDecision =
  | { readonly action: 'run' }
  | { readonly action: 'reexec'; readonly binary: string }
  | { readonly action: 'refuse'; readonly message: string };
export declare function pinnedNodePath(platform: NodeJS.Platform): string;
export declare function runtimeDecision(version: string, pinned: string | null, reexeced: boolean): RuntimeDecision;
export declare function decideForThisProcess(): RuntimeDecision;
