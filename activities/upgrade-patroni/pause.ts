/**
 * patroniSetPause: Patroni's maintenance mode on or off (`PATCH /config {"pause": ...}`), then a
 * bounded, heartbeating wait until EVERY member's own GET /patroni agrees — a member learns it in
 * its next HA loop (up to loop_wait), and a Patroni that has not seen the pause would stop
 * PostgreSQL when its service stops. Idempotent: it PATCHes only when /config says otherwise.
 *
 * Resuming also works with a member down (the leader's CT died while paused: the resume is what
 * lets Patroni fail over): /config is read and patched through the leader, else the first member
 * that answers, and only the members that answer must report it (a Patroni that is down reads the
 * pause from the DCS when it starts). Pausing still needs every member.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames, restApi, restApiAuth } from '../../runbooks/topology';
import { clusterOf, patroniOf } from '../maintenance/common';
import { PatroniUnreachableError, clusterLeader } from '../patroni';
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
  const { via, config } = await configVia(deps, inv);
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
      // Resuming: a member that does not answer is not running Patroni, and reads /config when it starts.
      const behind = names.filter((_, i) => (sts[i] || pause) && Boolean(sts[i]?.pause) !== pause);
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

/** GET /config through the leader, else the first member that answers; which one, and the config. */
async function configVia(
  deps: PatroniUpgradeDeps,
  inv: Inventory,
): Promise<{ via: string; config: Record<string, unknown> }> {
  const names = memberNames(inv);
  if (!names.length) fail(`cluster ${inv.cluster} has no PostgreSQL members`);
  let leader: string | undefined;
  try {
    leader = clusterLeader(await clusterOf(deps, inv));
  } catch {
    // No member answers /cluster: each is tried below, and the error names them.
  }
  const errors: string[] = [];
  for (const via of leader ? [leader, ...names.filter((n) => n !== leader)] : names) {
    try {
      const r = await deps.patroni.patroniGetConfig({ target: restApi(inv, via) });
      if (r.status === 200 && r.body) return { via, config: r.body };
      errors.push(`${via}: HTTP ${r.status}`);
    } catch (err) {
      if (!(err instanceof PatroniUnreachableError)) throw err;
      errors.push(err.message);
    }
  }
  fail(`no member answered GET /config: ${errors.join('; ')}`);
}
