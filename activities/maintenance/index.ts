/**
 * Maintenance on a running cluster — rolling restart, configuration changes, re-initialising a
 * replica — as the seed's operator does it with patronictl, one member at a time. Each activity is
 * a top-level function `(deps, args)` in its own module; this factory only binds the deps:
 *
 * - precheck.ts    maintenancePrecheck: is the cluster healthy enough to start; the plan it saw
 * - restart.ts     restartMember: POST /restart once (intent in the heartbeat details), wait until back
 * - config.ts      configApply (PATCH only what differs), configPreview (its dry run), configWaitApplied
 * - reinit.ts      reinitMember: POST /reinitialize once, wait until re-cloned and streaming
 * - markers.ts     writeMarker / waitRow
 * - wait-back.ts   the bounded, heartbeating wait until a member is back
 *
 * A refusal is a non-retryable ApplicationFailure of type Failures.MaintenanceRefused that says what
 * was found and what to do; a failed operation is Failures.MaintenanceFailed.
 */
import { configApply, configPreview, configWaitApplied } from './config';
import type { ConfigApplyArgs, ConfigWaitArgs } from './config';
import { waitRow, writeMarker } from './markers';
import { maintenancePrecheck } from './precheck';
import type { PrecheckArgs } from './precheck';
import { reinitMember } from './reinit';
import type { ReinitArgs } from './reinit';
import { restartMember } from './restart';
import type { RestartArgs } from './restart';
import type { MaintenanceDeps } from './types';

export * from './types';
export { pgTime } from './common';
export { reinitIntentKey } from './reinit';
export { restartIntentKey } from './restart';
export type { ConfigApplyArgs, ConfigWaitArgs, PrecheckArgs, ReinitArgs, RestartArgs };

export function createMaintenanceActivities(deps: MaintenanceDeps) {
  return {
    maintenancePrecheck: (args: PrecheckArgs) => maintenancePrecheck(deps, args),
    restartMember: (args: RestartArgs) => restartMember(deps, args),
    configApply: (args: ConfigApplyArgs) => configApply(deps, args),
    configPreview: (args: ConfigApplyArgs) => configPreview(deps, args),
    configWaitApplied: (args: ConfigWaitArgs) => configWaitApplied(deps, args),
    reinitMember: (args: ReinitArgs) => reinitMember(deps, args),
    writeMarker: (args: Parameters<typeof writeMarker>[1]) => writeMarker(deps, args),
    waitRow: (args: Parameters<typeof waitRow>[1]) => waitRow(deps, args),
  };
}

export type MaintenanceActivities = ReturnType<typeof createMaintenanceActivities>;
