/**
 * maintenancePrecheck: etcd has quorum, Patroni names a leader, every member is running and every
 * replica streams from the leader within the lag bound, the cluster is not paused. What it saw
 * (roles, postmaster start times, pending_restart) is the plan the runbook works from.
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints, isMember, memberNames } from '../../runbooks/topology';
import { clusterLeader, normaliseRole } from '../patroni';
import type { PatroniClusterJson, PatroniNodeStatus } from '../patroni';
import { heartbeat, keepBeating } from '../poll';
import type { PgReplicationRow } from '../postgres';
import { clusterOf, fmtLag, knownMember, patroniOf, refuse, replicationOf } from './common';
import type { ClusterSnapshot, MaintenanceDeps, MemberSnapshot } from './types';

export interface PrecheckArgs {
  inv: Inventory;
  /** Default inventory patroni.maximumLagOnFailover. */
  maxLagBytes?: number;
  /** Members allowed to be unhealthy (reinit's target, which may be broken: that is why). */
  allowUnhealthy?: string[];
}

/** Refuses unless etcd has quorum; returns how many members are healthy. */
async function etcdQuorum(
  deps: MaintenanceDeps,
  inv: Inventory,
): Promise<{ healthy: number; total: number }> {
  const view = await deps.etcd.etcdCluster({ endpoints: etcdEndpoints(inv) });
  if (!view.quorum) {
    const bad = view.endpoints
      .filter((e) => !e.healthy)
      .map((e) => `${e.endpoint}: ${e.error ?? 'unhealthy'}`);
    refuse(
      `etcd has no quorum: ${view.healthyCount} of ${view.endpoints.length} members healthy (${bad.join('; ')}); ` +
        `nothing was touched — bring etcd back first (pgha status --cluster ...)`,
    );
  }
  return { healthy: view.healthyCount, total: view.endpoints.length };
}

/** The leader /cluster names, refused when there is none, it is unknown, or the cluster is paused. */
function leaderOf(inv: Inventory, cluster: PatroniClusterJson): string {
  const leader = clusterLeader(cluster);
  if (!leader) {
    refuse(
      `Patroni names no leader (GET /cluster: ${cluster.members.map((m) => `${m.name} ${m.role}/${m.state}`).join(', ') || 'no members'}); ` +
        `the cluster is failing over or down — see pgha status, or pgha failover`,
    );
  }
  if (!isMember(inv, leader)) {
    refuse(
      `Patroni's leader ${leader} is not in the inventory of ${inv.cluster}: is this the right inventory?`,
    );
  }
  if (cluster.pause) {
    refuse(
      `cluster ${inv.cluster} is paused (Patroni maintenance mode): Patroni would not restart or re-clone anything; ` +
        `resume it first (patronictl resume, or PATCH /config {"pause": false})`,
    );
  }
  return leader;
}

interface Seen {
  leader: string;
  cluster: PatroniClusterJson;
  repl: PgReplicationRow[] | null;
}

/** One member as seen now: its GET /patroni, /cluster entry and the leader's walsender for it. */
function snapshotOf(name: string, st: PatroniNodeStatus | null, seen: Seen): MemberSnapshot {
  const inCluster = seen.cluster.members.find((m) => m.name === name);
  const isLeader = name === seen.leader;
  const row = seen.repl?.find((r) => r.applicationName === name);
  const lagBytes = isLeader
    ? 0
    : (row?.replayLagBytes ?? (typeof inCluster?.lag === 'number' ? inCluster.lag : null));
  // The leader's pg_stat_replication decides; /cluster's state only when SQL did not answer.
  const streaming = isLeader
    ? null
    : seen.repl
      ? row?.state === 'streaming'
      : inCluster?.state === 'streaming';
  const snap: MemberSnapshot = {
    name,
    role: isLeader ? 'leader' : 'replica',
    state: st?.state ?? inCluster?.state ?? 'unreachable',
    timeline: st?.timeline ?? inCluster?.timeline ?? null,
    postmasterStartTime: st?.postmaster_start_time ?? null,
    pendingRestart: Boolean(st?.pending_restart ?? inCluster?.pending_restart),
    lagBytes,
    streaming,
  };
  const reason = st?.pending_restart_reason;
  if (reason && typeof reason === 'object') snap.pendingRestartReason = Object.keys(reason).sort();
  return snap;
}

/** What is wrong with a member for maintenance to start (none: an empty list). */
function problemOf(
  snap: MemberSnapshot,
  st: PatroniNodeStatus | null,
  seen: Seen & { leaderTimeline: number | undefined; maxLag: number },
): string[] {
  const name = snap.name;
  const inCluster = seen.cluster.members.some((m) => m.name === name);
  if (!st) return [`${name}: its REST API does not answer`];
  if (!inCluster) return [`${name}: not in /cluster (Patroni not registered in etcd)`];
  if (st.state !== 'running') return [`${name}: state ${st.state}, expected running`];
  if (snap.role === 'leader') {
    return normaliseRole(st.role) !== 'primary'
      ? [`${name}: holds the leader key but runs as ${st.role}`]
      : [];
  }
  const out: string[] = [];
  if (snap.streaming !== true) {
    const row = seen.repl?.find((r) => r.applicationName === name);
    out.push(`${name}: not streaming from ${seen.leader} (${row?.state ?? 'no walsender'})`);
  } else if (snap.lagBytes === null || snap.lagBytes > seen.maxLag) {
    out.push(`${name}: replay lag ${fmtLag(snap.lagBytes)} exceeds ${fmtLag(seen.maxLag)}`);
  }
  const lt = seen.leaderTimeline;
  if (st.timeline !== undefined && lt !== undefined && lt !== st.timeline) {
    out.push(`${name}: on timeline ${st.timeline}, the leader on ${lt}`);
  }
  return out;
}

/** The pre-check, heartbeating throughout (a member that does not answer costs a GET's deadline). */
export function maintenancePrecheck(deps: MaintenanceDeps, args: PrecheckArgs): Promise<ClusterSnapshot> {
  return keepBeating(precheck(deps, args), { what: 'pre-check' });
}

async function precheck(deps: MaintenanceDeps, args: PrecheckArgs): Promise<ClusterSnapshot> {
  const { inv } = args;
  const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
  const tolerate = new Set(args.allowUnhealthy ?? []);
  for (const m of tolerate) knownMember(inv, m);

  const etcd = await etcdQuorum(deps, inv);
  heartbeat({ what: 'pre-check', etcd: etcd.healthy });

  const cluster = await clusterOf(deps, inv);
  const leader = leaderOf(inv, cluster);
  const names = memberNames(inv);
  const statuses = await Promise.all(names.map((m) => patroniOf(deps, inv, m)));
  const repl = await replicationOf(deps, inv, leader);
  const leaderStatus = statuses[names.indexOf(leader)];
  const seen = { leader, cluster, repl, leaderTimeline: leaderStatus?.timeline, maxLag };
  const problems: string[] = [];
  const members = names.map((name, i) => {
    const snap = snapshotOf(name, statuses[i] ?? null, seen);
    if (!tolerate.has(name)) problems.push(...problemOf(snap, statuses[i] ?? null, seen));
    return snap;
  });
  if (problems.length) {
    refuse(
      `cluster ${inv.cluster} is not healthy enough to start (leader ${leader}): ${problems.join('; ')}. ` +
        `Nothing was touched; fix that first (pgha status shows the details; pgha reinit for a broken replica)`,
    );
  }
  return {
    leader,
    timeline: leaderStatus?.timeline ?? null,
    members,
    etcd,
    patroniVersion: leaderStatus?.patroni?.version,
    checkedAt: new Date().toISOString(),
  };
}
