/**
 * upgradePatroni — Patroni to another version without stopping PostgreSQL (issue 9, item 4), where
 * the seed stops Patroni on all three nodes at once:
 *
 *   pre-check (etcd quorum, one leader, replicas streaming, not paused, no downgrade, the target's
 *   wheels present; all already there → a no-op that says so; --dry-run → the plan, nothing touched)
 *   → [approval gate `upgrade`] → install the new version into its own venv on every member, beside
 *   the running one → pause (maintenance mode: Patroni neither fails over nor stops PostgreSQL)
 *   → each member, replicas first, the leader last: link the venv path to the new venv, restart
 *   ONLY the Patroni service, wait until it reports the new version in its role → resume → verify
 *   (the pre-check again: every member on the target, healthy, not paused).
 *
 * Never left paused, never left on mixed versions by this run: if a member does not come back, it
 * and every member switched before it are rolled back to the version they ran (their venvs are
 * still there), the cluster is resumed, and the failure says what happened and what to do.
 * A member already reporting the target is skipped, so a run resumed after a worker crash never
 * restarts a member's Patroni twice.
 */
import { ApplicationFailure, CancellationScope, isCancellation, patched } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import type { SwitchResult, UpgradeMember, UpgradePlan } from '../activities/upgrade-patroni';
import { Failures } from '../runbooks/failures';
import { isPatroniVersion } from '../runbooks/patroni-versions';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { activityOptions, at, summarized } from './activity-options';
import { invalidInput, inventoryOf } from './inventory';
import { Patches } from './patches';
import { errorMessage, runbook } from './steps';
import type { PlanEntry, Runbook } from './steps';

export interface UpgradePatroniInput {
  /** The inventory as in runbooks/clusters/*.yaml, secrets as references. */
  inventory: InventoryInput;
  /** The Patroni version to run, e.g. "4.1.5" (its wheels must be in install.patroni.dir). */
  to: string;
  /** Only the pre-check and the plan per node: nothing is touched. */
  dryRun?: boolean;
  /** Stop at the gate `upgrade` (after the pre-check, before anything changes) for `pgha approve`. */
  approve?: boolean;
  /** How long the gate waits for a decision (default 1h). */
  approvalTimeout?: Duration;
  /** Replay lag bound for the pre-check (default patroni.maximumLagOnFailover). */
  maxLagBytes?: number;
}

export interface UpgradePatroniReport {
  cluster: string;
  to: string;
  outcome: 'upgraded' | 'already-at-target' | 'dry-run';
  plan: UpgradePlan;
  /** One per member switched or found already switched, in order. */
  members: SwitchResult[];
  /** Members whose PostgreSQL restarted during the run (expected: none). */
  postgresRestarted: string[];
}

const finalTypes = [
  Failures.PatroniUpgradeRefused,
  Failures.PatroniUpgradeFailed,
  Failures.MaintenanceRefused,
  Failures.MaintenanceFailed,
  Failures.PatroniAuthRejectedError,
];

/** Pre-checks, pause/resume: a refusal is final. */
const check = summarized<Activities>({
  ...activityOptions.maintenance,
  startToCloseTimeout: '5m',
  retry: { ...activityOptions.maintenance.retry, nonRetryableErrorTypes: finalTypes },
});
/** Installing a venv from wheels: long (pip), heartbeating while each command runs. */
const install = summarized<Activities>({
  ...activityOptions.nodeStep,
  retry: { ...activityOptions.nodeStep.retry, nonRetryableErrorTypes: finalTypes },
});
/** A member's switch: one restart of its Patroni (an intent in the heartbeat) and a bounded wait. */
const member = summarized<Activities>({
  ...activityOptions.restart,
  retry: { ...activityOptions.restart.retry, nonRetryableErrorTypes: finalTypes },
});

export async function upgradePatroni(input: UpgradePatroniInput): Promise<UpgradePatroniReport> {
  const inv = inventoryOf(input);
  if (!isPatroniVersion(input.to))
    invalidInput(
      `to ${JSON.stringify(input.to)} is not a Patroni version: use major.minor.patch, e.g. 4.1.5`,
    );
  const to = input.to;
  const plan: PlanEntry[] = ['pre-check'];
  if (input.approve && !input.dryRun) plan.push({ gate: 'upgrade' });
  if (!input.dryRun) plan.push('install', 'pause');

  return runbook(
    { cluster: inv.cluster, notify: inv.notify, operation: 'upgrade-patroni', plan },
    async (rb) => {
      const seen = await rb.step('pre-check', () =>
        check.patroniUpgradePrecheck(`cluster ${inv.cluster}`, { inv, to, maxLagBytes: input.maxLagBytes }),
      );
      const report: UpgradePatroniReport = {
        cluster: inv.cluster,
        to,
        outcome: 'upgraded',
        plan: seen,
        members: [],
        postgresRestarted: [],
      };
      if (seen.noop) return { ...report, outcome: 'already-at-target' };
      if (input.dryRun) return { ...report, outcome: 'dry-run' };
      if (input.approve) await rb.approval('upgrade', { timeout: input.approvalTimeout ?? '1h' });

      const todo = seen.members.filter((m) => m.action === 'upgrade');
      await rb.step('install', () =>
        Promise.all(
          todo.map((m) => install.patroniStageVersion(at(inv, m.name), { inv, member: m.name, version: to })),
        ),
      );

      const resume = () => check.patroniSetPause(`cluster ${inv.cluster}`, { inv, pause: false });
      await rb.step('pause', () => check.patroniSetPause(`cluster ${inv.cluster}`, { inv, pause: true }), {
        compensate: resume,
      });

      const switched: UpgradeMember[] = [];
      const switchTo = (m: UpgradeMember, version: string) =>
        member.patroniSwitchMember(at(inv, m.name), {
          inv,
          member: m.name,
          to: version,
          role: m.role,
          leader: seen.leader,
          postmasterBefore: m.postmasterStartTime,
        });
      for (const m of todo) {
        try {
          report.members.push(await rb.step(`switch ${m.name}`, () => switchTo(m, to), { node: m.name }));
          switched.push(m);
        } catch (err) {
          if (!isCancellation(err) && patched(Patches.patroniUpgradeLeaderLoss)) {
            await leaderLost(rb, inv, seen.leader, to, m, errorMessage(err));
          }
          // Roll back this member and every one switched before it (newest first), then resume:
          // the cluster ends on the versions it had, serving, not paused.
          const undo = [m, ...[...switched].reverse()];
          const notes: string[] = [];
          await CancellationScope.nonCancellable(async () => {
            for (const u of undo) {
              try {
                await rb.step(`roll back ${u.name}`, () => switchTo(u, u.version), { node: u.name });
                notes.push(`${u.name} back on Patroni ${u.version}`);
              } catch (e) {
                notes.push(`${u.name} NOT rolled back (${errorMessage(e)}): run ${undoHint(u)}`);
              }
            }
            try {
              await rb.step('resume', resume);
              notes.push('cluster resumed');
            } catch (e) {
              notes.push(
                `resume FAILED (${errorMessage(e)}): run patronictl resume, or PATCH /config {"pause": false}`,
              );
            }
          });
          if (isCancellation(err)) throw err;
          throw ApplicationFailure.create({
            type: Failures.PatroniUpgradeFailed,
            nonRetryable: true,
            message:
              `Patroni upgrade of ${m.name} to ${to} failed: ${errorMessage(err)}. Rolled back: ${notes.join('; ')}. ` +
              `PostgreSQL kept running throughout; look at journalctl -u patroni on ${m.name}, fix the cause, and run ` +
              `pgha upgrade patroni --to ${to} again (members already on ${to} are skipped)`,
          });
        }
      }

      await rb.step('resume', resume);
      const after = await rb.step('verify', () =>
        check.patroniUpgradePrecheck(`cluster ${inv.cluster}`, { inv, to, maxLagBytes: input.maxLagBytes }),
      );
      if (!after.noop) {
        const behind = after.members
          .filter((m) => m.action !== 'already')
          .map((m) => `${m.name} (${m.version})`);
        throw ApplicationFailure.create({
          type: Failures.PatroniUpgradeFailed,
          nonRetryable: true,
          message: `after the upgrade, not every member runs Patroni ${to}: ${behind.join(', ')}; run pgha upgrade patroni --to ${to} again`,
        });
      }
      report.postgresRestarted = report.members.filter((r) => r.postgresRestarted).map((r) => r.member);
      return report;
    },
  );
}

/**
 * After a failed switch: did the leader go away? In pause Patroni never fails over, so the run must
 * not wait for it: patroniLeaderLoss resumes the cluster and waits (bounded) until Patroni elects a
 * leader; the run then stops. Members already switched stay on the new version: rolling them back
 * would mean pausing a degraded cluster again — the operator brings the old leader back and runs
 * the upgrade again, which skips them. A leader that still leads: returns (the ordinary roll-back).
 */
async function leaderLost(
  rb: Runbook,
  inv: Inventory,
  leader: string,
  to: string,
  failed: UpgradeMember,
  why: string,
): Promise<void> {
  const loss = await rb.step(
    `look at the leader ${leader}`,
    () => check.patroniLeaderLoss(at(inv, leader), { inv, leader }),
    {
      node: leader,
    },
  );
  if (!loss.lost) return;
  const versions = Object.entries(loss.versions ?? {})
    .map(([n, v]) => `${n} ${v ?? 'not answering'}`)
    .join(', ');
  throw ApplicationFailure.create({
    type: Failures.PatroniUpgradeFailed,
    nonRetryable: true,
    message:
      `the leader ${leader} was lost during the Patroni upgrade (the switch of ${failed.name} failed: ${why}). ` +
      `In pause Patroni does not fail over, so the run resumed the cluster${loss.resumed ? '' : ' (it was resumed already)'} ` +
      `and Patroni elected ${loss.newLeader}. Patroni versions now: ${versions}. Bring ${leader} back (start its CT; ` +
      `it rejoins as a replica), check pgha status, then run pgha upgrade patroni --to ${to} again: ` +
      `members already on ${to} are skipped`,
  });
}

/** What an operator runs by hand when a roll-back failed. */
function undoHint(m: UpgradeMember): string {
  return `on ${m.name}: point the Patroni venv link back to its ${m.version} venv (ln -sfnT) and systemctl restart patroni while the cluster is paused`;
}
