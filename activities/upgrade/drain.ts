/**
 * The read port (HAProxy's replica backend) around a member's restart: drained on every HAProxy
 * (no new read connection goes to it; open ones may finish within a bound, then HAProxy closes what
 * is left — before the restart, so their clients move to the other replicas), then ready again once
 * its own Patroni /replica answers 200 — a `ready` marks a server UP at once whatever its check
 * would say, so it is only given to a member that is a healthy replica (or the leader, whose
 * failing replica check keeps it out).
 */
import type { Inventory } from '../../runbooks/schema';
import { restApi } from '../../runbooks/topology';
import { fail, knownMember } from '../maintenance/common';
import { HAPROXY_READ_BACKEND } from '../render';
import { PollTimeoutError, keepBeating, pollUntil } from '../poll';
import { haproxyNodes } from '../switchover/routing';
import type { DrainResult, UpgradeDeps } from './types';

/**
 * `set server postgres_replicas/<member> state drain|ready` on every HAProxy, always sent (it is
 * idempotent): the status HAProxy prints cannot tell — a drained server whose check fails shows
 * DOWN, not DRAIN — so reading it first would skip a `ready` that is needed.
 */
async function setAdminState(
  deps: UpgradeDeps,
  inv: Inventory,
  member: string,
  state: 'drain' | 'ready',
): Promise<void> {
  await onEveryHaproxy(deps, inv, member, `set server ${HAPROXY_READ_BACKEND}/${member} state ${state}`);
}

/** One runtime command about `member` on every HAProxy of the cluster; any answer but '' fails. */
async function onEveryHaproxy(deps: UpgradeDeps, inv: Inventory, member: string, cmd: string): Promise<void> {
  knownMember(inv, member); // a name the runtime API would read as commands never gets through
  const runner = await deps.haproxyRunner(inv);
  await Promise.all(
    haproxyNodes(inv).map(async (node) => {
      const answer = (await runner(node, cmd, { timeoutMs: 5000 })).trim();
      if (answer !== '') throw new Error(`haproxy ${node.name}: ${cmd}: ${answer}`);
    }),
  );
}

/** `shutdown sessions server postgres_replicas/<member>` on every HAProxy: its open read sessions closed. */
const shutdownSessions = (deps: UpgradeDeps, inv: Inventory, member: string) =>
  onEveryHaproxy(deps, inv, member, `shutdown sessions server ${HAPROXY_READ_BACKEND}/${member}`);

export interface ReadPortArgs {
  inv: Inventory;
  member: string;
  /** How long open read sessions may take to finish after the drain (default 10 s). */
  sessionsTimeoutMs?: number;
}

/** Drains `member` in the read backend of every HAProxy; waits (bounded) for its read sessions to end. */
export async function upgradeReadPortOut(deps: UpgradeDeps, args: ReadPortArgs): Promise<DrainResult> {
  const { inv, member } = args;
  const hap = await deps.haproxyFor(inv);
  const nodes = haproxyNodes(inv);
  const started = Date.now();
  await keepBeating(setAdminState(deps, inv, member, 'drain'), { member, phase: 'drain the read port' });
  const open = async () => {
    const rows = await Promise.all(nodes.map((node) => hap.haproxyShowStat({ node })));
    return rows
      .flat()
      .filter((r) => r.backend === HAPROXY_READ_BACKEND && r.server === member)
      .reduce((n, r) => n + (r.currentSessions ?? 0), 0);
  };
  let sessionsLeft = 0;
  try {
    sessionsLeft = await pollUntil(
      {
        what: `read sessions on ${member} to finish`,
        timeoutMs: args.sessionsTimeoutMs ?? 10_000,
        intervalMs: 200,
      },
      async () => {
        const n = await open();
        return { done: n === 0, value: n, describe: `${n} open` };
      },
    );
  } catch (err) {
    if (!(err instanceof PollTimeoutError)) throw err;
    // Past the bound: what is left is closed now, by HAProxy, while the other replicas serve and
    // nothing restarts yet — its clients reconnect to them at once; left to the restart, they would
    // be cut by PostgreSQL's fast shutdown in the middle of it (a longer read gap). Reported.
    sessionsLeft = await open();
    if (sessionsLeft > 0)
      await keepBeating(shutdownSessions(deps, inv, member), { member, phase: 'close read sessions' });
  }
  return { member, sessionsLeft, waitedMs: Date.now() - started, haproxies: nodes.map((n) => n.name) };
}

/** Back in the read port: once its own /replica answers 200 (or it leads now), `ready` on every HAProxy. */
export async function upgradeReadPortIn(
  deps: UpgradeDeps,
  args: ReadPortArgs & { timeoutMs?: number },
): Promise<DrainResult> {
  const { inv, member } = args;
  const started = Date.now();
  const status = async (path: 'replica' | 'primary') => {
    try {
      const get = path === 'replica' ? deps.patroni.patroniGetReplica : deps.patroni.patroniGetPrimary;
      return (await get({ target: restApi(inv, member), timeoutMs: 2000 })).status;
    } catch {
      return 0;
    }
  };
  try {
    await pollUntil(
      {
        what: `${member} a healthy replica (GET /replica 200)`,
        timeoutMs: args.timeoutMs ?? 120_000,
        intervalMs: 500,
      },
      async () => {
        const r = await status('replica');
        if (r === 200) return { done: true, value: r, describe: '/replica 200' };
        const p = await status('primary');
        return { done: p === 200, value: r, describe: `/replica ${r}, /primary ${p}` };
      },
    );
  } catch (err) {
    if (err instanceof PollTimeoutError) fail(`${member} stays out of the read port: ${err.message}`);
    throw err;
  }
  const nodes = haproxyNodes(inv);
  await setAdminState(deps, inv, member, 'ready');
  return { member, sessionsLeft: 0, waitedMs: Date.now() - started, haproxies: nodes.map((n) => n.name) };
}
