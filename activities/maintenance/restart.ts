/**
 * restartMember: POST /restart to one member, then a bounded wait (heartbeating) until it is back.
 * Never restarts twice:
 * - it looks at the member's postmaster_start_time first; if it differs from the one the pre-check
 *   saw, the member was already restarted (by an earlier attempt whose worker died, or by a
 *   switchover's demotion) and it only waits for it to be healthy;
 * - before the POST it records its intent in the heartbeat details, which every later heartbeat —
 *   and every retry's — carries: a retried attempt that finds it watches the restart, never POSTs.
 */
import type { Inventory } from '../../runbooks/schema';
import { restApi, restApiAuth } from '../../runbooks/topology';
import { normaliseRole, PatroniUnreachableError } from '../patroni';
import type { PatroniAnswer } from '../patroni';
import { clearIntent, heartbeat, keepBeating, priorIntent, recordIntent } from '../poll';
import { fail, knownMember, patroniOf, refuse } from './common';
import type { MaintenanceDeps, RestartResult } from './types';
import { waitBack } from './wait-back';

export interface RestartArgs {
  inv: Inventory;
  member: string;
  role: 'leader' | 'replica';
  /** The leader now (whose pg_stat_replication says whether a replica streams again). */
  leader: string;
  /** postmaster_start_time from the pre-check: a different one now means already restarted. */
  postmasterBefore: string | null;
  /** Restart only if Patroni reports pending_restart. */
  onlyIfPending?: boolean;
  maxLagBytes?: number;
  waitTimeoutMs?: number;
}

/** What a restart attempt records before it POSTs: the postmaster it is replacing. */
export interface PostIntent {
  postmasterBefore: string | null;
  at: string;
}

/** The heartbeat-details key of a POST /restart to `member`. */
export const restartIntentKey = (member: string) => `restart:${member}`;

const backWhat = (role: 'leader' | 'replica') =>
  role === 'leader' ? 'the running, writable primary again' : 'streaming again within the lag bound';

/** POST /restart; a timeout is no answer (the restart may be under way: the wait decides). */
async function postRestart(
  deps: MaintenanceDeps,
  args: RestartArgs,
  timeoutMs: number,
): Promise<PatroniAnswer | undefined> {
  const { inv, member } = args;
  const phase = { member, phase: 'POST /restart' };
  try {
    return await keepBeating(
      deps.patroni.patroniRestart({
        target: restApi(inv, member),
        auth: restApiAuth(inv),
        role: args.role === 'replica' ? 'replica' : undefined,
        restartPending: args.onlyIfPending ? true : undefined,
        timeoutMs: Math.min(timeoutMs, 240_000),
      }),
      phase,
    );
  } catch (err) {
    if (err instanceof PatroniUnreachableError && err.reason === 'timeout') return undefined;
    // Refused before anything was sent: nothing to watch for, a retry may POST.
    if (err instanceof PatroniUnreachableError && (err.reason === 'refused' || err.reason === 'dns')) {
      clearIntent(restartIntentKey(member), phase);
    }
    throw err;
  }
}

/**
 * Patroni's answer to the POST: fine (200, "already in progress", or none — a timeout), or
 * 'nothing pending' (it refused because the pending flag cleared under us); anything else fails.
 */
async function refusedAnswer(
  deps: MaintenanceDeps,
  args: RestartArgs,
  answer: PatroniAnswer | undefined,
): Promise<'fine' | 'nothing pending'> {
  const text = answer ? (answer.text ?? JSON.stringify(answer.body)) : '';
  if (!answer || answer.status === 200 || /already in progress/.test(text)) return 'fine';
  if (/restart conditions are not satisfied/.test(text)) {
    // Checked just before: the pending flag or role changed under us.
    const again = await patroniOf(deps, args.inv, args.member);
    if (args.onlyIfPending && again && !again.pending_restart) return 'nothing pending';
  }
  fail(
    `POST /restart on ${args.member} answered ${answer.status}: ${text}; see its Patroni log (journalctl -u patroni)`,
  );
}

/** The report of a restart, with the time it took since `started`. */
function resultOf(args: RestartArgs, started: number) {
  return (action: RestartResult['action'], after: string | null, lag?: number | null, reason?: string) => ({
    member: args.member,
    role: args.role,
    action,
    reason,
    postmasterBefore: args.postmasterBefore,
    postmasterAfter: after,
    lagBytes: lag,
    tookMs: Date.now() - started,
  });
}

export async function restartMember(deps: MaintenanceDeps, args: RestartArgs): Promise<RestartResult> {
  const { inv, member } = args;
  knownMember(inv, member);
  const started = Date.now();
  const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
  const timeoutMs = args.waitTimeoutMs ?? 300_000;
  const wait = (before: string | null, what: string) =>
    waitBack(deps, { ...args, before, maxLagBytes: maxLag, timeoutMs, what });
  const result = resultOf(args, started);

  const posted = priorIntent<PostIntent>(restartIntentKey(member));
  if (posted) {
    // An earlier attempt POSTed (or was about to) and timed out: watch that restart, never POST again.
    heartbeat({ member, phase: 'watching the restart an earlier attempt POSTed', since: posted.at });
    const back = await wait(
      posted.postmasterBefore,
      `${backWhat(args.role)} (restart POSTed at ${posted.at})`,
    );
    // This attempt did not POST: as for any restart found under way, 'already-restarted'.
    return result('already-restarted', back.after, back.lagBytes);
  }
  const st = await patroniOf(deps, inv, member);
  if (!st) throw new Error(`${member}: Patroni REST API does not answer; not restarting blind`);
  const now = st.postmaster_start_time ?? null;

  if (args.postmasterBefore !== null && now !== args.postmasterBefore) {
    // Restarted since the pre-check (an earlier attempt, or a switchover's demotion), or down
    // right now (a restart in progress: no postmaster start time): only wait.
    const back = await wait(args.postmasterBefore, 'back after its restart');
    return result('already-restarted', back.after, back.lagBytes);
  }
  const role = normaliseRole(st.role);
  const expected = args.role === 'leader' ? 'primary' : 'replica';
  if (role !== expected) {
    refuse(
      `${member} runs as ${st.role}, the plan expected ${args.role}: the cluster changed since the pre-check ` +
        `(a failover?); nothing was restarted — look at pgha status and start again`,
    );
  }
  if (args.onlyIfPending && !st.pending_restart) {
    return result('skipped', now, undefined, 'no pending restart');
  }
  recordIntent(
    restartIntentKey(member),
    { postmasterBefore: now, at: new Date().toISOString() } satisfies PostIntent,
    { member, phase: 'POST /restart' },
  );
  const answer = await postRestart(deps, args, timeoutMs);
  if ((await refusedAnswer(deps, args, answer)) === 'nothing pending') {
    return result('skipped', now, undefined, 'no pending restart');
  }
  const back = await wait(now, backWhat(args.role));
  return result('restarted', back.after, back.lagBytes);
}
