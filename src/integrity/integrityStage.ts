import type { BodyMode } from '../config/types.ts';
import type { VerifierDeps } from './verifier.ts';
import type { NonceSource, SignatureTemplates } from './signer.ts';
import type { KeyRing } from './keyRing.ts';
import type { MacKeys } from './hmac.ts';

/** What a listener does for message integrity: verify (inbound), sign (outbound), or nothing (null). */
export type IntegrityStage =
  | {
      readonly kind: 'verify';
      readonly verifier: VerifierDeps;
      readonly bodyMode: BodyMode;
      readonly maxBufferedBytes: number;
    }
  | {
      readonly kind: 'sign';
      readonly keyId: string;
      readonly keys: () => KeyRing;
      readonly macs: MacKeys;
      readonly nonces: NonceSource;
      readonly templates: SignatureTemplates;
      readonly tag: string;
      readonly maxBufferedBytes: number;
    };
