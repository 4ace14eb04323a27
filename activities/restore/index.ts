/**
 * Restores: restore drills into a scratch copy on the backup CT (drill.ts), over the same
 * dependencies and Barman command line as the backups (activities/backup). The factory only binds.
 */
import type { Inventory } from '../../runbooks/schema';
import type { BackupDeps } from '../backup/types';
import {
  drillCheck,
  drillChooseBackup,
  drillRestore,
  drillTeardown,
  drillVerify,
  type DrillBackup,
} from './drill';

export * from './drill';

export function createRestoreActivities(deps: BackupDeps) {
  return {
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
