/**
 * The audit log file's mode, checked when it is opened, by the rule key files follow: group read is
 * fine for a group of this process (Kubernetes fsGroup volumes), anything for others, group write,
 * or any access for a foreign group is warned about. Real files, real modes and owners.
 */
import t from 'tap';
import { createSecretKey, randomBytes } from 'node:crypto';
import { chmod, chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroupIds } from '../src/core/fileExposure.ts';
import { openAuditLog } from '../src/telemetry/auditLog.ts';
import { tempDir, type Teardownable } from './helpers/pki.ts';

const CANNOT_CHOWN =
  process.getuid?.() === 0
    ? false
    : 'giving a file a foreign group needs root (CAP_CHOWN); these tests run unprivileged';
const MESSAGE = 'the audit log file is open to more than this process; make it 0600';

/** Open an audit log at a file made beforehand with `mode` and group `gid`; the warnings it logged. */
async function warningsOpening(
  t: Teardownable,
  mode: number,
  gid: number,
): Promise<Array<{ obj: object; msg: string }>> {
  const dir = await tempDir(t, 'tollgate-audit-mode-');
  const file = join(dir, 'audit.log');
  await writeFile(file, '');
  await chmod(file, mode);
  await chown(file, process.getuid!(), gid);
  const warnings: Array<{ obj: object; msg: string }> = [];
  const opened = await openAuditLog({
    file,
    key: createSecretKey(randomBytes(32)),
    log: { error() {}, debug() {}, warn: (obj, msg) => warnings.push({ obj, msg }) },
    count() {},
    maxFileBytes: 1 << 20,
    maxFiles: 2,
  });
  if (!opened.ok) throw new Error(opened.problems.join('; '));
  await opened.log.close();
  return warnings;
}

function foreignGroup(): number {
  const own = processGroupIds();
  let gid = 4242;
  while (own.has(gid)) gid++;
  return gid;
}

t.test(
  "an audit log file readable by the process's own group (0640) is not warned about, nor a 0600 one",
  async (t) => {
    t.same(await warningsOpening(t, 0o640, process.getgid!()), [], '0640');
    t.same(await warningsOpening(t, 0o600, process.getgid!()), [], '0600');
  },
);

t.test('an audit log file others can read, or its group can write, is warned about with how', async (t) => {
  const gid = process.getgid!();
  t.match(await warningsOpening(t, 0o644, gid), [{ msg: MESSAGE, obj: { exposure: 'mode 0644 lets others read it' } }]);
  t.match(await warningsOpening(t, 0o660, gid), [
    { msg: MESSAGE, obj: { exposure: `mode 0660 lets group ${gid} write it` } },
  ]);
});

t.test(
  'an audit log file readable by a group the process is not in is warned about',
  { skip: CANNOT_CHOWN },
  async (t) => {
    const gid = foreignGroup();
    t.match(await warningsOpening(t, 0o640, gid), [
      { msg: MESSAGE, obj: { exposure: `mode 0640 lets group ${gid} (not a group of this process) read it` } },
    ]);
  },
);
