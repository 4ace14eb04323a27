/**
 * upgradePostgresql end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml),
 * with a real worker process, checked from outside pgha (Patroni's REST API, SQL, the CTs through
 * lxc-attach):
 *  1. refusals and the dry run through `pgha upgrade postgresql`: a downgrade, a build the install
 *     source does not have — each naming the fix; `--dry-run` prints the ordered plan and touches
 *     nothing (no postmaster restarted, no link moved, no build unpacked);
 *  2. 18.4 → 18.6 while a writer commits through HAProxy's write port; the worker is SIGKILLed while
 *     the second replica restarts and a new worker finishes: every member's `SELECT version()` says
 *     18.6, each postmaster restarted exactly once, the timeline moved by exactly 1 (one switchover),
 *     every acknowledged row on the final leader, both replicas streaming, the old build still there;
 *  3. the same again: a no-op that says so, nothing restarted.
 * The cluster is deployed first if needed, and put back on 18.4 if an earlier run left it on 18.6.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { upgradePostgresql } from '../../workflows/upgrade-postgresql';
import { inCt, sqlAs, LabWriter, MEMBER_STREAMING, refused } from '../helpers/lab-direct';
import { activityCalls, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { labNotUpReason } from '../../lab/testing';
import type { Proc } from '../helpers/local-common';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import { startTestServer, testCodecKey, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const FROM = '18.4';
const TO = '18.6';

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let taskQueue: string;
let countDir: string;
let worker: Proc;
const workers: Proc[] = [];

// ---- the cluster asked directly, not through pgha ----

const pg = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;
const members = () => inv.nodes.postgres.map((n) => n.hostname);
const sql = <T>(host: string, port: number, fn: (c: Client) => Promise<T>) => sqlAs(inv, host, port, fn);
const version = (m: string) =>
  sql(
    pg(m).ip,
    inv.ports.postgresql,
    async (c) => (await c.query<{ v: string }>('select version() as v')).rows[0]!.v,
  );
const sh = (m: string, ...argv: string[]) => inCt(pg(m).vmid, argv).trim();

interface PatroniStatus {
  role: string;
  state: string;
  timeline?: number;
  server_version?: number;
  postmaster_start_time?: string;
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
  for (const m of members()) {
    const s = await patroni(m);
    if (s && (s.role === 'master' || s.role === 'primary') && s.state === 'running') return m;
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
async function healthy(): Promise<string> {
  let leader = '';
  await waitFor('a leader and both replicas streaming', 180_000, async () => {
    try {
      leader = await leaderNow();
      return (await streamingReplicas(leader)).length === members().length - 1;
    } catch {
      return false;
    }
  });
  return leader;
}
const timeline = async (leader: string) =>
  sql(pg(leader).ip, inv.ports.postgresql, async (c) =>
    Number((await c.query<{ t: string }>('select timeline_id as t from pg_control_checkpoint()')).rows[0]!.t),
  );

/** Every distinct postmaster_start_time each member reports, polled every 100 ms. */
class StartTimes {
  readonly seen = new Map<string, string[]>();
  private stopped = false;
  private loop?: Promise<void>;
  start(): this {
    this.loop = (async () => {
      while (!this.stopped) {
        await Promise.all(
          members().map(async (m) => {
            const t = (await patroni(m))?.postmaster_start_time;
            if (!t) return;
            const list = this.seen.get(m) ?? [];
            if (list[list.length - 1] !== t) list.push(t);
            this.seen.set(m, list);
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
async function startTimesNow(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of members()) {
    const s = await patroni(m);
    assert.ok(s?.postmaster_start_time, `${m} reports its postmaster start time`);
    out[m] = s.postmaster_start_time;
  }
  return out;
}

/** Puts every member back on 18.4 (an earlier run upgraded it): link back, restart all through patronictl. */
/** An interrupted earlier run may have left replicas drained in the read port: ready on every HAProxy. */
function resetDrains(): void {
  for (const h of inv.nodes.haproxy) {
    for (const m of members()) {
      inCt(h.vmid, ['socat', 'stdio', 'unix-connect:/run/haproxy/admin.sock'], {
        stdin: `set server postgres_replicas/${m} state ready\n`,
      });
    }
  }
}

async function backTo184(): Promise<void> {
  const on = await Promise.all(members().map(async (m) => (await patroni(m))?.server_version));
  if (on.every((v) => v === 180004)) return;
  for (const m of members()) {
    sh(m, 'ln', '-sfnT', '/usr/pgsql-18.4.0', '/usr/pgsql-18');
    sh(m, 'ldconfig');
  }
  const leader = await leaderNow();
  inCt(
    pg(leader).vmid,
    [
      '/opt/patroni/bin/patronictl',
      '-c',
      '/etc/patroni/patroni.yml',
      'restart',
      inv.patroni.scope,
      '--force',
    ],
    {
      timeoutMs: 180_000,
    },
  );
  await waitFor('every member on 18.4', 180_000, async () =>
    (await Promise.all(members().map(async (m) => (await patroni(m))?.server_version))).every(
      (v) => v === 180004,
    ),
  );
  await healthy();
}

// ---- the worker process and the CLI ----

function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  workers.push(w);
  return w;
}
const count = (activity: string) => activityCalls(countDir, activity);

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
  resetDrains();
  env = await startTestServer();
  taskQueue = uniqueId('upgrade');
  countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
  worker = startWorker('worker-1');
  await workerReady(worker, 300_000);
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    suffix: uniqueId('ensure'),
    taskQueue,
  });
  await d.result();
  await healthy();
  await backTo184();
});

/** Writers and samplers a test started: stopped in after() too, so a failed test leaves no loop running. */
const loops: { stop(): Promise<unknown> }[] = [];

after(async () => {
  for (const l of loops) await l.stop().catch(() => undefined);
  for (const w of workers) await w.stop();
  await env?.teardown();
});

void test(
  'refusals name the fix; --dry-run prints the plan and touches nothing',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await healthy();
    const t0 = await startTimesNow();
    const links0 = members().map((m) => sh(m, 'readlink', '/usr/pgsql-18'));
    const usr0 = members().map((m) => sh(m, 'ls', '/usr'));

    const down = pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', '18.3');
    assert.notEqual(down.status, 0, down.out);
    assert.match(down.out, /runs PostgreSQL 18\.4, newer than the target 18\.3: a downgrade is refused/);
    const absent = pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', '18.9');
    assert.notEqual(absent.status, 0, absent.out);
    assert.match(
      absent.out,
      /PostgreSQL 18\.9 is not in the install source of \S+ \(it has 18\.4\.0, 18\.6\.0\)/,
    );
    const bad = pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', 'latest');
    assert.equal(bad.status, 2, bad.out);
    assert.match(bad.out, /--to "latest" is not a PostgreSQL minor version/);

    const dry = pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', TO, '--dry-run');
    assert.equal(dry.status, 0, dry.out);
    assert.match(dry.out, /dry-run: dry run/);
    // Replicas first, the leader last, each with its steps.
    const order = [...dry.out.matchAll(/^\d+\. (\S+) \((leader|replica)/gm)].map((m) => [m[1], m[2]]);
    assert.equal(order.length, 3, dry.out);
    assert.deepEqual(order[2], [leader, 'leader']);
    assert.match(dry.out, /switchover \S+ → an upgraded replica/);

    assert.deepEqual(await startTimesNow(), t0, 'nothing restarted');
    assert.deepEqual(
      members().map((m) => sh(m, 'readlink', '/usr/pgsql-18')),
      links0,
      'no link moved',
    );
    assert.deepEqual(
      members().map((m) => sh(m, 'ls', '/usr')),
      usr0,
      'nothing unpacked',
    );
  },
);

void test(
  `${FROM} → ${TO} while writes flow; worker SIGKILLed mid-restart; each member restarted once, one switchover, no row lost`,
  { skip, timeout: 900_000 },
  async () => {
    const leader = await healthy();
    const replicas = members().filter((m) => m !== leader);
    const tl0 = await timeline(leader);
    const t0 = await startTimesNow();
    const times = new StartTimes().start();
    const writer = await new LabWriter(inv, `up_writes_${Date.now()}`, inv.nodes.haproxy[0]!.ip).start();
    loops.push(times, writer);
    await sleep(1000);
    const rowsBefore = writer.acked.length;

    const handle = await startRunbook<typeof upgradePostgresql>(env.client, {
      workflow: 'upgradePostgresql',
      args: [{ inventory: input, to: TO }],
      cluster: inv.cluster,
      operation: 'upgrade',
      suffix: uniqueId('pg'),
      taskQueue,
    });
    // SIGKILL the worker the moment the second replica's PostgreSQL goes down under the restart.
    const calls0 = count('upgradeRestartMember');
    const victim = () => replicas[1]!;
    const deadline = Date.now() + 300_000;
    for (;;) {
      assert.ok(Date.now() < deadline, `${victim()} never started restarting`);
      const n = count('upgradeRestartMember') - calls0;
      assert.ok(n <= 2, `${victim()}'s restart finished before it was seen (timing)`);
      if (n === 2 && (await refused(pg(victim()).ip, inv.ports.postgresql))) break;
      await sleep(5);
    }
    await worker.kill();
    worker = startWorker('worker-2');
    await workerReady(worker, 300_000);
    const report = await handle.result();
    await sleep(1500);
    await writer.stop();
    const seen = await times.stop();

    // Every member runs 18.6 (asked over SQL), through the link; the old build is still there.
    for (const m of members()) {
      assert.match(await version(m), /^PostgreSQL 18\.6\b/, `${m} version()`);
      assert.equal(sh(m, 'readlink', '/usr/pgsql-18'), '/usr/pgsql-18.6.0');
      assert.match(sh(m, '/usr/pgsql-18.4.0/bin/postgres', '--version'), /18\.4/);
    }
    // Replicas first, the leader last; one switchover away from the old leader.
    assert.deepEqual(
      report.members.map((m) => m.member),
      [...replicas, leader],
    );
    for (const m of report.members) assert.deepEqual([m.from, m.to], [FROM, TO], JSON.stringify(m));
    assert.equal(report.switchover?.from, leader);
    assert.ok(replicas.includes(report.switchover!.to));
    // The restarted victim was found already on 18.6 by the retried attempt (not restarted again).
    assert.equal(report.members.find((m) => m.member === victim())!.action, 'already-upgraded');
    // Each postmaster restarted exactly once (the old leader by its demotion).
    const t1 = await startTimesNow();
    for (const m of members()) {
      assert.notEqual(t1[m], t0[m], `${m} restarted`);
      const extra = (seen.get(m) ?? []).filter((t) => t !== t0[m] && t !== t1[m]);
      assert.deepEqual(extra, [], `${m} restarted more than once: ${JSON.stringify(seen.get(m))}`);
    }
    // Exactly one switchover: the timeline moved by exactly 1.
    const final = await leaderNow();
    assert.equal(final, report.switchover!.to);
    assert.equal(await timeline(final), tl0 + 1, 'timeline +1');
    assert.deepEqual([report.timelineBefore, report.timelineAfter], [tl0, tl0 + 1]);
    // Healthy: both others streaming from the new leader.
    assert.deepEqual(
      await streamingReplicas(final),
      members()
        .filter((m) => m !== final)
        .sort(),
    );
    // Every acknowledged row — before and during — is on the new leader.
    assert.ok(writer.acked.length > rowsBefore + 100, `writes flowed: ${writer.acked.length}`);
    const missing = await sql(pg(final).ip, inv.ports.postgresql, async (c) =>
      (
        await c.query<{ id: string }>(
          `select a.id from unnest($1::bigint[]) a(id) left join ${writer.table} t using (id) where t.id is null`,
          [writer.ackedIds],
        )
      ).rows.map((r) => r.id),
    );
    assert.deepEqual(missing, [], `acknowledged writes missing on ${final}`);
    console.log(
      `upgradePostgresql: ${writer.acked.length} writes acknowledged, ${writer.errors} failed attempts, 0 lost, ` +
        `longest write gap ${writer.longestGap(Date.parse(report.startedAt), Date.parse(report.startedAt) + report.tookMs)} ms; ` +
        report.members.map((m) => `${m.member} ${m.action} ${(m.tookMs / 1000).toFixed(1)}s`).join(', '),
    );
  },
);

void test('the same again: a no-op that says so, nothing restarted', { skip, timeout: 300_000 }, async () => {
  await healthy();
  const t0 = await startTimesNow();
  const again = pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', TO);
  assert.equal(again.status, 0, again.out);
  assert.match(again.out, /already-at-target: every member already runs PostgreSQL 18\.6: nothing to do/);
  assert.deepEqual(await startTimesNow(), t0);
});
