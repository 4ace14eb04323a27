/**
 * Reads of the live cluster the switchover steps share: Patroni's /cluster from whoever answers,
 * a member's /primary, etcd's quorum, and who leads now (key, /primary and SQL agreeing).
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints, memberNames, restApi, sqlConn } from '../../runbooks/topology';
import type { PgConn } from '../../runbooks/topology';
import { clusterLeader } from '../patroni';
import type { PatroniClusterJson } from '../patroni';
import { refuse } from './common';
import type { SwitchoverDeps } from './types';

type Deps = Pick<SwitchoverDeps, 'patroni' | 'postgres' | 'etcd'>;

/** The superuser's SQL connection to a member, with the hand-off's short connect timeout. */
export const memberSql = (inv: Inventory, member: string): PgConn =>
  sqlConn(inv, member, { connectTimeoutMs: 2000 });

/** GET /cluster from the first member that answers (undefined when none does). */
export async function getCluster(
  deps: Deps,
  inv: Inventory,
): Promise<{ from: string; cluster: PatroniClusterJson } | undefined> {
  for (const m of memberNames(inv)) {
    try {
      const r = await deps.patroni.patroniGetCluster({ target: restApi(inv, m), timeoutMs: 2000 });
      if (r.status === 200 && r.body) return { from: m, cluster: r.body };
    } catch {
      // next member
    }
  }
  return undefined;
}

/** Whether the member's own /primary answers 200 (false when it does not answer). */
export async function primary200(
  deps: Deps,
  inv: Inventory,
  member: string,
  timeoutMs = 2000,
): Promise<boolean> {
  try {
    return (await deps.patroni.patroniGetPrimary({ target: restApi(inv, member), timeoutMs })).status === 200;
  } catch {
    return false;
  }
}

/** Refuses unless a majority of etcd members is healthy (Patroni cannot move the key without it). */
export async function etcdQuorum(deps: Deps, inv: Inventory): Promise<void> {
  const endpoints = etcdEndpoints(inv);
  const health = await deps.etcd.etcdEndpointHealth({ endpoints, timeoutMs: 3000 });
  const healthy = health.filter((h) => h.healthy).length;
  if (healthy <= endpoints.length / 2) {
    const bad = health
      .filter((h) => !h.healthy)
      .map((h) => `${h.endpoint}: ${h.error ?? 'unhealthy'}`)
      .join('; ');
    throw refuse(
      `etcd has no quorum: ${healthy} of ${endpoints.length} members healthy (${bad}); ` +
        `Patroni cannot move the leader key without it — bring etcd back first (pgha status)`,
    );
  }
}

export interface LeaderNow {
  leader?: string;
  timeline?: number;
  /** /cluster shows a scheduled switchover (Patroni's own, pending). */
  scheduled?: boolean;
  describe: string;
}

/** Who leads now: the /cluster leader if its /primary answers 200 and it is out of recovery. */
export async function leaderNow(deps: Deps, inv: Inventory): Promise<LeaderNow> {
  const got = await getCluster(deps, inv);
  if (!got) return { describe: 'no member answers GET /cluster' };
  const scheduled = got.cluster.scheduled_switchover ? true : undefined;
  const l = clusterLeader(got.cluster);
  if (!l)
    return {
      scheduled,
      describe: `no leader in /cluster (${got.cluster.members.map((m) => `${m.name} ${m.role} ${m.state}`).join(', ')})`,
    };
  if (!(await primary200(deps, inv, l)))
    return { scheduled, describe: `${l} holds the leader key but its /primary is not 200 yet` };
  try {
    const tl = await deps.postgres.pgTimeline(memberSql(inv, l));
    return {
      leader: l,
      timeline: tl.timeline ?? undefined,
      scheduled,
      describe: `${l} leads on timeline ${tl.timeline}`,
    };
  } catch (err) {
    return { scheduled, describe: `${l} leads but SQL fails: ${(err as Error).message}` };
  }
}
