/**
 * The etcd runbooks' activities: rolling restart, maintenance (health, compaction,
 * defragmentation), snapshots to the Proxmox host, and the scoped clean of Patroni's keys. Each is a
 * top-level function `(deps, args)` in its own module; this factory only binds the deps:
 *
 * - precheck.ts   etcdPrecheck: every member healthy, one leader, member list = inventory
 * - restart.ts    etcdRestartMember: quorum kept, leadership moved first, restart, wait caught up
 * - maintain.ts   etcdHealthReport, etcdCompact, etcdDefragMember
 * - snapshot.ts   etcdSnapshotSave
 * - dcs-clean.ts  dcsCleanCheck, dcsCleanDelete
 * - replace.ts    etcdReplacePrecheck, etcdReplaceRemove, etcdReplaceAdd, etcdReplaceJoined
 *
 * A refusal is a non-retryable ApplicationFailure of type Failures.EtcdRefused that says what was
 * found and what to do; a failed operation is Failures.EtcdFailed.
 */
import type { Inventory } from '../../runbooks/schema';
import { dcsCleanCheck, dcsCleanDelete } from './dcs-clean';
import { etcdCompact, etcdDefragMember, etcdHealthReport } from './maintain';
import { etcdPrecheck } from './precheck';
import type { EtcdPrecheckArgs } from './precheck';
import { etcdReplaceAdd, etcdReplaceJoined, etcdReplacePrecheck, etcdReplaceRemove } from './replace';
import type { EtcdReplaceArgs } from './replace';
import { etcdRestartMember } from './restart';
import type { EtcdRestartArgs } from './restart';
import { etcdSnapshotSave } from './snapshot';
import type { EtcdSnapshotArgs } from './snapshot';
import type { EtcdOpsDeps } from './types';

export * from './types';
export type { DcsCleanCheck, DcsCleanResult } from './dcs-clean';
export type { EtcdCompactResult, EtcdDefragResult, EtcdHealthReport, EtcdMemberSize } from './maintain';
export { ETCD_DEFAULT_QUOTA_BYTES } from './maintain';
export type { EtcdPrecheckArgs, EtcdRestartArgs, EtcdSnapshotArgs };
export type { EtcdSnapshotResult } from './snapshot';
export type { EtcdReplaceArgs, EtcdReplacePlan, EtcdReplaceResult } from './replace';
export { ETCD_SNAPSHOT_DIR } from './snapshot';
export { etcdRestartIntentKey } from './restart';

export function createEtcdOpsActivities(deps: EtcdOpsDeps) {
  return {
    etcdPrecheck: (args: EtcdPrecheckArgs) => etcdPrecheck(deps, args),
    etcdRestartMember: (args: EtcdRestartArgs) => etcdRestartMember(deps, args),
    etcdHealthReport: (args: { inv: Inventory }) => etcdHealthReport(deps, args),
    etcdCompact: (args: { inv: Inventory }) => etcdCompact(deps, args),
    etcdDefragMember: (args: { inv: Inventory; member: string; waitTimeoutMs?: number }) =>
      etcdDefragMember(deps, args),
    etcdSnapshotSave: (args: EtcdSnapshotArgs) => etcdSnapshotSave(deps, args),
    dcsCleanCheck: (args: { inv: Inventory }) => dcsCleanCheck(deps, args),
    dcsCleanDelete: (args: { inv: Inventory }) => dcsCleanDelete(deps, args),
    etcdReplacePrecheck: (args: EtcdReplaceArgs) => etcdReplacePrecheck(deps, args),
    etcdReplaceRemove: (args: EtcdReplaceArgs & { oldId: string }) => etcdReplaceRemove(deps, args),
    etcdReplaceAdd: (args: EtcdReplaceArgs & { oldId?: string }) => etcdReplaceAdd(deps, args),
    etcdReplaceJoined: (args: {
      next: Inventory;
      member: string;
      memberId: string;
      waitTimeoutMs?: number;
    }) => etcdReplaceJoined(deps, args),
  };
}

export type EtcdOpsActivities = ReturnType<typeof createEtcdOpsActivities>;
