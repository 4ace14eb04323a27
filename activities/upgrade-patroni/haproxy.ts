/**
 * HAProxy while one member's Patroni restarts. HAProxy checks each server through that member's
 * Patroni REST API (/primary on the write port, /replica on the read port), with
 * `on-marked-down shutdown-sessions`: a Patroni restart (seconds without a REST API) would mark a
 * healthy PostgreSQL down and cut every session on it — a write gap of several seconds measured on
 * the lab — though PostgreSQL never stops. So, only for the servers of that member that are UP now,
 * the health check is held (`disable health`: the server stays UP, unchecked) and given back
 * (`enable health`) once the member reports the new version in its role. Servers that are DOWN
 * (the leader on the read port, a replica on the write port) keep their checks and stay DOWN.
 */
import type { Inventory } from '../../runbooks/schema';
import { createHaproxyActivities, runnerFromCtExec } from '../haproxy';
import { HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND } from '../render';
import { haproxyNodes } from '../switchover/routing';
import type { PatroniUpgradeDeps } from './types';

const BACKENDS = [HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND];

async function runtime(deps: PatroniUpgradeDeps, inv: Inventory) {
  const runner = runnerFromCtExec(await deps.shellFor(inv.proxmox));
  return { runner, ha: createHaproxyActivities({ runner }) };
}

/** Holds the checks of `member`'s UP servers on every HAProxy; returns `node: backend/server` held. */
export async function holdChecks(
  deps: PatroniUpgradeDeps,
  inv: Inventory,
  member: string,
): Promise<string[]> {
  const { runner, ha } = await runtime(deps, inv);
  const held: string[] = [];
  for (const node of haproxyNodes(inv)) {
    const rows = await ha.haproxyShowStat({ node });
    for (const row of rows) {
      if (row.server !== member || !BACKENDS.includes(row.backend) || row.state !== 'UP') continue;
      const answer = (
        await runner(node, `disable health ${row.backend}/${member}`, { timeoutMs: 5000 })
      ).trim();
      if (answer !== '')
        throw new Error(`haproxy ${node.name}: disable health ${row.backend}/${member}: ${answer}`);
      held.push(`${node.name}: ${row.backend}/${member}`);
    }
  }
  return held;
}

/** Gives back the checks of every server of `member` on every HAProxy (idempotent). */
export async function releaseChecks(deps: PatroniUpgradeDeps, inv: Inventory, member: string): Promise<void> {
  const { runner } = await runtime(deps, inv);
  for (const node of haproxyNodes(inv)) {
    for (const backend of BACKENDS) {
      const answer = (await runner(node, `enable health ${backend}/${member}`, { timeoutMs: 5000 })).trim();
      if (answer !== '')
        throw new Error(`haproxy ${node.name}: enable health ${backend}/${member}: ${answer}`);
    }
  }
}
