/**
 * Barman on the backup CT: /etc/barman.conf, the server file /etc/barman.d/<cluster>.conf, the
 * Barman user's ~/.pgpass (its two roles' passwords) and the `barman cron` systemd service + timer.
 * Pure: values from the inventory, passwords only from the resolved secrets passed beside it.
 *
 * - backup_method = postgres (pg_basebackup over the replication protocol) and streaming_archiver
 *   = on (pg_receivewal): no SSH between the CTs and no archive_command on the database nodes;
 * - slot_name = the Patroni permanent slot (created by Patroni on whichever member leads, so
 *   create_slot = manual: Barman never creates or drops it);
 * - conninfo and streaming_conninfo name every HAProxy's write port (libpq multi-host), so Barman
 *   follows the leader across a switchover or a failover.
 */
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import { barmanConninfo } from '../../runbooks/topology';
import { header, type RenderedFile } from './files';

export const BARMAN_CONF_PATH = '/etc/barman.conf';
export const BARMAN_CONF_DIR = '/etc/barman.d';
export const BARMAN_CRON_SERVICE_PATH = '/etc/systemd/system/barman-cron.service';
export const BARMAN_CRON_TIMER_PATH = '/etc/systemd/system/barman-cron.timer';
export const BARMAN_RECEIVE_WAL_SERVICE_PATH = '/etc/systemd/system/barman-receive-wal.service';
export const BARMAN_LOG_DIR = '/var/log/barman';

/**
 * The application name of Barman's WAL receiver (pg_receivewal) in pg_stat_replication: Barman's
 * default streaming_archiver_name, written out so that synchronous_standby_names can name it.
 */
export const BARMAN_RECEIVER_NAME = 'barman_receive_wal';

/**
 * synchronous_standby_names as pgha wants it in every member's postgresql.auto.conf: Barman's
 * receiver with backup.synchronous (Barman then starts pg_receivewal --synchronous, flushing and
 * acknowledging each write at once), nothing without (the setting is reset, the cluster's own).
 */
export function barmanSynchronousStandbyNames(inv: Inventory): string | undefined {
  return inv.backup.synchronous && inv.nodes.backup.length > 0 ? BARMAN_RECEIVER_NAME : undefined;
}

/**
 * The SQL that brings one member's postgresql.auto.conf to {@link barmanSynchronousStandbyNames},
 * given what its postgresql.auto.conf holds now (`current`, '' for nothing): nothing when it is
 * already so, and a value pgha did not set is reset only when it is Barman's receiver. ALTER
 * SYSTEM and not Patroni's parameters: Patroni rewrites synchronous_standby_names in
 * postgresql.conf itself (off: it removes it), and postgresql.auto.conf is read after it.
 */
export function synchronousStandbySql(inv: Inventory, current: string): string[] {
  const want = barmanSynchronousStandbyNames(inv);
  if (want !== undefined)
    return current === want
      ? []
      : [`ALTER SYSTEM SET synchronous_standby_names = '${want}';`, 'SELECT pg_reload_conf();'];
  return current === BARMAN_RECEIVER_NAME
    ? ['ALTER SYSTEM RESET synchronous_standby_names;', 'SELECT pg_reload_conf();']
    : [];
}

/**
 * Barman's server name for a cluster: `backup.server`, or the cluster name (letters, digits, -; the
 * schema checks both). A major upgrade moves the cluster to a new server (`<cluster>-pg<major>`,
 * runbooks/pg-version.ts majorTargetInput): WAL of two majors never goes into one archive.
 */
export function barmanServer(inv: Inventory): string {
  return inv.backup.server ?? inv.cluster;
}

export function barmanServerConfPath(inv: Inventory): string {
  return `${BARMAN_CONF_DIR}/${barmanServer(inv)}.conf`;
}

/** The barman executable of the virtualenv. */
export function barmanExecutable(inv: Inventory): string {
  return `${inv.backup.install.venv}/bin/barman`;
}

export function renderBarmanConf(inv: Inventory): RenderedFile {
  const b = inv.backup;
  const content = `${header(inv.cluster, 'Barman global configuration')}[barman]
barman_user = ${b.osUser}
barman_home = ${b.storage.path}
configuration_files_directory = ${BARMAN_CONF_DIR}
log_file = ${BARMAN_LOG_DIR}/barman.log
log_level = INFO
`;
  return { path: BARMAN_CONF_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}

/**
 * The server file. `retired`: the server of a major the cluster left (pgha's major upgrade) —
 * `active = false`: Barman takes no backup and streams no WAL for it (its slot is the new
 * cluster's), while its backups stay listed and restorable to that major.
 */
export function renderBarmanServerConf(inv: Inventory, opts: { retired?: boolean } = {}): RenderedFile {
  const b = inv.backup;
  const server = barmanServer(inv);
  const what = opts.retired
    ? `retired: PostgreSQL ${inv.postgresql.major}, the cluster moved to a newer major (its backups stay)`
    : `PostgreSQL ${inv.postgresql.major} through HAProxy's write port`;
  const content = `${header(inv.cluster, `Barman server ${server}: ${what}`)}[${server}]
description = pgha cluster ${inv.cluster} (Patroni scope ${inv.patroni.scope})${opts.retired ? '\nactive = false' : ''}
conninfo = ${barmanConninfo(inv, 'conninfo')}
streaming_conninfo = ${barmanConninfo(inv, 'streaming')}
backup_method = postgres
streaming_archiver = on
streaming_archiver_name = ${BARMAN_RECEIVER_NAME}
archiver = off
slot_name = ${b.slot}
create_slot = manual
path_prefix = ${inv.postgresql.binDir}
backup_directory = ${b.storage.path}/${server}
`;
  return { path: barmanServerConfPath(inv), content, mode: 0o644, owner: 'root', group: 'root' };
}

/**
 * The schedule's retention policy as a drop-in beside the server file (Barman merges every
 * `*.conf` of the directory into one configuration: the same `[server]` section gains
 * `retention_policy`). Apart from the server file so that deployCluster, which renders that one
 * from the inventory, never takes it away; `barman cron` then applies it every minute. The policy
 * must already be checked (runbooks/retention.ts: Barman's two forms only).
 */
export function barmanRetentionConfPath(inv: Inventory): string {
  return `${BARMAN_CONF_DIR}/${barmanServer(inv)}.retention.conf`;
}

export function renderBarmanRetentionConf(inv: Inventory, policy: string): RenderedFile {
  if (!/^(RECOVERY WINDOW OF [1-9][0-9]* (DAY|WEEK|MONTH)S?|REDUNDANCY [1-9][0-9]*)$/.test(policy))
    throw new Error(`retention policy ${JSON.stringify(policy)}: check it with parseRetention first`);
  const server = barmanServer(inv);
  const content = `${header(inv.cluster, `Barman server ${server}: the retention policy of its backup schedule (pgha schedule backup --retention)`)}[${server}]
retention_policy = ${policy}
retention_policy_mode = auto
wal_retention_policy = main
`;
  return { path: barmanRetentionConfPath(inv), content, mode: 0o644, owner: 'root', group: 'root' };
}

function pgpassField(s: string): string {
  return s.replace(/[\\:]/g, (c) => `\\${c}`);
}

/**
 * ~barman/.pgpass: the two roles' passwords for every HAProxy's write port, and Barman's role for
 * every read port (logical backups: pg_dump against a replica); mode 0600.
 */
export function renderBarmanPgpass(inv: Inventory, secrets: ClusterSecrets): RenderedFile {
  const b = inv.backup;
  if (secrets.barmanPassword === undefined || secrets.streamingBarmanPassword === undefined)
    throw new Error(
      'secrets.barmanPassword and secrets.streamingBarmanPassword are required with a backup CT (pgha secrets init --cluster FILE)',
    );
  const port = inv.ports.haproxyWrite;
  const lines = inv.nodes.haproxy.flatMap((h) => [
    `${h.ip}:${port}:*:${pgpassField(b.user)}:${pgpassField(secrets.barmanPassword!)}`,
    `${h.ip}:${port}:*:${pgpassField(b.streamingUser)}:${pgpassField(secrets.streamingBarmanPassword!)}`,
    `${h.ip}:${inv.ports.haproxyRead}:*:${pgpassField(b.user)}:${pgpassField(secrets.barmanPassword!)}`,
  ]);
  const content = `${header(inv.cluster, `.pgpass of the ${b.osUser} OS user; holds passwords: mode 0600`)}${lines.join('\n')}\n`;
  return {
    path: `${b.storage.path}/.pgpass`,
    content,
    mode: 0o600,
    owner: b.osUser,
    group: b.osUser,
  };
}

/** `barman cron` once a minute (starts receive-wal, archives WAL, applies retention), as Barman's packages do. */
export function renderBarmanCronUnits(inv: Inventory): RenderedFile[] {
  const b = inv.backup;
  const service = `${header(inv.cluster, 'barman cron: WAL streaming and archiving maintenance')}[Unit]
Description=Barman cron (cluster ${inv.cluster})
Documentation=https://docs.pgbarman.org/
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
User=${b.osUser}
Group=${b.osUser}
Environment=PATH=${inv.postgresql.binDir}:/usr/bin:/bin
ExecStart=${barmanExecutable(inv)} -q cron
# barman cron starts receive-wal (pg_receivewal) in the background: it must outlive this oneshot
# run (systemd would otherwise kill it with the unit's cgroup when cron exits).
KillMode=process
TimeoutStartSec=300s
`;
  const timer = `${header(inv.cluster, 'barman cron every minute')}[Unit]
Description=Barman cron every minute (cluster ${inv.cluster})

[Timer]
OnCalendar=*-*-* *:*:00
AccuracySec=1s
Persistent=false

[Install]
WantedBy=timers.target
`;
  return [
    { path: BARMAN_CRON_SERVICE_PATH, content: service, mode: 0o644, owner: 'root', group: 'root' },
    { path: BARMAN_CRON_TIMER_PATH, content: timer, mode: 0o644, owner: 'root', group: 'root' },
  ];
}

/**
 * `barman receive-wal` as a service restarted 2 s after it ends. Barman runs pg_receivewal with
 * --no-loop: it ends when the leader goes (a switchover, a failover), and `barman cron` would
 * start it again only at the next minute. Measured on the lab: that minute is a hole in WAL
 * streaming — and with backup.synchronous a minute in which no commit returns (the switchover's
 * write check timed out). The cron timer stays: it archives and applies retention, and finds
 * receive-wal running.
 */
export function renderBarmanReceiveWalUnit(inv: Inventory): RenderedFile {
  const b = inv.backup;
  const content = `${header(inv.cluster, 'barman receive-wal: WAL streaming, back within seconds after a leader change')}[Unit]
Description=Barman receive-wal (cluster ${inv.cluster})
Documentation=https://docs.pgbarman.org/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${b.osUser}
Group=${b.osUser}
Environment=PATH=${inv.postgresql.binDir}:/usr/bin:/bin
ExecStart=${barmanExecutable(inv)} -q receive-wal ${barmanServer(inv)}
Restart=always
RestartSec=2s

[Install]
WantedBy=multi-user.target
`;
  return { path: BARMAN_RECEIVE_WAL_SERVICE_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}

/** Every file of the backup CT, in the order to write them. */
export function renderBackupFiles(inv: Inventory, secrets: ClusterSecrets): RenderedFile[] {
  return [
    renderBarmanConf(inv),
    renderBarmanServerConf(inv),
    renderBarmanPgpass(inv, secrets),
    ...renderBarmanCronUnits(inv),
    renderBarmanReceiveWalUnit(inv),
  ];
}
