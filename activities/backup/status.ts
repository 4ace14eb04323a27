/**
 * The backup section of `pgha status --backup`, read where it lives: Barman in the backup CT (the
 * last DONE backup, `barman check`) and the leader (the permanent slot: active, and how far
 * Barman's receive-wal has flushed behind the leader's current WAL position). Read-only.
 */
import type { Inventory } from '../../runbooks/schema';
import { psqlOnMember } from './barman';
import { barmanCheck, listBackups, readVerification } from './cli';
import type { BackupDeps } from './types';

export interface BackupStatus {
  server: string;
  backups: number;
  last?: {
    backupId: string;
    name?: string;
    endTime?: string;
    ageSeconds?: number;
    sizeBytes?: number;
    /** pgha's verify-backup + check-backup of it: both passed (true), one failed (false), none recorded (undefined). */
    verified?: boolean;
  };
  check: { ok: boolean; failing: string[] };
  /** The slot on the leader: active, and the bytes receive-wal has not flushed yet. */
  wal?: { leader: string; slotActive: boolean; lagBytes?: number };
  errors: string[];
}

export async function backupStatus(
  deps: Pick<BackupDeps, 'shellFor'>,
  args: { inv: Inventory; leader?: string; nowMs?: number },
): Promise<BackupStatus> {
  const { inv } = args;
  const d = deps as BackupDeps;
  const out: BackupStatus = {
    server: inv.cluster,
    backups: 0,
    check: { ok: false, failing: [] },
    errors: [],
  };
  try {
    const done = (await listBackups(d, inv)).filter((b) => b.status === 'DONE');
    out.backups = done.length;
    const last = done[0]; // Barman lists the newest first
    if (last) {
      const end = (last as { end_time_timestamp?: string }).end_time_timestamp;
      out.last = {
        backupId: last.backup_id,
        name: last.backup_name,
        endTime: last.end_time,
        sizeBytes: last.size_bytes,
        ageSeconds: end ? Math.round((args.nowMs ?? Date.now()) / 1000 - Number(end)) : undefined,
      };
      const v = await readVerification(d, inv, last.backup_id);
      if (v) out.last.verified = v.verified && v.walComplete;
    }
  } catch (err) {
    out.errors.push(`barman list-backups: ${(err as Error).message}`);
  }
  try {
    const c = await barmanCheck(d, { inv });
    out.check = { ok: c.ok, failing: c.checks.filter((x) => !x.ok).map((x) => `${x.name} (${x.detail})`) };
  } catch (err) {
    out.errors.push(`barman check: ${(err as Error).message}`);
  }
  if (args.leader) {
    try {
      const rows = await psqlOnMember(
        d,
        inv,
        args.leader,
        `select s.active::text,
                coalesce((select pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint::text
                            from pg_stat_replication r where r.pid = s.active_pid), '')
           from pg_replication_slots s where s.slot_name = '${inv.backup.slot.replace(/'/g, "''")}'`,
        15_000,
      );
      const r = rows[0];
      out.wal = {
        leader: args.leader,
        slotActive: r?.[0] === 'true',
        ...(r?.[1] ? { lagBytes: Number(r[1]) } : {}),
      };
    } catch (err) {
      out.errors.push(`slot ${inv.backup.slot} on ${args.leader}: ${(err as Error).message}`);
    }
  }
  return out;
}

const age = (s: number) =>
  s < 120
    ? `${s} s`
    : s < 7200
      ? `${Math.round(s / 60)} min`
      : s < 172800
        ? `${Math.round(s / 3600)} h`
        : `${Math.round(s / 86400)} d`;

const verifiedText = (v: boolean | undefined) =>
  v === true
    ? 'verified'
    : v === false
      ? 'VERIFICATION FAILED (barman verify-backup / check-backup)'
      : 'not verified by pgha';

/** The human text of the section; `next` is the schedules' next due times (when Temporal answered). */
export function formatBackupStatus(b: BackupStatus, schedules?: string[]): string {
  const lines = [
    `backup (Barman server ${b.server}): ${b.check.ok ? 'barman check OK' : 'barman check FAILING'}`,
  ];
  for (const f of b.check.failing) lines.push(`  failing: ${f}`);
  lines.push(
    b.last
      ? `  last backup ${b.last.backupId} (${b.last.name ?? 'unnamed'}): ${b.last.ageSeconds !== undefined ? `${age(b.last.ageSeconds)} ago` : b.last.endTime}, ${((b.last.sizeBytes ?? 0) / 1048576).toFixed(1)} MiB, ${verifiedText(b.last.verified)}; ${b.backups} DONE in all`
      : '  no DONE backup yet: pgha backup --cluster FILE',
  );
  if (b.wal)
    lines.push(
      `  WAL streaming: slot ${b.wal.slotActive ? 'active' : 'NOT active'} on ${b.wal.leader}${b.wal.lagBytes !== undefined ? `, receive-wal ${b.wal.lagBytes} B behind` : ''}`,
    );
  for (const s of schedules ?? []) lines.push(`  ${s}`);
  for (const e of b.errors) lines.push(`  could not read: ${e}`);
  return lines.join('\n');
}
