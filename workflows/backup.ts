/**
 * backup — "take a backup of the cluster, off the database nodes, and check it":
 *
 *   marker row on the leader → `barman backup` on the backup CT (named after the marker, so a
 *   resumed run finds the backup it started instead of taking a second) → verify-backup and
 *   check-backup → the result: backup id, begin/end LSN and time, timeline, size, duration, version.
 *
 * The data goes from the leader to the backup CT; the workflow only ever sees its description.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PhysicalBackupResult } from '../activities/backup';
import { Failures } from '../runbooks/failures';
import type { InventoryInput } from '../runbooks/schema';
import { activityOptions } from './activity-options';
import { inventoryOf, refuse } from './inventory';
import { runbook } from './steps';

export interface BackupInput {
  inventory: InventoryInput;
  /** physical (Barman, the default); logical is not implemented yet. */
  kind?: 'physical';
}

const act = proxyActivities<Activities>(activityOptions.longWait);

/** The backup's name: from the workflow id (stable across retries and worker restarts). */
export function backupName(workflowId: string): string {
  const slug = workflowId
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `pgha-${slug}`.slice(0, 85);
}

export async function backup(input: BackupInput): Promise<PhysicalBackupResult> {
  const inv = inventoryOf(input);
  if (inv.nodes.backup.length === 0)
    refuse(
      `cluster ${inv.cluster} has no backup CT: add nodes.backup to its inventory and deploy`,
      Failures.InvalidInventory,
    );
  if ((input.kind ?? 'physical') !== 'physical')
    refuse(`backup kind ${String(input.kind)}: only physical is available`, Failures.InvalidInput);
  const name = backupName(workflowInfo().workflowId);
  return runbook({ cluster: inv.cluster, operation: 'backup', plan: ['backup'] }, (rb) =>
    rb.step('backup', () => act.physicalBackup({ inv, name })),
  );
}
