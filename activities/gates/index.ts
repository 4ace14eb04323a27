/**
 * The runbooks' gates: bounded waits and checks against the live cluster, asked the way the seed's
 * operator asks them (Patroni's REST API, SQL, through HAProxy). Each gate either passes with what
 * it saw or fails saying what it found instead — never a guess. Each is a top-level function
 * `(deps, args)`; this factory only binds the deps.
 */
import type { Inventory } from '../../runbooks/schema';
import { keepBeating } from '../poll';
import { statusInputFromInventory } from '../status';
import type { GateDeps } from './common';
import { findLeader, waitPrimary } from './leader';
import { waitReplication } from './replication';
import { checkThroughHaproxy } from './through-haproxy';

export type { GateDeps };

/** The whole cluster's status (what `pgha status` prints), as a runbook's result. */
async function clusterStatus(deps: GateDeps, args: { inv: Inventory }) {
  // Every call has its own deadline, but together they may outlast a short heartbeat timeout.
  const status = await deps.statusFor(args.inv);
  return keepBeating(status.collectClusterStatus(statusInputFromInventory(args.inv)), {
    what: 'cluster status',
  });
}

export function createGateActivities(deps: GateDeps) {
  return {
    findLeader: (args: Parameters<typeof findLeader>[1]) => findLeader(deps, args),
    waitPrimary: (args: Parameters<typeof waitPrimary>[1]) => waitPrimary(deps, args),
    waitReplication: (args: Parameters<typeof waitReplication>[1]) => waitReplication(deps, args),
    checkThroughHaproxy: (args: Parameters<typeof checkThroughHaproxy>[1]) => checkThroughHaproxy(deps, args),
    clusterStatus: (args: { inv: Inventory }) => clusterStatus(deps, args),
  };
}

export type GateActivities = ReturnType<typeof createGateActivities>;
