import { readFileSync } from 'node:fs';

/**
 * tollgate's version, as package.json states it: `tollgate version`, the build-info metric,
 * the admin API's /status and the audit log's start event. Its own module, so a worker thread
 * or `tollgate --help` gets it without loading the sidecar. src/ and dist/ both sit one folder
 * below package.json (the image copies it next to dist/).
 */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
