// Which Node.js runs tollgate. Plain JavaScript that parses on old Nodes (no ?., no ??, no
// top-level await): it runs before anything that needs a recent one, so that a machine's
// Node 20 gets the project's pinned Node (the `node` devDependency) or one clear line,
// never a stack trace from inside a dependency.
import { existsSync } from 'fs';
import { dirname, join } from 'path';
import { fileURLToPath } from 'url';

/** The oldest Node.js major tollgate runs on (package.json "engines"). */
export var MIN_NODE_MAJOR = 22;

/** Set in the environment of a re-executed tollgate, so a pinned Node that is itself too old cannot loop. */
export var REEXEC_MARK = 'TOLLGATE_PINNED_NODE';

/** node_modules/node/bin/node next to this package: the Node.js `npm ci` installs (the `node` devDependency). */
export function pinnedNodePath(platform) {
  var root = join(dirname(fileURLToPath(import.meta.url)), '..');
  return join(root, 'node_modules', 'node', 'bin', platform === 'win32' ? 'node.exe' : 'node');
}

/**
 * What to do with the Node.js that started us:
 *   { action: 'run' }                         recent enough: go on in this process
 *   { action: 'reexec', binary }              too old, the pinned Node is there: run tollgate again with it
 *   { action: 'refuse', message }             too old and nothing better: one line saying what to run instead
 * `version` is process.versions.node; `pinned` the pinned binary's path or null when absent;
 * `reexeced` whether this process already is such a re-execution.
 */
export function runtimeDecision(version, pinned, reexeced) {
  var major = parseInt(String(version).split('.')[0], 10);
  if (major >= MIN_NODE_MAJOR) return { action: 'run' };
  if (pinned !== null && !reexeced) return { action: 'reexec', binary: pinned };
  var why = reexeced ? ' (the pinned Node.js in node_modules is too old as well)' : '';
  return {
    action: 'refuse',
    message:
      'tollgate: needs Node.js ' +
      MIN_NODE_MAJOR +
      ' or newer, this is ' +
      version +
      why +
      ': run `npm ci` in the tollgate folder (it installs the pinned Node.js 24), then `npx tollgate …`',
  };
}

/** The decision for this process. */
export function decideForThisProcess() {
  var pinned = pinnedNodePath(process.platform);
  return runtimeDecision(process.versions.node, existsSync(pinned) ? pinned : null, process.env[REEXEC_MARK] === '1');
}
