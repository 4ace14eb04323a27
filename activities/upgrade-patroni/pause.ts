/**
 * patroniSetPause: Patroni's maintenance mode on or off (`PATCH /config {"pause": ...}`), then a
 * bounded, heartbeating wait until EVERY member's own GET /patroni agrees — a member learns it in
 * its next HA loop (up to loop_wait), and a Patroni that has not seen the pause would stop
 * PostgreSQL when its service stops. Idempotent: it PATCHes only when /config says otherwise.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, restApi, restApiAuth } from '../../runbooks/topology';
import { clusterOf, patroniOf } from '../maintenance/common';
import { clusterLeader } from '../patroni';
import { pollUntil } from '../poll';
import { fail } from './common';
import type { PatroniUpgradeDeps } from './types';

export interface SetPauseArgs {
  inv: Inventory;
  pause: boolean;
  /** Default: 3 × loop_wait + 30 s. */
  timeoutMs?: number;
}

export interface SetPauseResult {
  pause: boolean;
  /** Whether this call PATCHed /config (false: it already was so). */
  patched: boolean;
  /** Members that report it, in inventory order. */
  members: string[];
}

export async function patroniSetPause(deps: PatroniUpgradeDeps, args: SetPauseArgs): Promise<SetPauseResult> {
  const { inv, pause } = args;
  const cluster = await clusterOf(deps, inv);
  const via = clusterLeader(cluster) ?? memberNames(inv)[0];
  if (!via) fail(`cluster ${inv.cluster} has no PostgreSQL members`);
  const config = (await deps.patroni.patroniGetConfig({ target: restApi(inv, via) })).body ?? {};
  let patched = false;
  if (Boolean(config.pause) !== pause) {
    const r = await deps.patroni.patroniPatchConfig({
      target: restApi(inv, via),
      auth: restApiAuth(inv),
      patch: { pause },
    });
    if (r.status !== 200)
      fail(
        `PATCH /config {"pause": ${pause}} on ${via} answered ${r.status}: ${r.text ?? JSON.stringify(r.body)}`,
      );
    patched = true;
  }
  const names = memberNames(inv);
  const timeoutMs = args.timeoutMs ?? inv.patroni.loopWait * 3000 + 30_000;
  await pollUntil(
    { what: `every member ${pause ? 'paused' : 'resumed'}`, timeoutMs, intervalMs: 500 },
    async () => {
      const sts = await Promise.all(names.map((m) => patroniOf(deps, inv, m)));
      const behind = names.filter((_, i) => Boolean(sts[i]?.pause) !== pause);
      return {
        done: behind.length === 0,
        value: undefined,
        describe: behind.length
          ? `not yet ${pause ? 'paused' : 'resumed'}: ${behind.join(', ')}`
          : 'all agree',
      };
    },
  );
  return { pause, patched, members: names };
}
