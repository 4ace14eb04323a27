/**
 * A logical backup, run in the backup CT as Barman's OS user against a replica (every HAProxy's
 * read port, libpq multi-host), into the backup storage — the data never passes through the worker:
 *
 *   `pg_dump -Fc` of every database that accepts connections (files named by the database's OID,
 *   names in databases.tsv), `pg_dumpall --globals-only --no-role-passwords` (roles, memberships,
 *   tablespaces; Barman's role is no superuser, so no password hashes), then SHA256SUMS over every
 *   file, then the directory moved into place: `<storage>/logical/<name>/`.
 *
 * Converging: a finished dump (its SHA256SUMS present in the final directory) is taken as it is;
 * otherwise the partial directory of an earlier attempt is removed and the dump taken again. One
 * dump of the cluster at a time (flock on `<storage>/logical/.lock`): a retry whose earlier attempt
 * still runs in the CT (the worker died, the command did not) waits for it and then finds it done.
 * The checksums are checked again (sha256sum -c) before the result is returned.
 *
 * Retention (applyLogicalRetention): Barman's two policy forms over these directories — REDUNDANCY
 * n keeps the n newest; RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS keeps every dump newer than the
 * window and the newest one before it (the one a point inside the window is restored from).
 */
import { parseRetention } from '../../runbooks/retention';
import type { Inventory } from '../../runbooks/schema';
import { backupNode } from '../../runbooks/topology';
import { cancellationSignal, heartbeating } from '../poll';
import { BACKUP_NAME } from './physical';
import type { BackupDeps } from './types';

export interface LogicalBackupFile {
  file: string;
  /** The database it holds (absent for globals.sql and databases.tsv). */
  database?: string;
  bytes: number;
  sha256: string;
}

export interface LogicalBackupResult {
  kind: 'logical';
  name: string;
  /** The directory in the backup CT. */
  path: string;
  /** When the dump ended (the directory's time), ISO. */
  endTime: string;
  databases: string[];
  files: LogicalBackupFile[];
  sizeBytes: number;
  durationSeconds: number;
  /** The server's version as the replica reports it (server_version_num). */
  postgresVersion: number;
  /** sha256sum -c over every file passed. */
  verified: boolean;
}

export const logicalDir = (inv: Inventory) => `${inv.backup.storage.path}/logical`;

/**
 * The dump script (`sh -c SCRIPT pgha-dump BASE NAME BINDIR HOSTS PORTS USER`): every value a
 * positional parameter. Prints `file<TAB>bytes<TAB>sha256<TAB>database` lines, `version<TAB>N`,
 * `seconds<TAB>N` and `end<TAB>ISO`.
 */
export const DUMP_SCRIPT = `set -eu
base=$1 name=$2 bin=$3
export PGHOST=$4 PGPORT=$5 PGUSER=$6 PGDATABASE=postgres PGCONNECT_TIMEOUT=10 PGAPPNAME=pgha-logical-backup
final="$base/$name" part="$base/.$name.partial"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
t0=$(date +%s)
if [ ! -f "$final/SHA256SUMS" ]; then
  # Holding the lock, no other dump runs: every partial directory is an abandoned attempt's.
  rm -rf -- "$base"/.*.partial "$final"
  mkdir -m 0700 "$part"
  "$bin/psql" -X -A -t -F '	' -v ON_ERROR_STOP=1 \\
    -c "select oid, datname from pg_database where datallowconn and not datistemplate order by oid" \\
    > "$part/databases.tsv"
  while IFS='	' read -r oid db; do
    "$bin/pg_dump" -Fc -d "$db" -f "$part/db-$oid.dump"
  done < "$part/databases.tsv"
  "$bin/pg_dumpall" --globals-only --no-role-passwords -f "$part/globals.sql"
  "$bin/psql" -X -A -t -c "select current_setting('server_version_num')" > "$part/server_version_num"
  (cd "$part" && sha256sum -- databases.tsv globals.sql server_version_num db-*.dump > SHA256SUMS)
  mv -- "$part" "$final"
  sync -f "$final/SHA256SUMS"
fi
cd "$final"
sha256sum --quiet -c SHA256SUMS >&2
while read -r sum f; do
  db=
  case $f in db-*.dump) oid=\${f#db-}; oid=\${oid%.dump}; db=$(awk -F '	' -v o="$oid" '$1 == o { print $2 }' databases.tsv) ;; esac
  printf 'file\\t%s\\t%s\\t%s\\t%s\\n' "$f" "$(wc -c < "$f")" "$sum" "$db"
done < SHA256SUMS
printf 'version\\t%s\\n' "$(cat server_version_num)"
printf 'seconds\\t%s\\n' "$(( $(date +%s) - t0 ))"
printf 'end\\t%s\\n' "$(date -u -r SHA256SUMS +%Y-%m-%dT%H:%M:%SZ)"`;

export async function logicalBackup(
  deps: BackupDeps,
  args: { inv: Inventory; name: string },
): Promise<LogicalBackupResult> {
  const { inv, name } = args;
  if (!BACKUP_NAME.test(name))
    throw new Error(`backup name ${JSON.stringify(name)}: expected ${BACKUP_NAME}`);
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const sh = await deps.shellFor(inv.proxmox);
  const hosts = inv.nodes.haproxy.map((h) => h.ip);
  const argv = [
    'runuser',
    '-u',
    inv.backup.osUser,
    '--',
    'sh',
    '-c',
    DUMP_SCRIPT,
    'pgha-dump',
    logicalDir(inv),
    name,
    inv.postgresql.binDir,
    hosts.join(','),
    hosts.map(() => String(inv.ports.haproxyRead)).join(','),
    inv.backup.user,
  ];
  const r = await heartbeating(
    () => `pg_dump of ${inv.cluster} into ${logicalDir(inv)}/${name}`,
    () => sh.exec(node.vmid, argv, { timeoutMs: 4 * 3600_000, signal: cancellationSignal() }),
  );
  if (r.code !== 0)
    throw new Error(
      `the logical backup ${name} in CT ${node.vmid} exited with ${r.code}: ${r.stderr.trim().split('\n').slice(-4).join(' ')}`,
    );
  const files: LogicalBackupFile[] = [];
  const kv = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'file')
      files.push({ file: f[1]!, bytes: Number(f[2]), sha256: f[3]!, ...(f[4] ? { database: f[4] } : {}) });
    else if (f.length === 2) kv.set(f[0]!, f[1]!);
  }
  const databases = files.flatMap((f) => (f.database ? [f.database] : []));
  if (databases.length === 0)
    throw new Error(`the logical backup ${name} holds no database dump: ${r.stdout.slice(0, 400)}`);
  return {
    kind: 'logical',
    name,
    path: `${logicalDir(inv)}/${name}`,
    endTime: kv.get('end') ?? '',
    databases,
    files,
    sizeBytes: files.reduce((n, f) => n + f.bytes, 0),
    durationSeconds: Number(kv.get('seconds') ?? 0),
    postgresVersion: Number(kv.get('version') ?? 0),
    verified: true, // sha256sum -c passed (the script stops otherwise)
  };
}

/** Which dumps a policy deletes, given each dump's name and end time (epoch s); pure. */
export function logicalObsolete(
  policy: string,
  dumps: { name: string; at: number }[],
  nowS: number,
): string[] {
  const p = parseRetention('retention', policy);
  const newest = [...dumps].sort((a, b) => b.at - a.at || b.name.localeCompare(a.name));
  const red = /^REDUNDANCY (\d+)$/.exec(p);
  if (red) return newest.slice(Number(red[1])).map((d) => d.name);
  const w = /^RECOVERY WINDOW OF (\d+) (DAY|WEEK|MONTH)S?$/.exec(p)!;
  const days = Number(w[1]) * (w[2] === 'DAY' ? 1 : w[2] === 'WEEK' ? 7 : 31);
  const edge = nowS - days * 86400;
  const firstOld = newest.findIndex((d) => d.at < edge);
  return firstOld < 0 ? [] : newest.slice(firstOld + 1).map((d) => d.name);
}

/** The policy over the logical dumps: the obsolete ones removed and found gone. */
export async function applyLogicalRetention(
  deps: BackupDeps,
  args: { inv: Inventory; policy: string },
): Promise<{ policy: string; deleted: string[]; kept: string[] }> {
  const { inv } = args;
  const policy = parseRetention('retention', args.policy);
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const sh = await deps.shellFor(inv.proxmox);
  const list = async () => {
    const r = await sh.exec(node.vmid, [
      'sh',
      '-c',
      'cd "$1" 2>/dev/null || exit 0; for d in pgha-*; do [ -f "$d/SHA256SUMS" ] && printf "%s\\t%s\\t%s\\n" "$d" "$(date -r "$d/SHA256SUMS" +%s)" "$(date +%s)"; done; true',
      'pgha-list',
      logicalDir(inv),
    ]);
    if (r.code !== 0)
      throw new Error(`listing ${logicalDir(inv)} in CT ${node.vmid} exited with ${r.code}: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'))
      .map(([name, at, now]) => ({ name: name!, at: Number(at), now: Number(now) }));
  };
  const dumps = await list();
  const nowS = dumps[0]?.now ?? Math.floor(Date.now() / 1000);
  const obsolete = logicalObsolete(policy, dumps, nowS).filter((n) => BACKUP_NAME.test(n));
  if (obsolete.length > 0) {
    const r = await sh.exec(node.vmid, [
      'sh',
      '-c',
      'cd "$1" && shift && for d in "$@"; do rm -rf -- "./$d"; done',
      'pgha-rm',
      logicalDir(inv),
      ...obsolete,
    ]);
    if (r.code !== 0) throw new Error(`removing ${obsolete.join(', ')} exited with ${r.code}: ${r.stderr}`);
  }
  const left = await list();
  const still = left.filter((d) => obsolete.includes(d.name));
  if (still.length > 0)
    throw new Error(`logical dumps ${still.map((d) => d.name).join(', ')} are still there after rm`);
  return { policy, deleted: obsolete, kept: left.map((d) => d.name) };
}
