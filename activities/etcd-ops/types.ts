/** The shapes the etcd runbooks' activities share. */
import type { Inventory } from '../../runbooks/schema';
import type { EtcdActivities, EtcdAdmin } from '../etcd';
import type { CtShell } from '../nodes/types';
import type { PatroniActivities } from '../patroni';
import type { ProxmoxHost } from '../proxmox';

export interface EtcdOpsDeps {
  /** Looking: endpoint health, member list. */
  etcd: EtcdActivities;
  /** Acting: move-leader, compaction, defragment, member add/remove, Patroni's keys. */
  admin: EtcdAdmin;
  /** Patroni's REST API (is any Patroni running?). */
  patroni: Pick<PatroniActivities, 'patroniGetPatroni'>;
  /** The Proxmox host of the cluster: `pct exec` into the CTs and commands on the host itself. */
  hostFor(proxmox: Inventory['proxmox']): Promise<CtShell & Pick<ProxmoxHost, 'run'>>;
  /** How long the members left are asked again for a quorum before a refusal (default 30 s). */
  quorumWaitMs?: number;
}

/** One etcd member as a pre-check saw it. */
export interface EtcdMemberState {
  name: string;
  vmid: number;
  endpoint: string;
  /** Member id (hex), when its endpoint answered. */
  id?: string;
  healthy: boolean;
  isLeader: boolean;
  raftIndex?: string;
  dbSizeBytes?: number;
  dbSizeInUseBytes?: number;
  alarms: string[];
  error?: string;
  /** systemd's InvocationID of etcd.service: changes with every (re)start of the service. */
  invocation: string | null;
}

export interface EtcdClusterState {
  members: EtcdMemberState[];
  /** The leader's name, or null when the healthy members agree on none. */
  leader: string | null;
  healthyCount: number;
}

export interface EtcdRestartResult {
  member: string;
  /** restarted by this attempt, or found restarted already (a resumed run). */
  action: 'restarted' | 'already-restarted';
  /** The member leadership was moved to before the restart, when it was the leader. */
  leaderMovedTo?: string;
  invocationBefore: string | null;
  invocationAfter: string | null;
  /** The member's raft index once caught up, and the leader's it was compared with. */
  raftIndex?: string;
  leaderRaftIndex?: string;
  leaderAfter: string;
  tookMs: number;
}
