/**
 * Rolling upgrades, the activities: the pre-checks both upgrade runbooks share (precheck.ts), the
 * PostgreSQL build switch, restart and rollback of one member (postgresql.ts), and the read-port
 * drain around it (drain.ts). Each is a top-level function `(deps, args)`; this factory only binds.
 */
import { upgradeReadPortIn, upgradeReadPortOut } from './drain';
import type { ReadPortArgs } from './drain';
import { upgradeRelink, upgradeRestartMember, upgradeRollbackMember, upgradeSwitchBuild } from './postgresql';
import type { RelinkArgs, RollbackArgs, SwitchBuildArgs, UpgradeRestartArgs } from './postgresql';
import { upgradeLook, upgradePostgresPrecheck } from './precheck';
import type { UpgradeLookArgs, UpgradePrecheckArgs } from './precheck';
import type { UpgradeDeps } from './types';

export * from './types';
export * from './versions';
export {
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_MAX_XACT_AGE_MS,
  clusterHealthy,
  offlineManifest,
  oldestXactOk,
  pgBuildAvailable,
  versionsOf,
} from './precheck';
export type {
  ReadPortArgs,
  RelinkArgs,
  RollbackArgs,
  SwitchBuildArgs,
  UpgradeLookArgs,
  UpgradePrecheckArgs,
  UpgradeRestartArgs,
};

export function createUpgradeActivities(deps: UpgradeDeps) {
  return {
    upgradePostgresPrecheck: (args: UpgradePrecheckArgs) => upgradePostgresPrecheck(deps, args),
    upgradeLook: (args: UpgradeLookArgs) => upgradeLook(deps, args),
    upgradeReadPortOut: (args: ReadPortArgs) => upgradeReadPortOut(deps, args),
    upgradeReadPortIn: (args: ReadPortArgs & { timeoutMs?: number }) => upgradeReadPortIn(deps, args),
    upgradeSwitchBuild: (args: SwitchBuildArgs) => upgradeSwitchBuild(deps, args),
    upgradeRelink: (args: RelinkArgs) => upgradeRelink(deps, args),
    upgradeRestartMember: (args: UpgradeRestartArgs) => upgradeRestartMember(deps, args),
    upgradeRollbackMember: (args: RollbackArgs) => upgradeRollbackMember(deps, args),
  };
}

export type UpgradeActivities = ReturnType<typeof createUpgradeActivities>;
