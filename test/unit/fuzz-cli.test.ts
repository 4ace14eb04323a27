/**
 * Fuzz (fast-check) of the CLI's argument parsing: the commander program (clients/program.ts) run
 * in-process on generated argv — every command path of the real program, then an unknown command,
 * an unknown option, an option with its value missing, a required option left out, too many
 * arguments, with random noise around it (odd bytes, leading dashes, `--opt=value`, huge values,
 * the command's own options):
 *  - never an uncaught exception, never a stack trace, no raw control character in what it prints;
 *  - bad input: exit status 2 and a message that names the option, argument or command that was
 *    wrong (one the argv holds or the command defines), and no action ran;
 *  - an inventory that does not load given to any `--cluster <file>` command, with the command's
 *    real action: exit 2 naming --cluster, and no connection to Temporal (TEMPORAL_ADDRESS points at
 *    a loopback listener that counts connections; a control run of `pgha runs` proves it counts).
 *
 * In the first property the actions are replaced by a recorder (the argv is random: a real `lab
 * fault stop-ct` must never run); the parsing, hooks and messages are the real program's.
 * Seed: PGHA_FUZZ_SEED (printed), runs: PGHA_FUZZ_RUNS (default 2,000 and 500).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import type { Command } from 'commander';
import fc from 'fast-check';
import { buildProgram, printable, runCli } from '../../clients/program';
import { testCodecKey } from '../helpers/temporal';

const RUNS = Number(process.env.PGHA_FUZZ_RUNS ?? 2_000);
const SEED = Number(process.env.PGHA_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`fuzz-cli seed ${SEED} (replay: PGHA_FUZZ_SEED=${SEED})`);

interface Leaf {
  path: string[];
  cmd: Command;
}
function commandsOf(c: Command, path: string[] = []): Leaf[] {
  return [{ path, cmd: c }, ...c.commands.flatMap((s) => commandsOf(s, [...path, s.name()]))];
}
const ALL = commandsOf(buildProgram());
const LEAVES = ALL.filter((l) => l.cmd.commands.length === 0);
const GROUPS = ALL.filter((l) => l.cmd.commands.length > 0);
// `pgha validate` is left out: an inventory that does not load is what it reports (exit 1, every
// error, JSON with --json), so the program's check of --cluster does not stand in front of it.
const FILE_CLUSTER = LEAVES.filter(
  (l) =>
    l.cmd.name() !== 'validate' &&
    l.cmd.options.some((o) => o.long === '--cluster' && o.flags.includes('<file>')),
);
const flagsOf = (c: Command) => [
  '--x',
  ...c.options.flatMap((o) => [o.long, o.short].filter((f) => f !== undefined)),
];
const isHelp = (t: string) => /^-h|^--help(=|$)/.test(t) || t === 'help';

/** One argv token: odd bytes (no NUL: an argv cannot hold one), leading dashes, huge, `--k=v`. */
const oddString = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replace(/\0/g, ''));
const token = (c: Command) =>
  fc
    .oneof(
      oddString,
      oddString.map((s) => `-${s}`),
      oddString.map((s) => `--${s}`),
      fc.tuple(fc.constantFrom(...flagsOf(c)), oddString).map(([f, v]) => `${f}=${v}`),
      fc.constantFrom(...flagsOf(c)),
      fc.constantFrom('--', '-', '', ' ', '$(id)', '`id`', ';rm -rf /', '\n', '\u001b[31m', 'é', '\uffff'),
      fc.integer({ min: 1_000, max: 200_000 }).map((n) => '-'.repeat(n % 3) + 'x'.repeat(n)),
    )
    .filter((t) => !isHelp(t));
const noise = (c: Command, max = 6) => fc.array(token(c), { maxLength: max });

/** A command line and what its command defines (names only: a failure prints them, not the Command). */
type Case = { argv: string[]; leaf: { name: string; known: string[] }; kind: string };
const named = (c: Command) => ({
  name: c.name(),
  known: [...flagsOf(c), ...c.registeredArguments.map((a) => a.name())],
});
const pick = <T>(xs: T[]) => fc.constantFrom(...xs);

const unknownCommand: fc.Arbitrary<Case> = fc
  .tuple(
    pick(GROUPS),
    oddString.filter((s) => s !== '' && !s.startsWith('-')),
  )
  .filter(([g, name]) => !isHelp(name) && !g.cmd.commands.some((s) => s.name() === name))
  .chain(([g, name]) =>
    noise(g.cmd).map((n) => ({ argv: [...g.path, name, ...n], leaf: named(g.cmd), kind: 'unknown command' })),
  );
const unknownOption: fc.Arbitrary<Case> = fc
  .tuple(
    pick(LEAVES),
    oddString.filter((s) => /^[^=]/.test(s)),
    fc.boolean(),
  )
  .filter(([l, name]) => !flagsOf(l.cmd).includes(`--${name}`) && !isHelp(`--${name}`))
  .chain(([l, name, withValue]) =>
    noise(l.cmd).map((n) => ({
      argv: [...l.path, withValue ? `--${name}=v` : `--${name}`, ...n],
      leaf: named(l.cmd),
      kind: 'unknown option',
    })),
  );
const missingValue: fc.Arbitrary<Case> = pick(
  LEAVES.flatMap((l) => l.cmd.options.filter((o) => o.required).map((o) => ({ l, o }))),
).map(({ l, o }) => ({ argv: [...l.path, o.long ?? o.short!], leaf: named(l.cmd), kind: 'value missing' }));
const missingRequired: fc.Arbitrary<Case> = pick(
  LEAVES.flatMap((l) => l.cmd.options.filter((o) => o.mandatory).map((o) => ({ l, o }))),
).chain(({ l, o }) =>
  noise(l.cmd)
    .map((n) => n.filter((t) => !t.startsWith(o.long!) && !(o.short && t.startsWith(o.short))))
    .map((n) => ({ argv: [...l.path, ...n], leaf: named(l.cmd), kind: 'required option missing' })),
);
const tooMany: fc.Arbitrary<Case> = fc
  .tuple(pick(LEAVES), fc.array(oddString, { minLength: 4, maxLength: 8 }))
  .map(([l, extra]) => ({
    argv: [...l.path, '--', ...extra],
    leaf: named(l.cmd),
    kind: 'too many arguments',
  }));

/** What commander or pgha named as wrong, from the first line it printed. */
const NAMED = [
  /^pgha: unknown command '([^]*?)'\n/,
  /^pgha: unknown option '([^]*?)'\n/,
  /^pgha: option '([^']*)' argument missing/,
  /^pgha: required option '([^']*)' not specified/,
  /^pgha: too many arguments for '([^']*)'/,
  /^pgha: missing required argument '([^']*)'/,
  /^pgha: option '([^']*)' argument '[^]*?' is invalid/,
  /^pgha: command-argument value '[^]*?' is invalid for argument '([^']*)'/,
  /^pgha: (--cluster) "/,
];

function checkOutput(all: string): void {
  assert.doesNotMatch(all, /^\s+at .+:\d+:\d+\)?$/m, 'a stack trace was printed');
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(all, /[\u0000-\u0008\u000b-\u001f\u007f]/, 'a raw control character was printed');
}

void test(`CLI: random argv with bad input → exit 2 naming what was wrong, no action (seed ${SEED})`, async () => {
  let rejected = 0;
  const kinds = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(unknownCommand, unknownOption, missingValue, missingRequired, tooMany),
      async (c) => {
        let out = '';
        const program = buildProgram({ out: (s) => (out += s), err: (s) => (out += s) });
        const ran: string[] = [];
        for (const l of commandsOf(program).filter((x) => x.cmd.commands.length === 0))
          l.cmd.action(() => void ran.push(l.path.join(' ')));
        let code: number;
        try {
          await program.parseAsync(['node', 'pgha', ...c.argv]);
          code = 0;
        } catch (err) {
          // what runCli does with it; anything else than a CommanderError is a bug here
          assert.equal((err as Error).name, 'CommanderError', (err as Error).stack);
          code = (err as { exitCode: number }).exitCode === 0 ? 0 : 2;
        }
        checkOutput(out);
        if (ran.length > 0) return; // the noise made it a valid command line (the stub ran): nothing to check
        assert.equal(code, 2, `${c.kind}: ${JSON.stringify(c.argv).slice(0, 300)}\n${out.slice(0, 500)}`);
        const first = out.slice(0, 300);
        const m = NAMED.map((r) => r.exec(out)).find((x) => x !== null);
        assert.ok(m, `no option, argument or command named: ${first.slice(0, 300)}`);
        const what = m[1]!.split(/[= ]/)[0]!;
        assert.ok(
          c.leaf.known.some((k) => m[1]!.startsWith(k)) ||
            c.argv.some((t) => printable(t).startsWith(what) || t === c.leaf.name) ||
            what === c.leaf.name,
          `${first.slice(0, 300)} names ${what}, which neither the argv nor the command holds`,
        );
        rejected++;
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
      },
    ),
    { numRuns: RUNS, seed: SEED },
  );
  console.log(`rejected ${rejected}/${RUNS}:`, Object.fromEntries(kinds));
  assert.ok(rejected >= RUNS * 0.8, `only ${rejected} of ${RUNS} generated command lines were rejected`);
});

let listener: Server;
let control: Server;
let connections = 0;
let controlConnections = 0;
let port = 0;
const saved = { ...process.env };
before(async () => {
  listener = createServer((s) => {
    connections++;
    s.destroy();
  });
  control = createServer((s) => {
    controlConnections++;
    s.destroy();
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
  port = (listener.address() as { port: number }).port;
  Object.assign(process.env, {
    TEMPORAL_ADDRESS: `127.0.0.1:${(control.address() as { port: number }).port}`,
    PGHA_CODEC_KEY: testCodecKey.toString('base64'), // so the codec is never why a command stops
  });
});
after(async () => {
  process.env = saved;
  await new Promise((r) => listener.close(r));
  await new Promise((r) => control.close(r));
});

void test('CLI: a --cluster inventory that does not load → exit 2 naming --cluster, nothing reaches Temporal', async () => {
  // the control, on a listener of its own (a failed client goes on reconnecting in the background):
  // a command that does connect is seen connecting
  let out = '';
  const io = { out: (s: string) => (out += s), err: (s: string) => (out += s) };
  assert.equal(await runCli(['node', 'pgha', 'runs'], io), 1, out);
  assert.ok(controlConnections > 0, `the listener saw no connection from \`pgha runs\`: ${out}`);
  process.env.TEMPORAL_ADDRESS = `127.0.0.1:${port}`;

  const badFile = fc.oneof(
    oddString,
    oddString.map((s) => `/nonexistent/${s}`),
    fc.constantFrom('.', '/', 'package.json', 'README.md', 'test', '-', '--', '/etc/hostname'),
    fc.integer({ min: 256, max: 100_000 }).map((n) => 'a/'.repeat(n)),
  );
  let namedCluster = 0;
  await fc.assert(
    fc.asyncProperty(pick(FILE_CLUSTER), badFile, fc.boolean(), async (l, file, joined) => {
      let text = '';
      const required = l.cmd.options
        .filter((o) => o.mandatory && o.long !== '--cluster')
        .flatMap((o) => [o.long!, 'x1']);
      const args = l.cmd.registeredArguments.filter((a) => a.required).map(() => 'a=b');
      const argv = [...l.path, joined ? `--cluster=${file}` : '--cluster', ...(joined ? [] : [file])];
      const code = await runCli(['node', 'pgha', ...argv, ...required, ...args], {
        out: (s) => (text += s),
        err: (s) => (text += s),
      });
      checkOutput(text);
      assert.equal(code, 2, `${argv.join(' ').slice(0, 200)}: ${text.slice(0, 400)}`);
      assert.equal(connections, 0, `${argv.join(' ').slice(0, 200)} connected to Temporal`);
      if (/^pgha: --cluster "/.test(text)) namedCluster++;
      else assert.match(text, /^pgha: (option|required option|unknown option|too many|missing required)/);
    }),
    { numRuns: Math.ceil(RUNS / 4), seed: SEED },
  );
  assert.ok(namedCluster > RUNS / 8, `only ${namedCluster} runs reached the inventory check`);
});
