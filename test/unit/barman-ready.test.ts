/**
 * waitBarmanReady (activities/backup/cli.ts): the gate waits for `barman check` — but a check that
 * says nothing about WAL streaming or the next backup (an earlier backup that FAILED) is not a
 * reason to wait; streaming that does not come up still fails the gate, naming the check. Driven
 * with a stand-in for `pct exec` that answers `barman check` as Barman 3.19 prints it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockActivityEnvironment } from '@temporalio/testing';
import { waitBarmanReady } from '../../activities/backup';
import type { BarmanCheck } from '../../activities/backup/cli';
import type { BackupDeps } from '../../activities/backup/types';
import { labInventory } from '../helpers/lab-inventory';

const inv = labInventory();

/** `barman check` output with these checks failing (the rest OK). */
function checkOutput(failing: Record<string, string>): string {
  const names = ['PostgreSQL', 'replication slot', 'receive-wal running', 'WAL archive', 'failed backups'];
  return [
    'Server lab:',
    ...names.map((n) => (n in failing ? `\t${n}: FAILED (${failing[n]})` : `\t${n}: OK`)),
  ].join('\n');
}

function deps(failing: Record<string, string>) {
  const calls: string[][] = [];
  const d = {
    shellFor: async () => ({
      exec: async (_vmid: number, argv: string[]) => {
        calls.push(argv);
        const check = argv.includes('check');
        const out = check ? checkOutput(failing) : '';
        return { code: check && Object.keys(failing).length ? 1 : 0, stdout: out, stderr: '' };
      },
      push: async () => undefined,
    }),
  } as unknown as BackupDeps;
  return { d, calls };
}

const run = (d: BackupDeps, timeoutMs: number): Promise<BarmanCheck> =>
  new MockActivityEnvironment().run(waitBarmanReady, d, { inv, timeoutMs });

void test('an earlier failed backup alone does not hold the gate; it is still reported', async () => {
  const { d, calls } = deps({ 'failed backups': 'there are 1 failed backups' });
  const t0 = Date.now();
  const r = await run(d, 5_000);
  assert.ok(Date.now() - t0 < 2_000, 'returned at the first check, not at the bound');
  assert.equal(r.ok, false, 'the check result is what Barman said');
  assert.deepEqual(
    r.checks.filter((c) => !c.ok).map((c) => c.name),
    ['failed backups'],
  );
  assert.equal(calls.filter((a) => a.includes('check')).length, 1);
});

void test('streaming that does not come up still fails the gate at its bound, naming the checks', async () => {
  const { d } = deps({
    'receive-wal running': 'See the Barman log file for more details',
    'failed backups': 'there are 1 failed backups',
  });
  await assert.rejects(
    run(d, 1_500),
    /barman check lab still fails after 1500 ms: receive-wal running \(.*failed backups/,
  );
});
