/**
 * PostgreSQL, asked directly over SQL (what the seed does with psql): is this member in recovery,
 * which timeline, who replicates from it and how far behind, and write/read probes that prove a
 * row written through HAProxy lands on the leader and reaches the replicas.
 *
 * One short-lived connection per call (a status check must not hold a pool on a member that may be
 * failing over), a short connect timeout, a server-side statement_timeout and a client-side query
 * timeout. The password comes from a secret reference resolved here; errors name host, port, user
 * and the reference, never the value.
 */
import type { PgSettingInfo } from '../runbooks/patroni-config';
import { Client, type ClientConfig } from 'pg';
import { pollUntil } from './poll';
import { resolveSecretRef } from './secrets';
import type { PgConn } from '../runbooks/topology';

export interface PostgresDeps {
  /** Default 3000 ms. */
  connectTimeoutMs?: number;
  /** Server-side statement_timeout and client-side query timeout. Default 5000 ms. */
  statementTimeoutMs?: number;
  /** How a client is made (tests may wrap it). */
  newClient?: (cfg: ClientConfig) => Client;
}

// A member's SQL connection is defined once, in runbooks/topology.ts (sqlConn, sqlConnTo);
// re-exported here for the modules that imported it from this one.
export type { PgConn };

export interface PgIdentity {
  /** inet_server_addr(): the address the server answered on (which member, even through HAProxy). */
  serverAddr: string | null;
  serverPort: number | null;
  /** current_setting('cluster_name'): Patroni sets it to the member name... when configured. */
  clusterName: string;
  inRecovery: boolean;
  /** Timeline of the WAL the server writes (primary) or receives (standby); see pgTimeline. */
  timeline: number | null;
  systemIdentifier: string;
  /** server_version_num, e.g. 180006 */
  serverVersionNum: number;
  /** SHOW data_checksums (the seed initialises with --data-checksums). */
  dataChecksums: boolean;
}

export interface PgReplicationRow {
  applicationName: string;
  clientAddr: string | null;
  state: string;
  syncState: string;
  sentLsn: string | null;
  replayLsn: string | null;
  /** pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), null when the standby reported no replay position. */
  replayLagBytes: number | null;
  /** When this walsender started (ISO): a standby restarted after it is not this connection. */
  backendStart?: string | null;
}

export interface PgProbeWrite {
  id: string;
  serverAddr: string | null;
  clusterName: string;
}

export interface PgProbeRead {
  found: boolean;
  note?: string;
  at?: string;
  serverAddr: string | null;
  clusterName: string;
  inRecovery: boolean;
}

/** One row of pg_settings (see pgSettings); the shape runbooks/patroni-config.ts checks values against. */
export type PgSettingRow = PgSettingInfo;

export class PostgresUnreachableError extends Error {
  override readonly name = 'PostgresUnreachableError';
  constructor(
    message: string,
    /** The connect error's code: ECONNREFUSED (nothing listens), ETIMEDOUT, a SQLSTATE (57P03: starting up). */
    readonly code?: string,
  ) {
    super(message);
  }
}
export class PostgresAuthError extends Error {
  override readonly name = 'PostgresAuthError';
}
export class PostgresReadOnlyError extends Error {
  override readonly name = 'PostgresReadOnlyError';
}

function where(c: PgConn): string {
  return `${c.user}@${c.host}:${c.port ?? 5432}/${c.database ?? 'postgres'}`;
}

const PROBE_TABLE = `create table if not exists pgha_probe (
  id bigserial primary key, note text, at timestamptz default now())`;

// The timeline of the WAL being written (primary: from the current WAL file name) or received
// (standby: pg_stat_wal_receiver), falling back to the last checkpoint's timeline. The checkpoint's
// alone lags right after a promotion, until the end-of-recovery checkpoint is written.
// pg_is_in_recovery() is read once (r.rec) and returned with the timeline it chose: read twice in
// one query it could change between the two during a promotion ("writable" with the old timeline).
const TIMELINE_SQL = `select case when r.rec
    then coalesce((select received_tli from pg_stat_wal_receiver), (pg_control_checkpoint()).timeline_id)
    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline,
  (pg_control_checkpoint()).timeline_id as checkpoint_timeline, r.rec as in_recovery
  from (select pg_is_in_recovery() as rec offset 0) r`;

export function createPostgresActivities(deps: PostgresDeps = {}) {
  const newClient = deps.newClient ?? ((cfg: ClientConfig) => new Client(cfg));

  async function withClient<T>(conn: PgConn, fn: (c: Client) => Promise<T>): Promise<T> {
    if (
      !conn ||
      typeof conn.host !== 'string' ||
      conn.host === '' ||
      typeof conn.user !== 'string' ||
      conn.user === ''
    ) {
      throw new TypeError('postgres connection: expected { host, port?, database?, user, passwordRef }');
    }
    const password = await resolveSecretRef(conn.passwordRef);
    const stmt = conn.statementTimeoutMs ?? deps.statementTimeoutMs ?? 5000;
    const client = newClient({
      host: conn.host,
      port: conn.port ?? 5432,
      database: conn.database ?? 'postgres',
      user: conn.user,
      password,
      connectionTimeoutMillis: conn.connectTimeoutMs ?? deps.connectTimeoutMs ?? 3000,
      statement_timeout: stmt,
      query_timeout: stmt + 1000,
      idle_in_transaction_session_timeout: stmt,
      application_name: 'pgha',
    });
    // A connection error after connect (e.g. the server going away) must not crash the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      const e = err as { code?: string; message?: string };
      if (e.code === '28P01' || e.code === '28000') {
        throw new PostgresAuthError(
          `PostgreSQL ${where(conn)} rejected the login (${e.code}: ${e.message}); check the password behind ${conn.passwordRef} and pg_hba.conf`,
        );
      }
      throw new PostgresUnreachableError(
        `PostgreSQL ${where(conn)} did not accept a connection: ${e.code ?? ''} ${e.message ?? String(err)}`.trim(),
        e.code,
      );
    }
    try {
      return await fn(client);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === '25006') {
        throw new PostgresReadOnlyError(
          `PostgreSQL ${where(conn)} is read-only (a replica or in recovery): ${e.message}`,
        );
      }
      if (err instanceof Error) err.message = `PostgreSQL ${where(conn)}: ${err.message}`;
      throw err;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async function identity(c: Client): Promise<PgIdentity> {
    const r = await c.query<{
      addr: string | null;
      port: number | null;
      cluster_name: string;
      in_recovery: boolean;
      timeline: number | null;
      sysid: string;
      ver: number;
      checksums: string;
    }>(
      `select host(inet_server_addr()) as addr, inet_server_port() as port,
              current_setting('cluster_name') as cluster_name, t.in_recovery,
              t.timeline, (pg_control_system()).system_identifier::text as sysid,
              current_setting('server_version_num')::int as ver,
              current_setting('data_checksums') as checksums
         from (${TIMELINE_SQL}) t`,
    );
    const row = r.rows[0]!;
    return {
      serverAddr: row.addr,
      serverPort: row.port,
      clusterName: row.cluster_name,
      inRecovery: row.in_recovery,
      timeline: row.timeline,
      systemIdentifier: row.sysid,
      serverVersionNum: row.ver,
      dataChecksums: row.checksums === 'on',
    };
  }

  async function pgIsInRecovery(conn: PgConn): Promise<boolean> {
    return withClient(
      conn,
      async (c) => (await c.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]!.r,
    );
  }

  async function pgTimeline(conn: PgConn): Promise<{ timeline: number | null; checkpointTimeline: number }> {
    return withClient(conn, async (c) => {
      const row = (await c.query<{ timeline: number | null; checkpoint_timeline: number }>(TIMELINE_SQL))
        .rows[0]!;
      return { timeline: row.timeline, checkpointTimeline: row.checkpoint_timeline };
    });
  }

  async function pgIdentity(conn: PgConn): Promise<PgIdentity> {
    return withClient(conn, identity);
  }

  /** pg_stat_replication on this server (the leader): one row per walsender. */
  async function pgReplication(conn: PgConn): Promise<PgReplicationRow[]> {
    return withClient(conn, async (c) => {
      const r = await c.query<{
        application_name: string;
        client_addr: string | null;
        state: string;
        sync_state: string;
        sent_lsn: string | null;
        replay_lsn: string | null;
        lag: string | null;
        backend_start: Date | null;
      }>(
        `select application_name, host(client_addr) as client_addr, state, sync_state,
                sent_lsn::text, replay_lsn::text, backend_start,
                case when pg_is_in_recovery() or replay_lsn is null then null
                     else pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text end as lag
           from pg_stat_replication order by application_name`,
      );
      return r.rows.map((x) => ({
        applicationName: x.application_name,
        clientAddr: x.client_addr,
        state: x.state,
        syncState: x.sync_state,
        sentLsn: x.sent_lsn,
        replayLsn: x.replay_lsn,
        replayLagBytes: x.lag === null ? null : Number(x.lag),
        backendStart: x.backend_start ? new Date(x.backend_start).toISOString() : null,
      }));
    });
  }

  /**
   * Writes one row into pgha_probe (created if missing) and says which server took it. On a
   * read-only server throws PostgresReadOnlyError: a write that reached a replica.
   */
  async function pgWriteProbe(args: { conn: PgConn; note?: string }): Promise<PgProbeWrite> {
    return withClient(args.conn, async (c) => {
      try {
        await c.query(PROBE_TABLE);
      } catch (err) {
        // Two probes creating the table at once: one loses with a duplicate; the table is there.
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '42P07') throw err;
      }
      const r = await c.query<{ id: string; addr: string | null; cluster_name: string }>(
        `insert into pgha_probe (note) values ($1)
         returning id::text, host(inet_server_addr()) as addr, current_setting('cluster_name') as cluster_name`,
        [args.note ?? 'pgha probe'],
      );
      const row = r.rows[0]!;
      return { id: row.id, serverAddr: row.addr, clusterName: row.cluster_name };
    });
  }

  /** Reads the probe row `id` back; `found: false` when it is not (yet) there, e.g. on a lagging replica. */
  async function pgReadProbe(args: { conn: PgConn; id: string }): Promise<PgProbeRead> {
    if (!/^\d+$/.test(String(args.id)))
      throw new TypeError(`probe id ${JSON.stringify(args.id)}: expected digits`);
    return withClient(args.conn, async (c) => {
      const who = await c.query<{ addr: string | null; cluster_name: string; in_recovery: boolean }>(
        `select host(inet_server_addr()) as addr, current_setting('cluster_name') as cluster_name,
                pg_is_in_recovery() as in_recovery`,
      );
      const w = who.rows[0]!;
      const base = { serverAddr: w.addr, clusterName: w.cluster_name, inRecovery: w.in_recovery };
      const exists = await c.query<{ t: string | null }>(
        `select to_regclass('public.pgha_probe')::text as t`,
      );
      if (exists.rows[0]!.t === null) return { found: false, ...base };
      const r = await c.query<{ note: string; at: string }>(
        `select note, at::text from pgha_probe where id = $1`,
        [String(args.id)],
      );
      const row = r.rows[0];
      return row ? { found: true, note: row.note, at: row.at, ...base } : { found: false, ...base };
    });
  }

  /**
   * Bounded poll until pg_is_in_recovery() equals `inRecovery` (e.g. false: the promoted candidate
   * accepts writes). Connection failures count as "not yet". Heartbeats each check.
   */
  async function pgWaitRecovery(args: {
    conn: PgConn;
    inRecovery: boolean;
    waitTimeoutMs: number;
    intervalMs?: number;
  }): Promise<PgIdentity> {
    return pollUntil(
      {
        what: `${where(args.conn)} ${args.inRecovery ? 'in recovery' : 'out of recovery (writable)'}`,
        timeoutMs: args.waitTimeoutMs,
        intervalMs: args.intervalMs ?? 200,
      },
      async () => {
        try {
          const id = await pgIdentity(args.conn);
          return {
            done: id.inRecovery === args.inRecovery,
            value: id,
            describe: `in recovery: ${id.inRecovery}`,
          };
        } catch (err) {
          if (err instanceof PostgresAuthError) throw err;
          return { done: false, value: null as unknown as PgIdentity, describe: (err as Error).message };
        }
      },
    );
  }

  /**
   * pg_settings rows for `names` (as this server runs now): setting, unit, type, context (postmaster
   * = needs a restart), allowed values, range and pending_restart. A name PostgreSQL does not know
   * is simply absent from the answer.
   */
  async function pgSettings(args: { conn: PgConn; names: string[] }): Promise<PgSettingRow[]> {
    return withClient(args.conn, async (c) => {
      const r = await c.query<PgSettingRow>(
        `select name, setting, unit, vartype, context, enumvals, min_val, max_val, pending_restart
           from pg_settings where name = any($1::text[]) order by name`,
        [args.names],
      );
      return r.rows;
    });
  }

  /**
   * pg_hba_file_rules: what pg_hba.conf says now (what the next reload loads), one row per line,
   * with the parse error of a bad line. The view is superuser-only by default.
   */
  async function pgHbaRules(conn: PgConn): Promise<PgHbaRule[]> {
    return withClient(conn, async (c) => {
      const r = await c.query<{
        line_number: number;
        type: string | null;
        database: string[] | null;
        user_name: string[] | null;
        address: string | null;
        netmask: string | null;
        auth_method: string | null;
        error: string | null;
      }>(
        `select line_number, type, database, user_name, address, netmask, auth_method, error
           from pg_hba_file_rules order by line_number`,
      );
      return r.rows.map((x) => ({
        lineNumber: x.line_number,
        type: x.type ?? '',
        database: x.database ?? [],
        userName: x.user_name ?? [],
        address: x.address,
        netmask: x.netmask,
        authMethod: x.auth_method ?? '',
        error: x.error,
      }));
    });
  }

  /**
   * The oldest open transaction of a client backend (not this session), for the upgrade's
   * pre-check: a long transaction would hold a switchover's shutdown checkpoint.
   */
  async function pgOldestXact(conn: PgConn): Promise<PgOldestXact | null> {
    return withClient(conn, async (c) => {
      const r = await c.query<{ pid: number; age_ms: string; application_name: string; state: string }>(
        `select pid, (extract(epoch from clock_timestamp() - xact_start) * 1000)::bigint as age_ms,
                application_name, state
           from pg_stat_activity
          where xact_start is not null and pid <> pg_backend_pid() and backend_type = 'client backend'
          order by xact_start limit 1`,
      );
      const row = r.rows[0];
      if (!row) return null;
      return {
        pid: row.pid,
        ageMs: Number(row.age_ms),
        applicationName: row.application_name,
        state: row.state,
      };
    });
  }

  /** CHECKPOINT (a restartpoint on a replica): the shutdown of a restart that follows is short. */
  async function pgCheckpoint(conn: PgConn): Promise<void> {
    await withClient({ ...conn, statementTimeoutMs: conn.statementTimeoutMs ?? 120_000 }, (c) =>
      c.query('checkpoint'),
    );
  }

  /**
   * Whether a server listens at `conn`: 'accepting' (a session opened), 'answering' (a postmaster
   * answered but refused the session: starting up, shutting down, a login rule), 'refused' (the TCP
   * connect was refused: no postmaster), 'unreachable' (no answer in time).
   */
  async function pgListening(conn: PgConn): Promise<'accepting' | 'answering' | 'refused' | 'unreachable'> {
    try {
      await withClient(conn, async () => undefined);
      return 'accepting';
    } catch (err) {
      if (err instanceof PostgresAuthError) return 'answering';
      if (!(err instanceof PostgresUnreachableError)) throw err;
      if (err.code === 'ECONNREFUSED') return 'refused';
      return /^[0-9A-Z]{5}$/.test(err.code ?? '') ? 'answering' : 'unreachable';
    }
  }

  return {
    pgListening,
    pgIsInRecovery,
    pgTimeline,
    pgIdentity,
    pgReplication,
    pgWriteProbe,
    pgReadProbe,
    pgWaitRecovery,
    pgSettings,
    pgHbaRules,
    pgOldestXact,
    pgCheckpoint,
  };
}

export type PostgresActivities = ReturnType<typeof createPostgresActivities>;

/** One line of pg_hba.conf as pg_hba_file_rules shows it. */
export interface PgHbaRule {
  lineNumber: number;
  type: string;
  database: string[];
  userName: string[];
  address: string | null;
  netmask: string | null;
  authMethod: string;
  error: string | null;
}

/** The oldest open transaction on a server (pgOldestXact). */
export interface PgOldestXact {
  pid: number;
  ageMs: number;
  applicationName: string;
  state: string;
}

/** A kept connection answering pg_is_in_recovery(), for a loop that asks every few ms. */
export interface RecoveryProbe {
  /** true/false: in recovery; null: no answer (down, shutting down, refused). */
  inRecovery(): Promise<boolean | null>;
  close(): void;
}

/**
 * A kept SQL connection that answers pg_is_in_recovery() or fails fast (1 s connect and query
 * timeouts), reconnecting on the next call after an error: the switchover's hand-off asks it every
 * 10 ms and a new SCRAM connection costs 25–110 ms here. Not an activity (it holds a connection
 * across calls); the password is resolved from the reference here, at the last moment.
 */
export function openRecoveryProbe(c: PgConn, opts: { applicationName?: string } = {}): RecoveryProbe {
  let client: Client | undefined;
  let connecting: Promise<Client> | undefined;
  let closed = false;
  const open = () => {
    connecting ??= (async () => {
      const cl = new Client({
        host: c.host,
        port: c.port ?? 5432,
        user: c.user,
        password: await resolveSecretRef(c.passwordRef),
        database: c.database ?? 'postgres',
        connectionTimeoutMillis: 1000,
        query_timeout: 1000,
        application_name: opts.applicationName ?? 'pgha',
      });
      cl.on('error', () => undefined);
      try {
        await cl.connect();
      } catch (err) {
        connecting = undefined;
        await cl.end().catch(() => undefined);
        throw err;
      }
      if (closed) {
        void cl.end().catch(() => undefined);
        throw new Error('recovery probe closed');
      }
      client = cl;
      return cl;
    })();
    return connecting;
  };
  return {
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
      closed = true;
      void client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
