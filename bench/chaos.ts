/**
 * `npm run chaos [-- --kills N --server-kills M --seed S --runbooks a,b]` — durability under crashes,
 * checked from outside pgha, on a deployed lab cluster (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab.yaml; any other inventory is refused before anything).
 *
 * A Temporal dev server (its own state directory and port) and a pgha worker run as child
 * processes, as in production. A writer commits a row per transaction through the first HAProxy
 * the whole time. For each runbook (RUNBOOKS: deployCluster — again, on the deployed cluster, where it
 * must restart nothing —, switchover, failover — forced, away from a live
 * leader —, rollingRestart, applyConfig, reinitReplica, backup, restoreDrill, upgradePostgresql
 * 18.4 → 18.6 — the members put back on 18.4 before every run and at the end, outside the runs):
 * one undisturbed run measures its duration D; then N runs (--kills, default 10), each with the
 * worker SIGKILLed at a moment drawn uniformly from [0.05 D, 0.95 D] and a new worker started at
 * once; a run that ended before its moment is run again with a new one, until N kills have landed
 * (at most 3 N runs). M of all those runs (--server-kills, default 3) also have the Temporal server
 * SIGKILLed at another such moment and started again on the same database a second later (one that
 * did not land goes to the next run). The moments come
 * from --seed (printed first): the same seed replays the same moments.
 *
 * After every run, from outside pgha (Patroni's REST API and SQL on the members):
 *   - the run ended: completed, or refused (a definite refusal is an acceptable end);
 *   - the cluster is healthy (a writable leader, every replica streaming) and every member agrees
 *     on the leader and the timeline;
 *   - lost: acknowledged commits of the writer missing on the leader;
 *   - double actions: a member whose PostgreSQL started more than once during the run
 *     (pg_postmaster_start_time() polled every second on each member); more POST /switchover or
 *     POST /failover requests received by Patroni (its journal) than the runbook calls for; more
 *     than one new Barman backup (backup); more than one scratch copy, or one started twice
 *     (restoreDrill, polled in the backup CT);
 *   - left behind (counted unhealthy): a completed backup run with no new backup; a drill's scratch
 *     directory or scratch postgres after its run.
 *
 * One line per run, then exactly:
 *   chaos runs=<n> worker_kills=<n> server_kills=<n> completed=<n> refused=<n> lost=<n> double_actions=<n> unhealthy=<n>
 * Exit 1 when anything was lost, done twice, left unhealthy, or a run failed.
 */
import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client as TemporalClient, Connection, WorkflowFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { clusterLeader, createPatroniActivities } from '../activities/patroni';
import { AesGcmCodec, pghaDataConverter } from '../clients/codec';
import { inventoryInput } from '../clients/inventory-input';
import { startRunbook } from '../clients/runbook';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { restApi } from '../runbooks/topology';
import { barmanServer } from '../activities/render';
import { inCtAsync, switchoverRequests } from '../test/helpers/lab-direct';
import { labCluster as labUpgrade } from '../test/helpers/lab-upgrade';
import { RUNBOOKS } from './chaos-runbooks';
import { Writer, bounded, labCluster, requireLabInventory, sleep } from './common';

const root = join(__dirname, '..');
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(root, 'runbooks/clusters/lab.yaml');
const RUN_BOUND_MS = 15 * 60_000;

/** mulberry32: a small seeded generator, so a seed replays the same kill moments. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });

/** The Temporal dev server through scripts/server.ts, in a state directory of its own. */
class Server {
  constructor(
    readonly env: NodeJS.ProcessEnv,
    readonly stateDir: string,
  ) {}
  start(): void {
    execFileSync(
      process.execPath,
      ['--import', 'tsx', join(root, 'scripts/server.ts'), 'start', '--background'],
      {
        env: this.env,
        stdio: 'ignore',
        timeout: 120_000,
      },
    );
  }
  kill(): void {
    const pid = Number(readFileSync(join(this.stateDir, 'server.pid'), 'utf8').trim());
    process.kill(pid, 'SIGKILL');
  }
}

/** A pgha worker (workers/main.ts) as a child process, its output appended to a log file. */
class WorkerProc {
  private child?: ChildProcess;
  private n = 0;
  constructor(
    readonly env: NodeJS.ProcessEnv,
    readonly logFile: string,
  ) {}
  /**
   * Starts a worker and waits until it polls. One that exits at once (the server is being started
   * again after a kill: "cannot reach Temporal") is started again, as systemd's Restart= would.
   */
  async start(): Promise<void> {
    const log = createWriteStream(this.logFile, { flags: 'a' });
    let out = '';
    let child: ChildProcess | undefined;
    const spawnOne = () => {
      out = '';
      child = spawn(process.execPath, ['--import', 'tsx', join(root, 'workers/main.ts')], {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child = child;
      this.n++;
      const keep = (b: Buffer) => {
        out = (out + b.toString()).slice(-4000);
        log.write(b);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
    };
    spawnOne();
    await bounded(
      `worker ${this.n} polling`,
      120_000,
      async () => {
        if (child!.exitCode !== null) {
          log.write(`chaos: the worker exited (${child!.exitCode}); starting it again\n`);
          spawnOne();
          return undefined;
        }
        return out.includes('pgha worker: task queue') ? true : undefined;
      },
      1000,
    );
  }
  kill(): void {
    this.child?.kill('SIGKILL');
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    await Promise.race([new Promise((r) => c.once('exit', r)), sleep(15_000)]);
    c.kill('SIGKILL');
  }
}

type Outcome = 'completed' | 'refused' | `failed: ${string}`;

/** What a watcher saw during a run: actions done more than once, problems left behind, a note for the run's line. */
interface Seen {
  double: number;
  problems: string[];
  note: string;
}
/** Started before a run (resolves once it has looked), finished after it with the run's outcome. */
type Watch = () => Promise<(outcome: Outcome) => Promise<Seen>>;

interface Spec {
  args: (leader: string) => Record<string, unknown>;
  posts: { switchover: number; failover: number };
  prepare?: () => Promise<void>;
  watch?: Watch;
}

const lines = (out: string) => out.split('\n').filter(Boolean);

/** Barman's backups (directories under base/) made during a run: one is the run's own, two are a double action. */
function watchBackups(vmid: number, baseDir: string): Watch {
  const list = async () =>
    new Set(lines(await inCtAsync(vmid, ['sh', '-c', 'ls -1 "$1" 2>/dev/null; true', 'ls', baseDir])));
  return async () => {
    const before = await list();
    return async (outcome) => {
      const made = [...(await list())].filter((b) => !before.has(b));
      return {
        double: made.length > 1 ? 1 : 0,
        problems:
          outcome === 'completed' && made.length === 0 ? ['the backup run completed with no new backup'] : [],
        note: `backups_made=${made.length}`,
      };
    };
  };
}

/**
 * A restore drill's scratch copies, polled every second in the backup CT: the scratch directories
 * made and each one's postmaster starts (postmaster.pid, line 3). More than one copy, or a copy
 * started twice, is a double action; a directory or a scratch postgres left after the run, a problem.
 */
function watchDrills(vmid: number, drillDir: string): Watch {
  const look = async () =>
    lines(
      await inCtAsync(vmid, [
        'sh',
        '-c',
        'for d in "$1"/*/; do [ -d "$d" ] || continue; p="$d/data/postmaster.pid"; ' +
          'if [ -f "$p" ]; then echo "$d $(sed -n 3p "$p")"; else echo "$d -"; fi; done',
        'look',
        drillDir,
      ]),
    ).map((l) => l.split(' ') as [string, string]);
  return async () => {
    const before = new Set((await look()).map(([d]) => d));
    const starts = new Map<string, Set<string>>();
    let on = true;
    const loop = (async () => {
      while (on) {
        for (const [d, t] of await look().catch(() => [])) {
          if (before.has(d)) continue;
          const s = starts.get(d) ?? new Set<string>();
          if (t !== '-') s.add(t);
          starts.set(d, s);
        }
        await sleep(1000);
      }
    })();
    return async () => {
      on = false;
      await loop;
      const left = (await look()).map(([d]) => d).filter((d) => !before.has(d));
      const running = lines(await inCtAsync(vmid, ['ps', '-eo', 'pid=,args='])).filter((p) =>
        p.includes(`${drillDir}/`),
      );
      const twice = [...starts.values()].filter((s) => s.size > 1).length;
      return {
        double: twice + (starts.size > 1 ? 1 : 0),
        problems: [
          ...left.map((d) => `scratch copy left: ${d}`),
          ...running.map((p) => `scratch postgres still running: ${p.trim()}`),
        ],
        note: `drill_copies=${starts.size} drill_starts=${[...starts.values()].reduce((n, s) => n + s.size, 0)}`,
      };
    };
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string', default: '10' },
      'server-kills': { type: 'string', default: '3' },
      seed: { type: 'string' },
      runbooks: { type: 'string', default: RUNBOOKS.join(',') },
    },
  });
  requireLabInventory('npm run chaos', 'kills workers and restarts PostgreSQL', LAB);
  const kills = Number(values.kills);
  const serverKills = Number(values['server-kills']);
  const seed = values.seed !== undefined ? Number(values.seed) : randomBytes(4).readUInt32BE(0);
  if (!Number.isInteger(kills) || kills < 1) throw new Error('--kills: a whole number ≥ 1');
  if (!Number.isInteger(serverKills) || serverKills < 0)
    throw new Error('--server-kills: a whole number ≥ 0');
  if (!Number.isInteger(seed)) throw new Error('--seed: a whole number');
  const names = values.runbooks.split(',');
  console.log(`chaos seed=${seed} kills=${kills} server_kills=${serverKills} runbooks=${names.join(',')}`);
  const random = rng(seed);

  const { input, inventory: inv } = await inventoryInput(LAB);
  const secrets = await resolveClusterSecrets(inv);
  const patroni = createPatroniActivities();
  const lab = labCluster(inv, secrets, patroni);

  // Temporal and the worker, as child processes (killed and started again below).
  const stateDir = mkdtempSync(join(tmpdir(), 'pgha-chaos-'));
  const port = await freePort();
  const key = randomBytes(32);
  const base = {
    ...process.env,
    PGHA_STATE_DIR: stateDir,
    PGHA_SERVER_PORT: String(port),
    PGHA_UI_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    PGHA_TASK_QUEUE: `chaos-${seed}`,
    PGHA_CODEC_KEY: key.toString('base64'),
    PGHA_METRICS_ADDRESS: 'off',
  };
  const server = new Server(base, stateDir);
  server.start();
  const worker = new WorkerProc(base, join(stateDir, 'worker.log'));
  await worker.start();
  // Interrupted (Ctrl-C, SIGTERM): the children go too.
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      worker.kill();
      try {
        server.kill();
      } catch {
        // not running
      }
      process.exit(130);
    });
  const connection = await Connection.connect({ address: base.TEMPORAL_ADDRESS });
  const client = new TemporalClient({ connection, dataConverter: pghaDataConverter(new AesGcmCodec(key)) });
  console.log(`state (server database, logs): ${stateDir}`);

  const leader0 = await lab.settled(180_000);
  // A table of this invocation's own (a replayed seed must not collide with an earlier run's ids).
  const table = `chaos_${seed}_${Date.now()}`;
  await lab.sqlOn(lab.ip(leader0), inv.ports.postgresql, (c) =>
    c.query(`create table if not exists ${table} (id bigint primary key)`),
  );
  const haproxy = inv.nodes.haproxy[0]!;
  const writer = new Writer({
    conn: { host: haproxy.ip, port: inv.ports.haproxyWrite, user: lab.user, password: lab.password },
    table,
    rate: 20,
    idBase: 1,
    connectTimeoutMs: 5000,
  });
  writer.start();

  let workMem = 4;
  const members = inv.nodes.postgres.map((n) => n.hostname);
  const aReplica = (leader: string) => members.find((n) => n !== leader)!;
  const backupCt = inv.nodes.backup[0];
  const storage = inv.backup.storage.path;
  const needsBackupCt = (name: string) => {
    if (!backupCt) throw new Error(`--runbooks: ${name} needs a backup CT in ${LAB} (nodes.backup)`);
    return backupCt.vmid;
  };
  const upgradeLab = labUpgrade(inv);
  /**
   * Per runbook: its arguments (from the leader before the run), the Patroni hand-off requests it
   * calls for (at most), an optional reset before each run (not timed, not watched: an upgrade
   * starts from the old build every time), and an optional watcher of what else must happen once.
   */
  const specs: Record<string, Spec> = {
    // deploy again on the deployed cluster: it converges on what is there, restarting nothing
    // (fresh CTs with a worker kill: test/lab/deploy.test.ts)
    deployCluster: { args: () => ({}), posts: { switchover: 0, failover: 0 } },
    switchover: { args: () => ({}), posts: { switchover: 1, failover: 0 } },
    failover: {
      // away from a live leader (pgha failover --to X --force): the same hand-off a dead leader gets
      args: (leader) => ({ candidate: aReplica(leader), force: true }),
      posts: { switchover: 0, failover: 1 },
    },
    rollingRestart: { args: () => ({ leader: 'in-place' }), posts: { switchover: 0, failover: 0 } },
    applyConfig: {
      args: () => ({ set: { work_mem: `${(workMem = workMem === 4 ? 5 : 4)}MB` }, restart: 'none' }),
      posts: { switchover: 0, failover: 0 },
    },
    reinitReplica: {
      args: (leader) => ({ member: aReplica(leader) }),
      posts: { switchover: 0, failover: 0 },
    },
    upgradePostgresql: {
      args: () => ({ to: '18.6' }),
      posts: { switchover: 1, failover: 0 },
      prepare: () => upgradeLab.backTo184(),
    },
    backup: {
      args: () => ({}),
      posts: { switchover: 0, failover: 0 },
      watch: () => watchBackups(needsBackupCt('backup'), `${storage}/${barmanServer(inv)}/base`)(),
    },
    restoreDrill: {
      args: () => ({}),
      posts: { switchover: 0, failover: 0 },
      watch: () => watchDrills(needsBackupCt('restoreDrill'), `${storage}/pgha-drill`)(),
    },
  };
  for (const n of names)
    if (!specs[n]) throw new Error(`--runbooks: ${n} is not one of ${Object.keys(specs).join(', ')}`);
  for (const n of names) if (n === 'backup' || n === 'restoreDrill') needsBackupCt(n);

  const totals = {
    runs: 0,
    workerKills: 0,
    serverKills: 0,
    completed: 0,
    refused: 0,
    lost: 0,
    double: 0,
    unhealthy: 0,
    failed: 0,
  };
  const killRuns = names.length * kills;
  const serverKillRuns = new Set<number>();
  while (serverKillRuns.size < Math.min(serverKills, killRuns))
    serverKillRuns.add(Math.floor(random() * killRuns));
  let killRun = 0;

  /** Postmaster start times seen on each member while a run goes on (polled every second). */
  const watchStarts = () => {
    const seen: Record<string, Set<string>> = {};
    let on = true;
    const loop = (async () => {
      while (on) {
        await Promise.all(
          inv.nodes.postgres.map(async (n) => {
            const t = await lab
              .sqlOn(n.ip, inv.ports.postgresql, async (c) =>
                String(
                  (await c.query<{ t: string }>('select pg_postmaster_start_time()::text as t')).rows[0]!.t,
                ),
              )
              .catch(() => undefined);
            if (t) (seen[n.hostname] ??= new Set()).add(t);
          }),
        );
        await sleep(1000);
      }
    })();
    return async () => {
      on = false;
      await loop;
      return seen;
    };
  };

  const awaitEnd = async (h: WorkflowHandle): Promise<Outcome> => {
    const deadline = Date.now() + RUN_BOUND_MS;
    for (;;) {
      try {
        await h.result();
        return 'completed';
      } catch (err) {
        if (err instanceof WorkflowFailedError) {
          const cause = (err.cause?.cause ?? err.cause) as Error | undefined;
          const type = cause instanceof ApplicationFailure ? (cause.type ?? '') : '';
          return /Refused$/.test(type) ? 'refused' : `failed: ${type} ${cause?.message ?? err.message}`;
        }
        // the server is down or restarting: ask again
        if (Date.now() > deadline)
          return `failed: no end within ${RUN_BOUND_MS} ms (${(err as Error).message})`;
        await sleep(1000);
      }
    }
  };

  const oneRun = async (name: string, i: number, killAt?: number, serverKillAt?: number) => {
    const spec = specs[name]!;
    await spec.prepare?.();
    const leader = await lab.settled(240_000);
    const since = String(Math.floor(Date.now() / 1000) - 1);
    const starts = watchStarts();
    const once = await spec.watch?.();
    await sleep(1500); // a look at every member before the run
    const t0 = Date.now();
    const ackBefore = writer.attempts.filter((a) => a.ok).length;
    const h = await startRunbook(client, {
      workflow: name,
      args: [{ inventory: input, ...spec.args(leader) }],
      cluster: inv.cluster,
      operation: name,
      suffix: `chaos-${seed}-${i}`,
      taskQueue: base.PGHA_TASK_QUEUE,
      operator: 'chaos',
    } as Parameters<typeof startRunbook>[1]);
    // A kill counts only when it lands while the run is still going (a run can end sooner than D).
    let ended = false;
    const landed = { worker: false, server: false };
    const timers: Promise<void>[] = [];
    // (each timer's rejection is read by allSettled below; this keeps it from being unhandled before)
    const settle = (p: Promise<void>) => (p.catch(() => undefined), p);
    if (killAt !== undefined)
      timers.push(
        settle(
          sleep(killAt).then(async () => {
            if (ended) return;
            worker.kill();
            landed.worker = true;
            totals.workerKills++;
            await worker.start();
          }),
        ),
      );
    if (serverKillAt !== undefined)
      timers.push(
        settle(
          sleep(serverKillAt).then(async () => {
            if (ended) return;
            server.kill();
            landed.server = true;
            totals.serverKills++;
            await sleep(1000);
            server.start();
          }),
        ),
      );
    // A kill or a restart that failed ends the wait at once (a worker that cannot start again would
    // leave the run waiting for RUN_BOUND_MS): it is thrown below as the harness's failure.
    const harnessFailed = new Promise<Outcome>((_, reject) => {
      for (const t of timers) void t.catch(reject);
    });
    const outcome = await Promise.race([awaitEnd(h as WorkflowHandle), harnessFailed]).catch(
      (): Outcome => 'failed: the chaos harness (below)',
    );
    ended = true;
    const took = Date.now() - t0;
    // A kill or a restart that failed is the harness's failure: said, and the chaos run stops.
    const harness = (await Promise.allSettled(timers)).find((t) => t.status === 'rejected');
    if (harness) throw new Error(`chaos harness: ${String((harness as PromiseRejectedResult).reason)}`);
    // After the run: healthy, agreeing, nothing lost, nothing done twice.
    let healthy = true;
    let leaderNow = '';
    try {
      leaderNow = await lab.settled(240_000);
    } catch {
      healthy = false;
    }
    const seen = await starts();
    const extra: Seen = once ? await once(outcome) : { double: 0, problems: [], note: '' };
    if (extra.problems.length) healthy = false;
    const views = await Promise.all(
      inv.nodes.postgres.map(async (n) => {
        const [p, c] = await Promise.all([
          patroni
            .patroniGetPatroni({ target: restApi(inv, n.hostname), timeoutMs: 3000 })
            .catch(() => undefined),
          patroni
            .patroniGetCluster({ target: restApi(inv, n.hostname), timeoutMs: 3000 })
            .catch(() => undefined),
        ]);
        return { timeline: p?.body?.timeline, leader: c?.body ? clusterLeader(c.body) : undefined };
      }),
    );
    const agree =
      new Set(views.map((v) => v.leader)).size === 1 &&
      views[0]!.leader === leaderNow &&
      new Set(views.map((v) => v.timeline)).size === 1;
    const acked = writer.attempts.filter((a) => a.ok).map((a) => a.id);
    // A writer that acknowledged nothing during the run proves nothing about losses: unhealthy.
    const writing = acked.length > ackBefore;
    if (!healthy || !agree || !writing) totals.unhealthy++;
    const lost = healthy ? await lab.missing(leaderNow, table, acked) : 0;
    totals.lost += lost;
    const restarts = Object.fromEntries(Object.entries(seen).map(([m, s]) => [m, s.size - 1]));
    const posts = {
      switchover: switchoverRequests(inv, since),
      failover: switchoverRequests(inv, since, 'failover'),
    };
    const double =
      Object.values(restarts).filter((r) => r > 1).length +
      (posts.switchover > spec.posts.switchover ? 1 : 0) +
      (posts.failover > spec.posts.failover ? 1 : 0) +
      extra.double;
    totals.double += double;
    totals.runs++;
    if (outcome === 'completed') totals.completed++;
    else if (outcome === 'refused') totals.refused++;
    else totals.failed++;
    console.log(
      `chaos run=${i} runbook=${name} kill_worker_at=${killAt === undefined ? '-' : `${killAt}${landed.worker ? '' : '(after-end)'}`} ` +
        `kill_server_at=${serverKillAt === undefined ? '-' : `${serverKillAt}${landed.server ? '' : '(after-end)'}`} ` +
        `outcome=${JSON.stringify(outcome)} took_ms=${took} acked=${acked.length - ackBefore} lost=${lost} ` +
        `restarts=${JSON.stringify(restarts)} switchover_posts=${posts.switchover} failover_posts=${posts.failover} ` +
        `${extra.note ? `${extra.note} ` : ''}healthy=${healthy} agree=${agree} writing=${writing} leader=${leaderNow}` +
        (extra.problems.length ? ` problems=${JSON.stringify(extra.problems)}` : ''),
    );
    return { took, landed };
  };

  let i = 0;
  try {
    // Every runbook gets `kills` worker kills that land during a run, and the whole chaos run
    // `serverKills` server kills: a run that ended before its kill moment is run again with a new
    // moment (at most 3 × kills runs per runbook), and a server kill that did not land goes to the
    // next run.
    let serverOwed = 0;
    for (const name of names) {
      const d = (await oneRun(name, i++)).took;
      let landed = 0;
      for (let n = 0; landed < kills && n < 3 * kills; n++) {
        const at = Math.round((0.05 + 0.9 * random()) * d);
        if (serverKillRuns.has(killRun)) serverOwed++;
        serverKillRuns.delete(killRun);
        const serverAt = serverOwed > 0 ? Math.round((0.05 + 0.9 * random()) * d) : undefined;
        const r = await oneRun(name, i++, at, serverAt);
        if (r.landed.worker) {
          landed++;
          killRun++;
        }
        if (r.landed.server) serverOwed--;
      }
      if (landed < kills)
        console.log(
          `chaos: ${name}: ${landed} of ${kills} worker kills landed in ${3 * kills} runs (its runs end sooner than D)`,
        );
    }
  } finally {
    await writer.stop();
    if (names.includes('upgradePostgresql'))
      await upgradeLab.backTo184().catch((e: unknown) => console.error(`chaos: back to 18.4: ${String(e)}`));
    await lab
      .sqlOn(lab.ip(await lab.settled(60_000).catch(() => leader0)), inv.ports.postgresql, (c) =>
        c.query(`drop table if exists ${table}`),
      )
      .catch(() => undefined);
    await worker.stop();
    await connection.close().catch(() => undefined);
    try {
      server.kill();
    } catch {
      // already gone
    }
  }
  console.log(
    `chaos runs=${totals.runs} worker_kills=${totals.workerKills} server_kills=${totals.serverKills} ` +
      `completed=${totals.completed} refused=${totals.refused} lost=${totals.lost} ` +
      `double_actions=${totals.double} unhealthy=${totals.unhealthy}`,
  );
  if (totals.lost || totals.double || totals.unhealthy || totals.failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`npm run chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
