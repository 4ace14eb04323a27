/**
 * A restore drill's scratch copy on the backup CT: where it lives and how its PostgreSQL runs.
 * Pure. The copy can never join or harm the cluster:
 * - under the backup storage (`<storage>/pgha-drill/<id>`), owned by Barman's OS user, who runs it;
 * - its own configuration file (`config_file`, given on the command line, so the cluster's
 *   postgresql.conf that came with the backup is never read): loopback only on a port of its own,
 *   its socket in the scratch directory, `archive_mode = off`, no WAL senders, no slots, no
 *   primary_conninfo / primary_slot_name (no standby.signal either), no Patroni, nothing pointed at
 *   etcd; its pg_hba.conf allows only the local socket (trust: the socket's directory is 0700);
 * - recovery from Barman's archive (`barman get-wal`, in the same CT) to the backup's consistent
 *   point (`recovery_target = 'immediate'`), then promoted (pg_amcheck installs amcheck);
 * - hot_standby = off: nothing reads it before it is promoted, and the primary's max_connections /
 *   max_wal_senders / ... need not be matched (PostgreSQL checks them only for hot standby).
 * The settings that keep it apart are given on the command line too (`-c`), above anything in the
 * backup's postgresql.auto.conf (ALTER SYSTEM on the cluster could have set archive_mode there).
 */
import type { Inventory } from '../../runbooks/schema';
import { barmanExecutable, barmanServer } from './barman';
import { header, type RenderedFile } from './files';

/** A scratch id: from the workflow (letters, digits, -). */
export const DRILL_ID = /^[a-z0-9][a-z0-9-]{0,99}$/;

export interface DrillScratch {
  id: string;
  /** The scratch directory: everything of the copy lives below it. */
  dir: string;
  data: string;
  socketDir: string;
  conf: string;
  hba: string;
  ident: string;
  log: string;
  port: number;
}

/** The scratch port: the cluster's PostgreSQL port + 10000 (or - 10000 when that is out of range). */
export function drillPort(inv: Inventory): number {
  const p = inv.ports.postgresql;
  return p + 10000 <= 65535 ? p + 10000 : p - 10000;
}

export function drillScratch(inv: Inventory, id: string): DrillScratch {
  if (!DRILL_ID.test(id)) throw new Error(`drill scratch id ${JSON.stringify(id)}: expected ${DRILL_ID}`);
  const dir = `${inv.backup.storage.path}/pgha-drill/${id}`;
  return {
    id,
    dir,
    data: `${dir}/data`,
    socketDir: `${dir}/run`,
    conf: `${dir}/drill.conf`,
    hba: `${dir}/pg_hba.conf`,
    ident: `${dir}/pg_ident.conf`,
    log: `${dir}/postgres.log`,
    port: drillPort(inv),
  };
}

/** The settings that keep the copy apart, also given on the command line (`-c name=value`). */
export function drillIsolation(s: DrillScratch): [string, string][] {
  return [
    ['listen_addresses', '127.0.0.1'],
    ['port', String(s.port)],
    ['unix_socket_directories', s.socketDir],
    ['hba_file', s.hba],
    ['ident_file', s.ident],
    ['archive_mode', 'off'],
    ['hot_standby', 'off'],
    ['max_wal_senders', '0'],
    ['max_replication_slots', '0'],
  ];
}

/** `pg_ctl -o` text: each value is from drillScratch (paths of a safe character set, numbers). */
export function drillServerOptions(s: DrillScratch): string {
  return [['config_file', s.conf], ...drillIsolation(s)].map(([k, v]) => `-c ${k}=${v}`).join(' ');
}

export function renderDrillFiles(inv: Inventory, s: DrillScratch): RenderedFile[] {
  const u = inv.backup.osUser;
  const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const conf = `${header(inv.cluster, `restore drill ${s.id}: a scratch copy on the backup CT, never part of the cluster`)}${drillIsolation(
    s,
  )
    .map(([k, v]) => `${k} = ${q(v)}`)
    .join('\n')}
primary_conninfo = ''
primary_slot_name = ''
synchronous_standby_names = ''
shared_preload_libraries = ''
shared_buffers = '64MB'
max_connections = '20'
logging_collector = off
restore_command = ${q(`${barmanExecutable(inv)} get-wal ${barmanServer(inv)} %f > %p`)}
recovery_target = 'immediate'
recovery_target_action = 'promote'
`;
  const hba = `${header(inv.cluster, `restore drill ${s.id}: the local socket only`)}local all all trust
`;
  return [
    { path: s.conf, content: conf, mode: 0o600, owner: u, group: u },
    { path: s.hba, content: hba, mode: 0o600, owner: u, group: u },
    {
      path: s.ident,
      content: header(inv.cluster, `restore drill ${s.id}: no user name maps`),
      mode: 0o600,
      owner: u,
      group: u,
    },
  ];
}
