/**
 * The major upgrade's activities (workflows/upgrade-major.ts): the pre-check (precheck.ts), the
 * leader-side check of the new build (check.ts), the clean stop at one checkpoint (stop.ts),
 * pg_upgrade --link exactly once (pg-upgrade.ts), the way back before the point of no return
 * (restore.ts), the old major's Barman server retired (backup.ts), and after it the waits (wait.ts) and
 * the extensions updated (extensions.ts). Each is a top-level `(deps, args)`; this binds.
 */
import { majorBackupRetire } from './backup';
import { majorCheck } from './check';
import type { MajorLeaderArgs } from './check';
import { majorUpdateExtensions } from './extensions';
import { majorInstall } from './install';
import { majorPgUpgrade } from './pg-upgrade';
import { majorPrecheck } from './precheck';
import type { MajorPrecheckArgs } from './precheck';
import { majorRestoreOld, majorStartOld } from './restore';
import { majorStop } from './stop';
import { majorAnalyze, majorWaitMember } from './wait';
import type { MajorWaitArgs } from './wait';
import type { Inventory } from '../../runbooks/schema';
import type { MajorDeps } from './types';

export * from './types';
export type { ExtensionUpdate } from './extensions';
export type { MajorLeaderArgs, MajorPrecheckArgs, MajorWaitArgs };

export function createMajorUpgradeActivities(deps: MajorDeps) {
  return {
    majorPrecheck: (args: MajorPrecheckArgs) => majorPrecheck(deps, args),
    majorInstall: (args: { next: Inventory; member: string }) => majorInstall(deps, args),
    majorCheck: (args: MajorLeaderArgs) => majorCheck(deps, args),
    majorStop: (args: Parameters<typeof majorStop>[1]) => majorStop(deps, args),
    majorPgUpgrade: (args: MajorLeaderArgs) => majorPgUpgrade(deps, args),
    majorRestoreOld: (args: MajorLeaderArgs) => majorRestoreOld(deps, args),
    majorStartOld: (args: { inv: Inventory; member: string }) => majorStartOld(deps, args),
    majorWaitMember: (args: MajorWaitArgs) => majorWaitMember(deps, args),
    majorAnalyze: (args: { inv: Inventory; leader: string }) => majorAnalyze(deps, args),
    majorUpdateExtensions: (args: { inv: Inventory; leader: string }) => majorUpdateExtensions(deps, args),
    majorBackupRetire: (args: { inv: Inventory }) => majorBackupRetire(deps, args),
  };
}
