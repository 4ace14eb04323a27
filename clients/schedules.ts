/**
 * Backup schedules: one Temporal Schedule per cluster and kind, id `backup-<cluster>-<kind>`, whose
 * action starts the `backup` runbook with the inventory document (secret references only, and the
 * payload encrypted by the client's codec like every runbook input) and the retention policy.
 *
 * Policies: overlap SKIP (a backup still running when the next is due: the next is skipped, never
 * queued), a catch-up window (a server or worker down at the due time: the run is made up within
 * the window, else skipped), and pause on failure (a failed backup pauses the schedule, so it is
 * noticed: `pgha schedule describe` shows why, `pgha schedule unpause` resumes it). The cron,
 * kind, retention and inventory digest are in the schedule's memo and its note.
 *
 * The CLI (clients/commands/schedule.ts) only parses flags and calls these.
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type { Client, ScheduleDescription, ScheduleHandle, ScheduleOptions } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { parseRetention } from '../runbooks/retention';
import type { InventoryInput } from '../runbooks/schema';
import { taskQueue as defaultTaskQueue } from '../temporal.config';
import type { BackupInput } from '../workflows/backup';
import { PgCluster, PgOperation, runbookWorkflowId } from '../workflows/messages';
import { inventoryDigest, runbookMetadata } from './runbook';

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

export const backupScheduleId = (cluster: string, kind: BackupKind) =>
  runbookWorkflowId('backup', cluster, kind);

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

function scheduleOptions(o: BackupScheduleOptions, cron: string, kind: BackupKind, retention?: string) {
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
  const meta = runbookMetadata(
    { cluster: o.cluster, operation: 'backup', workflowId, args },
    `schedule ${backupScheduleId(o.cluster, kind)}`,
  );
  return {
    spec: { cronExpressions: [cron] },
    action: {
      type: 'startWorkflow' as const,
      workflowType: 'backup',
      workflowId, // Temporal appends the due time: backup-<cluster>-<time>
      taskQueue: o.taskQueue ?? defaultTaskQueue,
      args,
      typedSearchAttributes: [
        { key: PgCluster, value: o.cluster },
        { key: PgOperation, value: 'backup' },
      ],
      staticSummary: meta.staticSummary,
      staticDetails: meta.staticDetails,
    },
    policies: {
      overlap: ScheduleOverlapPolicy.SKIP,
      catchupWindow: o.catchupWindow ?? '1h',
      pauseOnFailure: true,
    },
    memo: memo as unknown as Record<string, unknown>,
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
  const kind = o.kind ?? 'physical';
  if (!BACKUP_KINDS.includes(kind)) throw new Error(`--kind ${String(kind)}: expected physical or logical`);
  const cron = checkCron(o.cron);
  const retention = o.retention === undefined ? undefined : parseRetention('--retention', o.retention);
  const scheduleId = backupScheduleId(o.cluster, kind);
  const s = scheduleOptions(o, cron, kind, retention);
  const handle = client.schedule.getHandle(scheduleId);
  try {
    await handle.describe();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    const opts: ScheduleOptions = {
      scheduleId,
      spec: s.spec,
      action: s.action,
      policies: s.policies,
      memo: s.memo,
      typedSearchAttributes: [{ key: PgCluster, value: o.cluster }],
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

/** pgha's backup schedules (optionally of one cluster), with their memo. */
export async function listBackupSchedules(
  client: Client,
  cluster?: string,
): Promise<{ scheduleId: string; memo?: BackupScheduleMemo; paused: boolean; note?: string; next?: Date }[]> {
  const out = [];
  for await (const s of client.schedule.list()) {
    const memo = s.memo as BackupScheduleMemo | undefined;
    if (memo?.pgha !== 'backup-schedule') continue;
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
  const memo = d.memo as BackupScheduleMemo | undefined;
  const lines = [
    `schedule ${d.scheduleId}: ${d.state.paused ? 'PAUSED' : 'active'}${d.state.note ? ` — ${d.state.note}` : ''}`,
    `  cluster ${memo?.cluster ?? '?'}, kind ${memo?.kind ?? '?'}, cron '${memo?.cron ?? '?'}', retention ${memo?.retention ?? 'none'}, inventory ${memo?.inventory ?? '?'}`,
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
