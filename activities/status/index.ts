/**
 * The whole cluster's status in one serialisable object — the seed's `view_etcd.sh --full` and
 * `check_postgres_patroni.sh --full` as one report: etcd members (health, version, leader, db size),
 * Patroni members (role, state, timeline, lag) with the leader key from etcd, PostgreSQL's own word
 * (pg_is_in_recovery, timeline) when credentials are given, and HAProxy's backends per node.
 * Ends with a verdict: healthy, degraded or down, with every reason spelled out.
 *
 * Everything is asked in parallel, every call with its own deadline; a part that cannot be asked
 * becomes a reason (or `unknown` for HAProxy when no runtime-API transport is wired), never a hang.
 *
 *   collect-etcd.ts / collect-patroni.ts / collect-haproxy.ts   one part of the report each
 *   judge.ts     the verdict            input.ts   StatusInput from an inventory (via topology)
 */
import { collectEtcd, etcdUnreachable } from './collect-etcd';
import { collectHaproxy } from './collect-haproxy';
import { collectPatroni } from './collect-patroni';
import { judge } from './judge';
import type { ClusterStatus, StatusDeps, StatusInput } from './types';

export * from './types';
export { judge } from './judge';
export { statusInputFromInventory } from './input';

/** Collects everything and judges it. Never throws for a sick cluster: sickness is in the verdict. */
export async function collectClusterStatus(deps: StatusDeps, input: StatusInput): Promise<ClusterStatus> {
  const [etcd, patroni, haproxy] = await Promise.all([
    collectEtcd(deps, input).catch((err: unknown) => etcdUnreachable(input, err)),
    collectPatroni(deps, input),
    collectHaproxy(deps, input),
  ]);
  const partial = { cluster: input.cluster, collectedAt: new Date().toISOString(), etcd, patroni, haproxy };
  return { ...partial, verdict: judge(partial) };
}

export function createStatusActivities(deps: StatusDeps) {
  return { collectClusterStatus: (input: StatusInput) => collectClusterStatus(deps, input) };
}

export type StatusActivities = ReturnType<typeof createStatusActivities>;
export { collectHaproxyLog, formatHaproxyLog, haproxyLogArgv } from './haproxy-log';
