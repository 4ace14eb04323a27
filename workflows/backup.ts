/**
 * backup — "take a backup of the cluster, off the database nodes, and check it":
 *
 *   marker row on the leader → `barman backup` on the backup CT (named after the marker, so a
 *   resumed run finds the backup it started instead of taking a second) → verify-backup and
 *   check-backup → the result: backup id, begin/end LSN and time, timeline, size, duration, version;
 *   then, when the run carries a retention policy (a schedule's), Barman's retention applied: what
 *   it marks OBSOLETE is deleted.
 *
 * The data goes from the leader to the backup CT; the workflow only ever sees its description.
 */
import { patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { LogicalBackupResult, PhysicalBackupResult, RetentionResult } from '../activities/backup';
import { Failures } from '../runbooks/failures';
import { parseRetention } from '../runbooks/retention';
import type { InventoryInput } from '../runbooks/schema';
import { activityOptions, at, summarized } from './activity-options';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { inventoryOf, invalidInput, refuse } from './inventory';
import { Patches } from './patches';
import { recordBackup } from './metrics';
import { runbook } from './steps';

export interface BackupInput {
  inventory: InventoryInput;
  /** physical (Barman, the default) or logical (pg_dump of every database + globals, from a replica). */
  kind?: 'physical' | 'logical';
  /** Barman's retention policy applied after a successful backup (schedules set it). */
  retention?: string;
  /** Look (the leader; for physical, barman check), return the ordered plan per node; back up and delete nothing. */
  dryRun?: boolean;
}

/** The retention's outcome (Barman's for physical; pgha's over the dump directories for logical). */
export type BackupRetention = Pick<RetentionResult, 'policy' | 'deleted' | 'kept'> & { configured?: boolean };
export type BackupResult = (PhysicalBackupResult | LogicalBackupResult) & { retention?: BackupRetention };

const act = proxyActivities<Activities>(activityOptions.longWait);
/** The dry run's looks: quick reads. */
const look = summarized<Activities>('gate');

/**
 * The backup's name: from the workflow id and, since the `backup-name-per-run` patch, the run's
 * start time and the end of its run id — stable across retries and worker restarts, new for every
 * run (the CLI reuses the id `backup-<cluster>` once the previous run ended, and a second run can
 * start within the same second; a name found again would be the old backup).
 */
export function backupName(workflowId: string, run?: { startTime: Date; runId: string }): string {
  const slug = workflowId
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (!run) return `pgha-${slug}`.slice(0, 85);
  const at = run.startTime
    .toISOString()
    .replace(/\.\d+Z$/, '')
    .replace(/[-:]/g, '')
    .toLowerCase();
  // a run id's last hex digits are random (its first ones are a timestamp in UUIDv7)
  const run6 = run.runId
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '')
    .slice(-6);
  return `pgha-${slug.slice(0, 60).replace(/-+$/, '')}-${at}-${run6}`;
}

export async function backup(input: BackupInput): Promise<BackupResult | DryRunReport> {
  const inv = inventoryOf(input);
  if (inv.nodes.backup.length === 0)
    refuse(
      `cluster ${inv.cluster} has no backup CT: add nodes.backup to its inventory and deploy`,
      Failures.InvalidInventory,
    );
  const kind = input.kind ?? 'physical';
  if (kind !== 'physical' && kind !== 'logical')
    refuse(`backup kind ${String(kind)}: expected physical or logical`, Failures.InvalidInput);
  let retention: string | undefined;
  if (input.retention !== undefined) {
    try {
      retention = parseRetention('retention', input.retention);
    } catch (err) {
      invalidInput((err as Error).message);
    }
  }
  const info = workflowInfo();
  const name = patched(Patches.backupNamePerRun)
    ? backupName(info.workflowId, { startTime: info.startTime, runId: info.runId })
    : backupName(info.workflowId);
  if (dryRunning(input)) {
    const ct = inv.nodes.backup[0]!;
    return runbook({ cluster: inv.cluster, operation: 'backup', plan: ['pre-check'] }, async (rb) => {
      const { leader, check } = await rb.step('pre-check', async () => ({
        leader: await look.findLeader(`cluster ${inv.cluster} (dry run)`, { inv }),
        check:
          kind === 'physical'
            ? await look.barmanCheck(`barman check on ${at(inv, ct.hostname)} (dry run)`, { inv })
            : undefined,
      }));
      const failing = check?.checks.filter((c) => !c.ok).map((c) => `${c.name} (${c.detail})`) ?? [];
      return dryRunReport(inv.cluster, 'backup', [
        `pre-check: leader ${leader ?? '(none found: the backup would fail)'}${check ? `; barman check ${check.ok ? 'passes' : `FAILS: ${failing.join(', ')}`}` : ''}`,
        ...(kind === 'physical'
          ? [
              `marker row: one row written on leader ${leader ? at(inv, leader) : '(none)'}, and the largest tables' row counts recorded`,
              `backup on ${at(inv, ct.hostname)}: barman backup --name ${name} ${check?.server ?? inv.cluster} (from the leader through HAProxy's write port), waited for until DONE`,
              `verify on ${at(inv, ct.hostname)}: barman verify-backup and check-backup of it`,
            ]
          : [
              `dump on ${at(inv, ct.hostname)}: pg_dump -Fc of every database and pg_dumpall --globals-only from a replica (HAProxy's read port) into ${inv.backup.storage.path}/logical/${name}/, then SHA256SUMS checked`,
            ]),
        retention !== undefined &&
          `retention ${retention}: ${kind === 'physical' ? "Barman's retention marks OBSOLETE backups, deleted" : 'the dump directories outside it deleted'}`,
      ]);
    });
  }
  const plan = retention ? ['backup', 'retention'] : ['backup'];
  return runbook({ cluster: inv.cluster, notify: inv.notify, operation: 'backup', plan }, async (rb) => {
    if (kind === 'logical') {
      const dump: BackupResult = await rb.step('backup', () => act.logicalBackup({ inv, name }));
      recordBackup(inv.cluster, kind, dump.endTime);
      if (retention)
        dump.retention = await rb.step('retention', () =>
          act.applyLogicalRetention({ inv, policy: retention }),
        );
      return dump;
    }
    const done: BackupResult = await rb.step('backup', () => act.physicalBackup({ inv, name }));
    recordBackup(inv.cluster, kind, done.endTime);
    if (retention)
      done.retention = await rb.step('retention', () => act.applyRetention({ inv, policy: retention }));
    return done;
  });
}
