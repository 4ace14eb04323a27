/**
 * The Patroni upgrade without stopping PostgreSQL (runbooks/README.md, "Patroni upgrade"). Each
 * activity is a top-level function `(deps, args)` in its own module; this factory only binds deps:
 *
 * - precheck.ts  patroniUpgradePrecheck: healthy, no downgrade, wheels present; the plan
 * - pause.ts     patroniSetPause: maintenance mode on/off, until every member agrees
 * - leader-loss.ts patroniLeaderLoss: after a failed switch, was the leader lost? then resume and
 *                wait (bounded) for Patroni's failover
 * - switch.ts    patroniStageVersion (venv beside the old), patroniSwitchMember (link, restart
 *                the Patroni service once, wait for the new version; also the roll-back)
 * - node.ts      the on-node pieces (layout, unit KillMode, link, validate-config)
 */
import { patroniLeaderLoss } from './leader-loss';
import type { LeaderLossArgs } from './leader-loss';
import { patroniSetPause } from './pause';
import type { SetPauseArgs } from './pause';
import { patroniUpgradePrecheck } from './precheck';
import type { UpgradePrecheckArgs } from './precheck';
import { patroniStageVersion, patroniSwitchMember } from './switch';
import type { StageArgs, SwitchArgs } from './switch';
import type { PatroniUpgradeDeps } from './types';

export * from './types';
export { planSteps } from './precheck';
export { switchIntentKey } from './switch';
export type { SetPauseArgs, StageArgs, SwitchArgs, UpgradePrecheckArgs };
export type { SetPauseResult } from './pause';
export type { LeaderLossArgs, LeaderLossResult } from './leader-loss';

export function createPatroniUpgradeActivities(deps: PatroniUpgradeDeps) {
  return {
    patroniUpgradePrecheck: (args: UpgradePrecheckArgs) => patroniUpgradePrecheck(deps, args),
    patroniSetPause: (args: SetPauseArgs) => patroniSetPause(deps, args),
    patroniLeaderLoss: (args: LeaderLossArgs) => patroniLeaderLoss(deps, args),
    patroniStageVersion: (args: StageArgs) => patroniStageVersion(deps, args),
    patroniSwitchMember: (args: SwitchArgs) => patroniSwitchMember(deps, args),
  };
}

export type PatroniUpgradeActivities = ReturnType<typeof createPatroniUpgradeActivities>;
