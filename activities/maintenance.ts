/**
 * Maintenance on a running cluster — rolling restart, configuration changes, re-initialising a
 * replica — as the seed's operator does it with patronictl, one member at a time:
 *
 * - maintenancePrecheck: etcd has quorum, Patroni names a leader, every member is running and every
 *   replica streams from the leader within the lag bound, the cluster is not paused. What it saw
 *   (roles, postmaster start times, pending_restart) is the plan the runbook works from.
 * - restartMember: POST /restart to one member, then a bounded wait (heartbeating) until it is back:
 *   a replica streaming with lag within bounds, the leader the running, writable primary again.
 *   Idempotent: it looks at the member's postmaster_start_time first; if it differs from the one
 *   the pre-check saw, the member was already restarted (by an earlier attempt whose worker died, or
 *   by a switchover's demotion) and it only waits for it to be healthy. Never restarts twice.
 * - configApply: the DCS keys and PostgreSQL parameters checked (unknown name, bad value, non-DCS
 *   key → a clear refusal), compared with GET /config, and only what differs PATCHed.
 * - configWaitApplied: a bounded wait (Patroni applies the DCS config once per loop_wait) until every
 *   member runs with the new values, or reports a pending restart for them.
 * - reinitMember: POST /reinitialize to a replica (never the leader), then a bounded wait until it
 *   was re-cloned and streams again. Idempotent like restartMember.
 * - writeMarker / waitRow: a row written on the leader before, found on the member after.
 *
 * A refusal is a non-retryable ApplicationFailure of type MaintenanceRefused that says what was
 * found and what to do.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Inventory } from '../runbooks/schema';
import {
  HOT_STANDBY_PARAMETERS,
  canonicalSetting,
  classifyConfig,
  dcsValueEquals,
  getPath,
  patchBody,
  settingEquals,
} from '../runbooks/patroni-config';
import type { ConfigChange, ConfigValue } from '../runbooks/patroni-config';
import type { EtcdActivities } from './etcd';
import { findNode } from './nodes';
import { clusterLeader, normaliseRole, PatroniUnreachableError } from './patroni';
import type {
  PatroniActivities,
  PatroniAuth,
  PatroniClusterJson,
  PatroniNodeStatus,
  PatroniTarget,
} from './patroni';
import { heartbeat, PollTimeoutError, pollUntil } from './poll';
import type { PgConn, PgReplicationRow, PgSettingRow, PostgresActivities } from './postgres';

export const REFUSED = 'MaintenanceRefused';
export const FAILED = 'MaintenanceFailed';

export interface MaintenanceDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  etcd: EtcdActivities;
}

/** One member as the pre-check saw it. */
export interface MemberSnapshot {
  name: string;
  role: 'leader' | 'replica';
  /** Patroni's state: running, streaming, starting, stopped, ... */
  state: string;
  timeline: number | null;
  /** GET /patroni postmaster_start_time: changes exactly when PostgreSQL restarts. */
  postmasterStartTime: string | null;
  pendingRestart: boolean;
  /** Parameters behind pendingRestart (Patroni ≥ 3.0.4's pending_restart_reason). */
  pendingRestartReason?: string[];
  /** Replicas: replay lag behind the leader in bytes (pg_stat_replication), null if not streaming. */
  lagBytes: number | null;
  streaming: boolean | null;
}

export interface ClusterSnapshot {
  leader: string;
  timeline: number | null;
  members: MemberSnapshot[];
  etcd: { healthy: number; total: number };
  patroniVersion?: string;
  checkedAt: string;
}

export interface RestartResult {
  member: string;
  role: 'leader' | 'replica';
  /** restarted: we POSTed /restart; already-restarted: its postmaster had restarted since the pre-check; skipped: nothing pending. */
  action: 'restarted' | 'already-restarted' | 'skipped';
  reason?: string;
  postmasterBefore: string | null;
  postmasterAfter: string | null;
  lagBytes?: number | null;
  tookMs: number;
}

export interface ConfigApplyResult {
  changed: { key: string; from: unknown; to: ConfigValue; needsRestart: boolean }[];
  unchanged: { key: string; value: unknown }[];
  /**
   * replicas-first, except when a parameter a standby must keep at least as high as its primary
   * (max_connections, max_wal_senders, ...) goes DOWN: then the leader first, or the replicas
   * would restart with the old value (Patroni keeps them at the primary's, from pg_controldata).
   */
  restartOrder: 'replicas-first' | 'leader-first';
  orderReason?: string;
}

export interface ConfigMemberState {
  member: string;
  pendingRestart: boolean;
  pendingRestartReason?: string[];
  /** Parameter → pg_settings.setting on this member now. */
  settings: Record<string, string>;
}

/** Patroni's postmaster_start_time ("2026-11-26 09:40:13.179725+00:00") in whole ms, or null. */
export function pgTime(t: string | null | undefined): number | null {
  if (!t) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

function refuse(message: string): never {
  throw ApplicationFailure.create({ type: REFUSED, nonRetryable: true, message });
}

const fmtLag = (n: number | null | undefined) =>
  n === null || n === undefined
    ? 'unknown'
    : n < 1024 * 1024
      ? `${n} B`
      : `${(n / 1024 / 1024).toFixed(1)} MiB`;

export function createMaintenanceActivities(deps: MaintenanceDeps) {
  const { patroni, postgres, etcd } = deps;

  const api = (inv: Inventory, member: string): PatroniTarget => ({
    member,
    url: `http://${findNode(inv, 'postgres', member).ip}:${inv.ports.patroniRestApi}`,
  });
  const auth = (inv: Inventory): PatroniAuth => ({
    username: inv.patroni.restApiUsername,
    passwordRef: inv.secrets.restApiPassword,
  });
  const sql = (inv: Inventory, member: string): PgConn => ({
    host: findNode(inv, 'postgres', member).ip,
    port: inv.ports.postgresql,
    user: inv.postgresql.superuser,
    passwordRef: inv.secrets.superuserPassword,
  });
  const knownMember = (inv: Inventory, member: string) => {
    if (!inv.nodes.postgres.some((n) => n.hostname === member)) {
      refuse(
        `${member} is not a PostgreSQL member of cluster ${inv.cluster} ` +
          `(its members: ${inv.nodes.postgres.map((n) => n.hostname).join(', ')}); name one of those`,
      );
    }
  };

  async function patroniOf(inv: Inventory, member: string): Promise<PatroniNodeStatus | null> {
    try {
      return (await patroni.patroniGetPatroni({ target: api(inv, member) })).body;
    } catch (err) {
      if (err instanceof PatroniUnreachableError) return null;
      throw err;
    }
  }

  /** GET /cluster from the first member that answers. */
  async function clusterOf(inv: Inventory): Promise<PatroniClusterJson> {
    const errors: string[] = [];
    for (const n of inv.nodes.postgres) {
      try {
        const r = await patroni.patroniGetCluster({ target: api(inv, n.hostname) });
        if (r.status === 200 && r.body) return r.body;
        errors.push(`${n.hostname}: HTTP ${r.status}`);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    throw new Error(`no member answered GET /cluster: ${errors.join('; ')}`);
  }

  /** pg_stat_replication on the leader, or Patroni's replication[] if SQL fails. */
  async function replicationOf(inv: Inventory, leader: string): Promise<PgReplicationRow[] | null> {
    try {
      return await postgres.pgReplication(sql(inv, leader));
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------------------------------

  async function maintenancePrecheck(args: {
    inv: Inventory;
    /** Default inventory patroni.maximumLagOnFailover. */
    maxLagBytes?: number;
    /** Members allowed to be unhealthy (reinit's target, which may be broken: that is why). */
    allowUnhealthy?: string[];
  }): Promise<ClusterSnapshot> {
    const { inv } = args;
    const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
    const tolerate = new Set(args.allowUnhealthy ?? []);
    for (const m of tolerate) knownMember(inv, m);

    const view = await etcd.etcdCluster({
      endpoints: inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`),
    });
    if (!view.quorum) {
      const bad = view.endpoints
        .filter((e) => !e.healthy)
        .map((e) => `${e.endpoint}: ${e.error ?? 'unhealthy'}`);
      refuse(
        `etcd has no quorum: ${view.healthyCount} of ${view.endpoints.length} members healthy (${bad.join('; ')}); ` +
          `nothing was touched — bring etcd back first (pgha status --cluster ...)`,
      );
    }
    heartbeat({ what: 'pre-check', etcd: view.healthyCount });

    const cluster = await clusterOf(inv);
    const leader = clusterLeader(cluster);
    if (!leader) {
      refuse(
        `Patroni names no leader (GET /cluster: ${cluster.members.map((m) => `${m.name} ${m.role}/${m.state}`).join(', ') || 'no members'}); ` +
          `the cluster is failing over or down — see pgha status, or pgha failover`,
      );
    }
    if (!inv.nodes.postgres.some((n) => n.hostname === leader)) {
      refuse(
        `Patroni's leader ${leader} is not in the inventory of ${inv.cluster}: is this the right inventory?`,
      );
    }
    if (cluster.pause) {
      refuse(
        `cluster ${inv.cluster} is paused (Patroni maintenance mode): Patroni would not restart or re-clone anything; ` +
          `resume it first (patronictl resume, or PATCH /config {"pause": false})`,
      );
    }
    const statuses = await Promise.all(inv.nodes.postgres.map((n) => patroniOf(inv, n.hostname)));
    const repl = await replicationOf(inv, leader);
    const leaderStatus = statuses[inv.nodes.postgres.findIndex((x) => x.hostname === leader)];
    const problems: string[] = [];
    const members: MemberSnapshot[] = inv.nodes.postgres.map((n, i) => {
      const st = statuses[i];
      const inCluster = cluster.members.find((m) => m.name === n.hostname);
      const isLeader = n.hostname === leader;
      const row = repl?.find((r) => r.applicationName === n.hostname);
      const lagBytes = isLeader
        ? 0
        : (row?.replayLagBytes ?? (typeof inCluster?.lag === 'number' ? inCluster.lag : null));
      // The leader's pg_stat_replication decides; /cluster's state only when SQL did not answer.
      const streaming = isLeader
        ? null
        : repl
          ? row?.state === 'streaming'
          : inCluster?.state === 'streaming';
      const snap: MemberSnapshot = {
        name: n.hostname,
        role: isLeader ? 'leader' : 'replica',
        state: st?.state ?? inCluster?.state ?? 'unreachable',
        timeline: st?.timeline ?? inCluster?.timeline ?? null,
        postmasterStartTime: st?.postmaster_start_time ?? null,
        pendingRestart: Boolean(st?.pending_restart ?? inCluster?.pending_restart),
        lagBytes,
        streaming,
      };
      const reason = st?.pending_restart_reason;
      if (reason && typeof reason === 'object') snap.pendingRestartReason = Object.keys(reason).sort();
      if (tolerate.has(n.hostname)) return snap;
      if (!st) problems.push(`${n.hostname}: its REST API does not answer`);
      else if (!inCluster) problems.push(`${n.hostname}: not in /cluster (Patroni not registered in etcd)`);
      else if (st.state !== 'running') problems.push(`${n.hostname}: state ${st.state}, expected running`);
      else if (isLeader && normaliseRole(st.role) !== 'primary') {
        problems.push(`${n.hostname}: holds the leader key but runs as ${st.role}`);
      } else if (!isLeader) {
        if (streaming !== true)
          problems.push(`${n.hostname}: not streaming from ${leader} (${row?.state ?? 'no walsender'})`);
        else if (lagBytes === null || lagBytes > maxLag) {
          problems.push(`${n.hostname}: replay lag ${fmtLag(lagBytes)} exceeds ${fmtLag(maxLag)}`);
        }
        const lt = leaderStatus?.timeline;
        if (st.timeline !== undefined && lt !== undefined && lt !== st.timeline) {
          problems.push(`${n.hostname}: on timeline ${st.timeline}, the leader on ${lt}`);
        }
      }
      return snap;
    });
    if (problems.length) {
      refuse(
        `cluster ${inv.cluster} is not healthy enough to start (leader ${leader}): ${problems.join('; ')}. ` +
          `Nothing was touched; fix that first (pgha status shows the details; pgha reinit for a broken replica)`,
      );
    }
    return {
      leader,
      timeline: leaderStatus?.timeline ?? null,
      members,
      etcd: { healthy: view.healthyCount, total: view.endpoints.length },
      patroniVersion: leaderStatus?.patroni?.version,
      checkedAt: new Date().toISOString(),
    };
  }

  /** Bounded wait: `member` restarted (start time differs from `before`), running, in its role and healthy. */
  async function waitBack(args: {
    inv: Inventory;
    member: string;
    role: 'leader' | 'replica';
    leader: string;
    before: string | null;
    maxLagBytes: number;
    timeoutMs: number;
    what: string;
  }): Promise<{ after: string | null; lagBytes: number | null }> {
    const { inv, member } = args;
    const conn = sql(inv, args.leader);
    try {
      return await pollUntil(
        { what: `${member} ${args.what}`, timeoutMs: args.timeoutMs, intervalMs: 1000 },
        async () => {
          const st = await patroniOf(inv, member);
          if (!st)
            return {
              done: false,
              value: { after: null, lagBytes: null },
              describe: 'REST API not answering',
            };
          const after = st.postmaster_start_time ?? null;
          const value = { after, lagBytes: null as number | null };
          if (args.before !== null && after === args.before) {
            return {
              done: false,
              value,
              describe: `not restarted yet (postmaster started ${after}, state ${st.state})`,
            };
          }
          if (st.state !== 'running') return { done: false, value, describe: `state ${st.state}` };
          const role = normaliseRole(st.role);
          if (args.role === 'leader') {
            if (role !== 'primary') return { done: false, value, describe: `role ${st.role}` };
            try {
              const id = await postgres.pgIdentity(sql(inv, member));
              if (id.inRecovery) return { done: false, value, describe: 'running, still in recovery' };
              // Post-check: the replicas (streaming before, says the pre-check) stream from it again.
              const others = inv.nodes.postgres.map((n) => n.hostname).filter((h) => h !== member);
              const rows = await postgres.pgReplication(sql(inv, member));
              const lagging = others.filter((o) => {
                const r = rows.find((x) => x.applicationName === o);
                return !(
                  r?.state === 'streaming' &&
                  r.replayLagBytes !== null &&
                  r.replayLagBytes <= args.maxLagBytes
                );
              });
              return {
                done: lagging.length === 0,
                value,
                describe: lagging.length
                  ? `writable; waiting for ${lagging.join(', ')} to stream again`
                  : 'writable, replicas streaming',
              };
            } catch (err) {
              return { done: false, value, describe: (err as Error).message };
            }
          }
          if (role !== 'replica') return { done: false, value, describe: `role ${st.role}` };
          let rows: PgReplicationRow[];
          try {
            rows = await postgres.pgReplication(conn);
          } catch (err) {
            return { done: false, value, describe: `leader ${args.leader}: ${(err as Error).message}` };
          }
          // The walsender serving THIS postmaster (a row left from before the restart says nothing).
          const since = pgTime(after);
          const row = rows.find(
            (r) =>
              r.applicationName === member &&
              (since === null || !r.backendStart || Date.parse(r.backendStart) >= since),
          );
          value.lagBytes = row?.replayLagBytes ?? null;
          const ok =
            row?.state === 'streaming' && value.lagBytes !== null && value.lagBytes <= args.maxLagBytes;
          return {
            done: ok,
            value,
            describe: row
              ? `running, ${row.state}, lag ${fmtLag(value.lagBytes)}`
              : `running, no walsender on ${args.leader} yet`,
          };
        },
      );
    } catch (err) {
      if (err instanceof PollTimeoutError) {
        throw ApplicationFailure.create({ type: FAILED, nonRetryable: true, message: err.message });
      }
      throw err;
    }
  }

  async function restartMember(args: {
    inv: Inventory;
    member: string;
    role: 'leader' | 'replica';
    /** The leader now (whose pg_stat_replication says whether a replica streams again). */
    leader: string;
    /** postmaster_start_time from the pre-check: a different one now means already restarted. */
    postmasterBefore: string | null;
    /** Restart only if Patroni reports pending_restart. */
    onlyIfPending?: boolean;
    maxLagBytes?: number;
    waitTimeoutMs?: number;
  }): Promise<RestartResult> {
    const { inv, member } = args;
    knownMember(inv, member);
    const started = Date.now();
    const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
    const timeoutMs = args.waitTimeoutMs ?? 300_000;
    const st = await patroniOf(inv, member);
    if (!st) throw new Error(`${member}: Patroni REST API does not answer; not restarting blind`);
    const now = st.postmaster_start_time ?? null;
    const result = (
      action: RestartResult['action'],
      after: string | null,
      lag?: number | null,
      reason?: string,
    ) => ({
      member,
      role: args.role,
      action,
      reason,
      postmasterBefore: args.postmasterBefore,
      postmasterAfter: after,
      lagBytes: lag,
      tookMs: Date.now() - started,
    });

    if (args.postmasterBefore !== null && now !== args.postmasterBefore) {
      // Restarted since the pre-check (an earlier attempt, or a switchover's demotion), or down
      // right now (a restart in progress: no postmaster start time): only wait.
      const back = await waitBack({
        ...args,
        before: args.postmasterBefore,
        maxLagBytes: maxLag,
        timeoutMs,
        what: 'back after its restart',
      });
      return result('already-restarted', back.after, back.lagBytes);
    }
    const role = normaliseRole(st.role);
    const expected = args.role === 'leader' ? 'primary' : 'replica';
    if (role !== expected) {
      refuse(
        `${member} runs as ${st.role}, the plan expected ${args.role}: the cluster changed since the pre-check ` +
          `(a failover?); nothing was restarted — look at pgha status and start again`,
      );
    }
    if (args.onlyIfPending && !st.pending_restart) {
      return result('skipped', now, undefined, 'no pending restart');
    }
    heartbeat({ member, phase: 'POST /restart' });
    let answer: { status: number; text?: string; body: unknown } | undefined;
    try {
      answer = await patroni.patroniRestart({
        target: api(inv, member),
        auth: auth(inv),
        role: args.role === 'replica' ? 'replica' : undefined,
        restartPending: args.onlyIfPending ? true : undefined,
        timeoutMs: Math.min(timeoutMs, 240_000),
      });
    } catch (err) {
      // No answer in time: the restart may be under way; the wait below decides.
      if (!(err instanceof PatroniUnreachableError) || err.reason !== 'timeout') throw err;
    }
    const text = answer ? (answer.text ?? JSON.stringify(answer.body)) : '';
    if (answer && answer.status !== 200 && !/already in progress/.test(text)) {
      if (/restart conditions are not satisfied/.test(text)) {
        // Checked just before: the pending flag or role changed under us.
        const again = await patroniOf(inv, member);
        if (args.onlyIfPending && again && !again.pending_restart)
          return result('skipped', now, undefined, 'no pending restart');
      }
      throw ApplicationFailure.create({
        type: FAILED,
        nonRetryable: true,
        message: `POST /restart on ${member} answered ${answer.status}: ${text}; see its Patroni log (journalctl -u patroni)`,
      });
    }
    const back = await waitBack({
      ...args,
      before: now,
      maxLagBytes: maxLag,
      timeoutMs,
      what:
        args.role === 'leader'
          ? 'the running, writable primary again'
          : 'streaming again within the lag bound',
    });
    return result('restarted', back.after, back.lagBytes);
  }

  // ---- configuration ----

  async function settingsOf(inv: Inventory, member: string, names: string[]): Promise<PgSettingRow[]> {
    return names.length ? postgres.pgSettings({ conn: sql(inv, member), names }) : [];
  }

  async function configApply(args: {
    inv: Inventory;
    set: Record<string, ConfigValue>;
    leader: string;
    /** How the caller will restart: a lowering that needs the leader first is refused for a switchover. */
    restart?: 'switchover' | 'in-place' | 'none';
  }): Promise<ConfigApplyResult> {
    const { inv, leader } = args;
    let changes: ConfigChange[];
    try {
      changes = classifyConfig(args.set);
    } catch (err) {
      refuse((err as Error).message);
    }
    const params = changes.filter((c) => c.kind === 'parameter');
    const infos = new Map(
      (
        await settingsOf(
          inv,
          leader,
          params.map((c) => c.path[2]!),
        )
      ).map((r) => [r.name, r]),
    );
    const errors: string[] = [];
    for (const c of params) {
      const name = c.path[2]!;
      const info = infos.get(name);
      if (!info) {
        errors.push(
          `${c.key}: PostgreSQL on ${leader} knows no parameter ${name} (not in pg_settings); check the spelling, ` +
            `or for a Patroni DCS key use one of ttl, loop_wait, retry_timeout, maximum_lag_on_failover, ...`,
        );
        continue;
      }
      const canon = canonicalSetting(info, c.value);
      if (!canon.ok) errors.push(canon.error);
    }
    if (errors.length) refuse(`nothing was changed: ${errors.join('; ')}`);

    // Lowered below what the leader runs now (not what the DCS says: a retried call sees the same).
    const lowered = params
      .filter((c) => HOT_STANDBY_PARAMETERS.includes(c.path[2]!))
      .filter((c) => {
        const info = infos.get(c.path[2]!)!;
        const want = canonicalSetting(info, c.value);
        return want.ok && Number(want.value) < Number(info.setting);
      })
      .map((c) => `${c.path[2]} ${infos.get(c.path[2]!)!.setting} → ${String(c.value)}`);
    const restartOrder = lowered.length ? 'leader-first' : 'replicas-first';
    const orderReason = lowered.length
      ? `lowering ${lowered.join(', ')}: a standby must keep these at least as high as its primary, so the leader restarts first`
      : undefined;
    if (lowered.length && args.restart === 'switchover') {
      refuse(
        `nothing was changed: ${orderReason}, in place — a switchover would promote a replica still running the higher value. ` +
          `Use --restart in-place (or --restart none and restart later)`,
      );
    }

    const current = (await patroni.patroniGetConfig({ target: api(inv, leader) })).body ?? {};
    const changed: ConfigApplyResult['changed'] = [];
    const unchanged: ConfigApplyResult['unchanged'] = [];
    for (const c of changes) {
      const cur = getPath(current, c.path);
      let same = dcsValueEquals(cur, c.value);
      const info = c.kind === 'parameter' ? infos.get(c.path[2]!) : undefined;
      if (!same && info && cur !== undefined && cur !== null) {
        const a = canonicalSetting(info, cur as ConfigValue);
        const b = canonicalSetting(info, c.value);
        same = a.ok && b.ok && a.value === b.value;
      }
      if (same) unchanged.push({ key: c.key, value: cur });
      else
        changed.push({
          key: c.key,
          from: cur ?? null,
          to: c.value,
          needsRestart: info?.context === 'postmaster',
        });
    }
    if (changed.length) {
      const body = patchBody(changes.filter((c) => changed.some((x) => x.key === c.key)));
      const r = await patroni.patroniPatchConfig({ target: api(inv, leader), auth: auth(inv), patch: body });
      if (r.status !== 200) {
        throw ApplicationFailure.create({
          type: FAILED,
          nonRetryable: true,
          message: `PATCH /config on ${leader} answered ${r.status}: ${r.text ?? JSON.stringify(r.body)}`,
        });
      }
    }
    return { changed, unchanged, restartOrder, orderReason };
  }

  async function configWaitApplied(args: {
    inv: Inventory;
    set: Record<string, ConfigValue>;
    timeoutMs?: number;
    /** After the restarts: every member must run the values (a pending restart is not enough). */
    running?: boolean;
  }): Promise<ConfigMemberState[]> {
    const { inv } = args;
    const changes = classifyConfig(args.set);
    const params = changes.filter((c) => c.kind === 'parameter');
    const dcs = changes.filter((c) => c.kind === 'dcs');
    const names = params.map((c) => c.path[2]!);
    // Patroni applies the DCS document once per loop (loop_wait), plus a reload.
    const timeoutMs = args.timeoutMs ?? Math.max(60_000, inv.patroni.loopWait * 1000 * 4);
    return pollUntil(
      { what: `every member running with ${Object.keys(args.set).join(', ')}`, timeoutMs, intervalMs: 1000 },
      async () => {
        const states: ConfigMemberState[] = [];
        const waiting: string[] = [];
        for (const n of inv.nodes.postgres) {
          const member = n.hostname;
          const st = await patroniOf(inv, member);
          const reasons =
            st?.pending_restart_reason && typeof st.pending_restart_reason === 'object'
              ? (st.pending_restart_reason as Record<string, { old_value?: unknown; new_value?: unknown }>)
              : undefined;
          const reason = reasons ? Object.keys(reasons).sort() : undefined;
          const state: ConfigMemberState = {
            member,
            pendingRestart: Boolean(st?.pending_restart),
            pendingRestartReason: reason,
            settings: {},
          };
          states.push(state);
          if (!st) {
            waiting.push(`${member}: REST API not answering`);
            continue;
          }
          let rows: PgSettingRow[] = [];
          try {
            rows = await settingsOf(inv, member, names);
          } catch (err) {
            waiting.push(`${member}: ${(err as Error).message}`);
            continue;
          }
          for (const c of params) {
            const name = c.path[2]!;
            const row = rows.find((r) => r.name === name);
            if (!row) {
              waiting.push(`${member}: ${name} unknown`);
              continue;
            }
            state.settings[name] = row.setting;
            if (settingEquals(row, c.value)) continue;
            // A postmaster parameter cannot change without a restart: picked up = Patroni flags a
            // pending restart for it (what POST /restart {restart_pending} acts on), for THIS value
            // when Patroni says which (pending_restart_reason, Patroni >= 3.0.4).
            const why = reasons?.[name];
            const want = canonicalSetting(row, c.value);
            const pending =
              !args.running &&
              row.context === 'postmaster' &&
              Boolean(st.pending_restart) &&
              (reasons === undefined ||
                (why !== undefined &&
                  want.ok &&
                  (() => {
                    const got = canonicalSetting(row, String(why.new_value ?? ''));
                    return got.ok && got.value === want.value;
                  })()));
            if (!pending) {
              waiting.push(
                `${member}: ${name} = ${row.setting}${row.unit ?? ''}` +
                  (row.context === 'postmaster'
                    ? ` (restart pending: ${st.pending_restart ? 'yes' : 'not yet'})`
                    : ''),
              );
            }
          }
          if (dcs.length) {
            try {
              const cfg = (await patroni.patroniGetConfig({ target: api(inv, member) })).body ?? {};
              for (const c of dcs) {
                const cur = getPath(cfg, c.path);
                if (!dcsValueEquals(cur, c.value)) waiting.push(`${member}: ${c.key} = ${String(cur)}`);
              }
            } catch (err) {
              waiting.push(`${member}: ${(err as Error).message}`);
            }
          }
        }
        return { done: waiting.length === 0, value: states, describe: waiting.join('; ') || 'all applied' };
      },
    );
  }

  // ---- reinitialize ----

  async function reinitMember(args: {
    inv: Inventory;
    member: string;
    leader: string;
    postmasterBefore: string | null;
    maxLagBytes?: number;
    waitTimeoutMs?: number;
  }): Promise<RestartResult> {
    const { inv, member } = args;
    knownMember(inv, member);
    const started = Date.now();
    const maxLag = args.maxLagBytes ?? inv.patroni.maximumLagOnFailover;
    const timeoutMs = args.waitTimeoutMs ?? 600_000;
    if (member === args.leader) {
      refuse(
        `${member} is the leader: a leader cannot be re-initialised; switch over first (pgha switchover --cluster ... --to <a replica>), then reinit ${member}`,
      );
    }
    const st = await patroniOf(inv, member);
    const now = st?.postmaster_start_time ?? null;
    if (st && normaliseRole(st.role) === 'primary') {
      refuse(`${member} runs as primary now (the cluster changed since the pre-check); nothing was done`);
    }
    const base = { member, role: 'replica' as const, postmasterBefore: args.postmasterBefore };
    const inProgress = st && /creating replica|reinitializ|starting/.test(st.state ?? '');
    // A new postmaster, or none right now (stopped for the re-clone) where the pre-check saw one.
    const restartedSince = st !== null && args.postmasterBefore !== null && now !== args.postmasterBefore;
    let action: RestartResult['action'] = 'restarted';
    if (inProgress || restartedSince) {
      action = 'already-restarted';
    } else {
      heartbeat({ member, phase: 'POST /reinitialize' });
      const r = await patroni.patroniReinitialize({ target: api(inv, member), auth: auth(inv) });
      const text = r.text ?? JSON.stringify(r.body);
      if (r.status !== 200 && !/already in progress/.test(text)) {
        throw ApplicationFailure.create({
          type: /I am the leader|no leader/.test(text) ? REFUSED : FAILED,
          nonRetryable: true,
          message: `POST /reinitialize on ${member} answered ${r.status}: ${text}`,
        });
      }
    }
    const back = await waitBack({
      inv,
      member,
      role: 'replica',
      leader: args.leader,
      before: args.postmasterBefore ?? now,
      maxLagBytes: maxLag,
      timeoutMs,
      what: 're-cloned and streaming within the lag bound',
    });
    return {
      ...base,
      action,
      postmasterAfter: back.after,
      lagBytes: back.lagBytes,
      tookMs: Date.now() - started,
    };
  }

  /** A row written on the leader (pgha_probe), to be found on a member afterwards. */
  async function writeMarker(args: {
    inv: Inventory;
    leader: string;
    note: string;
  }): Promise<{ id: string }> {
    const r = await postgres.pgWriteProbe({ conn: sql(args.inv, args.leader), note: args.note });
    return { id: r.id };
  }

  /** Bounded wait until row `id` of pgha_probe is readable on `member`. */
  async function waitRow(args: { inv: Inventory; member: string; id: string; timeoutMs?: number }) {
    try {
      return await pollUntil(
        { what: `row ${args.id} on ${args.member}`, timeoutMs: args.timeoutMs ?? 60_000, intervalMs: 500 },
        async () => {
          try {
            const r = await postgres.pgReadProbe({ conn: sql(args.inv, args.member), id: args.id });
            return { done: r.found, value: r, describe: r.found ? 'found' : 'not there (yet)' };
          } catch (err) {
            return { done: false, value: null, describe: (err as Error).message };
          }
        },
      );
    } catch (err) {
      if (err instanceof PollTimeoutError) {
        throw ApplicationFailure.create({
          type: FAILED,
          nonRetryable: true,
          message: `row ${args.id}, written on the leader before, is missing on ${args.member}: ${err.message}`,
        });
      }
      throw err;
    }
  }

  return {
    maintenancePrecheck,
    restartMember,
    configApply,
    configWaitApplied,
    reinitMember,
    writeMarker,
    waitRow,
  };
}

export type MaintenanceActivities = ReturnType<typeof createMaintenanceActivities>;
