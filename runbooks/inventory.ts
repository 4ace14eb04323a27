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
  formatIssue,
  secretNamesOf,
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

/**
 * What a YAML error code means, in words that quote nothing from the file: the yaml library's own
 * messages carry the offending source text (an alias name, a token, the line), and that line may
 * hold a password pasted by mistake.
 */
const YAML_REASONS: Record<string, string> = {
  ALIAS_PROPS: 'an alias with an anchor or a tag',
  BAD_ALIAS: 'a malformed alias',
  BAD_COLLECTION_TYPE: 'a collection of the wrong kind for its tag',
  BAD_DIRECTIVE: 'a malformed % directive',
  BAD_DQ_ESCAPE: 'an invalid escape in a double-quoted string',
  BAD_INDENT: 'wrong indentation (or an unclosed [ or {)',
  BAD_PROP_ORDER: 'an anchor and a tag in the wrong order',
  BAD_SCALAR_START: 'a plain value starting with a reserved character (quote it)',
  BLOCK_AS_IMPLICIT_KEY: 'a nested mapping on one line (key: key: value)',
  BLOCK_IN_FLOW: 'a block collection inside a flow [ ] or { }',
  DUPLICATE_KEY: 'a key that appears twice in the same mapping',
  IMPOSSIBLE: 'a structure the YAML parser cannot read',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  MISSING_CHAR: 'a missing closing quote or bracket',
  MULTILINE_IMPLICIT_KEY: 'a key spanning several lines',
  MULTIPLE_ANCHORS: 'two anchors on one value',
  MULTIPLE_DOCS: 'more than one YAML document (---) in the file',
  MULTIPLE_TAGS: 'two tags on one value',
  NON_STRING_KEY: 'a key that is not a string',
  TAB_AS_INDENT: 'a tab used for indentation',
  TAG_RESOLVE_FAILED: 'an unknown or unusable YAML tag (!tag)',
  UNEXPECTED_TOKEN: 'an unexpected character or token',
};

const YAML_FIXES: Record<string, string> = {
  DUPLICATE_KEY: 'remove the duplicated key',
  MULTIPLE_DOCS: 'keep one document: one inventory per file, no second ---',
  TAB_AS_INDENT: 'indent with spaces',
  TAG_RESOLVE_FAILED:
    'remove the !tag: an inventory holds plain strings, numbers, booleans, lists and mappings',
};

/** Aliases one document may expand; far beyond any inventory, far below an alias bomb. */
const MAX_ALIAS_COUNT = 64;

function yamlIssue(
  line: number | undefined,
  col: number | undefined,
  code: string | undefined,
  what: string,
): InventoryIssue {
  return {
    path: line !== undefined ? `(line ${line}, column ${col ?? 1})` : '(document)',
    found: `a YAML ${what}: ${(code && YAML_REASONS[code]) ?? 'a construct the YAML parser refused'}`,
    expected: 'valid YAML: one mapping with the inventory keys',
    fix: (code && YAML_FIXES[code]) ?? 'correct the YAML at that line',
    severity: 'error',
  };
}

/** Parse YAML text; never throws for bad input. `file` names the source in messages and resolves refs. */
export function checkInventoryText(text: string, file: string): LoadedInventory {
  const abs = resolve(file);
  const none = { file: abs, where: () => undefined };
  try {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    const where = (path: string): string | undefined => {
      const node = nodeAt(doc.contents, splitPath(path));
      const offset = node?.range?.[0];
      if (offset === undefined) return undefined;
      const { line, col } = lineCounter.linePos(offset);
      return `line ${line}, column ${col}`;
    };
    // Warnings too: an unknown !tag silently becomes a string or a Buffer otherwise.
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) {
      const issues = problems.map((e) => {
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        return yamlIssue(pos?.line, pos?.col, e.code, 'syntax error');
      });
      return { ...none, issues };
    }
    let raw: unknown;
    try {
      raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      // An alias with no anchor, or more alias expansions than any inventory needs (an alias bomb).
      const msg = err instanceof Error ? err.message : '';
      const bomb = /alias count|resource exhaustion/i.test(msg);
      const issue: InventoryIssue = {
        path: '(document)',
        found: bomb
          ? `YAML aliases that expand beyond ${MAX_ALIAS_COUNT} references (an alias bomb)`
          : /unresolved alias/i.test(msg)
            ? 'a YAML alias (*name) whose anchor (&name) is not defined before it'
            : 'YAML the parser could not turn into data',
        expected: 'plain YAML: aliases only to anchors defined earlier, and few of them',
        fix: 'write the values out instead of using anchors and aliases',
        severity: 'error',
      };
      return { ...none, issues: [issue] };
    }
    const r = validateInventory(raw, { baseDir: dirname(abs) });
    return { file: abs, inventory: r.inventory, issues: r.issues, where };
  } catch {
    // Never an uncaught exception for bad input, and never the library's message (it quotes source).
    return {
      ...none,
      issues: [
        {
          path: '(document)',
          found: 'a file the inventory reader could not process',
          expected: 'valid YAML: one mapping with the inventory keys',
          fix: 'start from runbooks/clusters/lab.yaml and check the file for unusual YAML',
          severity: 'error',
        },
      ],
    };
  }
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
    secretNamesOf(inv).map(async (name) => [name, await resolveSecretRef(inv.secrets[name]!)] as const),
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
