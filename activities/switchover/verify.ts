/**
 * switchoverVerify: the new leader is the candidate and writable, the timeline went up, the old
 * leader streams from it again, every HAProxy sends writes to the new leader (show stat + a write
 * probe through each) and every server is back under its checks (no MAINT/DRAIN, states as the
 * checks say).
 */
import { findNode, memberNames, sqlConnViaHaproxy } from '../../runbooks/topology';
import type { Inventory } from '../../runbooks/schema';
import { adminForced } from '../haproxy';
import type { HaproxyStatRow } from '../haproxy';
import { clusterMembers } from '../patroni';
import type { PatroniMemberView } from '../patroni';
import { pollUntil } from '../poll';
import { HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND, writeHoldMs } from '../render';
import { getCluster, leaderNow, memberSql, primary200 } from './cluster';
import { failed } from './common';
import { readyFix } from '../status/common';
import { backUnderChecks, haproxyNodes, sessionsFor } from './routing';
import type { HandoffPlan, SwitchoverDeps, VerifyResult } from './types';

/**
 * After the hand-off: the candidate leads, writable, on a newer timeline; the old leader streams
 * from it again (unless it is gone: failover); every HAProxy routes writes to the new leader and
 * every server is back under its health checks.
 */
export async function switchoverVerify(
  deps: SwitchoverDeps,
  args: {
    inv: Inventory;
    plan: HandoffPlan;
    /** Wait this long for the old leader to stream again. Default 120 s; 0: do not wait (failover with it gone). */
    rejoinTimeoutMs?: number;
  },
): Promise<VerifyResult> {
  const { inv, plan } = args;
  const cand = plan.candidate;
  const candIp = findNode(inv, 'postgres', cand).ip;
  const now = await pollUntil(
    { what: `${cand} leading, writable`, timeoutMs: 30_000, intervalMs: 500 },
    async () => {
      const n = await leaderNow(deps, inv);
      return { done: n.leader !== undefined, value: n, describe: n.describe };
    },
  ).catch((err: Error) => {
    throw failed(`after the hand-off nobody leads: ${err.message}`);
  });
  if (now.leader !== cand) {
    throw failed(`the leader is ${now.leader} (timeline ${now.timeline}), not the candidate ${cand}`);
  }
  if (!(now.timeline !== undefined && now.timeline > plan.timeline)) {
    throw failed(`${cand} leads on timeline ${now.timeline}, expected more than ${plan.timeline}`);
  }

  let oldLeader: VerifyResult['oldLeader'];
  const old = plan.leader;
  if (old) {
    const wait = args.rejoinTimeoutMs ?? 120_000;
    const rows = await pollUntil(
      { what: `${old} streaming from ${cand}`, timeoutMs: Math.max(wait, 1), intervalMs: 1000 },
      async () => {
        try {
          const r = await deps.postgres.pgReplication(memberSql(inv, cand));
          const row = r.find((x) => x.applicationName === old);
          return {
            done: row?.state === 'streaming',
            value: row,
            describe: row ? `state ${row.state}` : 'no walsender for it yet',
          };
        } catch (err) {
          return { done: false, value: undefined, describe: (err as Error).message };
        }
      },
    ).catch((err: Error) => {
      throw failed(
        `${cand} leads, but the old leader ${old} does not stream from it: ${err.message}; see pgha status (it may need pgha reinit ${old})`,
      );
    });
    oldLeader = { name: old, state: rows?.state ?? 'streaming', lagBytes: rows?.replayLagBytes ?? null };
  }

  // HAProxy: every node routes writes to the new leader, and is back under its checks. Any server
  // still drained (the hand-off undoes its own drains; a crashed run's may remain) is forced DOWN
  // and then `ready` again now that it is not the primary (its /primary is not 200), so that
  // `ready` never routes writes to one of them, even until its next check; then no server may be
  // left in an admin state.
  for (const n of memberNames(inv)) {
    if (n !== cand && (await primary200(deps, inv, n))) {
      throw failed(`${n} still answers /primary 200 after the hand-off to ${cand}; check pgha status`);
    }
  }
  const sessions = await sessionsFor(deps, inv);
  const down = new Set(sessions.down ?? []);
  try {
    for (const n of memberNames(inv)) if (n !== cand) await backUnderChecks(sessions, n);
    // No server may be left drained (or in maintenance) once the hand-off is over: a drained leader
    // takes no new connection (new writes are held for haproxy.writeHold, then refused).
    for (const x of sessions.sessions) {
      for (const backend of [HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND]) {
        const forced = adminForced(await x.command(`show servers state ${backend}`));
        if (forced.length) {
          const node = haproxyNodes(inv).find((h) => h.name === x.node) ?? { name: x.node };
          const fixes = forced.map((f) => readyFix(node, backend, f.split(' ')[0]!.split('/')[1]!));
          throw failed(
            `haproxy ${x.node}: ${forced.join(', ')} left in an admin state after the hand-off, no switchover in progress. ` +
              `Fix: ${fixes.join('; ')}`,
          );
        }
      }
    }
  } finally {
    sessions.close();
  }
  const haproxy = await deps.haproxyFor(inv);
  const replicasUp = new Set(
    (await deps.postgres.pgReplication(memberSql(inv, cand)))
      .filter((r) => r.state === 'streaming')
      .map((r) => r.applicationName),
  );
  const out: VerifyResult['haproxy'] = [];
  for (const node of haproxyNodes(inv)) {
    const h = { hostname: node.name };
    if (down.has(node.name)) {
      // its CT is stopped: reported, not routed (started again, it admits only a passing /primary)
      out.push({ node: node.name, writeServerUp: [], writeLandedOn: null, down: true });
      continue;
    }
    const rows = await pollUntil(
      {
        what: `haproxy ${h.hostname}: writes to ${cand} only, every server under its checks`,
        timeoutMs: 30_000,
        intervalMs: 500,
      },
      async () => {
        const r = await haproxy.haproxyShowStat({ node });
        const write = r.filter((x) => x.backend === HAPROXY_WRITE_BACKEND);
        const read = r.filter((x) => x.backend === HAPROXY_READ_BACKEND);
        const up = (x: HaproxyStatRow) => x.state === 'UP' && !/\d+\/\d+/.test(x.status);
        const adminForced = r.filter((x) => x.state === 'MAINT' || x.state === 'DRAIN');
        const writeOk = write.every((x) => (x.server === cand ? up(x) : x.state === 'DOWN'));
        const readOk = read.every((x) =>
          x.server === cand ? x.state === 'DOWN' : replicasUp.has(x.server) ? up(x) : true,
        );
        return {
          done: writeOk && readOk && adminForced.length === 0,
          value: r,
          describe: [...write, ...read]
            .map((x) => `${x.backend}/${x.server} ${x.status} (${x.checkStatus || 'no check'})`)
            .join(', '),
        };
      },
    ).catch((err: Error) => {
      throw failed(`${cand} leads, but HAProxy ${h.hostname} does not route as it should: ${err.message}`);
    });
    let landed: string | null = null;
    try {
      const w = await deps.postgres.pgWriteProbe({
        // As long as clients are told to wait (README "What clients must know"): right after the
        // hand-off the probe may queue behind the connections the hold released.
        conn: sqlConnViaHaproxy(inv, h.hostname, { connectTimeoutMs: writeHoldMs(inv) + 2000 }),
        note: `${plan.action} to ${cand} via ${h.hostname}`,
      });
      landed = w.serverAddr;
    } catch (err) {
      throw failed(
        `${cand} leads, but a write through HAProxy ${h.hostname} failed: ${(err as Error).message}`,
      );
    }
    if (landed !== candIp)
      throw failed(`a write through HAProxy ${h.hostname} landed on ${landed}, not on ${cand} (${candIp})`);
    out.push({
      node: h.hostname,
      writeServerUp: rows
        .filter((x) => x.backend === HAPROXY_WRITE_BACKEND && x.state === 'UP')
        .map((x) => x.server),
      writeLandedOn: cand,
    });
  }
  const got = await getCluster(deps, inv);
  let members: PatroniMemberView[] = [];
  if (got) members = clusterMembers(got.cluster);
  return {
    leader: cand,
    timeline: now.timeline,
    oldLeader: oldLeader ?? (old ? { name: old, state: 'unreachable' } : undefined),
    haproxy: out,
    members: members.map((m) => ({
      name: m.name,
      role: m.role,
      state: m.state,
      timeline: m.timeline,
      lagBytes: m.lagBytes,
    })),
  };
}
