#!/usr/bin/env -S node --max-semi-space-size=4
// tollgate's command-line entry: the compiled CLI (npm ci / npm run build make dist/).
//
// Plain JavaScript that parses on old Nodes: the Node.js version is looked at first, and dist/
// (whose dependencies need Node 22+) is imported only after. Started by an older node (a
// machine's Node 20 running ./bin/tollgate.js), tollgate runs itself again with the project's
// pinned Node from node_modules, or says in one line what to run instead.
//
// The flags on the first line are tollgate's V8 settings; `npx tollgate` and `./bin/tollgate.js`
// run with them, the container image's ENTRYPOINT passes the same ones and the benchmarks read
// them from here. --max-semi-space-size=4: V8's young generation otherwise grows to 64 MiB
// under load and stays there (86 -> 357 MiB of RSS through 1,000 idle connections and 20,000
// handshakes; 86 -> 229 MiB with the cap); at 4 MiB requests cost no more CPU, at 1 MiB ~15%
// more. A flag here, not v8.setFlagsFromString: the semi-space size is fixed when the heap is
// set up, before this file runs. Re-running on an old Node keeps them (process.execArgv).
import { spawn } from 'child_process';
import { fileURLToPath } from 'url';
import { decideForThisProcess, REEXEC_MARK } from './nodeRuntime.js';

/** What a supervisor or a terminal sends us goes on to the tollgate doing the work. */
var FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'];

var decision = decideForThisProcess();
if (decision.action === 'run') runHere();
else if (decision.action === 'reexec') runWith(decision.binary);
else {
  process.stderr.write(decision.message + '\n');
  process.exitCode = 1;
}

function runHere() {
  import('../dist/cli/main.js').then(
    function (cli) {
      return cli.main(process.argv.slice(2)).then(
        // exit explicitly: a drained sidecar may still hold timers it no longer needs
        function (code) {
          process.exit(code);
        },
        fail,
      );
    },
    function (err) {
      if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).indexOf('dist') !== -1) {
        process.stderr.write(
          'tollgate: dist/ is not built: run `npm ci` (or `npm run build`) in the tollgate folder\n',
        );
        process.exit(1);
      }
      fail(err);
    },
  );
}

function fail(err) {
  process.stderr.write('tollgate: ' + ((err && err.stack) || err) + '\n');
  process.exit(1);
}

/**
 * Run this file again with `binary`, same arguments and Node options, output straight through.
 * The child gets its own process group, so a Ctrl-C reaches it once (forwarded from here), not
 * twice (the terminal's and ours): tollgate reads a second SIGINT as "stop now". Its exit code,
 * or the signal that ended it, becomes ours.
 */
function runWith(binary) {
  var env = Object.assign({}, process.env);
  env[REEXEC_MARK] = '1';
  var args = process.execArgv.concat([fileURLToPath(import.meta.url)], process.argv.slice(2));
  var child = spawn(binary, args, { stdio: 'inherit', env: env, detached: process.platform !== 'win32' });
  var forward = {};
  FORWARDED_SIGNALS.forEach(function (signal) {
    forward[signal] = function () {
      child.kill(signal);
    };
    process.on(signal, forward[signal]);
  });
  child.on('error', function (err) {
    process.stderr.write('tollgate: cannot run the pinned Node.js ' + binary + ': ' + err.message + '\n');
    process.exit(1);
  });
  child.on('exit', function (code, signal) {
    FORWARDED_SIGNALS.forEach(function (s) {
      process.removeListener(s, forward[s]);
    });
    if (signal !== null) process.kill(process.pid, signal);
    else process.exit(code);
  });
}
