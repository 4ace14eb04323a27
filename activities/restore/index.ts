/**
 * Restores: restore drills into a scratch copy on the backup CT (drill.ts) and the restore runbook's
 * steps (restore.ts), over the same dependencies and Barman command line as the backups
 * (activities/backup). The factory only binds.
 */
import type { Inventory } from '../../runbooks/schema';
import {
  drillCheck,
  drillChooseBackup,
  drillRestore,
  drillTeardown,
  drillVerify,
  type DrillBackup,
} from './drill';

import {
  restoreBootstrap,
  restoreFinishBootstrap,
  restoreMoveAside,
  restorePlan,
  restoreRemoveOld,
  restoreResetWalStreaming,
  restoreRollbackMember,
  restoreStage,
  restoreStopMember,
  restoreVerify,
  type RestoreDeps,
} from './restore';

export * from './drill';
export * from './restore';

const bind =
  <A, R>(deps: RestoreDeps, fn: (deps: RestoreDeps, args: A) => Promise<R>) =>
  (args: A) =>
    fn(deps, args);

export function createRestoreActivities(deps: RestoreDeps) {
  return {
    /** Backup, window, target checks, who restores, what is lost: before anything changes. */
    restorePlan: bind(deps, restorePlan),
    restoreStopMember: bind(deps, restoreStopMember),
    restoreMoveAside: bind(deps, restoreMoveAside),
    restoreStage: bind(deps, restoreStage),
    restoreBootstrap: bind(deps, restoreBootstrap),
    restoreFinishBootstrap: bind(deps, restoreFinishBootstrap),
    restoreVerify: bind(deps, restoreVerify),
    restoreRemoveOld: bind(deps, restoreRemoveOld),
    restoreRollbackMember: bind(deps, restoreRollbackMember),
    restoreResetWalStreaming: bind(deps, restoreResetWalStreaming),
    /** The backup a drill restores (latest, an id or a name), refused unless DONE and restorable. */
    drillChooseBackup: (args: { inv: Inventory; backup: string }) => drillChooseBackup(deps, args),
    /** barman verify-backup: the backup's files against its manifest. */
    drillVerify: (args: { inv: Inventory; backupId: string }) => drillVerify(deps, args),
    /** Copy into the scratch directory, start, wait until it accepts queries (RTO). */
    drillRestore: (args: { inv: Inventory; backupId: string; scratchId: string }) => drillRestore(deps, args),
    /** Marker row, pg_amcheck, row counts, restored LSN. */
    drillCheck: (args: { inv: Inventory; backup: DrillBackup; scratchId: string }) => drillCheck(deps, args),
    /** Stop and remove the scratch copy (idempotent). */
    drillTeardown: (args: { inv: Inventory; scratchId: string }) => drillTeardown(deps, args),
  };
}
