/**
 * Restore drills with Barman: a backup restored into a scratch copy on the backup CT
 * (activities/render/drill.ts says why it can never join or harm the cluster), started, checked,
 * torn down. Every command runs in the backup CT as Barman's OS user, from argv; the data goes from
 * Barman's storage to the scratch directory in the same CT, never through the worker.
 *
 * Why not `barman restore`: Barman's local restore copies with rsync, which the backup CT does not
 * have (Barman needs it only for restores). The drill does what it would do locally: copies the
 * stored base backup (`base/<id>/data`, plain: no compression is configured) and lets PostgreSQL
 * fetch WAL with Barman's own `barman get-wal` as its restore_command.
 *
 * Each function converges on what the CT shows, so a retry after a worker crash at any line ends the
 * same way: the copy is marked complete by a file written after it (a half copy is removed and made
 * again); the restore's start time is kept in the scratch directory (the RTO of a resumed drill
 * counts from the first start); a running copy is found by `pg_ctl status`.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { setTimeout as sleep } from 'node:timers/promises';
import { Failures } from '../../runbooks/failures';
import type { Inventory } from '../../runbooks/schema';
import { backupNode } from '../../runbooks/topology';
import { asBackupUser, barmanCli } from '../backup/cli';
import { psqlArgv, psqlRows } from '../backup/barman';
import {
  MARKER_TABLE,
  compareCounts,
  countTables,
  literal,
  type CountCheck,
  type SqlRunner,
} from '../backup/counts';
import { readRecordedCounts } from '../backup/physical';
import { BACKUP_ID, BACKUP_NAME, parseBackupRef } from '../../runbooks/retention';
import type { BackupDeps } from '../backup/types';
import { heartbeat } from '../poll';
import {
  barmanServer,
  drillScratch,
  drillServerOptions,
  renderDrillFiles,
  type DrillScratch,
} from '../render';

/** The backup a drill restores, as Barman describes it. */
export interface DrillBackup {
  server: string;
  backupId: string;
  name?: string;
  beginLsn: string;
  /** Barman's end LSN (for a streamed backup: the WAL switch after it). */
  endLsn: string;
  /**
   * Where the backup becomes consistent: its manifest's WAL-Ranges End-LSN (pg_basebackup's stop
   * LSN). Recovery to `immediate` ends exactly there.
   */
  consistentLsn: string;
  endTime: string;
  timeline: number;
  systemId: string;
  postgresVersion: number;
  sizeBytes: number;
}

const refuse = (message: string) =>
  ApplicationFailure.create({ type: Failures.DrillRefused, message, nonRetryable: true });

/** A command as Barman's OS user in the backup CT; throws with the command's last lines unless `ok`. */
async function asBarman(
  deps: BackupDeps,
  inv: Inventory,
  argv: string[],
  o: { timeoutMs?: number; stdin?: string; ok?: boolean } = {},
) {
  if (!backupNode(inv))
    throw refuse(`cluster ${inv.cluster} has no backup CT (nodes.backup): nothing to drill`);
  const r = await asBackupUser(deps, inv, argv, o);
  if (r.code !== 0 && !o.ok)
    throw new Error(
      `${argv[0]} ${argv[1] ?? ''} in the backup CT exited with ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' ')}`,
    );
  return r;
}

const bin = (inv: Inventory, tool: string) => `${inv.postgresql.binDir}/${tool}`;

/** The backup to drill: `latest`, a Barman id or a backup name; refused unless DONE and restorable here. */
export async function drillChooseBackup(
  deps: BackupDeps,
  args: { inv: Inventory; backup: string },
): Promise<DrillBackup> {
  const { inv } = args;
  const want = args.backup;
  try {
    parseBackupRef('backup', want);
  } catch (err) {
    throw refuse((err as Error).message);
  }
  const server = barmanServer(inv);
  const r = await barmanCli(deps, inv, ['-f', 'json', 'show-backup', server, want]);
  let b: Record<string, unknown> | undefined;
  try {
    b = (JSON.parse(r.stdout) as Record<string, Record<string, unknown>>)[server];
  } catch {
    b = undefined;
  }
  if (r.code !== 0 || !b?.backup_id)
    throw refuse(
      `backup ${want} of server ${server} not found (barman show-backup: ${r.stderr.trim().split('\n').slice(-1)[0] ?? r.code}); list them with: barman list-backups ${server}`,
    );
  const info = (b.base_backup_information ?? {}) as Record<string, unknown>;
  const id = String(b.backup_id);
  if (b.status !== 'DONE')
    throw refuse(`backup ${id} is ${String(b.status)}, not DONE: choose a DONE backup`);
  if (!BACKUP_ID.test(id)) throw refuse(`backup id ${JSON.stringify(id)}: expected ${BACKUP_ID}`);
  const tbs = b.tablespaces as unknown;
  if (Array.isArray(tbs) ? tbs.length > 0 : tbs !== null && tbs !== undefined && tbs !== 'None')
    throw refuse(`backup ${id} has tablespaces: the drill restores only backups without tablespaces`);
  const version = Number(b.postgresql_version);
  if (Math.floor(version / 10000) !== inv.postgresql.major)
    throw refuse(
      `backup ${id} is of PostgreSQL ${version}, the backup CT has the binaries of ${inv.postgresql.major} (${inv.postgresql.binDir})`,
    );
  const manifest = await asBarman(
    deps,
    inv,
    ['tail', '-c', '8192', `${inv.backup.storage.path}/${server}/base/${id}/data/backup_manifest`],
    { ok: true, timeoutMs: 30_000 },
  );
  const ends = [...manifest.stdout.matchAll(/"End-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)"/gi)];
  const consistentLsn = ends.at(-1)?.[1];
  if (!consistentLsn)
    throw refuse(
      `backup ${id} has no backup_manifest with a WAL range (${manifest.stderr.trim().split('\n').slice(-1)[0] ?? 'unreadable'}): the drill needs a pg_basebackup backup of PostgreSQL >= 13`,
    );
  return {
    server,
    backupId: id,
    consistentLsn,
    ...(typeof b.backup_name === 'string' ? { name: b.backup_name } : {}),
    beginLsn: String(info.begin_lsn),
    endLsn: String(info.end_lsn),
    endTime: String(info.end_time),
    timeline: Number(info.timeline),
    systemId: String(b.system_id ?? info.systemid ?? ''),
    postgresVersion: version,
    sizeBytes: Number(info.backup_size_bytes ?? 0),
  };
}

/** `barman verify-backup` (pg_verifybackup against the backup's manifest): the files named when it fails. */
export async function drillVerify(
  deps: BackupDeps,
  args: { inv: Inventory; backupId: string },
): Promise<{ ok: boolean; detail: string }> {
  if (!BACKUP_ID.test(args.backupId)) throw refuse(`backup id ${args.backupId}: expected ${BACKUP_ID}`);
  const r = await barmanCli(
    deps,
    args.inv,
    ['verify-backup', barmanServer(args.inv), args.backupId],
    1_800_000,
  );
  const lines = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const bad = lines.filter((l) => /error|mismatch|missing|corrupt|fail/i.test(l));
  return { ok: r.code === 0 && bad.length === 0, detail: (bad.length ? bad : lines).slice(0, 8).join('; ') };
}

async function readFile(deps: BackupDeps, inv: Inventory, path: string): Promise<string | undefined> {
  const r = await asBarman(deps, inv, ['cat', path], { ok: true, timeoutMs: 30_000 });
  return r.code === 0 ? r.stdout : undefined;
}

async function writeFile(deps: BackupDeps, inv: Inventory, path: string, content: string) {
  await asBarman(deps, inv, ['sh', '-c', 'umask 077 && cat > "$1"', 'write', path], {
    stdin: content,
    timeoutMs: 30_000,
  });
}

/** Whether the scratch copy's PostgreSQL runs (pg_ctl status: 0 running, 3 not, 4 no data dir). */
async function running(deps: BackupDeps, inv: Inventory, s: DrillScratch): Promise<boolean> {
  const r = await asBarman(deps, inv, [bin(inv, 'pg_ctl'), 'status', '-D', s.data], {
    ok: true,
    timeoutMs: 30_000,
  });
  return r.code === 0;
}

/** psql against the scratch copy (its socket), one database. */
function scratchSql(deps: BackupDeps, inv: Inventory, s: DrillScratch): SqlRunner {
  return async (database, sql) => {
    const argv = psqlArgv(inv, { socketDir: s.socketDir, port: s.port, database });
    return psqlRows((await asBarman(deps, inv, argv, { stdin: sql, timeoutMs: 600_000 })).stdout);
  };
}

export interface DrillRestored {
  scratch: string;
  port: number;
  startedAt: string;
  readyAt: string;
  /** Restore start → the copy accepts queries (promoted), seconds. */
  rtoSeconds: number;
}

/**
 * The backup copied into the scratch directory and started: recovery from Barman's archive to the
 * backup's consistent point, then promoted. Waits (bounded, heartbeating) until it accepts queries.
 */
export async function drillRestore(
  deps: BackupDeps,
  args: { inv: Inventory; backupId: string; scratchId: string; timeoutMs?: number },
): Promise<DrillRestored> {
  const { inv, backupId } = args;
  if (!BACKUP_ID.test(backupId)) throw refuse(`backup id ${backupId}: expected ${BACKUP_ID}`);
  const s = drillScratch(inv, args.scratchId);
  const startFile = `${s.dir}/.pgha-restore-start`;
  const copiedFile = `${s.dir}/.pgha-copied`;
  // 1. the start time, once (a retry counts from the first attempt's start)
  let started = Number((await readFile(deps, inv, startFile))?.trim());
  if (!Number.isFinite(started) || started <= 0) {
    if (await running(deps, inv, s)) await stopScratch(deps, inv, s);
    await asBarman(deps, inv, ['rm', '-rf', '--one-file-system', s.dir], { timeoutMs: 600_000 });
    await asBarman(deps, inv, ['mkdir', '-p', '-m', '0700', s.dir, s.socketDir]);
    started = Date.now();
    await writeFile(deps, inv, startFile, `${started}\n`);
  }
  // 2. the copy, complete or made again
  if ((await readFile(deps, inv, copiedFile)) === undefined) {
    if (await running(deps, inv, s)) await stopScratch(deps, inv, s);
    await asBarman(deps, inv, ['rm', '-rf', '--one-file-system', s.data], { timeoutMs: 600_000 });
    const src = `${inv.backup.storage.path}/${barmanServer(inv)}/base/${backupId}/data`;
    await asBarman(deps, inv, ['cp', '-a', src, s.data], { timeoutMs: 3_600_000 });
    // what the cluster's PostgreSQL left that must not come along: its ALTER SYSTEM settings (they
    // would override the drill's file), a pid file, signal files, slots
    await writeFile(deps, inv, `${s.data}/postgresql.auto.conf`, '# emptied by the pgha restore drill\n');
    await asBarman(deps, inv, [
      'sh',
      '-c',
      'cd "$1" && rm -f postmaster.pid postmaster.opts standby.signal && rm -rf pg_replslot/* && touch recovery.signal && chmod 0700 .',
      'prepare',
      s.data,
    ]);
    await writeFile(deps, inv, copiedFile, `${backupId}\n`);
  }
  // 3. its configuration (rendered, always written: idempotent), then started unless it runs
  for (const f of renderDrillFiles(inv, s)) await writeFile(deps, inv, f.path, f.content);
  if (!(await running(deps, inv, s)))
    await asBarman(deps, inv, [
      bin(inv, 'pg_ctl'),
      'start',
      '-W',
      '-D',
      s.data,
      '-l',
      s.log,
      '-o',
      drillServerOptions(s),
    ]);
  // 4. bounded wait until it accepts queries, promoted
  const readyFile = `${s.dir}/.pgha-ready`;
  let ready = Number((await readFile(deps, inv, readyFile))?.trim());
  if (!Number.isFinite(ready) || ready <= 0) {
    const deadline = Date.now() + (args.timeoutMs ?? 1_800_000);
    const sql = scratchSql(deps, inv, s);
    let last = 'not started';
    for (;;) {
      const rows = await sql('postgres', 'select pg_is_in_recovery();').catch((e: Error) => {
        last = e.message.slice(0, 200);
        return undefined;
      });
      if (rows?.[0]?.[0] === 'f') break;
      if (rows) last = 'still recovering';
      if (!(await running(deps, inv, s))) {
        const log = await asBarman(deps, inv, ['tail', '-n', '8', s.log], { ok: true });
        throw new Error(
          `the scratch copy of backup ${backupId} stopped while starting: ${log.stdout.trim().split('\n').join(' | ')}`,
        );
      }
      if (Date.now() >= deadline)
        throw new Error(
          `the scratch copy of backup ${backupId} did not accept queries in ${Math.round((args.timeoutMs ?? 1_800_000) / 1000)} s: ${last}`,
        );
      heartbeat({ what: 'scratch copy starting', last });
      await sleep(500);
    }
    ready = Date.now();
    await writeFile(deps, inv, readyFile, `${ready}\n`);
  }
  return {
    scratch: s.dir,
    port: s.port,
    startedAt: new Date(started).toISOString(),
    readyAt: new Date(ready).toISOString(),
    rtoSeconds: Math.round((ready - started) / 100) / 10,
  };
}

export interface DrillChecks {
  marker: { expected?: string; found: boolean; lsn?: string };
  amcheck: { ok: boolean; detail: string };
  counts: CountCheck[];
  /** The last WAL location recovery applied, and whether it reached the backup's end (its consistent point). */
  restoredLsn: string;
  consistentLsn: string;
  endLsn: string;
  lsnReached: boolean;
  /** Every problem found, named (empty: the backup is proven). */
  problems: string[];
}

/** The restored copy checked: marker row, pg_amcheck over every database, row counts, LSN. */
export async function drillCheck(
  deps: BackupDeps,
  args: { inv: Inventory; backup: DrillBackup; scratchId: string },
): Promise<DrillChecks> {
  const { inv, backup } = args;
  const s = drillScratch(inv, args.scratchId);
  const sql = scratchSql(deps, inv, s);
  const problems: string[] = [];
  // the restored LSN against the backup's end
  const lsnRow = (
    await sql(
      'postgres',
      `select pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= ${literal(backup.consistentLsn)}::pg_lsn;`,
    )
  )[0];
  const restoredLsn = lsnRow?.[0] ?? '';
  const lsnReached = lsnRow?.[1] === 't';
  if (!lsnReached)
    problems.push(
      `restored LSN ${restoredLsn} is before the backup's consistent point ${backup.consistentLsn} (its end)`,
    );
  // the marker row of that backup
  const marker: DrillChecks['marker'] = { found: false };
  if (backup.name && BACKUP_NAME.test(backup.name)) {
    marker.expected = backup.name;
    const has = await sql('postgres', `select to_regclass(${literal(MARKER_TABLE)}) is not null;`);
    const rows =
      has[0]?.[0] === 't'
        ? await sql('postgres', `select lsn::text from ${MARKER_TABLE} where id = ${literal(backup.name)};`)
        : [];
    marker.found = rows.length === 1;
    if (rows[0]) marker.lsn = rows[0][0];
    if (!marker.found) problems.push(`the marker row ${backup.name} is missing from ${MARKER_TABLE}`);
  }
  // pg_amcheck over every database (amcheck installed where missing: the copy is promoted)
  const am = await asBarman(
    deps,
    inv,
    [
      bin(inv, 'pg_amcheck'),
      '-h',
      s.socketDir,
      '-p',
      String(s.port),
      '-U',
      inv.postgresql.superuser,
      '--all',
      '--install-missing',
      '--no-password',
    ],
    { ok: true, timeoutMs: 3_600_000 },
  );
  const amLines = `${am.stdout}\n${am.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const amcheck = { ok: am.code === 0 && am.stdout.trim() === '', detail: amLines.slice(0, 8).join('; ') };
  if (!amcheck.ok) problems.push(`pg_amcheck found corruption: ${amcheck.detail || `exit ${am.code}`}`);
  // row counts against the ones recorded with the backup
  const recorded = (await readRecordedCounts(deps, inv, backup.backupId)) ?? [];
  const restored = recorded.length
    ? await countTables(sql, recorded).catch((e: Error) => {
        problems.push(`counting the recorded tables failed: ${e.message.slice(0, 300)}`);
        return [];
      })
    : [];
  const counts = compareCounts(recorded, restored);
  for (const c of counts.filter((x) => !x.ok))
    problems.push(
      `${c.database}.${c.table}: ${c.restored ?? 'no'} rows restored, recorded ${c.atMarker ?? '?'} at the marker and ${c.atEnd} after the backup`,
    );
  return {
    marker,
    amcheck,
    counts,
    restoredLsn,
    consistentLsn: backup.consistentLsn,
    endLsn: backup.endLsn,
    lsnReached,
    problems,
  };
}

async function stopScratch(deps: BackupDeps, inv: Inventory, s: DrillScratch) {
  await asBarman(deps, inv, [bin(inv, 'pg_ctl'), 'stop', '-D', s.data, '-m', 'immediate', '-w', '-t', '60'], {
    ok: true,
    timeoutMs: 90_000,
  });
}

/** The scratch copy stopped and removed; checked gone. Idempotent (nothing there: nothing to do). */
export async function drillTeardown(
  deps: BackupDeps,
  args: { inv: Inventory; scratchId: string },
): Promise<{ stopped: boolean; removed: boolean }> {
  const { inv } = args;
  const s = drillScratch(inv, args.scratchId);
  const exists = (await asBarman(deps, inv, ['test', '-e', s.dir], { ok: true })).code === 0;
  if (!exists) return { stopped: false, removed: false };
  const wasRunning = await running(deps, inv, s);
  if (wasRunning) await stopScratch(deps, inv, s);
  if (await running(deps, inv, s))
    throw new Error(
      `the scratch copy in ${s.dir} still runs after pg_ctl stop: stop it by hand (pg_ctl stop -D ${s.data})`,
    );
  await asBarman(deps, inv, ['rm', '-rf', '--one-file-system', s.dir], { timeoutMs: 600_000 });
  if ((await asBarman(deps, inv, ['test', '-e', s.dir], { ok: true })).code === 0)
    throw new Error(`${s.dir} is still there after rm -rf: remove it by hand`);
  return { stopped: wasRunning, removed: true };
}
