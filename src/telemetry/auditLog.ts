/**
 * The tamper-evident audit log: an AuditSink writing hash-chained, HMAC'd JSON lines (format in
 * auditChain.ts) to `audit.file`, off the hot path.
 *
 * - record() counts the event and appends it to an in-memory batch; nothing else. The lines are
 *   formatted (seq, prev hash, MAC) and written when the batch is flushed: by a short unref'd
 *   timer, when the batch reaches `batchEvents`, or by flush() (which also fsyncs).
 * - One write per batch, through a FileHandle opened 'a' with mode 0600, one writer at a time.
 * - Bounded: at most `maxPendingEvents` events wait for the disk (plus the one batch being
 *   written). Past that, events are dropped
 *   and counted (metric, one error log line), and the next write puts an `audit_dropped` line
 *   with the count into the chain — so a stuck disk or a flood cannot exhaust memory or stall
 *   the request path, and the gap is itself recorded. We chose this over blocking callers:
 *   an audit sink that blocks would turn a disk problem into an outage of the proxy.
 * - A failed write keeps its bytes (the chain is already computed) and is retried from the
 *   byte where it stopped, so a partial write never breaks the chain.
 * - Rotation by size: when a line would take FILE past maxFileBytes, FILE becomes FILE.1
 *   (older ones shift up, at most maxFiles kept) and the chain continues in a new FILE.
 * - Start: the chain continues from the last line of FILE (or of FILE.1 when FILE is missing
 *   or empty); a last line that does not verify under the key refuses the start.
 */
import type { KeyObject } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import type { Config } from '../config/types.ts';
import { fileExposure, processGroupIds } from '../core/fileExposure.ts';
import { loadKeyFile } from '../core/keyFile.ts';
import type { AuditEventType, AuditSink } from './audit.ts';
import { checkLine, formatLine, GENESIS_HASH, lineHash, type ChainPosition } from './auditChain.ts';

export interface AuditHead {
  readonly seq: number;
  readonly hash: string;
  readonly file: string;
}

export interface AuditLog extends AuditSink {
  /** seq and hash of the last line written (seq 0 and 64 zeros before the first) */
  head(): AuditHead;
  /** events dropped because the batch was full */
  dropped(): number;
  /** flush, then close the file; later records are dropped */
  close(): Promise<void>;
}

export interface AuditLogWarn {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface AuditLogOptions {
  readonly file: string;
  readonly key: KeyObject;
  readonly log: AuditLogWarn;
  /** counts every recorded event (tollgate_audit_events_total) */
  readonly count: (type: AuditEventType) => void;
  /** counts every dropped event */
  readonly countDropped?: () => void;
  readonly maxFileBytes: number;
  readonly maxFiles: number;
  readonly now?: () => Date;
  readonly flushIntervalMs?: number; // default 100
  readonly batchEvents?: number; // default 512
  readonly maxPendingEvents?: number; // default 65536
  /** how files are opened (tests spy on the handle) */
  readonly openFile?: (path: string) => Promise<FileHandle>;
}

export type AuditLogOpen =
  { readonly ok: true; readonly log: AuditLog } | { readonly ok: false; readonly problems: readonly string[] };

/** The longest last line looked for on start; a longer one is treated as corrupt. */
const MAX_TAIL_BYTES = 1 << 20;

interface Pending {
  readonly type: string;
  readonly time: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

function openAppend(path: string): Promise<FileHandle> {
  return open(path, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o600);
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? (err as Error).message;
}

type Tail =
  { kind: 'empty' } | { kind: 'missing' } | { kind: 'line'; pos: ChainPosition } | { kind: 'problem'; problem: string };

/** The chain position at the end of `path`, checked under the key. */
async function readTail(path: string, key: KeyObject): Promise<Tail> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return { kind: 'missing' };
    return { kind: 'problem', problem: `${path}: cannot open (${errCode(err)})` };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { kind: 'problem', problem: `${path}: not a regular file` };
    if (st.size === 0) return { kind: 'empty' };
    const length = Math.min(st.size, MAX_TAIL_BYTES + 1);
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, st.size - length + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== length) return { kind: 'problem', problem: `${path}: the file shrank while it was read` };
    if (buf[length - 1] !== 0x0a)
      return {
        kind: 'problem',
        problem: `${path}: the last line is incomplete (no newline: a truncated write?); verify it with \`tollgate audit verify\` and move it aside to start a new chain`,
      };
    const start = buf.lastIndexOf(0x0a, length - 2) + 1;
    if (start === 0 && st.size > length)
      return { kind: 'problem', problem: `${path}: the last line is over ${MAX_TAIL_BYTES} bytes` };
    const c = checkLine(key, buf.subarray(start, length - 1).toString('utf8'));
    if (!c.ok)
      return {
        kind: 'problem',
        problem: `${path}: the last line does not verify (${c.problem}); verify the file with \`tollgate audit verify\` and move it aside to start a new chain`,
      };
    return { kind: 'line', pos: { seq: c.seq, hash: c.hash } };
  } catch (err) {
    return { kind: 'problem', problem: `${path}: cannot read (${errCode(err)})` };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Where the chain stands on start: the end of FILE, or of FILE.1 when FILE is missing or empty. */
async function findChainEnd(file: string, key: KeyObject): Promise<{ pos: ChainPosition } | { problem: string }> {
  for (const path of [file, `${file}.1`]) {
    const tail = await readTail(path, key);
    if (tail.kind === 'problem') return { problem: tail.problem };
    if (tail.kind === 'line') return { pos: tail.pos };
  }
  return { pos: { seq: 0, hash: GENESIS_HASH } };
}

export async function openAuditLog(opts: AuditLogOptions): Promise<AuditLogOpen> {
  const end = await findChainEnd(opts.file, opts.key);
  if ('problem' in end) return { ok: false, problems: [end.problem] };
  const openFile = opts.openFile ?? openAppend;
  let fh: FileHandle;
  let size: number;
  try {
    fh = await openFile(opts.file);
    const st = await fh.stat();
    size = st.size;
    const exposure = fileExposure(st, processGroupIds());
    if (exposure !== null)
      opts.log.warn(
        { file: opts.file, exposure },
        'the audit log file is open to more than this process; make it 0600',
      );
  } catch (err) {
    return { ok: false, problems: [`${opts.file}: cannot open for appending (${errCode(err)})`] };
  }
  return { ok: true, log: auditLogWriter(opts, fh, size, end.pos, openFile) };
}

function auditLogWriter(
  opts: AuditLogOptions,
  initial: FileHandle,
  initialSize: number,
  start: ChainPosition,
  openFile: (path: string) => Promise<FileHandle>,
): AuditLog {
  const { file, key, log } = opts;
  const now = opts.now ?? (() => new Date());
  const interval = opts.flushIntervalMs ?? 100;
  const batchEvents = opts.batchEvents ?? 512;
  const maxPending = opts.maxPendingEvents ?? 65536;
  let fh: FileHandle | null = initial;
  let size = initialSize;
  let pos: ChainPosition = start;
  /** the chain position of the last line written */
  let written: ChainPosition = start;
  let pending: Pending[] = [];
  /** formatted bytes not yet (fully) written, in order */
  let unwritten: { buf: Buffer; offset: number } | null = null;
  let dropped = 0;
  let droppedSinceWrite = 0;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;
  let writing: Promise<void> = Promise.resolve();
  let failing = false;

  const schedule = (ms: number): void => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      drain(false).catch(() => undefined); // logged in writeOut; retried by its own timer
    }, ms);
    timer.unref();
  };

  /** one writer at a time: each drain waits for the previous one */
  const drain = (sync: boolean): Promise<void> => {
    const run = writing.then(() => writeOut(sync));
    writing = run.catch(() => undefined);
    return run;
  };

  const rotate = async (): Promise<void> => {
    await fh!.datasync();
    await fh!.close();
    fh = null;
    await rm(`${file}.${opts.maxFiles}`, { force: true });
    for (let i = opts.maxFiles - 1; i >= 1; i--) {
      await rename(`${file}.${i}`, `${file}.${i + 1}`).catch((err: unknown) => {
        if (errCode(err) !== 'ENOENT') throw err;
      });
    }
    await rename(file, `${file}.1`);
    fh = await openFile(file);
    size = 0;
  };

  const writeBuf = async (): Promise<void> => {
    while (unwritten !== null) {
      if (fh === null) fh = await openFile(file);
      const { buf, offset } = unwritten;
      if (offset >= buf.length) {
        unwritten = null;
        break;
      }
      const { bytesWritten } = await fh.write(buf, offset, buf.length - offset);
      size += bytesWritten;
      unwritten = offset + bytesWritten >= buf.length ? null : { buf, offset: offset + bytesWritten };
    }
  };

  /** format what is pending into lines (rotating when a line would overflow the file) and write them */
  const writeOut = async (sync: boolean): Promise<void> => {
    let batch: Pending[] = [];
    let i = 0;
    try {
      await writeBuf(); // anything a failed write left
      written = pos;
      while (pending.length > 0 || droppedSinceWrite > 0) {
        // one batch at a time, so formatting (HMAC + hash, ~10 µs a line) never holds the event loop for long
        batch = pending.length <= batchEvents ? pending : pending.splice(0, batchEvents);
        if (batch === pending) pending = [];
        i = 0;
        if (pending.length === 0 && droppedSinceWrite > 0) {
          // the drops happened after the batch filled up, so their record comes after it
          batch.push({
            type: 'audit_dropped',
            time: now().toISOString(),
            fields: { dropped: droppedSinceWrite, reason: 'the audit batch was full' },
          });
          droppedSinceWrite = 0;
        }
        let chunk: string[] = [];
        let chunkBytes = 0;
        for (; i < batch.length; i++) {
          const ev = batch[i]!;
          let line: string;
          try {
            line = formatLine(key, pos, ev.time, ev.type, ev.fields);
          } catch (err) {
            line = formatLine(key, pos, ev.time, ev.type, { unserializable: (err as Error).message });
          }
          const bytes = Buffer.byteLength(line) + 1;
          if (size + chunkBytes + bytes > opts.maxFileBytes && size + chunkBytes > 0) {
            unwritten = { buf: Buffer.from(chunk.join('')), offset: 0 };
            chunk = [];
            chunkBytes = 0;
            await writeBuf();
            written = pos;
            await rotate();
          }
          chunk.push(line + '\n');
          chunkBytes += bytes;
          pos = { seq: pos.seq + 1, hash: lineHash(line) };
        }
        batch = [];
        unwritten = { buf: Buffer.from(chunk.join('')), offset: 0 };
        await writeBuf();
        written = pos;
      }
      if (sync && fh !== null) await fh.datasync();
      if (failing) {
        failing = false;
        log.warn({ file }, 'audit log writes recovered');
      }
    } catch (err) {
      // events not yet formatted go back to the front; formatted ones wait in `unwritten`
      if (i < batch.length) pending = batch.slice(i).concat(pending);
      if (!failing)
        log.error(
          { file, err: errCode(err) },
          'audit log write failed; retrying (events are kept up to the batch cap)',
        );
      failing = true;
      if (!closed) schedule(Math.max(interval, 1000));
      throw err;
    }
  };

  return {
    record(type, fields) {
      opts.count(type);
      log.debug({ audit: true, event: type }, `audit ${type}`);
      if (closed) {
        // after shutdown's close (a late event from a connection being torn down)
        dropped++;
        opts.countDropped?.();
        log.warn({ file, event: type }, 'audit event after the audit log was closed: not written');
        return;
      }
      if (pending.length >= maxPending) {
        dropped++;
        droppedSinceWrite++;
        opts.countDropped?.();
        if (droppedSinceWrite === 1)
          log.error(
            { file, maxPendingEvents: maxPending },
            'audit events are being dropped: the audit log cannot keep up (the count is written into the chain when it can)',
          );
        return;
      }
      pending.push({ type, time: now().toISOString(), fields });
      if (pending.length >= batchEvents) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        schedule(0);
      } else schedule(interval);
    },
    flush() {
      return drain(true);
    },
    head: () => ({ seq: written.seq, hash: written.hash, file }),
    dropped: () => dropped,
    async close() {
      try {
        await drain(true);
      } finally {
        closed = true;
        if (timer !== null) clearTimeout(timer);
        timer = null;
        await fh?.close().catch(() => undefined);
        fh = null;
      }
    },
  };
}

export interface AuditLogStartDeps {
  readonly log: AuditLogWarn;
  readonly count: (type: AuditEventType) => void;
  readonly countDropped: () => void;
}

/**
 * The configured audit log, or null when `audit.file` is not set. Problems (a weak or missing
 * key, a last line that does not verify) are configuration problems, named by their path.
 */
export async function startAuditLog(
  config: Config['audit'],
  deps: AuditLogStartDeps,
): Promise<{ ok: true; log: AuditLog | null } | { ok: false; problems: readonly string[] }> {
  if (config.file === null) return { ok: true, log: null };
  if (config.keyFile === null) return { ok: false, problems: ['audit.keyFile: required when audit.file is set'] };
  const key = await loadKeyFile(config.keyFile);
  if (!key.ok) return { ok: false, problems: [`audit.keyFile: ${key.problem}`] };
  if (key.warning !== null) deps.log.warn({ keyFile: config.keyFile }, `audit.keyFile: ${key.warning}`);
  const opened = await openAuditLog({
    file: config.file,
    key: key.key,
    log: deps.log,
    count: deps.count,
    countDropped: deps.countDropped,
    maxFileBytes: config.maxFileBytes,
    maxFiles: config.maxFiles,
  });
  if (!opened.ok) return { ok: false, problems: opened.problems.map((p) => `audit.file: ${p}`) };
  return { ok: true, log: opened.log };
}

/** What `tollgate check` says about the audit settings: the key loads, and the file's chain can be continued. */
export async function checkAuditLog(
  config: Config['audit'],
): Promise<{ ok: true; seq: number | null; warnings: readonly string[] } | { ok: false; problems: readonly string[] }> {
  if (config.file === null || config.keyFile === null) return { ok: true, seq: null, warnings: [] };
  const key = await loadKeyFile(config.keyFile);
  if (!key.ok) return { ok: false, problems: [`audit.keyFile: ${key.problem}`] };
  const end = await findChainEnd(config.file, key.key);
  if ('problem' in end) return { ok: false, problems: [`audit.file: ${end.problem}`] };
  return { ok: true, seq: end.pos.seq, warnings: key.warning === null ? [] : [`audit.keyFile: ${key.warning}`] };
}
