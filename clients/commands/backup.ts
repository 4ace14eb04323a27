/**
 *   pgha backup --cluster FILE [--kind physical|logical]
 *
 * Starts the backup runbook and prints what it recorded (backup id, LSNs, size, verification).
 */
import type { Command } from 'commander';
import type { LogicalBackupResult, PhysicalBackupResult } from '../../activities/backup';
import type { BackupResult, backup } from '../../workflows/backup';
import { withClient } from '../connection';
import { inventoryInput, noBackupCt } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';
import { orPlan } from '../../workflows/dry-run';

export function describeLogical(r: LogicalBackupResult): string {
  return [
    `logical backup ${r.name}: ${r.verified ? 'checksums verified' : 'NOT verified'}, ${r.databases.length} database(s) (${r.databases.join(', ')}) + globals`,
    `  ${r.path} in the backup CT, ${(r.sizeBytes / 1048576).toFixed(1)} MiB, ended ${r.endTime} (${r.durationSeconds} s), PostgreSQL ${r.postgresVersion}`,
  ].join('\n');
}

export function describeBackupResult(r: BackupResult): string {
  const text = r.kind === 'logical' ? describeLogical(r) : describeBackup(r);
  const k = r.retention;
  return k
    ? `${text}\n  retention ${k.policy}: deleted ${k.deleted.length ? k.deleted.join(', ') : 'nothing'}; kept ${k.kept.length}`
    : text;
}

export function describeBackup(r: PhysicalBackupResult): string {
  return [
    `backup ${r.backupId} (${r.name}) of server ${r.server}: ${r.status}, ${r.verified ? 'verified' : 'NOT verified'}, WAL ${r.walComplete ? 'complete' : 'INCOMPLETE'}`,
    `  LSN ${r.beginLsn} → ${r.endLsn} on timeline ${r.timeline}, ${r.beginTime} → ${r.endTime} (${r.durationSeconds.toFixed(1)} s)`,
    `  ${(r.sizeBytes / 1048576).toFixed(1)} MiB, PostgreSQL ${r.postgresVersion}; marker ${r.marker.id} at ${r.marker.lsn} (${r.marker.at}) on ${r.marker.leader}`,
  ].join('\n');
}

export function register(program: Command): void {
  program
    .command('backup')
    .description('take a backup with Barman on the backup CT, then verify it (verify-backup, check-backup)')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--kind <kind>',
      'physical (Barman) or logical (pg_dump of every database + globals, from a replica)',
      'physical',
    )
    .option(
      '--dry-run',
      'look (the leader, barman check) and print the ordered plan per node; back up nothing',
    )
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(async (o: { cluster: string; kind: string; dryRun?: boolean; wait: boolean }) => {
      if (o.kind !== 'physical' && o.kind !== 'logical') {
        console.error(`pgha: --kind ${o.kind}: expected physical or logical`);
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
        const handle = await startRunbook<typeof backup>(client, {
          workflow: 'backup',
          args: [
            {
              inventory: input,
              kind: o.kind as 'physical' | 'logical',
              ...(o.dryRun ? { dryRun: true } : {}),
            },
          ],
          cluster: inventory.cluster,
          operation: 'backup',
        });
        console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
        if (!o.wait) return;
        const run = await watchRun(client, handle);
        if (run.status === 'COMPLETED') console.log(orPlan(describeBackupResult)(await handle.result()));
      });
    });
}
