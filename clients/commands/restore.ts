/**
 *   pgha restore --cluster FILE --backup <id|latest> --mode new-cluster|in-place
 *     [--target-time T | --target-lsn L | --target-name N | --target-immediate]
 *     [--into OTHER_INVENTORY] [--approve] [--keep-old] [--dry-run] [--no-wait]
 *
 * Starts the restore runbook, prints its plan (the backup, the recoverable window, what will be
 * lost) as soon as it is made, says how to approve, and follows the run. Flags are checked before
 * anything starts (exit 2 naming the flag).
 */
import type { Command } from 'commander';
import type { WorkflowHandle } from '@temporalio/client';
import type { RestorePlan } from '../../activities/restore';
import { describeTarget, parseRestoreTarget } from '../../runbooks/restore-target';
import { parseBackupRef } from '../../runbooks/retention';
import { restorePlanQuery, type RestoreResult, type restore } from '../../workflows/restore';
import { withClient } from '../connection';
import { inventoryInput, noBackupCt } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

interface Opts {
  cluster: string;
  backup: string;
  mode: string;
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  targetImmediate?: boolean;
  into?: string;
  approve?: boolean;
  keepOld?: boolean;
  dryRun?: boolean;
  wait: boolean;
}

export function describePlan(p: RestorePlan): string {
  const b = p.backup;
  return [
    `restore plan (${p.mode}): backup ${b.backupId}${b.name ? ` (${b.name})` : ''} of ${p.source} (ends ${b.endTime}, LSN ${b.consistentLsn}, timeline ${b.timeline}) → ${p.cluster}, to ${describeTarget(p.target)}`,
    `  recoverable window: ${p.window.fromTime} (LSN ${p.window.fromLsn}) to ${p.window.toTime} (LSN ${p.window.toLsn})`,
    `  restores on ${p.restoreOn}, then the others clone from it: ${p.members.map((m) => `${m.hostname} ${m.hasData ? `data (system id ${m.systemId ?? '?'})` : 'empty'}`).join(', ')}`,
    `  LOST: ${p.loses}`,
  ].join('\n');
}

export function describeRestore(r: RestoreResult): string {
  if (r.outcome === 'dry-run') return `${describePlan(r.plan)}\ndry run: nothing was stopped or changed`;
  const v = r.verified;
  return [
    `restored backup ${r.plan.backup.backupId} into ${r.plan.cluster}: leader ${r.leader}, timeline ${v?.timeline}`,
    `  recovery stopped: ${v?.stoppedAt.replace(/\t/g, ' ')}`,
    `  marker ${v?.marker.expected ? `${v.marker.expected} ${v.marker.found ? 'found' : 'MISSING'}` : 'none (not a pgha backup)'}`,
    `  staged ${r.staged?.walFiles} WAL files, ${Math.round((r.staged?.bytes ?? 0) / 1048576)} MiB in ${r.staged?.seconds} s; old data directories ${r.oldDirectories}`,
    `  first backup of the new timeline: ${r.firstBackup ?? '-'}`,
  ].join('\n');
}

/** The plan as soon as the run has made it (bounded: 5 min), or undefined. */
async function waitPlan(handle: WorkflowHandle): Promise<RestorePlan | undefined> {
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const p = await handle.query(restorePlanQuery).catch(() => undefined);
    if (p) return p;
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return undefined;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return undefined;
}

export function register(program: Command): void {
  program
    .command('restore')
    .description(
      'restore a physical backup: in place (approval, old data kept aside until verified, put back on failure) or into a new cluster (--into), optionally to a point in time',
    )
    .requiredOption('--cluster <file>', 'inventory YAML of the cluster whose backup is restored')
    .option(
      '--backup <id>',
      'latest (the newest before the target), a Barman backup id or a pgha backup name',
      'latest',
    )
    .requiredOption('--mode <mode>', 'new-cluster | in-place')
    .option('--target-time <time>', 'recover to this time (ISO 8601 with its zone)')
    .option('--target-lsn <lsn>', 'recover to this LSN')
    .option('--target-name <name>', 'recover to this restore point')
    .option('--target-immediate', "recover to the backup's consistent point only")
    .option('--into <file>', 'new-cluster: the inventory of the CTs restored into')
    .option('--approve', 'wait for `pgha approve` also where it is not mandatory')
    .option('--keep-old', 'keep the old data directories after the verified restore')
    .option('--dry-run', 'print the plan; stop and change nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(async (o: Opts) => {
      try {
        if (o.mode !== 'new-cluster' && o.mode !== 'in-place')
          throw new Error(`--mode ${o.mode}: give new-cluster or in-place`);
        if (o.mode === 'new-cluster' && !o.into)
          throw new Error('--mode new-cluster needs --into OTHER_INVENTORY');
        if (o.mode === 'in-place' && o.into) throw new Error('--into is for --mode new-cluster');
        parseBackupRef('--backup', o.backup);
        parseRestoreTarget(o);
      } catch (err) {
        console.error(`pgha: ${(err as Error).message}`);
        process.exitCode = 2;
        return;
      }
      await withClient(async (client) => {
        const { input, inventory } = await inventoryInput(o.cluster);
        const noBackup = noBackupCt(o.cluster, inventory);
        if (noBackup) {
          console.error(`pgha: ${noBackup}`);
          process.exitCode = 2;
          return;
        }
        const into = o.into ? await inventoryInput(o.into) : undefined;
        const handle = await startRunbook<typeof restore>(client, {
          workflow: 'restore',
          args: [
            {
              inventory: input,
              backup: o.backup,
              mode: o.mode as 'new-cluster' | 'in-place',
              ...(into ? { into: into.input } : {}),
              ...(o.targetTime !== undefined ? { targetTime: o.targetTime } : {}),
              ...(o.targetLsn !== undefined ? { targetLsn: o.targetLsn } : {}),
              ...(o.targetName !== undefined ? { targetName: o.targetName } : {}),
              ...(o.targetImmediate ? { targetImmediate: true } : {}),
              ...(o.approve ? { approve: true } : {}),
              ...(o.keepOld ? { keepOld: true } : {}),
              ...(o.dryRun ? { dryRun: true } : {}),
            },
          ],
          cluster: (into?.inventory ?? inventory).cluster,
          operation: 'restore',
        });
        console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
        if (!o.dryRun) {
          const plan = await waitPlan(handle);
          if (plan) console.log(describePlan(plan));
          if (plan && (o.mode === 'in-place' || o.approve || plan.members.some((m) => m.hasData)))
            console.log(`approve with: pgha approve ${handle.workflowId} --gate restore --by NAME`);
        }
        if (!o.wait) return;
        const run = await watchRun(client, handle);
        if (run.status === 'COMPLETED') console.log(describeRestore(await handle.result()));
      });
    });
}
