/**
 * rollingRestart, applyConfig and reinitReplica end to end on the lab (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab.yaml), with a real worker process, checked from outside pgha (Patroni's REST
 * API, SQL, the CTs through lxc-attach):
 *  1. rollingRestart of all three members while a writer commits through HAProxy; the worker is
 *     SIGKILLed while a replica is restarting (after Patroni got the POST) and a new worker finishes:
 *     replicas first, the leader last, every member's postmaster restarted exactly once (a poller
 *     sees each one's start time change once), every acknowledged write on the final leader;
 *  2. applyConfig: work_mem through `pgha config set` (no restart: nobody restarts, every member
 *     runs with it), max_connections (needs a restart: exactly the pending members restart,
 *     replicas first, leader last, each once), and the same again changes and restarts nothing;
 *  3. reinitReplica of a replica: its data directory is really re-created (a file dropped in it is
 *     gone), rows written before are there, it streams again;
 *  4. refusals: reinit of the leader and of an unknown member, non-DCS and unknown keys, a replica
 *     that is down — each with a message naming the fix, and nothing restarted.
 * The cluster is deployed first if needed (deployCluster is idempotent and quick on a deployed one).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { progress } from '../../workflows/messages';
import type { ReinitReport, reinitReplica } from '../../workflows/reinit';
import type { applyConfig, rollingRestart } from '../../workflows/rolling-restart';
import { notDryRun } from '../../workflows/dry-run';
import { errorMessage } from '../../workflows/steps';
import { inCt, sqlAs, LabWriter, MEMBER_STREAMING, refused, waitHealthyDirect } from '../helpers/lab-direct';
import { LXC_PATH } from '../../lab/paths';
import { activityCalls, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { labNotUpReason } from '../../lab/testing';
import type { Proc } from '../helpers/local-common';
import { repoRoot, sleep } from '../helpers/local-common';
import { eventually, startTestServer, testCodecKey, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let taskQueue: string;
let countDir: string;
let worker: Proc;
const workers: Proc[] = [];

// ---- helpers: the cluster asked directly, not through pgha ----

const pg = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;

const sql = <T>(host: string, port: number, fn: (c: Client) => Promise<T>) => sqlAs(inv, host, port, fn);
const show = (member: string, name: string) =>
  sql(
    pg(member).ip,
    inv.ports.postgresql,
    async (c) => (await c.query<{ v: string }>(`select current_setting($1) as v`, [name])).rows[0]!.v,
  );

interface PatroniStatus {
  role: string;
  state: string;
  timeline?: number;
  postmaster_start_time?: string;
  pending_restart?: boolean;
}
async function patroni(member: string): Promise<PatroniStatus | null> {
  try {
    const r = await fetch(`http://${pg(member).ip}:${inv.ports.patroniRestApi}/patroni`, {
      signal: AbortSignal.timeout(2000),
    });
    return (await r.json()) as PatroniStatus;
  } catch {
    return null;
  }
}
async function leaderNow(): Promise<string> {
  for (const n of inv.nodes.postgres) {
    const s = await patroni(n.hostname);
    if (s && (s.role === 'master' || s.role === 'primary') && s.state === 'running') return n.hostname;
  }
  throw new Error('no running primary');
}
async function streamingReplicas(leader: string): Promise<string[]> {
  return sql(pg(leader).ip, inv.ports.postgresql, async (c) =>
    (
      await c.query<{ n: string }>(
        `select application_name as n from pg_stat_replication where ${MEMBER_STREAMING} order by 1`,
      )
    ).rows.map((r) => r.n),
  );
}
const healthy = () => waitHealthyDirect(inv, 120_000);

/** Every distinct postmaster_start_time each member reports, polled every 100 ms. */
class StartTimes {
  readonly seen = new Map<string, string[]>();
  private stopped = false;
  private loop?: Promise<void>;
  start(): this {
    this.loop = (async () => {
      while (!this.stopped) {
        await Promise.all(
          inv.nodes.postgres.map(async (n) => {
            const s = await patroni(n.hostname);
            const t = s?.postmaster_start_time;
            if (!t) return;
            const list = this.seen.get(n.hostname) ?? [];
            if (list[list.length - 1] !== t) list.push(t);
            this.seen.set(n.hostname, list);
          }),
        );
        await sleep(100);
      }
    })();
    return this;
  }
  async stop(): Promise<Map<string, string[]>> {
    this.stopped = true;
    await this.loop;
    return this.seen;
  }
}

/** Postmaster start time of every member now (each must answer). */
async function startTimesNow(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of inv.nodes.postgres) {
    const s = await patroni(n.hostname);
    assert.ok(s?.postmaster_start_time, `${n.hostname} reports its postmaster start time`);
    out[n.hostname] = s.postmaster_start_time;
  }
  return out;
}

/**
 * Restarted exactly once: its start time changed, and the poller never saw a third one (a second
 * restart would show a start time that is neither the one before nor the one after).
 */
function assertRestartedOnce(
  seen: Map<string, string[]>,
  before: Record<string, string>,
  after: Record<string, string>,
): void {
  for (const n of inv.nodes.postgres) {
    const m = n.hostname;
    assert.notEqual(after[m], before[m], `${m} restarted`);
    const extra = (seen.get(m) ?? []).filter((t) => t !== before[m] && t !== after[m]);
    assert.deepEqual(
      extra,
      [],
      `${m} restarted more than once: ${JSON.stringify([before[m], ...(seen.get(m) ?? [])])}`,
    );
  }
}

// ---- the worker process and the CLI ----

function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  workers.push(w);
  return w;
}
const ready = (w: Proc) => workerReady(w);
const count = (activity: string) => activityCalls(countDir, activity);

/** `pgha ...` as an operator runs it, against this test's server and worker. */
function pgha(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 300_000,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: 'default',
      PGHA_TASK_QUEUE: taskQueue,
      PGHA_CODEC_KEY: testCodecKey.toString('base64'),
    },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

async function failure(p: Promise<unknown>): Promise<{ type?: string; message: string }> {
  const err = await p.then(
    () => assert.fail('the run should have failed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  let cause: unknown = err.cause;
  while (cause instanceof Error && !(cause instanceof ApplicationFailure) && cause.cause) cause = cause.cause;
  return {
    type: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined,
    message: errorMessage(cause),
  };
}

before(async () => {
  if (skip) return;
  execFileSync(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), 'secrets', 'init', '--cluster', LAB],
    {
      cwd: repoRoot,
      timeout: 60_000,
    },
  );
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  taskQueue = uniqueId('maint');
  countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
  worker = startWorker('worker-1');
  await ready(worker);
  // Deployed (and healthy) first: a no-op on a deployed cluster.
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    suffix: uniqueId('ensure'),
    taskQueue,
  });
  const status = notDryRun(await d.result());
  // Healthy — or degraded only by a pending restart (a parameter changed earlier): the restart fixes that.
  const v = status.verdict;
  assert.ok(
    v.status === 'healthy' || (v.status === 'degraded' && v.reasons.every((r) => /pending restart/.test(r))),
    JSON.stringify(v),
  );
  await healthy();
});

after(async () => {
  for (const w of workers) await w.stop();
  await env?.teardown();
});

void test(
  'rollingRestart of all three while writes flow; worker SIGKILLed mid-restart; each member restarted once, no acknowledged write lost',
  { skip, timeout: 420_000 },
  async () => {
    const leader = await healthy();
    const replicas = inv.nodes.postgres.map((n) => n.hostname).filter((h) => h !== leader);
    const victim = replicas[1]!; // the second replica: killed while Patroni restarts it
    const startedBefore = await startTimesNow();
    const times = new StartTimes().start();
    const writer = await new LabWriter(inv, `rr_writes_${Date.now()}`, inv.nodes.haproxy[0]!.ip).start();
    await sleep(1000);

    const handle = await startRunbook<typeof rollingRestart>(env.client, {
      workflow: 'rollingRestart',
      args: [{ inventory: input, leader: 'in-place' }],
      cluster: inv.cluster,
      operation: 'restart',
      suffix: uniqueId('all'),
      taskQueue,
    });
    // Kill the worker the moment Patroni has taken the POST /restart for the victim (its state
    // leaves running or its postmaster is new), i.e. while restartMember is in flight.
    // (Its PostgreSQL port refusing connections: Patroni is restarting it. Asking Patroni's REST API
    // instead is too slow — it queries PostgreSQL itself — and a replica restart lasts ~0.3 s.)
    const deadline = Date.now() + 120_000;
    for (;;) {
      assert.ok(Date.now() < deadline, `${victim} never started restarting`);
      assert.ok(count('restartMember') <= 2, `${victim}'s restart finished before it was seen (timing)`);
      if (count('restartMember') === 2 && (await refused(pg(victim).ip, inv.ports.postgresql))) break;
      await sleep(5);
    }
    await worker.kill();
    const calledBeforeKill = count('restartMember');
    worker = startWorker('worker-2');
    await ready(worker);
    const report = notDryRun(await handle.result());
    await sleep(1500);
    await writer.stop();
    const seen = await times.stop();

    // Order: replicas one at a time, the leader last, in place.
    assert.deepEqual(
      report.members.map((m) => [m.member, m.role]),
      [...replicas.map((r) => [r, 'replica']), [leader, 'leader']],
    );
    assert.equal(report.leaderAfter, leader);
    // The victim's restart was re-run by the new worker, which found it already restarted.
    assert.equal(calledBeforeKill, 2, 'killed during the second restartMember');
    assert.equal(count('restartMember'), 4, 'three members + the retried attempt');
    const v = report.members.find((m) => m.member === victim)!;
    assert.equal(v.action, 'already-restarted', JSON.stringify(v));
    // Each postmaster restarted exactly once, and the report says so.
    const startedAfter = await startTimesNow();
    assertRestartedOnce(seen, startedBefore, startedAfter);
    for (const m of report.members) assert.equal(m.postmasterAfter, startedAfter[m.member]);
    // The steps each name their node.
    const p = await handle.query(progress);
    for (const m of report.members)
      assert.ok(p.steps.some((s) => s.node === m.member && s.status === 'completed'));

    // No acknowledged write lost: every id the writer saw committed is on the final leader.
    assert.ok(
      writer.acked.length > 100,
      `writes flowed: ${writer.acked.length} acknowledged, ${writer.errors} errors`,
    );
    const final = await leaderNow();
    const missing = await sql(pg(final).ip, inv.ports.postgresql, async (c) =>
      (
        await c.query<{ id: string }>(
          `select a.id from unnest($1::bigint[]) a(id) left join ${writer.table} t using (id) where t.id is null`,
          [writer.ackedIds],
        )
      ).rows.map((r) => r.id),
    );
    assert.deepEqual(missing, [], `acknowledged writes missing on ${final}`);
    const after = await streamingReplicas(final);
    assert.deepEqual(after, replicas.slice().sort());
    console.log(
      `rollingRestart: ${writer.acked.length} writes acknowledged, ${writer.errors} failed attempts, 0 lost; ` +
        report.members.map((m) => `${m.member} ${m.action} ${(m.tookMs / 1000).toFixed(1)}s`).join(', '),
    );
  },
);

void test(
  'applyConfig: work_mem (pgha config set, no restart), max_connections (pending members restart, replicas first), the same again changes nothing',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await healthy();
    const members = inv.nodes.postgres.map((n) => n.hostname);
    const startOf = async () =>
      Object.fromEntries(
        await Promise.all(members.map(async (m) => [m, (await patroni(m))!.postmaster_start_time])),
      );

    // work_mem: a reload is enough.
    const wm = (await show(leader, 'work_mem')) === '6MB' ? '5MB' : '6MB';
    // (A member may still have a restart pending from an earlier change, e.g. the previous test's
    // lowered max_connections reaching the replicas only after the leader restarted: applyConfig
    // restarts every pending member, so those — and only those — may restart here.)
    const pendingBefore: string[] = [];
    for (const m of members) if ((await patroni(m))?.pending_restart) pendingBefore.push(m);
    const before = await startOf();
    const cli = pgha('config', 'set', '--cluster', LAB, `work_mem=${wm}`);
    assert.equal(cli.status, 0, cli.out);
    assert.match(cli.out, new RegExp(`changed work_mem: .* → ${wm}\\n`));
    assert.match(cli.out, new RegExp(`restarted: ${pendingBefore.length ? '' : 'none'}`));
    for (const m of members) assert.equal(await show(m, 'work_mem'), wm, `${m} runs with work_mem ${wm}`);
    const afterWm = await startOf();
    for (const m of members) {
      if (pendingBefore.includes(m)) assert.match(cli.out, new RegExp(`restarted: .*${m}`));
      else assert.equal(afterWm[m], before[m], `${m} not restarted for work_mem`);
    }

    // max_connections needs a restart. Raised (replicas first, the leader last), then lowered back
    // (the leader first: a standby must keep it at least as high as its primary). Each time every
    // member is flagged, restarts exactly once and then runs the new value.
    const running = await Promise.all(members.map((m) => show(m, 'max_connections')));
    const base = String(Math.max(...running.map(Number)));
    const up = String(Number(base) + 10);
    let mc = base;
    for (const [value, order] of [
      [up, 'replicas-first'],
      [base, 'leader-first'],
    ] as const) {
      mc = value;
      const t0 = await startTimesNow();
      const times = new StartTimes().start();
      await sleep(300);
      const h = await startRunbook<typeof applyConfig>(env.client, {
        workflow: 'applyConfig',
        args: [{ inventory: input, set: { max_connections: value }, restart: 'in-place' }],
        cluster: inv.cluster,
        operation: 'config',
        suffix: uniqueId('mc'),
        taskQueue,
      });
      const r = notDryRun(await h.result());
      const seen = await times.stop();
      assertRestartedOnce(seen, t0, await startTimesNow());
      assert.deepEqual(
        r.changed.map((c) => [c.key, String(c.to), c.needsRestart]),
        [['max_connections', value, true]],
      );
      assert.deepEqual(
        r.pendingRestart.slice().sort(),
        members.slice().sort(),
        'every member flagged pending_restart',
      );
      assert.equal(r.restartOrder, order, `max_connections → ${value}`);
      const roles = r.restart!.members.map((m) => m.role);
      assert.deepEqual(
        roles,
        order === 'leader-first' ? ['leader', 'replica', 'replica'] : ['replica', 'replica', 'leader'],
      );
      assert.equal(r.restart!.members.find((m) => m.role === 'leader')?.member, leader);
      assert.deepEqual(r.restarted.slice().sort(), members.slice().sort());
      for (const m of members) {
        assert.equal(await show(m, 'max_connections'), value, `${m} runs with max_connections ${value}`);
        assert.ok(!(await patroni(m))!.pending_restart, `${m} has no pending restart left`);
      }
    }

    // The same again: nothing to PATCH, nothing pending, nobody restarts.
    const steady = await startOf();
    const again = await startRunbook<typeof applyConfig>(env.client, {
      workflow: 'applyConfig',
      args: [{ inventory: input, set: { max_connections: mc, work_mem: wm }, restart: 'in-place' }],
      cluster: inv.cluster,
      operation: 'config',
      suffix: uniqueId('again'),
      taskQueue,
    });
    const r2 = notDryRun(await again.result());
    assert.deepEqual(r2.changed, []);
    assert.deepEqual(r2.unchanged.map((u) => u.key).sort(), ['max_connections', 'work_mem']);
    assert.deepEqual(r2.restarted, []);
    assert.deepEqual(await startOf(), steady);
  },
);

void test(
  'reinitReplica re-creates a replica from the leader (worker SIGKILLed mid-re-clone): its data directory is new, once; earlier rows are there; it streams again',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await healthy();
    const target = inv.nodes.postgres.map((n) => n.hostname).find((h) => h !== leader)!;
    const dataDir = inv.postgresql.dataDir ?? `/var/lib/pgsql/${inv.versions.postgresql.split('.')[0]}/data`;
    const marker = `${dataDir}/pgha-reinit-test-marker`;
    inCt(pg(target).vmid, ['touch', marker]);
    const table = `rr_reinit_${Date.now()}`;
    await sql(inv.nodes.haproxy[0]!.ip, inv.ports.haproxyWrite, async (c) => {
      await c.query(`create table ${table} (id int primary key)`);
      await c.query(`insert into ${table} select generate_series(1, 1000)`);
    });
    const since = Math.floor(Date.now() / 1000) - 1;
    const calls0 = count('reinitMember');
    const h = await startRunbook<typeof reinitReplica>(env.client, {
      workflow: 'reinitReplica',
      args: [{ inventory: input, member: target }],
      cluster: inv.cluster,
      operation: 'reinit',
      suffix: uniqueId('re'),
      taskQueue,
    });
    // The worker dies while Patroni re-clones the replica (its PostgreSQL port refuses); a new one
    // resumes: the retried step finds the re-clone under way or done and does not ask for another.
    const deadline = Date.now() + 120_000;
    for (;;) {
      assert.ok(Date.now() < deadline, `${target} never went down for the re-clone`);
      if (count('reinitMember') > calls0 && (await refused(pg(target).ip, inv.ports.postgresql))) break;
      await sleep(5);
    }
    await worker.kill();
    worker = startWorker('worker-3');
    await ready(worker);
    const r = (await h.result()) as ReinitReport;
    assert.equal(r.member, target);
    assert.equal(r.leader, leader);
    assert.equal(count('reinitMember'), calls0 + 2, 'the step in flight was retried by the new worker');
    assert.equal(r.reinit.action, 'already-restarted', JSON.stringify(r.reinit));
    const wiped = inCt(pg(target).vmid, [
      'journalctl',
      '-u',
      'patroni',
      '--since',
      `@${since}`,
      '--no-pager',
      '-o',
      'cat',
    ])
      .split('\n')
      .filter((l) => /Removing data directory/.test(l));
    assert.equal(wiped.length, 1, `re-cloned exactly once: ${JSON.stringify(wiped)}`);
    assert.notEqual(r.reinit.postmasterAfter, r.reinit.postmasterBefore);
    const gone = spawnSync('lxc-attach', [
      '-n',
      String(pg(target).vmid),
      '-P',
      LXC_PATH,
      '--',
      'test',
      '-e',
      marker,
    ]);
    assert.equal(gone.status, 1, `${marker} must be gone: the data directory was re-created`);
    const n = await sql(
      pg(target).ip,
      inv.ports.postgresql,
      async (c) => (await c.query<{ n: string }>(`select count(*) as n from ${table}`)).rows[0]!.n,
    );
    assert.equal(n, '1000');
    assert.ok((await streamingReplicas(leader)).includes(target));
    assert.equal(await leaderNow(), leader, 'the leader did not change');
  },
);

void test('refusals name the fix and touch nothing', { skip, timeout: 300_000 }, async () => {
  const leader = await healthy();
  const replica = inv.nodes.postgres.map((n) => n.hostname).find((h) => h !== leader)!;
  const starts = async () =>
    Promise.all(inv.nodes.postgres.map(async (n) => (await patroni(n.hostname))?.postmaster_start_time));
  const before = await starts();

  let cli = pgha('reinit', '--cluster', LAB, '--member', leader);
  assert.equal(cli.status, 1, cli.out);
  assert.match(
    cli.out,
    new RegExp(
      `${leader} is the leader: a leader cannot be re-initialised. Switch over first \\(pgha switchover`,
    ),
  );
  cli = pgha('reinit', '--cluster', LAB, '--member', 'pg999');
  assert.equal(cli.status, 2, cli.out);
  assert.match(cli.out, /--member pg999: not a member of cluster/);
  cli = pgha('restart', '--cluster', LAB, '--member', 'pg999');
  assert.equal(cli.status, 2, cli.out);
  assert.match(cli.out, /--member pg999: not a member of cluster .*its members: /);
  cli = pgha('restart', '--cluster', LAB, '--leader', 'sideways');
  assert.equal(cli.status, 2, cli.out);
  assert.match(cli.out, /--leader sideways: use in-place or switchover/);
  cli = pgha('config', 'set', '--cluster', LAB, 'listen_addresses=*');
  assert.equal(cli.status, 2, cli.out);
  assert.match(cli.out, /listen_addresses cannot be set cluster-wide/);
  cli = pgha('config', 'set', '--cluster', LAB, 'shared_bufers=1GB');
  assert.equal(cli.status, 1, cli.out);
  assert.match(cli.out, /knows no parameter shared_bufers \(not in pg_settings\); check the spelling/);
  cli = pgha('config', 'set', '--cluster', LAB, 'work_mem=lots');
  assert.equal(cli.status, 1, cli.out);
  assert.match(cli.out, /work_mem=lots: expected a number/);

  // A replica that is down: the pre-check refuses, naming it.
  inCt(pg(replica).vmid, ['systemctl', 'stop', 'patroni']);
  try {
    const f = await failure(
      startRunbook<typeof rollingRestart>(env.client, {
        workflow: 'rollingRestart',
        args: [{ inventory: input }],
        cluster: inv.cluster,
        operation: 'restart',
        suffix: uniqueId('down'),
        taskQueue,
      }).then((h) => h.result()),
    );
    assert.equal(f.type, 'MaintenanceRefused');
    assert.match(f.message, new RegExp(`${replica}: (its REST API does not answer|not in /cluster)`));
    assert.match(f.message, /Nothing was touched/);
  } finally {
    inCt(pg(replica).vmid, ['systemctl', 'start', 'patroni']);
  }
  await eventually(
    'the replica back',
    () => streamingReplicas(leader),
    (s) => s.includes(replica),
    120_000,
  );
  const after = await starts();
  // Only the stopped replica has a new postmaster (its own stop/start); nobody else was touched.
  inv.nodes.postgres.forEach((n, i) => {
    if (n.hostname !== replica) assert.equal(after[i], before[i], `${n.hostname} untouched`);
  });
});

void test(
  'pgha restart --leader switchover: replicas first, the leadership moves (timeline +1), the old leader restarts as a replica',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await healthy();
    const timeline = (await patroni(leader))!.timeline!;
    const before = await startTimesNow();
    const r = pgha('restart', '--cluster', LAB, '--leader', 'switchover');
    assert.equal(r.status, 0, r.out);
    const now = await healthy();
    assert.notEqual(now, leader, 'the leadership moved');
    assert.equal((await patroni(now))!.timeline, timeline + 1);
    assert.match((await patroni(leader))!.role, /replica/);
    const after = await startTimesNow();
    for (const n of inv.nodes.postgres)
      assert.notEqual(after[n.hostname], before[n.hostname], `${n.hostname} restarted`);
  },
);
