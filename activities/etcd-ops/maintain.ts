/**
 * etcd maintenance: the seed's "watch /var/lib/etcd's size", with the means to act on it.
 *
 * - etcdHealthReport  health, DB size per member against the quota, alarms (read only)
 * - etcdCompact       compaction to the current revision (cluster-wide, --physical)
 * - etcdDefragMember  one member's defragmentation, then a bounded wait until it is healthy and
 *                     caught up; its size before and after
 *
 * Defragmenting blocks the member while it rewrites its database: the workflow does one member at
 * a time, the leader last, each only while every other member is healthy.
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints } from '../../runbooks/topology';
import { keepBeating, pollUntil } from '../poll';
import { describeMembers, etcdNode, fail, lookAtEtcd } from './common';
import { checkQuorumWithout } from './restart';
import type { EtcdOpsDeps } from './types';

/** etcd's backend quota when etcd.conf sets none (ETCD_QUOTA_BACKEND_BYTES): 2 GiB in 3.4 and 3.5. */
export const ETCD_DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;
/** A member's DB above this share of the quota is reported as a warning. */
export const QUOTA_WARN_SHARE = 0.8;

export interface EtcdMemberSize {
  member: string;
  healthy: boolean;
  isLeader: boolean;
  dbSizeBytes?: number;
  dbSizeInUseBytes?: number;
  /** dbSize / quota, 0..1. */
  quotaShare?: number;
  alarms: string[];
}

export interface EtcdHealthReport {
  leader: string | null;
  healthy: number;
  total: number;
  quotaBytes: number;
  members: EtcdMemberSize[];
  /** Cluster-wide alarms (etcdctl alarm list): member name (or id) and alarm. */
  alarms: { member: string; alarm: string }[];
  /** What an operator should look at: members over QUOTA_WARN_SHARE of the quota, alarms, unhealthy. */
  warnings: string[];
}

export async function etcdHealthReport(
  deps: EtcdOpsDeps,
  args: { inv: Inventory },
): Promise<EtcdHealthReport> {
  const { inv } = args;
  const s = await lookAtEtcd(deps, inv);
  const quota = ETCD_DEFAULT_QUOTA_BYTES;
  const alarmsRaw = await deps.admin.alarms({ endpoints: etcdEndpoints(inv) }).catch(() => []);
  const alarms = alarmsRaw.map((a) => ({
    member: s.members.find((m) => m.id === a.memberId)?.name ?? a.memberId,
    alarm: a.alarm,
  }));
  const members = s.members.map((m) => ({
    member: m.name,
    healthy: m.healthy,
    isLeader: m.isLeader,
    dbSizeBytes: m.dbSizeBytes,
    dbSizeInUseBytes: m.dbSizeInUseBytes,
    quotaShare: m.dbSizeBytes === undefined ? undefined : m.dbSizeBytes / quota,
    alarms: m.alarms,
  }));
  const warnings = [
    ...members.filter((m) => !m.healthy).map((m) => `${m.member} is unhealthy`),
    ...members
      .filter((m) => (m.quotaShare ?? 0) > QUOTA_WARN_SHARE)
      .map((m) => `${m.member}'s DB uses ${Math.round((m.quotaShare ?? 0) * 100)}% of the ${quota} B quota`),
    ...alarms.map((a) => `alarm ${a.alarm} on ${a.member}`),
  ];
  return {
    leader: s.leader,
    healthy: s.healthyCount,
    total: s.members.length,
    quotaBytes: quota,
    members,
    alarms,
    warnings,
  };
}

export interface EtcdCompactResult {
  revision: string;
  /** false when the store was compacted at this revision already (a retried attempt). */
  compacted: boolean;
}

export async function etcdCompact(deps: EtcdOpsDeps, args: { inv: Inventory }): Promise<EtcdCompactResult> {
  const endpoints = etcdEndpoints(args.inv);
  const revision = await deps.admin.revision({ endpoints });
  try {
    await keepBeating(deps.admin.compact({ endpoints, revision }), { phase: `compaction at ${revision}` });
    return { revision, compacted: true };
  } catch (err) {
    // Compacted at this revision (or later) already: what a retry after a lost answer finds.
    if (/required revision has been compacted/.test((err as Error).message))
      return { revision, compacted: false };
    throw err;
  }
}

export interface EtcdDefragResult {
  member: string;
  wasLeader: boolean;
  sizeBefore?: number;
  sizeAfter?: number;
  inUseBefore?: number;
  tookMs: number;
}

export async function etcdDefragMember(
  deps: EtcdOpsDeps,
  args: { inv: Inventory; member: string; waitTimeoutMs?: number },
): Promise<EtcdDefragResult> {
  const { inv, member } = args;
  etcdNode(inv, member);
  const started = Date.now();
  const before = await lookAtEtcd(deps, inv);
  checkQuorumWithout(inv, before, member);
  const me = before.members.find((m) => m.name === member)!;
  if (!me.healthy) fail(`${member} is unhealthy (${me.error ?? '?'}): not defragmenting it`);
  // Defragmenting again is harmless (a second rewrite of a compact file): no intent needed.
  await keepBeating(deps.admin.defragment({ endpoint: me.endpoint }), { member, phase: 'defragment' });
  const after = await pollUntil(
    {
      what: `${member} healthy after its defragmentation`,
      timeoutMs: args.waitTimeoutMs ?? 120_000,
      intervalMs: 250,
    },
    async () => {
      const s = await lookAtEtcd(deps, inv);
      const m = s.members.find((x) => x.name === member)!;
      return { done: m.healthy && s.leader !== null, value: m, describe: describeMembers(s) };
    },
  );
  return {
    member,
    wasLeader: me.isLeader,
    sizeBefore: me.dbSizeBytes,
    sizeAfter: after.dbSizeBytes,
    inUseBefore: me.dbSizeInUseBytes,
    tookMs: Date.now() - started,
  };
}
