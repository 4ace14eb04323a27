/**
 * Patroni's REST API (port 8008): what the seed does with curl, as activities. Named after the
 * endpoints, like Patroni's own api.py handlers (GET /cluster → patroniGetCluster).
 *
 * - An HTTP answer is an ANSWER, whatever its status: GET /primary on a replica is `{ status: 503 }`,
 *   which is exactly what a health check wants to know. Only "nobody answered" (refused, timed out,
 *   reset) is a failure: PatroniUnreachableError, naming the member and the URL.
 * - One undici Agent with connect/headers/body timeouts; every call also has its own deadline.
 * - The unsafe endpoints (POST /switchover /failover /restart /reload /reinitialize, PATCH /config)
 *   send Basic auth from a secret reference, resolved here and never returned or logged. A 401 is
 *   PatroniAuthRejectedError (naming the reference, not the value).
 *
 * Version differences handled by the pure helpers below: GET /patroni reports the leader's role as
 * `master` before Patroni 4 and `primary` since; GET /cluster reports replicas as `running` in
 * Patroni 3.0.x and `streaming`/`in archive recovery` later, and `lag` may be the string `unknown`.
 * The leader's GET /patroni `replication[]` (from pg_stat_replication) is the same in every version.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { cancellationSignal, pollUntil } from './poll';
import { resolveSecretRef } from './secrets';
import type { PatroniAuth, PatroniTarget } from '../runbooks/topology';

export interface PatroniDeps {
  /** Shared dispatcher. Default: an Agent with 2 s connect, 5 s headers/body timeouts. */
  agent?: Dispatcher;
  /** Deadline of a GET. Default 5000 ms. */
  timeoutMs?: number;
  /** Deadline of a POST/PATCH (a switchover answers when it is done). Default 60000 ms. */
  writeTimeoutMs?: number;
}

// Where a member's REST API is and its credentials are defined once, in runbooks/topology.ts
// (restApi, restApiAuth); re-exported here for the modules that imported them from this one.
export type { PatroniAuth, PatroniTarget };

export interface PatroniAnswer<T = unknown> {
  member: string;
  url: string;
  status: number;
  /** Parsed JSON body, or null when the body is not JSON. */
  body: T | null;
  /** The raw body when it is not JSON (Patroni's POST answers are often plain text). */
  text?: string;
}

/** GET /patroni (and the health-check endpoints, which answer the same document). */
export interface PatroniNodeStatus {
  state?: string;
  role?: string;
  server_version?: number;
  timeline?: number;
  postmaster_start_time?: string;
  xlog?: { location?: number; received_location?: number; replayed_location?: number; paused?: boolean };
  replication?: PatroniReplicationRow[];
  pending_restart?: boolean;
  pause?: boolean;
  cluster_unlocked?: boolean;
  dcs_last_seen?: number;
  tags?: Record<string, unknown>;
  database_system_identifier?: string;
  patroni?: { version?: string; scope?: string; name?: string };
  [k: string]: unknown;
}

export interface PatroniReplicationRow {
  usename?: string;
  application_name: string;
  client_addr?: string;
  state: string;
  sync_state?: string;
  sync_priority?: number;
}

/** GET /cluster */
export interface PatroniClusterJson {
  members: {
    name: string;
    role: string;
    state: string;
    api_url?: string;
    host?: string;
    port?: number;
    timeline?: number;
    lag?: number | string;
    tags?: Record<string, unknown>;
    pending_restart?: boolean;
    [k: string]: unknown;
  }[];
  scope?: string;
  pause?: boolean;
  scheduled_switchover?: { at: string; from: string; to?: string };
  [k: string]: unknown;
}

/** GET /history: [timeline, lsn, reason, timestamp, new leader?] */
export type PatroniHistory = [number, number, string, string?, string?][];

export class PatroniUnreachableError extends Error {
  override readonly name = 'PatroniUnreachableError';
  constructor(
    readonly member: string,
    readonly url: string,
    readonly reason: 'refused' | 'timeout' | 'reset' | 'dns' | 'other',
    detail: string,
  ) {
    super(`Patroni REST API of ${member} at ${url} did not answer: ${reason} (${detail})`);
  }
}

export class PatroniAuthRejectedError extends Error {
  override readonly name = 'PatroniAuthRejectedError';
}

const BASE_URL_RE = /^https?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}$/;

function checkTarget(t: PatroniTarget): PatroniTarget {
  if (!t || typeof t.member !== 'string' || t.member === '') {
    throw new TypeError('patroni target: expected { member: "pg102", url: "http://10.213.50.21:8008" }');
  }
  if (typeof t.url !== 'string' || !BASE_URL_RE.test(t.url)) {
    throw new TypeError(
      `patroni target ${t.member}: url ${JSON.stringify(t.url)} must be the REST API base, e.g. http://10.213.50.21:8008`,
    );
  }
  return t;
}

function classify(err: unknown): { reason: PatroniUnreachableError['reason']; detail: string } {
  const e = err as {
    code?: string;
    name?: string;
    message?: string;
    cause?: { code?: string; message?: string };
  };
  const code = e?.code ?? e?.cause?.code ?? '';
  const text = e?.message ?? String(err);
  const detail = (code && !text.includes(code) ? `${code}: ${text}` : text).slice(0, 200);
  if (code === 'ECONNREFUSED') return { reason: 'refused', detail };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { reason: 'dns', detail };
  if (
    /TIMEOUT/i.test(code) ||
    code === 'ETIMEDOUT' ||
    e?.name === 'TimeoutError' ||
    e?.name === 'AbortError' ||
    code === 'UND_ERR_ABORTED'
  ) {
    return { reason: 'timeout', detail };
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE')
    return { reason: 'reset', detail };
  return { reason: 'other', detail };
}

export function createPatroniActivities(deps: PatroniDeps = {}) {
  const agent =
    deps.agent ??
    new Agent({
      connect: { timeout: 2000 },
      headersTimeout: 5000,
      bodyTimeout: 5000,
      keepAliveTimeout: 4000,
    });
  const getTimeout = deps.timeoutMs ?? 5000;
  const writeTimeout = deps.writeTimeoutMs ?? 60_000;

  async function call<T>(
    target: PatroniTarget,
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    opts: { body?: unknown; auth?: PatroniAuth; timeoutMs?: number } = {},
  ): Promise<PatroniAnswer<T>> {
    checkTarget(target);
    const url = `${target.url}${path}`;
    const timeoutMs = opts.timeoutMs ?? (method === 'GET' ? getTimeout : writeTimeout);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.auth) {
      const password = await resolveSecretRef(opts.auth.passwordRef);
      headers.authorization = `Basic ${Buffer.from(`${opts.auth.username}:${password}`).toString('base64')}`;
    }
    let payload: string | undefined;
    if (opts.body !== undefined) {
      payload = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const signals = [AbortSignal.timeout(timeoutMs)];
    const cancel = cancellationSignal();
    if (cancel) signals.push(cancel);
    let status = 0;
    let text = '';
    const signal = AbortSignal.any(signals);
    // A GET that meets a reset is tried once more: a kept-alive socket the member closed meanwhile
    // (a restart, an idle timeout) says nothing about the member. Writes are never repeated.
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await request(url, {
          method,
          headers,
          body: payload,
          dispatcher: agent,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          signal,
        });
        status = res.statusCode;
        text = await res.body.text();
        break;
      } catch (err) {
        if (cancel?.aborted) throw err;
        const { reason, detail } = classify(err);
        if (reason === 'reset' && method === 'GET' && attempt === 1 && !signal.aborted) continue;
        throw new PatroniUnreachableError(target.member, url, reason, detail);
      }
    }
    if (status === 401 && opts.auth) {
      throw new PatroniAuthRejectedError(
        `Patroni REST API of ${target.member} at ${url} rejected user ${opts.auth.username} with the password from ${opts.auth.passwordRef} (401): check restapi.authentication in patroni.yml and that reference`,
      );
    }
    let body: T | null = null;
    try {
      body = text === '' ? null : (JSON.parse(text) as T);
    } catch {
      body = null;
    }
    const answer: PatroniAnswer<T> = { member: target.member, url, status, body };
    if (body === null && text !== '') answer.text = text.slice(0, 2000);
    return answer;
  }

  type Get = { target: PatroniTarget; timeoutMs?: number };
  type Write = { target: PatroniTarget; auth?: PatroniAuth; timeoutMs?: number };

  function query(params: Record<string, string | number | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  return {
    /** GET /patroni: this member's own view (role, state, timeline, xlog, replication[] on the leader). */
    patroniGetPatroni: (a: Get) => call<PatroniNodeStatus>(a.target, 'GET', '/patroni', a),
    /** GET /cluster: the topology as this member sees it in the DCS. */
    patroniGetCluster: (a: Get) => call<PatroniClusterJson>(a.target, 'GET', '/cluster', a),
    /** GET /history: timeline switches. */
    patroniGetHistory: (a: Get) => call<PatroniHistory>(a.target, 'GET', '/history', a),
    /** GET /health: 200 when PostgreSQL is up and running. */
    patroniGetHealth: (a: Get) => call<PatroniNodeStatus>(a.target, 'GET', '/health', a),
    /** GET /primary: 200 only on the running primary holding the leader lock. */
    patroniGetPrimary: (a: Get) => call<PatroniNodeStatus>(a.target, 'GET', '/primary', a),
    /** GET /replica[?lag=..&replication_state=..]: 200 on a running replica (within lag, in that state). */
    patroniGetReplica: (a: Get & { lag?: number | string; replicationState?: string }) =>
      call<PatroniNodeStatus>(
        a.target,
        'GET',
        `/replica${query({ lag: a.lag, replication_state: a.replicationState })}`,
        a,
      ),
    /** GET /config: the dynamic (DCS) configuration. */
    patroniGetConfig: (a: Get) => call<Record<string, unknown>>(a.target, 'GET', '/config', a),

    /** POST /switchover: 200 done, 202 scheduled, 412/503 refused (see the text). */
    patroniSwitchover: (a: Write & { leader: string; candidate?: string; scheduledAt?: string }) =>
      call<unknown>(a.target, 'POST', '/switchover', {
        ...a,
        body: { leader: a.leader, candidate: a.candidate, scheduled_at: a.scheduledAt },
      }),
    /** POST /failover: to a named candidate, for when the leader is gone. */
    patroniFailover: (a: Write & { candidate: string; leader?: string }) =>
      call<unknown>(a.target, 'POST', '/failover', {
        ...a,
        body: { candidate: a.candidate, leader: a.leader },
      }),
    /** POST /restart of this member's PostgreSQL, optionally only if a restart is pending / in a role. */
    patroniRestart: (
      a: Write & {
        restartPending?: boolean;
        role?: 'primary' | 'master' | 'replica';
        postgresVersion?: string;
        startTimeoutS?: number;
        schedule?: string;
      },
    ) =>
      call<unknown>(a.target, 'POST', '/restart', {
        ...a,
        body: {
          restart_pending: a.restartPending,
          role: a.role,
          postgres_version: a.postgresVersion,
          timeout: a.startTimeoutS,
          schedule: a.schedule,
        },
      }),
    /** POST /reload: re-read patroni.yml (SIGHUP). */
    patroniReload: (a: Write) => call<unknown>(a.target, 'POST', '/reload', a),
    /** POST /reinitialize: wipe and re-clone this replica. */
    patroniReinitialize: (a: Write & { force?: boolean; fromLeader?: boolean }) =>
      call<unknown>(a.target, 'POST', '/reinitialize', {
        ...a,
        body: { force: a.force, 'from-leader': a.fromLeader },
      }),
    /** PATCH /config: merge into the dynamic configuration (null removes a key); answers the new config. */
    patroniPatchConfig: (a: Write & { patch: Record<string, unknown> }) =>
      call<Record<string, unknown>>(a.target, 'PATCH', '/config', { ...a, body: a.patch }),
    /** DELETE /switchover: drop a scheduled switchover (404 when none is scheduled). */
    patroniDeleteSwitchover: (a: Write) => call<unknown>(a.target, 'DELETE', '/switchover', a),
    /** DELETE /restart: drop a scheduled restart. */
    patroniDeleteRestart: (a: Write) => call<unknown>(a.target, 'DELETE', '/restart', a),

    /**
     * Bounded wait until GET `path` on the member answers `want` (e.g. /primary → 200 on the promoted
     * candidate). Unreachable counts as "not yet". Heartbeats each check.
     */
    patroniWaitStatus: (
      a: Get & {
        path: '/primary' | '/replica' | '/health' | '/leader' | '/read-write' | '/read-only';
        want: number;
        waitTimeoutMs: number;
        intervalMs?: number;
      },
    ) =>
      pollUntil(
        {
          what: `GET ${a.path} on ${a.target.member} answering ${a.want}`,
          timeoutMs: a.waitTimeoutMs,
          intervalMs: a.intervalMs ?? 100,
        },
        async () => {
          try {
            const r = await call<PatroniNodeStatus>(a.target, 'GET', a.path, a);
            return {
              done: r.status === a.want,
              value: r,
              describe: `${r.status} (role ${r.body?.role ?? '?'})`,
            };
          } catch (err) {
            if (!(err instanceof PatroniUnreachableError)) throw err;
            return {
              done: false,
              value: null as unknown as PatroniAnswer<PatroniNodeStatus>,
              describe: err.message,
            };
          }
        },
      ),

    /**
     * Bounded wait until GET /cluster, asked of each target in turn, names `leader` as the leader
     * (e.g. after POST /switchover). Answers the /cluster document that showed it.
     */
    patroniWaitClusterLeader: (a: {
      targets: PatroniTarget[];
      leader: string;
      waitTimeoutMs: number;
      intervalMs?: number;
      timeoutMs?: number;
    }) =>
      pollUntil(
        {
          what: `${a.leader} as the leader in /cluster`,
          timeoutMs: a.waitTimeoutMs,
          intervalMs: a.intervalMs ?? 200,
        },
        async () => {
          const seen: string[] = [];
          for (const t of a.targets) {
            try {
              const r = await call<PatroniClusterJson>(t, 'GET', '/cluster', { timeoutMs: a.timeoutMs });
              const l = r.body ? clusterLeader(r.body) : undefined;
              if (l === a.leader)
                return { done: true, value: r.body as PatroniClusterJson, describe: `${t.member}: ${l}` };
              seen.push(`${t.member} says ${l ?? 'no leader'}`);
            } catch (err) {
              seen.push(`${t.member}: ${(err as Error).message}`);
            }
          }
          return { done: false, value: null as unknown as PatroniClusterJson, describe: seen.join('; ') };
        },
      ),
  };
}

export type PatroniActivities = ReturnType<typeof createPatroniActivities>;

// ---------------------------------------------------------------------------------------------
// Pure helpers: the same answer from every Patroni version.

/** `master` (Patroni < 4) and `primary` are one role; everything else passes through. */
export function normaliseRole(role: string | undefined): string | undefined {
  return role === 'master' ? 'primary' : role;
}

export interface PatroniMemberView {
  name: string;
  /** leader | replica | sync_standby | standby_leader | quorum_standby ... as /cluster says. */
  role: string;
  /** As /cluster reports it (running, streaming, in archive recovery, starting, stopped ...). */
  state: string;
  host?: string;
  port?: number;
  timeline?: number;
  /** Replay lag in bytes behind the leader, null when Patroni says `unknown` or gives none. */
  lagBytes: number | null;
  /**
   * For replicas: streaming from the leader. Taken from the leader's replication[] when known
   * (every version); else from /cluster's state (`streaming`, or `running` on Patroni 3.0.x).
   */
  streaming: boolean | null;
  pendingRestart: boolean;
  noFailover: boolean;
}

const isLeaderRole = (r: string) =>
  r === 'leader' || r === 'standby_leader' || r === 'master' || r === 'primary';

/**
 * Members of GET /cluster, normalised. Pass the leader's GET /patroni `replication[]` when you have
 * it: it decides `streaming` for replicas in a version-independent way.
 */
export function clusterMembers(
  cluster: PatroniClusterJson,
  leaderReplication?: PatroniReplicationRow[],
): PatroniMemberView[] {
  const repl = new Map((leaderReplication ?? []).map((r) => [r.application_name, r.state]));
  return (cluster.members ?? []).map((m) => {
    const leader = isLeaderRole(m.role);
    let streaming: boolean | null = null;
    if (!leader) {
      if (leaderReplication) streaming = repl.get(m.name) === 'streaming';
      else if (m.state === 'streaming') streaming = true;
      else if (m.state === 'running')
        streaming = null; // Patroni 3.0.x: running says nothing about streaming
      else streaming = false;
    }
    const tags = m.tags ?? {};
    return {
      name: m.name,
      role: m.role,
      state: m.state,
      host: m.host,
      port: m.port,
      timeline: m.timeline,
      lagBytes: typeof m.lag === 'number' ? m.lag : leader ? 0 : null,
      streaming,
      pendingRestart: Boolean(m.pending_restart),
      noFailover: tags.nofailover === true || tags.nofailover === 'true',
    };
  });
}

/** The leader of GET /cluster, or undefined. */
export function clusterLeader(cluster: PatroniClusterJson): string | undefined {
  return cluster.members?.find((m) => isLeaderRole(m.role))?.name;
}
