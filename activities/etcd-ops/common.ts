/** What the etcd runbooks' activities share: refusals, the member names, one look at the cluster. */
import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../../runbooks/failures';
import type { Inventory, Node } from '../../runbooks/schema';
import { etcdEndpoint, etcdEndpoints } from '../../runbooks/topology';
import { cancellationSignal } from '../poll';
import type { EtcdClusterState, EtcdMemberState, EtcdOpsDeps } from './types';

/** A pre-check said no: nothing was changed (non-retryable EtcdRefused). */
export function refuse(message: string): never {
  throw ApplicationFailure.create({ type: Failures.EtcdRefused, nonRetryable: true, message });
}

/** The operation was attempted and did not end as asked (non-retryable EtcdFailed). */
export function fail(message: string): never {
  throw ApplicationFailure.create({ type: Failures.EtcdFailed, nonRetryable: true, message });
}

/** The inventory's etcd node `name`, or a refusal naming the members there are. */
export function etcdNode(inv: Inventory, name: string): Node {
  const n = inv.nodes.etcd.find((x) => x.hostname === name);
  if (!n) {
    refuse(
      `${name} is not an etcd member of cluster ${inv.cluster} ` +
        `(its etcd members: ${inv.nodes.etcd.map((x) => x.hostname).join(', ')}); name one of those`,
    );
  }
  return n;
}

/** The smallest number of members that is a majority of `n`. */
export const majority = (n: number) => Math.floor(n / 2) + 1;

export const fmtBytes = (n: number | undefined) =>
  n === undefined
    ? '?'
    : n < 1024 * 1024
      ? `${(n / 1024).toFixed(0)} KiB`
      : `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** etcd.service's InvocationID in the CT (null when the CT or systemd does not answer). */
export async function invocationOf(deps: EtcdOpsDeps, inv: Inventory, node: Node): Promise<string | null> {
  try {
    const sh = await deps.hostFor(inv.proxmox);
    const r = await sh.exec(node.vmid, ['systemctl', 'show', '--property=InvocationID', '--value', 'etcd'], {
      timeoutMs: 15_000,
      signal: cancellationSignal(),
    });
    const id = r.stdout.trim();
    return r.code === 0 && /^[0-9a-f]{32}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

/**
 * One look at every member: etcd's own status of each endpoint (health, leader, raft index, db
 * size, alarms) with its inventory name, and — when `withInvocation` — its service's InvocationID.
 */
export async function lookAtEtcd(
  deps: EtcdOpsDeps,
  inv: Inventory,
  opts: { withInvocation?: boolean } = {},
): Promise<EtcdClusterState> {
  const health = await deps.etcd.etcdEndpointHealth({ endpoints: etcdEndpoints(inv) });
  const members: EtcdMemberState[] = await Promise.all(
    inv.nodes.etcd.map(async (n) => {
      const endpoint = etcdEndpoint(inv, n.hostname);
      const h = health.find((x) => x.endpoint === endpoint);
      return {
        name: n.hostname,
        vmid: n.vmid,
        endpoint,
        id: h?.memberId,
        healthy: h?.healthy ?? false,
        isLeader: h?.isLeader ?? false,
        raftIndex: h?.raftIndex,
        dbSizeBytes: h?.dbSizeBytes,
        dbSizeInUseBytes: h?.dbSizeInUseBytes,
        alarms: h?.alarms ?? [],
        error: h?.error,
        invocation: opts.withInvocation ? await invocationOf(deps, inv, n) : null,
      };
    }),
  );
  const healthy = members.filter((m) => m.healthy);
  const leaderIds = new Set(healthy.map((m) => health.find((h) => h.endpoint === m.endpoint)?.leaderId));
  const leaderId = leaderIds.size === 1 ? [...leaderIds][0] : undefined;
  const leader = leaderId ? (members.find((m) => m.id === leaderId)?.name ?? null) : null;
  return { members, leader, healthyCount: healthy.length };
}

export function describeMembers(s: EtcdClusterState): string {
  return s.members
    .map(
      (m) =>
        `${m.name} ${m.healthy ? 'healthy' : `unhealthy (${m.error ?? '?'})`}${m.isLeader ? ' leader' : ''}` +
        (m.raftIndex ? ` index ${m.raftIndex}` : ''),
    )
    .join(', ');
}
