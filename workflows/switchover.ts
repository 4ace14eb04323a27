/**
 * switchover and failover — the seed's "плановое переключение" as one durable runbook:
 *
 *   pre-checks (etcd quorum, the leader, a fit candidate, not paused) → [wait until --at]
 *   → [approval gate `switchover`] → re-check → hand-off (POST /switchover; HAProxy routed the
 *   instant the candidate accepts writes) → verify (new leader, timeline +1, old leader streaming,
 *   writes through every HAProxy land on the new leader).
 *
 * A scheduled switchover is a durable timer here, not Patroni's scheduled_at: at the time, the
 * cluster is checked again and the same fast hand-off runs (Patroni's own scheduled switchover
 * would happen without pgha routing HAProxy, and could not be re-checked or approved).
 *
 * failover: for when the leader is gone. It refuses while a healthy leader exists unless forced;
 * POST /failover to the candidate, then the same routing and verification (the old leader is not
 * waited for: it is down; it rejoins as a replica when it comes back).
 *
 * Every end is definite: completed with a report, or failed with what was found (the leader
 * still X and nothing changed, or exactly where the cluster stands).
 */
import { ApplicationFailure, CancellationScope, log, patched, sleep } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import type { CutoverResult, HandoffPlan, VerifyResult } from '../activities/switchover';
import { Failures } from '../runbooks/failures';
import type { InventoryInput } from '../runbooks/schema';
import { at as onNode, summarized } from './activity-options';
import { invalidInput, inventoryOf } from './inventory';
import { Patches } from './patches';
import { scheduleProblem } from './schedule';
import { recordHandoff } from './metrics';
import { dryRunReport, type DryRunReport } from './dry-run';
import { errorMessage, runbook } from './steps';
import type { Runbook } from './steps';
import type { PlanEntry } from './steps';

export interface SwitchoverInput {
  /** The inventory as in runbooks/clusters/*.yaml, secrets as references. */
  inventory: InventoryInput;
  /** The member to promote; default: the fit replica with the least lag. */
  candidate?: string;
  /** ISO 8601 time to switch over at (a durable timer; the cluster is checked again then). */
  scheduledAt?: string;
  /** Wait at the gate `switchover` for `pgha approve` (this long) before anything is touched. */
  approvalTimeout?: Duration;
  /**
   * Take the cluster lock (default true). false only for a switchover run as a child of another
   * runbook that holds the lock (rollingRestart's leader restart through a switchover).
   */
  lock?: boolean;
  /** Run the pre-checks, return the ordered plan per node; touch nothing (no wait, no gate). */
  dryRun?: boolean;
}

export interface FailoverInput {
  inventory: InventoryInput;
  /** The member to promote (required: a failover is a deliberate choice). */
  candidate: string;
  /** Fail over even though a healthy leader exists (it is cut off). */
  force?: boolean;
  /** Run the pre-checks, return the ordered plan per node; touch nothing. */
  dryRun?: boolean;
}

export interface HandoffReport {
  action: 'switchover' | 'failover';
  from?: string;
  to: string;
  /** pgha picked the candidate (no --to). */
  chosen: boolean;
  timelineBefore: number;
  timelineAfter: number;
  /** switched now, or already-done (a resumed run found a previous attempt had done it). */
  outcome: CutoverResult['outcome'];
  patroni?: { status?: number; text?: string };
  /** ms after the POST: old leader cut in HAProxy, candidate /primary 200, writable, routed. */
  timings: CutoverResult['timings'];
  verify: VerifyResult;
}

/** Pre-checks and verification: quick reads; a refusal is final. */
const check = summarized<Activities>('precheck');
/**
 * The hand-off: one activity polling every 10 ms, heartbeating every second on a ticker. A short
 * heartbeat timeout so that a killed worker is noticed within seconds; the retried attempt looks
 * before it acts and never POSTs twice (activities/switchover/handoff.ts).
 */
const handoff = summarized<Activities>('handoff');

function scheduledMs(at: string | undefined): number | undefined {
  if (at === undefined) return undefined;
  const t = Date.parse(at);
  if (Number.isNaN(t)) {
    invalidInput(`scheduledAt ${JSON.stringify(at)} is not a time: use ISO 8601, e.g. 2026-11-26T23:00:00Z`);
  }
  // A time in the past would switch over at once; one years ahead would hold the cluster lock for
  // ever. Compared with workflow time (deterministic); runs started before this check replay without it.
  if (patched(Patches.scheduledAtBounds)) {
    const problem = scheduleProblem('scheduledAt', t, Date.now());
    if (problem) invalidInput(problem);
  }
  return t;
}

export async function switchover(input: SwitchoverInput): Promise<HandoffReport | DryRunReport> {
  const inv = inventoryOf(input);
  const at = scheduledMs(input.scheduledAt);
  // Only a run asked for a dry run takes this branch (older histories never carry dryRun).
  if (input.dryRun && patched(Patches.dryRunPlans)) {
    return runbook({ cluster: inv.cluster, operation: 'switchover', plan: ['pre-checks'] }, async (rb) => {
      const p = await rb.step('pre-checks', () =>
        check.switchoverPrecheck(`switchover pre-checks (dry run): cluster ${inv.cluster}`, {
          inv,
          action: 'switchover',
          candidate: input.candidate,
        }),
      );
      return handoffPlan(inv, 'switchover', p, [
        at !== undefined &&
          `wait until ${input.scheduledAt} (a durable timer; the cluster is checked again then)`,
        input.approvalTimeout !== undefined &&
          `gate switchover: wait up to ${String(input.approvalTimeout)} for pgha approve, then re-check`,
      ]);
    });
  }
  const plan: PlanEntry[] = ['pre-checks'];
  if (at !== undefined) plan.push('wait until scheduled');
  if (input.approvalTimeout) plan.push({ gate: 'switchover' });
  if (at !== undefined || input.approvalTimeout) plan.push('re-check');
  plan.push('hand-off', 'verify');

  return runbook(
    {
      cluster: inv.cluster,
      operation: 'switchover',
      plan,
      lock: input.lock ?? true,
      // Run inside another runbook (lock: false), it leaves notifying to that one.
      notify: input.lock === false ? undefined : inv.notify,
    },
    async (rb) => {
      const precheck = (what: string) =>
        check.switchoverPrecheck(
          `${what}: cluster ${inv.cluster}${input.candidate ? `, candidate ${onNode(inv, input.candidate)}` : ''}`,
          { inv, action: 'switchover', candidate: input.candidate },
        );
      let p: HandoffPlan = await rb.step('pre-checks', () => precheck('switchover pre-checks'));
      if (at !== undefined) {
        await rb.step('wait until scheduled', async () => {
          const left = at - Date.now();
          if (left > 0) await sleep(left, { summary: `switchover scheduled at ${input.scheduledAt} (--at)` });
          return input.scheduledAt;
        });
      }
      if (input.approvalTimeout) await rb.approval('switchover', { timeout: input.approvalTimeout });
      if (at !== undefined || input.approvalTimeout) {
        const first = p;
        // Time passed: the cluster is asked again. An explicit candidate stays; a chosen one may change.
        p = await rb.step('re-check', () => precheck('switchover re-check'));
        if (p.leader !== first.leader) {
          throw ApplicationFailure.nonRetryable(
            `the leader changed while waiting (was ${first.leader}, now ${p.leader}); nothing was done: start again`,
            Failures.SwitchoverRefused,
          );
        }
      }
      const plan2 = p;
      const cut = await handOff(rb, inv, plan2);
      const verify = await rb.step(
        'verify',
        () => check.switchoverVerify(verifySummary(plan2), { inv, plan: plan2 }),
        { node: plan2.candidate },
      );
      recordHandoff(inv.cluster, plan2.action, cut.timings);
      return report(plan2, cut, verify);
    },
  );
}

export async function failover(input: FailoverInput): Promise<HandoffReport | DryRunReport> {
  const inv = inventoryOf(input);
  if (typeof input.candidate !== 'string' || input.candidate === '') {
    invalidInput('candidate is missing: a failover needs the member to promote (pgha failover --to pgX)');
  }
  if (input.dryRun && patched(Patches.dryRunPlans)) {
    return runbook({ cluster: inv.cluster, operation: 'failover', plan: ['pre-checks'] }, async (rb) => {
      const p = await rb.step('pre-checks', () =>
        check.switchoverPrecheck(`failover pre-checks (dry run): cluster ${inv.cluster}`, {
          inv,
          action: 'failover',
          candidate: input.candidate,
          force: input.force,
        }),
      );
      return handoffPlan(inv, 'failover', p, []);
    });
  }
  return runbook(
    {
      cluster: inv.cluster,
      notify: inv.notify,
      operation: 'failover',
      plan: ['pre-checks', 'hand-off', 'verify'],
    },
    async (rb) => {
      const p = await rb.step('pre-checks', () =>
        check.switchoverPrecheck(
          `failover pre-checks: cluster ${inv.cluster}, candidate ${onNode(inv, input.candidate)}${input.force ? ' (forced)' : ''}`,
          { inv, action: 'failover', candidate: input.candidate, force: input.force },
        ),
      );
      const cut = await handOff(rb, inv, p);
      // A forced failover away from a live leader waits for it to rejoin; a dead one is not waited for.
      const verify = await rb.step(
        'verify',
        () =>
          check.switchoverVerify(verifySummary(p), { inv, plan: p, rejoinTimeoutMs: p.leader ? 120_000 : 0 }),
        { node: p.candidate },
      );
      recordHandoff(inv.cluster, p.action, cut.timings);
      return report(p, cut, verify);
    },
  );
}

/**
 * The hand-off step. When it fails — whatever ended it — HAProxy is settled before the run ends:
 * no server left drained on any node (activities/switchover/routing.ts settleRouting), so new writes
 * are never held behind a drain nobody will lift. A settle that fails too is logged; the run fails
 * with the hand-off's own error, and pgha status names any server still drained.
 */
async function handOff(
  rb: Runbook,
  inv: ReturnType<typeof inventoryOf>,
  p: HandoffPlan,
): Promise<CutoverResult> {
  return rb.step(
    'hand-off',
    async () => {
      try {
        return await handoff.switchoverCutover(postSummary(p), { inv, plan: p });
      } catch (err) {
        if (patched(Patches.settleAfterFailedHandoff)) {
          await CancellationScope.nonCancellable(() =>
            check
              .switchoverSettle(`HAProxy back under its checks after the ${p.action} did not complete`, {
                inv,
              })
              .then(
                (r) => log.info('HAProxy settled after the hand-off', { settled: r.settled }),
                (e) =>
                  log.warn('HAProxy could not be settled after the hand-off', { error: errorMessage(e) }),
              ),
          );
        }
        throw err;
      }
    },
    { node: p.candidate },
  );
}

/** The dry run's plan: what the pre-checks saw, then each step on its node. */
function handoffPlan(
  inv: ReturnType<typeof inventoryOf>,
  operation: 'switchover' | 'failover',
  p: HandoffPlan,
  waits: (string | false)[],
): DryRunReport {
  const haproxies = inv.nodes.haproxy.map((n) => n.hostname).join(', ');
  return dryRunReport(inv.cluster, operation, [
    `pre-checks passed: leader ${p.leader ?? '(none)'} on timeline ${p.timeline}; candidate ${p.candidate}${p.chosen ? ' (chosen: the fit replica with the least lag)' : ''}${p.forced ? ' (forced)' : ''}`,
    ...waits,
    `hand-off on ${onNode(inv, p.candidate)}: ${postSummary(p)}; ${p.leader ? `${p.leader} cut in HAProxy ${haproxies} as it stops` : 'no leader to cut'}; writes routed to ${p.candidate} in HAProxy ${haproxies} once it is writable`,
    `verify: ${verifySummary(p)}`,
  ]);
}

/** `POST /switchover pg102 → pg103`: the timeline's summary of the hand-off. */
function postSummary(p: HandoffPlan): string {
  return `POST /${p.action} ${p.leader ?? '(no leader)'} → ${p.candidate}`;
}

function verifySummary(p: HandoffPlan): string {
  return `${p.candidate} leads on timeline ${p.timeline + 1}${p.leader ? `, ${p.leader} rejoins` : ''}, writes through HAProxy`;
}

function report(p: HandoffPlan, cut: CutoverResult, verify: VerifyResult): HandoffReport {
  return {
    action: p.action,
    from: p.leader,
    to: p.candidate,
    chosen: p.chosen,
    timelineBefore: p.timeline,
    timelineAfter: verify.timeline,
    outcome: cut.outcome,
    patroni:
      cut.postStatus !== undefined || cut.postText
        ? { status: cut.postStatus, text: cut.postText }
        : undefined,
    timings: cut.timings,
    verify,
  };
}
