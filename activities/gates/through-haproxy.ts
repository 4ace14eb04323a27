/**
 * checkThroughHaproxy: end to end, as a client sees the cluster: through every HAProxy, a write on
 * the read-write port lands on the leader; every connection to the read-only port lands on a
 * replica; and the row written is then read back on every replica.
 */
import type { Inventory, Node } from '../../runbooks/schema';
import { findNode, sqlConn, sqlConnTo } from '../../runbooks/topology';
import { PollTimeoutError, pollUntil } from '../poll';
import type { GateDeps } from './common';

interface Args {
  inv: Inventory;
  leader: string;
  timeoutMs: number;
}
type Write = { haproxy: string; id: string; landedOn: string | null };
type Read = { haproxy: string; landedOn: string | null };

/** A bounded wait for one successful call (each failure is the last observation). */
function firstSuccess<T>(what: string, timeoutMs: number, call: () => Promise<T>) {
  return pollUntil({ what, timeoutMs, intervalMs: 1000 }, async () => {
    try {
      const r = await call();
      return { done: true, value: r as T | null, describe: 'answered' };
    } catch (err) {
      return { done: false, value: null, describe: (err as Error).message };
    }
  });
}

/** A write through `h`'s read-write port, which must land on the leader. */
async function writeThrough(deps: GateDeps, args: Args, h: Node): Promise<Write> {
  const { inv, leader } = args;
  const leaderIp = findNode(inv, 'postgres', leader).ip;
  const w = await firstSuccess(
    `a write through ${h.hostname}:${inv.ports.haproxyWrite}`,
    args.timeoutMs,
    () =>
      deps.postgres.pgWriteProbe({
        conn: sqlConnTo(inv, h.ip, inv.ports.haproxyWrite),
        note: `deploy via ${h.hostname}`,
      }),
  );
  if (w?.serverAddr !== leaderIp) {
    throw new Error(
      `a write through ${h.hostname} landed on ${w?.serverAddr}, not on the leader ${leader} (${leaderIp})`,
    );
  }
  return { haproxy: h.hostname, id: w.id, landedOn: leader };
}

/** Several connections to `h`'s read-only port: round robin must only ever pick replicas. */
async function readsThrough(
  deps: GateDeps,
  args: Args,
  h: Node,
  replicaIps: Map<string, string>,
): Promise<Read[]> {
  const { inv } = args;
  const reads: Read[] = [];
  for (let i = 0; i < replicaIps.size * 2; i++) {
    const id = await firstSuccess(
      `a read through ${h.hostname}:${inv.ports.haproxyRead}`,
      args.timeoutMs,
      () => deps.postgres.pgIdentity(sqlConnTo(inv, h.ip, inv.ports.haproxyRead)),
    );
    const member = id?.serverAddr ? replicaIps.get(id.serverAddr) : undefined;
    if (!member || !id?.inRecovery) {
      throw new Error(
        `a read-only connection through ${h.hostname} reached ${id?.serverAddr} (in recovery: ${id?.inRecovery}), not a replica`,
      );
    }
    reads.push({ haproxy: h.hostname, landedOn: member });
  }
  return reads;
}

/** Every row written through HAProxy is on every replica. */
async function rowsOnReplicas(
  deps: GateDeps,
  args: Args,
  writes: Write[],
  replicas: string[],
): Promise<void> {
  for (const member of replicas) {
    for (const w of writes) {
      try {
        await pollUntil(
          { what: `row ${w.id} on ${member}`, timeoutMs: args.timeoutMs, intervalMs: 500 },
          async () => {
            const r = await deps.postgres.pgReadProbe({ conn: sqlConn(args.inv, member), id: w.id });
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
}

export async function checkThroughHaproxy(deps: GateDeps, args: Args) {
  const { inv, leader } = args;
  const replicaIps = new Map(
    inv.nodes.postgres.filter((n) => n.hostname !== leader).map((n) => [n.ip, n.hostname]),
  );
  const writes: Write[] = [];
  const reads: Read[] = [];
  for (const h of inv.nodes.haproxy) {
    writes.push(await writeThrough(deps, args, h));
    reads.push(...(await readsThrough(deps, args, h, replicaIps)));
  }
  await rowsOnReplicas(deps, args, writes, [...replicaIps.values()]);
  return { writes, reads };
}
