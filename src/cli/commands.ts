/**
 * Every command's flags, declared once: the commands parse with these (parseCommand) and the
 * help and usage are printed from them (helpText, synopsis), so the two cannot drift.
 * `inbound` and `outbound` take their flags from the quick-command table in config/flags.ts,
 * which their parser uses; `webhook` parses its own, checked equal to WEBHOOK_COMMAND by a test.
 */
import { quickModeFlags, type QuickMode } from '../config/flags.ts';
import { DEFAULT_VALIDITY_DAYS } from '../certs/devPki.ts';
import { synopsis, type CommandSpec } from './flagSpec.ts';

/** `certs dev` without --trust-domain */
export const DEV_TRUST_DOMAIN = 'example.org';

const EXIT_CODES = 'exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid configuration';

export const RUN_COMMAND = {
  name: 'run',
  summary:
    'Run every listener in a config file, plus the admin and health servers. SIGTERM/SIGINT drain and stop; SIGHUP reloads.',
  flags: [
    {
      name: 'config',
      value: 'FILE',
      required: true,
      description: 'the JSON config file (relative paths in it resolve against its folder)',
    },
  ],
  notes: [EXIT_CODES],
} as const satisfies CommandSpec;

export const CHECK_COMMAND = {
  name: 'check',
  summary:
    'Validate a config file and what it names, as `run` would, without starting: the certificates (key matches, ' +
    'chain verifies, not expired), CRLs, the key ring, the audit log. Every problem is listed, each with its path.',
  flags: [{ name: 'config', value: 'FILE', required: true, description: 'the JSON config file to check' }],
  notes: ['exit codes: 0 it would start (warnings on stderr), 2 it would not'],
} as const satisfies CommandSpec;

function quickCommand(mode: QuickMode, summary: string, notes: readonly string[]): CommandSpec {
  return Object.freeze({ name: mode, summary, flags: quickModeFlags(mode), notes });
}

export const INBOUND_COMMAND = quickCommand(
  'inbound',
  'An inbound sidecar without a config file: mTLS in on --listen, plain HTTP (or TCP) to the app at --target. The ' +
    'flags build the configuration a file with one listener would hold, and obey the same rules.',
  ['At least one --allow-* flag (or --allow-any) is required.', EXIT_CODES],
);

export const OUTBOUND_COMMAND = quickCommand(
  'outbound',
  'An outbound sidecar without a config file: plain requests from the app on --listen go out over mTLS to ' +
    '--target. The flags build the configuration a file with one listener would hold, and obey the same rules.',
  ['--keys signs every request and needs --sign-key-id.', EXIT_CODES],
);

export const CERTS_DEV_COMMAND = {
  name: 'certs dev',
  summary:
    'Write a development PKI: one ECDSA P-256 CA and, per identity, a certificate for spiffe://DOMAIN/NAME, laid ' +
    'out as Kubernetes mounts a TLS Secret (DIR/NAME/tls.crt, tls.key, ca.crt). For a laptop; use cert-manager or ' +
    'SPIRE in a cluster.',
  flags: [
    {
      name: 'out',
      value: 'DIR',
      required: true,
      description: 'the folder to write; it must be absent or empty unless --force',
    },
    { name: 'trust-domain', value: 'D', default: DEV_TRUST_DOMAIN, description: 'the SPIFFE trust domain' },
    {
      name: 'identity',
      value: 'NAME',
      repeatable: true,
      description: 'an identity to issue a certificate for; without any: producer and ingest',
    },
    {
      name: 'validity-days',
      value: 'N',
      default: String(DEFAULT_VALIDITY_DAYS),
      description: 'how long the certificates stay valid, 1 to 397 days',
    },
    {
      name: 'force',
      description:
        'write into a folder that holds files: its CA is replaced, so certificates it issued before stop verifying',
    },
  ],
} as const satisfies CommandSpec;

export const CERTS_PIN_COMMAND = {
  name: 'certs pin',
  summary:
    'Print the SPKI pin of a certificate, sha256/BASE64, as openssl computes it (for allow.spkiPins, verify.spkiPins, --allow-spki-pin).',
  operand: { name: 'FILE', description: 'a PEM certificate' },
  flags: [],
} as const satisfies CommandSpec;

export const KEYS_NEW_COMMAND = {
  name: 'keys new',
  summary: 'Write a random 32-byte HMAC key, base64, to DIR/ID with mode 0600. An existing key is never overwritten.',
  flags: [
    {
      name: 'out',
      value: 'DIR',
      required: true,
      description: 'the key directory (keys.dir), created with mode 0700 when absent',
    },
    {
      name: 'id',
      value: 'ID',
      required: true,
      description: 'the key id, also the file name: 1-64 of A-Z a-z 0-9 . _ -, not starting with . _ -',
    },
  ],
} as const satisfies CommandSpec;

export const AUDIT_VERIFY_COMMAND = {
  name: 'audit verify',
  summary:
    "Check an audit log's hash chain and MACs, with its rotated files found next to it (FILE.1, FILE.2, …) oldest first.",
  operand: { name: 'FILE', description: 'the audit log (audit.file)' },
  flags: [
    { name: 'key', value: 'F', required: true, description: 'the key the lines are MACed with (audit.keyFile)' },
    { name: 'partial', description: 'the oldest line present need not be seq 1 (older files were rotated away)' },
    {
      name: 'expect-head',
      value: 'SEQ:HASH',
      description: 'a head saved from GET /audit/head: the log must reach it, with that hash',
    },
  ],
  notes: ['exit codes: 0 intact (a summary), 1 tampered (file:line of the first bad line), 2 bad usage or a weak key'],
} as const satisfies CommandSpec;

export const PROBE_COMMAND = {
  name: 'probe',
  summary:
    'Inspect a TLS endpoint as tollgate would connect to it (TLS version, cipher, group, ALPN, client certificate, ' +
    'chain, SPIFFE IDs, pins, days left) and check it against expectations.',
  operand: { name: 'HOST:PORT', description: 'the endpoint to probe' },
  flags: [
    { name: 'ca', value: 'F', required: true, description: 'the CA bundle the server chain must verify against' },
    { name: 'cert', value: 'F', description: 'a client certificate to present (with --key)' },
    { name: 'key', value: 'F', description: 'its private key (with --cert)' },
    {
      name: 'server-name',
      value: 'N',
      description: 'the name sent as SNI and checked in the certificate (default: HOST)',
    },
    { name: 'expect-spiffe', value: 'ID', repeatable: true, description: 'the leaf must carry this SPIFFE ID' },
    {
      name: 'expect-spki-pin',
      value: 'PIN',
      repeatable: true,
      description: "the leaf's key must have this pin (sha256/…)",
    },
    { name: 'min-days-valid', value: 'N', description: 'the leaf must stay valid at least this many more days' },
    { name: 'alpn', value: 'P', repeatable: true, description: 'offer this ALPN protocol' },
    {
      name: 'timeout',
      value: 'SECONDS',
      default: '10',
      description: 'give up on the connection after this long (at most 300)',
    },
    { name: 'json', description: 'print the report and the checks as JSON' },
  ],
  notes: ['exit codes: 0 every check holds, 1 any fails (each listed), 2 bad usage'],
} as const satisfies CommandSpec;

export const WEBHOOK_COMMAND = {
  name: 'webhook',
  summary:
    'The Kubernetes sidecar injector: a mutating admission webhook that adds a tollgate container to annotated ' +
    'pods. SIGTERM/SIGINT drain; SIGHUP re-reads the certificate.',
  flags: [
    { name: 'listen', value: 'H:P', required: true, description: 'the HTTPS address the API server calls' },
    {
      name: 'cert',
      value: 'F',
      required: true,
      description: 'the serving certificate, PEM (reloaded when its folder changes)',
    },
    { name: 'key', value: 'F', required: true, description: 'its private key, PEM' },
    { name: 'image', value: 'IMAGE', required: true, description: 'the tollgate image injected sidecars run' },
    { name: 'config', value: 'FILE', description: 'a webhook config file (injection defaults)' },
  ],
  notes: [EXIT_CODES],
} as const satisfies CommandSpec;

export const DEMO_COMMAND = {
  name: 'demo',
  summary:
    'Everything on one machine with embedded defaults: a dev PKI in a temp folder, an ingestion app, an inbound and ' +
    'an outbound sidecar, signed traffic through them, and the refusals that must happen.',
  flags: [{ name: 'once', description: 'exit after one round instead of running until Ctrl-C' }],
} as const satisfies CommandSpec;

/** Every command, in the order the top-level usage lists them. */
export const COMMANDS: readonly CommandSpec[] = Object.freeze([
  RUN_COMMAND,
  INBOUND_COMMAND,
  OUTBOUND_COMMAND,
  CHECK_COMMAND,
  CERTS_DEV_COMMAND,
  CERTS_PIN_COMMAND,
  KEYS_NEW_COMMAND,
  AUDIT_VERIFY_COMMAND,
  PROBE_COMMAND,
  WEBHOOK_COMMAND,
  DEMO_COMMAND,
]);

/** The commands under a group word (`certs` -> certs dev, certs pin). */
export function commandsUnder(group: string): readonly CommandSpec[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${group} `));
}

/** `usage:` and one synopsis per command, every flag in it. */
export function usageOf(commands: readonly CommandSpec[]): string {
  return ['usage:', ...commands.map((c) => synopsis(c, '  '))].join('\n');
}

/** Every command with every flag; `version` null leaves it out (it costs loading the whole sidecar). */
export function topLevelUsage(version: string | null): string {
  return [
    `tollgate${version === null ? '' : ` ${version}`}: mTLS sidecar with message signatures`,
    '',
    usageOf(COMMANDS),
    '',
    '`tollgate COMMAND --help` (or -h) describes every flag of a command.',
    EXIT_CODES,
  ].join('\n');
}
