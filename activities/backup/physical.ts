/**
 * A physical backup with Barman, converging on what the backup CT shows:
 *  1. a marker row (id = the backup's name, time, LSN, and the row counts of the largest tables:
 *     counts.ts) in pgha_backup_marker on the leader, for restore drills (written once: a retry
 *     finds it);
 *  2. the backup named after the marker: a DONE one is taken as it is (a retry after a worker died
 *     mid-backup never starts a second). An earlier attempt's `barman backup` still running in the
 *     backup CT (the worker died, the command did not) is waited for; a half one it left (STARTED
 *     with no backup process, FAILED, EMPTY) is deleted — and found gone — before the backup is
 *     taken again. Otherwise `barman backup --name <id> --immediate-checkpoint --wait` runs in the
 *     backup CT (the data goes CT to CT, never through the worker), heartbeating. Immediate: an
 *     operator or a schedule asked for a backup now; with a spread checkpoint pg_basebackup waited
 *     3.5 min on the lab after a bulk load before copying anything;
 *  3. `barman verify-backup` (pg_verifybackup) and `barman check-backup` (WAL completeness), their
 *     outcome recorded in the backup CT for `pgha status --backup` (Barman keeps neither);
 *  4. the row counts again, after the backup, beside the marker's in `pgha-counts.json` in the
 *     backup's directory (written once; Barman deletes it with the backup);
 *  5. the result from `barman -f json show-backup`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BACKUP_ID, BACKUP_NAME } from '../../runbooks/retention';
import type { Inventory } from '../../runbooks/schema';
import { heartbeat } from '../poll';
import { barmanServer } from '../render';
import { backupNode } from '../../runbooks/topology';
import { leaderOf, psqlOnMember, switchWalArchived } from './barman';

import {
  MARKER_TABLE,
  largestTableCounts,
  literal,
  mergeCounts,
  type RecordedCount,
  type SqlRunner,
  type TableCount,
} from './counts';
import { barmanCli, barmanTasks, listBackups, recordVerification } from './cli';
import type { BackupDeps } from './types';

export interface PhysicalBackupResult {
  kind: 'physical';
  server: string;
  backupId: string;
  name: string;
  marker: { id: string; at: string; lsn: string; leader: string };
  status: string;
  beginLsn: string;
  endLsn: string;
  beginTime: string;
  endTime: string;
  timeline: number;
  sizeBytes: number;
  durationSeconds: number;
  postgresVersion: number;
  verified: boolean;
  walComplete: boolean;
  /** Row counts of the largest tables at the marker and after the backup (restore drills compare them). */
  tableCounts?: RecordedCount[];
}

/** A backup name Barman accepts and pgha can find again: the marker id (runbooks/retention.ts). */
export { BACKUP_ID, BACKUP_NAME };

/**
 * The marker row (written once: a retry finds it) with the row counts of the largest tables taken
 * just before it (counts.ts), so a restored copy carries what it is compared against.
 */
export async function ensureMarker(deps: BackupDeps, inv: Inventory, leader: string, id: string) {
  const sql: SqlRunner = (db, q) => psqlOnMember(deps, inv, leader, q, 300_000, db);
  const select = `SELECT 'marker', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), lsn::text, coalesce(counts::text, '') FROM ${MARKER_TABLE} WHERE id = '${id}';`;
  let rows = await sql(
    'postgres',
    `SET client_min_messages = warning;
     CREATE TABLE IF NOT EXISTS ${MARKER_TABLE} (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), lsn pg_lsn NOT NULL DEFAULT pg_current_wal_lsn());
     ALTER TABLE ${MARKER_TABLE} ADD COLUMN IF NOT EXISTS counts jsonb;
     ${select}`,
  );
  if (!rows.some((r) => r[0] === 'marker')) {
    const counts = await largestTableCounts(sql);
    rows = await sql(
      'postgres',
      `INSERT INTO ${MARKER_TABLE} (id, counts) VALUES ('${id}', ${literal(JSON.stringify(counts))}::jsonb) ON CONFLICT (id) DO NOTHING;
       ${select}`,
    );
  }
  const m = rows.find((r) => r[0] === 'marker');
  if (!m) throw new Error(`the marker ${id} was not found after it was written on ${leader}`);
  const counts = m[3] ? (JSON.parse(m[3]) as TableCount[]) : undefined;
  return { id, at: m[1]!, lsn: m[2]!, leader, ...(counts ? { counts } : {}) };
}

/** The file beside Barman's backup that holds the counts recorded for it (deleted with the backup). */
export function countsPath(inv: Inventory, backupId: string): string {
  if (!BACKUP_ID.test(backupId))
    throw new Error(`backup id ${JSON.stringify(backupId)}: expected ${BACKUP_ID}`);
  return `${inv.backup.storage.path}/${barmanServer(inv)}/base/${backupId}/${COUNTS_FILE}`;
}
export const COUNTS_FILE = 'pgha-counts.json';

/** The recorded counts of a backup, or undefined when it has none (taken before pgha recorded them). */
export async function readRecordedCounts(
  deps: BackupDeps,
  inv: Inventory,
  backupId: string,
): Promise<RecordedCount[] | undefined> {
  const sh = await deps.shellFor(inv.proxmox);
  const r = await sh.exec(backupNode(inv)!.vmid, ['cat', countsPath(inv, backupId)], { timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  return JSON.parse(r.stdout) as RecordedCount[];
}

/**
 * After the backup ended: the counts again, beside the ones at the marker, in a file beside the
 * backup (found again on a retry, never recounted).
 */
async function recordCounts(
  deps: BackupDeps,
  inv: Inventory,
  leader: string,
  backupId: string,
  atMarker: TableCount[] | undefined,
): Promise<RecordedCount[]> {
  const found = await readRecordedCounts(deps, inv, backupId);
  if (found) return found;
  const atEnd = await largestTableCounts((db, q) => psqlOnMember(deps, inv, leader, q, 300_000, db));
  const merged = mergeCounts(atMarker, atEnd);
  const sh = await deps.shellFor(inv.proxmox);
  await sh.push(backupNode(inv)!.vmid, countsPath(inv, backupId), `${JSON.stringify(merged, null, 1)}\n`, {
    mode: 0o640,
    owner: inv.backup.osUser,
    group: inv.backup.osUser,
  });
  return merged;
}

interface ShowBackup {
  backup_id: string;
  backup_name?: string;
  status: string;
  postgresql_version: number;
  base_backup_information: {
    begin_lsn: string;
    end_lsn: string;
    begin_time: string;
    end_time: string;
    timeline: number;
    backup_size_bytes: number;
    copy_time_seconds: number;
  };
}

async function showBackup(deps: BackupDeps, inv: Inventory, name: string): Promise<ShowBackup | undefined> {
  const server = barmanServer(inv);
  const r = await barmanCli(deps, inv, ['-f', 'json', 'show-backup', server, name]);
  if (r.code !== 0) return undefined;
  try {
    const doc = JSON.parse(r.stdout) as Record<string, ShowBackup>;
    return doc[server]?.backup_id ? doc[server] : undefined;
  } catch {
    return undefined;
  }
}

/** Barman's statuses of a backup whose copy is complete (show-backup finds only these by name). */
const COPY_DONE = ['DONE', 'WAITING_FOR_WALS'];

/**
 * What an earlier attempt of this backup left: waits (bounded, heartbeating) while a `barman
 * backup` of the server still runs in the backup CT, then deletes every half backup of this name
 * (not DONE nor WAITING_FOR_WALS) and checks that it is gone. Returns the ids it deleted.
 */
export async function settleEarlierAttempt(
  deps: BackupDeps,
  inv: Inventory,
  name: string,
  waitMs: number,
): Promise<string[]> {
  const server = barmanServer(inv);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const half = (await listBackups(deps, inv)).filter(
      (x) => x.backup_name === name && !COPY_DONE.includes(x.status),
    );
    if (half.length === 0) return [];
    if (!(await barmanTasks(deps, inv)).includes('backup')) {
      for (const h of half) await barmanCli(deps, inv, ['delete', server, h.backup_id]);
      const left = (await listBackups(deps, inv)).filter((x) =>
        half.some((h) => h.backup_id === x.backup_id),
      );
      if (left.length > 0)
        throw new Error(
          `barman delete ${server} left ${left.map((x) => `${x.backup_id} (${x.status})`).join(', ')}: delete it by hand (barman delete ${server} <id>) and retry`,
        );
      return half.map((h) => h.backup_id);
    }
    if (Date.now() >= deadline)
      throw new Error(
        `a barman backup of ${server} still runs after ${Math.round(waitMs / 1000)} s (${half.map((x) => `${x.backup_id} ${x.status}`).join(', ')}): wait for it (barman list-processes ${server}) and retry`,
      );
    heartbeat({
      what: "an earlier attempt's barman backup still runs",
      backups: half.map((x) => x.backup_id),
    });
    await sleep(3000);
  }
}

export async function physicalBackup(
  deps: BackupDeps,
  args: { inv: Inventory; name: string; waitMs?: number },
): Promise<PhysicalBackupResult> {
  const { inv, name } = args;
  if (!BACKUP_NAME.test(name))
    throw new Error(`backup name ${JSON.stringify(name)}: expected ${BACKUP_NAME}`);
  const server = barmanServer(inv);
  const leader = await leaderOf(deps, inv);
  const { counts: markerCounts, ...marker } = await ensureMarker(deps, inv, leader, name);
  await settleEarlierAttempt(deps, inv, name, args.waitMs ?? 45 * 60_000);
  let b = await showBackup(deps, inv, name);
  if (!b || !COPY_DONE.includes(b.status)) {
    const r = await barmanCli(
      deps,
      inv,
      ['backup', '--name', name, '--immediate-checkpoint', '--wait', '--wait-timeout', '600', server],
      3_600_000,
    );
    b = await showBackup(deps, inv, name);
    if (!b || b.status !== 'DONE')
      throw new Error(
        `barman backup ${server} --name ${name} ended with ${r.code} and the backup is ${b?.status ?? 'absent'}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
      );
  }
  // Found waiting for its last WAL file (an attempt that died in --wait): archive it, bounded.
  for (let i = 0; b.status === 'WAITING_FOR_WALS' && i < 20; i++) {
    await switchWalArchived(deps, inv, 30, leader);
    await barmanCli(deps, inv, ['-q', 'cron']);
    b = (await showBackup(deps, inv, name)) ?? b;
  }
  if (b.status !== 'DONE') throw new Error(`backup ${b.backup_id} (${name}) is ${b.status}, not DONE`);
  const verify = await barmanCli(deps, inv, ['verify-backup', server, b.backup_id], 1_800_000);
  const check = await barmanCli(deps, inv, ['check-backup', server, b.backup_id], 600_000);
  await recordVerification(deps, inv, {
    backupId: b.backup_id,
    verified: verify.code === 0,
    walComplete: check.code === 0,
    at: new Date().toISOString(),
  });
  const tableCounts = await recordCounts(deps, inv, leader, b.backup_id, markerCounts);
  const i = b.base_backup_information;
  return {
    kind: 'physical',
    server,
    backupId: b.backup_id,
    name,
    marker,
    status: b.status,
    beginLsn: i.begin_lsn,
    endLsn: i.end_lsn,
    beginTime: i.begin_time,
    endTime: i.end_time,
    timeline: i.timeline,
    sizeBytes: i.backup_size_bytes,
    durationSeconds: i.copy_time_seconds,
    postgresVersion: b.postgresql_version,
    verified: verify.code === 0,
    walComplete: check.code === 0,
    tableCounts,
  };
}
