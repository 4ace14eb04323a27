/**
 * How an inventory problem is reported: an {@link InventoryIssue} names the field path
 * (`nodes.etcd[1].ip`), what was found, what is expected and the fix. Turning zod's issues into
 * ours (with the help text carried on each schema field), describing a found value without ever
 * showing a secret or a control character, and "did you mean" for unknown keys. Pure.
 */
import type { z } from 'zod';
import { quote } from './grammar';

/** Field help carried on a schema: read back by the error formatter. */
export interface FieldHelp {
  expected: string;
  example?: string;
  secret?: boolean;
}

export function help<T extends z.ZodType>(schema: T, h: FieldHelp): T {
  return schema.meta({ pghaHelp: h }) as T;
}

/**
 * A problem a refinement found, carried in a zod custom issue's params so the report keeps it
 * (`found` is already safe to print: no secret, no control character).
 */
export interface PghaProblem {
  found: string;
  expected: string;
  fix: string;
}

export interface InventoryIssue {
  /** `nodes.etcd[1].ip`; empty for the document itself. */
  path: string;
  found: string;
  expected: string;
  fix: string;
  severity: 'error' | 'warning';
}

export function formatIssue(i: InventoryIssue, where?: (path: string) => string | undefined): string {
  const loc = where?.(i.path);
  const head = `${i.path || '(document)'}${loc ? ` (${loc})` : ''}`;
  return `${i.severity === 'warning' ? 'warning: ' : ''}${head}: found ${i.found}; expected ${i.expected}. Fix: ${i.fix}`;
}

export class InventoryError extends Error {
  override readonly name = 'InventoryError';
  constructor(
    readonly issues: InventoryIssue[],
    readonly source?: string,
    where?: (path: string) => string | undefined,
  ) {
    const errors = issues.filter((i) => i.severity === 'error');
    super(
      `${source ? `${source}: ` : ''}${errors.length} problem${errors.length === 1 ? '' : 's'} in the inventory:\n` +
        errors.map((i) => `  - ${formatIssue(i, where)}`).join('\n'),
    );
  }
}

export type PathSeg = string | number;

export function pathToString(path: readonly PathSeg[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    // A key that is not plain printable ASCII (a newline, a space, a quote) is shown escaped.
    else if (/[^\x21-\x7e]|["[\]]/.test(seg) || seg === '') s += `[${quote(seg)}]`;
    else s += s === '' ? seg : `.${seg}`;
  }
  return s;
}

export function getAt(root: unknown, path: readonly PathSeg[]): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

/** {@link quote}, cut to `max` characters. */
export function show(s: string, max = 60): string {
  return quote(s.length > max ? `${s.slice(0, max - 3)}...` : s);
}

/**
 * Whether a field path holds a secret reference — or, written by mistake, the secret itself: the
 * secrets mapping and everything under it, and the Proxmox private key. Never shown in a message.
 */
export function isSecretPath(path: string): boolean {
  return /^(secrets|proxmox\.privateKey)($|[.[])/.test(path);
}

/** What was found, for a message. A secret field's value is never shown, whatever its type. */
export function describe(v: unknown, secret = false): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null (an empty value)';
  if (secret) {
    if (typeof v === 'string') return `a literal value of ${v.length} characters (not shown)`;
    if (typeof v === 'number' || typeof v === 'boolean') return `a ${typeof v} (not shown)`;
    return `${Array.isArray(v) ? 'a list' : 'a mapping'} (not shown)`;
  }
  if (typeof v === 'string') return `${show(v)} (a string)`;
  if (typeof v === 'number') return `${v} (a number)`;
  if (typeof v === 'boolean') return `${v} (a boolean)`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  return 'a mapping';
}

// --- walking the schema (to name known keys and read field help) ---

interface ZodInternals {
  _zod: { def: Record<string, unknown> & { type: string } };
  meta(): Record<string, unknown> | undefined;
}

function internals(s: unknown): ZodInternals {
  return s as ZodInternals;
}

function helpOf(s: unknown): FieldHelp | undefined {
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const m = internals(cur).meta?.();
    if (m && typeof m === 'object' && 'pghaHelp' in m) return m.pghaHelp as FieldHelp;
    const def = internals(cur)._zod.def;
    cur = def.innerType ?? (def.type === 'pipe' ? def.in : undefined);
  }
  return undefined;
}

function unwrap(s: unknown): unknown {
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const def = internals(cur)._zod.def;
    if (def.innerType) cur = def.innerType;
    else if (def.type === 'pipe') cur = def.in;
    else break;
  }
  return cur;
}

/** The schema at `path`, choosing discriminated-union options by the raw data's discriminator. */
function schemaAt(root: unknown, raw: unknown, path: readonly PathSeg[]): unknown {
  let cur: unknown = root;
  for (let i = 0; i < path.length; i++) {
    cur = unwrap(cur);
    if (!cur) return undefined;
    let def = internals(cur)._zod.def;
    if (def.type === 'union') {
      const disc = def.discriminator as string | undefined;
      const rawHere = getAt(raw, path.slice(0, i)) as Record<string, unknown> | undefined;
      const options = def.options as unknown[];
      const chosen =
        options.find((o) => {
          const sh = (internals(unwrap(o))._zod.def.shape ?? {}) as Record<string, unknown>;
          const lit = sh[disc ?? ''] ? internals(sh[disc ?? ''])._zod.def : undefined;
          return lit && (lit.values as unknown[] | undefined)?.includes(rawHere?.[disc ?? '']);
        }) ?? options[0];
      cur = unwrap(chosen);
      def = internals(cur)._zod.def;
    }
    const seg = path[i]!;
    if (def.type === 'object') cur = (def.shape as Record<string, unknown>)[String(seg)];
    else if (def.type === 'array') cur = def.element;
    else if (def.type === 'record') cur = def.valueType;
    else return undefined;
  }
  return cur;
}

function knownKeys(root: unknown, raw: unknown, path: readonly PathSeg[]): string[] {
  let s = unwrap(schemaAt(root, raw, path));
  if (!s) return [];
  let def = internals(s)._zod.def;
  if (def.type === 'union') {
    const disc = def.discriminator as string | undefined;
    const rawHere = getAt(raw, path) as Record<string, unknown> | undefined;
    const options = def.options as unknown[];
    s =
      unwrap(
        options.find((o) => {
          const sh = (internals(unwrap(o))._zod.def.shape ?? {}) as Record<string, unknown>;
          const lit = sh[disc ?? ''] ? internals(sh[disc ?? ''])._zod.def : undefined;
          return lit && (lit.values as unknown[] | undefined)?.includes(rawHere?.[disc ?? '']);
        }),
      ) ?? unwrap(options[0]);
    def = internals(s)._zod.def;
  }
  return def.type === 'object' ? Object.keys(def.shape as object) : [];
}

function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

/** The closest known key, when it is close enough to be a likely typo (or a snake_case spelling). */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  const camel = key.replace(/[_-]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = Math.min(editDistance(key, k), editDistance(camel, k));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

/** How to write the field, e.g. `set ports.etcdClient to a TCP port (e.g. etcdClient: 2379)`. */
function setTo(path: readonly PathSeg[], expected: string, example: string | undefined): string {
  const key = path[path.length - 1];
  const p = pathToString(path);
  if (example === undefined || typeof key !== 'string') return `set ${p} to ${expected}`;
  const ex = path[0] === 'versions' ? `"${example}"` : example;
  return `set ${p} to ${(expected.split(' (')[0] ?? expected).replace(/, e\.g\..*$/, '')}, like ${key}: ${ex}`;
}

/** zod's issue as ours, reading field help from the schema `root` (the inventory's). */
export function zodIssueToIssues(iss: z.core.$ZodIssue, raw: unknown, root: z.ZodType): InventoryIssue[] {
  const path = iss.path as PathSeg[];
  const field = schemaAt(root, raw, path);
  const h = helpOf(field);
  const p = pathToString(path);
  const secret = h?.secret === true || isSecretPath(p);
  const value = getAt(raw, path);
  switch (iss.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(root, raw, path);
      return iss.keys.map((key) => {
        const guess = didYouMean(key, known);
        if (secret)
          // Under secrets a "key" may be a password pasted on a line of its own: not shown, not in the path.
          return {
            path: p,
            found: `an unknown key of ${key.length} characters (not shown)`,
            expected: known.length ? `one of: ${known.join(', ')}` : 'no other keys here',
            fix: guess ? `did you mean "${guess}"? Rename the key` : `remove the unknown key from ${p}`,
            severity: 'error' as const,
          };
        return {
          path: pathToString([...path, key]),
          found: `an unknown key ${show(key)}`,
          expected: known.length ? `one of: ${known.join(', ')}` : 'no other keys here',
          fix: guess
            ? `did you mean "${guess}"? Rename the key (inventory keys are camelCase)`
            : `remove ${show(key)} (inventory keys are camelCase)`,
          severity: 'error' as const,
        };
      });
    }
    case 'invalid_union': {
      if ('discriminator' in iss && typeof iss.discriminator === 'string') {
        const opts = ((iss as { options?: unknown[] }).options ?? []).map(String);
        return [
          {
            path: p,
            found: describe(value, secret),
            expected: `one of: ${opts.join(', ')}`,
            fix: `set ${p} to one of ${opts.map((o) => `"${o}"`).join(', ')}`,
            severity: 'error',
          },
        ];
      }
      return [
        {
          path: p,
          found: describe(value, secret),
          expected: h?.expected ?? iss.message,
          fix: `correct ${p}`,
          severity: 'error',
        },
      ];
    }
    case 'invalid_type': {
      const expected = h?.expected ?? `a ${iss.expected}`;
      const isVersion = path[0] === 'versions' && typeof value === 'number';
      const fix =
        value === undefined
          ? `add ${setTo(path, expected, h?.example).replace(/^set /, '')}`
          : isVersion
            ? `quote it: ${String(path[path.length - 1])}: "${String(value)}"`
            : secret
              ? `write ${p} as env:NAME or file:PATH`
              : setTo(path, expected, h?.example);
      return [{ path: p, found: describe(value, secret), expected, fix, severity: 'error' }];
    }
    case 'custom': {
      const problem = (iss.params as { pgha?: PghaProblem } | undefined)?.pgha;
      if (problem) return [{ path: p, ...problem, severity: 'error' }];
      const expected = h?.expected ?? iss.message;
      return [
        {
          path: p,
          found: describe(value, secret),
          expected,
          fix: setTo(path, expected, h?.example),
          severity: 'error',
        },
      ];
    }
    default: {
      const expected = h?.expected ?? iss.message;
      const fix = secret
        ? `store the password in a file (mode 0600) and write ${p}: file:/path/to/it (\`pgha secrets init\` creates missing file: secrets), or export it and write ${p}: env:NAME`
        : setTo(path, expected, h?.example);
      return [{ path: p, found: describe(value, secret), expected, fix, severity: 'error' }];
    }
  }
}
