/**
 * Runbook schedules. Backups: one Temporal Schedule per cluster and kind, id
 * `backup-<cluster>-<kind>`, whose action starts the `backup` runbook with the inventory document (secret references only, and the
 * payload encrypted by the client's codec like every runbook input) and the retention policy.
 *
 * Policies: overlap SKIP (a backup still running when the next is due: the next is skipped, never
 * queued), a catch-up window (a server or worker down at the due time: the run is made up within
 * the window, else skipped), and pause on failure (a failed backup pauses the schedule, so it is
 * noticed: `pgha schedule describe` shows why, `pgha schedule unpause` resumes it). The cron,
 * kind, retention and inventory digest are in the schedule's memo and its note.
 *
 * etcd maintenance: one per cluster, id `etcd-maintain-<cluster>-scheduled`, whose action starts
 * the `etcdMaintain` runbook (health, compaction, defragmentation one member at a time) with the
 * same policies.
 *
 * Restore drills: one per cluster, id `drill-<cluster>-scheduled`, whose action starts the
 * `restoreDrill` runbook (by default on the latest backup) with the same policies: a failed drill
 * pauses the schedule.
 *
 * Each schedule's settings are built and checked first (backupScheduleSettings, ...); upsertSchedule
 * creates or updates it, scheduleDryRun (`--dry-run`) only describes what that would do.
 *
 * The CLI (clients/commands/schedule.ts) only parses flags and calls these.
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type {
  Client,
  ScheduleDescription,
  ScheduleHandle,
  ScheduleOptions,
  ScheduleSpec,
} from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { parseBackupRef, parseRetention } from '../runbooks/retention';
import type { InventoryInput } from '../runbooks/schema';
import { taskQueue as defaultTaskQueue } from '../temporal.config';
import type { BackupInput } from '../workflows/backup';
import { dryRunReport, type DryRunReport } from '../workflows/dry-run';
import type { EtcdMaintainInput } from '../workflows/etcd';
import type { RestoreDrillInput } from '../workflows/restore-drill';
import { PgCluster, PgOperation, runbookWorkflowId } from '../workflows/messages';
import { inventoryDigest, runbookMetadata, shownArgs } from './runbook';

export const BACKUP_KINDS = ['physical', 'logical'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];

export interface BackupScheduleOptions {
  cluster: string;
  inventory: InventoryInput;
  cron: string;
  kind?: BackupKind;
  retention?: string;
  /** How long after a missed due time the run is still made up (default 1 hour). */
  catchupWindow?: Duration;
  taskQueue?: string;
  operator?: string;
}

/** What pgha keeps in a backup schedule's memo (and shows in `pgha schedule list|describe`). */
export interface BackupScheduleMemo {
  pgha: 'backup-schedule';
  cluster: string;
  kind: BackupKind;
  cron: string;
  retention?: string;
  inventory: string;
  by?: string;
}

/** What pgha keeps in an etcd maintenance schedule's memo. */
export interface EtcdMaintainScheduleMemo {
  pgha: 'etcd-maintain-schedule';
  cluster: string;
  cron: string;
  inventory: string;
  by?: string;
}

/** What pgha keeps in a restore drill schedule's memo. */
export interface DrillScheduleMemo {
  pgha: 'drill-schedule';
  cluster: string;
  cron: string;
  backup: string;
  inventory: string;
  by?: string;
}

export type ScheduleMemo = BackupScheduleMemo | EtcdMaintainScheduleMemo | DrillScheduleMemo;

export const backupScheduleId = (cluster: string, kind: BackupKind) =>
  runbookWorkflowId('backup', cluster, kind);

export const etcdMaintainScheduleId = (cluster: string) =>
  runbookWorkflowId('etcd-maintain', cluster, 'scheduled');

export const drillScheduleId = (cluster: string) => runbookWorkflowId('drill', cluster, 'scheduled');

/** The policies every pgha schedule has (see the top of this file). */
const policies = (catchupWindow: Duration | undefined) => ({
  overlap: ScheduleOverlapPolicy.SKIP,
  catchupWindow: catchupWindow ?? '1h',
  pauseOnFailure: true,
});

/** A cron of five fields (Temporal's server checks it fully); a clear error naming --cron otherwise. */
export function checkCron(cron: string): string {
  const c = cron.trim().replace(/\s+/g, ' ');
  const field = /^[0-9A-Za-z*/,?-]+$/;
  const parts = c.split(' ');
  if (parts.length !== 5 || !parts.every((p) => field.test(p)))
    throw new Error(
      `--cron ${JSON.stringify(cron.slice(0, 80))}: expected five cron fields (minute hour day-of-month month day-of-week), e.g. --cron '0 3 * * *' for 03:00 UTC daily`,
    );
  return c;
}

/** A schedule's action: start `workflowType` as pgha's `operation` on the cluster (id gets the due time appended). */
function startAction(
  o: { cluster: string; taskQueue?: string },
  operation: string,
  workflowType: string,
  workflowId: string,
  args: unknown[],
  meta: ReturnType<typeof runbookMetadata>,
) {
  return {
    type: 'startWorkflow' as const,
    workflowType,
    workflowId, // Temporal appends the due time: <workflowId>-<time>
    taskQueue: o.taskQueue ?? defaultTaskQueue,
    args,
    typedSearchAttributes: [
      { key: PgCluster, value: o.cluster },
      { key: PgOperation, value: operation },
    ],
    staticSummary: meta.staticSummary,
    staticDetails: meta.staticDetails,
  };
}

/**
 * Everything a pgha schedule is made of, checked and built before anything reaches the server:
 * what `upsertSchedule` creates or updates, and what `scheduleDryRun` describes.
 */
export interface ScheduleSettings {
  scheduleId: string;
  cluster: string;
  /** The runbook's pgha operation (PgOperation of its runs), also the command: `pgha schedule <operation>`. */
  operation: 'backup' | 'etcd-maintain' | 'drill';
  spec: ScheduleSpec;
  action: ReturnType<typeof startAction>;
  policies: ReturnType<typeof policies>;
  memo: ScheduleMemo;
  note: string;
}

/** The backup schedule of a cluster and kind: its flags checked (--kind, --cron, --retention). */
export function backupScheduleSettings(o: BackupScheduleOptions): ScheduleSettings {
  const kind = o.kind ?? 'physical';
  if (!BACKUP_KINDS.includes(kind)) throw new Error(`--kind ${String(kind)}: expected physical or logical`);
  const cron = checkCron(o.cron);
  const retention = o.retention === undefined ? undefined : parseRetention('--retention', o.retention);
  const args: [BackupInput] = [
    { inventory: o.inventory, kind, ...(retention ? { retention } : {}) } as BackupInput,
  ];
  const memo: BackupScheduleMemo = {
    pgha: 'backup-schedule',
    cluster: o.cluster,
    kind,
    cron,
    ...(retention ? { retention } : {}),
    inventory: inventoryDigest(o.inventory),
    ...(o.operator ? { by: o.operator } : {}),
  };
  const workflowId = runbookWorkflowId('backup', o.cluster);
  const scheduleId = backupScheduleId(o.cluster, kind);
  const meta = runbookMetadata(
    { cluster: o.cluster, operation: 'backup', workflowId, args },
    `schedule ${scheduleId}`,
  );
  return {
    scheduleId,
    cluster: o.cluster,
    operation: 'backup',
    spec: { cronExpressions: [cron] },
    action: startAction(o, 'backup', 'backup', workflowId, args, meta),
    policies: policies(o.catchupWindow),
    memo,
    note: `pgha ${kind} backup of ${o.cluster} at '${cron}'${retention ? `, retention ${retention}` : ', no retention'}`,
  };
}

/**
 * Creates the cluster's schedule of that kind, or brings an existing one to these settings (spec,
 * action, policies; its paused state is kept). Returns its handle and whether it was created.
 */
export async function upsertBackupSchedule(
  client: Client,
  o: BackupScheduleOptions,
): Promise<{ handle: ScheduleHandle; created: boolean }> {
  return upsertSchedule(client, backupScheduleSettings(o));
}

export type EtcdMaintainScheduleOptions = Omit<BackupScheduleOptions, 'kind' | 'retention'>;

/** The cluster's etcd maintenance schedule: its flags checked (--cron). */
export function etcdMaintainScheduleSettings(o: EtcdMaintainScheduleOptions): ScheduleSettings {
  const cron = checkCron(o.cron);
  const args: [EtcdMaintainInput] = [{ inventory: o.inventory }];
  const memo: EtcdMaintainScheduleMemo = {
    pgha: 'etcd-maintain-schedule',
    cluster: o.cluster,
    cron,
    inventory: inventoryDigest(o.inventory),
    ...(o.operator ? { by: o.operator } : {}),
  };
  const workflowId = runbookWorkflowId('etcd-maintain', o.cluster);
  const scheduleId = etcdMaintainScheduleId(o.cluster);
  const meta = runbookMetadata(
    { cluster: o.cluster, operation: 'etcd-maintain', workflowId, args },
    `schedule ${scheduleId}`,
  );
  return {
    scheduleId,
    cluster: o.cluster,
    operation: 'etcd-maintain',
    spec: { cronExpressions: [cron] },
    action: startAction(o, 'etcd-maintain', 'etcdMaintain', workflowId, args, meta),
    policies: policies(o.catchupWindow),
    memo,
    note: `pgha etcd maintenance (compact, defragment) of ${o.cluster} at '${cron}'`,
  };
}

/** The cluster's etcd maintenance schedule, created or brought to these settings (as above). */
export async function upsertEtcdMaintainSchedule(
  client: Client,
  o: EtcdMaintainScheduleOptions,
): Promise<{ handle: ScheduleHandle; created: boolean }> {
  return upsertSchedule(client, etcdMaintainScheduleSettings(o));
}

export type DrillScheduleOptions = Omit<BackupScheduleOptions, 'kind' | 'retention'> & {
  /** latest (the default): each drill restores the newest DONE backup. */
  backup?: string;
};

/** The cluster's restore drill schedule: its flags checked (--cron, --backup). */
export function drillScheduleSettings(o: DrillScheduleOptions): ScheduleSettings {
  const cron = checkCron(o.cron);
  const backup = parseBackupRef('--backup', o.backup ?? 'latest');
  const args: [RestoreDrillInput] = [{ inventory: o.inventory, backup }];
  const memo: DrillScheduleMemo = {
    pgha: 'drill-schedule',
    cluster: o.cluster,
    cron,
    backup,
    inventory: inventoryDigest(o.inventory),
    ...(o.operator ? { by: o.operator } : {}),
  };
  const workflowId = runbookWorkflowId('drill', o.cluster);
  const scheduleId = drillScheduleId(o.cluster);
  const meta = runbookMetadata(
    { cluster: o.cluster, operation: 'drill', workflowId, args },
    `schedule ${scheduleId}`,
  );
  return {
    scheduleId,
    cluster: o.cluster,
    operation: 'drill',
    spec: { cronExpressions: [cron] },
    action: startAction(o, 'drill', 'restoreDrill', workflowId, args, meta),
    policies: policies(o.catchupWindow),
    memo,
    note: `pgha restore drill of ${o.cluster} (backup ${backup}) at '${cron}'`,
  };
}

/**
 * The cluster's restore drill schedule, created or brought to these settings (as above): its action
 * starts `restoreDrill`; a drill that fails pauses the schedule (pause on failure), so a backup
 * that does not restore is noticed.
 */
export async function upsertDrillSchedule(
  client: Client,
  o: DrillScheduleOptions,
): Promise<{ handle: ScheduleHandle; created: boolean }> {
  return upsertSchedule(client, drillScheduleSettings(o));
}

/**
 * Creates the schedule, or brings an existing one to these settings (spec, action, policies; the
 * note unless it is paused — the note then says why; its paused state and its memo are kept).
 */
export async function upsertSchedule(
  client: Client,
  s: ScheduleSettings,
): Promise<{ handle: ScheduleHandle; created: boolean }> {
  const handle = client.schedule.getHandle(s.scheduleId);
  try {
    await handle.describe();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    const opts: ScheduleOptions = {
      scheduleId: s.scheduleId,
      spec: s.spec,
      action: s.action,
      policies: s.policies,
      memo: s.memo as unknown as Record<string, unknown>,
      typedSearchAttributes: [{ key: PgCluster, value: s.cluster }],
      state: { note: s.note },
    };
    return { handle: await client.schedule.create(opts), created: true };
  }
  await handle.update((prev) => ({
    ...prev,
    spec: s.spec,
    action: s.action,
    policies: s.policies,
    state: { ...prev.state, note: prev.state.paused ? prev.state.note : s.note },
  }));
  return { handle, created: false };
}

/**
 * `pgha schedule <kind> --dry-run`: what upsertSchedule would do with these settings — create the
 * schedule or update the one there (read with one describe) — as a dry run's plan. It creates,
 * updates, pauses and triggers nothing. The action's arguments are shown with the inventory as its
 * digest (it holds secret references only, never values).
 */
export async function scheduleDryRun(client: Client, s: ScheduleSettings): Promise<DryRunReport> {
  const now = await client.schedule
    .getHandle(s.scheduleId)
    .describe()
    .catch((err: unknown) => {
      if (err instanceof ScheduleNotFoundError) return undefined;
      throw err;
    });
  const cron = s.spec.cronExpressions?.join("', '") ?? '';
  const a = s.action;
  const p = s.policies;
  return dryRunReport(s.cluster, `schedule ${s.operation}`, [
    now
      ? `update schedule ${s.scheduleId} (there, ${now.state.paused ? 'PAUSED' : 'active'}${now.state.note ? `: ${now.state.note}` : ''}): its spec, action and policies replaced by these${now.state.paused ? '; its note kept (it is paused)' : ', its note too'}; its paused state and memo kept`
      : `create schedule ${s.scheduleId} (none by that id yet)`,
    `spec: cron '${cron}', ${s.spec.timezone ? `timezone ${s.spec.timezone}` : 'in UTC (no timezone set)'}`,
    `policies: overlap ${p.overlap} (a run still going when the next is due: the next skipped), catch-up window ${String(p.catchupWindow)} (a run missed while the server or the workers were down made up within it), ${p.pauseOnFailure ? 'pause on failure (a failed run pauses the schedule)' : 'no pause on failure'}`,
    `action: start workflow ${a.workflowType} on task queue ${a.taskQueue} as ${a.workflowId}-<due time> (PgCluster ${s.cluster}, PgOperation ${s.operation}), arguments ${JSON.stringify(shownArgs(a.args))}`,
    `note: ${s.note}`,
    `memo${now ? ' (kept: set at creation)' : ''}: ${JSON.stringify(s.memo)}`,
  ]);
}

/** pgha's backup schedules (optionally of one cluster), with their memo. */
export async function listBackupSchedules(client: Client, cluster?: string) {
  return (await listSchedules(client, cluster)).filter(
    (s): s is ListedSchedule<BackupScheduleMemo> => s.memo.pgha === 'backup-schedule',
  );
}

export interface ListedSchedule<M extends ScheduleMemo = ScheduleMemo> {
  scheduleId: string;
  memo: M;
  paused: boolean;
  note?: string;
  next?: Date;
}

/** All of pgha's schedules — backups and etcd maintenance — (optionally of one cluster). */
export async function listSchedules(client: Client, cluster?: string): Promise<ListedSchedule[]> {
  const out: ListedSchedule[] = [];
  for await (const s of client.schedule.list()) {
    const memo = s.memo as ScheduleMemo | undefined;
    if (
      memo?.pgha !== 'backup-schedule' &&
      memo?.pgha !== 'etcd-maintain-schedule' &&
      memo?.pgha !== 'drill-schedule'
    )
      continue;
    if (cluster && memo.cluster !== cluster) continue;
    out.push({
      scheduleId: s.scheduleId,
      memo,
      paused: s.state.paused,
      note: s.state.note,
      next: s.info.nextActionTimes[0],
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

/** A readable description: settings, state, the last actions and the next due times. */
export function describeSchedule(d: ScheduleDescription): string {
  const memo = d.memo as ScheduleMemo | undefined;
  const what =
    memo?.pgha === 'etcd-maintain-schedule'
      ? 'etcd maintenance'
      : memo?.pgha === 'drill-schedule'
        ? `restore drill of backup ${memo.backup}`
        : `kind ${memo?.kind ?? '?'}, retention ${memo?.retention ?? 'none'}`;
  const lines = [
    `schedule ${d.scheduleId}: ${d.state.paused ? 'PAUSED' : 'active'}${d.state.note ? ` — ${d.state.note}` : ''}`,
    `  cluster ${memo?.cluster ?? '?'}, ${what}, cron '${memo?.cron ?? '?'}', inventory ${memo?.inventory ?? '?'}`,
    `  policies: overlap ${String(d.policies.overlap)}, catch-up window ${String(d.policies.catchupWindow)} ms, pause on failure ${String(d.policies.pauseOnFailure)}`,
    `  actions taken ${d.info.numActionsTaken}, skipped for overlap ${d.info.numActionsSkippedOverlap}`,
  ];
  for (const a of d.info.recentActions.slice(-5))
    lines.push(
      `  ran ${a.takenAt.toISOString()} → ${a.action.workflow.workflowId} (${a.action.workflow.firstExecutionRunId})`,
    );
  for (const t of d.info.nextActionTimes.slice(0, 3)) lines.push(`  next ${t.toISOString()}`);
  return lines.join('\n');
}
