/**
 * The runbooks' gates: bounded waits and checks against the live cluster, asked the way the seed's
 * operator asks them (Patroni's REST API, SQL, through HAProxy). Each gate either passes with what
 * it saw or fails saying what it found instead — never a guess.
 */
import type { Inventory } from '../runbooks/schema';
import { PollTimeoutError, pollUntil } from './poll';
import type { PatroniActivities, PatroniNodeStatus } from './patroni';
import type { PgConn, PostgresActivities } from './postgres';
import { findNode } from './nodes';
import { statusInputFromInventory } from './status';
import type { createStatusActivities } from './status';
type StatusActivities = ReturnType<typeof createStatusActivities>;

export interface GateDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  /** The status collector for an inventory (its HAProxy runtime API goes through that cluster's Proxmox host). */
  statusFor(inv: Inventory): Promise<StatusActivities>;
}

const roleOf = (s: PatroniNodeStatus | null | undefined) => (s?.role === 'master' ? 'primary' : s?.role);

export function createGateActivities(deps: GateDeps) {
  const api = (inv: Inventory, hostname: string) => {
    const n = findNode(inv, 'postgres', hostname);
    return { member: hostname, url: `http://${n.ip}:${inv.ports.patroniRestApi}` };
  };
  const sql = (inv: Inventory, host: string, port = inv.ports.postgresql): PgConn => ({
    host,
    port,
    user: inv.postgresql.superuser,
    passwordRef: inv.secrets.superuserPassword,
  });

  async function patroniOf(inv: Inventory, hostname: string): Promise<PatroniNodeStatus | null> {
    try {
      return (await deps.patroni.patroniGetPatroni({ target: api(inv, hostname) })).body;
    } catch {
      return null; // not answering yet
    }
  }

  /** The current leader as the members themselves say (GET /patroni role), or undefined. */
  async function findLeader(args: { inv: Inventory }): Promise<string | undefined> {
    for (const n of args.inv.nodes.postgres) {
      if (roleOf(await patroniOf(args.inv, n.hostname)) === 'primary') return n.hostname;
    }
    return undefined;
  }

  /** Waits until `hostname` is the running primary and its PostgreSQL accepts writes. */
  async function waitPrimary(args: { inv: Inventory; hostname: string; timeoutMs: number }) {
    const { inv, hostname } = args;
    const s = await pollUntil(
      { what: `${hostname} running as primary`, timeoutMs: args.timeoutMs, intervalMs: 1000 },
      async () => {
        const st = await patroniOf(inv, hostname);
        return {
          done: roleOf(st) === 'primary' && st?.state === 'running',
          value: st,
          describe: st ? `role ${st.role}, state ${st.state}` : 'REST API not answering',
        };
      },
    );
    const id = await deps.postgres.pgWaitRecovery({
      conn: sql(inv, findNode(inv, 'postgres', hostname).ip),
      inRecovery: false,
      waitTimeoutMs: 60_000,
    });
    return { leader: hostname, timeline: s?.timeline ?? id.timeline, systemIdentifier: id.systemIdentifier };
  }

  /**
   * Waits until every other member streams from the leader (the leader's own replication[], which
   * every Patroni version reports alike) and each replica's replay lag is within `maxLagBytes`.
   */
  async function waitReplication(args: {
    inv: Inventory;
    leader: string;
    maxLagBytes: number;
    timeoutMs: number;
  }) {
    const { inv, leader } = args;
    const replicas = inv.nodes.postgres.map((n) => n.hostname).filter((h) => h !== leader);
    const conn = sql(inv, findNode(inv, 'postgres', leader).ip);
    return pollUntil(
      {
        what: `${replicas.join(', ')} streaming from ${leader}`,
        timeoutMs: args.timeoutMs,
        intervalMs: 1000,
      },
      async () => {
        let rows: Awaited<ReturnType<PostgresActivities['pgReplication']>> = [];
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

  /**
   * End to end, as a client sees the cluster: through every HAProxy, a write on the read-write port
   * lands on the leader; every connection to the read-only port lands on a replica; and the row
   * written is then read back on every replica.
   */
  async function checkThroughHaproxy(args: { inv: Inventory; leader: string; timeoutMs: number }) {
    const { inv, leader } = args;
    const leaderIp = findNode(inv, 'postgres', args.leader).ip;
    const replicaIps = new Map(
      inv.nodes.postgres.filter((n) => n.hostname !== leader).map((n) => [n.ip, n.hostname]),
    );
    const writes: { haproxy: string; id: string; landedOn: string | null }[] = [];
    const reads: { haproxy: string; landedOn: string | null }[] = [];
    for (const h of inv.nodes.haproxy) {
      const w = await pollUntil(
        {
          what: `a write through ${h.hostname}:${inv.ports.haproxyWrite}`,
          timeoutMs: args.timeoutMs,
          intervalMs: 1000,
        },
        async () => {
          try {
            const r = await deps.postgres.pgWriteProbe({
              conn: sql(inv, h.ip, inv.ports.haproxyWrite),
              note: `deploy via ${h.hostname}`,
            });
            return { done: true, value: r, describe: `landed on ${r.serverAddr}` };
          } catch (err) {
            return { done: false, value: null, describe: (err as Error).message };
          }
        },
      );
      if (w?.serverAddr !== leaderIp) {
        throw new Error(
          `a write through ${h.hostname} landed on ${w?.serverAddr}, not on the leader ${leader} (${leaderIp})`,
        );
      }
      writes.push({ haproxy: h.hostname, id: w.id, landedOn: leader });
      // Several connections: round robin must only ever pick replicas.
      for (let i = 0; i < replicaIps.size * 2; i++) {
        const id = await pollUntil(
          {
            what: `a read through ${h.hostname}:${inv.ports.haproxyRead}`,
            timeoutMs: args.timeoutMs,
            intervalMs: 1000,
          },
          async () => {
            try {
              const r = await deps.postgres.pgIdentity(sql(inv, h.ip, inv.ports.haproxyRead));
              return { done: true, value: r, describe: `landed on ${r.serverAddr}` };
            } catch (err) {
              return { done: false, value: null, describe: (err as Error).message };
            }
          },
        );
        const member = id?.serverAddr ? replicaIps.get(id.serverAddr) : undefined;
        if (!member || !id?.inRecovery) {
          throw new Error(
            `a read-only connection through ${h.hostname} reached ${id?.serverAddr} (in recovery: ${id?.inRecovery}), not a replica`,
          );
        }
        reads.push({ haproxy: h.hostname, landedOn: member });
      }
    }
    // Every row written through HAProxy is on every replica.
    for (const [ip, member] of replicaIps) {
      for (const w of writes) {
        try {
          await pollUntil(
            { what: `row ${w.id} on ${member}`, timeoutMs: args.timeoutMs, intervalMs: 500 },
            async () => {
              const r = await deps.postgres.pgReadProbe({ conn: sql(inv, ip), id: w.id });
              return { done: r.found, value: r, describe: r.found ? 'found' : 'not replicated yet' };
            },
          );
        } catch (err) {
          if (err instanceof PollTimeoutError)
            throw new Error(`row ${w.id} written through ${w.haproxy} never reached ${member}`);
          throw err;
        }
      }
    }
    return { writes, reads };
  }

  /** The whole cluster's status (what `pgha status` prints), as a runbook's result. */
  async function clusterStatus(args: { inv: Inventory }) {
    return (await deps.statusFor(args.inv)).collectClusterStatus(statusInputFromInventory(args.inv));
  }

  return { findLeader, waitPrimary, waitReplication, checkThroughHaproxy, clusterStatus };
}

export type GateActivities = ReturnType<typeof createGateActivities>;
