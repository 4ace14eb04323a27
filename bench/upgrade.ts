/**
 * `npm run bench:upgrade` — what a rolling upgrade costs the clients, on a deployed lab cluster
 * (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml; it refuses, before anything, an
 * inventory that is not a lab's). Two phases, each the real runbook on its own Temporal dev server
 * and an in-process worker with the real activities:
 *
 *   pg       upgradePostgresql from BENCH_PG_FROM (default 18.4; the cluster is put back on it first
 *            through the build links and a `patronictl restart` if an earlier run left it newer)
 *            to BENCH_PG_TO (default 18.6);
 *   patroni  upgradePatroni to BENCH_PATRONI_TO (default 4.1.5), with the same argument shape —
 *            only if that workflow type is registered in this build; otherwise the bench says so
 *            and stops after the PostgreSQL phase (its patroni_* fields are then `-`).
 *
 * Throughout each phase a writer commits one row per transaction through HAProxy's write port
 * (BENCH_RATE per second, default 250, one kept connection, reconnecting at once after an error, as
 * bench/switchover.ts) and a reader runs `select 1` on the read port every 10 ms (one kept
 * connection, a new one after an error). Per phase: the longest gap between acknowledged writes,
 * between successful reads, and the wall time of the run. At the end: the switchovers (timeline
 * moves over both phases) and the acknowledged writes missing on the final leader. Last line, exactly:
 *
 *   upgrade_gap_ms pg_write_max=<n> pg_read_max=<n> pg_wall_s=<n> patroni_write_max=<n> patroni_read_max=<n> patroni_wall_s=<n> switchovers=<n> lost=<n>
 */
import { join } from 'node:path';
import { Client } from 'pg';
import { createPatroniActivities } from '../activities/patroni';
import { createProxmoxFactory } from '../activities/proxmox';
import { inventoryInput } from '../clients/inventory-input';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { pgVersionNum } from '../runbooks/pg-version';
import { memberNames, restApi } from '../runbooks/topology';
import * as workflows from '../workflows';
import type { UpgradeInput, UpgradeReport } from '../workflows/upgrade-postgresql';
import { labCluster } from '../test/helpers/lab-upgrade';
import { benchTemporal, requireLabInventory, sleep } from './common';

const root = join(__dirname, '..');
const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(root, 'runbooks/clusters/lab.yaml');
const RATE = Math.max(50, Number(process.env.BENCH_RATE ?? 250));
const PG_FROM = process.env.BENCH_PG_FROM ?? '18.4';
const PG_TO = process.env.BENCH_PG_TO ?? '18.6';
const PATRONI_TO = process.env.BENCH_PATRONI_TO ?? '4.1.5';
const READ_EVERY_MS = 10;

interface Conn {
  host: string;
  port: number;
  user: string;
  password: string;
}

async function connect(cfg: Conn, name: string): Promise<Client> {
  const c = new Client({
    ...cfg,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
    query_timeout: 2000,
    application_name: name,
  });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** A loop of one statement on a kept connection (a new one after an error); remembers when each succeeded. */
class Loop {
  readonly ok: number[] = [];
  readonly ackedIds: number[] = [];
  errors = 0;
  private id = 0;
  private running = false;
  private loop?: Promise<void>;
  constructor(
    private readonly cfg: Conn,
    private readonly kind: 'writer' | 'reader',
    private readonly table: string,
  ) {}
  start(): this {
    this.running = true;
    const every = this.kind === 'writer' ? 1000 / RATE : READ_EVERY_MS;
    this.loop = (async () => {
      let c: Client | undefined;
      let next = Date.now();
      while (this.running) {
        try {
          c ??= await connect(this.cfg, `pgha-bench-${this.kind}`);
          if (this.kind === 'writer') {
            const id = ++this.id;
            await c.query(`insert into ${this.table} (id) values ($1)`, [id]);
            this.ackedIds.push(id);
          } else {
            await c.query('select 1');
          }
          this.ok.push(Date.now());
        } catch {
          this.errors++;
          void c?.end().catch(() => undefined);
          c = undefined;
          await sleep(5);
          next = Date.now();
          continue;
        }
        next += every;
        const wait = next - Date.now();
        if (wait > 0) await sleep(wait);
        else if (wait < -1000) next = Date.now();
      }
      await c?.end().catch(() => undefined);
    })();
    return this;
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
  /** The longest time without a success in [from, to]. */
  maxGap(from: number, to: number): number {
    let prev = from;
    let gap = 0;
    for (const t of this.ok) {
      if (t < from || t > to) continue;
      gap = Math.max(gap, t - prev);
      prev = t;
    }
    return Math.max(gap, to - prev);
  }
}

interface Phase {
  writeMax: number;
  readMax: number;
  wallS: number;
}

async function main() {
  requireLabInventory('bench:upgrade', 'restarts every PostgreSQL member and writes a table', INVENTORY);
  const { input, inventory: inv } = await inventoryInput(INVENTORY);
  const secrets = await resolveClusterSecrets(inv);
  const user = inv.postgresql.superuser;
  const password = secrets.superuserPassword;
  const hap = inv.nodes.haproxy[0]!.ip;
  const write: Conn = { host: hap, port: inv.ports.haproxyWrite, user, password };
  const read: Conn = { host: hap, port: inv.ports.haproxyRead, user, password };
  const patroni = createPatroniActivities();
  const proxmox = createProxmoxFactory();
  const host = await proxmox.get(inv.proxmox);
  const status = async (m: string) => {
    try {
      return (await patroni.patroniGetPatroni({ target: restApi(inv, m), timeoutMs: 2000 })).body;
    } catch {
      return null;
    }
  };
  const leaderNow = async () => {
    for (const m of memberNames(inv)) {
      const s = await status(m);
      if (s && (s.role === 'master' || s.role === 'primary') && s.state === 'running') return m;
    }
    throw new Error('no running leader');
  };
  const sqlOn = async <T>(m: string, fn: (c: Client) => Promise<T>) => {
    const node = inv.nodes.postgres.find((n) => n.hostname === m)!;
    const c = await connect({ host: node.ip, port: inv.ports.postgresql, user, password }, 'pgha-bench');
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  const timeline = async () =>
    sqlOn(await leaderNow(), async (c) =>
      Number(
        (await c.query<{ t: string }>('select timeline_id as t from pg_control_checkpoint()')).rows[0]!.t,
      ),
    );
  const until = async (what: string, ms: number, ok: () => Promise<boolean>) => {
    const deadline = Date.now() + ms;
    while (!(await ok().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(500);
    }
  };

  // The cluster on PG_FROM: an earlier run may have left it newer.
  const fromNum = pgVersionNum(PG_FROM)!;
  const versions = await Promise.all(memberNames(inv).map(async (m) => (await status(m))?.server_version));
  if (!versions.every((v) => v === fromNum)) {
    console.log(`putting the cluster back on PostgreSQL ${PG_FROM} (it runs ${versions.join(', ')})`);
    const link = inv.postgresql.binDir.replace(/\/bin\/?$/, '');
    const dir = `${link.replace(/\d+$/, '')}${PG_FROM}.0`;
    for (const n of inv.nodes.postgres) {
      const r = await host.exec(n.vmid, ['sh', '-c', 'ln -sfnT "$1" "$2" && ldconfig', 'relink', dir, link]);
      if (r.code !== 0) throw new Error(`CT ${n.vmid}: relink to ${dir}: ${r.stderr}`);
    }
    const leader = await leaderNow();
    const venv = inv.install.patroni.method === 'offline' ? inv.install.patroni.venv : undefined;
    const patronictl = venv ? `${venv}/bin/patronictl` : 'patronictl';
    const node = inv.nodes.postgres.find((n) => n.hostname === leader)!;
    const r = await host.exec(
      node.vmid,
      [patronictl, '-c', `${inv.patroni.configDir}/patroni.yml`, 'restart', inv.patroni.scope, '--force'],
      { timeoutMs: 300_000 },
    );
    if (r.code !== 0) throw new Error(`patronictl restart: ${r.stderr}`);
    await until(`every member on ${PG_FROM}`, 300_000, async () =>
      (await Promise.all(memberNames(inv).map(async (m) => (await status(m))?.server_version))).every(
        (v) => v === fromNum,
      ),
    );
  }
  // and on the inventory's Patroni (an earlier run may have left it on the target)
  console.log(`every member on Patroni ${inv.versions.patroni} (putting back those an earlier run upgraded)`);
  await labCluster(inv).patroniBackTo(inv.versions.patroni);
  await until('both replicas streaming', 300_000, async () =>
    sqlOn(
      await leaderNow(),
      async (c) =>
        // members only: a backup CT's WAL receiver (Barman) streams too
        (
          await c.query(
            `select 1 from pg_stat_replication where state = 'streaming' and application_name = any($1)`,
            [memberNames(inv)],
          )
        ).rowCount ===
        inv.nodes.postgres.length - 1,
    ),
  );

  // Temporal: a dev server of its own, a worker with the real activities in this process.
  const { env, worker, taskQueue } = await benchTemporal('bench-upgrade', { workerProcess: true });
  const table = `bench_upgrade_${Date.now()}`;
  await sqlOn(await leaderNow(), (c) => c.query(`create table ${table} (id bigint primary key)`));
  const writer = new Loop(write, 'writer', table);
  const reader = new Loop(read, 'reader', table);

  const phase = async (type: string, args: UpgradeInput): Promise<Phase> => {
    writer.start();
    reader.start();
    await sleep(2000);
    const t0 = Date.now();
    const handle = await env.client.workflow.start(type, {
      taskQueue,
      workflowId: `bench-${type}-${Date.now()}`,
      args: [args],
    });
    const report = (await handle.result()) as UpgradeReport;
    const t1 = Date.now();
    await sleep(2000);
    await writer.stop();
    await reader.stop();
    console.log(
      `${type}: ${report.outcome}${report.message ? ` — ${report.message}` : ''}; ${report.members.map((m) => `${m.member} ${m.from}→${m.to} ${(m.tookMs / 1000).toFixed(1)}s`).join(', ')}` +
        `${report.switchover ? `; switchover ${report.switchover.from} → ${report.switchover.to}` : ''}`,
    );
    const p = {
      writeMax: writer.maxGap(t0, t1),
      readMax: reader.maxGap(t0, t1),
      wallS: Math.round((t1 - t0) / 1000),
    };
    console.log(
      `${type}: write_max ${p.writeMax} ms, read_max ${p.readMax} ms, wall ${p.wallS} s; ` +
        `${writer.ackedIds.length} writes acknowledged so far, ${writer.errors} failed write attempts, ${reader.errors} failed reads`,
    );
    return p;
  };

  const tl0 = await timeline();
  let pg: Phase | undefined;
  let pat: Phase | undefined;
  try {
    await worker.runUntil(async () => {
      // The noise floor: the same writer and reader for 20 s while nothing runs (context for the
      // gaps below: on a small shared machine a scheduling stall alone can reach tens of ms).
      writer.start();
      reader.start();
      await sleep(2000);
      const b0 = Date.now();
      await sleep(20_000);
      const b1 = Date.now();
      await writer.stop();
      await reader.stop();
      console.log(
        `baseline (20 s, no runbook): write_max ${writer.maxGap(b0, b1)} ms, read_max ${reader.maxGap(b0, b1)} ms`,
      );
      pg = await phase('upgradePostgresql', { inventory: input, to: PG_TO });
      if (!('upgradePatroni' in workflows)) {
        console.log(
          'upgradePatroni is not registered in this build (workflows/index.ts): the Patroni phase is skipped; ' +
            'the PostgreSQL phase is done',
        );
        return;
      }
      pat = await phase('upgradePatroni', { inventory: input, to: PATRONI_TO });
    });
  } finally {
    await env.teardown();
    proxmox.closeAll();
  }
  const final = await leaderNow();
  const switchovers = (await timeline()) - tl0;
  const lost = await sqlOn(final, async (c) =>
    Number(
      (
        await c.query<{ n: string }>(
          `select count(*) as n from unnest($1::bigint[]) a(id) left join ${table} t using (id) where t.id is null`,
          [writer.ackedIds],
        )
      ).rows[0]!.n,
    ),
  );
  const f = (p: Phase | undefined, k: keyof Phase) => (p ? String(p[k]) : '-');
  console.log(
    `upgrade_gap_ms pg_write_max=${f(pg, 'writeMax')} pg_read_max=${f(pg, 'readMax')} pg_wall_s=${f(pg, 'wallS')} ` +
      `patroni_write_max=${f(pat, 'writeMax')} patroni_read_max=${f(pat, 'readMax')} patroni_wall_s=${f(pat, 'wallS')} ` +
      `switchovers=${switchovers} lost=${lost}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:upgrade: ${(err as Error).message}`);
    process.exit(1);
  },
);
