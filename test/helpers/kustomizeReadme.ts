/**
 * The README's "Kubernetes" section as commands, and those commands run against a
 * SimulatedCluster on a staged copy of the repository: `kubectl apply -k` renders with
 * test/helpers/kustomize.ts, `npx tollgate keys new` runs tollgate's own command. A command this
 * file does not know is a problem, never skipped.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { keysCommand } from '../../src/cli/keys.ts';
import { build, readYamlDocuments, type K8sObject } from './kustomize.ts';
import type { SimulatedCluster } from './kustomizeCluster.ts';

export interface ReadmeCommand {
  /** the `###` subsection it is in ('' before the first) */
  readonly section: string;
  readonly text: string;
  readonly argv: readonly string[];
}

const COMMAND_WORDS = new Set(['kubectl', 'npx', 'docker', 'kind']);
/** the released manifest that installs cert-manager (its CRDs and controllers in namespace cert-manager) */
const CERT_MANAGER_RELEASE =
  /^https:\/\/github\.com\/cert-manager\/cert-manager\/releases\/download\/v\d+\.\d+\.\d+\/cert-manager\.yaml$/;

/** README.md's `## Kubernetes` up to the next `## ` heading */
export function kubernetesSection(readme: string): string {
  const start = readme.indexOf('\n## Kubernetes\n');
  if (start === -1) throw new Error('README.md has no "## Kubernetes" section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start + 1, end === -1 ? undefined : end);
}

/**
 * Every command of the section's indented code blocks, in order. A block is commands when its
 * first word is one; JSON blocks (`{`) are examples of files. Any other block is an error, so a
 * command cannot hide from the check.
 */
export function readmeCommands(section: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  let heading = '';
  let block: string[] = [];
  const flush = (): void => {
    if (block.length === 0) return;
    const first = block[0]!.trim();
    if (first.startsWith('{')) {
      block = [];
      return;
    }
    if (!COMMAND_WORDS.has(first.split(/\s+/)[0]!))
      throw new Error(`README Kubernetes, ${heading}: a code block that is neither commands nor JSON: ${first}`);
    for (const line of block) {
      const code = line.replace(/\s+#.*$/, '').trim();
      if (code === '') continue;
      if (/["'`\\|;<>]/.test(code))
        throw new Error(
          `README Kubernetes, ${heading}: quoting, pipes and redirections are not understood here: ${code}`,
        );
      for (const text of code.split('&&').map((c) => c.trim()))
        commands.push({ section: heading, text, argv: text.split(/\s+/) });
    }
    block = [];
  };
  let previousBlank = true;
  let inBlock = false;
  for (const line of section.split('\n')) {
    if (line.startsWith('    ') && (inBlock || previousBlank)) {
      inBlock = true;
      block.push(line);
    } else if (line.trim() === '' && inBlock) {
      block.push(line);
    } else {
      flush();
      inBlock = false;
      if (line.startsWith('### ')) heading = line.slice(4).trim();
    }
    previousBlank = line.trim() === '';
  }
  flush();
  return commands;
}

/** `-n NS` / `--namespace NS` / `--namespace=NS` taken out of kubectl's arguments */
function kubectlNamespace(args: readonly string[]): { namespace: string | null; rest: string[] } {
  const rest: string[] = [];
  let namespace: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-n' || a === '--namespace') namespace = args[++i]!;
    else if (a.startsWith('--namespace=')) namespace = a.slice('--namespace='.length);
    else rest.push(a);
  }
  return { namespace, rest };
}

/** `--from-file=DIR/` (every regular file), `--from-file=PATH`, `--from-file=KEY=PATH`, `--from-literal=KEY=VALUE` */
function secretData(root: string, args: readonly string[]): Record<string, string> {
  const data: Record<string, string> = {};
  for (const a of args) {
    if (a.startsWith('--from-literal=')) {
      const [key, ...value] = a.slice('--from-literal='.length).split('=');
      data[key!] = Buffer.from(value.join('=')).toString('base64');
    } else if (a.startsWith('--from-file=')) {
      const spec = a.slice('--from-file='.length);
      const [key, path] = spec.includes('=')
        ? [spec.slice(0, spec.indexOf('=')), spec.slice(spec.indexOf('=') + 1)]
        : [null, spec];
      const full = join(root, path);
      const files = statSync(full).isDirectory()
        ? readdirSync(full)
            .filter((n) => statSync(join(full, n)).isFile())
            .map((n) => join(full, n))
        : [full];
      for (const f of files) data[key ?? basename(f)] = readFileSync(f).toString('base64');
    } else throw new Error(`kubectl create secret: ${a} is not understood by this check`);
  }
  return data;
}

/** Images built on the machine that runs the README's commands (docker build). */
export type LocalImages = Set<string>;

/** Run one README command; what it would refuse lands in cluster.problems. */
export async function runReadmeCommand(
  command: ReadmeCommand,
  root: string,
  cluster: SimulatedCluster,
  built: LocalImages,
): Promise<void> {
  const fail = (why: string): void => void cluster.problems.push(`${command.text}: ${why}`);
  const [word, ...args] = command.argv as [string, ...string[]];
  const text = command.text;
  try {
    if (word === 'docker' && args[0] === 'build' && args[1] === '-t' && args[3] === '.') built.add(args[2]!);
    else if (
      (word === 'docker' && args[0] === 'push') ||
      (word === 'kind' && args[0] === 'load' && args[1] === 'docker-image')
    ) {
      const image = args[args.length - 1]!;
      if (built.has(image)) cluster.makePullable(image);
      else fail(`${image} was not built by an earlier command`);
    } else if (word === 'npx' && args[0] === 'tollgate' && args[1] === 'keys') {
      const errors: string[] = [];
      const code = await keysCommand(args.slice(2), { out: () => {}, err: (l) => errors.push(l) }, root);
      if (code !== 0) fail(errors.join('; '));
    } else if (word === 'kubectl') runKubectl(args, root, cluster, text);
    else fail('not a command this check knows');
  } catch (err) {
    fail((err as Error).message);
  }
}

function runKubectl(all: readonly string[], root: string, cluster: SimulatedCluster, text: string): void {
  const { namespace: given, rest } = kubectlNamespace(all);
  const namespace = given ?? 'default';
  const [verb, ...args] = rest as [string, ...string[]];
  const fail = (why: string): void => void cluster.problems.push(`${text}: ${why}`);
  if (verb === 'apply' && given !== null) {
    fail('apply with -n is not understood by this check (manifests here name their namespaces)');
  } else if (verb === 'apply' && args.length === 2 && args[0] === '-k') {
    cluster.apply(build(join(root, args[1]!)), text);
  } else if (verb === 'apply' && args.length === 2 && args[0] === '-f') {
    if (CERT_MANAGER_RELEASE.test(args[1]!)) cluster.installAddon('cert-manager.io', 'cert-manager');
    else if (/^https?:/.test(args[1]!)) fail('a manifest from a URL this check does not know');
    else cluster.apply(readYamlDocuments(join(root, args[1]!)) as K8sObject[], text);
  } else if (verb === 'create' && args[0] === 'namespace' && args.length === 2) {
    cluster.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: args[1]! } }, text);
  } else if (verb === 'create' && args[0] === 'secret' && args[1] === 'generic') {
    cluster.create(
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: args[2]!, namespace },
        type: 'Opaque',
        data: secretData(root, args.slice(3)),
      },
      text,
    );
  } else if (verb === 'label' && (args[0] === 'namespace' || args[0] === 'ns')) {
    cluster.labelNamespace(
      args[1]!,
      Object.fromEntries(args.slice(2).map((l) => l.split('=') as [string, string])),
      text,
    );
  } else if (
    verb === 'rollout' &&
    args[0] === 'status' &&
    /^(deploy|deployment|deployments|sts|statefulset|statefulsets)\/[a-z0-9-]+$/.test(args[1] ?? '')
  ) {
    const [resource, name] = args[1]!.split('/') as [string, string];
    cluster.rolloutStatus(namespace, name, text, resource.startsWith('s') ? 'StatefulSet' : 'Deployment');
  } else if (verb === 'wait') {
    cluster.requireNamespace(namespace, text);
  } else fail('not a kubectl command this check knows');
}
