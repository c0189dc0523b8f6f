import { X509Certificate } from 'node:crypto';
import { peerIdentity, type PeerIdentity } from './peerIdentity.ts';

/**
 * What a certificate says about its holder, remembered by the certificate's SHA-256
 * fingerprint, so a peer that reconnects (every full handshake of a pipeline client does)
 * costs a hash lookup instead of a parse of its names and an export and hash of its key.
 *
 * Only the identity is remembered, never a decision: the chain, validity and revocation are
 * checked by OpenSSL on every handshake, before this is asked, and authorization runs on the
 * identity each time. The identity is a pure function of the certificate's bytes, so an
 * entry can never be stale. Bounded: past `capacity` the oldest entry goes first.
 */
export class PeerIdentityCache {
  readonly capacity: number;
  readonly #entries = new Map<string, PeerIdentity>();

  constructor(capacity = 1024) {
    this.capacity = capacity;
  }

  identityOf(cert: X509Certificate): PeerIdentity {
    return this.#entries.get(cert.fingerprint256) ?? this.#remember(cert.fingerprint256, peerIdentity(cert));
  }

  /** The same, from what `checkServerIdentity` is given (the DER is parsed only when not known). */
  identityOfPeerCertificate(cert: { readonly fingerprint256: string; readonly raw: Buffer }): PeerIdentity {
    return this.#entries.get(cert.fingerprint256) ?? this.#remember(cert.fingerprint256, peerIdentity(new X509Certificate(cert.raw)));
  }

  #remember(key: string, id: PeerIdentity): PeerIdentity {
    if (this.#entries.size >= this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, id);
    return id;
  }

  get size(): number {
    return this.#entries.size;
  }
}
