import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { errnoText } from '../core/errnoText.ts';
import { loadKeyFile } from '../core/keyFile.ts';
import { verifyChain, type ChainPosition, type VerifyFile } from '../telemetry/auditChain.ts';
import { AUDIT_VERIFY_COMMAND, commandsUnder, usageOf } from './commands.ts';
import { parseCommand, wantsHelp } from './flagSpec.ts';
import { answerUnparsed, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Output } from './output.ts';

const HEAD = /^([1-9][0-9]{0,15}):([0-9a-f]{64})$/;

/** the errno code with its sentence, or the message */
function errCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === undefined ? (err as Error).message : errnoText(code);
}

/**
 * `tollgate audit verify FILE --key F`: verify the hash chain and MACs of FILE together with its
 * rotated files, found next to it (FILE.1, FILE.2, … up to the first number missing), oldest
 * first. Exit 0 with a summary when intact; 1 naming the first bad line (file:line: what is
 * wrong); 2 for bad usage (no file, no or weak key).
 *
 * --partial: the oldest line present need not be seq 1 (older files were rotated away).
 * --expect-head SEQ:HASH: a head exported earlier (GET /audit/head); the line with that seq
 *   must have that hash and the log must reach it (catches truncation, and rewriting by
 *   someone who holds the key).
 */
export async function auditCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'verify') {
    const usage = usageOf(commandsUnder('audit'));
    if (wantsHelp(argv)) {
      o.out(usage);
      return EXIT_OK;
    }
    o.err(sub === undefined ? usage : `tollgate audit: unknown subcommand ${sub}\n${usage}`);
    return EXIT_USAGE;
  }
  const parsed = parseCommand(AUDIT_VERIFY_COMMAND, rest);
  if (parsed.kind !== 'ok') return answerUnparsed(o, AUDIT_VERIFY_COMMAND, parsed);
  const { values } = parsed;
  const logFile = parsed.operand;
  let anchor: ChainPosition | null = null;
  if (values['expect-head'] !== undefined) {
    const m = HEAD.exec(values['expect-head']);
    if (m === null) {
      o.err(
        'tollgate audit verify: --expect-head must be SEQ:HASH (a positive seq and 64 lowercase hex digits, as /audit/head gives them)',
      );
      return EXIT_USAGE;
    }
    anchor = { seq: Number(m[1]), hash: m[2]! };
  }
  const key = await loadKeyFile(resolve(cwd, values.key));
  if (!key.ok) {
    o.err(`tollgate audit verify: --key: ${key.problem}`);
    return EXIT_USAGE;
  }
  const file = resolve(cwd, logFile);
  const files: VerifyFile[] = [];
  try {
    files.push({ name: logFile, text: await readFile(file, 'utf8') });
  } catch (err) {
    o.err(`tollgate audit verify: ${logFile}: cannot read (${errCode(err)})`);
    return EXIT_USAGE;
  }
  for (let n = 1; ; n++) {
    const text = await readFile(`${file}.${n}`, 'utf8').catch((err: unknown) => err as Error);
    if (text instanceof Error) {
      if ((text as NodeJS.ErrnoException).code === 'ENOENT') break;
      o.err(`tollgate audit verify: ${logFile}.${n}: cannot read (${errCode(text)})`);
      return EXIT_FAILURE;
    }
    files.unshift({ name: `${logFile}.${n}`, text });
  }
  const verdict = verifyChain(key.key, files, values.partial, anchor);
  if (!verdict.ok) {
    o.err(`${verdict.file}:${verdict.line}: ${verdict.problem}`);
    o.out(`tampered: first bad line ${verdict.file}:${verdict.line}`);
    return EXIT_FAILURE;
  }
  const names = files.map((f) => f.name).join(', ');
  if (verdict.lines === 0) o.out(`intact: no lines (${names})`);
  else {
    o.out(
      `intact: ${verdict.lines} lines in ${files.length} file${files.length === 1 ? '' : 's'} (${names}), seq ${verdict.firstSeq}..${verdict.lastSeq}, head ${verdict.head}`,
    );
    if (verdict.firstSeq !== 1)
      o.out(
        `note: the chain starts at seq ${verdict.firstSeq} (prev ${verdict.firstPrev}); older lines are not present`,
      );
  }
  if (anchor !== null) o.out(`anchored head seq ${anchor.seq} matches`);
  return EXIT_OK;
}
