/**
 * guardianRoute: after Patroni moved the leader key by itself, every HAProxy is routed exactly as
 * the switchover hand-off does it (routing.ts `route`: the others DOWN, the old leader first, then
 * the new leader UP in the write backend and DOWN in the read one) — but only once the new leader
 * takes writes: its own /primary answers 200 AND pg_is_in_recovery() is false (Patroni's /primary
 * is 200 ~100–200 ms before PostgreSQL finishes promoting). It never promotes anything itself.
 *
 * Idempotent: a retry waits for the same condition and routes again (each command converges).
 */
import { Failures } from '../../runbooks/failures';
import { restApi } from '../../runbooks/topology';
import { openRecoveryProbe } from '../postgres';
import { heartbeating } from '../poll';
import { memberSql, primary200 } from '../switchover/cluster';
import { route, sessionsFor } from '../switchover/routing';
import type { GuardianDeps, RouteArgs, RouteResult } from './types';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class GuardianRouteTimeout extends Error {
  override readonly name = Failures.GuardianRouteTimeout;
}

export async function guardianRoute(deps: GuardianDeps, args: RouteArgs): Promise<RouteResult> {
  const { inv, leader } = args;
  const bound = args.timeoutMs ?? inv.patroni.ttl * 1000 + 30_000;
  let phase = `waiting for ${leader} to take writes (/primary 200, out of recovery)`;
  return heartbeating(
    () => phase,
    async () => {
      const probe = (deps.recoveryProbe ?? openRecoveryProbe)(memberSql(inv, leader));
      const t0 = Date.now();
      let primaryOk = false;
      let writableAt: number | undefined;
      try {
        while (writableAt === undefined) {
          if (Date.now() - t0 > bound)
            throw new GuardianRouteTimeout(
              `${leader} holds the leader key but did not take writes within ${bound} ms ` +
                `(/primary ${primaryOk ? '200' : 'not 200'}); HAProxy left to its checks — see pgha status`,
            );
          const [rec, p]: [boolean | null, boolean] = await Promise.all([
            probe.inRecovery(),
            primaryOk ? Promise.resolve(true) : primary200(deps, inv, leader, 500),
          ]);
          primaryOk = p;
          if (primaryOk && rec === false) writableAt = Date.now();
          else await sleep(10);
        }
      } finally {
        probe.close();
      }
      phase = `routing every HAProxy to ${leader}`;
      const sessions = await sessionsFor(deps, inv);
      let routedOn: string[];
      try {
        routedOn = await route(deps, inv, sessions, leader, args.old ?? undefined);
      } finally {
        sessions.close();
      }
      const routedAt = Date.now();
      phase = `routed to ${leader}; reading its timeline`;
      let timeline: number | undefined;
      let switchLsn: number | undefined;
      // Patroni writes the new /history entry in a loop after the promotion (seen on the lab: the
      // first read still ended at the previous switch), so read until it names the timeline the
      // new leader itself reports (GET /patroni), for at most 20 s.
      const until = Date.now() + 20_000;
      while (Date.now() < until) {
        try {
          const target = restApi(inv, leader);
          const [h, me] = await Promise.all([
            deps.patroni.patroniGetHistory({ target, timeoutMs: 2000 }),
            deps.patroni.patroniGetPatroni({ target, timeoutMs: 2000 }),
          ]);
          const last = h.body?.at(-1);
          const own = me.body?.timeline;
          if (last && own !== undefined && last[0] + 1 >= own) {
            timeline = last[0] + 1;
            switchLsn = last[1];
            break;
          }
          if (own !== undefined) timeline = own;
        } catch {
          // asked again below; the timeline may stay unknown and the record says so
        }
        await sleep(500);
      }
      return { leader, writableAt, routedAt, routedOn, timeline, switchLsn };
    },
  );
}
