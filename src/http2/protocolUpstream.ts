import { TollgateError } from '../core/errors.ts';
import type { Exchange } from '../http1/exchange.ts';
import type { UpstreamLink } from '../http1/upstreamConnection.ts';
import type { Acquired, Upstream } from '../http1/upstreamPool.ts';
import { H2Link, type H2Upstream } from './h2Upstream.ts';

/**
 * An outbound listener's remote peer, spoken to in the protocol each request came in: what the
 * app sent over HTTP/1.1 goes on a keep-alive HTTP/1.1 connection, what it sent over h2c goes
 * as a stream of an h2 session. A peer that does not offer h2 (ALPN) is asked again after a
 * while; meanwhile HTTP/2 requests go over HTTP/1.1, except gRPC, which needs HTTP/2 end to end.
 */

/** how long a peer that refused h2 is spoken to over HTTP/1.1 only */
const H2_REFUSED_MS = 30_000;

export class ProtocolUpstream implements Upstream {
  readonly h1: Upstream;
  readonly h2: H2Upstream;
  readonly now: () => number;
  h2RefusedUntil = 0;

  constructor(h1: Upstream, h2: H2Upstream, now: () => number) {
    this.h1 = h1;
    this.h2 = h2;
    this.now = now;
  }

  acquire(done: Acquired, ex: Exchange): void {
    this.pick(done, ex, false);
  }

  fresh(done: Acquired, ex: Exchange): void {
    this.pick(done, ex, true);
  }

  pick(done: Acquired, ex: Exchange, fresh: boolean): void {
    if (ex.protocol !== 'h2' || this.now() < this.h2RefusedUntil) {
      if (ex.grpc) return done(new TollgateError('ERR_GRPC_NEEDS_HTTP2', 'the remote peer does not offer h2'), null);
      return fresh ? this.h1.fresh(done, ex) : this.h1.acquire(done, ex);
    }
    const got: Acquired = (err, link) => {
      if (err instanceof H2Refused) {
        this.h2RefusedUntil = this.now() + H2_REFUSED_MS;
        return this.pick(done, ex, fresh);
      }
      done(err, link);
    };
    if (fresh) this.h2.fresh(got, ex);
    else this.h2.acquire(got, ex);
  }

  owner(link: UpstreamLink): Upstream {
    return link instanceof H2Link ? this.h2 : this.h1;
  }

  release(link: UpstreamLink, reusable: boolean): void {
    this.owner(link).release(link, reusable);
  }

  answered(link: UpstreamLink, status: number): void {
    this.owner(link).answered(link, status);
  }

  failedOn(link: UpstreamLink, err: Error): void {
    this.owner(link).failedOn(link, err);
  }

  close(): Promise<void> {
    return Promise.all([this.h1.close(), this.h2.close()]).then(() => undefined);
  }
}

/** the peer's TLS server did not choose h2 by ALPN */
export class H2Refused extends Error {
  constructor(chosen: string | false) {
    super(`the remote peer did not choose h2 (ALPN: ${chosen === false ? 'none' : chosen})`);
    this.name = 'H2Refused';
  }
}
