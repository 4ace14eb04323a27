/**
 * waitReplication: every other member streams from the leader (the leader's own replication[],
 * which every Patroni version reports alike) and each replica's replay lag is within `maxLagBytes`.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, sqlConn } from '../../runbooks/topology';
import { pollUntil } from '../poll';
import type { PgReplicationRow } from '../postgres';
import type { GateDeps } from './common';

export async function waitReplication(
  deps: GateDeps,
  args: { inv: Inventory; leader: string; maxLagBytes: number; timeoutMs: number },
) {
  const { inv, leader } = args;
  const replicas = memberNames(inv).filter((h) => h !== leader);
  const conn = sqlConn(inv, leader);
  return pollUntil(
    { what: `${replicas.join(', ')} streaming from ${leader}`, timeoutMs: args.timeoutMs, intervalMs: 1000 },
    async () => {
      let rows: PgReplicationRow[] = [];
      try {
        rows = await deps.postgres.pgReplication(conn);
      } catch (err) {
        return { done: false, value: [], describe: (err as Error).message };
      }
      const byName = new Map(rows.map((r) => [r.applicationName, r]));
      const seen = replicas.map((h) => {
        const r = byName.get(h);
        return { member: h, state: r?.state ?? 'absent', lagBytes: r?.replayLagBytes ?? null };
      });
      const ok = seen.every(
        (r) => r.state === 'streaming' && r.lagBytes !== null && r.lagBytes <= args.maxLagBytes,
      );
      return {
        done: ok,
        value: seen,
        describe: seen.map((r) => `${r.member} ${r.state} lag ${r.lagBytes ?? '?'} B`).join('; '),
      };
    },
  );
}
