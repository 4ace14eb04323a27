/**
 * How to reach a member: the one place that turns an inventory into addresses and credentials
 * (Patroni's `Member.api_url` / `conn_kwargs()` and `request.py`). Pure: workflows, activities,
 * the CLI, the bench and the tests all ask here; nobody else builds a member's REST URL, its SQL
 * connection, the etcd endpoints or the REST API credentials.
 *
 * Credentials are secret references (`env:NAME`, `file:PATH`), never values: the activity that
 * opens the connection resolves them at the last moment.
 */
import type { Inventory, Node, Role } from './schema';

/** One Patroni member's REST API: `url` is its base, e.g. http://10.213.50.21:8008 */
export interface PatroniTarget {
  member: string;
  url: string;
}

/** Patroni REST API credentials for its unsafe endpoints (POST/PUT/PATCH/DELETE). */
export interface PatroniAuth {
  username: string;
  /** `env:NAME` or `file:PATH` holding the REST API password. */
  passwordRef: string;
}

/** A PostgreSQL connection, by reference. */
export interface PgConn {
  host: string;
  /** Default 5432. */
  port?: number;
  /** Default `postgres`. */
  database?: string;
  user: string;
  /** `env:NAME` or `file:PATH` holding the user's password. */
  passwordRef: string;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
}

/** The node `hostname` of `role`, or an error naming the nodes that role has. */
export function findNode(inv: Inventory, role: Role, hostname: string): Node {
  const n = inv.nodes[role].find((x) => x.hostname === hostname);
  if (!n) {
    const known = inv.nodes[role].map((x) => x.hostname).join(', ');
    throw new Error(
      `${hostname} is not a ${role} node of cluster ${inv.cluster} (its ${role} nodes: ${known})`,
    );
  }
  return n;
}

/** The PostgreSQL members' names (Patroni's member names), in inventory order. */
export function memberNames(inv: Inventory): string[] {
  return inv.nodes.postgres.map((n) => n.hostname);
}

/** Whether `name` is a PostgreSQL member of this cluster. */
export function isMember(inv: Inventory, name: string): boolean {
  return inv.nodes.postgres.some((n) => n.hostname === name);
}

/** A member's Patroni REST API. */
export function restApi(inv: Inventory, member: string): PatroniTarget {
  return { member, url: `http://${findNode(inv, 'postgres', member).ip}:${inv.ports.patroniRestApi}` };
}

/** Every member's Patroni REST API, in inventory order. */
export function restApis(inv: Inventory): PatroniTarget[] {
  return memberNames(inv).map((m) => restApi(inv, m));
}

/** The REST API credentials (restapi.authentication in patroni.yml). */
export function restApiAuth(inv: Inventory): PatroniAuth {
  return { username: inv.patroni.restApiUsername, passwordRef: inv.secrets.restApiPassword };
}

/** etcd client URLs, e.g. http://10.213.50.51:2379, in inventory order. */
export function etcdEndpoints(inv: Inventory): string[] {
  return inv.nodes.etcd.map((n) => etcdEndpoint(inv, n.hostname));
}

/** One etcd member's client URL. */
export function etcdEndpoint(inv: Inventory, hostname: string): string {
  return `http://${findNode(inv, 'etcd', hostname).ip}:${inv.ports.etcdClient}`;
}

/** The etcd key prefix of this cluster's Patroni state: `/<namespace>/<scope>/`, e.g. /patroni/postgres/. */
export function patroniKeyPrefix(inv: Inventory): string {
  return `${inv.patroni.namespace.replace(/\/?$/, '/')}${inv.patroni.scope}/`;
}

/** The superuser's SQL connection to a member (by name) on PostgreSQL's port. */
export function sqlConn(inv: Inventory, member: string, opts: Partial<PgConn> = {}): PgConn {
  return sqlConnTo(inv, findNode(inv, 'postgres', member).ip, inv.ports.postgresql, opts);
}

/** The superuser's SQL connection to any address (a member's IP, or an HAProxy port). */
export function sqlConnTo(inv: Inventory, host: string, port: number, opts: Partial<PgConn> = {}): PgConn {
  return {
    host,
    port,
    user: inv.postgresql.superuser,
    passwordRef: inv.secrets.superuserPassword,
    ...opts,
  };
}

/** The superuser's SQL connection through an HAProxy node's write (primary) port. */
export function sqlConnViaHaproxy(inv: Inventory, haproxy: string, opts: Partial<PgConn> = {}): PgConn {
  return sqlConnTo(inv, findNode(inv, 'haproxy', haproxy).ip, inv.ports.haproxyWrite, opts);
}

/** The member whose IP is `ip` (inet_server_addr() through HAProxy), if any. */
export function memberByIp(inv: Inventory, ip: string | null | undefined): string | undefined {
  return inv.nodes.postgres.find((n) => n.ip === ip)?.hostname;
}

/** The backup CT (nodes.backup), if the cluster has one. */
export function backupNode(inv: Inventory): Node | undefined {
  return inv.nodes.backup[0];
}

/**
 * How the backup CT reaches the leader: libpq's multi-host list of every HAProxy's write port, so
 * Barman follows a switchover (HAProxy routes to the leader) and survives one HAProxy being down.
 * Passwords come from the Barman user's ~/.pgpass, never from this text.
 */
export function barmanConninfo(inv: Inventory, kind: 'conninfo' | 'streaming'): string {
  const b = inv.backup;
  const hosts = inv.nodes.haproxy.map((n) => n.ip);
  return [
    `host=${hosts.join(',')}`,
    `port=${hosts.map(() => inv.ports.haproxyWrite).join(',')}`,
    `user=${kind === 'conninfo' ? b.user : b.streamingUser}`,
    'dbname=postgres',
    'connect_timeout=10',
  ].join(' ');
}

/** The addresses PostgreSQL sees Barman's connections come from: the backup CT and the HAProxies it goes through. */
export function barmanSources(inv: Inventory): string[] {
  const b = backupNode(inv);
  return b ? [b.ip, ...inv.nodes.haproxy.map((n) => n.ip)] : [];
}
