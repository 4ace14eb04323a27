/**
 *   pgha schedule backup --cluster FILE --cron '0 3 * * *' [--kind physical|logical]
 *                        [--retention 'RECOVERY WINDOW OF 7 DAYS' | 'REDUNDANCY 3'] [--catchup 1h] [--dry-run]
 *   pgha schedule etcd-maintain --cluster FILE --cron '0 4 * * 0' [--catchup 1h] [--dry-run]
 *   pgha schedule drill --cluster FILE --cron '0 5 * * *' [--backup latest|ID|NAME] [--catchup 1h] [--dry-run]
 *   pgha schedule list [--cluster NAME] | describe ID | pause ID [--reason R] | unpause ID | trigger ID | delete ID
 *
 * Runbook schedules (clients/schedules.ts): backups, one Temporal Schedule per cluster and kind;
 * etcd maintenance, one per cluster. Every flag is checked before anything is created; this file
 * only parses and prints. `--dry-run` prints the schedule that would be created or changed (id,
 * cron, timezone, policies, the workflow and its arguments with the inventory as its digest) and
 * creates or changes nothing.
 */
import { ScheduleOverlapPolicy } from '@temporalio/client';
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { describeDryRun } from '../../workflows/dry-run';
import { operator } from '../operator';
import { withClient } from '../connection';
import { inventoryInput, noBackupCt } from '../inventory-input';
import {
  BACKUP_KINDS,
  backupScheduleSettings,
  checkCron,
  describeSchedule,
  drillScheduleSettings,
  etcdMaintainScheduleSettings,
  listSchedules,
  scheduleDryRun,
  upsertSchedule,
  type BackupKind,
  type ScheduleSettings,
} from '../schedules';
import { parseRetention } from '../../runbooks/retention';
import { checkDrillBackup } from './drill';

function fail(msg: string): void {
  console.error(`pgha: ${msg}`);
  process.exitCode = 2;
}

const dryRunHelp =
  'print the schedule that would be created or changed (id, cron, policies, workflow, arguments); change nothing';

/** Creates or updates the schedule and prints it; with --dry-run, prints what that would do and changes nothing. */
async function apply(client: Client, settings: ScheduleSettings, dryRun: boolean | undefined): Promise<void> {
  if (dryRun) {
    console.log(describeDryRun(await scheduleDryRun(client, settings)));
    return;
  }
  const { handle, created } = await upsertSchedule(client, settings);
  console.log(`${created ? 'created' : 'updated'} schedule ${handle.scheduleId}`);
  console.log(describeSchedule(await handle.describe()));
}

export function register(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('backup and etcd maintenance schedules (Temporal Schedules)');
  const catchupOk = (c: string) => /^[1-9][0-9]*(s|m|h|d)$/.test(c);
  const badCatchup = (c: string) => `--catchup ${c}: expected a duration such as 10m, 1h or 1d`;

  schedule
    .command('backup')
    .description('create (or update) the cluster’s backup schedule of a kind')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--cron <expr>', "five cron fields in UTC, e.g. '0 3 * * *'")
    .option('--kind <kind>', 'physical (Barman) or logical (pg_dump)', 'physical')
    .option(
      '--retention <policy>',
      "'RECOVERY WINDOW OF 7 DAYS' or 'REDUNDANCY 3', applied after each backup",
    )
    .option('--catchup <duration>', 'a missed run is made up within this window', '1h')
    .option('--dry-run', dryRunHelp)
    .action(
      async (o: {
        cluster: string;
        cron: string;
        kind: string;
        retention?: string;
        catchup: string;
        dryRun?: boolean;
      }) => {
        // Every flag first: nothing is created on a bad one.
        if (!(BACKUP_KINDS as readonly string[]).includes(o.kind))
          return fail(`--kind ${o.kind}: expected physical or logical`);
        try {
          checkCron(o.cron);
          if (o.retention !== undefined) parseRetention('--retention', o.retention);
        } catch (err) {
          return fail((err as Error).message);
        }
        if (!catchupOk(o.catchup)) return fail(badCatchup(o.catchup));
        const { input, inventory } = await inventoryInput(o.cluster);
        const noBackup = noBackupCt(o.cluster, inventory);
        if (noBackup) return fail(noBackup);
        await withClient((client) =>
          apply(
            client,
            backupScheduleSettings({
              cluster: inventory.cluster,
              inventory: input,
              cron: o.cron,
              kind: o.kind as BackupKind,
              retention: o.retention,
              catchupWindow: o.catchup as `${number}h`,
              operator: operator(),
            }),
            o.dryRun,
          ),
        );
      },
    );

  schedule
    .command('etcd-maintain')
    .description('create (or update) the cluster’s etcd maintenance schedule (pgha etcd maintain)')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--cron <expr>', "five cron fields in UTC, e.g. '0 4 * * 0' (Sundays 04:00)")
    .option('--catchup <duration>', 'a missed run is made up within this window', '1h')
    .option('--dry-run', dryRunHelp)
    .action(async (o: { cluster: string; cron: string; catchup: string; dryRun?: boolean }) => {
      try {
        checkCron(o.cron);
      } catch (err) {
        return fail((err as Error).message);
      }
      if (!catchupOk(o.catchup)) return fail(badCatchup(o.catchup));
      const { input, inventory } = await inventoryInput(o.cluster);
      await withClient((client) =>
        apply(
          client,
          etcdMaintainScheduleSettings({
            cluster: inventory.cluster,
            inventory: input,
            cron: o.cron,
            catchupWindow: o.catchup as `${number}h`,
            operator: operator(),
          }),
          o.dryRun,
        ),
      );
    });

  schedule
    .command('drill')
    .description('create (or update) the cluster’s restore drill schedule (pgha drill)')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--cron <expr>', "five cron fields in UTC, e.g. '0 5 * * *' (after the nightly backup)")
    .option(
      '--backup <id>',
      'latest (each run restores the newest DONE backup), a Barman id or a name',
      'latest',
    )
    .option('--catchup <duration>', 'a missed run is made up within this window', '1h')
    .option('--dry-run', dryRunHelp)
    .action(
      async (o: { cluster: string; cron: string; backup: string; catchup: string; dryRun?: boolean }) => {
        try {
          checkCron(o.cron);
          checkDrillBackup(o.backup);
        } catch (err) {
          return fail((err as Error).message);
        }
        if (!catchupOk(o.catchup)) return fail(badCatchup(o.catchup));
        const { input, inventory } = await inventoryInput(o.cluster);
        const noBackup = noBackupCt(o.cluster, inventory);
        if (noBackup) return fail(noBackup);
        await withClient((client) =>
          apply(
            client,
            drillScheduleSettings({
              cluster: inventory.cluster,
              inventory: input,
              cron: o.cron,
              backup: o.backup,
              catchupWindow: o.catchup as `${number}h`,
              operator: operator(),
            }),
            o.dryRun,
          ),
        );
      },
    );

  schedule
    .command('list')
    .description('pgha’s schedules (backups, etcd maintenance)')
    .option('--cluster <name>', 'only this cluster’s')
    .action(async (o: { cluster?: string }) => {
      await withClient(async (client) => {
        const rows = await listSchedules(client, o.cluster);
        if (rows.length === 0) console.log('no pgha schedules');
        for (const r of rows) {
          const retention =
            r.memo.pgha === 'backup-schedule' ? `  retention ${r.memo.retention ?? 'none'}` : '';
          console.log(
            `${r.scheduleId}  ${r.paused ? 'PAUSED' : 'active'}  '${r.memo.cron}'${retention}  next ${r.next?.toISOString() ?? '-'}${r.note ? `  (${r.note})` : ''}`,
          );
        }
      });
    });

  const byId = (name: string, what: string, act: (id: string, o: { reason?: string }) => Promise<string>) =>
    schedule
      .command(`${name} <id>`)
      .description(what)
      .option('--reason <text>', 'recorded in the schedule’s note (pause)')
      .action(async (id: string, o: { reason?: string }) => console.log(await act(id, o)));

  byId('describe', 'settings, state, last runs and next due times', (id) =>
    withClient(async (c) => describeSchedule(await c.schedule.getHandle(id).describe())),
  );
  byId('pause', 'stop starting runs until unpaused', (id, o) =>
    withClient(async (c) => {
      await c.schedule.getHandle(id).pause(`paused by ${operator()}${o.reason ? `: ${o.reason}` : ''}`);
      return `paused ${id}`;
    }),
  );
  byId('unpause', 'start runs again at the next due time', (id) =>
    withClient(async (c) => {
      await c.schedule.getHandle(id).unpause(`unpaused by ${operator()}`);
      return `unpaused ${id}`;
    }),
  );
  byId('trigger', 'start a run now (skipped if one of this schedule still runs)', (id) =>
    withClient(async (c) => {
      await c.schedule.getHandle(id).trigger(ScheduleOverlapPolicy.SKIP);
      return `triggered ${id}: follow it with \`pgha runs --cluster ...\``;
    }),
  );
  byId('delete', 'delete the schedule (backups already taken stay)', (id) =>
    withClient(async (c) => {
      await c.schedule.getHandle(id).delete();
      return `deleted ${id}`;
    }),
  );
}
