/**
 * HAProxy: /etc/haproxy/haproxy.cfg and its systemd unit.
 *
 * Seed defects fixed in {@link renderHaproxyCfg} (runbooks/README.md lists them):
 * - the write frontend checks Patroni's `GET /primary` (200 only on the leader) instead of
 *   `GET /patroni`, which answers 200 on replicas too — so the seed could send writes to a replica;
 * - a read-only frontend (ports.haproxyRead, 5433) balanced round-robin over `GET /replica`;
 * - `on-marked-down shutdown-sessions`: clients of a demoted leader are cut at once instead of
 *   writing into a read-only server until their connection dies;
 * - `option redispatch`: a connection that cannot reach a dying server goes to a healthy one;
 * - faster checks: inter 1s fastinter 500ms fall 2 rise 1 (the seed: inter 3s fall 3 rise 3, 9 s to
 *   notice a lost leader) and a `timeout check`;
 * - the stats page needs a generated password (the seed: admin:admin, with `stats admin` on);
 * - the runtime API socket at /run/haproxy/admin.sock, mode 600, level admin: pgha drives it as
 *   root with `pct exec <vmid> -- socat stdio unix-connect:/run/haproxy/admin.sock`;
 * - the file holds a password: mode 0600.
 *
 * {@link renderSeedHaproxy} reproduces the seed's own file faithfully (for the lab test and the
 * switchover benchmark that show the defects).
 */
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import { header, type RenderedFile } from './files';

export const HAPROXY_CFG_PATH = '/etc/haproxy/haproxy.cfg';
export const HAPROXY_UNIT_PATH = '/etc/systemd/system/haproxy.service';
/** The runtime API socket of the rendered config. */
export const HAPROXY_ADMIN_SOCKET = '/run/haproxy/admin.sock';
/** The runtime API socket of the seed's own config. */
export const SEED_HAPROXY_ADMIN_SOCKET = '/var/lib/haproxy/admin.sock';
/** Backend names, as the runtime API addresses servers: `<backend>/<hostname>`. */
export const HAPROXY_WRITE_BACKEND = 'postgres_primary';
export const HAPROXY_READ_BACKEND = 'postgres_replicas';
export const SEED_HAPROXY_BACKEND = 'postgresql_backend';

/**
 * One HAProxy config word: bare when safe, else single-quoted (no expansion inside), else
 * double-quoted with \ " $ escaped.
 */
export function haproxyWord(s: string): string {
  if (/^[A-Za-z0-9_.:@%+=/!,-]+$/.test(s)) return s;
  if (!s.includes("'")) return `'${s}'`;
  return `"${s.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

const G = '    ';

function globalAndDefaults(inv: Inventory): string[] {
  const h = inv.haproxy;
  return [
    'global',
    `${G}log /dev/log local0`,
    `${G}log /dev/log local1 notice`,
    `${G}chroot /var/lib/haproxy`,
    `${G}# Runtime API (server state, drain/ready/maint), used by pgha as root through pct exec + socat`,
    `${G}stats socket ${HAPROXY_ADMIN_SOCKET} mode 600 level admin`,
    `${G}stats timeout 30s`,
    `${G}user haproxy`,
    `${G}group haproxy`,
    `${G}daemon`,
    `${G}maxconn ${h.maxconn * 2 + 100}`,
    '',
    'defaults',
    `${G}log global`,
    `${G}mode tcp`,
    `${G}option tcplog`,
    `${G}option dontlognull`,
    `${G}# A connection that cannot reach its server is sent to another healthy one`,
    `${G}option redispatch`,
    `${G}retries 2`,
    `${G}timeout connect ${h.timeoutConnect}`,
    `${G}timeout client ${h.timeoutClient}`,
    `${G}timeout server ${h.timeoutServer}`,
    `${G}timeout check ${h.timeoutCheck}`,
  ];
}

function backend(inv: Inventory, name: string, endpoint: '/primary' | '/replica', balance: string): string[] {
  const h = inv.haproxy;
  return [
    `backend ${name}`,
    `${G}balance ${balance}`,
    `${G}option httpchk GET ${endpoint}`,
    `${G}http-check expect status 200`,
    `${G}default-server inter ${h.checkInter} fastinter ${h.fastInter} downinter ${h.downInter} fall ${h.fall} rise ${h.rise} on-marked-down shutdown-sessions`,
    ...inv.nodes.postgres.map(
      (n) =>
        `${G}server ${n.hostname} ${n.ip}:${inv.ports.postgresql} check port ${inv.ports.patroniRestApi}`,
    ),
  ];
}

export function renderHaproxyCfg(inv: Inventory, secrets: ClusterSecrets): RenderedFile {
  const p = inv.ports;
  const lines = [
    header(
      inv.cluster,
      'HAProxy for the PostgreSQL cluster: writes to the Patroni leader, reads to the replicas; holds a password: mode 0600',
    ).trimEnd(),
    ...globalAndDefaults(inv),
    '',
    '# Statistics page (password generated: secrets.haproxyStatsPassword)',
    'listen stats',
    `${G}bind *:${p.haproxyStats}`,
    `${G}mode http`,
    `${G}option httplog`,
    `${G}stats enable`,
    `${G}stats uri /stats`,
    `${G}stats refresh 10s`,
    `${G}stats auth ${haproxyWord(`${inv.haproxy.statsUser}:${secrets.haproxyStatsPassword}`)}`,
    '',
    `# Read-write: only the member whose Patroni answers 200 on /primary (the leader)`,
    'frontend postgres_write',
    `${G}bind *:${p.haproxyWrite}`,
    `${G}maxconn ${inv.haproxy.maxconn}`,
    `${G}default_backend ${HAPROXY_WRITE_BACKEND}`,
    '',
    ...backend(inv, HAPROXY_WRITE_BACKEND, '/primary', 'first'),
    '',
    `# Read-only: the members whose Patroni answers 200 on /replica, round-robin`,
    'frontend postgres_read',
    `${G}bind *:${p.haproxyRead}`,
    `${G}maxconn ${inv.haproxy.maxconn}`,
    `${G}default_backend ${HAPROXY_READ_BACKEND}`,
    '',
    ...backend(inv, HAPROXY_READ_BACKEND, '/replica', 'roundrobin'),
  ];
  return {
    path: HAPROXY_CFG_PATH,
    content: `${lines.join('\n')}\n`,
    mode: 0o600,
    owner: 'root',
    group: 'root',
  };
}

/**
 * The seed's haproxy.cfg as the seed has it (GET /patroni checks, inter 3s fall 3 rise 3,
 * stats auth admin:admin, socket /var/lib/haproxy/admin.sock), with the inventory's addresses and
 * ports. For showing the seed's defects; never deployed by deployCluster.
 */
export function renderSeedHaproxy(inv: Inventory): RenderedFile {
  const p = inv.ports;
  const content = `global
    log /dev/log local0
    log /dev/log local1 notice
    chroot /var/lib/haproxy
    stats socket ${SEED_HAPROXY_ADMIN_SOCKET} mode 660 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon

defaults
    log global
    mode tcp
    option tcplog
    option dontlognull
    timeout connect 5000ms
    timeout client 50000ms
    timeout server 50000ms

# Статистика HAProxy
listen stats
    bind *:${p.haproxyStats}
    mode http
    stats enable
    stats uri /stats
    stats refresh 30s
    stats admin if TRUE
    stats auth admin:admin

# PostgreSQL кластер
frontend postgresql_frontend
    bind *:${p.haproxyWrite}
    default_backend ${SEED_HAPROXY_BACKEND}

backend ${SEED_HAPROXY_BACKEND}
    option httpchk GET /patroni
    http-check expect status 200
${inv.nodes.postgres.map((n) => `    server ${n.hostname} ${n.ip}:${p.postgresql} check port ${p.patroniRestApi} inter 3s fall 3 rise 3`).join('\n')}
`;
  return { path: HAPROXY_CFG_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}

/** Debian's unit (master-worker mode, reload by USR2), with its runtime directory for the socket. */
export function renderHaproxyUnit(inv: Inventory): RenderedFile {
  const content = `${header(inv.cluster, 'HAProxy systemd unit')}[Unit]
Description=HAProxy load balancer (PostgreSQL cluster ${inv.cluster})
Documentation=man:haproxy(1)
After=network-online.target
Wants=network-online.target

[Service]
Environment="CONFIG=${HAPROXY_CFG_PATH}" "PIDFILE=/run/haproxy.pid"
ExecStartPre=/usr/sbin/haproxy -Ws -f $CONFIG -c -q
ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE -S /run/haproxy-master.sock
ExecReload=/usr/sbin/haproxy -Ws -f $CONFIG -c -q
ExecReload=/bin/kill -USR2 $MAINPID
KillMode=mixed
Restart=always
SuccessExitStatus=143
Type=notify
# ${HAPROXY_ADMIN_SOCKET} lives here
RuntimeDirectory=haproxy
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes

[Install]
WantedBy=multi-user.target
`;
  return { path: HAPROXY_UNIT_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}
