/**
 * Switchover and failover, the activities: check the live cluster, hand the leader over through
 * Patroni, route HAProxy the instant the new leader accepts writes, and verify — each ending in a
 * definite, reported state.
 *
 * - switchoverPrecheck: etcd quorum, the leader, the candidate (named or the best replica) running
 *   and streaming on the leader's timeline, not tagged nofailover, within maximum_lag_on_failover
 *   (replay lag from the leader's pg_stat_replication: a replica whose replay is paused lags even
 *   if it received everything), the cluster not paused. A refusal is a non-retryable
 *   ApplicationFailure (type SwitchoverRefused) saying what was found and what to do.
 * - switchoverCutover: the critical path in ONE activity so that Temporal's task latency never adds
 *   to the write gap. HAProxy runtime sessions (one interactive `prompt` session per HAProxy node,
 *   kept open over one SSH connection: ~1 ms a command instead of ~75 ms for a fresh pct exec) and
 *   SQL connections to both members are opened BEFORE the POST; then a 10 ms loop: when the old
 *   leader stops taking writes (its connection dies) it is forced DOWN at once (sessions cut);
 *   when the candidate's own /primary answers 200 AND its pg_is_in_recovery() is false, it is
 *   forced UP in the write backend (and DOWN in the read backend). `set server ... health` only
 *   forces the operational state: the health checks keep running and stay in charge afterwards.
 *   Idempotent: a retry (e.g. after a worker was killed) first looks at who leads now and, if the
 *   candidate already does on a newer timeline, only routes HAProxy and reports the switchover as
 *   already done; a POST sent by an earlier attempt (heartbeat details) is never repeated blindly.
 * - switchoverVerify: the new leader is the candidate and writable, the timeline went up, the old
 *   leader streams from it again, every HAProxy sends writes to the new leader (show stat + a write
 *   probe through each) and every server is back under its checks (no MAINT/DRAIN, states as the
 *   checks say).
 */
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { Client as SshClient, type ClientChannel } from 'ssh2';
import type { Inventory } from '../runbooks/schema';
import { pctExec } from './command';
import type { EtcdActivities } from './etcd';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND } from './render';
import type { HaproxyActivities, HaproxyNode, HaproxyStatRow } from './haproxy';
import { socatArgv } from './haproxy';
import { clusterLeader, clusterMembers } from './patroni';
import type { PatroniActivities, PatroniClusterJson, PatroniMemberView, PatroniTarget } from './patroni';
import { activityContext, heartbeat, PollTimeoutError, pollUntil } from './poll';
import type { PgConn, PostgresActivities } from './postgres';
import { resolveProxmoxConfig, sshFingerprint } from './proxmox';
import type { ProxmoxInventorySection } from './proxmox';
import { resolveSecretRef } from './secrets';

export type HandoffAction = 'switchover' | 'failover';

export interface SwitchoverDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  etcd: EtcdActivities;
  /** The HAProxy runtime API (one-shot commands) of an inventory's HAProxy nodes. */
  haproxyFor(inv: Inventory): Promise<HaproxyActivities>;
  /**
   * Interactive runtime sessions for the critical path. Default: over one SSH connection to the
   * inventory's Proxmox host, `pct exec <vmid> -- socat ...` per HAProxy node.
   */
  openRuntimeSessions?: (inv: Inventory) => Promise<RuntimeSessions>;
  /** A kept SQL connection answering pg_is_in_recovery() (default: pg). Tests fake it. */
  recoveryProbe?: (conn: PgConn, password: string) => RecoveryProbe;
  /** Bound of a switchover's hand-off (POST → candidate writable). Default 60 s. */
  handoffTimeoutMs?: number;
}

export interface RecoveryProbe {
  /** true/false: in recovery; null: no answer (down, shutting down, refused). */
  inRecovery(): Promise<boolean | null>;
  close(): void;
}

/** What the pre-check saw: the plan the cutover and the verification work from. */
export interface HandoffPlan {
  action: HandoffAction;
  /** The leader when checked (undefined for a failover with no leader). */
  leader?: string;
  candidate: string;
  /** The leader's timeline when checked (the candidate's own for a failover). */
  timeline: number;
  /** Whether the candidate was picked by pgha (no --to). */
  chosen: boolean;
  maxLagBytes: number;
  members: {
    name: string;
    role: string;
    state: string;
    timeline?: number;
    lagBytes: number | null;
    noFailover: boolean;
  }[];
  /** A healthy leader was there and --force overrode the refusal (failover only). */
  forced?: boolean;
}

export interface CutoverTimings {
  /** When the POST was sent (epoch ms); the others are ms since then. */
  postedAt?: number;
  oldLeaderCutMs?: number;
  candidatePrimary200Ms?: number;
  candidateWritableMs?: number;
  routedMs?: number;
  postAnsweredMs?: number;
}

export interface CutoverResult {
  /** switched: done now; already-done: a previous attempt did it (resumed); the others fail the runbook. */
  outcome: 'switched' | 'already-done';
  leader: string;
  postStatus?: number;
  postText?: string;
  timings: CutoverTimings;
  routedOn: string[];
}

export interface VerifyResult {
  leader: string;
  timeline: number;
  oldLeader?:
    { name: string; state: string; lagBytes: number | null } | { name: string; state: 'unreachable' };
  haproxy: { node: string; writeServerUp: string[]; writeLandedOn: string | null }[];
  members: { name: string; role: string; state: string; timeline?: number; lagBytes: number | null }[];
}

export const REFUSED = 'SwitchoverRefused';
export const HANDOFF_FAILED = 'SwitchoverFailed';

const MiB = 1024 * 1024;
export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unknown';
  if (n >= MiB) return `${(n / MiB).toFixed(n >= 10 * MiB ? 0 : 1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

const refuse = (message: string) => ApplicationFailure.nonRetryable(message, REFUSED);
const failed = (message: string, details?: unknown) =>
  ApplicationFailure.create({ message, type: HANDOFF_FAILED, nonRetryable: true, details: [details] });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// HAProxy runtime sessions: `prompt` mode keeps one admin-socket session open; each answer ends
// with "\n> ".

export interface RuntimeSession {
  node: string;
  command(cmd: string, timeoutMs?: number): Promise<string>;
  close(): void;
}
export interface RuntimeSessions {
  sessions: RuntimeSession[];
  close(): void;
}

class ChannelSession implements RuntimeSession {
  private buf = '';
  private waiter?: { resolve: (s: string) => void; reject: (e: Error) => void };
  private dead?: Error;
  constructor(
    readonly node: string,
    private readonly ch: ClientChannel,
  ) {
    ch.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      this.flush();
    });
    ch.stderr.on('data', () => undefined);
    ch.on('close', () => this.fail(new Error(`haproxy ${node}: runtime session closed`)));
  }
  private flush(): void {
    if (!this.waiter) return;
    const end = this.buf.lastIndexOf('\n> ');
    if (end >= 0 && end + 3 === this.buf.length) {
      const answer = this.buf.slice(0, end).replace(/^\n/, '');
      this.buf = '';
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(answer.trim());
    }
  }
  private fail(err: Error): void {
    this.dead ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
  command(cmd: string, timeoutMs = 3000): Promise<string> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.waiter) return Promise.reject(new Error(`haproxy ${this.node}: a command is already in flight`));
    if (/[;\n\r]/.test(cmd)) return Promise.reject(new TypeError(`haproxy command with a separator: ${cmd}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`haproxy ${this.node}: no answer to "${cmd}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.ch.write(`${cmd}\n`);
    });
  }
  close(): void {
    try {
      this.ch.end('quit\n');
    } catch {
      // already gone
    }
  }
}

/** One SSH connection to the Proxmox host, one `pct exec <vmid> -- socat` session per HAProxy node. */
export async function openSshRuntimeSessions(inv: Inventory): Promise<RuntimeSessions> {
  const cfg = await resolveProxmoxConfig(inv.proxmox as ProxmoxInventorySection);
  const ssh = new SshClient();
  await new Promise<void>((resolve, reject) => {
    ssh.on('ready', () => resolve());
    ssh.on('error', (err) => reject(new Error(`SSH to ${cfg.host}:${cfg.port ?? 22}: ${err.message}`)));
    ssh.connect({
      host: cfg.host,
      port: cfg.port ?? 22,
      username: cfg.user ?? 'root',
      privateKey: cfg.privateKey,
      readyTimeout: 10_000,
      hostVerifier: (key: Buffer) => sshFingerprint(key) === cfg.hostKeyFingerprint,
    });
  });
  const sessions: RuntimeSession[] = [];
  try {
    for (const n of inv.nodes.haproxy) {
      const node: HaproxyNode = { name: n.hostname, vmid: n.vmid, socket: HAPROXY_ADMIN_SOCKET };
      const ch = await new Promise<ClientChannel>((resolve, reject) =>
        ssh.exec(pctExec(n.vmid, socatArgv(node)), (err, c) => (err ? reject(err) : resolve(c))),
      );
      const s = new ChannelSession(n.hostname, ch);
      sessions.push(s);
      await s.command('prompt', 10_000);
    }
  } catch (err) {
    for (const s of sessions) s.close();
    ssh.end();
    throw err;
  }
  return {
    sessions,
    close() {
      for (const s of sessions) s.close();
      setTimeout(() => ssh.end(), 200).unref();
    },
  };
}

/**
 * Servers of `show servers state <backend>` whose admin state is not 0 (maint, drain ...):
 * fields be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
 */
export function adminForced(answer: string): string[] {
  const out: string[] = [];
  for (const line of answer.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || !/^\d+$/.test(f[0]!)) continue;
    if (f[6] !== '0') out.push(`${f[1]}/${f[3]} (admin state ${f[6]})`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export function createSwitchoverActivities(deps: SwitchoverDeps) {
  const openSessions = deps.openRuntimeSessions ?? openSshRuntimeSessions;
  const target = (inv: Inventory, hostname: string): PatroniTarget => {
    const n = inv.nodes.postgres.find((x) => x.hostname === hostname);
    if (!n) throw new Error(`${hostname} is not a PostgreSQL node of cluster ${inv.cluster}`);
    return { member: hostname, url: `http://${n.ip}:${inv.ports.patroniRestApi}` };
  };
  const auth = (inv: Inventory) => ({
    username: inv.patroni.restApiUsername,
    passwordRef: inv.secrets.restApiPassword,
  });
  const conn = (inv: Inventory, host: string, port = inv.ports.postgresql): PgConn => ({
    host,
    port,
    user: inv.postgresql.superuser,
    passwordRef: inv.secrets.superuserPassword,
    connectTimeoutMs: 2000,
  });
  const ipOf = (inv: Inventory, hostname: string) =>
    inv.nodes.postgres.find((x) => x.hostname === hostname)?.ip ?? '';
  const pgNames = (inv: Inventory) => inv.nodes.postgres.map((n) => n.hostname);

  /** GET /cluster from the first member that answers (undefined when none does). */
  async function getCluster(
    inv: Inventory,
  ): Promise<{ from: string; cluster: PatroniClusterJson } | undefined> {
    for (const n of inv.nodes.postgres) {
      try {
        const r = await deps.patroni.patroniGetCluster({ target: target(inv, n.hostname), timeoutMs: 2000 });
        if (r.status === 200 && r.body) return { from: n.hostname, cluster: r.body };
      } catch {
        // next member
      }
    }
    return undefined;
  }

  async function primary200(inv: Inventory, hostname: string, timeoutMs = 2000): Promise<boolean> {
    try {
      return (
        (await deps.patroni.patroniGetPrimary({ target: target(inv, hostname), timeoutMs })).status === 200
      );
    } catch {
      return false;
    }
  }

  async function etcdQuorum(inv: Inventory): Promise<void> {
    const endpoints = inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`);
    const health = await deps.etcd.etcdEndpointHealth({ endpoints, timeoutMs: 3000 });
    const healthy = health.filter((h) => h.healthy).length;
    if (healthy <= endpoints.length / 2) {
      const bad = health
        .filter((h) => !h.healthy)
        .map((h) => `${h.endpoint}: ${h.error ?? 'unhealthy'}`)
        .join('; ');
      throw refuse(
        `etcd has no quorum: ${healthy} of ${endpoints.length} members healthy (${bad}); ` +
          `Patroni cannot move the leader key without it — bring etcd back first (pgha status)`,
      );
    }
  }

  /**
   * The pre-checks of a switchover (or a failover) against the live cluster. Returns the plan;
   * refuses with a SwitchoverRefused failure naming what was found and the fix.
   */
  async function switchoverPrecheck(args: {
    inv: Inventory;
    action: HandoffAction;
    candidate?: string;
    force?: boolean;
  }): Promise<HandoffPlan> {
    const { inv, action } = args;
    const names = pgNames(inv);
    if (args.candidate !== undefined && !names.includes(args.candidate)) {
      throw refuse(
        `candidate ${args.candidate} is not a member of cluster ${inv.cluster}: choose one of ${names.join(', ')}`,
      );
    }
    await etcdQuorum(inv);
    const got = await getCluster(inv);
    if (!got) {
      throw refuse(
        `no Patroni member of cluster ${inv.cluster} answers GET /cluster (${names.join(', ')}); check pgha status`,
      );
    }
    const cl = got.cluster;
    if (cl.pause) {
      throw refuse(
        `cluster ${inv.cluster} is paused (Patroni maintenance mode): Patroni will not move the leader; ` +
          `resume it (patronictl resume) first`,
      );
    }
    if (cl.scheduled_switchover) {
      throw refuse(
        `a switchover is already scheduled in Patroni (at ${cl.scheduled_switchover.at} from ${cl.scheduled_switchover.from}` +
          `${cl.scheduled_switchover.to ? ` to ${cl.scheduled_switchover.to}` : ''}); cancel it (DELETE /switchover) or wait`,
      );
    }
    const leaderName = clusterLeader(cl);
    const leaderHealthy = leaderName ? await primary200(inv, leaderName) : false;

    // The leader's own view: exact replay lag per replica and who streams.
    let repl: Awaited<ReturnType<PostgresActivities['pgReplication']>> | undefined;
    let leaderTimeline: number | undefined;
    if (leaderName && leaderHealthy) {
      try {
        repl = await deps.postgres.pgReplication(conn(inv, ipOf(inv, leaderName)));
        leaderTimeline =
          (await deps.postgres.pgTimeline(conn(inv, ipOf(inv, leaderName)))).timeline ?? undefined;
      } catch (err) {
        throw refuse(
          `the leader ${leaderName} does not answer SQL (${(err as Error).message}); check it (pgha status) before moving the leader`,
        );
      }
    }
    let maxLag = inv.patroni.maximumLagOnFailover;
    try {
      const c = await deps.patroni.patroniGetConfig({ target: target(inv, got.from), timeoutMs: 2000 });
      const v = c.body?.maximum_lag_on_failover;
      if (typeof v === 'number') maxLag = v;
    } catch {
      // the inventory's value
    }
    const views = clusterMembers(cl, undefined);
    const replicaLag = (name: string): number | null => {
      const row = repl?.find((r) => r.applicationName === name);
      const own = views.find((v) => v.name === name)?.lagBytes ?? null;
      const exact = row?.replayLagBytes ?? null;
      if (exact === null) return own;
      return own === null ? exact : Math.max(exact, own);
    };
    const members: HandoffPlan['members'] = views.map((v) => ({
      name: v.name,
      role: v.role,
      state: v.state,
      timeline: v.timeline,
      lagBytes: v.name === leaderName ? 0 : replicaLag(v.name),
      noFailover: v.noFailover,
    }));
    // Each replica's own timeline (the WAL it receives): Patroni's /cluster shows the one of its
    // last loop, up to loop_wait old right after a switchover.
    await Promise.all(
      members.map(async (m) => {
        if (m.name === leaderName || !names.includes(m.name)) return;
        try {
          const t = await deps.postgres.pgTimeline(conn(inv, ipOf(inv, m.name)));
          if (t.timeline !== null) m.timeline = t.timeline;
        } catch {
          // Patroni's value stays
        }
      }),
    );
    for (const n of names) {
      if (!members.some((m) => m.name === n))
        members.push({
          name: n,
          role: 'absent',
          state: 'not in /cluster',
          lagBytes: null,
          noFailover: false,
        });
    }

    if (action === 'switchover') {
      if (!leaderName || !leaderHealthy) {
        throw refuse(
          leaderName
            ? `the leader ${leaderName} is not healthy (its /primary does not answer 200): a switchover needs a running leader; ` +
                `if it is gone, use pgha failover --to <replica>`
            : `cluster ${inv.cluster} has no leader: a switchover needs one; use pgha failover --to <replica>`,
        );
      }
    } else if (leaderName && leaderHealthy && !args.force) {
      throw refuse(
        `the leader ${leaderName} is healthy (its /primary answers 200): a failover would cut it off; ` +
          `use pgha switchover --to ${args.candidate ?? '<replica>'}, or failover --force if you really mean it`,
      );
    }

    /** Why `name` cannot take over, or undefined when it can. */
    const unfit = (name: string): string | undefined => {
      const m = members.find((x) => x.name === name)!;
      if (name === leaderName) return `${name} is the leader already`;
      if (m.role === 'absent') return `${name} is not in the cluster (${m.state})`;
      if (m.noFailover) return `${name} is tagged nofailover`;
      const row = repl?.find((r) => r.applicationName === name);
      if (leaderHealthy) {
        if (!row || row.state !== 'streaming')
          return `${name} is not streaming from the leader ${leaderName} (${row ? `state ${row.state}` : `no walsender for it; Patroni says ${m.state}`})`;
        if (leaderTimeline !== undefined && m.timeline !== undefined && m.timeline !== leaderTimeline)
          return `${name} is on timeline ${m.timeline}, the leader on ${leaderTimeline}`;
        if (m.lagBytes === null) return `${name}'s lag is unknown`;
        if (m.lagBytes > maxLag) return `${name} lags ${fmtBytes(m.lagBytes)}`;
      } else if (m.state !== 'running' && m.state !== 'streaming') {
        return `${name} is ${m.state}, not running`;
      }
      return undefined;
    };
    const fit = names.filter((n) => unfit(n) === undefined);
    const best = [...fit].sort((a, b) => {
      const la = members.find((m) => m.name === a)?.lagBytes ?? Number.MAX_SAFE_INTEGER;
      const lb = members.find((m) => m.name === b)?.lagBytes ?? Number.MAX_SAFE_INTEGER;
      return la - lb;
    });
    const alternatives = () =>
      best.length
        ? `choose ${best.map((n) => `${n} (lag ${fmtBytes(members.find((m) => m.name === n)?.lagBytes)})`).join(' or ')}`
        : 'no other member qualifies either: check pgha status';

    let candidate = args.candidate;
    if (candidate === undefined) {
      if (action === 'failover') throw refuse('a failover needs a candidate: --to <replica>');
      candidate = best[0];
      if (!candidate) {
        const why = names
          .filter((n) => n !== leaderName)
          .map((n) => unfit(n))
          .join('; ');
        throw refuse(`no replica can take over: ${why}; fix that first (pgha status)`);
      }
    } else {
      const m = members.find((x) => x.name === candidate)!;
      const why = unfit(candidate);
      if (why !== undefined) {
        const others = () => {
          const o = best.filter((n) => n !== candidate);
          return o.length
            ? `choose ${o.map((n) => `${n} (lag ${fmtBytes(members.find((x) => x.name === n)?.lagBytes)})`).join(' or ')}`
            : alternatives();
        };
        if (candidate === leaderName)
          throw refuse(`candidate ${candidate} is the leader already: nothing to switch over; ${others()}`);
        if (leaderHealthy && m.lagBytes !== null && m.lagBytes > maxLag && !m.noFailover)
          throw refuse(
            `candidate ${candidate} lags ${fmtBytes(m.lagBytes)} behind the leader (limit ${fmtBytes(maxLag)} from ` +
              `maximum_lag_on_failover); wait, or ${others()}`,
          );
        if (m.noFailover)
          throw refuse(
            `candidate ${candidate} is tagged nofailover (patroni.yml tags): Patroni never promotes it; ` +
              `remove the tag (and reload Patroni), or ${others()}`,
          );
        throw refuse(`candidate ${candidate} cannot take over: ${why}; ${others()}`);
      }
    }
    const cm = members.find((m) => m.name === candidate)!;
    return {
      action,
      leader: leaderHealthy ? leaderName : undefined,
      candidate,
      timeline: leaderTimeline ?? cm.timeline ?? 0,
      chosen: args.candidate === undefined,
      maxLagBytes: maxLag,
      members,
      forced: action === 'failover' && leaderHealthy ? true : undefined,
    };
  }

  /** A kept SQL connection that answers pg_is_in_recovery() (or fails fast), reconnecting on error. */
  function pgRecoveryProbe(c: PgConn, password: string): RecoveryProbe {
    let client: PgClient | undefined;
    let connecting: Promise<PgClient> | undefined;
    const open = () => {
      connecting ??= (async () => {
        const cl = new PgClient({
          host: c.host,
          port: c.port,
          user: c.user,
          password,
          database: 'postgres',
          connectionTimeoutMillis: 1000,
          query_timeout: 1000,
          application_name: 'pgha-switchover',
        });
        cl.on('error', () => undefined);
        try {
          await cl.connect();
        } catch (err) {
          connecting = undefined;
          await cl.end().catch(() => undefined);
          throw err;
        }
        client = cl;
        return cl;
      })();
      return connecting;
    };
    return {
      /** true/false: in recovery; null: no answer (down, shutting down, refused). */
      async inRecovery(): Promise<boolean | null> {
        try {
          const cl = client ?? (await open());
          const r = await cl.query<{ r: boolean }>('select pg_is_in_recovery() as r');
          return r.rows[0]!.r;
        } catch {
          const cl = client;
          client = undefined;
          connecting = undefined;
          void cl?.end().catch(() => undefined);
          return null;
        }
      },
      close() {
        void client?.end().catch(() => undefined);
        client = undefined;
      },
    };
  }

  /** Who leads now: the /cluster leader if its /primary answers 200 and it is out of recovery. */
  async function leaderNow(
    inv: Inventory,
  ): Promise<{ leader?: string; timeline?: number; describe: string }> {
    const got = await getCluster(inv);
    if (!got) return { describe: 'no member answers GET /cluster' };
    const l = clusterLeader(got.cluster);
    if (!l)
      return {
        describe: `no leader in /cluster (${got.cluster.members.map((m) => `${m.name} ${m.role} ${m.state}`).join(', ')})`,
      };
    if (!(await primary200(inv, l)))
      return { describe: `${l} holds the leader key but its /primary is not 200 yet` };
    try {
      const tl = await deps.postgres.pgTimeline(conn(inv, ipOf(inv, l)));
      return {
        leader: l,
        timeline: tl.timeline ?? undefined,
        describe: `${l} leads on timeline ${tl.timeline}`,
      };
    } catch (err) {
      return { describe: `${l} leads but SQL fails: ${(err as Error).message}` };
    }
  }

  /**
   * The critical path: POST /switchover (or /failover) and route HAProxy the instant the candidate
   * accepts writes, in one activity that polls every `intervalMs` (default 10) and heartbeats.
   */
  async function switchoverCutover(args: {
    inv: Inventory;
    plan: HandoffPlan;
    /** Bound of the hand-off (POST → candidate writable). Default 60 s for a switchover; ttl + 60 s for a failover. */
    handoffTimeoutMs?: number;
    intervalMs?: number;
  }): Promise<CutoverResult> {
    const { inv, plan } = args;
    const cand = plan.candidate;
    const old = plan.leader;
    const interval = args.intervalMs ?? 10;
    const handoffTimeout =
      args.handoffTimeoutMs ??
      (plan.action === 'failover' ? inv.patroni.ttl * 1000 + 60_000 : (deps.handoffTimeoutMs ?? 60_000));
    const prior = activityContext()?.info.heartbeatDetails as { posted?: boolean } | undefined;

    // 1. Where are we? A retried attempt may find the work done, or under way.
    let now = await leaderNow(inv);
    if (prior?.posted && now.leader !== cand) {
      // An earlier attempt sent the POST: let that hand-off finish before deciding anything.
      try {
        now = await pollUntil(
          {
            what: `the hand-off to ${cand} requested by an earlier attempt`,
            timeoutMs: handoffTimeout,
            intervalMs: 500,
          },
          async () => {
            const n = await leaderNow(inv);
            return { done: n.leader === cand, value: n, describe: n.describe };
          },
        );
      } catch (err) {
        if (!(err instanceof PollTimeoutError)) throw err;
        now = await leaderNow(inv);
      }
    }
    if (now.leader === cand && (now.timeline ?? 0) > plan.timeline) {
      const sessions = await openSessions(inv);
      try {
        const routedOn = await route(inv, sessions, cand, old);
        return { outcome: 'already-done', leader: cand, timings: {}, routedOn };
      } finally {
        sessions.close();
      }
    }
    if (now.leader !== undefined && now.leader !== (old ?? now.leader)) {
      throw failed(
        `the leader is now ${now.leader} (timeline ${now.timeline}), neither ${old} nor the candidate ${cand}: ` +
          `someone else moved it; nothing was requested. Check pgha status`,
      );
    }
    if (plan.action === 'switchover' && now.leader !== old) {
      throw failed(
        `the leader ${old} is no longer leading (${now.describe}); no switchover was requested. Check pgha status`,
      );
    }

    // 2. Prepare: runtime sessions to every HAProxy, SQL connections to both members.
    const password = await resolveSecretRef(inv.secrets.superuserPassword);
    const sessions = await openSessions(inv);
    const sqlProbe = deps.recoveryProbe ?? pgRecoveryProbe;
    const candSql = sqlProbe(conn(inv, ipOf(inv, cand)), password);
    const oldSql = old ? sqlProbe(conn(inv, ipOf(inv, old)), password) : undefined;
    const timings: CutoverTimings = {};
    try {
      await candSql.inRecovery();
      if (oldSql && (await oldSql.inRecovery()) !== false) {
        throw failed(
          `the leader ${old} does not answer as a writable primary just before the POST; nothing was requested`,
        );
      }
      // The candidate takes no write before pgha admits it: its own check (rise 1) would mark it UP
      // the moment its /primary answers 200, 100-300 ms before its PostgreSQL leaves recovery, and
      // writes would reach a read-only server (2 in a benchmark run, to the first server of the
      // backend). Drained, it takes no new connection whatever its checks say; admitted below.
      await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} state drain`);
      // 3. The request. Patroni answers when it is done (or gives up); the loop does not wait for it.
      const t0 = Date.now();
      timings.postedAt = t0;
      heartbeat({ posted: true });
      let answer: { status: number; text: string } | undefined;
      let postError: string | undefined;
      let postFinal = false;
      let postErrorAt = 0;
      const post = (
        plan.action === 'switchover'
          ? deps.patroni.patroniSwitchover({
              target: target(inv, old!),
              auth: auth(inv),
              leader: old!,
              candidate: cand,
              timeoutMs: handoffTimeout,
            })
          : deps.patroni.patroniFailover({
              target: target(inv, cand),
              auth: auth(inv),
              candidate: cand,
              timeoutMs: handoffTimeout,
            })
      ).then(
        (r) => {
          answer = { status: r.status, text: r.text ?? JSON.stringify(r.body) };
          timings.postAnsweredMs = Date.now() - t0;
        },
        (err: Error) => {
          postError = err.message;
          // A 401 is final; a request that got no answer may still have reached Patroni: watch a while.
          postFinal = err.name === 'PatroniAuthRejectedError';
          postErrorAt = Date.now();
          timings.postAnsweredMs = Date.now() - t0;
        },
      );

      // 4. The fast loop.
      let oldCut = false;
      let primaryOk = false;
      let lastBeat = 0;
      const cutOld = async () => {
        if (oldCut || !old) return;
        oldCut = true;
        timings.oldLeaderCutMs = Date.now() - t0;
        // Drained, not just marked down: while Patroni still holds its key the old leader's /primary
        // can answer 200 again and its check (rise 1) would put it back UP — HAProxy would then send
        // connections to a stopped PostgreSQL and retry them for seconds. A drained server takes no
        // new connection whatever its checks say; the checks keep running (verify restores `ready`).
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${old} state drain`);
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${old} health down`);
        await all(sessions, `shutdown sessions server ${HAPROXY_WRITE_BACKEND}/${old}`);
      };
      for (;;) {
        const elapsed = Date.now() - t0;
        // Refused (4xx) or failed (503 "... failed") is final; 503 "... status unknown" only means
        // Patroni stopped waiting (a failover waits for the dead leader's key to expire): keep watching.
        if (answer && answer.status >= 400 && !/unknown/i.test(answer.text)) break;
        if (postError && (postFinal || (!oldCut && Date.now() - postErrorAt > 10_000))) break;
        if (elapsed > handoffTimeout) break;
        const [candRec, candPrimary, oldRec] = await Promise.all([
          candSql.inRecovery(),
          primaryOk ? Promise.resolve(true) : primary200(inv, cand, 500),
          oldSql && !oldCut ? oldSql.inRecovery() : Promise.resolve(null),
        ]);
        if (oldSql && !oldCut && oldRec !== false) await cutOld();
        if (candPrimary && !primaryOk) {
          primaryOk = true;
          timings.candidatePrimary200Ms = Date.now() - t0;
        }
        if (candRec === false && timings.candidateWritableMs === undefined)
          timings.candidateWritableMs = Date.now() - t0;
        if (primaryOk && candRec === false) {
          await cutOld();
          await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} state ready`); // drained by an earlier run?
          await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} health up`);
          timings.routedMs = Date.now() - t0;
          await all(sessions, `set server ${HAPROXY_READ_BACKEND}/${cand} health down`);
          break;
        }
        if (Date.now() - lastBeat > 1000) {
          lastBeat = Date.now();
          heartbeat({ posted: true, elapsedMs: elapsed, oldCut, primaryOk });
        }
        await sleep(interval);
      }
      // 5. Patroni's answer (bounded: the request has its own deadline).
      if (timings.routedMs === undefined || !answer) {
        await Promise.race([post, sleep(timings.routedMs === undefined ? 5000 : 30_000)]);
      }
      heartbeat({ posted: true, done: timings.routedMs !== undefined });
      if (timings.routedMs !== undefined) {
        return {
          outcome: 'switched',
          leader: cand,
          postStatus: answer?.status,
          postText: answer?.text ?? postError,
          timings,
          routedOn: sessions.sessions.map((s) => s.node),
        };
      }
      // 6. Not switched: say exactly where the cluster is, and leave HAProxy to its checks.
      const seen = await leaderNow(inv);
      // Whatever happened, the old leader is no longer drained: back under its checks (UP at once
      // if it still leads, else DOWN until its checks say otherwise).
      // The candidate, drained before the POST, is back under its checks (DOWN at once unless it leads).
      await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} state ready`).catch(() => undefined);
      if (seen.leader !== cand) {
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${cand} health down`).catch(() => undefined);
      }
      if (oldCut && old) {
        const health = seen.leader === old ? 'up' : 'down';
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${old} state ready`).catch(() => undefined);
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${old} health ${health}`).catch(
          () => undefined,
        );
      }
      const patroniSaid = answer
        ? `Patroni answered ${answer.status}: ${answer.text}`
        : postError
          ? `the request failed: ${postError}`
          : 'Patroni had not answered';
      if (seen.leader === old && old) {
        throw failed(
          `${plan.action} to ${cand} did not happen: ${patroniSaid}. The leader is still ${old} (timeline ${seen.timeline}), ` +
            `writes are routed to it as before; nothing else changed`,
          { leader: old, timings },
        );
      }
      throw failed(
        `${plan.action} to ${cand} did not complete (waited ${Date.now() - t0} ms, bound ${handoffTimeout} ms): ${patroniSaid}. Now: ${seen.describe}. ` +
          `HAProxy follows its health checks; check pgha status and Patroni's log before retrying`,
        { leader: seen.leader ?? null, timings },
      );
    } finally {
      candSql.close();
      oldSql?.close();
      sessions.close();
    }
  }

  async function all(s: RuntimeSessions, cmd: string): Promise<void> {
    const answers = await Promise.all(s.sessions.map(async (x) => [x.node, await x.command(cmd)] as const));
    const bad = answers.filter(([, a]) => a !== '');
    if (bad.length) throw new Error(`haproxy: ${cmd}: ${bad.map(([n, a]) => `${n}: ${a}`).join('; ')}`);
  }

  /** Routes writes to `leader` on every HAProxy (old leader down first); idempotent. */
  async function route(inv: Inventory, s: RuntimeSessions, leader: string, old?: string): Promise<string[]> {
    for (const n of pgNames(inv)) {
      if (n !== leader && (n === old || !(await primary200(inv, n))))
        await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${n} health down`);
    }
    await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${leader} state ready`);
    await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${leader} health up`);
    await all(s, `set server ${HAPROXY_READ_BACKEND}/${leader} health down`);
    return s.sessions.map((x) => x.node);
  }

  /**
   * After the hand-off: the candidate leads, writable, on a newer timeline; the old leader streams
   * from it again (unless it is gone: failover); every HAProxy routes writes to the new leader and
   * every server is back under its health checks.
   */
  async function switchoverVerify(args: {
    inv: Inventory;
    plan: HandoffPlan;
    /** Wait this long for the old leader to stream again. Default 120 s; 0: do not wait (failover with it gone). */
    rejoinTimeoutMs?: number;
  }): Promise<VerifyResult> {
    const { inv, plan } = args;
    const cand = plan.candidate;
    const candIp = ipOf(inv, cand);
    const now = await pollUntil(
      { what: `${cand} leading, writable`, timeoutMs: 30_000, intervalMs: 500 },
      async () => {
        const n = await leaderNow(inv);
        return { done: n.leader !== undefined, value: n, describe: n.describe };
      },
    ).catch((err: Error) => {
      throw failed(`after the hand-off nobody leads: ${err.message}`);
    });
    if (now.leader !== cand) {
      throw failed(`the leader is ${now.leader} (timeline ${now.timeline}), not the candidate ${cand}`);
    }
    if (!(now.timeline !== undefined && now.timeline > plan.timeline)) {
      throw failed(`${cand} leads on timeline ${now.timeline}, expected more than ${plan.timeline}`);
    }

    let oldLeader: VerifyResult['oldLeader'];
    const old = plan.leader;
    if (old) {
      const wait = args.rejoinTimeoutMs ?? 120_000;
      const rows = await pollUntil(
        { what: `${old} streaming from ${cand}`, timeoutMs: Math.max(wait, 1), intervalMs: 1000 },
        async () => {
          try {
            const r = await deps.postgres.pgReplication(conn(inv, candIp));
            const row = r.find((x) => x.applicationName === old);
            return {
              done: row?.state === 'streaming',
              value: row,
              describe: row ? `state ${row.state}` : 'no walsender for it yet',
            };
          } catch (err) {
            return { done: false, value: undefined, describe: (err as Error).message };
          }
        },
      ).catch((err: Error) => {
        throw failed(
          `${cand} leads, but the old leader ${old} does not stream from it: ${err.message}; see pgha status (it may need pgha reinit ${old})`,
        );
      });
      oldLeader = { name: old, state: rows?.state ?? 'streaming', lagBytes: rows?.replayLagBytes ?? null };
    }

    // HAProxy: every node routes writes to the new leader, and is back under its checks. Servers
    // drained by the hand-off get `ready` again now that they are not the primary (their /primary is
    // not 200), each followed at once by `health down`, so that `ready` never routes writes to one
    // of them, even until its next check; then no server may be left in an admin state.
    for (const n of pgNames(inv)) {
      if (n !== cand && (await primary200(inv, n))) {
        throw failed(`${n} still answers /primary 200 after the hand-off to ${cand}; check pgha status`);
      }
    }
    const sessions = await openSessions(inv);
    try {
      for (const n of pgNames(inv)) {
        if (n === cand) continue;
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${n} state ready`);
        await all(sessions, `set server ${HAPROXY_WRITE_BACKEND}/${n} health down`);
      }
      for (const x of sessions.sessions) {
        for (const backend of [HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND]) {
          const forced = adminForced(await x.command(`show servers state ${backend}`));
          if (forced.length)
            throw failed(`haproxy ${x.node}: ${forced.join(', ')} left in an admin state after the hand-off`);
        }
      }
    } finally {
      sessions.close();
    }
    const haproxy = await deps.haproxyFor(inv);
    const replicasUp = new Set(
      (await deps.postgres.pgReplication(conn(inv, candIp)))
        .filter((r) => r.state === 'streaming')
        .map((r) => r.applicationName),
    );
    const out: VerifyResult['haproxy'] = [];
    for (const h of inv.nodes.haproxy) {
      const node: HaproxyNode = { name: h.hostname, vmid: h.vmid, socket: HAPROXY_ADMIN_SOCKET };
      const rows = await pollUntil(
        {
          what: `haproxy ${h.hostname}: writes to ${cand} only, every server under its checks`,
          timeoutMs: 30_000,
          intervalMs: 500,
        },
        async () => {
          const r = await haproxy.haproxyShowStat({ node });
          const write = r.filter((x) => x.backend === HAPROXY_WRITE_BACKEND);
          const read = r.filter((x) => x.backend === HAPROXY_READ_BACKEND);
          const up = (x: HaproxyStatRow) => x.state === 'UP' && !/\d+\/\d+/.test(x.status);
          const adminForced = r.filter((x) => x.state === 'MAINT' || x.state === 'DRAIN');
          const writeOk = write.every((x) => (x.server === cand ? up(x) : x.state === 'DOWN'));
          const readOk = read.every((x) =>
            x.server === cand ? x.state === 'DOWN' : replicasUp.has(x.server) ? up(x) : true,
          );
          return {
            done: writeOk && readOk && adminForced.length === 0,
            value: r,
            describe: [...write, ...read]
              .map((x) => `${x.backend}/${x.server} ${x.status} (${x.checkStatus || 'no check'})`)
              .join(', '),
          };
        },
      ).catch((err: Error) => {
        throw failed(`${cand} leads, but HAProxy ${h.hostname} does not route as it should: ${err.message}`);
      });
      let landed: string | null = null;
      try {
        const w = await deps.postgres.pgWriteProbe({
          conn: conn(inv, h.ip, inv.ports.haproxyWrite),
          note: `${plan.action} to ${cand} via ${h.hostname}`,
        });
        landed = w.serverAddr;
      } catch (err) {
        throw failed(
          `${cand} leads, but a write through HAProxy ${h.hostname} failed: ${(err as Error).message}`,
        );
      }
      if (landed !== candIp)
        throw failed(`a write through HAProxy ${h.hostname} landed on ${landed}, not on ${cand} (${candIp})`);
      out.push({
        node: h.hostname,
        writeServerUp: rows
          .filter((x) => x.backend === HAPROXY_WRITE_BACKEND && x.state === 'UP')
          .map((x) => x.server),
        writeLandedOn: cand,
      });
    }
    const got = await getCluster(inv);
    let members: PatroniMemberView[] = [];
    if (got) members = clusterMembers(got.cluster);
    return {
      leader: cand,
      timeline: now.timeline,
      oldLeader: oldLeader ?? (old ? { name: old, state: 'unreachable' } : undefined),
      haproxy: out,
      members: members.map((m) => ({
        name: m.name,
        role: m.role,
        state: m.state,
        timeline: m.timeline,
        lagBytes: m.lagBytes,
      })),
    };
  }

  return { switchoverPrecheck, switchoverCutover, switchoverVerify };
}

export type SwitchoverActivities = ReturnType<typeof createSwitchoverActivities>;
