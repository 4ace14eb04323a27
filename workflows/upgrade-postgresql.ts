/**
 * upgradePostgresql — the seed's rolling minor upgrade ("реплики по одной, переключить лидера на
 * обновлённую реплику, затем старый мастер") as a durable runbook:
 *
 *   pre-check (etcd quorum, one leader, replicas streaming within the lag bound, no old transaction
 *   on the leader, the target build in the install source, no downgrade; every member already on
 *   the target → a no-op that says so) → each replica in turn: out of the read port, the new build
 *   beside the old and the link switched (after a CHECKPOINT), restarted through Patroni, back
 *   streaming and caught up, back in the read port → [approval gate `switchover`] → the leader's
 *   link switched, then exactly one switchover (the switchover runbook as a child, under this
 *   runbook's lock) to an upgraded replica: the demotion restarts the old leader onto the new
 *   build → it streams again → verify: every member on the target.
 *
 * A member that does not come back on the new build is rolled back (the link to the old build, a
 * restart onto it) and the run stops with the cluster serving. Between members the cluster is
 * looked at again: after a failover the plan follows the new roles, and a new leader is never
 * upgraded before the remaining replicas. A member already on the target is skipped; the
 * switchover is skipped when the leader already runs the target; one run never switches over twice.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  executeChild,
  isCancellation,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import type { LinkResult, MemberUpgradeResult, UpgradeMember, UpgradeView } from '../activities/upgrade';
import { DEFAULT_MAX_LAG_BYTES, pgVersionNum, pgVersionText } from '../runbooks/pg-version';
import { Failures } from '../runbooks/failures';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { at, summarized } from './activity-options';
import { invalidInput, inventoryOf } from './inventory';
import { errorMessage, runbook } from './steps';
import type { Runbook } from './steps';
import type { HandoffReport, SwitchoverInput } from './switchover';

/** The argument shape both upgrade runbooks take (upgradePatroni too). */
export interface UpgradeInput {
  /** The inventory as in runbooks/clusters/*.yaml, secrets as references. */
  inventory: InventoryInput;
  /** The target version: 18.6 for PostgreSQL. */
  to: string;
  /** Only the pre-check and the ordered plan per node: nothing is touched. */
  dryRun?: boolean;
  /** Stop at the gate `switchover` until `pgha approve`. */
  approve?: boolean;
  /** How long the gate waits (default 1h). */
  approvalTimeout?: Duration;
  /** Replicas must stream within this many bytes (default 10 MiB). */
  maxLagBytes?: number;
  /** No transaction on the leader older than this (default 15 s). */
  maxXactAgeMs?: number;
  /** How long read sessions may take to leave a drained replica (default 10 s). */
  drainTimeoutMs?: number;
}

/** The steps planned for one node, in order. */
export interface NodePlan {
  node: string;
  role: 'leader' | 'replica';
  running: string | null;
  steps: string[];
}

export interface UpgradeReport {
  cluster: string;
  /** The build upgraded to, as the install source names it (18.6.0). */
  to: string;
  outcome: 'upgraded' | 'already-at-target' | 'dry-run';
  message: string;
  /** The ordered plan as the pre-check made it. */
  plan: NodePlan[];
  /** From → to per member, in the order they were done. */
  members: MemberUpgradeResult[];
  leaderBefore: string;
  leaderAfter: string;
  timelineBefore: number | null;
  timelineAfter: number | null;
  switchover?: { from?: string; to: string; outcome: string; timings: HandoffReport['timings'] };
  startedAt: string;
  tookMs: number;
}

/** Pre-check: a refusal is final. */
const check = summarized<Activities>('maintenance');
/** The member steps: bounded waits that heartbeat; a retry looks before it acts. */
const act = summarized<Activities>('restart');

const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** The ordered plan per node: replicas first (in inventory order), the leader last; done members skipped. */
export function planUpgrade(view: Pick<UpgradeView, 'leader' | 'members' | 'build'>): NodePlan[] {
  const b = view.build;
  const replicas = view.members.filter((m) => m.role === 'replica');
  const leader = view.members.filter((m) => m.role === 'leader');
  return [...replicas, ...leader].map((m) => {
    if (m.upgraded)
      return { node: m.name, role: m.role, running: m.running, steps: [`already on ${m.running}: skipped`] };
    const steps =
      m.role === 'replica'
        ? [
            `drain ${m.name} from the read port (HAProxy, every node); let read sessions finish`,
            `CHECKPOINT; install ${b} beside ${m.running}; switch the link`,
            `restart ${m.name} through Patroni; wait until it streams and has caught up`,
            `${m.name} back in the read port`,
          ]
        : [
            `CHECKPOINT; install ${b} beside ${m.running}; switch the link`,
            `switchover ${m.name} → an upgraded replica (its demotion restarts it on ${b})`,
            `wait until ${m.name} streams as a replica on ${b}`,
          ];
    return { node: m.name, role: m.role, running: m.running, steps };
  });
}

function checkInput(input: UpgradeInput): number {
  if (typeof input.to !== 'string' || pgVersionNum(input.to) === null) {
    invalidInput(`to ${JSON.stringify(input.to)} is not a PostgreSQL minor version: use e.g. --to 18.6`);
  }
  for (const [field, v] of [
    ['maxLagBytes', input.maxLagBytes],
    ['maxXactAgeMs', input.maxXactAgeMs],
    ['drainTimeoutMs', input.drainTimeoutMs],
  ] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
      invalidInput(`${field} ${JSON.stringify(v)} must be a positive whole number`);
    }
  }
  return pgVersionNum(input.to)!;
}

function stopped(message: string, type: string = Failures.UpgradeFailed): never {
  throw ApplicationFailure.nonRetryable(message, type);
}

export async function upgradePostgresql(input: UpgradeInput): Promise<UpgradeReport> {
  const inv = inventoryOf(input);
  const toNum = checkInput(input);
  const maxLagBytes = input.maxLagBytes;
  return runbook(
    { cluster: inv.cluster, notify: inv.notify, operation: 'upgrade', plan: ['pre-check'] },
    async (rb) => {
      const started = Date.now();
      const pre = await rb.step('pre-check', () =>
        check.upgradePostgresPrecheck(`cluster ${inv.cluster}`, {
          inv,
          to: input.to,
          maxLagBytes,
          maxXactAgeMs: input.maxXactAgeMs,
        }),
      );
      const report: UpgradeReport = {
        cluster: inv.cluster,
        to: pre.build,
        outcome: 'upgraded',
        message: '',
        plan: planUpgrade(pre),
        members: [],
        leaderBefore: pre.leader,
        leaderAfter: pre.leader,
        timelineBefore: pre.timeline,
        timelineAfter: pre.timeline,
        startedAt: new Date(started).toISOString(),
        tookMs: 0,
      };
      const finish = (outcome: UpgradeReport['outcome'], message: string) => {
        report.outcome = outcome;
        report.message = message;
        report.tookMs = Date.now() - started;
        return report;
      };
      if (pre.alreadyAtTarget) {
        return finish(
          'already-at-target',
          `every member already runs PostgreSQL ${pgVersionText(toNum)}: nothing to do`,
        );
      }
      if (input.dryRun) {
        return finish('dry-run', `dry run: the plan above; nothing was touched`);
      }

      const u = new Upgrade(rb, inv, input, pre.build, toNum, maxLagBytes ?? DEFAULT_MAX_LAG_BYTES);
      let view: UpgradeView = pre;
      const rounds = pre.members.length * 2 + 2;
      for (let round = 1; round <= rounds; round++) {
        if (round > 1)
          view = await rb.step(`look again (${round})`, () =>
            act.upgradeLook(`cluster ${inv.cluster}`, { inv, toNum, build: pre.build }),
          );
        const pending = view.members.filter((m) => !m.upgraded);
        if (pending.length === 0) break;
        const again = pending.find((m) => u.done.has(m.name));
        if (again) {
          stopped(
            `${again.name} runs ${again.running ?? 'an unknown version'} again after it was upgraded in this run; ` +
              `nothing is done twice — look at it (pgha status), then start the upgrade again`,
          );
        }
        const down = pending.find((m) => m.role === 'replica' && m.state !== 'running');
        if (down) {
          // The leader the run began with, gone: Patroni failed over (upgradeLook waited for a leader).
          const lost =
            down.name === pre.leader && view.leader !== pre.leader
              ? ` (the leader when the run began: Patroni failed over to ${view.leader})`
              : '';
          const vmid = inv.nodes.postgres.find((n) => n.hostname === down.name)?.vmid;
          stopped(
            `${down.name} is ${down.state}, not running${lost}: it cannot be upgraded now, and nothing more is done while a member is down. ` +
              `The cluster serves on leader ${view.leader}; upgraded so far: ${u.doneList()}. Bring ${down.name} back ` +
              `(its CT: pct start ${vmid}; it rejoins as a replica — or pgha reinit), check pgha status, then start the upgrade again ` +
              `(members already on ${pre.build} are skipped; the new leader is upgraded last, after one switchover)`,
          );
        }
        // Replicas first — also after a failover: the new leader waits until every replica is done.
        const replica = pending.find((m) => m.role === 'replica');
        if (replica) {
          report.members.push(await u.replica(replica, view.leader));
          continue;
        }
        const leader = pending.find((m) => m.role === 'leader')!;
        if (report.switchover) {
          stopped(
            `${leader.name} leads on ${leader.running} after this run's switchover: a second switchover is never done. ` +
              `Upgraded: ${u.doneList()}. Start the upgrade again to finish (it plans from the cluster as it is)`,
          );
        }
        const { result, handoff } = await u.leader(leader, view);
        report.switchover = {
          from: handoff.from,
          to: handoff.to,
          outcome: handoff.outcome,
          timings: handoff.timings,
        };
        report.members.push(result);
      }
      const end = await rb.step('verify', () =>
        act.upgradeLook(`cluster ${inv.cluster}`, { inv, toNum, build: pre.build }),
      );
      const behind = end.members.filter((m) => !m.upgraded || m.state !== 'running');
      if (behind.length) {
        stopped(
          `after the upgrade ${behind.map((m) => `${m.name} runs ${m.running ?? '?'} (${m.state})`).join(', ')}; ` +
            `upgraded: ${u.doneList()}; look at pgha status`,
        );
      }
      // A replica an earlier, crashed run left drained (this run skipped it: it was on the target)
      // goes back into the read port; `ready` is a no-op on one that is not drained.
      for (const m of end.members) {
        if (m.role === 'replica' && !u.readied.has(m.name)) {
          await rb.step(
            `ready ${m.name}`,
            () => act.upgradeReadPortIn(at(inv, m.name), { inv, member: m.name }),
            {
              node: m.name,
            },
          );
        }
      }
      report.leaderAfter = end.leader;
      report.timelineAfter = end.timeline;
      return finish('upgraded', `every member runs PostgreSQL ${pgVersionText(toNum)}`);
    },
  );
}

/** The member steps of one run, and what it has done so far. */
class Upgrade {
  readonly done = new Set<string>();
  /** Members this run put back into the read port. */
  readonly readied = new Set<string>();
  constructor(
    private readonly rb: Runbook,
    private readonly inv: Inventory,
    private readonly input: UpgradeInput,
    private readonly build: string,
    private readonly toNum: number,
    private readonly maxLagBytes: number,
  ) {}

  doneList(): string {
    return [...this.done].join(', ') || 'none';
  }

  /** A replica: out of the read port, switched, restarted, streaming, back in the read port. */
  async replica(m: UpgradeMember, leader: string): Promise<MemberUpgradeResult> {
    const { rb, inv } = this;
    const node = { node: m.name };
    await rb.step(
      `drain ${m.name}`,
      () =>
        act.upgradeReadPortOut(at(inv, m.name), {
          inv,
          member: m.name,
          sessionsTimeoutMs: this.input.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
        }),
      // Cancelled: back into the read port once it is a healthy replica again.
      { ...node, compensate: () => act.upgradeReadPortIn(at(inv, m.name), { inv, member: m.name }) },
    );
    const link = await rb.step(
      `switch ${m.name} to ${this.build}`,
      () => act.upgradeSwitchBuild(at(inv, m.name), { inv, member: m.name, build: this.build }),
      node,
    );
    const result = await this.restartOrRollBack(m, link.before, leader);
    await rb.step(
      `ready ${m.name}`,
      () => act.upgradeReadPortIn(at(inv, m.name), { inv, member: m.name }),
      node,
    );
    this.readied.add(m.name);
    this.done.add(m.name);
    return result;
  }

  /** The restart onto the new build; a member that does not come back is rolled back and the run stops. */
  private async restartOrRollBack(
    m: UpgradeMember,
    previous: string,
    leader: string,
  ): Promise<MemberUpgradeResult> {
    const { rb, inv } = this;
    const node = { node: m.name };
    try {
      return await rb.step(
        `restart ${m.name} on ${this.build}`,
        () =>
          act.upgradeRestartMember(at(inv, m.name), {
            inv,
            member: m.name,
            wantNum: this.toNum,
            fromNum: m.serverVersion,
            postmasterBefore: m.postmasterStartTime,
            maxLagBytes: this.maxLagBytes,
          }),
        node,
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      const why = errorMessage(err);
      const back = await rb.step(
        `roll back ${m.name}`,
        () =>
          act.upgradeRollbackMember(at(inv, m.name), {
            inv,
            member: m.name,
            previous,
            fromNum: m.serverVersion!,
            maxLagBytes: this.maxLagBytes,
          }),
        node,
      );
      if (m.role === 'replica')
        await rb.step(
          `ready ${m.name} (rolled back)`,
          () => act.upgradeReadPortIn(at(inv, m.name), { inv, member: m.name }),
          node,
        );
      stopped(
        `${m.name} did not come back on ${this.build} (${why}); it was rolled back to ${back.to ?? previous} and streams again. ` +
          `The run stopped with the cluster serving (leader ${leader}); upgraded: ${this.doneList()}. ` +
          `Look at ${m.name}'s PostgreSQL log, then start the upgrade again (members on ${this.build} are skipped)`,
        Failures.UpgradeRolledBack,
      );
    }
  }

  /**
   * The leader last: its link switched while it runs (the running postmaster keeps its binary),
   * then the one switchover; the demotion restarts it as a replica on the new build.
   */
  async leader(
    m: UpgradeMember,
    view: UpgradeView,
  ): Promise<{ result: MemberUpgradeResult; handoff: HandoffReport }> {
    const { rb, inv, input } = this;
    const node = { node: m.name };
    if (input.approve) await rb.approval('switchover', { timeout: input.approvalTimeout ?? '1h' });
    // The switchover verifies that no server is left in an admin state: a drain an earlier,
    // interrupted run left (on a member skipped since, or on the leader) goes first.
    for (const x of view.members) {
      if (!this.readied.has(x.name)) {
        await rb.step(
          `ready ${x.name}`,
          () => act.upgradeReadPortIn(at(inv, x.name), { inv, member: x.name }),
          {
            node: x.name,
          },
        );
        this.readied.add(x.name);
      }
    }
    let link: LinkResult;
    try {
      link = await rb.step(
        `switch ${m.name} to ${this.build}`,
        () => act.upgradeSwitchBuild(at(inv, m.name), { inv, member: m.name, build: this.build }),
        node,
      );
    } catch (err) {
      // E.g. the leader's CT died here, after every replica was done: Patroni fails over to one of
      // them (all on the target), and the next run finds that leader on the target, or this one back.
      if (isCancellation(err)) throw err;
      stopped(
        `the leader ${m.name} could not be switched to ${this.build} (${errorMessage(err)}); no switchover was done. ` +
          `Upgraded: ${this.doneList()}. If ${m.name} is down, Patroni fails over to an upgraded replica: bring ${m.name} back ` +
          `(it rejoins as a replica), check pgha status, then start the upgrade again (members on ${this.build} are skipped)`,
      );
    }
    let handoff: HandoffReport;
    try {
      handoff = await rb.step(
        `switchover from ${m.name}`,
        () => {
          // The candidate is the switchover's own choice among the replicas — all upgraded by now.
          const args: SwitchoverInput = { inventory: input.inventory, lock: false };
          return executeChild<(a: typeof args) => Promise<HandoffReport>>('switchover', {
            workflowId: `${workflowInfo().workflowId}-switchover`,
            args: [args],
            parentClosePolicy: ParentClosePolicy.TERMINATE,
          });
        },
        node,
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      const why = errorMessage(err);
      await rb.step(
        `relink ${m.name} to its old build`,
        () =>
          act.upgradeRelink(at(inv, m.name), {
            inv,
            member: m.name,
            target: link.before,
            onlyIfRunning: m.serverVersion ?? undefined,
          }),
        node,
      );
      stopped(
        `the switchover from ${m.name} failed (${why}); its link points at the old build again unless the hand-off restarted it on the new one. ` +
          `Upgraded: ${this.doneList()}; the leader was ${view.leader}. Look at pgha status, then start the upgrade again`,
      );
    }
    const result = await this.restartOrRollBack({ ...m, role: 'replica' }, link.before, handoff.to);
    this.done.add(m.name);
    this.readied.add(m.name); // never drained: as a replica its read check admits it
    // Restarted by its demotion onto the new build: that was the upgrade.
    return {
      result: result.action === 'already-upgraded' ? { ...result, action: 'upgraded' } : result,
      handoff,
    };
  }
}
