/**
 * Patroni and PostgreSQL: /etc/patroni/patroni.yml, the patroni systemd unit, pg_hba lines and the
 * postgres OS user's .pgpass. Values come from the inventory; passwords only from the resolved
 * secrets passed beside it (never from the inventory, which holds references).
 *
 * Seed defects fixed here (runbooks/README.md lists them):
 * - md5 → scram-sha-256 (password_encryption and every pg_hba line);
 * - pg_hba limited to postgresql.allowedNetworks (default: the cluster subnet) and local, instead
 *   of 0.0.0.0/0;
 * - the REST API's unsafe endpoints (POST/PUT/PATCH/DELETE: switchover, restart, reinitialize,
 *   config...) require restapi.authentication; patronictl reads the same credentials;
 * - patroni.yml (it holds passwords) and .pgpass are 0600;
 * - Patroni's own pgpass file is not the postgres user's ~/.pgpass (Patroni rewrites that file);
 * - bootstrap.users is dropped: the superuser and the replication user come from
 *   postgresql.authentication (Patroni creates both), and bootstrap.users is gone in Patroni 4.
 * - DCS failsafe mode (`failsafe_mode: true`, Patroni >= 3.0.0): with etcd's quorum lost, the
 *   leader keeps its role while it reaches every member's REST API, instead of demoting after
 *   ttl/2 and taking writes down until etcd returns (runbooks/README.md, "DCS failsafe mode").
 */
import { Document } from 'yaml';
import type { ClusterSecrets, Inventory, Node } from '../../runbooks/schema';
import { backupNode, barmanSources } from '../../runbooks/topology';
import { header, type RenderedFile } from './files';
import { quoteArg } from '../command';
import { recoveryTargetSettings, type RestoreTarget } from '../../runbooks/restore-target';

export const PATRONI_UNIT_PATH = '/etc/systemd/system/patroni.service';
export const PG_SOCKET_DIR = '/var/run/postgresql';

export function patroniConfigPath(inv: Inventory): string {
  return `${inv.patroni.configDir}/patroni.yml`;
}

/** Where Patroni writes its own pgpass (kept apart from the operator's ~/.pgpass). */
export function patroniPgpassPath(inv: Inventory): string {
  return `${inv.postgresql.home}/.pgpass_patroni`;
}

function member(inv: Inventory, node: Node): Node {
  const m = inv.nodes.postgres.find((n) => n.hostname === node.hostname && n.vmid === node.vmid);
  if (!m)
    throw new Error(`${node.hostname} (CT ${node.vmid}) is not a PostgreSQL node of cluster ${inv.cluster}`);
  return m;
}

/** pg_hba.conf lines: local, loopback, and the allowed networks; scram-sha-256 everywhere but peer. */
export function renderPgHba(inv: Inventory): string[] {
  const { superuser, osUser, replicationUser } = inv.postgresql;
  const lines: string[] = [];
  // Barman's two roles only from the backup CT (and the HAProxies its connections pass through:
  // HAProxy's TCP proxying hides the client address); refused from anywhere else, locally too.
  const backup = backupNode(inv);
  if (backup) {
    const b = inv.backup;
    for (const src of barmanSources(inv)) {
      lines.push(`host all ${b.user} ${src}/32 scram-sha-256`);
      lines.push(`host replication ${b.streamingUser} ${src}/32 scram-sha-256`);
    }
    lines.push(`local all ${b.user},${b.streamingUser} reject`);
    lines.push(`host all ${b.user},${b.streamingUser} all reject`);
  }
  // The postgres OS user reaches its own superuser role over the socket without a password
  // (Patroni, `sudo -u postgres psql`); every other local login needs one.
  if (superuser === osUser) lines.push(`local all ${superuser} peer`);
  lines.push('local all all scram-sha-256');
  lines.push(`local replication ${replicationUser} scram-sha-256`);
  for (const net of ['127.0.0.1/32', '::1/128', ...inv.postgresql.allowedNetworks]) {
    lines.push(`host replication ${replicationUser} ${net} scram-sha-256`);
    lines.push(`host all all ${net} scram-sha-256`);
  }
  return lines;
}

/** Parameters set on every node (Patroni's local postgresql.parameters). */
export function localParameters(): Record<string, string | number | boolean> {
  return {
    unix_socket_directories: PG_SOCKET_DIR,
    // The seed reads logs in <data_dir>/log/*.log
    logging_collector: 'on',
    log_directory: 'log',
    log_filename: 'postgresql-%a.log',
    log_truncate_on_rotation: 'on',
    log_rotation_age: '1d',
    log_rotation_size: 0,
    log_line_prefix: '%m [%p] %q%u@%d ',
    log_checkpoints: 'on',
    log_lock_waits: 'on',
    log_temp_files: 0,
    log_autovacuum_min_duration: '10s',
  };
}

/** The first Patroni version with DCS failsafe mode (`failsafe_mode`, Patroni 3.0.0). */
export const FAILSAFE_MIN_PATRONI = [3, 0, 0] as const;

/**
 * Whether this inventory's Patroni supports DCS failsafe mode: versions.patroni >= 3.0.0. An older
 * Patroni would ignore the key, so it is rendered only where it works; a version string this cannot
 * read (the schema checks its shape) gets none.
 */
export function supportsFailsafe(patroniVersion: string): boolean {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(patroniVersion);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
  const [wantMajor, wantMinor, wantPatch] = FAILSAFE_MIN_PATRONI;
  if (major !== wantMajor) return major > wantMajor;
  if (minor !== wantMinor) return minor > wantMinor;
  return patch >= wantPatch;
}

/** Cluster-wide parameters: the inventory's, with scram-sha-256 enforced. */
export function dcsParameters(inv: Inventory): Record<string, string | number | boolean> {
  const params: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(inv.postgresql.parameters))
    params[k] = typeof v === 'boolean' ? (v ? 'on' : 'off') : v;
  params.password_encryption = 'scram-sha-256';
  return params;
}

/** Where a restore stages the base backup and its WAL on the restoring member (same file system as the data). */
export function restoreStaging(inv: Inventory, tag: string): { dir: string; data: string; wal: string } {
  if (!/^[a-z0-9][a-z0-9-]{0,80}$/.test(tag))
    throw new Error(`restore tag ${JSON.stringify(tag)}: expected [a-z0-9-]`);
  const dir = `${inv.postgresql.dataDir.replace(/\/[^/]+$/, '')}/pgha-restore-${tag}`;
  return { dir, data: `${dir}/data`, wal: `${dir}/wal` };
}

/** The name of Patroni's custom bootstrap method a restore renders. */
export const RESTORE_METHOD = 'pgha_restore';

/**
 * Patroni's custom bootstrap for a restore (`bootstrap.method: pgha_restore`): the command moves the
 * staged base backup into the (absent) data directory — a rename on one file system, so Patroni
 * never waits for a copy — and PostgreSQL recovers from the staged WAL (restore_command reads only
 * files in the member's own staging directory) to the target, then is promoted (a new timeline).
 */
export function restoreBootstrap(inv: Inventory, tag: string, target: RestoreTarget) {
  const st = restoreStaging(inv, tag);
  const mv = `rmdir "$1" 2>/dev/null; mv -T "$2" "$1"`;
  return {
    method: RESTORE_METHOD,
    [RESTORE_METHOD]: {
      command: ['/bin/sh', '-c', mv, RESTORE_METHOD, inv.postgresql.dataDir, st.data]
        .map((a) => quoteArg(a))
        .join(' '),
      no_params: true,
      keep_existing_recovery_conf: false,
      recovery_conf: {
        restore_command: `cp ${st.wal}/%f "%p"`,
        recovery_target_timeline: 'latest',
        recovery_target_action: 'promote',
        ...recoveryTargetSettings(target),
      },
    },
  };
}

export function renderPatroniYml(
  inv: Inventory,
  node: Node,
  secrets: ClusterSecrets,
  restore?: { tag: string; target: RestoreTarget },
): RenderedFile {
  const m = member(inv, node);
  const p = inv.patroni;
  const pg = inv.postgresql;
  const config = {
    scope: p.scope,
    namespace: p.namespace,
    name: m.hostname,
    log: { level: 'INFO', format: '%(asctime)s %(levelname)s: %(message)s' },
    restapi: {
      listen: `${m.ip}:${inv.ports.patroniRestApi}`,
      connect_address: `${m.ip}:${inv.ports.patroniRestApi}`,
      // Unsafe endpoints (POST/PUT/PATCH/DELETE) need these; GET health checks stay open for HAProxy.
      authentication: { username: p.restApiUsername, password: secrets.restApiPassword },
    },
    etcd3: { hosts: inv.nodes.etcd.map((n) => `${n.ip}:${inv.ports.etcdClient}`) },
    bootstrap: {
      dcs: {
        ttl: p.ttl,
        loop_wait: p.loopWait,
        retry_timeout: p.retryTimeout,
        maximum_lag_on_failover: p.maximumLagOnFailover,
        // Etcd quorum loss must not take writes down: the leader stays while every member answers it.
        ...(supportsFailsafe(inv.versions.patroni) ? { failsafe_mode: true } : {}),
        // Barman's WAL streaming slot as a permanent slot: Patroni keeps it on whichever member leads
        // (and advances it on replicas), so WAL streaming resumes after a switchover without a hole.
        ...(backupNode(inv) ? { slots: { [inv.backup.slot]: { type: 'physical' } } } : {}),
        postgresql: {
          use_pg_rewind: p.useRewind,
          use_slots: p.useSlots,
          parameters: dcsParameters(inv),
        },
      },
      initdb: [{ encoding: pg.encoding }, ...(pg.dataChecksums ? ['data-checksums'] : [])],
      ...(restore ? restoreBootstrap(inv, restore.tag, restore.target) : {}),
    },
    postgresql: {
      listen: `${m.ip},127.0.0.1:${inv.ports.postgresql}`,
      connect_address: `${m.ip}:${inv.ports.postgresql}`,
      use_unix_socket: true,
      data_dir: pg.dataDir,
      bin_dir: pg.binDir,
      pgpass: patroniPgpassPath(inv),
      authentication: {
        replication: { username: pg.replicationUser, password: secrets.replicationPassword },
        superuser: { username: pg.superuser, password: secrets.superuserPassword },
      },
      parameters: localParameters(),
      pg_hba: renderPgHba(inv),
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
  // YAML 1.1 output, as Patroni reads it (PyYAML): strings like "on" stay quoted strings.
  const doc = new Document(config, { version: '1.1' });
  const content =
    header(
      inv.cluster,
      `Patroni ${inv.versions.patroni} configuration of ${m.hostname} (CT ${m.vmid}); holds passwords: mode 0600`,
    ) + doc.toString({ lineWidth: 0, indentSeq: true });
  return { path: patroniConfigPath(inv), content, mode: 0o600, owner: pg.osUser, group: pg.osUser };
}

export function renderPatroniUnit(inv: Inventory): RenderedFile {
  const pg = inv.postgresql;
  const content = `${header(inv.cluster, 'Patroni systemd unit')}[Unit]
Description=Patroni: PostgreSQL ${pg.major} high availability (cluster ${inv.cluster}, scope ${inv.patroni.scope})
Documentation=https://patroni.readthedocs.io/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${pg.osUser}
Group=${pg.osUser}
Environment=PATH=${pg.binDir}:/usr/local/bin:/usr/bin:/bin
ExecStart=${inv.patroni.executable} ${patroniConfigPath(inv)}
ExecReload=/bin/kill -HUP $MAINPID
# Patroni stops PostgreSQL itself: do not let systemd kill the postmaster.
KillMode=process
TimeoutStopSec=120s
Restart=on-failure
RestartSec=5s
# unix_socket_directories (${PG_SOCKET_DIR} = /run/postgresql)
RuntimeDirectory=postgresql
RuntimeDirectoryMode=2775
RuntimeDirectoryPreserve=yes
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
  return { path: PATRONI_UNIT_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}

function pgpassField(s: string): string {
  return s.replace(/[\\:]/g, (c) => `\\${c}`);
}

/** ~postgres/.pgpass: the seed's `psql -h localhost -U postgres` and pg_basebackup need no prompt. */
export function renderPgpass(inv: Inventory, secrets: ClusterSecrets): RenderedFile {
  const pg = inv.postgresql;
  const port = inv.ports.postgresql;
  const content =
    header(inv.cluster, `.pgpass of the ${pg.osUser} OS user; holds passwords: mode 0600`) +
    `*:${port}:replication:${pgpassField(pg.replicationUser)}:${pgpassField(secrets.replicationPassword)}\n` +
    `*:${port}:*:${pgpassField(pg.superuser)}:${pgpassField(secrets.superuserPassword)}\n` +
    `*:${port}:*:${pgpassField(pg.replicationUser)}:${pgpassField(secrets.replicationPassword)}\n`;
  return { path: `${pg.home}/.pgpass`, content, mode: 0o600, owner: pg.osUser, group: pg.osUser };
}
