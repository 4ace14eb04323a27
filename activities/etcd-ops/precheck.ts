/**
 * etcdPrecheck: is etcd healthy enough for a rolling operation (restart, defragmentation)? Every
 * member healthy (a quorum read, no alarm unless allowed), all agreeing on one leader, and etcd's
 * member list naming exactly the inventory's members. Returns what it saw (the plan's input).
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints } from '../../runbooks/topology';
import { describeMembers, lookAtEtcd, refuse } from './common';
import type { EtcdClusterState, EtcdOpsDeps } from './types';

export interface EtcdPrecheckArgs {
  inv: Inventory;
  /** Alarms do not make a member unfit (maintain is how a NOSPACE alarm is cured). */
  allowAlarms?: boolean;
}

export async function etcdPrecheck(deps: EtcdOpsDeps, args: EtcdPrecheckArgs): Promise<EtcdClusterState> {
  const { inv } = args;
  const state = await lookAtEtcd(deps, inv, { withInvocation: true });
  const unfit = state.members.filter(
    (m) => !m.healthy && !(args.allowAlarms && m.alarms.length > 0 && m.id !== undefined),
  );
  if (unfit.length > 0) {
    refuse(
      `etcd of cluster ${inv.cluster} is not healthy: ${unfit.map((m) => `${m.name}: ${m.error ?? 'unhealthy'}`).join('; ')}. ` +
        `Nothing was done. A rolling operation needs every member healthy; see pgha status, and replace a ` +
        `member that is gone for good with pgha etcd replace`,
    );
  }
  if (!state.leader)
    refuse(`etcd members do not agree on one leader (${describeMembers(state)}); nothing was done`);
  const list = await deps.etcd.etcdMembers({ endpoints: etcdEndpoints(inv) });
  const names = list.map((m) => m.name).sort();
  const want = inv.nodes.etcd.map((n) => n.hostname).sort();
  if (names.join(',') !== want.join(',')) {
    refuse(
      `etcd's member list (${names.join(', ')}) differs from the inventory's etcd nodes (${want.join(', ')}); ` +
        `nothing was done. Bring the inventory in line (or finish a member replacement) first`,
    );
  }
  for (const m of state.members) {
    if (m.invocation === null) {
      refuse(
        `cannot read etcd.service's state in CT ${m.vmid} (${m.name}) through pct exec; nothing was done`,
      );
    }
  }
  return state;
}
