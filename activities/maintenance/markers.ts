/** writeMarker / waitRow: a row written on the leader before, found on the member after. */
import type { Inventory } from '../../runbooks/schema';
import { sqlConn } from '../../runbooks/topology';
import { PollTimeoutError, pollUntil } from '../poll';
import { fail } from './common';
import type { MaintenanceDeps } from './types';

/** A row written on the leader (pgha_probe), to be found on a member afterwards. */
export async function writeMarker(
  deps: MaintenanceDeps,
  args: { inv: Inventory; leader: string; note: string },
): Promise<{ id: string }> {
  const r = await deps.postgres.pgWriteProbe({ conn: sqlConn(args.inv, args.leader), note: args.note });
  return { id: r.id };
}

/** Bounded wait until row `id` of pgha_probe is readable on `member`. */
export async function waitRow(
  deps: MaintenanceDeps,
  args: { inv: Inventory; member: string; id: string; timeoutMs?: number },
) {
  try {
    return await pollUntil(
      { what: `row ${args.id} on ${args.member}`, timeoutMs: args.timeoutMs ?? 60_000, intervalMs: 500 },
      async () => {
        try {
          const r = await deps.postgres.pgReadProbe({ conn: sqlConn(args.inv, args.member), id: args.id });
          return { done: r.found, value: r, describe: r.found ? 'found' : 'not there (yet)' };
        } catch (err) {
          return { done: false, value: null, describe: (err as Error).message };
        }
      },
    );
  } catch (err) {
    if (err instanceof PollTimeoutError) {
      fail(`row ${args.id}, written on the leader before, is missing on ${args.member}: ${err.message}`);
    }
    throw err;
  }
}
