/**
 * The guardian's activities (workflows/guardian.ts): watch the leader key, route HAProxy to a new
 * leader Patroni chose by itself. The factory only binds deps.
 *
 *   watch.ts   guardianWatch   the etcd watch on the leader key (heartbeating; a retry converges)
 *   route.ts   guardianRoute   new leader writable → every HAProxy routed (switchover/routing.ts)
 */
import { guardianRoute } from './route';
import { guardianWatch } from './watch';
import type { GuardianDeps, RouteArgs, WatchArgs } from './types';

export type * from './types';
export { leaderKey } from './watch';

export function createGuardianActivities(deps: GuardianDeps) {
  return {
    guardianWatch: (args: WatchArgs) => guardianWatch(deps, args),
    guardianRoute: (args: RouteArgs) => guardianRoute(deps, args),
  };
}

export type GuardianActivities = ReturnType<typeof createGuardianActivities>;
