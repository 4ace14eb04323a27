/**
 *   pgha drill --cluster FILE [--backup latest|ID|NAME] [--no-wait]
 *
 * Starts the restoreDrill runbook and prints what it found: the backup, the RTO, the restored LSN
 * against the backup's end, the marker row, pg_amcheck and the row counts. Exit 1 when the drill
 * failed (the problems are named).
 */
import type { Command } from 'commander';
import { parseBackupRef } from '../../runbooks/retention';
import type { RestoreDrillResult, restoreDrill } from '../../workflows/restore-drill';
import { withClient } from '../connection';
import { inventoryInput, noBackupCt } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';
import { orPlan } from '../../workflows/dry-run';

export const checkDrillBackup = (b: string) => parseBackupRef('--backup', b);

export function describeDrill(r: RestoreDrillResult): string {
  const c = r.checks;
  const lines = [
    `restore drill of backup ${r.backup.backupId}${r.backup.name ? ` (${r.backup.name})` : ''}: ${r.problems.length ? 'FAILED' : 'passed'}`,
    `  RTO ${r.restored.rtoSeconds} s (restore start ${r.restored.startedAt} → accepting queries ${r.restored.readyAt})`,
    `  restored LSN ${c.restoredLsn} vs the backup's end ${c.consistentLsn} (Barman's end_lsn ${c.endLsn}): ${c.lsnReached ? 'reached' : 'NOT reached'}`,
    `  verify-backup ${r.verify.ok ? 'OK' : `FAILED: ${r.verify.detail}`}; pg_amcheck ${c.amcheck.ok ? 'OK' : `FAILED: ${c.amcheck.detail}`}`,
    `  marker ${c.marker.expected ? `${c.marker.expected}: ${c.marker.found ? `found (LSN ${c.marker.lsn})` : 'MISSING'}` : 'none (not a pgha backup)'}`,
    `  row counts: ${c.counts.length ? c.counts.map((x) => `${x.database}.${x.table} ${x.restored ?? '-'}${x.ok ? '' : ` (recorded ${x.atMarker ?? '?'}..${x.atEnd})`}`).join(', ') : 'none recorded with this backup'}`,
    `  scratch copy ${r.teardown.removed ? 'removed' : 'was not there'}`,
  ];
  return [...lines, ...r.problems.map((p) => `  problem: ${p}`)].join('\n');
}

export function register(program: Command): void {
  program
    .command('drill')
    .description(
      'restore drill: restore a backup into a scratch copy on the backup CT, start it, check it (marker, pg_amcheck, row counts, LSN, RTO), remove it',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--backup <id>', 'latest, a Barman backup id or a pgha backup name', 'latest')
    .option('--dry-run', 'choose the backup and print the ordered plan; restore and start nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(async (o: { cluster: string; backup: string; dryRun?: boolean; wait: boolean }) => {
      try {
        checkDrillBackup(o.backup);
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
        const handle = await startRunbook<typeof restoreDrill>(client, {
          workflow: 'restoreDrill',
          args: [{ inventory: input, backup: o.backup, ...(o.dryRun ? { dryRun: true } : {}) }],
          cluster: inventory.cluster,
          operation: 'drill',
        });
        console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
        if (!o.wait) return;
        const run = await watchRun(client, handle);
        // a failed drill: watchRun printed its message (every problem named) and set exit 1
        if (run.status === 'COMPLETED') console.log(orPlan(describeDrill)(await handle.result()));
      });
    });
}
