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
 * - faster checks: inter 1s fastinter 250ms downinter 500ms fall 2 rise 1 (the seed: inter 3s fall 3
 *   rise 3, 9 s to notice a lost leader) and a `timeout check`; a server that is DOWN is checked
 *   every 500 ms, so a new leader is UP at most ~0.5 s after its /primary answers 200, and a
 *   `timeout connect` of 1 s (the seed: 5 s): a client sent to a leader that just died waits at
 *   most 1 s before `option redispatch` sends it on;
 * - logs that exist: to the unit's stdout → journald (`journalctl -u haproxy` in the CT), not
 *   /dev/log, which the CTs do not have (the seed's `sendmsg() failed in logger`);
 * - the stats page needs a generated password (the seed: admin:admin, with `stats admin` on);
 * - the runtime API socket at /run/haproxy/admin.sock, mode 600, level admin: pgha drives it as
 *   root with `pct exec <vmid> -- socat stdio unix-connect:/run/haproxy/admin.sock`;
 * - the file holds a password: mode 0600;
 * - no write reaches a replica right after HAProxy (re)starts or reloads: HAProxy 2.6 starts every
 *   server UP (health = rise: "up, but will fall down at first failure") until its first check
 *   fails, so `balance first` sent new connections to the first server in the list — a replica when
 *   the leader is not first — for up to `inter` (11 write attempts in one benchmark run). Every
 *   server's initial state is loaded from {@link HAPROXY_STATE_FILE} (`server-state-file` +
 *   `load-server-state-from-file global`; `init-state` exists only from HAProxy 3.1), which the
 *   unit writes before every start and every reload (see {@link renderHaproxyUnit}).
 *
 * {@link renderSeedHaproxy} reproduces the seed's own file faithfully (for the lab test and the
 * switchover benchmark that show the defects).
 */
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import { header, type RenderedFile } from './files';
import {
  HAPROXY_HOLD_ACTION,
  HAPROXY_HOLD_LUA_PATH,
  HAPROXY_HOLD_STEP_MS,
  holdInspectDelayMs,
  writeHoldMs,
} from './haproxy-hold';

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
/** Where HAProxy reads every server's initial state at start and reload (`server-state-file`). */
export const HAPROXY_STATE_FILE = '/var/lib/haproxy/server-state';
/** Every server DOWN (rendered): what {@link HAPROXY_STATE_FILE} holds before a fresh start. */
export const HAPROXY_STATE_DOWN_PATH = '/etc/haproxy/server-state.down';

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
    `${G}# To the unit's stdout, which journald keeps (the CTs run no syslog socket): journalctl -u haproxy.`,
    `${G}# "short" prefixes each line with its syslog priority, which journald reads as the line's level.`,
    `${G}log stdout format short local0 info`,
    `${G}chroot /var/lib/haproxy`,
    `${G}# Runtime API (server state, drain/ready/maint), used by pgha as root through pct exec + socat`,
    `${G}stats socket ${HAPROXY_ADMIN_SOCKET} mode 600 level admin`,
    `${G}stats timeout 30s`,
    `${G}user haproxy`,
    `${G}group haproxy`,
    `${G}daemon`,
    `${G}maxconn ${h.maxconn * 2 + 100}`,
    `${G}# Every server's state at start/reload, written by the unit first: all DOWN on a start, the`,
    `${G}# running process's states on a reload; never "UP until the first check fails"`,
    `${G}server-state-file ${HAPROXY_STATE_FILE}`,
    '',
    'defaults',
    `${G}log global`,
    `${G}mode tcp`,
    `${G}option tcplog`,
    `${G}option dontlognull`,
    `${G}load-server-state-from-file global`,
    `${G}# A connection that cannot reach its server is sent to another healthy one`,
    `${G}option redispatch`,
    `${G}retries 2`,
    `${G}timeout connect ${h.timeoutConnect}`,
    `${G}timeout client ${h.timeoutClient}`,
    `${G}timeout server ${h.timeoutServer}`,
    `${G}timeout check ${h.timeoutCheck}`,
  ];
}

function backend(
  inv: Inventory,
  name: string,
  endpoint: '/primary' | '/replica',
  balance: string,
  extra: string[] = [],
): string[] {
  const h = inv.haproxy;
  return [
    `backend ${name}`,
    `${G}balance ${balance}`,
    `${G}option httpchk GET ${endpoint}`,
    `${G}http-check expect status 200`,
    `${G}default-server inter ${h.checkInter} fastinter ${h.fastInter} downinter ${h.downInter} fall ${h.fall} rise ${h.rise} on-marked-down shutdown-sessions`,
    ...extra,
    ...inv.nodes.postgres.map(
      (n) =>
        `${G}server ${n.hostname} ${n.ip}:${inv.ports.postgresql} check port ${inv.ports.patroniRestApi}`,
    ),
  ];
}

/**
 * How many connections one HAProxy node lets reach one PostgreSQL server through the write backend:
 * PostgreSQL's max_connections (100 unless the inventory sets it), less its reserved slots
 * (superuser_reserved_connections, 3; reserved_connections, 0) and {@link WRITE_HEADROOM} for
 * Patroni, pgha and an operator connecting directly, shared by every HAProxy node. Beyond it a
 * connection waits in the backend's queue (haproxy.writeQueue) instead of being refused by
 * PostgreSQL ("too many clients") — the release of held connections after a hand-off included.
 */
export function writeServerMaxconn(inv: Inventory): {
  maxconn: number;
  maxConnections: number;
  reserved: number;
  nodes: number;
} {
  const param = (k: string, dflt: number) => {
    const v = inv.postgresql.parameters[k];
    const n = v === undefined ? dflt : Number(v);
    return Number.isFinite(n) ? n : dflt;
  };
  const maxConnections = param('max_connections', 100);
  const reserved = param('superuser_reserved_connections', 3) + param('reserved_connections', 0);
  const nodes = Math.max(1, inv.nodes.haproxy.length);
  const maxconn = Math.max(1, Math.floor((maxConnections - reserved - WRITE_HEADROOM) / nodes));
  return { maxconn, maxConnections, reserved, nodes };
}

/** PostgreSQL connections kept free of HAProxy's write traffic: Patroni's own, pgha's probes, a DBA. */
export const WRITE_HEADROOM = 10;

/**
 * The write frontend and backend: the hold of new connections while no write server is usable
 * (activities/render/haproxy-hold.ts), and a per-server maxconn with a queue.
 */
export function haproxyWriteSections(inv: Inventory): string[] {
  const p = inv.ports;
  const hold = writeHoldMs(inv);
  const m = writeServerMaxconn(inv);
  return [
    `# Lua action of the write frontend: the hold of new write connections`,
    'global',
    `${G}lua-load ${HAPROXY_HOLD_LUA_PATH}`,
    '',
    `# Read-write: only the member whose Patroni answers 200 on /primary (the leader)`,
    'frontend postgres_write',
    `${G}bind *:${p.haproxyWrite}`,
    `${G}maxconn ${inv.haproxy.maxconn}`,
    `${G}# While no write server is usable (a hand-off: the old leader and the candidate drained until`,
    `${G}# pgha admits the new leader; a failover's election) a NEW connection waits, in ${HAPROXY_HOLD_STEP_MS} ms steps, up`,
    `${G}# to ${hold} ms (haproxy.writeHold ${inv.haproxy.writeHold}), then goes on. The Lua action can only wait under an`,
    `${G}# inspect-delay, half a second above the bound`,
    `${G}tcp-request inspect-delay ${holdInspectDelayMs(inv)}ms`,
    `${G}tcp-request content lua.${HAPROXY_HOLD_ACTION} ${HAPROXY_WRITE_BACKEND} ${hold}`,
    `${G}default_backend ${HAPROXY_WRITE_BACKEND}`,
    '',
    ...backend(inv, HAPROXY_WRITE_BACKEND, '/primary', 'first', [
      `${G}# At most ${m.maxconn} connections from this node to a server: max_connections ${m.maxConnections} - ${m.reserved} reserved`,
      `${G}# - ${WRITE_HEADROOM} for Patroni/pgha, shared by ${m.nodes} HAProxy node(s); more wait in the queue (haproxy.writeQueue)`,
      `${G}default-server maxconn ${m.maxconn}`,
      `${G}timeout queue ${inv.haproxy.writeQueue}`,
    ]),
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
    ...haproxyWriteSections(inv),
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

/** The servers of the rendered config, in its order: backend, server, address, port, check port. */
function haproxyServers(inv: Inventory) {
  return [HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND].flatMap((backend) =>
    inv.nodes.postgres.map((n, i) => ({
      backend,
      id: i + 1,
      name: n.hostname,
      addr: n.ip,
      port: inv.ports.postgresql,
      checkPort: inv.ports.patroniRestApi,
    })),
  );
}

/**
 * A server-state file (format 1, as `show servers state` prints it) with every server of
 * {@link renderHaproxyCfg} STOPPED (op state 0, check health 0) and its checks configured and
 * enabled (check state 6), so after a start only a passing check brings a server UP: the leader's
 * /primary, a replica's /replica. HAProxy matches lines by backend and server name; ids are not
 * compared for the global file. The first line must be the version alone.
 */
export function renderHaproxyStateDown(inv: Inventory): RenderedFile {
  const lines = [
    '1',
    ...header(
      inv.cluster,
      'HAProxy server states for a fresh start: every server DOWN until its own health check passes',
    )
      .trimEnd()
      .split('\n'),
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port',
    ...haproxyServers(inv).map((s) => {
      // be_id as HAProxy 2.6 numbers these backends (seen in its dump); not compared for a global file
      const beId = s.backend === HAPROXY_WRITE_BACKEND ? 4 : 6;
      return `${beId} ${s.backend} ${s.id} ${s.name} ${s.addr} 0 0 1 1 0 1 0 0 6 0 0 0 - ${s.port} - 0 ${s.checkPort} - - 0`;
    }),
  ];
  return {
    path: HAPROXY_STATE_DOWN_PATH,
    content: `${lines.join('\n')}\n`,
    mode: 0o644,
    owner: 'root',
    group: 'root',
  };
}

/**
 * The shell text of the unit's ExecReload step that writes {@link HAPROXY_STATE_FILE} before the
 * reload signal: the running process's `show servers state` (the leader stays UP, replicas DOWN,
 * drains kept), followed by the all-DOWN lines (HAProxy keeps the first line of a backend/server
 * and drops later duplicates, so a server the running process does not know starts DOWN). If the
 * running process does not answer with a state dump, the all-DOWN file alone.
 */
function reloadStateScript(): string {
  const tmp = `${HAPROXY_STATE_FILE}.new`;
  return (
    `echo "show servers state" | socat -t 5 stdio unix-connect:${HAPROXY_ADMIN_SOCKET},shut-none > ${tmp}` +
    ` && head -n 1 ${tmp} | grep -qx 1 && tail -n +2 ${HAPROXY_STATE_DOWN_PATH} >> ${tmp}` +
    ` || cp ${HAPROXY_STATE_DOWN_PATH} ${tmp}; mv -f ${tmp} ${HAPROXY_STATE_FILE}`
  );
}

/**
 * Debian's unit (master-worker mode, reload by USR2), with its runtime directory for the socket,
 * and the server-state file written before every start (all DOWN: after a boot, a crash, a
 * `systemctl restart`) and every reload (the running states) — for every (re)start, whoever asks.
 */
export function renderHaproxyUnit(inv: Inventory): RenderedFile {
  const content = `${header(inv.cluster, 'HAProxy systemd unit')}[Unit]
Description=HAProxy load balancer (PostgreSQL cluster ${inv.cluster})
Documentation=man:haproxy(1)
After=network-online.target
Wants=network-online.target

[Service]
Environment="CONFIG=${HAPROXY_CFG_PATH}" "PIDFILE=/run/haproxy.pid"
# Every server starts DOWN (${HAPROXY_STATE_FILE}, loaded by haproxy.cfg): only its check brings it UP
ExecStartPre=/bin/cp ${HAPROXY_STATE_DOWN_PATH} ${HAPROXY_STATE_FILE}
ExecStartPre=/usr/sbin/haproxy -Ws -f $CONFIG -c -q
ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE -S /run/haproxy-master.sock
ExecReload=/usr/sbin/haproxy -Ws -f $CONFIG -c -q
# The new process starts from the running one's server states (new servers DOWN)
ExecReload=/bin/sh -c '${reloadStateScript()}'
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
