/**
 * majorStop: the whole cluster down, cleanly, with Patroni paused (its service stops without
 * touching PostgreSQL, and nothing starts it again), at one checkpoint. The post-check: every
 * member stopped cleanly at the same "Latest checkpoint location" — so the old cluster can come
 * back as it was (the rollback) and nothing the leader wrote is missing on a replica. The
 * PostgreSQL manual's pg_upgrade "verify standby servers" step; the leader goes down first, else
 * the replicas could not have its shutdown checkpoint.
 *
 * The order keeps the leader writable as long as possible (writes are refused from the leader's
 * stop on, and a stopped Patroni on the leader already fails HAProxy's check): the replicas'
 * Patroni first, in parallel; a CHECKPOINT on the leader while it still serves (its shutdown
 * checkpoint then has little left to write); then the leader's PostgreSQL (fast: the shutdown
 * checkpoint goes to the replicas); then, together, the leader's Patroni and each replica once it
 * replayed that checkpoint. Converges: members already stopped are only checked.
 *
 * `phase` splits it for the short cutover: `leader` ends once the leader and every Patroni are
 * stopped (pg_upgrade needs no more), `replicas` stops the replicas at the leader's checkpoint
 * (read from its pg_controldata) beside pg_upgrade; without `phase`, both in one call.
 */
import { memberNames } from '../../runbooks/topology';
import { run } from '../nodes/shell';
import { patroniOf } from '../maintenance/common';
import { pollUntil } from '../poll';
import { asPg, bin, controlData, fail, lsnNum, memberCt, pgRunning, psql } from './common';
import type { MajorLeaderArgs } from './check';
import type { MajorDeps, MajorStopResult } from './types';

const CKPT = 'Latest checkpoint location';

export async function majorStop(
  deps: MajorDeps,
  args: Omit<MajorLeaderArgs, 'next'> & {
    phase?: 'leader' | 'replicas';
    /** phase `replicas`: the leader's shutdown checkpoint as phase `leader` read it (pg_upgrade, running beside, starts and renames the old pg_control: never read it then). */
    leaderCheckpoint?: string;
  },
): Promise<MajorStopResult> {
  const { inv, leader, phase } = args;
  const names = memberNames(inv);
  const replicas = names.filter((m) => m !== leader);
  const dataDir = inv.postgresql.dataDir;
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const mark = (what: string) => (timings[what] = Date.now() - t0);
  // Pre-check: a Patroni that answers must be paused, or stopping it would stop PostgreSQL its own way.
  for (const m of phase === 'replicas' ? [] : names) {
    const st = await patroniOf(deps, inv, m);
    if (st && !st.pause) fail(`${m}: Patroni is not paused; pause the cluster first (nothing was stopped)`);
  }
  const stopPatroni = async (m: string) =>
    run(await memberCt(deps, inv, m), ['systemctl', 'stop', 'patroni'], 180_000);
  if (phase !== 'replicas') {
    await Promise.all(replicas.map(stopPatroni));
    mark('replicasPatroniStopped');
  }

  const stopped: string[] = [];
  const stopPg = async (m: string) => {
    const ct = await memberCt(deps, inv, m);
    if (!(await pgRunning(ct, inv, dataDir))) return;
    await run(
      ct,
      asPg(inv, [bin(inv, 'pg_ctl'), 'stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '300']),
      330_000,
    );
    stopped.push(m);
  };
  const lct = await memberCt(deps, inv, leader);
  if (phase !== 'replicas') {
    if (await pgRunning(lct, inv, dataDir)) {
      await psql(lct, inv, 'CHECKPOINT');
      mark('leaderCheckpoint');
    }
    await stopPg(leader);
    mark('leaderStopped');
  } else if (!args.leaderCheckpoint) {
    fail(`phase replicas needs the leader's shutdown checkpoint (leaderCheckpoint)`);
  }
  let ckpt: string;
  if (phase === 'replicas') ckpt = args.leaderCheckpoint!;
  else {
    const lctl = await controlData(lct, inv, dataDir);
    if (lctl?.['Database cluster state'] !== 'shut down')
      fail(
        `the leader ${leader} is not cleanly shut down (state ${lctl?.['Database cluster state'] ?? 'unknown'})`,
      );
    ckpt = lctl[CKPT]!;
  }

  const checkpoints: Record<string, string> = { [leader]: ckpt };
  const stopReplica = async (m: string) => {
    const ct = await memberCt(deps, inv, m);
    if (await pgRunning(ct, inv, dataDir)) {
      await pollUntil(
        {
          what: `${m} replayed the leader's shutdown checkpoint ${ckpt}`,
          timeoutMs: 60_000,
          intervalMs: 200,
        },
        async () => {
          const [[lsn] = []] = await psql(ct, inv, 'SELECT pg_last_wal_replay_lsn()');
          return {
            done: !!lsn && lsnNum(lsn) > lsnNum(ckpt),
            value: lsn,
            describe: `replayed up to ${lsn ?? 'nothing'}`,
          };
        },
      );
      await stopPg(m);
    }
    const ctl = await controlData(ct, inv, dataDir);
    checkpoints[m] = ctl?.[CKPT] ?? 'unknown';
    if (ctl?.['Database cluster state'] !== 'shut down in recovery')
      fail(
        `${m} is not cleanly shut down as a replica (state ${ctl?.['Database cluster state'] ?? 'unknown'})`,
      );
  };
  if (phase === 'leader') {
    await stopPatroni(leader);
    mark('leaderPatroniStopped');
    return { checkpoints, stopped, timings };
  }
  await Promise.all([...(phase === 'replicas' ? [] : [stopPatroni(leader)]), ...replicas.map(stopReplica)]);
  mark('allStopped');
  const behind = replicas.filter((m) => checkpoints[m] !== ckpt);
  if (behind.length)
    fail(
      `not every member stopped at the leader's checkpoint ${ckpt}: ${behind.map((m) => `${m} at ${checkpoints[m]}`).join(', ')}`,
    );
  return { checkpoints, stopped, timings };
}
