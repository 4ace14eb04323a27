/**
 * reinitMember: POST /reinitialize to a replica (never the leader), then a bounded wait until it was
 * re-cloned and streams again. Idempotent like restartMember: a re-clone under way, a postmaster
 * changed since the pre-check, or an intent an earlier attempt recorded before its POST (carried in
 * the heartbeat details) means watch, not POST again.
 */
import type { Inventory } from '../../runbooks/schema';
import { Failures } from '../../runbooks/failures';
import { restApi, restApiAuth } from '../../runbooks/topology';
import { ApplicationFailure } from '@temporalio/common';
import { normaliseRole } from '../patroni';
import { heartbeat, keepBeating, priorIntent, recordIntent } from '../poll';
import { knownMember, patroniOf, refuse } from './common';
import type { PostIntent } from './restart';
import type { MaintenanceDeps, RestartResult } from './types';
import { waitBack } from './wait-back';

export interface ReinitArgs {
  inv: Inventory;
  member: string;
  leader: string;
  postmasterBefore: string | null;
  maxLagBytes?: number;
  waitTimeoutMs?: number;
}

/** The heartbeat-details key of a POST /reinitialize to `member`. */
export const reinitIntentKey = (member: string) => `reinit:${member}`;

/** POST /reinitialize, its intent recorded first; an answer other than 200/"in progress" fails. */
async function postReinit(deps: MaintenanceDeps, inv: Inventory, member: string, before: string | null) {
  const phase = { member, phase: 'POST /reinitialize' };
  recordIntent(
    reinitIntentKey(member),
    { postmasterBefore: before, at: new Date().toISOString() } satisfies PostIntent,
    phase,
  );
  const r = await keepBeating(
    deps.patroni.patroniReinitialize({ target: restApi(inv, member), auth: restApiAuth(inv) }),
    phase,
  );
  const text = r.text ?? JSON.stringify(r.body);
  if (r.status !== 200 && !/already in progress/.test(text)) {
    throw ApplicationFailure.create({
      type: /I am the leader|no leader/.test(text) ? Failures.MaintenanceRefused : Failures.MaintenanceFailed,
      nonRetryable: true,
      message: `POST /reinitialize on ${member} answered ${r.status}: ${text}`,
    });
  }
}

export async function reinitMember(deps: MaintenanceDeps, args: ReinitArgs): Promise<RestartResult> {
  const { inv, member } = args;
  knownMember(inv, member);
  const started = Date.now();
  const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
  const timeoutMs = args.waitTimeoutMs ?? 600_000;
  if (member === args.leader) {
    refuse(
      `${member} is the leader: a leader cannot be re-initialised; switch over first (pgha switchover --cluster ... --to <a replica>), then reinit ${member}`,
    );
  }
  const posted = priorIntent<PostIntent>(reinitIntentKey(member));
  const st = await patroniOf(deps, inv, member);
  const now = st?.postmaster_start_time ?? null;
  if (st && normaliseRole(st.role) === 'primary') {
    refuse(`${member} runs as primary now (the cluster changed since the pre-check); nothing was done`);
  }
  const inProgress = st && /creating replica|reinitializ|starting/.test(st.state ?? '');
  // A new postmaster, or none right now (stopped for the re-clone) where the pre-check saw one.
  const restartedSince = st !== null && args.postmasterBefore !== null && now !== args.postmasterBefore;
  let action: RestartResult['action'] = 'restarted';
  if (posted) {
    // This attempt does not POST: as for any re-clone found under way, 'already-restarted'.
    heartbeat({ member, phase: 'watching the re-clone an earlier attempt POSTed', since: posted.at });
    action = 'already-restarted';
  } else if (inProgress || restartedSince) {
    action = 'already-restarted';
  } else {
    await postReinit(deps, inv, member, now);
  }
  const back = await waitBack(deps, {
    inv,
    member,
    role: 'replica',
    leader: args.leader,
    before: args.postmasterBefore ?? posted?.postmasterBefore ?? now,
    maxLagBytes: maxLag,
    timeoutMs,
    what: 're-cloned and streaming within the lag bound',
  });
  return {
    member,
    role: 'replica',
    postmasterBefore: args.postmasterBefore,
    action,
    postmasterAfter: back.after,
    lagBytes: back.lagBytes,
    tookMs: Date.now() - started,
  };
}
