/**
 * The way back to the old major, before the point of no return (the new cluster never started):
 *
 * - majorRestoreOld, on the leader: pg_upgrade stopped if it runs, the old global/pg_control back
 *   from pg_control.old (pg_upgrade --link renames it so the old cluster cannot start by mistake),
 *   the new data directory removed. Refused when the new cluster has been started (Patroni's
 *   patroni.dynamic.json in it, or a postmaster on it): from there the old files are not safe.
 * - majorStartOld, on each member: the old PostgreSQL started as it was left (a replica keeps its
 *   standby.signal), then Patroni, which finds it running and, paused, leaves it as it is.
 *
 * Both converge: what is already back is left alone.
 */
import { posix } from 'node:path';
import { PG_UPGRADE_UNIT, asPg, bin, exists, fail, memberCt, pgRunning } from './common';
import { probe, run } from '../nodes/shell';
import { keepBeating, pollUntil } from '../poll';
import { patroniOf } from '../maintenance/common';
import type { MajorLeaderArgs } from './check';
import type { Inventory } from '../../runbooks/schema';
import type { MajorDeps } from './types';

export async function majorRestoreOld(
  deps: MajorDeps,
  args: MajorLeaderArgs,
): Promise<{ restored: string[] }> {
  const { inv, next, leader } = args;
  const ct = await memberCt(deps, inv, leader);
  const oldData = inv.postgresql.dataDir;
  const newData = next.postgresql.dataDir;
  const restored: string[] = [];
  await keepBeating(probe(ct, ['systemctl', 'stop', PG_UPGRADE_UNIT], 120_000), {
    leader,
    step: 'stop pg_upgrade',
  });
  await probe(ct, ['systemctl', 'reset-failed', PG_UPGRADE_UNIT]);
  if ((await exists(ct, `${newData}/patroni.dynamic.json`)) || (await pgRunning(ct, next, newData)))
    fail(
      `the new cluster in ${newData} on ${leader} has been started: the old one cannot be brought back safely`,
    );
  const ctl = `${oldData}/global/pg_control`;
  if ((await exists(ct, `${ctl}.old`)) && !(await exists(ct, ctl))) {
    await run(ct, asPg(inv, ['mv', `${ctl}.old`, ctl]));
    restored.push('pg_control');
  }
  if (await exists(ct, newData)) {
    // Only a data directory of the new major (PG_VERSION), or an empty one, is removed.
    const v = await probe(ct, ['cat', `${newData}/PG_VERSION`]);
    const empty = (await probe(ct, ['ls', '-A', newData])).stdout.trim() === '';
    if (!empty && v.stdout.trim() !== String(next.postgresql.major))
      fail(
        `${newData} on ${leader} is not a PostgreSQL ${next.postgresql.major} data directory: left as it is; look at it`,
      );
    await run(ct, ['rm', '-rf', '--one-file-system', '--', newData], 600_000);
    restored.push(`removed ${newData}`);
  }
  return { restored };
}

export async function majorStartOld(
  deps: MajorDeps,
  args: { inv: Inventory; member: string },
): Promise<{ started: string[] }> {
  const { inv, member } = args;
  const ct = await memberCt(deps, inv, member);
  const dataDir = inv.postgresql.dataDir;
  const started: string[] = [];
  if (!(await pgRunning(ct, inv, dataDir))) {
    const log = posix.join(inv.postgresql.home, 'pgha-rollback.log');
    await run(
      ct,
      asPg(inv, [bin(inv, 'pg_ctl'), 'start', '-D', dataDir, '-l', log, '-w', '-t', '300']),
      330_000,
    );
    started.push('postgresql');
  }
  if ((await probe(ct, ['systemctl', 'is-active', 'patroni'])).stdout.trim() !== 'active') {
    await run(ct, ['systemctl', 'start', 'patroni'], 180_000);
    started.push('patroni');
  }
  // Post-check: its REST API answers (the resume that follows goes through it).
  await pollUntil(
    { what: `${member}'s Patroni REST API answering`, timeoutMs: 120_000, intervalMs: 500 },
    async () => {
      const st = await patroniOf(deps, inv, member);
      return {
        done: st !== null,
        value: undefined,
        describe: st ? `state ${st.state ?? '?'}` : 'not answering',
      };
    },
  );
  return { started };
}
