/**
 * The cluster's containers, provisioned through the Proxmox host's `pct` (activities/proxmox.ts):
 * what the seed's Ansible roles do — packages, users, files, services — as idempotent activities.
 * Each looks first and acts only where the container differs from the inventory, and reports what it
 * changed; run twice, the second run changes nothing and restarts nothing.
 *
 * The steps are top-level functions taking `(deps, args)` (preflight.ts, etcd.ts, postgres.ts,
 * haproxy.ts); this factory only binds the dependencies. Every command is an argv array;
 * activities/command.ts is the only place one becomes shell text.
 */
import type { Inventory, Role } from '../../runbooks/schema';
import { cancellationSignal } from '../poll';
import { nodeCt } from './context';
import { installBackup } from './backup';
import { installEtcd } from './etcd';
import { installHaproxy } from './haproxy';
import { installPostgres, startPatroni } from './postgres';
import { preflightNode } from './preflight';
import { unitState } from './shell';
import { SERVICE } from './types';
import type { NodeDeps } from './types';

export * from './types';
export { preflightNode, installEtcd, installPostgres, startPatroni, installHaproxy, installBackup };

/** When each service of the node last started (systemd's monotonic clock): proof that nothing restarted. */
export async function serviceStartTimes(
  deps: NodeDeps,
  args: { inv: Inventory; role: Role; hostname: string },
) {
  const { inv, role, hostname } = args;
  const { ct } = await nodeCt(deps, inv, role, hostname);
  const s = await unitState(ct, SERVICE[role]);
  return { node: hostname, service: SERVICE[role], active: s.active, startedAt: s.startedAt };
}

/**
 * A step whose activity was cancelled ends as cancelled (the SDK's CancelledFailure), not as the
 * transport's "aborted" error; by then the command it ran is killed in the CT.
 */
function bind<A, R>(deps: NodeDeps, step: (deps: NodeDeps, args: A) => Promise<R>) {
  return async (args: A): Promise<R> => {
    try {
      return await step(deps, args);
    } catch (err) {
      const signal = cancellationSignal();
      if (signal?.aborted) throw signal.reason ?? err;
      throw err;
    }
  };
}

export function createNodeActivities(deps: NodeDeps) {
  return {
    preflightNode: bind(deps, preflightNode),
    installEtcd: bind(deps, installEtcd),
    installPostgres: bind(deps, installPostgres),
    startPatroni: bind(deps, startPatroni),
    installHaproxy: bind(deps, installHaproxy),
    serviceStartTimes: bind(deps, serviceStartTimes),
    installBackup: bind(deps, installBackup),
  };
}

export type NodeActivities = ReturnType<typeof createNodeActivities>;
