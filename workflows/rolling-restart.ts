/**
 * rollingRestart and applyConfig — the seed's "перезапуск кластера по одному узлу" and "изменение
 * параметров через patronictl edit-config", as durable runbooks:
 *
 *   rollingRestart: pre-check (etcd quorum, a leader, every member running and streaming, not
 *   paused) → each replica in turn: POST /restart, wait until it streams again within the lag bound
 *   → the leader last: in place (POST /restart, wait until it is the running, writable primary
 *   again) or through a switchover (the switchover runbook as a child, then the old leader is back
 *   as a replica).
 *
 *   applyConfig: keys checked → PATCH /config with what differs from GET /config → wait until every
 *   member runs with it (or flags a pending restart for it) → restart only the members with
 *   pending_restart, replicas first, the leader last — the same restart steps as rollingRestart.
 *
 * Each member's restart is its own step (node set). A restart step looks at the member's
 * postmaster_start_time before acting, so a run resumed after a worker crash never restarts a
 * member twice.
 */
import { ApplicationFailure, ParentClosePolicy, executeChild, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type {
  ClusterSnapshot,
  ConfigApplyResult,
  ConfigMemberState,
  RestartResult,
} from '../activities/maintenance';
import { ConfigKeyError, classifyConfig } from '../runbooks/patroni-config';
import type { ConfigValue } from '../runbooks/patroni-config';
import { Failures } from '../runbooks/failures';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { at, summarized } from './activity-options';
import { invalidInput, inventoryOf, refuse } from './inventory';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { errorMessage, runbook } from './steps';
import type { Runbook } from './steps';
import type { HandoffReport, SwitchoverInput } from './switchover';

export type LeaderRestart = 'switchover' | 'in-place';

export interface RollingRestartInput {
  /** The inventory as in runbooks/clusters/*.yaml, secrets as references. */
  inventory: InventoryInput;
  /** Only these members (default: all). */
  members?: string[];
  /** How the leader is restarted: in place (a short write outage) or after a switchover. Default in-place. */
  leader?: LeaderRestart;
  /** Only members for which Patroni reports pending_restart. */
  onlyPendingRestart?: boolean;
  /** Lag bound a restarted replica must be back within (default maximum_lag_on_failover). */
  maxLagBytes?: number;
  /** Run the pre-check, return the ordered plan per member; restart nothing. */
  dryRun?: boolean;
}

export interface RestartReport {
  leaderBefore: string;
  leaderAfter: string;
  /** In the order they were handled: replicas first, the leader last. */
  members: RestartResult[];
  switchover?: HandoffReport;
}

export interface ApplyConfigInput {
  inventory: InventoryInput;
  /** key → value: DCS keys (ttl, loop_wait, ...) and PostgreSQL parameters (work_mem, ...). */
  set: Record<string, ConfigValue>;
  /** Restart the members with pending_restart afterwards: leader in place, through a switchover, or not at all. */
  restart: LeaderRestart | 'none';
  /** Run the pre-check and compare with GET /config; return what would change and restart; change nothing. */
  dryRun?: boolean;
}

export interface ApplyConfigReport extends ConfigApplyResult {
  /** Members that flagged pending_restart once the change was picked up. */
  pendingRestart: string[];
  restart?: RestartReport;
  /** Who restarted (action restarted or already-restarted). */
  restarted: string[];
}

/** Pre-checks and quick reads/writes: a refusal is final. */
const check = summarized<Activities>('maintenance');
/**
 * A member's restart: POST + a bounded wait that heartbeats every second. A 30 s heartbeat timeout
 * notices a dead worker quickly; the retry looks at the postmaster start time before acting.
 */
const restart = summarized<Activities>('restart');

const invalid = invalidInput;

function checkLeaderMode(mode: unknown, field: string, allowNone = false): void {
  const ok = ['switchover', 'in-place', ...(allowNone ? ['none'] : [])];
  if (!ok.includes(mode as string)) {
    invalid(`${field} ${JSON.stringify(mode)} is invalid: use ${ok.join(', ')}`);
  }
}

function checkMembers(inv: Inventory, members: string[] | undefined): void {
  if (members === undefined) return;
  if (!Array.isArray(members) || members.length === 0)
    invalid('members is empty: name one or more members, or leave it out for all');
  const known = inv.nodes.postgres.map((n) => n.hostname);
  const unknown = members.filter((m) => !known.includes(m));
  if (unknown.length) {
    invalid(`members ${unknown.join(', ')} not in cluster ${inv.cluster} (its members: ${known.join(', ')})`);
  }
}

/** Who a rolling restart restarts, from what the pre-check saw: the replicas in order, and the leader or not. */
function restartTargets(snap: ClusterSnapshot, opts: { members?: string[]; onlyPendingRestart: boolean }) {
  const wanted = (name: string) => !opts.members || opts.members.includes(name);
  const pending = (m: ClusterSnapshot['members'][number]) => !opts.onlyPendingRestart || m.pendingRestart;
  const replicas = snap.members.filter((m) => m.role === 'replica' && wanted(m.name) && pending(m));
  const leaderSnap = snap.members.find((m) => m.role === 'leader');
  const doLeader = leaderSnap !== undefined && wanted(leaderSnap.name) && pending(leaderSnap);
  return { replicas, leaderSnap, doLeader };
}

/** The dry run's restart lines: the same members in the same order as restartMembers would take them. */
function restartPlan(
  inv: Inventory,
  snap: ClusterSnapshot,
  opts: { members?: string[]; leader: LeaderRestart; onlyPendingRestart: boolean; leaderFirst?: boolean },
): string[] {
  const { replicas, leaderSnap, doLeader } = restartTargets(snap, opts);
  const replicaLines = replicas.map(
    (r) =>
      `restart ${at(inv, r.name)} (replica): POST /restart, then streaming from ${snap.leader} within the lag bound`,
  );
  const lines: string[] = [];
  const inPlace = leaderSnap
    ? `restart ${at(inv, leaderSnap.name)} (leader, in place): POST /restart — writes stop until it is the writable primary again`
    : '';
  if (opts.leaderFirst) {
    if (doLeader) lines.push(inPlace);
    lines.push(...replicaLines);
  } else {
    lines.push(...replicaLines);
    if (doLeader && leaderSnap && opts.leader === 'in-place') lines.push(inPlace);
    if (doLeader && leaderSnap && opts.leader === 'switchover') {
      lines.push(
        `switchover from ${leaderSnap.name}: the switchover runbook as a child (the fit replica with the least lag is promoted)`,
        `restart ${at(inv, leaderSnap.name)} (old leader, as a replica): POST /restart unless its demotion already restarted it`,
      );
    }
  }
  if (lines.length === 0) lines.push('nothing to restart: no member matches (members, pending restart)');
  return lines;
}

const describeSnapshot = (snap: ClusterSnapshot) =>
  `leader ${snap.leader}; ${snap.members.map((m) => `${m.name} ${m.role}${m.pendingRestart ? ' (pending restart)' : ''}`).join(', ')}`;

/**
 * The restart steps shared by rollingRestart and applyConfig: replicas one at a time, then the leader.
 * `snap` is what the pre-check saw (roles, postmaster start times, pending flags).
 */
async function restartMembers(
  rb: Runbook,
  inv: Inventory,
  snap: ClusterSnapshot,
  opts: {
    /** The raw inventory, for the switchover child's input. */
    inventory: InventoryInput;
    members?: string[];
    leader: LeaderRestart;
    onlyPendingRestart: boolean;
    maxLagBytes?: number;
    /** The leader in place first, then the replicas (applyConfig lowering a hot-standby parameter). */
    leaderFirst?: boolean;
  },
): Promise<RestartReport> {
  const { replicas, leaderSnap, doLeader } = restartTargets(snap, opts);
  const results: RestartResult[] = [];
  const report: RestartReport = { leaderBefore: snap.leader, leaderAfter: snap.leader, members: results };

  const restartReplicas = async (unconditional: boolean) => {
    for (const r of replicas) {
      results.push(
        await rb.step(
          `restart ${r.name}`,
          () =>
            restart.restartMember(`POST /restart ${at(inv, r.name)} (replica)`, {
              inv,
              member: r.name,
              role: 'replica',
              leader: snap.leader,
              postmasterBefore: r.postmasterStartTime,
              onlyIfPending: opts.onlyPendingRestart && !unconditional,
              maxLagBytes: opts.maxLagBytes,
            }),
          { node: r.name },
        ),
      );
    }
  };
  const restartLeaderInPlace = async () => {
    if (!doLeader || !leaderSnap) return;
    results.push(
      await rb.step(
        `restart ${leaderSnap.name} (leader, in place)`,
        () =>
          restart.restartMember(`POST /restart ${at(inv, leaderSnap.name)} (leader, in place)`, {
            inv,
            member: leaderSnap.name,
            role: 'leader',
            leader: leaderSnap.name,
            postmasterBefore: leaderSnap.postmasterStartTime,
            onlyIfPending: opts.onlyPendingRestart,
            maxLagBytes: opts.maxLagBytes,
          }),
        { node: leaderSnap.name },
      ),
    );
  };

  if (opts.leaderFirst) {
    // Lowering a hot-standby parameter: the leader first (in place), then the replicas — restarted
    // whatever Patroni's pending flag says meanwhile, as they must come back with the lower value.
    await restartLeaderInPlace();
    await restartReplicas(true);
    return report;
  }
  await restartReplicas(false);
  if (!doLeader || !leaderSnap) return report;

  if (opts.leader === 'in-place') {
    await restartLeaderInPlace();
    return report;
  }

  // Through a switchover: the switchover runbook as a child, under this runbook's lock. The old
  // leader's demotion restarts its PostgreSQL (a new postmaster, as a replica, with the new
  // settings); the step after it checks that and only restarts it if it did not.
  const handoff = await rb.step(
    `switchover from ${leaderSnap.name}`,
    async () => {
      try {
        // The candidate is left to the switchover's own choice (the fit replica with the least lag).
        const args: SwitchoverInput = { inventory: opts.inventory, lock: false };
        return await executeChild<(a: typeof args) => Promise<HandoffReport>>('switchover', {
          workflowId: `${workflowInfo().workflowId}-switchover`,
          staticSummary: `switchover from ${leaderSnap.name} before its restart (child of ${workflowInfo().workflowId})`,
          args: [args],
          parentClosePolicy: ParentClosePolicy.TERMINATE,
        });
      } catch (err) {
        throw ApplicationFailure.nonRetryable(
          `switchover before restarting ${leaderSnap.name} failed: ${errorMessage(err)}`,
          Failures.MaintenanceFailed,
        );
      }
    },
    { node: leaderSnap.name },
  );
  report.switchover = handoff;
  report.leaderAfter = handoff.to;
  results.push(
    await rb.step(
      `restart ${leaderSnap.name} (old leader, as a replica)`,
      () =>
        restart.restartMember(`POST /restart ${at(inv, leaderSnap.name)} (old leader, now a replica)`, {
          inv,
          member: leaderSnap.name,
          role: 'replica',
          leader: handoff.to,
          postmasterBefore: leaderSnap.postmasterStartTime,
          onlyIfPending: opts.onlyPendingRestart,
          maxLagBytes: opts.maxLagBytes,
        }),
      { node: leaderSnap.name },
    ),
  );
  return report;
}

export async function rollingRestart(input: RollingRestartInput): Promise<RestartReport | DryRunReport> {
  const inv = inventoryOf(input);
  const leaderMode = input.leader ?? 'in-place';
  checkLeaderMode(leaderMode, 'leader');
  checkMembers(inv, input.members);
  const dry = dryRunning(input);
  return runbook(
    { cluster: inv.cluster, notify: dry ? undefined : inv.notify, operation: 'restart', plan: ['pre-check'] },
    async (rb) => {
      const snap = await rb.step('pre-check', () =>
        check.maintenancePrecheck(`cluster ${inv.cluster}${dry ? ' (dry run)' : ''}`, {
          inv,
          maxLagBytes: input.maxLagBytes,
        }),
      );
      if (dry) {
        return dryRunReport(inv.cluster, 'restart', [
          `pre-check passed: ${describeSnapshot(snap)}`,
          ...restartPlan(inv, snap, {
            members: input.members,
            leader: leaderMode,
            onlyPendingRestart: input.onlyPendingRestart ?? false,
          }),
        ]);
      }
      return restartMembers(rb, inv, snap, {
        inventory: input.inventory,
        members: input.members,
        leader: leaderMode,
        onlyPendingRestart: input.onlyPendingRestart ?? false,
        maxLagBytes: input.maxLagBytes,
      });
    },
  );
}

export async function applyConfig(input: ApplyConfigInput): Promise<ApplyConfigReport | DryRunReport> {
  const inv = inventoryOf(input);
  checkLeaderMode(input.restart, 'restart', true);
  try {
    classifyConfig(input.set); // the names; values of parameters are checked against the live cluster
  } catch (err) {
    if (err instanceof ConfigKeyError) refuse(err.message, Failures.InvalidConfigKey);
    throw err;
  }
  const keys = Object.keys(input.set).join(', ');
  if (dryRunning(input)) {
    return runbook(
      { cluster: inv.cluster, operation: 'config', plan: ['pre-check', 'compare'] },
      async (rb) => {
        const snap = await rb.step('pre-check', () =>
          check.maintenancePrecheck(`cluster ${inv.cluster} (dry run)`, { inv }),
        );
        const seen = await rb.step(
          'compare',
          () =>
            check.configPreview(`GET /config on ${at(inv, snap.leader)}: ${keys} (dry run)`, {
              inv,
              set: input.set,
              leader: snap.leader,
              restart: input.restart,
            }),
          { node: snap.leader },
        );
        return dryRunReport(inv.cluster, 'config', configPlanLines(inv, snap, seen, input, keys));
      },
    );
  }
  const plan = ['pre-check', 'patch config', 'wait picked up'];
  return runbook({ cluster: inv.cluster, notify: inv.notify, operation: 'config', plan }, async (rb) => {
    const snap = await rb.step('pre-check', () =>
      check.maintenancePrecheck(`cluster ${inv.cluster}`, { inv }),
    );
    const applied = await rb.step(
      'patch config',
      () =>
        check.configApply(`PATCH /config on ${at(inv, snap.leader)}: ${keys}`, {
          inv,
          set: input.set,
          leader: snap.leader,
          restart: input.restart,
        }),
      {
        node: snap.leader,
      },
    );
    const states: ConfigMemberState[] = await rb.step('wait picked up', () =>
      restart.configWaitApplied(`every member picks up ${keys}`, { inv, set: input.set }),
    );
    const pendingRestart = states.filter((s) => s.pendingRestart).map((s) => s.member);
    const report: ApplyConfigReport = { ...applied, pendingRestart, restarted: [] };
    if (input.restart === 'none' || pendingRestart.length === 0) return report;

    // Fresh look (pending flags, start times) after the change, then the rolling restart of those members.
    const again = await rb.step('pre-check before restart', () =>
      check.maintenancePrecheck(`cluster ${inv.cluster}`, { inv }),
    );
    report.restart = await restartMembers(rb, inv, again, {
      inventory: input.inventory,
      leader: input.restart,
      onlyPendingRestart: true,
      leaderFirst: applied.restartOrder === 'leader-first',
    });
    report.restarted = report.restart.members.filter((m) => m.action !== 'skipped').map((m) => m.member);
    // Post-check: every member now RUNS the new values (no restart left pending for them).
    await rb.step('verify', () =>
      restart.configWaitApplied(`every member runs ${keys}`, { inv, set: input.set, running: true }),
    );
    return report;
  });
}

/** applyConfig's dry run: the PATCH on the leader, the wait, then the restarts a postmaster change would need. */
function configPlanLines(
  inv: Inventory,
  snap: ClusterSnapshot,
  seen: ConfigApplyResult,
  input: ApplyConfigInput,
  keys: string,
): string[] {
  const show = (v: unknown) => (v === null || v === undefined ? '(unset)' : String(v));
  const lines = [`pre-check passed: ${describeSnapshot(snap)}`];
  if (seen.changed.length === 0) {
    lines.push(
      `nothing to change: ${seen.unchanged.map((u) => `${u.key} is already ${show(u.value)}`).join(', ')}`,
    );
    return lines;
  }
  lines.push(
    `patch config on leader ${at(inv, snap.leader)}: PATCH /config ${seen.changed
      .map((c) => `${c.key} ${show(c.from)} → ${String(c.to)}${c.needsRestart ? ' (needs a restart)' : ''}`)
      .join(
        ', ',
      )}${seen.unchanged.length ? `; unchanged: ${seen.unchanged.map((u) => u.key).join(', ')}` : ''}`,
    `wait picked up: every member (${snap.members.map((m) => m.name).join(', ')}) runs ${keys} or flags a pending restart for it`,
  );
  if (!seen.changed.some((c) => c.needsRestart)) return lines;
  if (input.restart === 'none') {
    lines.push(
      'no restart (--restart none): the members keep a pending restart; run pgha restart --pending-only later',
    );
    return lines;
  }
  // Every member flags the pending restart once a postmaster parameter changed: all of them, in order.
  const leaderFirst = seen.restartOrder === 'leader-first';
  if (seen.orderReason) lines.push(`order: ${seen.orderReason}`);
  lines.push(
    ...restartPlan(inv, snap, { leader: input.restart, onlyPendingRestart: false, leaderFirst }),
    `verify: every member runs ${keys} (no restart left pending)`,
  );
  return lines;
}
