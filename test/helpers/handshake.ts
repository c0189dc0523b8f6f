/**
 * One TLS handshake against a listener, to see which certificate it serves now (a new
 * connection, so a new handshake with the server's current secure context) or why it refused.
 */
import tls from 'node:tls';

export type HandshakeResult =
  | { readonly ok: true; readonly serial: string; readonly fingerprint256: string }
  | { readonly ok: false; readonly error: string };

export interface HandshakeOptions {
  readonly ca: string;
  /** the client certificate and key; none when null */
  readonly identity: { certPem: string; keyPem: string } | null;
  readonly servername?: string;
  readonly timeoutMs?: number;
}

/**
 * Resolves ok with the server certificate once the server has accepted us. TLS 1.3 lets the
 * client finish before the server has checked the client certificate, so this sends an HTTP
 * request and waits for the first byte of the answer (any status): for HTTP listeners.
 */
export function handshake(addr: string, opts: HandshakeOptions): Promise<HandshakeResult> {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(i + 1));
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: HandshakeResult): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    const socket = tls.connect({
      host,
      port,
      servername: opts.servername ?? 'localhost',
      ca: opts.ca,
      ...(opts.identity === null ? {} : { cert: opts.identity.certPem, key: opts.identity.keyPem }),
    });
    socket.setTimeout(opts.timeoutMs ?? 5000, () => done({ ok: false, error: 'timeout' }));
    let cert: { serial: string; fingerprint256: string } | null = null;
    socket.once('secureConnect', () => {
      const c = socket.getPeerCertificate();
      cert = { serial: c.serialNumber, fingerprint256: c.fingerprint256 };
      // an HTTP request the server answers only after it accepted our certificate
      socket.write('GET /__handshake HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
    });
    socket.once('data', () => {
      if (cert !== null) done({ ok: true, ...cert });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
    socket.once('close', () => done({ ok: false, error: cert === null ? 'closed' : 'closed after the handshake' }));
  });
}
