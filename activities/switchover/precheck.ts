/**
 * switchoverPrecheck: etcd quorum, the leader, the candidate (named or the best replica) running
 * and streaming on the leader's timeline, not tagged nofailover, within maximum_lag_on_failover
 * (replay lag from the leader's pg_stat_replication: a replica whose replay is paused lags even
 * if it received everything), the cluster not paused. A refusal is a non-retryable
 * ApplicationFailure (type SwitchoverRefused) saying what was found and what to do.
 */
import { memberNames, restApi } from '../../runbooks/topology';
import type { Inventory } from '../../runbooks/schema';
import { clusterLeader, clusterMembers } from '../patroni';
import type { PostgresActivities } from '../postgres';
import { etcdQuorum, getCluster, memberSql, primary200 } from './cluster';
import { fmtBytes, refuse } from './common';
import type { HandoffAction, HandoffPlan, SwitchoverDeps } from './types';

type Replication = Awaited<ReturnType<PostgresActivities['pgReplication']>>;

/** One look at the live cluster: who leads, how each member streams and lags, the lag limit. */
interface ClusterView {
  names: string[];
  leaderName?: string;
  leaderHealthy: boolean;
  repl?: Replication;
  leaderTimeline?: number;
  maxLag: number;
  members: HandoffPlan['members'];
}

/**
 * The pre-checks of a switchover (or a failover) against the live cluster. Returns the plan;
 * refuses with a SwitchoverRefused failure naming what was found and the fix.
 */
export async function switchoverPrecheck(
  deps: SwitchoverDeps,
  args: {
    inv: Inventory;
    action: HandoffAction;
    candidate?: string;
    force?: boolean;
  },
): Promise<HandoffPlan> {
  const { inv, action } = args;
  const names = memberNames(inv);
  if (args.candidate !== undefined && !names.includes(args.candidate)) {
    throw refuse(
      `candidate ${args.candidate} is not a member of cluster ${inv.cluster}: choose one of ${names.join(', ')}`,
    );
  }
  await etcdQuorum(deps, inv);
  const view = await observe(deps, inv);
  checkLeader(inv, action, view, args);
  const candidate = chooseCandidate(view, action, args.candidate);
  const cm = view.members.find((m) => m.name === candidate)!;
  return {
    action,
    leader: view.leaderHealthy ? view.leaderName : undefined,
    candidate,
    timeline: view.leaderTimeline ?? cm.timeline ?? 0,
    chosen: args.candidate === undefined,
    maxLagBytes: view.maxLag,
    members: view.members,
    forced: action === 'failover' && view.leaderHealthy ? true : undefined,
  };
}

/** GET /cluster, the leader's own pg_stat_replication and timeline, each replica's own timeline. */
async function observe(deps: SwitchoverDeps, inv: Inventory): Promise<ClusterView> {
  const names = memberNames(inv);
  const got = await getCluster(deps, inv);
  if (!got) {
    throw refuse(
      `no Patroni member of cluster ${inv.cluster} answers GET /cluster (${names.join(', ')}); check pgha status`,
    );
  }
  const cl = got.cluster;
  if (cl.pause) {
    throw refuse(
      `cluster ${inv.cluster} is paused (Patroni maintenance mode): Patroni will not move the leader; ` +
        `resume it (patronictl resume) first`,
    );
  }
  if (cl.scheduled_switchover) {
    throw refuse(
      `a switchover is already scheduled in Patroni (at ${cl.scheduled_switchover.at} from ${cl.scheduled_switchover.from}` +
        `${cl.scheduled_switchover.to ? ` to ${cl.scheduled_switchover.to}` : ''}); cancel it (DELETE /switchover) or wait`,
    );
  }
  const leaderName = clusterLeader(cl);
  const leaderHealthy = leaderName ? await primary200(deps, inv, leaderName) : false;

  // The leader's own view: exact replay lag per replica and who streams.
  let repl: Replication | undefined;
  let leaderTimeline: number | undefined;
  if (leaderName && leaderHealthy) {
    try {
      repl = await deps.postgres.pgReplication(memberSql(inv, leaderName));
      leaderTimeline = (await deps.postgres.pgTimeline(memberSql(inv, leaderName))).timeline ?? undefined;
    } catch (err) {
      throw refuse(
        `the leader ${leaderName} does not answer SQL (${(err as Error).message}); check it (pgha status) before moving the leader`,
      );
    }
  }
  let maxLag = inv.patroni.maximumLagOnFailover;
  try {
    const c = await deps.patroni.patroniGetConfig({ target: restApi(inv, got.from), timeoutMs: 2000 });
    const v = c.body?.maximum_lag_on_failover;
    if (typeof v === 'number') maxLag = v;
  } catch {
    // the inventory's value
  }
  const views = clusterMembers(cl, undefined);
  const replicaLag = (name: string): number | null => {
    const row = repl?.find((r) => r.applicationName === name);
    const own = views.find((v) => v.name === name)?.lagBytes ?? null;
    const exact = row?.replayLagBytes ?? null;
    if (exact === null) return own;
    return own === null ? exact : Math.max(exact, own);
  };
  const members: HandoffPlan['members'] = views.map((v) => ({
    name: v.name,
    role: v.role,
    state: v.state,
    timeline: v.timeline,
    lagBytes: v.name === leaderName ? 0 : replicaLag(v.name),
    noFailover: v.noFailover,
  }));
  // Each replica's own timeline (the WAL it receives): Patroni's /cluster shows the one of its
  // last loop, up to loop_wait old right after a switchover.
  await Promise.all(
    members.map(async (m) => {
      if (m.name === leaderName || !names.includes(m.name)) return;
      try {
        const t = await deps.postgres.pgTimeline(memberSql(inv, m.name));
        if (t.timeline !== null) m.timeline = t.timeline;
      } catch {
        // Patroni's value stays
      }
    }),
  );
  for (const n of names) {
    if (!members.some((m) => m.name === n))
      members.push({
        name: n,
        role: 'absent',
        state: 'not in /cluster',
        lagBytes: null,
        noFailover: false,
      });
  }
  return { names, leaderName, leaderHealthy, repl, leaderTimeline, maxLag, members };
}

/** A switchover needs a healthy leader; a failover refuses one unless forced. */
function checkLeader(
  inv: Inventory,
  action: HandoffAction,
  { leaderName, leaderHealthy }: ClusterView,
  args: { candidate?: string; force?: boolean },
): void {
  if (action === 'switchover') {
    if (!leaderName || !leaderHealthy) {
      throw refuse(
        leaderName
          ? `the leader ${leaderName} is not healthy (its /primary does not answer 200): a switchover needs a running leader; ` +
              `if it is gone, use pgha failover --to <replica>`
          : `cluster ${inv.cluster} has no leader: a switchover needs one; use pgha failover --to <replica>`,
      );
    }
  } else if (leaderName && leaderHealthy && !args.force) {
    throw refuse(
      `the leader ${leaderName} is healthy (its /primary answers 200): a failover would cut it off; ` +
        `use pgha switchover --to ${args.candidate ?? '<replica>'}, or failover --force if you really mean it`,
    );
  }
}

/** Why `name` cannot take over, or undefined when it can. */
function unfit(view: ClusterView, name: string): string | undefined {
  const { members, leaderName, leaderHealthy, repl, leaderTimeline, maxLag } = view;
  const m = members.find((x) => x.name === name)!;
  if (name === leaderName) return `${name} is the leader already`;
  if (m.role === 'absent') return `${name} is not in the cluster (${m.state})`;
  if (m.noFailover) return `${name} is tagged nofailover`;
  const row = repl?.find((r) => r.applicationName === name);
  if (leaderHealthy) {
    if (!row || row.state !== 'streaming')
      return `${name} is not streaming from the leader ${leaderName} (${row ? `state ${row.state}` : `no walsender for it; Patroni says ${m.state}`})`;
    if (leaderTimeline !== undefined && m.timeline !== undefined && m.timeline !== leaderTimeline)
      return `${name} is on timeline ${m.timeline}, the leader on ${leaderTimeline}`;
    if (m.lagBytes === null) return `${name}'s lag is unknown`;
    if (m.lagBytes > maxLag) return `${name} lags ${fmtBytes(m.lagBytes)}`;
  } else if (m.state !== 'running' && m.state !== 'streaming') {
    return `${name} is ${m.state}, not running`;
  }
  return undefined;
}

/** The candidate asked for, checked; or the fit replica with the least lag. Refuses with the alternatives. */
function chooseCandidate(view: ClusterView, action: HandoffAction, requested: string | undefined): string {
  const { names, members, leaderName, leaderHealthy, maxLag } = view;
  const lagOf = (n: string) => members.find((m) => m.name === n)?.lagBytes;
  const best = names
    .filter((n) => unfit(view, n) === undefined)
    .sort((a, b) => (lagOf(a) ?? Number.MAX_SAFE_INTEGER) - (lagOf(b) ?? Number.MAX_SAFE_INTEGER));
  const choose = (ns: string[]) => `choose ${ns.map((n) => `${n} (lag ${fmtBytes(lagOf(n))})`).join(' or ')}`;

  if (requested === undefined) {
    if (action === 'failover') throw refuse('a failover needs a candidate: --to <replica>');
    if (best[0]) return best[0];
    const why = names
      .filter((n) => n !== leaderName)
      .map((n) => unfit(view, n))
      .join('; ');
    throw refuse(`no replica can take over: ${why}; fix that first (pgha status)`);
  }
  const why = unfit(view, requested);
  if (why === undefined) return requested;
  const m = members.find((x) => x.name === requested)!;
  const o = best.filter((n) => n !== requested);
  const others = o.length
    ? choose(o)
    : best.length
      ? choose(best)
      : 'no other member qualifies either: check pgha status';
  if (requested === leaderName)
    throw refuse(`candidate ${requested} is the leader already: nothing to switch over; ${others}`);
  if (leaderHealthy && m.lagBytes !== null && m.lagBytes > maxLag && !m.noFailover)
    throw refuse(
      `candidate ${requested} lags ${fmtBytes(m.lagBytes)} behind the leader (limit ${fmtBytes(maxLag)} from ` +
        `maximum_lag_on_failover); wait, or ${others}`,
    );
  if (m.noFailover)
    throw refuse(
      `candidate ${requested} is tagged nofailover (patroni.yml tags): Patroni never promotes it; ` +
        `remove the tag (and reload Patroni), or ${others}`,
    );
  throw refuse(`candidate ${requested} cannot take over: ${why}; ${others}`);
}
