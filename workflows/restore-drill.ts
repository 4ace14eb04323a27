/**
 * restoreDrill — "a backup that has never been restored is a hope": restore it where it can do no
 * harm, start it, and check it.
 *
 *   choose the backup (latest, or the one asked for) → barman verify-backup (its files against the
 *   manifest) → copy it into a scratch directory on the backup CT and start it (recovery from
 *   Barman's archive to the backup's consistent point; loopback only, its own port, archive_mode
 *   off, no Patroni, no slot, nothing pointed at etcd) → check: the backup's marker row, pg_amcheck
 *   over every database, the largest tables' row counts against those recorded with the backup,
 *   the restored LSN against the backup's end, and the RTO (restore start → accepting queries) →
 *   tear the scratch copy down.
 *
 * The scratch copy is torn down however the run ends: after the checks, after a failed step, and on
 * cancellation (the restore step's compensation). A drill that finds a problem fails (DrillFailed,
 * PgOutcome = failed) naming every problem; its findings are the failure's details.
 */
import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DrillBackup, DrillChecks, DrillRestored } from '../activities/restore';
import { Failures } from '../runbooks/failures';
import { parseBackupRef } from '../runbooks/retention';
import type { InventoryInput } from '../runbooks/schema';
import { activityOptions, at } from './activity-options';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { inventoryOf, invalidInput, refuse } from './inventory';
import { errorMessage, runbook } from './steps';

export interface RestoreDrillInput {
  inventory: InventoryInput;
  /** latest (the default), a Barman backup id or a pgha backup name. */
  backup?: string;
  /** Choose the backup (read-only), return the ordered plan; restore, start and remove nothing. */
  dryRun?: boolean;
}

export interface RestoreDrillResult {
  backup: DrillBackup;
  verify: { ok: boolean; detail: string };
  restored: DrillRestored;
  checks: DrillChecks;
  teardown: { stopped: boolean; removed: boolean };
  /** The problems found (empty when the drill passed; a failed drill carries them in its error). */
  problems: string[];
}

const act = proxyActivities<Activities>(activityOptions.drill);

/** The scratch copy's id: the workflow id and the end of the run id (one per run, stable on retries). */
export function drillScratchId(workflowId: string, runId: string): string {
  const slug = workflowId
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
  const run6 = runId
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '')
    .slice(-6);
  return `${slug || 'drill'}-${run6}`;
}

export async function restoreDrill(input: RestoreDrillInput): Promise<RestoreDrillResult | DryRunReport> {
  const inv = inventoryOf(input);
  if (inv.nodes.backup.length === 0)
    refuse(
      `cluster ${inv.cluster} has no backup CT: add nodes.backup to its inventory, deploy and take a backup first`,
      Failures.InvalidInventory,
    );
  let want = 'latest';
  try {
    want = parseBackupRef('backup', input.backup ?? 'latest');
  } catch (err) {
    invalidInput((err as Error).message);
  }
  const info = workflowInfo();
  const scratchId = drillScratchId(info.workflowId, info.runId);
  if (dryRunning(input)) {
    const ct = at(inv, inv.nodes.backup[0]!.hostname);
    return runbook({ cluster: inv.cluster, operation: 'drill', plan: ['choose backup'] }, async (rb) => {
      const b = await rb.step('choose backup', () => act.drillChooseBackup({ inv, backup: want }));
      return dryRunReport(inv.cluster, 'drill', [
        `choose backup: ${b.backupId}${b.name ? ` (${b.name})` : ''} of server ${b.server}, DONE, timeline ${b.timeline}, ended ${b.endTime}, consistent at ${b.consistentLsn}`,
        `verify on ${ct}: barman verify-backup ${b.server} ${b.backupId} (its files against the manifest)`,
        `restore on ${ct}: copied into the scratch directory ${scratchId}, started on loopback on its own port (recovery from Barman's archive to ${b.consistentLsn}; archive_mode off, no Patroni, no slot, nothing pointed at etcd)`,
        `check on ${ct}: the backup's marker row, pg_amcheck over every database, the largest tables' row counts, the restored LSN, the RTO`,
        `teardown on ${ct}: the scratch copy stopped and removed (however the drill ends)`,
      ]);
    });
  }
  const plan = ['choose backup', 'verify', 'restore', 'check', 'teardown'];
  return runbook({ cluster: inv.cluster, notify: inv.notify, operation: 'drill', plan }, async (rb) => {
    const backup = await rb.step('choose backup', () => act.drillChooseBackup({ inv, backup: want }));
    const teardown = () => act.drillTeardown({ inv, scratchId });
    const problems: string[] = [];
    let verify: RestoreDrillResult['verify'] | undefined;
    let restored: DrillRestored;
    let checks: DrillChecks;
    try {
      verify = await rb.step('verify', () => act.drillVerify({ inv, backupId: backup.backupId }));
      if (!verify.ok) problems.push(`barman verify-backup: ${verify.detail}`);
      restored = await rb.step(
        'restore',
        () => act.drillRestore({ inv, backupId: backup.backupId, scratchId }),
        { compensate: teardown },
      );
      checks = await rb.step('check', () => act.drillCheck({ inv, backup, scratchId }));
    } catch (err) {
      if (isCancellation(err)) throw err; // the restore step's compensation tears the copy down
      await CancellationScope.nonCancellable(() => rb.step('teardown', teardown));
      throw ApplicationFailure.create({
        type: Failures.DrillFailed,
        nonRetryable: true,
        message: `restore drill of backup ${backup.backupId} FAILED: ${[...problems, errorMessage(err)].join('; ')}; the scratch copy was removed`,
      });
    }
    const torn = await rb.step('teardown', teardown);
    problems.push(...checks.problems);
    const result: RestoreDrillResult = { backup, verify, restored, checks, teardown: torn, problems };
    if (problems.length > 0)
      throw ApplicationFailure.create({
        type: Failures.DrillFailed,
        nonRetryable: true,
        message: `restore drill of backup ${backup.backupId} FAILED: ${problems.join('; ')}`,
        details: [result],
      });
    return result;
  });
}
