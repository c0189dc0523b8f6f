import { X509Certificate } from 'node:crypto';
import { peerIdentity, type PeerIdentity } from './peerIdentity.ts';
import { revocationKeyOf } from './revocation.ts';

/**
 * What a certificate says about its holder, remembered by the certificate's SHA-256
 * fingerprint, so a peer that reconnects (every full handshake of a pipeline client does)
 * costs a hash lookup instead of a parse of its names and an export and hash of its key.
 *
 * Only the identity is remembered, never a decision: the chain, validity and revocation are
 * checked by OpenSSL on every full handshake, and against the current CRLs by the inbound
 * listener on every connection (with the revocation key kept here), and authorization runs on
 * the identity each time. Both are pure functions of the certificate's bytes, so an entry can
 * never be stale. Bounded: past `capacity` the oldest entry goes first.
 */
export class PeerIdentityCache {
  readonly capacity: number;
  readonly #entries = new Map<string, Entry>();

  constructor(capacity = 1024) {
    this.capacity = capacity;
  }

  identityOf(cert: X509Certificate): PeerIdentity {
    return this.#entryOf(cert).identity;
  }

  /** The certificate's issuer and serial as revocation lists are looked up (tls/revocation.ts). */
  revocationKeyOf(cert: X509Certificate): string {
    return this.#entryOf(cert).revocationKey;
  }

  /** The same, from what `checkServerIdentity` is given (the DER is parsed only when not known). */
  identityOfPeerCertificate(cert: { readonly fingerprint256: string; readonly raw: Buffer }): PeerIdentity {
    return (
      this.#entries.get(cert.fingerprint256) ?? this.#remember(cert.fingerprint256, new X509Certificate(cert.raw))
    ).identity;
  }

  #entryOf(cert: X509Certificate): Entry {
    return this.#entries.get(cert.fingerprint256) ?? this.#remember(cert.fingerprint256, cert);
  }

  #remember(key: string, cert: X509Certificate): Entry {
    if (this.#entries.size >= this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    const entry: Entry = { identity: peerIdentity(cert), revocationKey: revocationKeyOf(cert) };
    this.#entries.set(key, entry);
    return entry;
  }

  get size(): number {
    return this.#entries.size;
  }
}

interface Entry {
  readonly identity: PeerIdentity;
  readonly revocationKey: string;
}
