/**
 * What the backup lab tests (and bench/backup.ts) use to read Barman from outside pgha: `barman`
 * run directly in the backup CT as Barman's OS user (lxc-attach, not pgha's ssh + pct transport),
 * and a restore of a base backup with every archived WAL file, started in the backup CT, to read
 * what the archive really holds.
 */
import { barmanExecutable, barmanServer } from '../../activities/render';
import type { Inventory } from '../../runbooks/schema';
import { inCt } from './lab-direct';

const backupVmid = (inv: Inventory) => {
  const b = inv.nodes.backup[0];
  if (!b) throw new Error(`inventory of ${inv.cluster} has no backup CT (nodes.backup)`);
  return b.vmid;
};

/** `barman ARGS` in the backup CT as Barman's user, read directly (throws on a non-zero exit). */
export function barmanDirect(inv: Inventory, args: string[], timeoutMs = 120_000): string {
  return inCt(backupVmid(inv), ['runuser', '-u', inv.backup.osUser, '--', barmanExecutable(inv), ...args], {
    timeoutMs,
  });
}

export interface ListedBackup {
  backup_id: string;
  backup_name?: string;
  status: string;
}

/** `barman list-backups` of the cluster's server, newest first. */
export function listBackupsDirect(inv: Inventory): ListedBackup[] {
  const server = barmanServer(inv);
  return (
    (JSON.parse(barmanDirect(inv, ['-f', 'json', 'list-backups', server])) as Record<string, ListedBackup[]>)[
      server
    ] ?? []
  );
}

/** Whether `barman check` passes now. */
export function barmanCheckPasses(inv: Inventory): boolean {
  try {
    barmanDirect(inv, ['check', barmanServer(inv)]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Copies the base backup's data directory, asks for archive recovery to the latest timeline with
 * `barman get-wal` as restore_command (every WAL file through Barman's archive, none from the
 * cluster), and starts PostgreSQL on it (a local socket only, port `port`) as Barman's OS user.
 * Exits non-zero when PostgreSQL does not start. Positional: bin dir, barman, server, backup dir,
 * target dir, port.
 */
const RESTORE_SH = `set -eu
bin=$1 barman=$2 server=$3 src=$4 dir=$5 port=$6
if [ -f "$dir/postmaster.pid" ]; then "$bin/pg_ctl" -D "$dir" -m immediate -w stop || true; fi
rm -rf "$dir"
mkdir -m 0700 "$dir"
cp -a "$src/data/." "$dir/"
rm -f "$dir/postmaster.pid" "$dir/standby.signal"
touch "$dir/recovery.signal"
printf "%s\\n" "restore_command = '$barman get-wal $server %f > %p'" "recovery_target_timeline = 'latest'" >>"$dir/postgresql.auto.conf"
printf 'local all all trust\\n' >"$dir/pg_hba.check.conf"
"$bin/pg_ctl" -D "$dir" -l "$dir/startup.log" -w -t 300 -o "-c port=$port -c listen_addresses= -c unix_socket_directories=$dir -c hba_file=$dir/pg_hba.check.conf -c archive_mode=off -c synchronous_standby_names= -c cluster_name=restore-check" start
`;

export interface RestoredArchive {
  /** psql -At in the restored instance: rows of `|`-separated fields. */
  query(sql: string): string[][];
  /** Stops it and removes its directory. */
  drop(): void;
}

/**
 * Restores backup `backupId` of the cluster's Barman server with all the archived WAL in the
 * backup CT (directory `<storage>/restore-check`), waits until recovery has ended (it promotes at
 * the end of the archive), and returns a handle to read it.
 */
export async function restoreArchive(
  inv: Inventory,
  backupId: string,
  port = 5499,
): Promise<RestoredArchive> {
  if (!/^\d{8}T\d{6}$/.test(backupId)) throw new Error(`not a Barman backup id: ${backupId}`);
  const vmid = backupVmid(inv);
  const server = barmanServer(inv);
  const dir = `${inv.backup.storage.path}/restore-check`;
  const bin = inv.postgresql.binDir;
  const asBarman = (argv: string[], timeoutMs = 60_000) =>
    inCt(vmid, ['runuser', '-u', inv.backup.osUser, '--', ...argv], { timeoutMs });
  asBarman(
    [
      'sh',
      '-c',
      RESTORE_SH,
      'sh',
      bin,
      barmanExecutable(inv),
      server,
      `${inv.backup.storage.path}/${server}/base/${backupId}`,
      dir,
      String(port),
    ],
    360_000,
  );
  const query = (sql: string): string[][] =>
    asBarman([
      `${bin}/psql`,
      '-X',
      '-A',
      '-t',
      '-h',
      dir,
      '-p',
      String(port),
      '-U',
      inv.postgresql.superuser,
      '-d',
      'postgres',
      '-c',
      sql,
    ])
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('|'));
  const deadline = Date.now() + 300_000;
  while (query('select pg_is_in_recovery()')[0]?.[0] !== 'f') {
    if (Date.now() > deadline) throw new Error(`the restore of ${backupId} still in recovery after 300 s`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return {
    query,
    drop: () => {
      asBarman(['sh', '-c', '"$1/pg_ctl" -D "$2" -m immediate -w stop; rm -rf "$2"', 'sh', bin, dir]);
    },
  };
}
