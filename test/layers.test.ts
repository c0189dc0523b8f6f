/**
 * Layers point down, checked like the error table is checked against the docs: every import in
 * src/ (static `import … from`, `export … from`, and `import()` of a literal) goes from a folder to
 * a folder LAYERS allows, no file reaches itself again through its imports, and src/main.ts (the
 * composition root) is imported only by the commands that start a sidecar.
 */
import t from 'tap';
import ts from 'typescript';
import { readFile } from 'node:fs/promises';
import { posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { filesUnder } from './helpers/fileTree.ts';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/**
 * What each folder of src/ (or file at its top) may import besides itself, lowest layer first.
 * A folder missing here, or an import to a folder not in its row, fails the test: add the row or
 * the folder with its reason, never a blanket allowance. Top-level files are named with `.ts`.
 */
const LAYERS: Readonly<Record<string, { readonly imports: readonly string[]; readonly why: string }>> = {
  // The shared vocabulary: error table, handshake failure reasons, decision, clock, readiness, key files, small pure helpers.
  core: { imports: [], why: 'the bottom layer: everything may use it, so it uses nothing of ours' },
  // The version the CLI prints and a worker reports, read from package.json.
  'version.ts': { imports: [], why: 'a leaf any layer may name without loading anything else' },
  // Typed, validated, frozen configuration.
  config: {
    imports: ['core'],
    why: 'validation uses the shared vocabulary and pure helpers (closest name, SPKI pin form)',
  },
  // Metrics, logger, audit sink and log, recent-handshake ring.
  telemetry: {
    imports: ['core', 'config'],
    why: 'every layer above reports into it; it reads only config types and core',
  },
  // The parts of the data plane, side by side: none imports another, except policy reading what tls extracts.
  integrity: {
    imports: ['core', 'config', 'telemetry'],
    why: 'signatures, digests, key ring, replay cache: stages that count and audit what they refuse',
  },
  anomaly: {
    imports: ['core', 'config', 'telemetry'],
    why: 'the size model and its stage, which counts and audits what it flags',
  },
  limits: { imports: ['core'], why: 'token buckets: arithmetic on a clock reading, nothing to report' },
  tls: {
    imports: ['core', 'config'],
    why: 'TLS policy, contexts, peer identity, the classifier of failed handshakes: pure, the listeners count what it names',
  },
  policy: {
    imports: ['core', 'config', 'tls'],
    why: 'authorization decides on the peer identity that tls reads from the certificate',
  },
  http1: {
    imports: ['core'],
    why: 'the HTTP/1.1 codec knows bytes, exchanges and error codes; settings and the per-connection state are handed in',
  },
  // HTTP/2 beside the HTTP/1.1 core: node:http2 sessions whose streams are exchanges, and upstreams that speak h2/h2c.
  http2: {
    imports: ['core', 'http1'],
    why: 'streams become the same exchanges and links as the HTTP/1.1 core; limits and counters are handed in',
  },
  // A gateway's parts below the request path: route matching, target resolution, balanced endpoints with passive health.
  gateway: {
    imports: ['core', 'config', 'http1'],
    why: 'matches, resolves and balances over the HTTP/1.1 core pools it is handed; the request path above composes it',
  },
  // Replay cache and rate limits shared by replicas, in Redis or Valkey (ioredis loaded only when configured).
  sharedState: {
    imports: ['core', 'config', 'telemetry'],
    why: 'a store client that counts, logs and audits its own availability; the request path decides what an answer means',
  },
  // Identity: certificate bundles, CRLs, the watch that swaps them, development PKI.
  certs: {
    imports: ['core', 'config', 'telemetry', 'tls'],
    why: 'builds TLS material and peer identities from the bundles it loads, and reports reloads',
  },
  // The listeners, the request path, and the data plane they make up.
  proxy: {
    imports: [
      'core',
      'config',
      'telemetry',
      'integrity',
      'anomaly',
      'limits',
      'tls',
      'policy',
      'http1',
      'http2',
      'gateway',
      'sharedState',
    ],
    why: 'composes the parts; the identity arrives as TLS material handed in, so not certs',
  },
  // The data plane on more threads.
  workers: {
    imports: ['core', 'version.ts', 'config', 'telemetry', 'integrity', 'anomaly', 'tls', 'proxy'],
    why: "a worker runs proxy's data plane on the TLS material, keys and rings the main thread sends: no certs, admin, cli or main",
  },
  // Reloading a running sidecar: a whole new snapshot, checked, then swapped.
  'reload.ts': {
    imports: ['core', 'config', 'telemetry', 'integrity', 'certs'],
    why: 'checks the new config, then reloads identity and keys through the runtimes it is handed',
  },
  // Drain and stop in one place.
  'lifecycle.ts': {
    imports: ['core', 'telemetry'],
    why: 'orders drain and shutdown over the Drainable parts it is handed, so it needs no listener code',
  },
  // The composition root: config + dependencies -> a running sidecar.
  'main.ts': {
    imports: [
      'core',
      'version.ts',
      'config',
      'telemetry',
      'integrity',
      'anomaly',
      'limits',
      'tls',
      'policy',
      'http1',
      'http2',
      'gateway',
      'sharedState',
      'certs',
      'proxy',
      'workers',
      'reload.ts',
      'lifecycle.ts',
      'admin',
    ],
    why: 'the root may wire any layer below it: it makes registry, logger and clock, starts the data plane and hands admin its views',
  },
  // The admin and health HTTP apps (main listens for them).
  admin: {
    imports: ['core', 'config', 'telemetry', 'anomaly', 'tls', 'certs'],
    why: 'answers from the views it is handed: config, certificates, the recent handshakes and anomalies; never the data path',
  },
  // `tollgate probe`: a TLS client that checks a listener the way a peer would.
  probe: {
    imports: ['core', 'config', 'tls'],
    why: 'speaks the same TLS policy and names failures with the same reasons as the listeners',
  },
  // The Kubernetes injector webhook.
  webhook: {
    imports: ['core', 'config', 'tls', 'certs'],
    why: 'validates the sidecar config it injects and serves TLS with our policy and a watched certificate; never the data path',
  },
  // argv -> command -> exit code.
  cli: {
    imports: [
      'core',
      'version.ts',
      'config',
      'telemetry',
      'integrity',
      'tls',
      'certs',
      'sharedState',
      'workers',
      'main.ts',
      'probe',
      'webhook',
    ],
    why: 'each command calls the layer it is about (check, keys, audit, certs, probe, webhook, serve); workers only for the worker count',
  },
};

/** The only files that may import src/main.ts: the commands that start a sidecar in this process. */
const STARTS_A_SIDECAR: readonly string[] = ['cli/serve.ts', 'cli/demo.ts'];

interface ImportSite {
  readonly specifier: string;
  readonly line: number;
}

interface Imports {
  readonly sites: ImportSite[];
  /** `import(expr)` whose argument is not a literal: the test cannot tell where it goes */
  readonly unresolvable: number[];
}

/** Every module specifier a file names: import/export declarations and import() calls, found by the TypeScript parser (not in comments or strings). */
function importsOf(fileName: string, text: string): Imports {
  const file = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const sites: ImportSite[] = [];
  const unresolvable: number[] = [];
  const lineOf = (node: ts.Node): number => file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1;
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      if (ts.isStringLiteral(node.moduleSpecifier))
        sites.push({ specifier: node.moduleSpecifier.text, line: lineOf(node) });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg !== undefined && ts.isStringLiteralLike(arg)) sites.push({ specifier: arg.text, line: lineOf(node) });
      else unresolvable.push(lineOf(node));
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return { sites, unresolvable };
}

/** The layer a src/-relative path belongs to: its top folder, or the file's own name at the top. */
function layerOf(path: string): string {
  const slash = path.indexOf('/');
  return slash === -1 ? path : path.slice(0, slash);
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly line: number;
}

/** Imports that leave their layer for one its row does not list (or from a layer with no row). */
function layerViolations(edges: readonly Edge[], layers: typeof LAYERS): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const from = layerOf(e.from);
    const to = layerOf(e.to);
    if (from === to) continue;
    const row = layers[from];
    if (row === undefined) out.push(`${e.from}:${e.line} imports ${e.to}, and ${from} has no row in LAYERS`);
    else if (!row.imports.includes(to))
      out.push(
        `${e.from}:${e.line} imports ${e.to}: ${from} may import only ${row.imports.join(', ') || 'nothing of ours'}`,
      );
  }
  return out;
}

/** One cycle per strongly connected group of files (Tarjan), as `a -> b -> a`. */
function importCycles(edges: readonly Edge[]): string[] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    const list = next.get(e.from) ?? [];
    if (!list.includes(e.to)) list.push(e.to);
    next.set(e.from, list);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1 || (next.get(v) ?? []).includes(v)) groups.push(group);
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) connect(v);
  return groups.map((group) => cycleThrough(group.sort()[0]!, new Set(group), next).join(' -> '));
}

/** The shortest path from start back to start inside one group (breadth first). */
function cycleThrough(
  start: string,
  group: ReadonlySet<string>,
  next: ReadonlyMap<string, readonly string[]>,
): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of next.get(v) ?? []) {
      if (!group.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u: string | undefined = v; u !== start && u !== undefined; u = cameFrom.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  return [...group];
}

interface SourceGraph {
  readonly files: readonly string[];
  readonly edges: readonly Edge[];
  readonly unresolvable: readonly string[];
}

/** Every import from one file of src/ to another, with src/-relative POSIX paths. */
async function sourceGraph(): Promise<SourceGraph> {
  const files: string[] = [];
  const edges: Edge[] = [];
  const unresolvable: string[] = [];
  for (const path of filesUnder(SRC, /\.ts$/)) {
    const from = relative(SRC, path).split(sep).join('/');
    files.push(from);
    const found = importsOf(path, await readFile(path, 'utf8'));
    for (const line of found.unresolvable) unresolvable.push(`${from}:${line}`);
    for (const site of found.sites) {
      if (!site.specifier.startsWith('./') && !site.specifier.startsWith('../')) continue;
      const to = posix.normalize(posix.join(posix.dirname(from), site.specifier));
      if (!to.startsWith('../')) edges.push({ from, to, line: site.line });
    }
  }
  return { files, edges, unresolvable };
}

const graph = await sourceGraph();

t.test(
  'the import reader finds static imports, re-exports and import() of a literal, and nothing in comments or strings',
  async (t) => {
    const text = [
      "import a from './a.ts';",
      "import type { B } from '../b/b.ts';",
      'import {',
      '  c,',
      "} from './c.ts';",
      "import './d.ts';",
      "export { e } from './e.ts';",
      "export * from './f.ts';",
      "export type { G } from './g.ts';",
      "// import x from './comment.ts';",
      'const s = "import y from \'./string.ts\'";',
      'async function later() { return (await import(`./h.ts`)).h + (await import("./i.ts")).i; }',
      'const dynamic = (name: string) => import(name);',
    ].join('\n');
    const found = importsOf('sample.ts', text);
    t.same(
      found.sites.map((s) => s.specifier),
      ['./a.ts', '../b/b.ts', './c.ts', './d.ts', './e.ts', './f.ts', './g.ts', './h.ts', './i.ts'],
    );
    t.same(
      found.sites.map((s) => s.line),
      [1, 2, 3, 6, 7, 8, 9, 12, 12],
    );
    t.same(found.unresolvable, [13], 'import() of an expression is reported, not skipped');
  },
);

t.test(
  'an import into a layer its row does not allow is reported with file, line and the allowed layers',
  async (t) => {
    const layers = { low: { imports: [], why: '' }, high: { imports: ['low'], why: '' } };
    const edges: Edge[] = [
      { from: 'high/a.ts', to: 'low/b.ts', line: 1 },
      { from: 'high/a.ts', to: 'high/c.ts', line: 2 },
      { from: 'low/b.ts', to: 'high/a.ts', line: 3 },
      { from: 'stray/d.ts', to: 'low/b.ts', line: 4 },
    ];
    t.same(layerViolations(edges, layers), [
      'low/b.ts:3 imports high/a.ts: low may import only nothing of ours',
      'stray/d.ts:4 imports low/b.ts, and stray has no row in LAYERS',
    ]);
  },
);

t.test('a cycle between files is reported as the path that closes it, once per tangle', async (t) => {
  const edge = (from: string, to: string): Edge => ({ from, to, line: 1 });
  t.same(importCycles([edge('a.ts', 'b.ts'), edge('b.ts', 'c.ts'), edge('c.ts', 'd.ts')]), [], 'a chain is no cycle');
  t.same(importCycles([edge('a.ts', 'b.ts'), edge('b.ts', 'c.ts'), edge('c.ts', 'a.ts'), edge('c.ts', 'd.ts')]), [
    'a.ts -> b.ts -> c.ts -> a.ts',
  ]);
  t.same(importCycles([edge('x.ts', 'x.ts')]), ['x.ts -> x.ts'], 'a file importing itself');
  t.same(importCycles([edge('p.ts', 'q.ts'), edge('q.ts', 'p.ts'), edge('q.ts', 'r.ts'), edge('r.ts', 'q.ts')]), [
    'p.ts -> q.ts -> p.ts',
  ]);
});

t.test('every folder of src/ has a row in the layer table, and every row names a folder or file of src/', async (t) => {
  t.ok(
    graph.files.length > 50 && graph.edges.length > 200,
    `src/ was read (${graph.files.length} files, ${graph.edges.length} imports)`,
  );
  const present = new Set(graph.files.map(layerOf));
  t.same([...present].filter((layer) => LAYERS[layer] === undefined).sort(), [], 'folders without a row');
  t.same(
    Object.keys(LAYERS)
      .filter((layer) => !present.has(layer))
      .sort(),
    [],
    'rows for folders that are gone',
  );
  for (const [layer, row] of Object.entries(LAYERS)) {
    t.notOk(row.imports.includes(layer), `${layer} does not list itself`);
    for (const to of row.imports) t.ok(LAYERS[to] !== undefined, `${layer} -> ${to}: ${to} has a row`);
  }
});

t.test('the layer table itself points down: no two layers may import each other, even through others', async (t) => {
  const rows: Edge[] = Object.entries(LAYERS).flatMap(([from, row]) =>
    row.imports.map((to) => ({ from, to, line: 0 })),
  );
  t.same(importCycles(rows), []);
});

t.test('every import in src/ goes to a layer its folder may import', async (t) => {
  t.same(layerViolations(graph.edges, LAYERS), []);
});

t.test('no file of src/ imports itself again through its imports', async (t) => {
  t.same(importCycles(graph.edges), []);
});

t.test('every import() in src/ names a literal, so the layers can be checked', async (t) => {
  t.same(graph.unresolvable, []);
});

t.test('every relative import in src/ names a file that exists', async (t) => {
  const files = new Set(graph.files);
  t.same(
    graph.edges.filter((e) => !files.has(e.to)).map((e) => `${e.from}:${e.line} -> ${e.to}`),
    [],
  );
});

t.test('nothing imports src/main.ts but the commands that start a sidecar', async (t) => {
  const importers = [...new Set(graph.edges.filter((e) => e.to === 'main.ts').map((e) => `${e.from}:${e.line}`))];
  t.same(
    importers.filter((site) => !STARTS_A_SIDECAR.includes(site.slice(0, site.lastIndexOf(':')))),
    [],
  );
  t.ok(
    STARTS_A_SIDECAR.every((file) => graph.files.includes(file)),
    'the commands listed exist',
  );
});
