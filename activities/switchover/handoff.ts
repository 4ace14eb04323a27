/**
 * switchoverCutover, the hand-off: the critical path in ONE activity so that Temporal's task
 * latency never adds to the write gap. HAProxy runtime sessions (one `prompt` session per HAProxy
 * node: ~1 ms a command) and SQL connections to both members are opened BEFORE the POST; then a
 * 10 ms loop: when the old leader stops taking writes (its connection dies) it is forced DOWN at
 * once (sessions cut); when the candidate's own /primary answers 200 AND its pg_is_in_recovery()
 * is false, it is forced UP in the write backend (and DOWN in the read backend).
 *
 * Never two POSTs. Before anything else an attempt records its intent in heartbeat details that
 * no later heartbeat drops (poll.ts keepInHeartbeats: intent, then `posted`, then Patroni's answer)
 * and every retried attempt carries them forward. The whole activity heartbeats on a ticker
 * (poll.ts heartbeating), so no wait — connect, request, answer — outlasts the heartbeat timeout.
 * A retried attempt looks before it acts:
 *  - the candidate leads on a newer timeline: it only routes HAProxy (already-done);
 *  - a hand-off is under way (the old leader stopped, the key moved) or an earlier attempt recorded
 *    its intent: it WATCHES with the same 10 ms loop — HAProxy is routed the instant the candidate
 *    is writable — and never POSTs;
 *  - after a bounded watch nothing happened (the old leader still leads, writable, same timeline,
 *    no switchover scheduled): if an earlier attempt is known to have sent the POST, that POST
 *    changed nothing and the run fails saying so; if it only recorded the intent (the POST may not
 *    have gone out), it POSTs and says so in the result.
 */
import { Failures } from '../../runbooks/failures';
import type { Inventory } from '../../runbooks/schema';
import { restApi, restApiAuth } from '../../runbooks/topology';
import { activityContext, cancellationSignal, carriedIntents, heartbeating, keepInHeartbeats } from '../poll';
import type { RuntimeSessions } from '../haproxy';
import { openRecoveryProbe } from '../postgres';
import type { RecoveryProbe } from '../postgres';
import { HAPROXY_WRITE_BACKEND } from '../render';
import { leaderNow, memberSql, primary200 } from './cluster';
import type { LeaderNow } from './cluster';
import { failed, sleep } from './common';
import {
  admitLeader,
  all,
  backUnderChecks,
  cutOldLeader,
  releaseOldLeader,
  route,
  sessionsFor,
} from './routing';
import type { CutoverResult, CutoverTimings, HandoffMemo, HandoffPlan, SwitchoverDeps } from './types';

/** Patroni's answer to the POST, or why there is none yet; filled in while the loop runs. */
interface PostState {
  promise: Promise<void>;
  answer?: { status: number; text: string };
  error?: string;
  /** The error is final (401): nothing will happen. */
  final?: boolean;
  errorAt?: number;
}

/** What the loop works with. */
interface Loop {
  deps: SwitchoverDeps;
  inv: Inventory;
  cand: string;
  old?: string;
  sessions: RuntimeSessions;
  candSql: RecoveryProbe;
  oldSql?: RecoveryProbe;
  intervalMs: number;
  /** The loop ends at t0 + boundMs at the latest. */
  boundMs: number;
  setPhase(p: string): void;
  /** Set once {@link release} ran: the drains are undone. */
  released?: boolean;
}

interface Followed {
  timings: CutoverTimings;
  routed: boolean;
  oldCut: boolean;
  primaryOk: boolean;
}

/** An answer that ends the hand-off: refused (4xx) or failed (503 "... failed"); 503 "status unknown" does not. */
const finalAnswer = (a: { status: number; text: string } | undefined) =>
  a !== undefined && a.status >= 400 && !/unknown/i.test(a.text);

/**
 * The 10 ms loop: cut the old leader the instant it stops taking writes, route the candidate the
 * instant it is writable (its /primary 200 and out of recovery). With `post`, it follows that
 * request; without, it watches one an earlier attempt sent, and gives up after `quietMs` when
 * nothing moves (old leader still writable, candidate not primary).
 */
async function follow(c: Loop, t0: number, post?: PostState, quietMs?: number): Promise<Followed> {
  const timings: CutoverTimings = {};
  let oldCut = false;
  let primaryOk = false;
  let oldFails = 0;
  const cutOld = async () => {
    if (oldCut || !c.old) return;
    oldCut = true;
    timings.oldLeaderCutMs = Date.now() - t0;
    await cutOldLeader(c.sessions, c.old);
  };
  c.setPhase(c.old ? `waiting for the old leader ${c.old} to stop` : `waiting for ${c.cand} to take the key`);
  for (;;) {
    const elapsed = Date.now() - t0;
    if (post) {
      if (finalAnswer(post.answer)) break;
      if (post.error && (post.final || (!oldCut && Date.now() - (post.errorAt ?? 0) > 10_000))) break;
    } else if (quietMs !== undefined && elapsed > quietMs && !oldCut && !primaryOk) break;
    if (elapsed > c.boundMs) break;
    const [candRec, candPrimary, oldRec] = await Promise.all([
      c.candSql.inRecovery(),
      primaryOk ? Promise.resolve(true) : primary200(c.deps, c.inv, c.cand, 500),
      c.oldSql && !oldCut ? c.oldSql.inRecovery() : Promise.resolve(null),
    ]);
    // The old leader stopped when it answers "in recovery", or when two probes in a row failed —
    // one failed probe can be a slow machine (the 1 s query timeout under load), and cutting a
    // live leader's sessions on it is what clients would see. Never after Patroni refused (then it
    // did not stop). New connections lose nothing by the wait: the old leader is drained already.
    oldFails = oldRec === null ? oldFails + 1 : 0;
    const oldStopped = oldRec === true || oldFails >= 2;
    if (c.oldSql && !oldCut && oldStopped && !(post && finalAnswer(post.answer))) await cutOld();
    if (candPrimary && !primaryOk) {
      primaryOk = true;
      timings.candidatePrimary200Ms = Date.now() - t0;
    }
    if (oldCut || primaryOk) c.setPhase(`waiting for ${c.cand} to become writable`);
    if (candRec === false && timings.candidateWritableMs === undefined)
      timings.candidateWritableMs = Date.now() - t0;
    if (primaryOk && candRec === false) {
      await cutOld();
      await admitLeader(c.sessions, c.cand, () => (timings.routedMs = Date.now() - t0));
      c.setPhase(`routed to ${c.cand}`);
      return { timings, routed: true, oldCut, primaryOk };
    }
    await sleep(c.intervalMs);
  }
  return { timings, routed: false, oldCut, primaryOk };
}

/**
 * After a hand-off that did not complete: nobody left drained. The old leader (cut, or not) and the
 * candidate (drained before the POST) go back under their checks: UP at once for whichever leads
 * now, DOWN until its checks say otherwise for the other.
 */
async function release(c: Loop, seen: LeaderNow): Promise<void> {
  c.released = true;
  // Node by node: a session that fails (it died under load) does not stop the others; what it
  // could not do, the workflow's settle step does over a fresh session (routing.ts settleRouting).
  await Promise.all(
    c.sessions.sessions.map(async (x) => {
      const one: RuntimeSessions = { sessions: [x], close: () => undefined };
      for (const name of [c.old, c.cand]) {
        if (!name) continue;
        if (seen.leader !== name) {
          await backUnderChecks(one, name).catch(() => undefined);
          continue;
        }
        await all(one, `set server ${HAPROXY_WRITE_BACKEND}/${name} state ready`).catch(() => undefined);
        await all(one, `set server ${HAPROXY_WRITE_BACKEND}/${name} health up`).catch(() => undefined);
      }
    }),
  );
}

const when = (ms: number) => new Date(ms).toISOString();

/**
 * The critical path: POST /switchover (or /failover) and route HAProxy the instant the candidate
 * accepts writes, in one activity that polls every `intervalMs` (default 10) and heartbeats on a
 * ticker; a retried attempt watches instead of POSTing again (see the module comment).
 */
export async function switchoverCutover(
  deps: SwitchoverDeps,
  args: {
    inv: Inventory;
    plan: HandoffPlan;
    /** Bound of the hand-off (POST → candidate writable). Default 60 s for a switchover; ttl + 60 s for a failover. */
    handoffTimeoutMs?: number;
    intervalMs?: number;
  },
): Promise<CutoverResult> {
  const { inv, plan } = args;
  const cand = plan.candidate;
  const old = plan.leader;
  const handoffTimeout =
    args.handoffTimeoutMs ??
    (plan.action === 'failover' ? inv.patroni.ttl * 1000 + 60_000 : (deps.handoffTimeoutMs ?? 60_000));
  const attempt = activityContext()?.info.attempt ?? 1;

  // 0. First of all (the attempt's first heartbeat goes out at once; later ones are throttled):
  //    what earlier attempts recorded, carried forward, or this attempt's intent to POST.
  const prior = carriedIntents<HandoffMemo>();
  keepInHeartbeats({
    intent: prior.intent ?? { action: plan.action, from: old, to: cand, at: Date.now(), attempt },
  });
  const retried = prior.intent !== undefined || attempt > 1;
  let phase = 'looking at the cluster';
  const setPhase = (p: string) => (phase = p);

  return heartbeating(
    () => phase,
    async () => {
      // 1. Where are we? A retried attempt may find the work done, or under way.
      const now = await leaderNow(deps, inv);
      const earlier = prior.intent
        ? `attempt ${prior.intent.attempt} recorded its intent to ${plan.action} at ${when(prior.intent.at)}` +
          (prior.posted
            ? ` and sent the POST at ${when(prior.posted.at)} (attempt ${prior.posted.attempt})`
            : '')
        : `an earlier attempt ended early`;
      if (now.leader === cand && (now.timeline ?? 0) > plan.timeline) {
        setPhase(`routing writes to ${cand} (the hand-off was done)`);
        const sessions = await sessionsFor(deps, inv);
        try {
          const routedOn = await route(deps, inv, sessions, cand, old);
          // A crashed predecessor drained the old leader before its POST: undone here, not left to verify.
          await releaseOldLeader(deps, inv, sessions, old);
          return {
            outcome: 'already-done',
            leader: cand,
            timings: {},
            routedOn,
            resumed: retried
              ? `${earlier}; ${cand} already led on timeline ${now.timeline}: routed, no POST`
              : undefined,
          };
        } finally {
          sessions.close();
        }
      }
      if (now.leader !== undefined && now.leader !== (old ?? now.leader) && now.leader !== cand) {
        throw failed(
          `the leader is now ${now.leader} (timeline ${now.timeline}), neither ${old} nor the candidate ${cand}: ` +
            `someone else moved it; nothing was requested. Check pgha status`,
        );
      }
      if (!retried && plan.action === 'switchover' && now.leader !== old) {
        throw failed(
          `the leader ${old} is no longer leading (${now.describe}); no switchover was requested. Check pgha status`,
        );
      }
      if (finalAnswer(prior.answer) && now.leader === old) {
        throw failed(
          `${plan.action} to ${cand} did not happen: Patroni answered ${prior.answer!.status}: ${prior.answer!.text} ` +
            `(to attempt ${prior.posted?.attempt ?? '?'}). The leader is still ${old} (timeline ${now.timeline}); nothing else changed`,
          { leader: old ?? null },
        );
      }

      // 2. Prepare: runtime sessions to every HAProxy, SQL connections to both members.
      setPhase('opening HAProxy runtime sessions and SQL connections');
      const probe =
        deps.recoveryProbe ?? ((conn) => openRecoveryProbe(conn, { applicationName: 'pgha-switchover' }));
      const sessions = await sessionsFor(deps, inv);
      const candSql = probe(memberSql(inv, cand));
      const oldSql = old ? probe(memberSql(inv, old)) : undefined;
      const loop: Loop = {
        deps,
        inv,
        cand,
        old,
        sessions,
        candSql,
        oldSql,
        intervalMs: args.intervalMs ?? 10,
        boundMs: handoffTimeout,
        setPhase,
      };
      const live = { on: true };
      try {
        let resumed: string | undefined;
        if (retried) {
          const w = await watchEarlier(loop, {
            plan,
            prior,
            now,
            earlier,
            attempt,
            quietMs: deps.resumeWatchMs,
          });
          if (typeof w !== 'string') return w;
          resumed = w;
        }
        return await postOnce(loop, { plan, attempt, resumed, live });
      } finally {
        live.on = false;
        candSql.close();
        oldSql?.close();
        sessions.close();
      }
    },
  );
}

/**
 * 3a. A retried attempt: an earlier one may have sent the POST, so watch, never POST blindly.
 * Returns the result when the hand-off completed under watch, or — when a bounded watch shows that
 * nothing happened and no POST is known to have gone out — the note to report with the POST it may
 * now send. Throws otherwise (a definite failure: nothing is sent again).
 */
async function watchEarlier(
  c: Loop,
  w: {
    plan: HandoffPlan;
    prior: HandoffMemo;
    now: LeaderNow;
    earlier: string;
    attempt: number;
    quietMs?: number;
  },
): Promise<CutoverResult | string> {
  const { plan, prior, now } = w;
  // An earlier attempt that died between its pre-POST drain and the POST left the old leader
  // drained: while it still leads, writable, new connections would be held and then refused.
  // Undo that first (the candidate stays drained until it is admitted or released).
  if (!prior.posted && c.old && now.leader === c.old && (await c.oldSql?.inRecovery()) === false) {
    await all(c.sessions, `set server ${HAPROXY_WRITE_BACKEND}/${c.old} state ready`);
  }
  c.setPhase(`watching the hand-off to ${c.cand} an earlier attempt may have requested`);
  const t0 = Date.now();
  // Found under way: watched to the bound. Nothing seen yet: a bounded look (a failover's POST may
  // show nothing until the dead leader's key expires: watched to the bound too).
  const underWay =
    now.leader !== c.old || (now.timeline ?? plan.timeline) > plan.timeline || now.scheduled === true;
  const quiet = plan.action === 'switchover' && !underWay ? (w.quietMs ?? 5000) : undefined;
  const f = await follow(c, t0, undefined, quiet);
  if (f.routed) {
    await releaseOldLeader(c.deps, c.inv, c.sessions, c.old);
    return {
      outcome: 'already-done',
      leader: c.cand,
      timings: f.timings,
      routedOn: c.sessions.sessions.map((s) => s.node),
      resumed: `${w.earlier}; found the hand-off under way, watched it and routed writes to ${c.cand} ${f.timings.routedMs} ms later; no POST`,
    };
  }
  const seen = await leaderNow(c.deps, c.inv);
  const nothing =
    !f.oldCut &&
    !f.primaryOk &&
    seen.leader === c.old &&
    (seen.timeline === undefined || seen.timeline === plan.timeline) &&
    !seen.scheduled;
  if (!nothing || prior.posted) {
    await release(c, seen);
    throw failed(
      nothing
        ? `${plan.action} to ${c.cand} did not happen: ${w.earlier}, and after watching ${Date.now() - t0} ms the cluster shows ` +
            `nothing of it (${seen.describe}, running, no switchover scheduled); Patroni's answer was lost with that attempt. ` +
            `Not sent again: see Patroni's log, then start the switchover again`
        : `${plan.action} to ${c.cand} did not complete: ${w.earlier}; watched ${Date.now() - t0} ms (bound ${c.boundMs} ms). ` +
            `Now: ${seen.describe}. HAProxy follows its health checks; check pgha status and Patroni's log before retrying`,
      { leader: seen.leader ?? null },
    );
  }
  return (
    `${w.earlier}, but whether its POST went out is unknown; after watching ${Date.now() - t0} ms nothing had happened ` +
    `(${seen.describe}, running, no switchover scheduled): POSTed now (attempt ${w.attempt})`
  );
}

/**
 * 3b–6. The request, once, recorded before it goes out; then the fast loop; then Patroni's answer
 * (bounded) and a definite end: switched, or exactly where the cluster stands.
 */
async function postOnce(
  c: Loop,
  o: { plan: HandoffPlan; attempt: number; resumed?: string; live: { on: boolean } },
): Promise<CutoverResult> {
  const { deps, inv, cand, old } = c;
  await c.candSql.inRecovery();
  // The old leader writable just before the POST. A probe with no answer (its login or query over
  // the 1 s timeout: seen at load 22, which failed a switchover before anything was requested) is
  // asked again, up to 3 times; an answer "in recovery" fails at once.
  let oldRec: boolean | null = null;
  for (let i = 0; c.oldSql && oldRec === null && i < 3; i++) oldRec = await c.oldSql.inRecovery();
  if (c.oldSql && oldRec !== false) {
    throw failed(
      `the leader ${old} does not answer as a writable primary just before the POST ` +
        `(${oldRec === null ? 'no answer to 3 probes' : 'in recovery'}); nothing was requested`,
    );
  }
  const signal = cancellationSignal();
  if (signal?.aborted) throw signal.reason ?? new Error('the hand-off was cancelled before the POST');
  // The candidate takes no write before pgha admits it: its own check (rise 1) would mark it UP the
  // moment its /primary answers 200, 100-300 ms before its PostgreSQL leaves recovery, and writes
  // would reach a read-only server (2 in a benchmark run, to the first server of the backend).
  // Drained, it takes no new connection whatever its checks say; admitLeader lets it in.
  // The old leader is drained too: its live sessions go on until it stops, but from here the write
  // backend has no usable server, so HAProxy's write frontend HOLDS every new connection (the Lua
  // action of render/haproxy-hold.ts, bounded by haproxy.writeHold) until admitLeader lets them go
  // to the new leader, instead of sending them to a PostgreSQL that is shutting down. Every path
  // below that does not route the candidate undoes both (release), a thrown error included; a
  // worker killed from here on leaves it to the retried attempt (watchEarlier) and to
  // switchoverVerify / pgha status, which flag a server left drained.
  try {
    await all(c.sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} state drain`);
    if (old) await all(c.sessions, `set server ${HAPROXY_WRITE_BACKEND}/${old} state drain`);
    deps.afterDrain?.();
    return await postAndFollow(c, o, signal);
  } catch (err) {
    if (!c.released) {
      const seen = await leaderNow(deps, inv).catch(() => ({ leader: old }) as LeaderNow);
      await release(c, seen);
    }
    throw err;
  }
}

/** 3b–6 after the drain: the POST, the loop, the answer; every failing path released. */
async function postAndFollow(
  c: Loop,
  o: { plan: HandoffPlan; attempt: number; resumed?: string; live: { on: boolean } },
  signal: AbortSignal | undefined,
): Promise<CutoverResult> {
  const { plan } = o;
  const { deps, inv, cand, old } = c;
  if (signal?.aborted) throw signal.reason ?? new Error('the hand-off was cancelled before the POST');
  // Patroni answers when it is done (or gives up); the loop does not wait for it.
  const t0 = Date.now();
  keepInHeartbeats({ posted: { at: t0, attempt: o.attempt } });
  const post: PostState = { promise: Promise.resolve() };
  post.promise = (
    plan.action === 'switchover'
      ? deps.patroni.patroniSwitchover({
          target: restApi(inv, old!),
          auth: restApiAuth(inv),
          leader: old!,
          candidate: cand,
          timeoutMs: c.boundMs,
        })
      : deps.patroni.patroniFailover({
          target: restApi(inv, cand),
          auth: restApiAuth(inv),
          candidate: cand,
          timeoutMs: c.boundMs,
        })
  ).then(
    (r) => {
      post.answer = { status: r.status, text: r.text ?? JSON.stringify(r.body) };
      if (o.live.on) keepInHeartbeats({ answer: post.answer });
    },
    (err: Error) => {
      post.error = err.message;
      // A 401 is final; a request that got no answer may still have reached Patroni: watch a while.
      post.final = err.name === Failures.PatroniAuthRejectedError;
      post.errorAt = Date.now();
    },
  );
  const answered = post.promise.then(() => Date.now() - t0);

  // 4. The fast loop.
  const f = await follow(c, t0, post);
  const timings: CutoverTimings = { postedAt: t0, ...f.timings };
  // Routed: the old leader, drained since before the POST, back under its checks (DOWN: a replica now).
  if (f.routed) await releaseOldLeader(deps, inv, c.sessions, old);
  // 5. Patroni's answer (bounded: the request has its own deadline; heartbeated like every wait).
  if (!f.routed || !post.answer) {
    c.setPhase(`waiting for Patroni's answer to the POST`);
    await Promise.race([post.promise, sleep(f.routed ? 30_000 : 5000)]);
  }
  if (post.answer || post.error) timings.postAnsweredMs = await answered;
  if (f.routed) {
    return {
      outcome: 'switched',
      leader: cand,
      postStatus: post.answer?.status,
      postText: post.answer?.text ?? post.error,
      timings,
      routedOn: c.sessions.sessions.map((s) => s.node),
      resumed: o.resumed,
    };
  }
  // 6. Not switched: say exactly where the cluster is, and leave HAProxy to its checks.
  const seen = await leaderNow(deps, inv);
  // Whatever happened, nobody stays drained: back under their checks.
  await release(c, seen);
  const patroniSaid = post.answer
    ? `Patroni answered ${post.answer.status}: ${post.answer.text}`
    : post.error
      ? `the request failed: ${post.error}`
      : 'Patroni had not answered';
  if (seen.leader === old && old) {
    throw failed(
      `${plan.action} to ${cand} did not happen: ${patroniSaid}. The leader is still ${old} (timeline ${seen.timeline}), ` +
        `writes are routed to it as before; nothing else changed`,
      { leader: old, timings },
    );
  }
  throw failed(
    `${plan.action} to ${cand} did not complete (waited ${Date.now() - t0} ms, bound ${c.boundMs} ms): ${patroniSaid}. Now: ${seen.describe}. ` +
      `HAProxy follows its health checks; check pgha status and Patroni's log before retrying`,
    { leader: seen.leader ?? null, timings },
  );
}
