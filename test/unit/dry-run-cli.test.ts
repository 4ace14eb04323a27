/**
 * `--dry-run` on the command line (the real program, clients/program.ts, its actions replaced by a
 * recorder so nothing connects): every command that starts a runbook or creates a schedule takes
 * it — the others (reads, run control, the lab, secrets) are named here — and `guard start`,
 * `schedule backup | etcd-maintain | drill` and `smoke` hand it to their action as `dryRun: true`
 * (absent without the flag, so older workers never see it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../clients/program';
import { repoRoot } from '../helpers/local-common';

interface Leaf {
  path: string;
  cmd: Command;
}
const leaves = (c: Command, path: string[] = []): Leaf[] =>
  c.commands.length === 0
    ? [{ path: path.join(' '), cmd: c }]
    : c.commands.flatMap((s) => leaves(s, [...path, s.name()]));

/** Commands that start no runbook and create no schedule: they read, steer a run, or work on the lab or secrets. */
const NO_RUNBOOK = [
  'keygen',
  'codec-server',
  'runs',
  'watch',
  'approve',
  'pause',
  'resume',
  'cancel',
  'lab up',
  'lab down',
  'lab reset',
  'lab status',
  'lab fault stop-ct',
  'lab fault destroy-ct',
  'lab fault partition',
  'lab fault heal',
  'lab fault kill',
  'validate',
  'secrets init',
  'secrets check',
  'status',
  'doctor',
  'history',
  'schedule list',
  'schedule describe',
  'schedule pause',
  'schedule unpause',
  'schedule trigger',
  'schedule delete',
  'guard stop',
  'guard status',
];

const dry = (c: Command) => c.options.some((o) => o.long === '--dry-run');

void test('every command that starts a runbook or creates a schedule takes --dry-run', () => {
  const all = leaves(buildProgram());
  const without = all.filter((l) => !dry(l.cmd)).map((l) => l.path);
  assert.deepEqual(
    without.filter((p) => !NO_RUNBOOK.includes(p)),
    [],
    'a command without --dry-run that is not a read, a run control or the lab: give it --dry-run',
  );
  for (const p of ['guard start', 'schedule backup', 'schedule etcd-maintain', 'schedule drill', 'smoke'])
    assert.ok(
      all.some((l) => l.path === p && dry(l.cmd)),
      `${p} takes --dry-run`,
    );
});

/** Parses argv with the real program, every action replaced by a recorder of its options. */
async function parsed(argv: string[]): Promise<{ path: string; opts: Record<string, unknown> }[]> {
  let out = '';
  const program = buildProgram({ out: (s) => (out += s), err: (s) => (out += s) });
  const ran: { path: string; opts: Record<string, unknown> }[] = [];
  for (const l of leaves(program))
    l.cmd.action((opts: Record<string, unknown>) => void ran.push({ path: l.path, opts }));
  await program.parseAsync(['node', 'pgha', ...argv]).catch((err: unknown) => {
    throw new Error(`${argv.join(' ')}: ${String(err)}\n${out}`);
  });
  return ran;
}

void test('guard start, schedule backup | etcd-maintain | drill and smoke hand --dry-run to their action', async () => {
  const lab = join(repoRoot, 'runbooks/clusters/lab.yaml');
  const lines: [string, string[]][] = [
    ['guard start', ['guard', 'start', '--cluster', lab]],
    ['schedule backup', ['schedule', 'backup', '--cluster', lab, '--cron', '0 3 * * *']],
    ['schedule etcd-maintain', ['schedule', 'etcd-maintain', '--cluster', lab, '--cron', '0 4 * * 0']],
    ['schedule drill', ['schedule', 'drill', '--cluster', lab, '--cron', '0 5 * * *']],
    ['smoke', ['smoke', '--approval-timeout', '5m']],
  ];
  for (const [path, argv] of lines) {
    const withFlag = await parsed([...argv, '--dry-run']);
    assert.deepEqual(
      withFlag.map((r) => [r.path, r.opts.dryRun]),
      [[path, true]],
    );
    const without = await parsed(argv);
    assert.deepEqual(
      without.map((r) => [r.path, r.opts.dryRun]),
      [[path, undefined]],
    );
  }
});
