#!/usr/bin/env node
// tollgate's command-line entry: the compiled CLI (npm ci / npm run build make dist/).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  // exit explicitly: a drained sidecar may still hold timers it no longer needs
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`tollgate: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
