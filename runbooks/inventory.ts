/**
 * Loading an inventory file: YAML → validated, typed {@link Inventory}. Relative `file:` references
 * are resolved against the inventory file's directory. Every problem names its field path, the line
 * in the file, what was found, what is expected and how to fix it.
 *
 * Secrets stay references here; {@link resolveClusterSecrets} turns them into values at the last
 * moment (an activity, or a CLI command), never into a workflow's input or result.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import { resolveSecretRef } from './secret-resolve';
import {
  InventoryError,
  SECRET_NAMES,
  formatIssue,
  validateInventory,
  type ClusterSecrets,
  type Inventory,
  type InventoryIssue,
} from './schema';

export * from './schema';

export interface LoadedInventory {
  /** Absolute path of the file. */
  file: string;
  /** Present when there is no error. */
  inventory?: Inventory;
  issues: InventoryIssue[];
  /** `line L, column C` of a field path in the file, when it can be found. */
  where: (path: string) => string | undefined;
}

/** Parse YAML text; never throws for bad input. `file` names the source in messages and resolves refs. */
export function checkInventoryText(text: string, file: string): LoadedInventory {
  const abs = resolve(file);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const where = (path: string): string | undefined => {
    const node = nodeAt(doc.contents, splitPath(path));
    const offset = node?.range?.[0];
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return `line ${line}, column ${col}`;
  };
  if (doc.errors.length > 0) {
    const issues: InventoryIssue[] = doc.errors.map((e) => {
      const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
      return {
        path: pos ? `(line ${pos.line}, column ${pos.col})` : '(document)',
        found: `a YAML syntax error: ${e.message.split('\n')[0]}`,
        expected: 'valid YAML',
        fix: e.code === 'DUPLICATE_KEY' ? 'remove the duplicated key' : 'correct the YAML at that line',
        severity: 'error' as const,
      };
    });
    return { file: abs, issues, where: () => undefined };
  }
  const r = validateInventory(doc.toJS(), { baseDir: dirname(abs) });
  return { file: abs, inventory: r.inventory, issues: r.issues, where };
}

/** Read and validate an inventory file; never throws for bad content (a missing file is an issue). */
export async function checkInventoryFile(file: string): Promise<LoadedInventory> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return {
      file: abs,
      issues: [
        {
          path: '(file)',
          found: `${abs} cannot be read (${code})`,
          expected: 'a readable inventory YAML file',
          fix: 'pass --cluster with the path of an inventory, e.g. runbooks/clusters/lab.yaml',
          severity: 'error',
        },
      ],
      where: () => undefined,
    };
  }
  return checkInventoryText(text, abs);
}

/** Load an inventory file or throw an {@link InventoryError} that lists every error with its line. */
export async function loadInventory(file: string): Promise<Inventory> {
  const r = await checkInventoryFile(file);
  if (!r.inventory) throw new InventoryError(r.issues, r.file, r.where);
  return r.inventory;
}

/** Every secret of the cluster, resolved (env: from the process environment, file: read now). */
export async function resolveClusterSecrets(inv: Inventory): Promise<ClusterSecrets> {
  const entries = await Promise.all(
    SECRET_NAMES.map(async (name) => [name, await resolveSecretRef(inv.secrets[name])] as const),
  );
  return Object.fromEntries(entries) as ClusterSecrets;
}

/** Every issue as one line, errors first, each group in the order of the file. */
export function formatIssues(r: LoadedInventory): string[] {
  const line = (path: string) => Number(/^line (\d+)/.exec(r.where(path) ?? '')?.[1] ?? 1e9);
  return [...r.issues]
    .map((issue, index) => ({ issue, index, line: line(issue.path) }))
    .sort(
      (a, b) =>
        Number(a.issue.severity === 'warning') - Number(b.issue.severity === 'warning') ||
        a.line - b.line ||
        a.index - b.index,
    )
    .map(({ issue }) => formatIssue(issue, r.where));
}

function splitPath(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

function nodeAt(root: unknown, path: (string | number)[]): YamlNode | undefined {
  let cur: unknown = root;
  let last: YamlNode | undefined = root as YamlNode | undefined;
  for (const seg of path) {
    if (isMap(cur)) {
      const pair = cur.items.find((p) => (p.key as { value?: unknown } | null)?.value === seg);
      if (!pair) return last;
      // An unknown key's location is its key; a value's is the value.
      cur = pair.value ?? pair.key;
      last = (pair.value ?? pair.key) as YamlNode;
    } else if (isSeq(cur) && typeof seg === 'number') {
      cur = cur.items[seg];
      if (!cur) return last;
      last = cur as YamlNode;
    } else return last;
  }
  return last;
}
