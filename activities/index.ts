/**
 * createActivities(deps): every activity the pgha worker registers. Each module is a factory over the
 * clients it needs (injected here, faked in tests); add one spread per module.
 * Workflows type their proxies with `proxyActivities<Activities>` and import this file only as a type.
 */
import { createSmokeActivities } from './smoke';

export interface ActivityDeps {
  /** The worker's state directory (default: temporal.config.ts stateDir). */
  stateDir: string;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createSmokeActivities({ stateDir: deps.stateDir }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
