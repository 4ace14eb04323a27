/**
 * majorPgUpgrade: `pg_upgrade --link` on the stopped leader, exactly once. It runs in a transient
 * systemd unit in the leader's CT, so it outlives the worker and its SSH session; a retried attempt
 * (a dead worker, a lost connection) looks before it acts:
 *
 *   finished before (old global/pg_control.old there, no pg_upgrade_output.d in the new directory,
 *   the new cluster shut down cleanly)                              → already-done, nothing run
 *   still running (the unit active)                                  → wait for it
 *   failed, or interrupted part way (pg_control.old without success) → MajorUpgradeFailed: the
 *                                                                      workflow rolls back
 *   not started                                                      → start it, wait
 *
 * Until the new cluster first starts, the old one comes back by renaming pg_control.old (restore.ts).
 */
import { pollUntil } from '../poll';
import { probe, run } from '../nodes/shell';
import { PG_UPGRADE_UNIT, controlData, exists, fail, memberCt, pgRunning, pgUpgradeArgv } from './common';
import type { MajorLeaderArgs } from './check';
import type { MajorDeps, MajorPgUpgradeResult } from './types';

/** The transient unit's state: ActiveState/SubState/Result, or null when there is no such unit. */
async function unitOf(ct: Parameters<typeof probe>[0]) {
  const r = await probe(ct, [
    'systemctl',
    'show',
    '-p',
    'LoadState,ActiveState,SubState,Result',
    PG_UPGRADE_UNIT,
  ]);
  const f = Object.fromEntries(r.stdout.split('\n').map((l) => l.split('=', 2) as [string, string]));
  if (f.LoadState === 'not-found' || !f.ActiveState) return null;
  return { active: f.ActiveState, sub: f.SubState, result: f.Result };
}

const journal = async (ct: Parameters<typeof probe>[0]) =>
  (
    await probe(ct, ['journalctl', '-u', PG_UPGRADE_UNIT, '-n', '25', '--no-pager', '-o', 'cat'])
  ).stdout.trim();

export async function majorPgUpgrade(deps: MajorDeps, args: MajorLeaderArgs): Promise<MajorPgUpgradeResult> {
  const { inv, next, leader } = args;
  const started = Date.now();
  const ct = await memberCt(deps, inv, leader);
  const oldData = inv.postgresql.dataDir;
  const newData = next.postgresql.dataDir;
  const done = async () =>
    (await exists(ct, `${oldData}/global/pg_control.old`)) &&
    !(await exists(ct, `${newData}/pg_upgrade_output.d`)) &&
    (await controlData(ct, next, newData))?.['Database cluster state'] === 'shut down';

  let unit = await unitOf(ct);
  const joined = unit?.sub === 'running';
  if (!joined) {
    if (await done()) return { action: 'already-done', tookMs: Date.now() - started };
    if (unit?.active === 'failed' || unit?.sub === 'exited')
      fail(
        `pg_upgrade on ${leader} ended without a finished upgrade (unit ${PG_UPGRADE_UNIT}: ${unit.active}/${unit.result}):\n${await journal(ct)}`,
      );
    if (await exists(ct, `${oldData}/global/pg_control.old`))
      fail(
        `an earlier pg_upgrade on ${leader} was interrupted part way (${oldData}/global/pg_control.old, no finished new cluster): it is not run again`,
      );
    // Pre-check: the old cluster is stopped (a running one would be copied mid-write).
    if (await pgRunning(ct, inv, oldData))
      fail(`PostgreSQL still runs on ${oldData} on ${leader}: stop it first`);
    const pg = inv.postgresql;
    await run(ct, [
      'systemd-run',
      `--unit=${PG_UPGRADE_UNIT}`,
      `--uid=${pg.osUser}`,
      `--gid=${pg.osUser}`,
      `--working-directory=${pg.home}`,
      '-p',
      'RemainAfterExit=yes',
      '--',
      ...pgUpgradeArgv(inv, next),
    ]);
  }
  unit = await pollUntil(
    // every 250 ms: the whole wait is inside the write outage
    { what: `pg_upgrade on ${leader}`, timeoutMs: 3 * 3600_000, intervalMs: 250 },
    async () => {
      const u = await unitOf(ct);
      return { done: u?.sub !== 'running', value: u, describe: u ? `${u.active}/${u.sub}` : 'no unit' };
    },
  );
  if (!(await done()))
    fail(
      `pg_upgrade on ${leader} failed (unit ${PG_UPGRADE_UNIT}: ${unit?.active ?? '?'}/${unit?.result ?? '?'}):\n${await journal(ct)}`,
    );
  return { action: joined ? 'joined' : 'ran', tookMs: Date.now() - started };
}
