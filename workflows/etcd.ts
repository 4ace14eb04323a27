/**
 * The etcd runbooks — what the seed does to etcd by hand (`systemctl restart etcd` on each CT,
 * `etcdctl endpoint health`, watching /var/lib/etcd, and as its only recovery tool deleting
 * `/patroni/`), as durable runbooks:
 *
 *   etcdRestart: pre-check (every member healthy, one leader, member list = inventory) → each
 *   follower in turn: restart, wait until healthy and caught up (raft index) with a leader → the
 *   leader last: leadership moved (move-leader) to the most caught-up follower, then the same.
 *   Never below quorum: each restart first checks that the others alone are a majority.
 *
 *   etcdMaintain: pre-check → health, DB sizes against the quota, alarms → compaction to the current
 *   revision → defragmentation one member at a time, the leader last → sizes after. Schedulable: a
 *   Temporal Schedule may start it with the same input (it takes the cluster lock like any runbook).
 *
 *   etcdSnapshot: health → `etcdctl snapshot save` on a healthy follower (or the member asked for),
 *   verified with `snapshot status`, copied to the Proxmox host's directory, hash-checked, retention.
 *
 *   patroniDcsClean: check (no Patroni runs; the keys under /<namespace>/<scope>/) → approval gate
 *   → delete exactly those keys (checked again) → none left.
 */
import { workflowInfo } from '@temporalio/workflow';
import type { ActivityOptions } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import type {
  DcsCleanCheck,
  DcsCleanResult,
  EtcdClusterState,
  EtcdCompactResult,
  EtcdDefragResult,
  EtcdHealthReport,
  EtcdRestartResult,
  EtcdSnapshotResult,
} from '../activities/etcd-ops';
import { Failures } from '../runbooks/failures';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { invalidInput, inventoryOf, refuse } from './inventory';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { runbook } from './steps';
import { at, summarized } from './activity-options';

const final = [Failures.EtcdRefused, Failures.EtcdFailed];

/** Looks and quick acts (pre-check, health, compaction): a refusal is final. */
export const check = summarized<Activities>({
  startToCloseTimeout: '3m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: final },
} satisfies ActivityOptions);
/**
 * One member's restart or defragmentation, or a snapshot: an act + a bounded wait that heartbeats.
 * A 30 s heartbeat timeout notices a dead worker quickly; the retry looks before it acts.
 */
export const member = summarized<Activities>({
  startToCloseTimeout: '15m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: final },
} satisfies ActivityOptions);

function etcdNames(inv: Inventory): string[] {
  return inv.nodes.etcd.map((n) => n.hostname);
}

export function checkEtcdMembers(inv: Inventory, members: string[] | undefined): void {
  if (members === undefined) return;
  if (!Array.isArray(members) || members.length === 0)
    invalidInput('members is empty: name one or more etcd members, or leave it out for all');
  const unknown = members.filter((m) => !etcdNames(inv).includes(m));
  if (unknown.length) {
    invalidInput(
      `members ${unknown.join(', ')} not etcd members of cluster ${inv.cluster} (its etcd members: ${etcdNames(inv).join(', ')})`,
    );
  }
}

const describeEtcd = (s: EtcdClusterState) =>
  `leader ${s.leader ?? '(none)'}; ${s.healthyCount}/${s.members.length} healthy (${s.members.map((m) => m.name).join(', ')})`;

/** Followers in inventory order, then the leader: the order of every rolling etcd operation. */
function leaderLast(state: EtcdClusterState, wanted: (name: string) => boolean) {
  const followers = state.members.filter((m) => m.name !== state.leader && wanted(m.name));
  const leader = state.members.find((m) => m.name === state.leader && wanted(m.name));
  return { followers, leader };
}

// ---- etcd restart ----

export interface EtcdRestartInput {
  inventory: InventoryInput;
  /** Only these etcd members (default: all). */
  members?: string[];
  /** Run the pre-check, return the ordered plan per member; restart nothing. */
  dryRun?: boolean;
}

export interface EtcdRestartReport {
  leaderBefore: string;
  leaderAfter: string;
  /** In the order they were restarted: followers first, the leader last. */
  members: EtcdRestartResult[];
}

export async function etcdRestart(input: EtcdRestartInput): Promise<EtcdRestartReport | DryRunReport> {
  const inv = inventoryOf(input);
  checkEtcdMembers(inv, input.members);
  const wanted = (n: string) => !input.members || input.members.includes(n);
  const dry = dryRunning(input);
  return runbook(
    {
      cluster: inv.cluster,
      notify: dry ? undefined : inv.notify,
      operation: 'etcd-restart',
      plan: ['pre-check'],
    },
    async (rb) => {
      const state = await rb.step('pre-check', () =>
        check.etcdPrecheck(`cluster ${inv.cluster}${dry ? ' (dry run)' : ''}`, { inv }),
      );
      const { followers, leader } = leaderLast(state, wanted);
      if (dry) {
        return dryRunReport(inv.cluster, 'etcd-restart', [
          `pre-check passed: ${describeEtcd(state)}`,
          ...followers.map(
            (m) =>
              `restart ${at(inv, m.name)} (follower): systemctl restart etcd, then healthy and caught up (raft index) with a leader`,
          ),
          leader &&
            `restart ${at(inv, leader.name)} (leader, after move-leader): leadership moved to the most caught-up follower, then the same`,
          followers.length === 0 && !leader && 'nothing to restart: no member matches',
        ]);
      }
      const results: EtcdRestartResult[] = [];
      for (const m of followers) {
        results.push(
          await rb.step(
            `restart ${m.name}`,
            () =>
              member.etcdRestartMember(at(inv, m.name), {
                inv,
                member: m.name,
                invocationBefore: m.invocation,
              }),
            { node: m.name },
          ),
        );
      }
      if (leader) {
        results.push(
          await rb.step(
            `restart ${leader.name} (leader, after move-leader)`,
            () =>
              member.etcdRestartMember(at(inv, leader.name), {
                inv,
                member: leader.name,
                invocationBefore: leader.invocation,
              }),
            { node: leader.name },
          ),
        );
      }
      const last = results[results.length - 1];
      return {
        leaderBefore: state.leader!,
        leaderAfter: last?.leaderAfter ?? state.leader!,
        members: results,
      };
    },
  );
}

// ---- etcd maintain ----

export interface EtcdMaintainInput {
  inventory: InventoryInput;
  /** Compact and defragment (default true); false reports health, sizes and alarms only. */
  defrag?: boolean;
  /** Run the health report and pre-check, return the ordered plan; compact and defragment nothing. */
  dryRun?: boolean;
}

export interface EtcdMaintainReport {
  before: EtcdHealthReport;
  compaction?: EtcdCompactResult;
  /** Followers first, the leader last. */
  defrag: EtcdDefragResult[];
  after: EtcdHealthReport;
}

export async function etcdMaintain(input: EtcdMaintainInput): Promise<EtcdMaintainReport | DryRunReport> {
  const inv = inventoryOf(input);
  const defrag = input.defrag ?? true;
  if (typeof defrag !== 'boolean') invalidInput(`defrag ${JSON.stringify(defrag)}: true or false`);
  const plan = ['health', ...(defrag ? ['pre-check', 'compact'] : []), 'health after'];
  const dry = dryRunning(input);
  return runbook(
    { cluster: inv.cluster, notify: dry ? undefined : inv.notify, operation: 'etcd-maintain', plan },
    async (rb) => {
      const before = await rb.step('health', () => check.etcdHealthReport(`cluster ${inv.cluster}`, { inv }));
      if (dry) {
        const state = defrag
          ? await rb.step('pre-check', () =>
              check.etcdPrecheck(`cluster ${inv.cluster} (dry run)`, { inv, allowAlarms: true }),
            )
          : undefined;
        const { followers, leader } = state
          ? leaderLast(state, () => true)
          : { followers: [], leader: undefined };
        return dryRunReport(inv.cluster, 'etcd-maintain', [
          `health: ${before.healthy}/${before.total} healthy, leader ${before.leader ?? '(none)'}; sizes ${before.members
            .map((m) => `${m.member} ${m.dbSizeBytes ?? '?'} B`)
            .join(', ')}${before.warnings.length ? `; warnings: ${before.warnings.join('; ')}` : ''}`,
          state && `pre-check passed: ${describeEtcd(state)}`,
          state && `compact: etcd's keyspace compacted to the current revision (history before it dropped)`,
          ...[...followers, ...(leader ? [leader] : [])].map(
            (m) =>
              `defrag ${at(inv, m.name)}${m === leader ? ' (leader)' : ''}: etcdctl defrag, one member at a time`,
          ),
          !defrag && 'no compaction or defragmentation (defrag false): the report only',
          'health after: sizes and alarms again',
        ]);
      }
      const report: EtcdMaintainReport = { before, defrag: [], after: before };
      if (defrag) {
        const state = await rb.step('pre-check', () =>
          check.etcdPrecheck(`cluster ${inv.cluster}`, { inv, allowAlarms: true }),
        );
        report.compaction = await rb.step('compact', () =>
          check.etcdCompact(`cluster ${inv.cluster}`, { inv }),
        );
        const { followers, leader } = leaderLast(state, () => true);
        for (const m of [...followers, ...(leader ? [leader] : [])]) {
          report.defrag.push(
            await rb.step(
              `defrag ${m.name}${m === leader ? ' (leader)' : ''}`,
              () => member.etcdDefragMember(at(inv, m.name), { inv, member: m.name }),
              { node: m.name },
            ),
          );
        }
      }
      report.after = await rb.step('health after', () =>
        check.etcdHealthReport(`cluster ${inv.cluster}`, { inv }),
      );
      return report;
    },
  );
}

// ---- etcd snapshot ----

export interface EtcdSnapshotInput {
  inventory: InventoryInput;
  /** The member to take it on (default: a healthy follower, so the leader is spared the load). */
  member?: string;
  /** How many of the cluster's snapshots to keep (default 7). */
  keep?: number;
  /** The directory on the Proxmox host (default /var/lib/pgha/etcd-snapshots/<cluster>). */
  dir?: string;
  /** Run the health report, return where the snapshot would be taken and kept; save nothing. */
  dryRun?: boolean;
}

/** `etcd-<cluster>-20261129T110500Z.db` for a time (the run's start: the same name on every retry). */
export function snapshotName(cluster: string, at: Date): string {
  return `etcd-${cluster}-${at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}.db`;
}

export async function etcdSnapshot(input: EtcdSnapshotInput): Promise<EtcdSnapshotResult | DryRunReport> {
  const inv = inventoryOf(input);
  if (input.member !== undefined) checkEtcdMembers(inv, [input.member]);
  if (input.keep !== undefined && (!Number.isInteger(input.keep) || input.keep < 1)) {
    invalidInput(`keep ${JSON.stringify(input.keep)}: give a whole number ≥ 1 (how many snapshots to keep)`);
  }
  const plan = ['health', 'snapshot'];
  const dry = dryRunning(input);
  return runbook(
    { cluster: inv.cluster, notify: dry ? undefined : inv.notify, operation: 'etcd-snapshot', plan },
    async (rb) => {
      const health = await rb.step('health', () => check.etcdHealthReport(`cluster ${inv.cluster}`, { inv }));
      const on =
        input.member ??
        health.members.find((m) => m.healthy && !m.isLeader)?.member ??
        health.members.find((m) => m.healthy)?.member;
      if (!on) {
        refuse(
          `no healthy etcd member to take a snapshot on (${health.warnings.join('; ')}); nothing was done`,
          Failures.EtcdRefused,
        );
      }
      const name = snapshotName(inv.cluster, workflowInfo().startTime);
      if (dry) {
        const dir = input.dir ?? `/var/lib/pgha/etcd-snapshots/${inv.cluster}`;
        return dryRunReport(inv.cluster, 'etcd-snapshot', [
          `health: ${health.healthy}/${health.total} healthy, leader ${health.leader ?? '(none)'}`,
          `snapshot on ${at(inv, on)}${input.member ? '' : ' (a healthy follower: the leader is spared the load)'}: etcdctl snapshot save ${name}, checked with snapshot status`,
          `copy to the Proxmox host: ${dir}/${name}, hash-checked; keep the newest ${input.keep ?? 7} of the cluster's snapshots`,
        ]);
      }
      return rb.step(
        'snapshot',
        () =>
          member.etcdSnapshotSave(at(inv, on), { inv, member: on, name, keep: input.keep, dir: input.dir }),
        { node: on },
      );
    },
  );
}

// ---- the scoped clean of Patroni's keys ----

export interface PatroniDcsCleanInput {
  inventory: InventoryInput;
  /** How long to wait for `pgha approve <id> --gate before-delete` (default 1h). */
  approvalTimeout?: Duration;
  /** Run the check, return the keys that would be deleted; no gate, delete nothing. */
  dryRun?: boolean;
}

export interface PatroniDcsCleanReport {
  check: DcsCleanCheck;
  approvedBy: string;
  result: DcsCleanResult;
}

export async function patroniDcsClean(
  input: PatroniDcsCleanInput,
): Promise<PatroniDcsCleanReport | DryRunReport> {
  const inv = inventoryOf(input);
  const dry = dryRunning(input);
  const plan = dry ? ['check'] : ['check', { gate: 'before-delete' }, 'delete'];
  return runbook(
    { cluster: inv.cluster, notify: dry ? undefined : inv.notify, operation: 'etcd-clean-dcs', plan },
    async (rb) => {
      const seen = await rb.step('check', () => check.dcsCleanCheck(`cluster ${inv.cluster}`, { inv }));
      if (dry) {
        return dryRunReport(inv.cluster, 'etcd-clean-dcs', [
          `check passed: Patroni stopped on ${seen.members.map((m) => `${m.member} (${m.service})`).join(', ')}`,
          `gate before-delete: wait up to ${String(input.approvalTimeout ?? '1h')} for pgha approve`,
          `delete the ${seen.keys.length} keys under ${seen.prefix} (only these): ${seen.keys.join(', ') || '(none)'}; then none left`,
        ]);
      }
      const decision = await rb.approval('before-delete', { timeout: input.approvalTimeout ?? '1h' });
      const result = await rb.step('delete', () => check.dcsCleanDelete(`cluster ${inv.cluster}`, { inv }));
      return { check: seen, approvedBy: decision.approver, result };
    },
  );
}
