/**
 * The verdict: `down` when the cluster cannot take writes or cannot elect (no etcd quorum, no
 * Patroni leader, two leaders); `degraded` with a reason for each thing short of the seed's
 * "all members healthy, one leader, all replicas streaming on the leader's timeline"; else healthy.
 * One function per part of the cluster; each adds its reasons to `down` or `degraded`.
 */
import { patroniSupportWarning, pgMajorOf } from '../../runbooks/patroni-versions';
import { readyFix } from './common';
import type { ClusterStatus, HaproxyNodeStatus, PatroniMemberStatus } from './types';

type Status = Omit<ClusterStatus, 'verdict'>;
interface Reasons {
  down: string[];
  degraded: string[];
}

const MiB = 1024 * 1024;
function bytes(n: number): string {
  return n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

function judgeEtcd(s: Status, r: Reasons): void {
  if (!s.etcd.quorum) r.down.push(`etcd has no quorum: ${s.etcd.healthy} of ${s.etcd.total} members healthy`);
  for (const m of s.etcd.members) {
    if (!m.healthy)
      r.degraded.push(`etcd member ${m.name} (${m.endpoint}) is unhealthy: ${m.error ?? 'unknown error'}`);
  }
  if (s.etcd.quorum && !s.etcd.leader) r.degraded.push('etcd members do not agree on a leader');
}

/** Cluster-wide Patroni facts: a leader, only one, the leader key, pause, the system identifier. */
function judgeLeadership(s: Status, r: Reasons): void {
  const p = s.patroni;
  const leaders = p.members.filter((m) => m.ownRole === 'primary');
  if (!p.leader) r.down.push('Patroni reports no leader: the cluster takes no writes');
  if (leaders.length > 1)
    r.down.push(`more than one member says it is primary: ${leaders.map((m) => m.name).join(', ')}`);
  if ('error' in p.leaderKey)
    r.degraded.push(`cannot read the leader key ${p.leaderKey.key} from etcd: ${p.leaderKey.error}`);
  else if (p.leader && p.leaderKey.value !== p.leader) {
    r.degraded.push(
      `the leader key ${p.leaderKey.key} names ${p.leaderKey.value ?? 'nobody'}, but Patroni's /cluster says ${p.leader}`,
    );
  }
  if (p.paused) r.degraded.push('Patroni is paused (maintenance mode): no automatic failover');
  const initialize = 'error' in p.keys ? null : p.keys.initialize;
  for (const m of p.members) {
    if (initialize && m.systemId && m.systemId !== initialize) {
      r.degraded.push(
        `${m.name} has database system identifier ${m.systemId}, the cluster was initialized with ${initialize} (etcd initialize key): its data directory belongs to another cluster`,
      );
    }
  }
}

/** One replica: streaming, on the leader's timeline, lag within the bound. */
function judgeReplica(
  s: Status,
  m: PatroniMemberStatus,
  leader: PatroniMemberStatus | undefined,
  r: Reasons,
): void {
  const p = s.patroni;
  if (m.streaming === false)
    r.degraded.push(`replica ${m.name} is not streaming from the leader (state ${m.state ?? 'unknown'})`);
  else if (m.streaming === null && m.state !== 'running' && m.state !== 'streaming') {
    r.degraded.push(`replica ${m.name} is ${m.state ?? 'in an unknown state'}`);
  }
  if (leader?.timeline != null && m.timeline != null && m.timeline !== leader.timeline) {
    r.degraded.push(`replica ${m.name} is on timeline ${m.timeline}, the leader on ${leader.timeline}`);
  }
  if (m.lagBytes === null) r.degraded.push(`replica ${m.name}'s lag is unknown`);
  else if (m.lagBytes > p.maximumLagBytes) {
    r.degraded.push(
      `replica ${m.name} lags ${bytes(m.lagBytes)} (limit ${bytes(p.maximumLagBytes)} from maximum_lag_on_failover)`,
    );
  }
}

function judgeMembers(s: Status, r: Reasons): void {
  const p = s.patroni;
  const leader = p.members.find((m) => m.name === p.leader);
  for (const m of p.members) {
    if (!m.reachable) r.degraded.push(m.error ?? `Patroni REST API of ${m.name} does not answer`);
    if (m.role === null) {
      if (m.reachable || p.clusterFrom !== null) {
        r.degraded.push(
          `${m.name} is not a member in Patroni's /cluster (Patroni stopped, or not yet joined)`,
        );
      }
      continue;
    }
    if (m.name === p.leader) {
      if (m.state !== 'running')
        r.degraded.push(`leader ${m.name} is ${m.state ?? 'in an unknown state'}, not running`);
      continue;
    }
    judgeReplica(s, m, leader, r);
  }
}

/** SQL errors (one reason per distinct error), pending restarts, recovery state against the roles. */
function judgeSql(s: Status, r: Reasons): void {
  const p = s.patroni;
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
    r.degraded.push(`PostgreSQL on ${names.join(', ')} does not answer SQL: ${text}`);
  }
  for (const m of p.members) {
    if (m.pendingRestart) r.degraded.push(`${m.name} has a pending restart (a changed parameter needs it)`);
    if (m.sql && !('error' in m.sql) && m.role !== null) {
      const isLeader = m.name === p.leader;
      if (isLeader && m.sql.inRecovery)
        r.degraded.push(`leader ${m.name} is still in recovery (promotion not finished)`);
      if (!isLeader && !m.sql.inRecovery)
        r.down.push(`${m.name} is not in recovery but is not the leader: a second writable primary`);
    }
  }
}

/** One HAProxy backend: someone UP, the write backend only the leader, the read backend never it. */
function judgeBackend(
  s: Status,
  node: string,
  servers: { backend: string; server: string; state: string }[],
  b: string,
  r: Reasons,
): void {
  if (!s.haproxy.asked) return;
  const leader = s.patroni.leader;
  const up = servers.filter((x) => x.backend === b && x.state === 'UP').map((x) => x.server);
  if (up.length === 0) r.degraded.push(`HAProxy ${node}: backend ${b} has no server UP`);
  if (b === s.haproxy.writeBackend && leader && (up.length !== 1 || up[0] !== leader)) {
    r.degraded.push(
      `HAProxy ${node}: write backend ${b} sends to ${up.join(', ') || 'nobody'}, expected only the leader ${leader}`,
    );
  }
  if (b === s.haproxy.readBackend && leader && up.includes(leader)) {
    r.degraded.push(`HAProxy ${node}: read backend ${b} includes the leader ${leader}`);
  }
  const replicasUp = up.filter((x) => x !== leader);
  if (
    b !== s.haproxy.readBackend &&
    b !== s.haproxy.writeBackend &&
    leader &&
    up.includes(leader) &&
    replicasUp.length > 0
  ) {
    r.degraded.push(
      `HAProxy ${node}: backend ${b} sends to the leader and to replicas (${replicasUp.join(', ')}) alike: writes can land on a replica (the seed's check on GET /patroni?)`,
    );
  }
}

function judgeHaproxy(s: Status, r: Reasons): void {
  if (!s.haproxy.asked) return;
  const names = new Set(s.patroni.members.map((m) => m.name));
  for (const n of s.haproxy.nodes) {
    if (!n.reachable) {
      r.degraded.push(`HAProxy ${n.name} runtime API does not answer: ${n.error ?? 'unknown error'}`);
      continue;
    }
    const backends = [...new Set(n.servers.filter((x) => names.has(x.server)).map((x) => x.backend))];
    for (const b of backends) judgeBackend(s, n.name, n.servers, b, r);
    judgeDrained(s, n, r);
  }
}

/**
 * A write-backend server left drained (or in maintenance): the hand-off drains the old leader and
 * the candidate only for the seconds of a switchover, so one seen here is an alarm unless a
 * runbook is running on the cluster (`pgha runs`). A drained leader takes no new connection: new
 * writes are held for haproxy.writeHold, then refused.
 */
function judgeDrained(s: Status, n: HaproxyNodeStatus, r: Reasons): void {
  if (!s.haproxy.asked || !s.haproxy.writeBackend) return;
  const leader = s.patroni.leader;
  for (const x of n.servers) {
    if (x.backend !== s.haproxy.writeBackend || (x.state !== 'DRAIN' && x.state !== 'MAINT')) continue;
    const fix = readyFix({ name: n.name, vmid: n.vmid, socket: n.socket }, x.backend, x.server);
    const what =
      x.server === leader
        ? `leader ${x.server} drained, no switchover in progress? New writes through HAProxy ${n.name} are held, then refused`
        : `${x.server} left ${x.state === 'DRAIN' ? 'drained' : 'in maintenance'} in HAProxy ${n.name}'s write backend ${x.backend}`;
    (x.server === leader ? r.down : r.degraded).push(
      `${what} (unless a runbook is running on the cluster: pgha runs). Fix: ${fix}`,
    );
  }
}

/**
 * Warnings that do not change the verdict: a member whose Patroni does not support the PostgreSQL
 * major it runs (3.3.x with 18), naming `pgha upgrade patroni`.
 */
export function warnings(s: Status): string[] {
  const out: string[] = [];
  for (const m of s.patroni.members) {
    const major = pgMajorOf(m.serverVersion);
    const w = m.patroniVersion && major ? patroniSupportWarning(m.patroniVersion, major) : undefined;
    if (w) out.push(`${m.name}: ${w}`);
  }
  return out;
}

export function judge(s: Status): ClusterStatus['verdict'] {
  const r: Reasons = { down: [], degraded: [] };
  judgeEtcd(s, r);
  judgeLeadership(s, r);
  judgeMembers(s, r);
  judgeSql(s, r);
  judgeHaproxy(s, r);
  const reasons = [...r.down, ...r.degraded];
  const status = r.down.length > 0 ? 'down' : r.degraded.length > 0 ? 'degraded' : 'healthy';
  const warned = warnings(s);
  return warned.length ? { status, reasons, warnings: warned } : { status, reasons };
}
