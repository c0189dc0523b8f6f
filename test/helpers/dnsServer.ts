/**
 * A tiny authoritative DNS server on 127.0.0.1 (UDP, port 0) for resolver tests: it answers A and
 * AAAA queries from a table the test changes at run time, one TTL per record, NXDOMAIN for a name
 * it does not hold, NOERROR with no answer (NODATA) for a name it holds without that type, and it
 * counts every query it receives, answered or not.
 *
 *   const dns = await startDnsServer(t);
 *   dns.set('app.test', [{ address: '10.0.0.1', ttl: 1 }, { address: 'fd00::1', ttl: 1 }]);
 *   const resolver = new Resolver({ timeout: 300, tries: 1 });
 *   resolver.setServers([dns.address]);
 */
import dgram from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import type { Teardownable } from './pki.ts';

export interface DnsRecord {
  /** an IPv4 address answers A queries, an IPv6 address AAAA queries */
  readonly address: string;
  /** seconds */
  readonly ttl: number;
}

export interface DnsQuery {
  readonly name: string;
  readonly type: 'A' | 'AAAA' | number;
  /** Date.now() when it arrived */
  readonly at: number;
}

export interface TestDnsServer {
  /** `127.0.0.1:PORT`, for Resolver.setServers */
  readonly address: string;
  /** replace the records of `name` (an empty list makes the name exist with no records) */
  set(name: string, records: readonly DnsRecord[]): void;
  /** forget `name`: it answers NXDOMAIN again */
  remove(name: string): void;
  /** while true, queries are counted but never answered (a DNS server gone dark) */
  silent: boolean;
  /** queries received so far for `name`, or for every name */
  queryCount(name?: string): number;
  /** every query received, in order */
  readonly queries: readonly DnsQuery[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
const HEADER_LENGTH = 12;
const RCODE_NXDOMAIN = 3;
const RCODE_FORMERR = 1;

/** Start the server; it is closed when `t` ends. */
export async function startDnsServer(t: Teardownable): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const table = new Map<string, readonly DnsRecord[]>();
  const queries: DnsQuery[] = [];
  let closing: Promise<void> | null = null;
  const server: TestDnsServer = {
    address: '',
    silent: false,
    queries,
    set(name, records) {
      for (const r of records)
        if (!isIPv4(r.address) && !isIPv6(r.address)) throw new Error(`not an IP address: ${r.address}`);
      table.set(name.toLowerCase(), [...records]);
    },
    remove(name) {
      table.delete(name.toLowerCase());
    },
    queryCount(name) {
      if (name === undefined) return queries.length;
      const lower = name.toLowerCase();
      return queries.filter((q) => q.name === lower).length;
    },
    close() {
      closing ??= new Promise<void>((resolve) => socket.close(() => resolve()));
      return closing;
    },
  };
  socket.on('message', (msg, peer) => {
    const question = readQuestion(msg);
    if (question === null) {
      if (msg.length >= 2) socket.send(header(msg.readUInt16BE(0), 0, RCODE_FORMERR, 0, 0), peer.port, peer.address);
      return;
    }
    const type = question.type === TYPE_A ? 'A' : question.type === TYPE_AAAA ? 'AAAA' : question.type;
    queries.push({ name: question.name, type, at: Date.now() });
    if (server.silent) return;
    socket.send(answer(msg, question, table.get(question.name)), peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  Object.assign(server, { address: `127.0.0.1:${socket.address().port}` });
  t.teardown(() => server.close());
  return server;
}

interface Question {
  readonly name: string;
  readonly type: number;
  /** the question section as received, echoed back in the answer */
  readonly raw: Buffer;
  readonly flags: number;
  readonly id: number;
}

/** The first question of a query, or null for a message that is not one. */
function readQuestion(msg: Buffer): Question | null {
  if (msg.length < HEADER_LENGTH) return null;
  const flags = msg.readUInt16BE(2);
  const isResponse = (flags & 0x8000) !== 0;
  if (isResponse || msg.readUInt16BE(4) < 1) return null;
  const labels: string[] = [];
  let at = HEADER_LENGTH;
  for (;;) {
    if (at >= msg.length) return null;
    const length = msg[at]!;
    at += 1;
    if (length === 0) break;
    // a query carries no compression pointers in its first name
    if (length > 63 || at + length > msg.length) return null;
    labels.push(msg.toString('latin1', at, at + length).toLowerCase());
    at += length;
  }
  if (at + 4 > msg.length) return null;
  const type = msg.readUInt16BE(at);
  const raw = msg.subarray(HEADER_LENGTH, at + 4);
  return { name: labels.join('.'), type, raw, flags, id: msg.readUInt16BE(0) };
}

function header(id: number, queryFlags: number, rcode: number, questions: number, answers: number): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH);
  out.writeUInt16BE(id, 0);
  // QR, the query's opcode and RD, AA (authoritative), the response code
  const flags = 0x8000 | (queryFlags & 0x7900) | 0x0400 | rcode;
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(questions, 4);
  out.writeUInt16BE(answers, 6);
  return out;
}

function answer(msg: Buffer, q: Question, records: readonly DnsRecord[] | undefined): Buffer {
  if (records === undefined) return Buffer.concat([header(q.id, q.flags, RCODE_NXDOMAIN, 1, 0), q.raw]);
  const wanted = records.filter((r) =>
    q.type === TYPE_A ? isIPv4(r.address) : q.type === TYPE_AAAA && isIPv6(r.address),
  );
  const parts = [header(q.id, q.flags, 0, 1, wanted.length), q.raw];
  for (const r of wanted) {
    const rdata = q.type === TYPE_A ? ipv4Bytes(r.address) : ipv6Bytes(r.address);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc000 | HEADER_LENGTH, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(r.ttl, 6);
    rr.writeUInt16BE(rdata.length, 10);
    parts.push(rr, rdata);
  }
  return Buffer.concat(parts);
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 address in any textual form (`::` anywhere, no embedded IPv4). */
function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
