/**
 * Patroni's part of the status: each member's own GET /patroni, the topology from GET /cluster, the
 * leader key and the keys under /<namespace>/<scope>/ from etcd, and — with SQL credentials —
 * PostgreSQL's own word (pg_is_in_recovery, timeline) and the leader's pg_stat_replication.
 * Everything that does not depend on another answer is asked at once.
 */
import { clusterMembers, normaliseRole } from '../patroni';
import type { PatroniClusterJson, PatroniMemberView, PatroniNodeStatus } from '../patroni';
import type { PgConn, PgReplicationRow } from '../postgres';
import { msg } from './common';
import type { ClusterStatus, PatroniMemberStatus, StatusDeps, StatusInput } from './types';

type Member = StatusInput['patroni']['members'][number];
type Sql = PatroniMemberStatus['sql'];
interface Own {
  m: Member;
  status: PatroniNodeStatus | null;
  error?: string;
}

const isLeaderName = (role: string) => role === 'leader' || role === 'standby_leader';

function rank(s: PatroniNodeStatus | null): number {
  if (!s) return 2;
  return normaliseRole(s.role) === 'primary' ? 0 : 1;
}

/** A member's SQL connection from the input's credentials, or undefined when SQL is not asked. */
function connOf(input: StatusInput, m: Member): PgConn | undefined {
  if (!input.postgres) return undefined;
  const { user, passwordRef, database } = input.postgres;
  return { host: m.host, port: m.port, user, passwordRef, database };
}

function leaderKeyOf(deps: StatusDeps, input: StatusInput): Promise<ClusterStatus['patroni']['leaderKey']> {
  const p = input.patroni;
  return deps.etcd
    .etcdPatroniLeaderKey({
      endpoints: input.etcd.members.map((e) => e.url),
      namespace: p.namespace,
      scope: p.scope,
    })
    .catch((err: unknown) => ({
      key: `${p.namespace.replace(/\/?$/, '/')}${p.scope}/leader`,
      error: msg(err),
    }));
}

function sqlOf(deps: StatusDeps, input: StatusInput): Promise<(Sql | undefined)[]> {
  return Promise.all(
    input.patroni.members.map(async (m) => {
      const conn = connOf(input, m);
      if (!deps.postgres || !conn) return undefined;
      try {
        const id = await deps.postgres.pgIdentity(conn);
        return { inRecovery: id.inRecovery, timeline: id.timeline };
      } catch (err) {
        return { error: msg(err) };
      }
    }),
  );
}

/**
 * Everything under /<namespace>/<scope>/ (the seed's view_etcd.sh --patroni), with `initialize`:
 * the database system identifier the cluster was bootstrapped with.
 */
function keysOf(deps: StatusDeps, input: StatusInput): Promise<ClusterStatus['patroni']['keys']> {
  const p = input.patroni;
  return deps.etcd
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
}

function ownOf(deps: StatusDeps, input: StatusInput): Promise<Own[]> {
  return Promise.all(
    input.patroni.members.map(async (m): Promise<Own> => {
      try {
        const a = await deps.patroni.patroniGetPatroni({ target: { member: m.name, url: m.url } });
        return {
          m,
          status: a.body,
          error: a.body ? undefined : `GET /patroni answered ${a.status} without JSON`,
        };
      } catch (err) {
        return { m, status: null, error: msg(err) };
      }
    }),
  );
}

/** The topology from the first member that answers GET /cluster (the leader first when known). */
async function clusterFromFirst(
  deps: StatusDeps,
  own: Own[],
): Promise<{ cluster: PatroniClusterJson | null; clusterFrom: string | null }> {
  const order = [...own].sort((a, b) => rank(a.status) - rank(b.status));
  for (const o of order) {
    if (!o.status) continue;
    try {
      const a = await deps.patroni.patroniGetCluster({ target: { member: o.m.name, url: o.m.url } });
      if (a.status === 200 && a.body) return { cluster: a.body, clusterFrom: o.m.name };
    } catch {
      /* try the next member */
    }
  }
  return { cluster: null, clusterFrom: null };
}

/**
 * With SQL access, the leader's pg_stat_replication gives exact replay lag in bytes (Patroni's
 * /cluster lag comes from member keys refreshed once per loop_wait).
 */
function pgReplOf(
  deps: StatusDeps,
  input: StatusInput,
  leader: string | null,
): Promise<PgReplicationRow[] | undefined> {
  const m = input.patroni.members.find((x) => x.name === leader);
  const conn = m && connOf(input, m);
  if (!deps.postgres || !conn) return Promise.resolve(undefined);
  return deps.postgres.pgReplication(conn).catch(() => undefined);
}

function memberStatus(
  o: Own,
  v: PatroniMemberView | undefined,
  pgRepl: PgReplicationRow[] | undefined,
  q: Sql | undefined,
): PatroniMemberStatus {
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
    serverVersion: o.status?.server_version ?? null,
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
  if (q) s.sql = q;
  if (o.error) s.error = o.error;
  return s;
}

export async function collectPatroni(
  deps: StatusDeps,
  input: StatusInput,
): Promise<ClusterStatus['patroni']> {
  const p = input.patroni;
  // Asked at once, alongside the REST API calls below.
  const leaderKeyP = leaderKeyOf(deps, input);
  const sqlP = sqlOf(deps, input);
  const keysP = keysOf(deps, input);
  const own = await ownOf(deps, input);
  const { cluster, clusterFrom } = await clusterFromFirst(deps, own);
  const leader = cluster?.members.find((x) => ['leader', 'standby_leader'].includes(x.role))?.name ?? null;
  // The leader's GET /patroni lists its walsenders in replication[] (every Patroni version) and
  // leaves the field out when there are none: a running leader without it has no streaming replica.
  const leaderOwn = own.find(
    (o) =>
      o.m.name === leader && normaliseRole(o.status?.role) === 'primary' && o.status?.state === 'running',
  );
  const leaderReplication = leaderOwn ? (leaderOwn.status?.replication ?? []) : undefined;
  const views = cluster ? clusterMembers(cluster, leaderReplication) : [];
  const [leaderKey, sql, keys, pgRepl] = await Promise.all([
    leaderKeyP,
    sqlP,
    keysP,
    pgReplOf(deps, input, leader),
  ]);
  const members = own.map((o, i) =>
    memberStatus(
      o,
      views.find((x) => x.name === o.m.name),
      pgRepl,
      sql[i],
    ),
  );
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
