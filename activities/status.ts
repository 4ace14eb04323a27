/**
 * The whole cluster's status in one serialisable object — the seed's `view_etcd.sh --full` and
 * `check_postgres_patroni.sh --full` as one report: etcd members (health, version, leader, db size),
 * Patroni members (role, state, timeline, lag) with the leader key from etcd, PostgreSQL's own word
 * (pg_is_in_recovery, timeline) when credentials are given, and HAProxy's backends per node.
 * Ends with a verdict: healthy, degraded or down, with every reason spelled out.
 *
 * Everything is asked in parallel, every call with its own deadline; a part that cannot be asked
 * becomes a reason (or `unknown` for HAProxy when no runtime-API transport is wired), never a hang.
 */
import {
  clusterMembers,
  normaliseRole,
  type PatroniActivities,
  type PatroniClusterJson,
  type PatroniNodeStatus,
} from './patroni';
import type { EtcdActivities } from './etcd';
import type { PostgresActivities } from './postgres';
import type { HaproxyActivities, HaproxyNode } from './haproxy';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND } from './render/haproxy';

export interface StatusInput {
  cluster: string;
  etcd: { members: { name: string; url: string }[] };
  patroni: {
    namespace: string;
    scope: string;
    /** `url` is the REST API base (http://10.213.50.21:8008); host/port is PostgreSQL's address. */
    members: { name: string; url: string; host: string; port: number }[];
    /** Patroni's maximum_lag_on_failover: a replica further behind is reported. */
    maximumLagBytes: number;
  };
  /** SQL checks per member (pg_is_in_recovery, timeline); omitted → not asked. */
  postgres?: { user: string; passwordRef: string; database?: string };
  /** HAProxy nodes, asked through the runtime API; omitted → not asked. */
  haproxy?: {
    nodes: HaproxyNode[];
    /** Backend routed to the leader only (e.g. checked on /primary), when known. */
    writeBackend?: string;
    /** Backend routed to replicas only (checked on /replica), when known. */
    readBackend?: string;
  };
}

export interface EtcdMemberStatus {
  name: string;
  endpoint: string;
  healthy: boolean;
  isLeader: boolean;
  version: string | null;
  dbSizeBytes: number | null;
  raftTerm: string | null;
  error?: string;
}

export interface PatroniMemberStatus {
  name: string;
  host: string;
  /** Its REST API answered GET /patroni. */
  reachable: boolean;
  /** From GET /cluster (leader, replica, sync_standby ...), null when the DCS does not list it. */
  role: string | null;
  /** The member's own GET /patroni role (primary/replica), normalised across Patroni versions. */
  ownRole: string | null;
  state: string | null;
  timeline: number | null;
  lagBytes: number | null;
  /** Where lagBytes comes from: the leader's pg_stat_replication (exact) or Patroni's /cluster. */
  lagFrom: 'pg_stat_replication' | 'patroni' | null;
  streaming: boolean | null;
  pendingRestart: boolean;
  noFailover: boolean;
  patroniVersion: string | null;
  /** database_system_identifier from the member's own GET /patroni. */
  systemId: string | null;
  /** PostgreSQL asked directly, when credentials were given. */
  sql?: { inRecovery: boolean; timeline: number | null } | { error: string };
  error?: string;
}

export interface HaproxyServerStatus {
  backend: string;
  server: string;
  state: string;
  status: string;
  checkStatus: string;
}

export interface HaproxyNodeStatus {
  name: string;
  reachable: boolean;
  servers: HaproxyServerStatus[];
  error?: string;
}

export type Verdict = 'healthy' | 'degraded' | 'down';

export interface ClusterStatus {
  cluster: string;
  collectedAt: string;
  etcd: {
    members: EtcdMemberStatus[];
    leader: string | null;
    healthy: number;
    total: number;
    quorum: boolean;
  };
  patroni: {
    scope: string;
    members: PatroniMemberStatus[];
    /** The leader according to GET /cluster. */
    leader: string | null;
    /** The value of /<namespace>/<scope>/leader in etcd. */
    leaderKey: { key: string; value: string | null } | { key: string; error: string };
    /** Keys under the prefix (relative: leader, members/pg102 ...) and the `initialize` value. */
    keys: { prefix: string; keys: string[]; initialize: string | null } | { error: string };
    /** Which member's GET /cluster was used. */
    clusterFrom: string | null;
    paused: boolean;
    maximumLagBytes: number;
  };
  haproxy:
    | { asked: false; reason: string }
    | { asked: true; nodes: HaproxyNodeStatus[]; writeBackend?: string; readBackend?: string };
  verdict: { status: Verdict; reasons: string[] };
}

export interface StatusDeps {
  etcd: EtcdActivities;
  patroni: PatroniActivities;
  postgres?: PostgresActivities;
  /** Absent when no runtime-API transport is wired: HAProxy is then reported as unknown. */
  haproxy?: HaproxyActivities;
}

const msg = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 300);

export function createStatusActivities(deps: StatusDeps) {
  async function collectEtcd(input: StatusInput): Promise<ClusterStatus['etcd']> {
    const endpoints = input.etcd.members.map((m) => m.url);
    const view = await deps.etcd.etcdCluster({ endpoints });
    const nameOf = (url: string) => input.etcd.members.find((m) => m.url === url)?.name ?? url;
    const members = view.endpoints.map((e): EtcdMemberStatus => {
      const s: EtcdMemberStatus = {
        name: nameOf(e.endpoint),
        endpoint: e.endpoint,
        healthy: e.healthy,
        isLeader: Boolean(e.isLeader),
        version: e.version ?? null,
        dbSizeBytes: e.dbSizeBytes ?? null,
        raftTerm: e.raftTerm ?? null,
      };
      if (e.error) s.error = e.error;
      return s;
    });
    const leaderEndpoint = view.endpoints.find((e) => e.healthy && e.memberId === view.leader?.id)?.endpoint;
    const leader = view.leader
      ? (view.leader.name ?? (leaderEndpoint ? nameOf(leaderEndpoint) : view.leader.id))
      : null;
    return { members, leader, healthy: view.healthyCount, total: endpoints.length, quorum: view.quorum };
  }

  async function collectPatroni(input: StatusInput): Promise<ClusterStatus['patroni']> {
    const p = input.patroni;
    // Asked at once, alongside the REST API calls below.
    const leaderKeyP = deps.etcd
      .etcdPatroniLeaderKey({
        endpoints: input.etcd.members.map((e) => e.url),
        namespace: p.namespace,
        scope: p.scope,
      })
      .catch((err: unknown) => ({
        key: `${p.namespace.replace(/\/?$/, '/')}${p.scope}/leader`,
        error: msg(err),
      }));

    const sqlP = Promise.all(
      p.members.map(async (m) => {
        if (!deps.postgres || !input.postgres) return undefined;
        try {
          const id = await deps.postgres.pgIdentity({
            host: m.host,
            port: m.port,
            user: input.postgres.user,
            passwordRef: input.postgres.passwordRef,
            database: input.postgres.database,
          });
          return { inRecovery: id.inRecovery, timeline: id.timeline };
        } catch (err) {
          return { error: msg(err) };
        }
      }),
    );
    // Everything under /<namespace>/<scope>/ (the seed's view_etcd.sh --patroni), with `initialize`:
    // the database system identifier the cluster was bootstrapped with.
    const keysP = deps.etcd
      .etcdPatroniKeys({
        endpoints: input.etcd.members.map((e) => e.url),
        namespace: p.namespace,
        scope: p.scope,
        withValues: true,
      })
      .then((r): ClusterStatus['patroni']['keys'] => ({
        prefix: r.prefix,
        keys: r.keys.map((k) => k.key.slice(r.prefix.length)),
        initialize: r.keys.find((k) => k.key === `${r.prefix}initialize`)?.value ?? null,
      }))
      .catch((err: unknown): ClusterStatus['patroni']['keys'] => ({ error: msg(err) }));
    const own = await Promise.all(
      p.members.map(async (m) => {
        try {
          const a = await deps.patroni.patroniGetPatroni({ target: { member: m.name, url: m.url } });
          return {
            m,
            status: a.body,
            error: a.body ? undefined : `GET /patroni answered ${a.status} without JSON`,
          };
        } catch (err) {
          return { m, status: null as PatroniNodeStatus | null, error: msg(err) };
        }
      }),
    );
    // The topology from the first member that answers GET /cluster (the leader first when known).
    const order = [...own].sort((a, b) => rank(a.status) - rank(b.status));
    let cluster: PatroniClusterJson | null = null;
    let clusterFrom: string | null = null;
    for (const o of order) {
      if (!o.status) continue;
      try {
        const a = await deps.patroni.patroniGetCluster({ target: { member: o.m.name, url: o.m.url } });
        if (a.status === 200 && a.body) {
          cluster = a.body;
          clusterFrom = o.m.name;
          break;
        }
      } catch {
        /* try the next member */
      }
    }
    const leader = cluster?.members.find((x) => ['leader', 'standby_leader'].includes(x.role))?.name ?? null;
    // The leader's GET /patroni lists its walsenders in replication[] (every Patroni version) and
    // leaves the field out when there are none: a running leader without it has no streaming replica.
    const leaderOwn = own.find(
      (o) =>
        o.m.name === leader && normaliseRole(o.status?.role) === 'primary' && o.status?.state === 'running',
    );
    const leaderReplication = leaderOwn ? (leaderOwn.status?.replication ?? []) : undefined;
    const views = cluster ? clusterMembers(cluster, leaderReplication) : [];
    // With SQL access, the leader's pg_stat_replication gives exact replay lag in bytes (Patroni's
    // /cluster lag comes from member keys refreshed once per loop_wait).
    const leaderMember = p.members.find((m) => m.name === leader);
    const pgReplP =
      deps.postgres && input.postgres && leaderMember
        ? deps.postgres
            .pgReplication({
              host: leaderMember.host,
              port: leaderMember.port,
              user: input.postgres.user,
              passwordRef: input.postgres.passwordRef,
              database: input.postgres.database,
            })
            .catch(() => undefined)
        : Promise.resolve(undefined);

    const [leaderKey, sql, keys, pgRepl] = await Promise.all([leaderKeyP, sqlP, keysP, pgReplP]);

    const members = own.map((o, i): PatroniMemberStatus => {
      const v = views.find((x) => x.name === o.m.name);
      const s: PatroniMemberStatus = {
        name: o.m.name,
        host: o.m.host,
        reachable: o.status !== null,
        role: v?.role ?? null,
        ownRole: normaliseRole(o.status?.role) ?? null,
        // The leader's own state (running ...); a replica's from /cluster, which carries its replication state.
        state: v && !isLeaderName(v.role) ? v.state : (o.status?.state ?? v?.state ?? null),
        timeline: o.status?.timeline ?? v?.timeline ?? null,
        lagBytes: v ? v.lagBytes : null,
        streaming: v ? v.streaming : null,
        lagFrom: v && !isLeaderName(v.role) ? 'patroni' : null,
        pendingRestart: Boolean(o.status?.pending_restart ?? v?.pendingRestart),
        noFailover: v?.noFailover ?? o.status?.tags?.nofailover === true,
        patroniVersion: o.status?.patroni?.version ?? null,
        systemId: o.status?.database_system_identifier ?? null,
      };
      if (pgRepl && v && !isLeaderName(v.role)) {
        const row = pgRepl.find((r) => r.applicationName === o.m.name);
        s.streaming = row?.state === 'streaming';
        if (row?.replayLagBytes != null) {
          s.lagBytes = row.replayLagBytes;
          s.lagFrom = 'pg_stat_replication';
        }
      }
      const q = sql[i];
      if (q) s.sql = q;
      if (o.error) s.error = o.error;
      return s;
    });
    return {
      scope: p.scope,
      members,
      leader,
      leaderKey,
      keys,
      clusterFrom,
      paused: Boolean(cluster?.pause) || own.some((o) => o.status?.pause === true),
      maximumLagBytes: p.maximumLagBytes,
    };
  }

  async function collectHaproxy(input: StatusInput): Promise<ClusterStatus['haproxy']> {
    if (!input.haproxy || input.haproxy.nodes.length === 0)
      return { asked: false, reason: 'no HAProxy nodes given' };
    if (!deps.haproxy)
      return { asked: false, reason: 'no runtime-API transport wired (pct exec): state unknown' };
    const h = deps.haproxy;
    const nodes = await Promise.all(
      input.haproxy.nodes.map(async (node): Promise<HaproxyNodeStatus> => {
        try {
          const rows = await h.haproxyShowStat({ node });
          return {
            name: node.name,
            reachable: true,
            servers: rows.map((r) => ({
              backend: r.backend,
              server: r.server,
              state: r.state,
              status: r.status,
              checkStatus: r.checkStatus,
            })),
          };
        } catch (err) {
          return { name: node.name, reachable: false, servers: [], error: msg(err) };
        }
      }),
    );
    return {
      asked: true,
      nodes,
      writeBackend: input.haproxy.writeBackend,
      readBackend: input.haproxy.readBackend,
    };
  }

  /** Collects everything and judges it. Never throws for a sick cluster: sickness is in the verdict. */
  async function collectClusterStatus(input: StatusInput): Promise<ClusterStatus> {
    const [etcd, patroni, haproxy] = await Promise.all([
      collectEtcd(input).catch((err: unknown): ClusterStatus['etcd'] => ({
        members: input.etcd.members.map((m) => ({
          name: m.name,
          endpoint: m.url,
          healthy: false,
          isLeader: false,
          version: null,
          dbSizeBytes: null,
          raftTerm: null,
          error: msg(err),
        })),
        leader: null,
        healthy: 0,
        total: input.etcd.members.length,
        quorum: false,
      })),
      collectPatroni(input),
      collectHaproxy(input),
    ]);
    const partial = { cluster: input.cluster, collectedAt: new Date().toISOString(), etcd, patroni, haproxy };
    return { ...partial, verdict: judge(partial) };
  }

  return { collectClusterStatus };
}

const isLeaderName = (role: string) => role === 'leader' || role === 'standby_leader';

function rank(s: PatroniNodeStatus | null): number {
  if (!s) return 2;
  return normaliseRole(s.role) === 'primary' ? 0 : 1;
}

const MiB = 1024 * 1024;
function bytes(n: number): string {
  return n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

/**
 * The verdict: `down` when the cluster cannot take writes or cannot elect (no etcd quorum, no
 * Patroni leader, two leaders); `degraded` with a reason for each thing short of the seed's
 * "all members healthy, one leader, all replicas streaming on the leader's timeline"; else healthy.
 */
export function judge(s: Omit<ClusterStatus, 'verdict'>): ClusterStatus['verdict'] {
  const down: string[] = [];
  const degraded: string[] = [];

  // etcd
  if (!s.etcd.quorum) down.push(`etcd has no quorum: ${s.etcd.healthy} of ${s.etcd.total} members healthy`);
  for (const m of s.etcd.members) {
    if (!m.healthy)
      degraded.push(`etcd member ${m.name} (${m.endpoint}) is unhealthy: ${m.error ?? 'unknown error'}`);
  }
  if (s.etcd.quorum && !s.etcd.leader) degraded.push('etcd members do not agree on a leader');

  // Patroni
  const p = s.patroni;
  const leaders = p.members.filter((m) => m.ownRole === 'primary');
  if (!p.leader) down.push('Patroni reports no leader: the cluster takes no writes');
  if (leaders.length > 1)
    down.push(`more than one member says it is primary: ${leaders.map((m) => m.name).join(', ')}`);
  if ('error' in p.leaderKey)
    degraded.push(`cannot read the leader key ${p.leaderKey.key} from etcd: ${p.leaderKey.error}`);
  else if (p.leader && p.leaderKey.value !== p.leader) {
    degraded.push(
      `the leader key ${p.leaderKey.key} names ${p.leaderKey.value ?? 'nobody'}, but Patroni's /cluster says ${p.leader}`,
    );
  }
  if (p.paused) degraded.push('Patroni is paused (maintenance mode): no automatic failover');
  const initialize = 'error' in p.keys ? null : p.keys.initialize;
  for (const m of p.members) {
    if (initialize && m.systemId && m.systemId !== initialize) {
      degraded.push(
        `${m.name} has database system identifier ${m.systemId}, the cluster was initialized with ${initialize} (etcd initialize key): its data directory belongs to another cluster`,
      );
    }
  }
  const leader = p.members.find((m) => m.name === p.leader);
  for (const m of p.members) {
    if (!m.reachable) degraded.push(m.error ?? `Patroni REST API of ${m.name} does not answer`);
    if (m.role === null) {
      if (m.reachable || p.clusterFrom !== null) {
        degraded.push(`${m.name} is not a member in Patroni's /cluster (Patroni stopped, or not yet joined)`);
      }
      continue;
    }
    if (m.name === p.leader) {
      if (m.state !== 'running')
        degraded.push(`leader ${m.name} is ${m.state ?? 'in an unknown state'}, not running`);
      continue;
    }
    if (m.streaming === false)
      degraded.push(`replica ${m.name} is not streaming from the leader (state ${m.state ?? 'unknown'})`);
    else if (m.streaming === null && m.state !== 'running' && m.state !== 'streaming') {
      degraded.push(`replica ${m.name} is ${m.state ?? 'in an unknown state'}`);
    }
    if (leader?.timeline != null && m.timeline != null && m.timeline !== leader.timeline) {
      degraded.push(`replica ${m.name} is on timeline ${m.timeline}, the leader on ${leader.timeline}`);
    }
    if (m.lagBytes === null) degraded.push(`replica ${m.name}'s lag is unknown`);
    else if (m.lagBytes > p.maximumLagBytes) {
      degraded.push(
        `replica ${m.name} lags ${bytes(m.lagBytes)} (limit ${bytes(p.maximumLagBytes)} from maximum_lag_on_failover)`,
      );
    }
  }
  // One reason per distinct SQL error (a missing password file is the same for every member).
  const sqlErrors = new Map<string, string[]>();
  for (const m of p.members) {
    if (m.sql && 'error' in m.sql) {
      const key = m.sql.error.split(m.host).join('<host>');
      sqlErrors.set(key, [...(sqlErrors.get(key) ?? []), m.name]);
    }
  }
  for (const [err, names] of sqlErrors) {
    const one = p.members.find((m) => m.name === names[0]);
    const text = names.length === 1 && one ? err.split('<host>').join(one.host) : err;
    degraded.push(`PostgreSQL on ${names.join(', ')} does not answer SQL: ${text}`);
  }
  for (const m of p.members) {
    if (m.pendingRestart) degraded.push(`${m.name} has a pending restart (a changed parameter needs it)`);
    if (m.sql && !('error' in m.sql) && m.role !== null) {
      const isLeader = m.name === p.leader;
      if (isLeader && m.sql.inRecovery)
        degraded.push(`leader ${m.name} is still in recovery (promotion not finished)`);
      if (!isLeader && !m.sql.inRecovery)
        down.push(`${m.name} is not in recovery but is not the leader: a second writable primary`);
    }
  }

  // HAProxy
  if (s.haproxy.asked) {
    const names = new Set(p.members.map((m) => m.name));
    for (const n of s.haproxy.nodes) {
      if (!n.reachable) {
        degraded.push(`HAProxy ${n.name} runtime API does not answer: ${n.error ?? 'unknown error'}`);
        continue;
      }
      const backends = [...new Set(n.servers.filter((x) => names.has(x.server)).map((x) => x.backend))];
      for (const b of backends) {
        const up = n.servers.filter((x) => x.backend === b && x.state === 'UP').map((x) => x.server);
        if (up.length === 0) degraded.push(`HAProxy ${n.name}: backend ${b} has no server UP`);
        if (b === s.haproxy.writeBackend && p.leader && (up.length !== 1 || up[0] !== p.leader)) {
          degraded.push(
            `HAProxy ${n.name}: write backend ${b} sends to ${up.join(', ') || 'nobody'}, expected only the leader ${p.leader}`,
          );
        }
        if (b === s.haproxy.readBackend && p.leader && up.includes(p.leader)) {
          degraded.push(`HAProxy ${n.name}: read backend ${b} includes the leader ${p.leader}`);
        }
        const replicasUp = up.filter((x) => x !== p.leader);
        if (
          b !== s.haproxy.readBackend &&
          b !== s.haproxy.writeBackend &&
          p.leader &&
          up.includes(p.leader) &&
          replicasUp.length > 0
        ) {
          degraded.push(
            `HAProxy ${n.name}: backend ${b} sends to the leader and to replicas (${replicasUp.join(', ')}) alike: writes can land on a replica (the seed's check on GET /patroni?)`,
          );
        }
      }
    }
  }

  const reasons = [...down, ...degraded];
  return { status: down.length > 0 ? 'down' : degraded.length > 0 ? 'degraded' : 'healthy', reasons };
}

/** Minimal shape of an inventory this needs (runbooks/schema.ts `Inventory` satisfies it). */
export interface StatusInventory {
  cluster: string;
  nodes: { haproxy: NodeLike[]; postgres: NodeLike[]; etcd: NodeLike[] };
  ports: { etcdClient: number; postgresql: number; patroniRestApi: number };
  patroni: { scope: string; namespace: string; maximumLagOnFailover: number };
  postgresql: { superuser: string };
  secrets: { superuserPassword: string };
}
interface NodeLike {
  vmid: number;
  hostname: string;
  ip: string;
}

/** StatusInput from an inventory: member names are hostnames, as Patroni's `name` in pgha's patroni.yml. */
export function statusInputFromInventory(
  inv: StatusInventory,
  opts: { sql?: boolean; adminSocket?: string; writeBackend?: string; readBackend?: string } = {},
): StatusInput {
  // pgha's rendered haproxy.cfg (activities/render/haproxy.ts) unless told otherwise.
  const adminSocket = opts.adminSocket ?? HAPROXY_ADMIN_SOCKET;
  const input: StatusInput = {
    cluster: inv.cluster,
    etcd: {
      members: inv.nodes.etcd.map((n) => ({
        name: n.hostname,
        url: `http://${n.ip}:${inv.ports.etcdClient}`,
      })),
    },
    patroni: {
      namespace: inv.patroni.namespace,
      scope: inv.patroni.scope,
      members: inv.nodes.postgres.map((n) => ({
        name: n.hostname,
        url: `http://${n.ip}:${inv.ports.patroniRestApi}`,
        host: n.ip,
        port: inv.ports.postgresql,
      })),
      maximumLagBytes: inv.patroni.maximumLagOnFailover,
    },
    haproxy: {
      nodes: inv.nodes.haproxy.map((n) => ({ name: n.hostname, vmid: n.vmid, socket: adminSocket })),
      writeBackend: opts.writeBackend ?? HAPROXY_WRITE_BACKEND,
      readBackend: opts.readBackend ?? HAPROXY_READ_BACKEND,
    },
  };
  if (opts.sql !== false)
    input.postgres = { user: inv.postgresql.superuser, passwordRef: inv.secrets.superuserPassword };
  return input;
}
