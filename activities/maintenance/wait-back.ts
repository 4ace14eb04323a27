/**
 * waitBack: the bounded wait (heartbeating) after a restart or a re-clone, until the member runs a
 * new postmaster in its role and is healthy: a replica streaming within the lag bound from a
 * walsender newer than its postmaster; the leader the running, writable primary whose replicas
 * stream from it again.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, sqlConn } from '../../runbooks/topology';
import { normaliseRole } from '../patroni';
import type { PatroniNodeStatus } from '../patroni';
import { PollTimeoutError, pollUntil } from '../poll';
import type { PgReplicationRow } from '../postgres';
import { fail, fmtLag, patroniOf, walsenderSince } from './common';
import type { MaintenanceDeps } from './types';

export interface WaitBackArgs {
  inv: Inventory;
  member: string;
  role: 'leader' | 'replica';
  leader: string;
  /** The postmaster start time before the restart: back means a different one. */
  before: string | null;
  maxLagBytes: number;
  timeoutMs: number;
  what: string;
}

interface Back {
  after: string | null;
  lagBytes: number | null;
}
type Look = { done: boolean; value: Back; describe: string };

/** The leader is back: writable, and every other member streams from it within the bound. */
async function leaderBack(deps: MaintenanceDeps, args: WaitBackArgs, value: Back): Promise<Look> {
  const { inv, member } = args;
  try {
    const id = await deps.postgres.pgIdentity(sqlConn(inv, member));
    if (id.inRecovery) return { done: false, value, describe: 'running, still in recovery' };
    // Post-check: the replicas (streaming before, says the pre-check) stream from it again.
    const others = memberNames(inv).filter((h) => h !== member);
    const rows = await deps.postgres.pgReplication(sqlConn(inv, member));
    const lagging = others.filter((o) => {
      const r = rows.find((x) => x.applicationName === o);
      return !(r?.state === 'streaming' && r.replayLagBytes !== null && r.replayLagBytes <= args.maxLagBytes);
    });
    return {
      done: lagging.length === 0,
      value,
      describe: lagging.length
        ? `writable; waiting for ${lagging.join(', ')} to stream again`
        : 'writable, replicas streaming',
    };
  } catch (err) {
    return { done: false, value, describe: (err as Error).message };
  }
}

/** A replica is back: a walsender on the leader serving THIS postmaster, streaming within the bound. */
async function replicaBack(deps: MaintenanceDeps, args: WaitBackArgs, value: Back): Promise<Look> {
  let rows: PgReplicationRow[];
  try {
    rows = await deps.postgres.pgReplication(sqlConn(args.inv, args.leader));
  } catch (err) {
    return { done: false, value, describe: `leader ${args.leader}: ${(err as Error).message}` };
  }
  const row = walsenderSince(rows, args.member, value.after);
  value.lagBytes = row?.replayLagBytes ?? null;
  const ok = row?.state === 'streaming' && value.lagBytes !== null && value.lagBytes <= args.maxLagBytes;
  return {
    done: ok,
    value,
    describe: row
      ? `running, ${row.state}, lag ${fmtLag(value.lagBytes)}`
      : `running, no walsender on ${args.leader} yet`,
  };
}

/** One look at the member. */
async function lookBack(
  deps: MaintenanceDeps,
  args: WaitBackArgs,
  st: PatroniNodeStatus | null,
): Promise<Look> {
  if (!st) return { done: false, value: { after: null, lagBytes: null }, describe: 'REST API not answering' };
  const after = st.postmaster_start_time ?? null;
  const value: Back = { after, lagBytes: null };
  if (args.before !== null && after === args.before) {
    return {
      done: false,
      value,
      describe: `not restarted yet (postmaster started ${after}, state ${st.state})`,
    };
  }
  if (st.state !== 'running') return { done: false, value, describe: `state ${st.state}` };
  const role = normaliseRole(st.role);
  if (args.role === 'leader') {
    if (role !== 'primary') return { done: false, value, describe: `role ${st.role}` };
    return leaderBack(deps, args, value);
  }
  if (role !== 'replica') return { done: false, value, describe: `role ${st.role}` };
  return replicaBack(deps, args, value);
}

/** Bounded wait: `member` restarted (start time differs from `before`), running, in its role and healthy. */
export async function waitBack(deps: MaintenanceDeps, args: WaitBackArgs): Promise<Back> {
  try {
    return await pollUntil(
      { what: `${args.member} ${args.what}`, timeoutMs: args.timeoutMs, intervalMs: 1000 },
      async () => lookBack(deps, args, await patroniOf(deps, args.inv, args.member)),
    );
  } catch (err) {
    if (err instanceof PollTimeoutError) fail(err.message);
    throw err;
  }
}
