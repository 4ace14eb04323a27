/**
 * Fuzz (fast-check) of the inventory, the security boundary: valid inventories (the lab's, the
 * seed's, one with a backup CT) mutated at random — a field replaced by a hostile value (shell and
 * YAML metacharacters, newlines and other control characters, path traversal, addresses outside the
 * subnet, huge strings and numbers, wrong types), a field removed, an unknown key added, a list
 * entry duplicated — then validated:
 *  - never an uncaught exception;
 *  - a rejection names a field (a path, never the bare document) on the branch that was mutated;
 *  - what is accepted holds no newline or other control character anywhere, and renders (every
 *    config file, unit and install script of every node) without an exception, into plain absolute
 *    paths with no `..` and contents with no control character.
 *
 * The seed is printed on a failure (fast-check's report) and can be pinned with PGHA_FUZZ_SEED;
 * PGHA_FUZZ_RUNS sets the count (default 10,000 per base).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse } from 'yaml';
import {
  onlineInstallRecipes,
  renderBackupFiles,
  renderCluster,
  renderInstallScript,
} from '../../activities/render';
import type { RenderedFile } from '../../activities/render';
import { quote } from '../../activities/command';
import { secretNamesOf, validateInventory } from '../../runbooks/schema';
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import { repoRoot } from '../helpers/local-common';

const RUNS = Number(process.env.PGHA_FUZZ_RUNS ?? 10_000);
const SEED = process.env.PGHA_FUZZ_SEED === undefined ? undefined : Number(process.env.PGHA_FUZZ_SEED);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = (string | number)[];

const load = (file: string) => parse(readFileSync(join(repoRoot, file), 'utf8')) as Json;
const BASES: [string, Json][] = [
  ['runbooks/clusters/lab.yaml', load('runbooks/clusters/lab.yaml')],
  ['runbooks/clusters/pve-seed.yaml', load('runbooks/clusters/pve-seed.yaml')],
  ['test/fixtures/bad-inventories/base.yaml', load('test/fixtures/bad-inventories/base.yaml')],
];

/** Every path in a document (containers and leaves), the root excluded. */
function pathsOf(v: Json, at: Path = []): Path[] {
  if (v === null || typeof v !== 'object') return [];
  const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => {
    const p = [...at, k];
    return [p, ...pathsOf((v as Record<string | number, Json>)[k]!, p)];
  });
}

/** The container holding the value at `p`, or null when a step on the way is gone or a scalar. */
function containerAt(doc: Json, p: Path): Json[] | Record<string, Json> | null {
  let o: Json = doc;
  for (const k of p.slice(0, -1)) {
    if (o === null || typeof o !== 'object') return null;
    o = (o as Record<string | number, Json>)[k] ?? null;
  }
  return o !== null && typeof o === 'object' ? o : null;
}

/** Values a careless or hostile editor could put anywhere. */
const HOSTILE: Json[] = [
  '',
  ' ',
  '-rf',
  '--help',
  '../../etc/shadow',
  '/etc/../root/.ssh/authorized_keys',
  'relative/path',
  '/tmp/x y',
  '$(id)',
  '`id`',
  'a;reboot',
  'a && reboot',
  "it's",
  '"quoted"',
  'back\\slash',
  'line\nbreak',
  'nul\u0000byte',
  'tab\there',
  'cr\rreturn',
  'esc\u001b[31m',
  '\u2028sep',
  'é✓漢',
  '%p %f %r',
  '{{ template }}',
  '${HOME}',
  'x'.repeat(5000),
  '10.213.50.0',
  '10.213.50.255',
  '203.0.113.7', // TEST-NET-3: outside the lab subnet, never reached
  '10.213.50.300',
  '127.0.0.1',
  '0.0.0.0',
  '::1',
  'localhost',
  'file:',
  'file:relative',
  'file:/etc/shadow',
  'env:',
  'env:lower-case',
  'plaintext-password',
  -1,
  0,
  1,
  99,
  100,
  65535,
  65536,
  2 ** 31,
  1e21,
  3.5,
  true,
  false,
  null,
  [],
  {},
  ['a', 'b'],
  { nested: { deeper: '$(id)' } },
];

const hostile = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double({ noNaN: false }) },
);

type Mutation =
  | { op: 'set'; path: Path; value: Json }
  | { op: 'delete'; path: Path }
  | { op: 'add'; path: Path; key: string; value: Json }
  | { op: 'dup'; path: Path };

function mutationsFor(doc: Json): fc.Arbitrary<Mutation[]> {
  const paths = pathsOf(doc);
  const containers = [[], ...paths.filter((p) => typeof get(doc, p) === 'object' && get(doc, p) !== null)];
  const inArrays = paths.filter((p) => typeof p[p.length - 1] === 'number');
  const one: fc.Arbitrary<Mutation> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        path: fc.constantFrom(...paths),
        value: hostile,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('delete' as const), path: fc.constantFrom(...paths) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('add' as const),
        path: fc.constantFrom(...containers),
        key: fc.constantFrom('extra', 'archive_command', 'user', 'path', '__proto__', 'constructor'),
        value: hostile,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ op: fc.constant('dup' as const), path: fc.constantFrom(...inArrays) }),
    },
  );
  return fc.array(one, { minLength: 1, maxLength: 3 });
}

function get(doc: Json, p: Path): Json {
  return p.reduce<Json>(
    (o, k) =>
      o !== null && typeof o === 'object' ? ((o as Record<string | number, Json>)[k] ?? null) : null,
    doc,
  );
}

/** Applies the mutations that still fit (an earlier one may have removed a later one's parent). */
function apply(base: Json, ms: Mutation[]): { doc: Json; touched: Path[] } {
  const doc = structuredClone(base);
  const touched: Path[] = [];
  for (const m of ms) {
    const parent = m.path.length === 0 ? null : containerAt(doc, m.path);
    const key = m.path[m.path.length - 1]!;
    if (m.op === 'add') {
      const c = get(doc, m.path);
      if (c === null || typeof c !== 'object' || Array.isArray(c)) continue;
      Object.defineProperty(c, m.key, {
        value: m.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      touched.push([...m.path, m.key]);
      continue;
    }
    if (parent === null || !Object.prototype.hasOwnProperty.call(parent, key)) continue;
    if (m.op === 'set') (parent as Record<string | number, Json>)[key] = structuredClone(m.value);
    else if (m.op === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
    } else if (Array.isArray(parent)) parent.push(structuredClone(parent[key as number]!));
    touched.push(m.path);
  }
  return { doc, touched };
}

const dotted = (p: Path) =>
  p
    .map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`))
    .join('')
    .replace(/^\./, '');

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f\u2028\u2029]/;

/** Every string value of the document with its path. */
function strings(v: Json, at: Path = []): [Path, string][] {
  if (typeof v === 'string') return [[at, v]];
  if (v === null || typeof v !== 'object') return [];
  return Object.entries(v).flatMap(([k, x]) => strings(x, [...at, Array.isArray(v) ? Number(k) : k]));
}

function renderAll(inv: Inventory): RenderedFile[] {
  const secrets = Object.fromEntries(secretNamesOf(inv).map((n) => [n, `fuzz-${n}`])) as ClusterSecrets;
  const files = renderCluster(inv, secrets).flatMap((n) => n.files);
  if (inv.nodes.backup.length > 0) files.push(...renderBackupFiles(inv, secrets));
  for (const recipe of onlineInstallRecipes(inv))
    files.push({
      path: `/install/${recipe.component}.sh`,
      content: renderInstallScript(recipe, quote),
      mode: 0o700,
      owner: 'root',
      group: 'root',
    });
  return files;
}

function check(base: Json, ms: Mutation[]): void {
  const { doc, touched } = apply(base, ms);
  let r: ReturnType<typeof validateInventory>;
  try {
    r = validateInventory(doc, { baseDir: '/etc/pgha' });
  } catch (err) {
    assert.fail(`validateInventory threw ${String(err)} for ${JSON.stringify(ms).slice(0, 300)}`);
  }
  const errors = r.issues.filter((i) => i.severity === 'error');
  if (!r.inventory) {
    assert.ok(errors.length > 0, 'a rejection has an error');
    for (const e of errors) {
      assert.ok(e.path !== '' && e.path !== '(document)', `a rejection names a field: ${JSON.stringify(e)}`);
      assert.ok(e.fix.length > 0, `a rejection says the fix: ${e.path}`);
    }
    // On the mutated branch: the same top-level section as one of the mutations.
    const tops = new Set(touched.map((p) => String(p[0])));
    assert.ok(
      errors.some((e) => tops.has(e.path.split(/[.[]/)[0]!)) || touched.length === 0,
      `an error on the mutated branch (${[...tops].join(', ')}): ${errors.map((e) => e.path).join(', ')}`,
    );
    return;
  }
  // Accepted: the values are fit for files and commands.
  for (const [p, s] of strings(doc))
    assert.ok(!CONTROL.test(s) && !s.includes('\n'), `accepted a control character at ${dotted(p)}`);
  let files: RenderedFile[];
  try {
    files = renderAll(r.inventory);
  } catch (err) {
    assert.fail(
      `an accepted inventory does not render: ${String(err)} (${JSON.stringify(ms).slice(0, 300)})`,
    );
  }
  for (const f of files) {
    assert.match(f.path, /^\/[A-Za-z0-9_@%+:,./-]+$/, `a plain absolute path: ${JSON.stringify(f.path)}`);
    assert.ok(!f.path.split('/').includes('..'), `no .. in ${f.path}`);
    assert.ok(!CONTROL.test(f.content), `${f.path}: a control character in the content`);
  }
}

for (const [name, base] of BASES) {
  void test(`fuzz: ${RUNS} mutations of ${name}: no exception, rejections name a field, what is accepted renders safely`, () => {
    assert.ok(validateInventory(base, { baseDir: '/etc/pgha' }).inventory, `${name} itself is valid`);
    fc.assert(
      fc.property(mutationsFor(base), (ms) => check(base, ms)),
      { numRuns: RUNS, seed: SEED, verbose: 1 },
    );
  });
}
