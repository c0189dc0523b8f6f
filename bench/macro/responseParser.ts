/**
 * A minimal HTTP/1.1 response reader for the load client: status line, Content-Length or
 * chunked bodies (read and thrown away), `1xx` interim responses skipped, bodies without
 * either read until the connection closes. Calls onResponse(status, close) per response.
 */
const HEAD_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[ \t]*[^\r]*chunked/i;
const CLOSE = /\r\nconnection:[ \t]*close/i;

/** parser states (plain numbers: enums are not erasable syntax) */
const State = { Head: 0, Body: 1, ChunkSize: 2, ChunkData: 3, ChunkDataEnd: 4, Trailer: 5, UntilClose: 6 } as const;

export class ResponseParser {
  private state: number = State.Head;
  private partial: Buffer | null = null;
  private line = '';
  private remaining = 0;
  private status = 0;
  private close = false;

  private readonly onResponse: (status: number, close: boolean) => void;

  constructor(onResponse: (status: number, close: boolean) => void) {
    this.onResponse = onResponse;
  }

  /** true while a response has started but not finished (a close now is a reset) */
  get midResponse(): boolean {
    return this.state !== State.Head || this.partial !== null;
  }

  /** The connection closed: a body read until close ends here. */
  end(): void {
    if (this.state === State.UntilClose) this.finish();
  }

  reset(): void {
    this.state = State.Head;
    this.partial = null;
    this.line = '';
  }

  push(input: Buffer): void {
    let chunk = input;
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case State.Head: {
          if (this.partial !== null) {
            chunk = Buffer.concat([this.partial, chunk.subarray(off)]);
            off = 0;
            this.partial = null;
          }
          const end = chunk.indexOf(HEAD_END, off);
          if (end < 0) {
            this.partial = Buffer.from(chunk.subarray(off));
            return;
          }
          const head = chunk.toString('latin1', off, end + 2);
          off = end + 4;
          this.status = Number(head.slice(9, 12));
          if (this.status >= 100 && this.status < 200) continue;
          this.close = CLOSE.test(head);
          if (CHUNKED.test(head)) {
            this.state = State.ChunkSize;
            this.line = '';
          } else {
            const m = CONTENT_LENGTH.exec(head);
            if (m) {
              this.remaining = Number(m[1]);
              this.state = State.Body;
              if (this.remaining === 0) this.finish();
            } else if (this.status === 204 || this.status === 304) {
              this.finish();
            } else {
              this.state = State.UntilClose;
            }
          }
          break;
        }
        case State.Body: {
          const take = Math.min(this.remaining, chunk.length - off);
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) this.finish();
          break;
        }
        case State.ChunkSize:
        case State.Trailer: {
          const nl = chunk.indexOf(10, off);
          if (nl < 0) {
            this.line += chunk.toString('latin1', off);
            return;
          }
          const text = (this.line + chunk.toString('latin1', off, nl)).replace(/\r$/, '');
          this.line = '';
          off = nl + 1;
          if (this.state === State.Trailer) {
            if (text === '') this.finish();
          } else {
            this.remaining = parseInt(text, 16);
            this.state = this.remaining === 0 ? State.Trailer : State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, chunk.length - off);
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = State.ChunkDataEnd;
            this.remaining = 2;
          }
          break;
        }
        case State.ChunkDataEnd: {
          const take = Math.min(this.remaining, chunk.length - off);
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.ChunkSize;
          break;
        }
        case State.UntilClose:
          return;
      }
    }
  }

  private finish(): void {
    this.state = State.Head;
    this.onResponse(this.status, this.close);
  }
}
