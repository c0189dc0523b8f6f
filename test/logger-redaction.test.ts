import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger } from '../src/telemetry/logger.ts';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  return { lines, stream };
}

t.test('credentials, signatures and key material never reach the log', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', destination: stream });
  const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtbG9n';
  log.info(
    {
      headers: {
        authorization: `Bearer ${secret}`,
        cookie: `s=${secret}`,
        signature: `tollgate=:${secret}:`,
        'signature-input': `tollgate=("@method");keyid="${secret}"`,
        host: 'ingest',
      },
      req: { headers: { authorization: `Bearer ${secret}`, 'proxy-authorization': `Basic ${secret}` } },
      key: secret,
      identity: { keyPem: `-----BEGIN PRIVATE KEY-----${secret}`, privateKey: secret },
      admin: { token: secret },
    },
    'request',
  );
  log.flush();
  t.equal(lines.length, 1);
  const line = lines[0]!;
  t.notMatch(line, secret, 'no secret survives');
  const parsed = JSON.parse(line) as {
    headers: Record<string, string>;
    key: string;
    identity: Record<string, string>;
    level: string;
  };
  t.equal(parsed.headers.authorization, '[REDACTED]');
  t.equal(parsed.headers['signature-input'], '[REDACTED]');
  t.equal(parsed.headers.host, 'ingest', 'ordinary headers are kept');
  t.equal(parsed.key, '[REDACTED]');
  t.equal(parsed.identity.keyPem, '[REDACTED]');
  t.equal(parsed.level, 'info');
});

t.test('a child logger per connection carries its bindings', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'debug', destination: stream });
  log
    .child({ conn: 7, peer: 'spiffe://example.org/producer' })
    .warn({ code: 'ERR_PEER_NOT_ALLOWED' }, 'peer not allowed');
  log.flush();
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.equal(parsed.conn, 7);
  t.equal(parsed.peer, 'spiffe://example.org/producer');
  t.equal(parsed.code, 'ERR_PEER_NOT_ALLOWED');
  t.equal(parsed.level, 'warn');
});
