/** etcd's part of the status: each member's health, version, db size, and who leads. */
import { msg } from './common';
import type { ClusterStatus, EtcdMemberStatus, StatusDeps, StatusInput } from './types';

export async function collectEtcd(deps: StatusDeps, input: StatusInput): Promise<ClusterStatus['etcd']> {
  const endpoints = input.etcd.members.map((m) => m.url);
  const view = await deps.etcd.etcdCluster({ endpoints });
  const nameOf = (url: string) => input.etcd.members.find((m) => m.url === url)?.name ?? url;
  const members = view.endpoints.map((e): EtcdMemberStatus => {
    const s: EtcdMemberStatus = {
      name: nameOf(e.endpoint),
      endpoint: e.endpoint,
      healthy: e.healthy,
      isLeader: Boolean(e.isLeader),
      version: e.version ?? null,
      dbSizeBytes: e.dbSizeBytes ?? null,
      raftTerm: e.raftTerm ?? null,
    };
    if (e.error) s.error = e.error;
    return s;
  });
  const leaderEndpoint = view.endpoints.find((e) => e.healthy && e.memberId === view.leader?.id)?.endpoint;
  const leader = view.leader
    ? (view.leader.name ?? (leaderEndpoint ? nameOf(leaderEndpoint) : view.leader.id))
    : null;
  return { members, leader, healthy: view.healthyCount, total: endpoints.length, quorum: view.quorum };
}

/** etcd as unreachable (every member unhealthy, no quorum) when asking it failed as a whole. */
export function etcdUnreachable(input: StatusInput, err: unknown): ClusterStatus['etcd'] {
  return {
    members: input.etcd.members.map((m) => ({
      name: m.name,
      endpoint: m.url,
      healthy: false,
      isLeader: false,
      version: null,
      dbSizeBytes: null,
      raftTerm: null,
      error: msg(err),
    })),
    leader: null,
    healthy: 0,
    total: input.etcd.members.length,
    quorum: false,
  };
}
