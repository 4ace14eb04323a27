/**
 * What the benchmarks share: the refusal of an inventory that is not a lab's, bounded waits, the
 * writer through HAProxy, the cluster seen from outside pgha (Patroni's /cluster, SQL on a member),
 * and a Temporal dev server with an in-process worker running the real activities.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { Agent, request } from 'undici';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { clusterLeader } from '../activities/patroni';
import type { PatroniActivities, PatroniClusterJson } from '../activities/patroni';
import { AesGcmCodec, pghaDataConverter } from '../clients/codec';
import { readLabInventory } from '../lab/inventory';
import type { ClusterSecrets, Inventory } from '../runbooks/schema';
import { findNode, restApi } from '../runbooks/topology';
import { PG_SOCKET_DIR } from '../activities/render';
import { inCt } from '../test/helpers/lab-direct';
import { temporalBinary } from '../temporal.config';
import { searchAttributeKeys } from '../workflows/messages';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2);
};

/**
 * Before anything (no secret read, no connection): only a lab inventory (lab/inventory.ts checks
 * the subnet, the Proxmox stand-in and every node's address).
 */
export function requireLabInventory(bench: string, does: string, file: string): void {
  try {
    readLabInventory(file);
  } catch (err) {
    throw new Error(
      `${bench} ${does}, so it only runs against a lab inventory (PGHA_LAB_INVENTORY): ${(err as Error).message}`,
    );
  }
}

/** Polls `fn` every `every` ms until it gives a value; throws after `ms` with the last error seen. */
export async function bounded<T>(
  what: string,
  ms: number,
  fn: () => Promise<T | undefined>,
  every = 200,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    await sleep(every);
  }
}

export interface Attempt {
  id: number;
  start: number;
  end: number;
  ok: boolean;
  server?: string;
  replica?: boolean;
  error?: string;
  /** How long this attempt's new connection took to be established (ms), when it made one. */
  connectMs?: number;
}

export interface WriterOptions {
  conn: { host: string; port: number; user: string; password: string };
  /** The table (id bigint primary key) the rows go to. */
  table: string;
  /** Commits per second. */
  rate: number;
  /** The first id. */
  idBase: number;
  connectTimeoutMs: number;
}

/** The writer: one kept connection through HAProxy, a row per transaction, reconnect at once on error. */
export class Writer {
  attempts: Attempt[] = [];
  private nextId: number;
  private running = false;
  private loop?: Promise<void>;
  private client?: Client;
  constructor(private readonly o: WriterOptions) {
    this.nextId = o.idBase;
  }
  private async connect(): Promise<Client> {
    const c = new Client({
      ...this.o.conn,
      database: 'postgres',
      connectionTimeoutMillis: this.o.connectTimeoutMs,
      query_timeout: 2000,
      application_name: 'pgha-bench-writer',
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }
  start(): void {
    this.running = true;
    const interval = 1000 / this.o.rate;
    this.loop = (async () => {
      let next = Date.now();
      while (this.running) {
        const id = this.nextId++;
        const start = Date.now();
        let connectMs: number | undefined;
        try {
          if (!this.client) {
            const c0 = Date.now();
            try {
              this.client = await this.connect();
            } finally {
              connectMs = Date.now() - c0;
            }
          }
          const r = await this.client.query<{ addr: string }>(
            `insert into ${this.o.table} (id) values ($1) returning host(inet_server_addr()) as addr`,
            [id],
          );
          this.attempts.push({ id, start, end: Date.now(), ok: true, server: r.rows[0]!.addr, connectMs });
        } catch (err) {
          const e = err as { code?: string; message?: string };
          this.attempts.push({
            id,
            start,
            end: Date.now(),
            ok: false,
            replica: e.code === '25006',
            error: `${e.code ?? ''} ${e.message ?? ''}`.trim(),
            connectMs,
          });
          const c = this.client;
          this.client = undefined;
          void c?.end().catch(() => undefined);
          // reconnect at once; while HAProxy is stopped (refused) every 5 ms, not in a busy loop
          if (e.code === 'ECONNREFUSED') await sleep(5);
          next = Date.now();
          continue;
        }
        next += interval;
        const wait = next - Date.now();
        if (wait > 0) await sleep(wait);
        else if (wait < -1000) next = Date.now();
      }
    })();
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
  /** The id the next writer should start from. */
  get nextIdBase(): number {
    return this.nextId;
  }
}

/** The cluster as the benchmarks see it from outside pgha: Patroni's REST API and SQL on a member. */
export function labCluster(inv: Inventory, secrets: ClusterSecrets, patroni: PatroniActivities) {
  const user = inv.postgresql.superuser;
  const password = secrets.superuserPassword;
  const ip = (name: string) => findNode(inv, 'postgres', name).ip;

  const sqlOn = async <T>(addr: string, port: number, fn: (c: Client) => Promise<T>): Promise<T> => {
    const c = new Client({
      host: addr,
      port,
      user,
      password,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
    });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  /** /cluster from the first member that answers. */
  const cluster = async (): Promise<PatroniClusterJson> => {
    for (const n of inv.nodes.postgres) {
      try {
        const r = await patroni.patroniGetCluster({ target: restApi(inv, n.hostname), timeoutMs: 2000 });
        if (r.body) return r.body;
      } catch {
        // next
      }
    }
    throw new Error('no Patroni member answers /cluster');
  };
  /** The leader, once it is writable and every other member streams from it with little lag. */
  const settled = (timeoutMs: number) =>
    bounded(
      'a leader with every replica streaming',
      timeoutMs,
      async () => {
        const l = clusterLeader(await cluster());
        if (!l) return undefined;
        const rows = await sqlOn(
          ip(l),
          inv.ports.postgresql,
          async (c) =>
            (
              await c.query<{ n: string; in_recovery: boolean }>(
                `select (select count(*) from pg_stat_replication where state = 'streaming'
                       and pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 1048576)::text as n,
                    pg_is_in_recovery() as in_recovery`,
              )
            ).rows[0]!,
        );
        return !rows.in_recovery && Number(rows.n) >= inv.nodes.postgres.length - 1 ? l : undefined;
      },
      500,
    );
  /** How many of `ids` are missing from `table` on `member`. */
  const missing = (member: string, table: string, ids: number[]) =>
    sqlOn(ip(member), inv.ports.postgresql, async (c) =>
      Number(
        (
          await c.query<{ n: string }>(
            `select count(*)::text as n from unnest($1::bigint[]) a(id) left join ${table} t using (id) where t.id is null`,
            [ids],
          )
        ).rows[0]!.n,
      ),
    );
  return { user, password, ip, sqlOn, cluster, settled, missing };
}

/** What a bench runs its workload beside: `runUntil(fn)` keeps the worker polling while `fn` runs. */
export interface BenchWorker {
  runUntil<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * A Temporal dev server of the benchmark's own (pgha's search attributes, a random codec key) and a
 * worker with the real activities on its own task queue: in this process, or with
 * `{ workerProcess: true }` in a process of its own (workers/main.ts, as a user runs it), so that
 * the worker's work never holds the event loop that timestamps the bench's writer and reader.
 */
export async function benchTemporal(
  name: string,
  opts: { workerProcess?: boolean } = {},
): Promise<{ env: TestWorkflowEnvironment; worker: BenchWorker; taskQueue: string }> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const key = randomBytes(32);
  const codec = new AesGcmCodec(key);
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary },
      ip: '127.0.0.1',
      searchAttributes: searchAttributeKeys,
      log: { format: 'pretty', level: 'error' },
    },
    client: { dataConverter: pghaDataConverter(codec) },
  });
  const taskQueue = `${name}-${Date.now()}`;
  if (opts.workerProcess) return { env, worker: workerProcess(env.address, taskQueue, key), taskQueue };
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities({ stateDir: mkdtempSync(join(tmpdir(), 'pgha-bench-')) }),
    dataConverter: pghaDataConverter(codec),
  });
  return { env, worker, taskQueue };
}

/** workers/main.ts in a child process on `address`/`taskQueue`, started by runUntil and stopped (SIGTERM) after. */
function workerProcess(address: string, taskQueue: string, key: Buffer): BenchWorker {
  return {
    async runUntil<T>(fn: () => Promise<T>): Promise<T> {
      const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../workers/main.ts')], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: address,
          TEMPORAL_NAMESPACE: 'default',
          PGHA_TASK_QUEUE: taskQueue,
          PGHA_CODEC_KEY: key.toString('base64'),
          PGHA_STATE_DIR: mkdtempSync(join(tmpdir(), 'pgha-bench-')),
          PGHA_METRICS_ADDRESS: 'off',
        },
      });
      let out = '';
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      try {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`the bench's worker did not poll within 300 s: ${out}`)),
            300_000,
          );
          const seen = (d: Buffer) => {
            out = (out + d.toString()).slice(-4000);
            if (out.includes('pgha worker: task queue')) {
              clearTimeout(timer);
              resolve();
            }
          };
          child.stdout.on('data', seen);
          child.stderr.on('data', seen);
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`the bench's worker exited (${code}): ${out}`));
          });
        });
        return await fn();
      } finally {
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(40_000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    },
  };
}

/**
 * Polls a member directly every `everyMs`: the first time its /primary answers 200 and the first
 * time its PostgreSQL says pg_is_in_recovery() = false (a kept connection, a new one after an error).
 */
export function watchMember(
  inv: Inventory,
  auth: { user: string; password: string },
  member: string,
  everyMs: number,
) {
  let stop = false;
  const seen: { primary200?: number; writable?: number } = {};
  const agent = new Agent({ connect: { timeout: 500 }, headersTimeout: 500, bodyTimeout: 500 });
  const url = `${restApi(inv, member).url}/primary`;
  const loops = Promise.all([
    (async () => {
      while (!stop && seen.primary200 === undefined) {
        try {
          const r = await request(url, { dispatcher: agent });
          await r.body.text();
          if (r.statusCode === 200) seen.primary200 = Date.now();
        } catch {
          // not yet
        }
        await sleep(everyMs);
      }
    })(),
    (async () => {
      let c: Client | undefined;
      while (!stop && seen.writable === undefined) {
        try {
          if (!c) {
            c = new Client({
              host: findNode(inv, 'postgres', member).ip,
              port: inv.ports.postgresql,
              ...auth,
              database: 'postgres',
              connectionTimeoutMillis: 1000,
              query_timeout: 1000,
            });
            c.on('error', () => undefined);
            await c.connect();
          }
          const r = await c.query<{ r: boolean }>('select pg_is_in_recovery() as r');
          if (r.rows[0]!.r === false) seen.writable = Date.now();
        } catch {
          void c?.end().catch(() => undefined);
          c = undefined;
        }
        await sleep(everyMs);
      }
      await c?.end().catch(() => undefined);
    })(),
  ]);
  return {
    seen,
    async done() {
      stop = true;
      await loops;
      await agent.close();
    },
  };
}

/**
 * argv of a PostgreSQL tool of the member's build, run as the OS user on its socket as the
 * superuser (peer): `runuser -u <osUser> -- <binDir>/<tool> -h <socket> -p <port> -U <superuser> …args`.
 * `at`: another instance in the CT (its socket directory and port) instead of the member's own.
 */
export function pgToolArgv(
  inv: Inventory,
  tool: string,
  args: string[],
  at: { socket: string; port: number } = { socket: PG_SOCKET_DIR, port: inv.ports.postgresql },
): string[] {
  return [
    'runuser',
    '-u',
    inv.postgresql.osUser,
    '--',
    `${inv.postgresql.binDir}/${tool}`,
    '-h',
    at.socket,
    '-p',
    String(at.port),
    '-U',
    inv.postgresql.superuser,
    ...args,
  ];
}

/** psql -At as the superuser on a member's socket, straight through LXC: its output, trimmed. */
export function psqlMember(inv: Inventory, member: string, sql: string, timeoutMs = 60_000): string {
  return inCt(
    findNode(inv, 'postgres', member).vmid,
    pgToolArgv(inv, 'psql', ['-X', '-At', '-d', 'postgres', '-c', sql]),
    { timeoutMs },
  ).trim();
}

/**
 * The benchmarks' database of about 1.5 GB: `pgbench -i -s 100` (the PostgreSQL build's, in the
 * leader's CT), kept when pgbench_accounts already has its 10 M rows. Prints what it did.
 */
export function pgbenchDatabase(inv: Inventory, leader: string): void {
  const have = (() => {
    try {
      return Number(psqlMember(inv, leader, 'select count(*) from pgbench_accounts'));
    } catch {
      return 0;
    }
  })();
  if (have === 10_000_000) return;
  const t = Date.now();
  inCt(
    findNode(inv, 'postgres', leader).vmid,
    pgToolArgv(inv, 'pgbench', ['-i', '-q', '-s', '100', 'postgres']),
    {
      timeoutMs: 1_800_000,
    },
  );
  console.log(`pgbench -i -s 100: ${((Date.now() - t) / 1000).toFixed(0)} s`);
}
