/**
 * etcdRestartMember: `systemctl restart etcd` on one member, never below quorum, the leader only
 * after its leadership was moved (etcdctl move-leader) to the most caught-up healthy follower; then
 * a bounded wait until the member is healthy, caught up (its raft index reached the leader's) and
 * the cluster has a leader.
 *
 * Idempotent: the workflow passes the service's InvocationID the pre-check saw (an earlier attempt's
 * intent, carried in the heartbeat details, names the one it saw); a different one now means the
 * restart happened — watch, do not restart again.
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints } from '../../runbooks/topology';
import { cancellationSignal, keepBeating, pollUntil, priorIntent, recordIntent } from '../poll';
import { describeMembers, etcdNode, fail, invocationOf, lookAtEtcd, majority, refuse } from './common';
import type { EtcdClusterState, EtcdOpsDeps, EtcdRestartResult } from './types';

export interface EtcdRestartArgs {
  inv: Inventory;
  member: string;
  /** etcd.service's InvocationID when the pre-check looked. */
  invocationBefore: string | null;
  waitTimeoutMs?: number;
}

/** The heartbeat-details key of a restart of `member`'s etcd. */
export const etcdRestartIntentKey = (member: string) => `etcd-restart:${member}`;

/** Refuses unless the other members alone keep a quorum while `member` is down. */
export function checkQuorumWithout(inv: Inventory, state: EtcdClusterState, member: string): void {
  const total = inv.nodes.etcd.length;
  const others = state.members.filter((m) => m.name !== member && m.healthy);
  if (others.length < majority(total)) {
    refuse(
      `restarting ${member} would leave ${others.length} of ${total} etcd members healthy, below the quorum ` +
        `of ${majority(total)} (${describeMembers(state)}); nothing was done. Bring the unhealthy member(s) back first`,
    );
  }
}

/** Moves leadership away from `member` to the healthy follower with the highest raft index. */
async function moveLeaderAway(deps: EtcdOpsDeps, inv: Inventory, state: EtcdClusterState, member: string) {
  const self = state.members.find((m) => m.name === member)!;
  const target = state.members
    .filter((m) => m.name !== member && m.healthy && m.id)
    .sort((a, b) => (BigInt(b.raftIndex ?? '0') > BigInt(a.raftIndex ?? '0') ? 1 : -1))[0];
  if (!target?.id) refuse(`no healthy etcd member to move the leadership of ${member} to; nothing was done`);
  await keepBeating(deps.admin.moveLeader({ leaderEndpoint: self.endpoint, targetId: target.id }), {
    member,
    phase: `move-leader to ${target.name}`,
  });
  await pollUntil(
    { what: `etcd leadership moved from ${member}`, timeoutMs: 30_000, intervalMs: 200 },
    async () => {
      const s = await lookAtEtcd(deps, inv);
      return { done: s.leader !== null && s.leader !== member, value: s, describe: describeMembers(s) };
    },
  );
  return target.name;
}

export async function etcdRestartMember(
  deps: EtcdOpsDeps,
  args: EtcdRestartArgs,
): Promise<EtcdRestartResult> {
  const { inv, member } = args;
  const node = etcdNode(inv, member);
  const started = Date.now();
  const posted = priorIntent<{ invocationBefore: string | null }>(etcdRestartIntentKey(member));
  const now = await invocationOf(deps, inv, node);
  const before = posted?.invocationBefore ?? args.invocationBefore;
  let action: EtcdRestartResult['action'] = 'restarted';
  let leaderMovedTo: string | undefined;
  // Restarted already: a new InvocationID since the pre-check (or since an earlier attempt recorded
  // its intent). An intent with the old InvocationID still current means that attempt died before
  // systemd started the restart: do it.
  if (now !== null && before !== null && now !== before) {
    action = 'already-restarted';
  } else {
    if (now === null)
      refuse(`cannot read etcd.service's state in CT ${node.vmid} (${member}); nothing was done`);
    let state = await lookAtEtcd(deps, inv);
    checkQuorumWithout(inv, state, member);
    if (state.leader === member) {
      leaderMovedTo = await moveLeaderAway(deps, inv, state, member);
      state = await lookAtEtcd(deps, inv);
      checkQuorumWithout(inv, state, member);
    }
    recordIntent(
      etcdRestartIntentKey(member),
      { invocationBefore: now },
      { member, phase: 'systemctl restart etcd' },
    );
    const sh = await deps.hostFor(inv.proxmox);
    // Type=notify: returns once the member rejoined (it has a quorum to join: the others are healthy).
    const r = await keepBeating(
      sh.exec(node.vmid, ['systemctl', 'restart', 'etcd'], {
        timeoutMs: 200_000,
        signal: cancellationSignal(),
      }),
      { member, phase: 'systemctl restart etcd' },
    );
    if (r.code !== 0)
      fail(
        `systemctl restart etcd in CT ${node.vmid} (${member}) exited ${r.code}: ${r.stderr.trim().slice(-400)}`,
      );
  }
  return waitCaughtUp(deps, inv, member, {
    started,
    action,
    leaderMovedTo,
    invocationBefore: before,
    timeoutMs: args.waitTimeoutMs ?? 180_000,
  });
}

/** The post-check: restarted (a new InvocationID), healthy, caught up with the leader, one leader. */
async function waitCaughtUp(
  deps: EtcdOpsDeps,
  inv: Inventory,
  member: string,
  o: {
    started: number;
    action: EtcdRestartResult['action'];
    leaderMovedTo?: string;
    invocationBefore: string | null;
    timeoutMs: number;
  },
): Promise<EtcdRestartResult> {
  const node = etcdNode(inv, member);
  const done = await pollUntil(
    { what: `${member} healthy and caught up with the etcd leader`, timeoutMs: o.timeoutMs, intervalMs: 250 },
    async () => {
      // The leader's index first, then the member's: the member has caught up when it reached it.
      const s = await lookAtEtcd(deps, inv);
      const leader = s.members.find((m) => m.name === s.leader);
      const again = await deps.etcd.etcdEndpointHealth({
        endpoints: [s.members.find((m) => m.name === member)!.endpoint],
      });
      const me = again[0]!;
      const caughtUp =
        leader?.raftIndex !== undefined &&
        me.raftIndex !== undefined &&
        BigInt(me.raftIndex) >= BigInt(leader.raftIndex);
      return {
        done: s.leader !== null && me.healthy && caughtUp,
        value: { leader: s.leader!, leaderIndex: leader?.raftIndex, index: me.raftIndex },
        describe: `${describeMembers(s)}; ${member} ${me.healthy ? 'healthy' : `unhealthy (${me.error ?? '?'})`} index ${me.raftIndex ?? '?'}`,
      };
    },
  );
  const after = await invocationOf(deps, inv, node);
  if (after === null || after === o.invocationBefore) {
    fail(`${member}'s etcd.service was not restarted (InvocationID ${after ?? 'unreadable'} as before)`);
  }
  // The cluster as a whole: a majority healthy and one leader, with the member in it.
  const endpoints = etcdEndpoints(inv);
  const view = await deps.etcd.etcdCluster({ endpoints });
  if (!view.quorum || !view.leader) fail(`after restarting ${member}, etcd has no quorum or leader`);
  return {
    member,
    action: o.action,
    leaderMovedTo: o.leaderMovedTo,
    invocationBefore: o.invocationBefore,
    invocationAfter: after,
    raftIndex: done.index,
    leaderRaftIndex: done.leaderIndex,
    leaderAfter: done.leader,
    tookMs: Date.now() - o.started,
  };
}
