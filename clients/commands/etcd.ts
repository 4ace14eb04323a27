/**
 * The etcd runbooks from the command line, with live step progress like `pgha deploy`:
 *
 *   pgha etcd restart   --cluster FILE [--member etcd2 ...]
 *   pgha etcd maintain  --cluster FILE [--report-only]
 *   pgha etcd snapshot  --cluster FILE [--member etcd2] [--keep 7] [--dir /var/lib/pgha/etcd-snapshots/<cluster>]
 *   pgha etcd clean-dcs --cluster FILE [--approval-timeout 1h]   (then: pgha approve <id> --gate before-delete --by NAME)
 *   pgha etcd replace   --cluster FILE --member etcd3 [--vmid N] [--ip A]   (the file gets N/A only on success)
 *
 * This file only parses and starts; the runbooks are workflows/etcd.ts. An unknown member is refused
 * here before anything starts (exit status 2).
 */
import type { Client } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import type { EtcdHealthReport, EtcdSnapshotResult } from '../../activities/etcd-ops';
import type { Inventory } from '../../runbooks/schema';
import type {
  EtcdMaintainReport,
  EtcdRestartReport,
  PatroniDcsCleanReport,
  etcdMaintain,
  etcdRestart,
  etcdSnapshot,
  patroniDcsClean,
} from '../../workflows/etcd';
import type { EtcdReplaceReport, etcdReplace } from '../../workflows/etcd-replace';
import { describeDryRun, isDryRun, orPlan, type DryRunReport } from '../../workflows/dry-run';
import { withClient } from '../connection';
import { checkedEdit, editInventoryFile, setEtcdMemberAt } from '../inventory-edit';
import { readFile } from 'node:fs/promises';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

class UsageError extends Error {}

function checkEtcdMembers(inv: Inventory, members: string[]): void {
  const known = inv.nodes.etcd.map((n) => n.hostname);
  const unknown = members.filter((m) => !known.includes(m));
  if (unknown.length) {
    throw new UsageError(
      `--member ${unknown.join(', ')}: not an etcd member of cluster ${inv.cluster} (its etcd members: ${known.join(', ')})`,
    );
  }
}

const mib = (n: number | undefined) => (n === undefined ? '?' : `${(n / 1024 / 1024).toFixed(2)} MiB`);

export function describeEtcdRestart(r: EtcdRestartReport): string {
  const lines = [
    `etcd leader ${r.leaderBefore}${r.leaderAfter !== r.leaderBefore ? ` → ${r.leaderAfter}` : ''}`,
  ];
  for (const m of r.members) {
    lines.push(
      `  ${m.member.padEnd(8)} ${m.action === 'restarted' ? 'restarted' : 'found restarted already (resumed run)'}` +
        `${m.leaderMovedTo ? `, leadership moved to ${m.leaderMovedTo} first` : ''}` +
        `, raft index ${m.raftIndex ?? '?'} (leader ${m.leaderRaftIndex ?? '?'}) (${(m.tookMs / 1000).toFixed(1)} s)`,
    );
  }
  return lines.join('\n');
}

export function describeEtcdHealth(h: EtcdHealthReport): string {
  const lines = [
    `etcd: ${h.healthy}/${h.total} healthy, leader ${h.leader ?? 'none'}, quota ${mib(h.quotaBytes)}`,
  ];
  for (const m of h.members) {
    lines.push(
      `  ${m.member.padEnd(8)} ${m.healthy ? 'healthy  ' : 'UNHEALTHY'} ${m.isLeader ? 'leader  ' : 'follower'} db ${mib(m.dbSizeBytes)}` +
        ` (in use ${mib(m.dbSizeInUseBytes)}, ${m.quotaShare === undefined ? '?' : (m.quotaShare * 100).toFixed(2)}% of quota)`,
    );
  }
  for (const w of h.warnings) lines.push(`  warning: ${w}`);
  if (h.alarms.length === 0) lines.push('  alarms: none');
  return lines.join('\n');
}

export function describeEtcdMaintain(r: EtcdMaintainReport): string {
  const lines = [describeEtcdHealth(r.before)];
  if (r.compaction) {
    lines.push(`compacted at revision ${r.compaction.revision}${r.compaction.compacted ? '' : ' (already)'}`);
  }
  for (const d of r.defrag) {
    lines.push(
      `defragmented ${d.member}${d.wasLeader ? ' (leader)' : ''}: ${mib(d.sizeBefore)} → ${mib(d.sizeAfter)} (${(d.tookMs / 1000).toFixed(1)} s)`,
    );
  }
  lines.push('after:', describeEtcdHealth(r.after));
  return lines.join('\n');
}

export function describeEtcdSnapshot(r: EtcdSnapshotResult): string {
  return [
    `snapshot of ${r.member}: ${r.path}${r.created ? '' : ' (found in place: a resumed run)'}`,
    `  sha256 ${r.sha256}, revision ${r.revision ?? '?'}, ${r.totalKeys ?? '?'} keys, ${mib(r.sizeBytes)}`,
    `  kept ${r.kept.length}: ${r.kept.join(', ')}`,
    ...(r.removed.length ? [`  removed (retention): ${r.removed.join(', ')}`] : []),
  ].join('\n');
}

export function describeEtcdReplace(r: EtcdReplaceReport): string {
  const j = r.joined;
  return [
    `${j.member} replaced: member ${j.memberId} in CT ${r.plan.target.vmid} (${r.plan.target.ip}); ` +
      `old member ${r.removed}, new member ${r.added}; etcd leader ${j.leader}, Patroni leader ${j.patroniLeader}`,
    ...j.members.map(
      (m) =>
        `  ${m.name.padEnd(8)} ${m.healthy ? 'healthy  ' : 'UNHEALTHY'} raft term ${m.raftTerm ?? '?'} index ${m.raftIndex ?? '?'}`,
    ),
  ].join('\n');
}

async function follow<T>(
  client: Client,
  handle: Awaited<ReturnType<typeof startRunbook>>,
  wait: boolean,
  describe: (r: T) => string,
) {
  console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
  if (!wait) return;
  const o = await watchRun(client, handle);
  if (o.status === 'COMPLETED') console.log(describe((await handle.result()) as T));
}

async function followReplace(
  client: Client,
  handle: Awaited<ReturnType<typeof startRunbook>>,
  wait: boolean,
  file: string,
  member: string,
  to: { vmid?: number; ip?: string },
) {
  console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
  const moved = to.vmid !== undefined || to.ip !== undefined;
  if (!wait) {
    if (moved) console.log(`when it succeeds, set ${member}'s vmid/ip in ${file} yourself (--no-wait)`);
    return;
  }
  const o = await watchRun(client, handle);
  if (o.status !== 'COMPLETED') return;
  const r = (await handle.result()) as EtcdReplaceReport | DryRunReport;
  if (isDryRun(r)) {
    console.log(describeDryRun(r));
    return;
  }
  console.log(describeEtcdReplace(r));
  if (moved) {
    const changed = await editInventoryFile(file, (t) => setEtcdMemberAt(t, member, to));
    console.log(
      changed
        ? `${file}: ${member} now ${[to.vmid !== undefined && `vmid ${to.vmid}`, to.ip && `ip ${to.ip}`].filter(Boolean).join(', ')}`
        : `${file}: ${member} already there`,
    );
  }
}

/** The dry-run flag as the workflow input carries it (absent unless asked: older workers never see it). */
const dry = (o: { dryRun?: boolean }) => (o.dryRun ? { dryRun: true } : {});

async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`pgha: ${err.message}`);
    process.exitCode = 2;
  }
}

export function register(program: Command): void {
  const etcd = program
    .command('etcd')
    .description("the cluster's etcd: restart, maintain, snapshot, clean-dcs, replace");
  etcd
    .command('restart')
    .description(
      'rolling restart of etcd: one member at a time, never below quorum, the leader last after move-leader',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--member <name...>', 'only these etcd members (default: all)')
    .option('--dry-run', 'run the pre-check and print the ordered plan per member; restart nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action((o: { cluster: string; member?: string[]; dryRun?: boolean; wait: boolean }) =>
      guarded(() =>
        withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          if (o.member) checkEtcdMembers(inventory, o.member);
          const handle = await startRunbook<typeof etcdRestart>(client, {
            workflow: 'etcdRestart',
            args: [{ inventory: input, members: o.member, ...dry(o) }],
            cluster: inventory.cluster,
            operation: 'etcd-restart',
          });
          await follow(client, handle, o.wait, orPlan(describeEtcdRestart));
        }),
      ),
    );
  etcd
    .command('maintain')
    .description(
      'health, DB size against the quota, alarms; compaction, then defragmentation one member at a time (leader last)',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--report-only', 'health, sizes and alarms only: no compaction, no defragmentation')
    .option(
      '--dry-run',
      'run the health report and pre-check, print the ordered plan; compact and defragment nothing',
    )
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action((o: { cluster: string; reportOnly?: boolean; dryRun?: boolean; wait: boolean }) =>
      guarded(() =>
        withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          const handle = await startRunbook<typeof etcdMaintain>(client, {
            workflow: 'etcdMaintain',
            args: [{ inventory: input, defrag: !o.reportOnly, ...dry(o) }],
            cluster: inventory.cluster,
            operation: 'etcd-maintain',
          });
          await follow(client, handle, o.wait, orPlan(describeEtcdMaintain));
        }),
      ),
    );
  etcd
    .command('snapshot')
    .description(
      "etcdctl snapshot save on a member, verified, stored in the Proxmox host's directory, with a retention",
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--member <name>', 'the member to take it on (default: a healthy follower)')
    .option('--keep <n>', 'how many snapshots of this cluster to keep', '7')
    .option('--dir <path>', 'directory on the Proxmox host (default /var/lib/pgha/etcd-snapshots/<cluster>)')
    .option('--dry-run', 'check health and print where the snapshot would be taken and kept; save nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(
      (o: {
        cluster: string;
        member?: string;
        keep: string;
        dir?: string;
        dryRun?: boolean;
        wait: boolean;
      }) =>
        guarded(async () => {
          const keep = Number(o.keep);
          if (!Number.isInteger(keep) || keep < 1)
            throw new UsageError(`--keep ${o.keep}: a whole number ≥ 1`);
          await withClient(async (client) => {
            const { input, inventory } = await inventoryInput(o.cluster);
            if (o.member) checkEtcdMembers(inventory, [o.member]);
            const handle = await startRunbook<typeof etcdSnapshot>(client, {
              workflow: 'etcdSnapshot',
              args: [{ inventory: input, member: o.member, keep, dir: o.dir, ...dry(o) }],
              cluster: inventory.cluster,
              operation: 'etcd-snapshot',
            });
            await follow(client, handle, o.wait, orPlan(describeEtcdSnapshot));
          });
        }),
    );
  etcd
    .command('clean-dcs')
    .description(
      "delete this cluster's Patroni keys (/<namespace>/<scope>/ only) after an approval; refused while any Patroni runs",
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--approval-timeout <duration>',
      'how long to wait for `pgha approve ... --gate before-delete`',
      '1h',
    )
    .option('--dry-run', 'run the check and print the keys that would be deleted; no gate, delete nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action((o: { cluster: string; approvalTimeout: string; dryRun?: boolean; wait: boolean }) =>
      guarded(() =>
        withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          const handle = await startRunbook<typeof patroniDcsClean>(client, {
            workflow: 'patroniDcsClean',
            args: [{ inventory: input, approvalTimeout: o.approvalTimeout as Duration, ...dry(o) }],
            cluster: inventory.cluster,
            operation: 'etcd-clean-dcs',
          });
          if (!o.dryRun)
            console.log(`approve with: pgha approve ${handle.workflowId} --gate before-delete --by NAME`);
          await follow(
            client,
            handle,
            o.wait,
            orPlan(
              (r: PatroniDcsCleanReport) =>
                `deleted ${r.result.deleted} key(s) under ${r.result.prefix} (approved by ${r.approvedBy}); ${r.result.left} left`,
            ),
          );
        }),
      ),
    );
  etcd
    .command('replace')
    .description(
      'replace an etcd member that is gone for good: member remove, member add, etcd on the fresh CT (initial-cluster-state existing)',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--member <name>', 'the etcd member to replace, e.g. etcd3')
    .option('--vmid <n>', "the fresh CT's vmid (default: the member's own)")
    .option('--ip <address>', "the fresh CT's address (default: the member's own)")
    .option('--dry-run', 'run the pre-check and print the ordered plan; remove, add and install nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(
      (o: { cluster: string; member: string; vmid?: string; ip?: string; dryRun?: boolean; wait: boolean }) =>
        guarded(async () => {
          if (o.vmid !== undefined && !/^[1-9]\d{2,8}$/.test(o.vmid))
            throw new UsageError(`--vmid ${o.vmid}: a Proxmox CT id (100-999999999)`);
          const to = { vmid: o.vmid === undefined ? undefined : Number(o.vmid), ip: o.ip };
          await withClient(async (client) => {
            const { input, inventory } = await inventoryInput(o.cluster);
            checkEtcdMembers(inventory, [o.member]);
            // The inventory as it will be: checked now (a clash, an address outside the subnet), not after.
            try {
              checkedEdit(o.cluster, await readFile(o.cluster, 'utf8'), (t) =>
                setEtcdMemberAt(t, o.member, to),
              );
            } catch (err) {
              throw new UsageError(`--vmid/--ip: ${(err as Error).message}`);
            }
            const handle = await startRunbook<typeof etcdReplace>(client, {
              workflow: 'etcdReplace',
              args: [{ inventory: input, member: o.member, ...to, ...dry(o) }],
              cluster: inventory.cluster,
              operation: 'etcd-replace',
            });
            await followReplace(client, handle, o.wait, o.cluster, o.member, to);
          });
        }),
    );
}
