/**
 * patroniLeaderLoss: what the Patroni upgrade does when a member's switch failed — was it the
 * leader that went away? In pause mode Patroni never fails over, so a leader that died while the
 * cluster is paused leaves it without a primary until someone resumes it.
 *
 *   the leader alive (its Patroni says primary/running, or its PostgreSQL answers SQL as a primary)
 *     → { lost: false }: the ordinary roll-back of the failed member applies;
 *   else → resume (PATCH /config {"pause": false} through a member that answers), then a bounded,
 *     heartbeating wait until Patroni names a running leader (the failover it may now do), and
 *     each member's Patroni version as it reports it now (null: not answering).
 *
 * Idempotent: a retry finds the cluster resumed (no PATCH) and the new leader already there.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, sqlConn } from '../../runbooks/topology';
import { clusterOf, patroniOf } from '../maintenance/common';
import { clusterLeader, normaliseRole } from '../patroni';
import { PollTimeoutError, keepBeating, pollUntil } from '../poll';
import { fail } from './common';
import { patroniSetPause } from './pause';
import type { PatroniUpgradeDeps } from './types';

export interface LeaderLossArgs {
  inv: Inventory;
  /** The leader the run planned with. */
  leader: string;
  /** How long Patroni may take to elect a new leader after the resume (default ttl + 3 × loop_wait + 60 s). */
  timeoutMs?: number;
}

export interface LeaderLossResult {
  lost: boolean;
  /** The leader the run planned with. */
  leader: string;
  /** Lost: the leader Patroni elected after the resume (the old one if it came back first). */
  newLeader?: string;
  /** Lost: the pause was lifted by this call (false: it was already lifted). */
  resumed?: boolean;
  /** Lost: each member's Patroni version as it reports it now (null: not answering). */
  versions?: Record<string, string | null>;
}

/** The leader still leads: Patroni says so, or, its REST API silent, PostgreSQL answers as a primary. */
async function leaderAlive(deps: PatroniUpgradeDeps, inv: Inventory, leader: string): Promise<boolean> {
  const st = await patroniOf(deps, inv, leader);
  if (st && st.state === 'running' && normaliseRole(st.role) === 'primary') return true;
  try {
    return !(await deps.postgres.pgIsInRecovery(sqlConn(inv, leader)));
  } catch {
    return false;
  }
}

export function patroniLeaderLoss(deps: PatroniUpgradeDeps, args: LeaderLossArgs): Promise<LeaderLossResult> {
  return keepBeating(leaderLoss(deps, args), { phase: `is ${args.leader} still the leader?` });
}

async function leaderLoss(deps: PatroniUpgradeDeps, args: LeaderLossArgs): Promise<LeaderLossResult> {
  const { inv, leader } = args;
  if (await leaderAlive(deps, inv, leader)) return { lost: false, leader };
  const resume = await patroniSetPause(deps, { inv, pause: false });
  const p = inv.patroni;
  const timeoutMs = args.timeoutMs ?? (p.ttl + 3 * p.loopWait + 60) * 1000;
  let newLeader: string;
  try {
    newLeader = await pollUntil(
      { what: `a running leader after ${leader} was lost`, timeoutMs, intervalMs: 1000 },
      async () => {
        try {
          const c = await clusterOf(deps, inv);
          const l = clusterLeader(c);
          const m = c.members.find((x) => x.name === l);
          // The old leader's key outlives its CT by up to ttl: it counts only if it answers again.
          const ok =
            Boolean(l && m?.state === 'running') && (l !== leader || (await leaderAlive(deps, inv, leader)));
          return { done: ok, value: l ?? '', describe: `leader ${l ?? 'none'} ${m?.state ?? ''}` };
        } catch (err) {
          return { done: false, value: '', describe: (err as Error).message };
        }
      },
    );
  } catch (err) {
    if (err instanceof PollTimeoutError)
      fail(
        `the leader ${leader} is gone and the cluster was resumed, but Patroni named no new leader: ${err.message}; ` +
          `see pgha status and journalctl -u patroni on the members`,
      );
    throw err;
  }
  const versions: Record<string, string | null> = {};
  for (const m of memberNames(inv)) versions[m] = (await patroniOf(deps, inv, m))?.patroni?.version ?? null;
  return { lost: true, leader, newLeader, resumed: resume.patched, versions };
}
