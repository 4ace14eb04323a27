/** findLeader / waitPrimary: who leads, as the members themselves say; a bounded wait for a writable primary. */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, sqlConn } from '../../runbooks/topology';
import { pollUntil } from '../poll';
import { patroniOf, roleOf } from './common';
import type { GateDeps } from './common';

/** The current leader as the members themselves say (GET /patroni role), or undefined. */
export async function findLeader(deps: GateDeps, args: { inv: Inventory }): Promise<string | undefined> {
  for (const m of memberNames(args.inv)) {
    if (roleOf(await patroniOf(deps, args.inv, m)) === 'primary') return m;
  }
  return undefined;
}

/** Waits until `hostname` is the running primary and its PostgreSQL accepts writes. */
export async function waitPrimary(
  deps: GateDeps,
  args: { inv: Inventory; hostname: string; timeoutMs: number },
) {
  const { inv, hostname } = args;
  const s = await pollUntil(
    { what: `${hostname} running as primary`, timeoutMs: args.timeoutMs, intervalMs: 1000 },
    async () => {
      const st = await patroniOf(deps, inv, hostname);
      return {
        done: roleOf(st) === 'primary' && st?.state === 'running',
        value: st,
        describe: st ? `role ${st.role}, state ${st.state}` : 'REST API not answering',
      };
    },
  );
  const id = await deps.postgres.pgWaitRecovery({
    conn: sqlConn(inv, hostname),
    inRecovery: false,
    waitTimeoutMs: 60_000,
  });
  return { leader: hostname, timeline: s?.timeline ?? id.timeline, systemIdentifier: id.systemIdentifier };
}
