/**
 * What the lab tests use to check the cluster from outside pgha: a command in a CT straight through
 * LXC (not pgha's ssh + pct transport), and SQL as the superuser with the password read from the
 * inventory's secret file.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Client } from 'pg';
import { adminForced, openRuntimeSessions, socatArgv } from '../../activities/haproxy';
import type { RuntimeSessions } from '../../activities/haproxy';
import { haproxyNodes } from '../../activities/switchover/routing';
import { LXC_PATH } from '../../lab/paths';
import type { Inventory } from '../../runbooks/schema';
import { sleep } from './local-common';

/** argv inside CT `vmid` (stdin optional); its stdout, or a thrown error with the exit status. */
export function inCt(
  vmid: number,
  argv: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): string {
  return execFileSync('lxc-attach', ['-n', String(vmid), '-P', LXC_PATH, '--', ...argv], {
    encoding: 'utf8',
    input: opts.stdin,
    timeout: opts.timeoutMs ?? 30_000,
  });
}

/** inCt without blocking the event loop (for watchers that poll beside a timed writer). */
export function inCtAsync(vmid: number, argv: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      'lxc-attach',
      ['-n', String(vmid), '-P', LXC_PATH, '--', ...argv],
      { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
}

const secret = (ref: string) => readFileSync(ref.replace(/^file:/, ''), 'utf8').trim();

/** One connection as the inventory's superuser for `fn`, closed afterwards. */
export async function sqlAs<T>(
  inv: Inventory,
  host: string,
  port: number,
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const c = new Client({
    host,
    port,
    user: inv.postgresql.superuser,
    password: secret(inv.secrets.superuserPassword),
    database: 'postgres',
    connectionTimeoutMillis: 5000,
  });
  c.on('error', () => undefined); // a server going away must not crash the test process
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Commits rows with increasing ids through HAProxy's write port on one kept connection,
 * reconnecting after an error; remembers when each commit was acknowledged.
 */
export class LabWriter {
  readonly acked: { id: number; at: number }[] = [];
  errors = 0;
  private stopped = false;
  private loop?: Promise<void>;
  constructor(
    private readonly inv: Inventory,
    readonly table: string,
    private readonly host: string,
  ) {}
  /** The ids acknowledged so far. */
  get ackedIds(): number[] {
    return this.acked.map((a) => a.id);
  }
  async start(): Promise<this> {
    await sqlAs(this.inv, this.host, this.inv.ports.haproxyWrite, (c) =>
      c.query(
        `create table if not exists ${this.table} (id bigint primary key, at timestamptz default now())`,
      ),
    );
    this.loop = this.run();
    return this;
  }
  private async run(): Promise<void> {
    let id = 0;
    let c: Client | undefined;
    while (!this.stopped) {
      try {
        if (!c) {
          c = new Client({
            host: this.host,
            port: this.inv.ports.haproxyWrite,
            user: this.inv.postgresql.superuser,
            password: secret(this.inv.secrets.superuserPassword),
            database: 'postgres',
            connectionTimeoutMillis: 2000,
            query_timeout: 3000,
          });
          c.on('error', () => undefined);
          await c.connect();
        }
        id++;
        await c.query(`insert into ${this.table}(id) values ($1)`, [id]);
        this.acked.push({ id, at: Date.now() });
        await sleep(20);
      } catch {
        this.errors++;
        await c?.end().catch(() => undefined);
        c = undefined;
        await sleep(50);
      }
    }
    await c?.end().catch(() => undefined);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
  /** Acknowledged commits in [from, to). */
  count(from: number, to: number): number {
    return this.acked.filter((a) => a.at >= from && a.at < to).length;
  }
  /** The longest time without an acknowledged commit in [from, to). */
  longestGap(from: number, to: number): number {
    let prev = from;
    let gap = 0;
    for (const a of this.acked.filter((x) => x.at >= from && x.at < to)) {
      gap = Math.max(gap, a.at - prev);
      prev = a.at;
    }
    return Math.max(gap, to - prev);
  }
}

/**
 * A kept `prompt`-mode session with every HAProxy node's admin socket, straight through LXC
 * (lxc-attach + socat in the CT, not pgha's ssh + pct transport): a command costs a few ms, so a
 * test can watch server states every 20 ms.
 */
export function runtimeDirect(inv: Inventory): Promise<RuntimeSessions> {
  return openRuntimeSessions(haproxyNodes(inv), async (node) => {
    const p = spawn('lxc-attach', ['-n', String(node.vmid), '-P', LXC_PATH, '--', ...socatArgv(node)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    p.on('error', () => undefined);
    p.stdin.on('error', () => undefined); // gone early: the session learns it from 'close'
    return {
      on: (event: 'data' | 'close', fn: (d: Buffer) => void) =>
        event === 'data' ? p.stdout.on('data', fn) : p.on('close', fn),
      stderr: p.stderr,
      write: (x: string) => p.stdin.write(x),
      end: (x?: string) => {
        p.stdin.end(x);
        setTimeout(() => p.kill(), 1000).unref();
      },
    };
  });
}

/** `fn` with fresh {@link runtimeDirect} sessions, closed afterwards (HAProxy closes a CLI session idle for 30 s). */
export async function withRuntime<T>(inv: Inventory, fn: (rt: RuntimeSessions) => Promise<T>): Promise<T> {
  const rt = await runtimeDirect(inv);
  try {
    return await fn(rt);
  } finally {
    rt.close();
  }
}

/**
 * The servers of `backend` in an admin state on each node (`show servers state`): `<server>` →
 * srv_admin_state (8 drain, 1 maint, ...); ready servers are not listed.
 */
export async function adminStates(
  rt: RuntimeSessions,
  backend: string,
): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const s of rt.sessions) {
    out[s.node] = {};
    for (const f of adminForced(await s.command(`show servers state ${backend}`))) {
      const m = f.match(/^\S+\/(\S+) \(admin state (\d+)\)$/);
      if (m) out[s.node]![m[1]!] = Number(m[2]);
    }
  }
  return out;
}

/** Whether every HAProxy node has each of `servers` drained (admin state with the drain bit, 0x8) in `backend`. */
export async function drainedOnEvery(
  rt: RuntimeSessions,
  backend: string,
  servers: string[],
): Promise<boolean> {
  const states = await adminStates(rt, backend);
  return Object.values(states).every((st) => servers.every((x) => ((st[x] ?? 0) & 8) !== 0));
}

/**
 * POST /switchover (or, with `action`, POST /failover) requests Patroni logged (patroni/api.py:
 * "received switchover request ...") on every member since `since` (epoch s).
 */
export function switchoverRequests(
  inv: Inventory,
  since: string,
  action: 'switchover' | 'failover' = 'switchover',
): number {
  let n = 0;
  for (const m of inv.nodes.postgres) {
    const log = inCt(m.vmid, [
      'journalctl',
      '-u',
      'patroni',
      '--since',
      `@${since}`,
      '-o',
      'cat',
      '--no-pager',
    ]);
    n += log.split('\n').filter((l) => l.includes(`received ${action} request`)).length;
  }
  return n;
}

/**
 * A member's current timeline: a primary's from the name of its current WAL file (exact right after
 * a promotion); a replica's, the timeline its WAL receiver streams (an error while it streams nothing).
 */
export async function timelineOf(inv: Inventory, host: string): Promise<number> {
  const tl = await sqlAs(
    inv,
    host,
    inv.ports.postgresql,
    async (c) =>
      (
        await c.query<{ tl: number | null }>(
          `select case when pg_is_in_recovery() then (select received_tli from pg_stat_wal_receiver)
                  else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as tl`,
        )
      ).rows[0]!.tl,
  );
  if (tl === null)
    throw new Error(`${host}: a replica whose WAL receiver streams nothing has no timeline to read`);
  return tl;
}

/**
 * pg_stat_replication rows of the cluster's members only: the backup CT's Barman streams WAL too
 * (application_name barman_receive_wal), and it is not a replica.
 */
export const MEMBER_STREAMING = "state = 'streaming' and application_name not like 'barman%'";

/** Whether a TCP connect to host:port is refused right now (nothing listening). */
export function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port, timeout: 500 });
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

export interface ClusterMembers {
  members: { name: string; role: string; state: string; timeline?: number; tags?: Record<string, unknown> }[];
}

/** Patroni's GET /cluster from the first member that answers, read directly. */
export async function clusterDirect(inv: Inventory): Promise<ClusterMembers | undefined> {
  for (const n of inv.nodes.postgres) {
    try {
      const r = await fetch(`http://${n.ip}:${inv.ports.patroniRestApi}/cluster`, {
        signal: AbortSignal.timeout(3000),
      });
      if (r.ok) return (await r.json()) as ClusterMembers;
    } catch {
      // next member
    }
  }
  return undefined;
}

export const leaderIn = (c: ClusterMembers | undefined) =>
  c?.members.find((m) => m.role === 'leader' || m.role === 'master')?.name;

/**
 * Patroni's own view (its member keys in etcd) shows every member other than the leader as a
 * running replica. A replica streams (pg_stat_replication) before its Patroni writes its state at
 * the end of the next HA loop: a demoted leader still reads 'stopped' for up to loop_wait, and a
 * runbook's pre-check trusts Patroni's view.
 */
export const replicasRunningIn = (c: ClusterMembers | undefined, expected: number) =>
  (c?.members ?? []).filter(
    (m) => m.role !== 'leader' && m.role !== 'master' && (m.state === 'streaming' || m.state === 'running'),
  ).length === expected;

/** The leader's name as Patroni's GET /cluster tells it (the first member that answers), read directly. */
export async function leaderDirect(inv: Inventory): Promise<string | undefined> {
  return leaderIn(await clusterDirect(inv));
}

/**
 * Bounded wait for a writable leader with every other member streaming from it (lag < 1 MiB), and
 * Patroni's view agreeing (every replica running); its name.
 */
export async function waitHealthyDirect(inv: Inventory, timeoutMs = 180_000): Promise<string> {
  let leader = '';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const c = await clusterDirect(inv);
      const l = leaderIn(c);
      const node = inv.nodes.postgres.find((n) => n.hostname === l);
      if (l && node && replicasRunningIn(c, inv.nodes.postgres.length - 1)) {
        const r = await sqlAs(inv, node.ip, inv.ports.postgresql, async (c) => {
          const q = await c.query<{ n: number; rec: boolean }>(
            `select (select count(*) from pg_stat_replication where ${MEMBER_STREAMING}
                     and pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 1048576)::int as n,
                    pg_is_in_recovery() as rec`,
          );
          return q.rows[0]!;
        });
        leader = l;
        if (!r.rec && r.n === inv.nodes.postgres.length - 1) return leader;
      }
    } catch {
      // not yet
    }
    if (Date.now() >= deadline)
      throw new Error(`no healthy cluster within ${timeoutMs} ms (last leader seen: ${leader || 'none'})`);
    await sleep(1000);
  }
}
