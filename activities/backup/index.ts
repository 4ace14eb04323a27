/**
 * Backups: the backup interface (types.ts) and Barman behind it (barman.ts, cli.ts). The factory
 * only binds the dependencies; each operation is a top-level `(deps, args)` function.
 */
import type { Inventory } from '../../runbooks/schema';
import { barman, ensureBarmanSynchronous, waitBarmanReady } from './barman';
import { barmanCheck } from './cli';
import { physicalBackup } from './physical';
import { applyRetention } from './retention';
import { applyLogicalRetention, logicalBackup } from './logical';
import type { BackupDeps } from './types';

export * from './types';
export { ensureBarmanRoles, ensureBarmanSlot, ensureBarmanSynchronous } from './barman';
export { barmanCheck, parseBarmanCheck } from './cli';
export { waitBarmanReady } from './barman';
export { physicalBackup, settleEarlierAttempt, type PhysicalBackupResult } from './physical';
export { applyRetention, type RetentionResult } from './retention';
export { logicalBackup, logicalObsolete, applyLogicalRetention, type LogicalBackupResult } from './logical';
export { listBackups, barmanTasks, type BarmanListedBackup } from './cli';

export function createBackupActivities(deps: BackupDeps) {
  return {
    /** The cluster side of the backup CT: roles, grants and the permanent slot. */
    prepareBackupCluster: (args: { inv: Inventory; leader: string }) => barman.prepareCluster(deps, args),
    /** backup.synchronous: Barman's receiver named in synchronous_standby_names on every member, checked 'sync' on the leader. */
    ensureBackupSynchronous: (args: { inv: Inventory; timeoutMs?: number }) =>
      ensureBarmanSynchronous(deps, args),
    /** One `barman check` of the cluster's server. */
    barmanCheck: (args: { inv: Inventory }) => barmanCheck(deps, args),
    /** Bounded wait (heartbeating) until `barman check` passes: WAL streaming and archiving work. */
    waitBarmanReady: (args: { inv: Inventory; timeoutMs?: number }) => waitBarmanReady(deps, args),
    /** A physical backup named `name` (found again by that name on a retry), verified. */
    physicalBackup: (args: { inv: Inventory; name: string }) => physicalBackup(deps, args),
    /** Barman's retention policy set for the server and what it marks OBSOLETE deleted. */
    applyRetention: (args: { inv: Inventory; policy: string }) => applyRetention(deps, args),
    /** pg_dump -Fc of every database + pg_dumpall --globals-only, in the backup CT against a replica, checksummed. */
    logicalBackup: (args: { inv: Inventory; name: string }) => logicalBackup(deps, args),
    /** The retention policy over the logical dumps. */
    applyLogicalRetention: (args: { inv: Inventory; policy: string }) => applyLogicalRetention(deps, args),
  };
}

export type BackupActivities = ReturnType<typeof createBackupActivities>;
