/**
 * switchover / failover end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml),
 * run by a real pgha worker process and checked from outside pgha (Patroni's REST API, SQL directly
 * on the members and through HAProxy, lxc-attach):
 *  - switchover to a named replica and to any replica: roles, timeline +1, the old leader streaming
 *    from the new one, rows written before still there, writes through both HAProxy land on the new leader;
 *  - clear refusals: the candidate is the leader, unknown, lagging for real (WAL replay paused on it
 *    while the leader writes), tagged nofailover (patroni.yml + reload) — nothing changes;
 *  - a worker SIGKILLed between the switchover request and its verification (at a point confirmed
 *    with the worker frozen: Patroni demoting the old leader, the candidate still drained on every
 *    HAProxy, so the kill never lands after the hand-off finished): a spare worker finishes,
 *    the retried hand-off finds the switchover done or under way (timeline +1, not +2), Patroni's
 *    log shows exactly one POST /switchover, and it reports it;
 *  - failover after `pgha lab fault stop-ct <leader>`; the CT is started again and rejoins as a replica.
 * The cluster is deployed first (deployCluster: idempotent, fast on a deployed cluster).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { patroniConfigPath } from '../../activities/render/patroni';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { HandoffReport, failover, switchover } from '../../workflows/switchover';
import { errorMessage } from '../../workflows/steps';
import {
  drainedOnEvery,
  inCt,
  sqlAs,
  switchoverRequests,
  timelineOf as timelineOfHost,
  withRuntime,
  clusterDirect,
  leaderIn,
  replicasRunningIn,
  MEMBER_STREAMING,
} from '../helpers/lab-direct';
import type { ClusterMembers } from '../helpers/lab-direct';
import { HAPROXY_WRITE_BACKEND } from '../../activities/render';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import {
  activityCallers,
  activityCalls,
  killAt,
  startWorkerProc,
  workerReady,
} from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let worker: Proc;
const taskQueue = uniqueId('sw-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
const procs: Proc[] = [];

function pgha(...args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 300_000,
  });
}
function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  procs.push(w);
  return w;
}
const ready = (w: Proc) => workerReady(w, 300_000); // a loaded 2-core machine takes minutes to bundle
const count = (activity: string) => activityCalls(countDir, activity);

const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const vmid = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.vmid;
const nameOf = (addr: string) => inv.nodes.postgres.find((n) => n.ip === addr)?.hostname ?? addr;

const sql = <T>(host: string, port: number, fn: (c: Client) => Promise<T>) => sqlAs(inv, host, port, fn);
const one = async <T>(host: string, q: string, params: unknown[] = [], port = inv.ports.postgresql) =>
  sql(host, port, async (c) => (await c.query(q, params)).rows[0] as T);

type ClusterJson = ClusterMembers;
async function clusterJson(): Promise<ClusterJson> {
  const c = await clusterDirect(inv);
  if (!c) throw new Error('no Patroni member answers /cluster');
  return c;
}
const leaderOf = leaderIn;

/** Leader writable and every other member streaming from it with lag under 1 MiB. */
async function healthy(timeoutMs = 180_000): Promise<string> {
  let leader = '';
  await waitFor('a leader with every replica streaming', timeoutMs, async () => {
    try {
      const c = await clusterJson();
      const l = leaderOf(c);
      if (!l || !replicasRunningIn(c, inv.nodes.postgres.length - 1)) return false;
      const r = await one<{ n: number; rec: boolean }>(
        ip(l),
        `select (select count(*) from pg_stat_replication where ${MEMBER_STREAMING}
                 and pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 1048576)::int as n, pg_is_in_recovery() as rec`,
      );
      leader = l;
      return !r.rec && r.n === inv.nodes.postgres.length - 1;
    } catch {
      return false;
    }
  });
  return leader;
}
const timelineOf = (name: string) => timelineOfHost(inv, ip(name));

async function start<W extends typeof switchover | typeof failover>(
  workflow: 'switchover' | 'failover',
  args: Omit<Parameters<W>[0], 'inventory'>,
) {
  return startRunbook<W>(env.client, {
    workflow,
    args: [{ inventory: input, ...args }] as Parameters<W>,
    cluster: inv.cluster,
    operation: workflow,
    taskQueue,
  });
}
async function runOk(workflow: 'switchover' | 'failover', args: object): Promise<HandoffReport> {
  const h = await start(workflow, args as never);
  return (await h.result()) as HandoffReport;
}
async function refusal(args: object, re: RegExp): Promise<void> {
  const before = leaderOf(await clusterJson());
  const h = await start('switchover', args as never);
  await assert.rejects(h.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    assert.match(errorMessage(err.cause), re);
    return true;
  });
  assert.equal(leaderOf(await clusterJson()), before, 'the leader did not change');
}

/** Everything a completed switchover must show, checked from outside pgha. */
async function checkSwitched(r: HandoffReport, from: string, tlBefore: number, rowId: string) {
  assert.equal(r.from, from);
  assert.notEqual(r.to, from);
  const c = await clusterJson();
  assert.equal(leaderOf(c), r.to, JSON.stringify(c));
  assert.equal(await timelineOf(r.to), tlBefore + 1, 'timeline +1');
  assert.equal(r.timelineAfter, tlBefore + 1);
  const streaming = await one<{ state: string }>(
    ip(r.to),
    `select state from pg_stat_replication where application_name = $1`,
    [from],
  );
  assert.equal(streaming?.state, 'streaming', `${from} streams from ${r.to}`);
  assert.equal((await one<{ rec: boolean }>(ip(from), 'select pg_is_in_recovery() as rec')).rec, true);
  const row = await one<{ n: number }>(
    ip(r.to),
    'select count(*)::int as n from pgha_sw_test where id = $1',
    [rowId],
  );
  assert.equal(row.n, 1, 'the row written before the switchover is on the new leader');
  for (const h of inv.nodes.haproxy) {
    const w = await one<{ addr: string }>(
      h.ip,
      `insert into pgha_sw_test (note) values ('after') returning host(inet_server_addr()) as addr`,
      [],
      inv.ports.haproxyWrite,
    );
    assert.equal(nameOf(w.addr), r.to, `a write through ${h.hostname} lands on the new leader`);
  }
}
const writeRow = async () =>
  (
    await one<{ id: string }>(
      inv.nodes.haproxy[0]!.ip,
      `insert into pgha_sw_test (note) values ('before') returning id::text`,
      [],
      inv.ports.haproxyWrite,
    )
  ).id;

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  worker = startWorker('worker-1');
  await ready(worker);
  // Deployed first (idempotent: a no-op on a deployed cluster).
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    taskQueue,
  });
  await d.result();
  const l = await healthy();
  await one(ip(l), 'create table if not exists pgha_sw_test (id bigserial primary key, note text)');
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test('switchover to a named replica, then to any replica', { skip, timeout: 300_000 }, async () => {
  let from = await healthy();
  let tl = await timelineOf(from);
  let id = await writeRow();
  const to = inv.nodes.postgres.map((n) => n.hostname).find((n) => n !== from)!;
  const r1 = await runOk('switchover', { candidate: to });
  assert.equal(r1.to, to);
  assert.equal(r1.chosen, false);
  assert.equal(r1.outcome, 'switched');
  await checkSwitched(r1, from, tl, id);

  from = await healthy();
  tl = await timelineOf(from);
  id = await writeRow();
  const r2 = await runOk('switchover', {});
  assert.equal(r2.chosen, true);
  await checkSwitched(r2, from, tl, id);
});

void test(
  'refusals: the leader, an unknown member, a lagging replica, a nofailover one',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await healthy();
    const [a, b] = inv.nodes.postgres.map((n) => n.hostname).filter((n) => n !== leader) as [string, string];
    await refusal(
      { candidate: leader },
      new RegExp(`candidate ${leader} is the leader already: nothing to switch over; choose`),
    );
    await refusal({ candidate: 'pg999' }, /candidate pg999 is not a member of cluster .*: choose one of/);

    // Lagging for real: WAL replay paused on `a` while the leader writes ~4 MiB.
    await one(ip(a), 'select pg_wal_replay_pause()');
    try {
      await one(ip(leader), 'create table if not exists pgha_sw_lag (x text)');
      await one(ip(leader), `insert into pgha_sw_lag select repeat('x', 1000) from generate_series(1, 4000)`);
      await waitFor(`${a} replay lag over 1 MiB`, 30_000, async () => {
        const r = await one<{ lag: string }>(
          ip(leader),
          `select pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text as lag from pg_stat_replication where application_name = $1`,
          [a],
        );
        return Number(r?.lag ?? 0) > 1024 * 1024;
      });
      await refusal(
        { candidate: a },
        new RegExp(
          `candidate ${a} lags [0-9.]+ MiB behind the leader \\(limit 1\\.0 MiB from maximum_lag_on_failover\\); wait, or choose ${b} \\(lag`,
        ),
      );
    } finally {
      await one(ip(a), 'select pg_wal_replay_resume()');
      await one(ip(leader), 'drop table if exists pgha_sw_lag');
    }

    // nofailover through patroni.yml + reload.
    const cfg = patroniConfigPath(inv);
    const tag = (v: boolean) => {
      inCt(vmid(b), ['sed', '-i', `s/nofailover: ${!v}/nofailover: ${v}/`, cfg]);
      inCt(vmid(b), ['systemctl', 'reload', 'patroni']);
    };
    const tagged = async (v: boolean) =>
      waitFor(`${b} nofailover ${v} in /cluster`, 60_000, async () => {
        const m = (await clusterJson()).members.find((x) => x.name === b);
        return Boolean(m?.tags?.nofailover) === v;
      });
    tag(true);
    try {
      await tagged(true);
      await refusal({ candidate: b }, new RegExp(`candidate ${b} is tagged nofailover .*remove the tag`));
    } finally {
      tag(false);
      await tagged(false);
    }
    await healthy();
  },
);

void test(
  'a worker SIGKILLed between the switchover request and its verification: resumed, exactly one POST reached Patroni',
  { skip, timeout: 300_000 },
  async () => {
    const from = await healthy();
    const to = inv.nodes.postgres.map((n) => n.hostname).find((n) => n !== from)!;
    const tl = await timelineOf(from);
    const id = await writeRow();
    const cutBefore = count('switchoverCutover');
    const verifyBefore = count('switchoverVerify');
    // The worker that takes over is already polling: the retry starts as soon as the heartbeat
    // timeout notices the dead one (seconds), while the hand-off may still be under way.
    const spare = startWorker('worker-2');
    await ready(spare);
    const since = inCt(vmid(from), ['date', '+%s']).trim();
    const h = await start('switchover', { candidate: to });
    // Either worker may take the hand-off: the one that runs it wrote its pid before it ran.
    let runner: Proc | undefined;
    await waitFor('the hand-off started', 120_000, async () => {
      const pid = activityCallers(countDir, 'switchoverCutover')[cutBefore];
      runner = [worker, spare].find((w) => w.child.pid === pid);
      return runner !== undefined;
    });
    // Killed at a point the test confirms with the worker frozen, so the kill cannot land after
    // it moved on: Patroni has the request (the old leader's own /primary answers, and not 200:
    // it demotes) and the candidate is still drained on every HAProxy (the hand-off has not
    // routed it: that happens only once it is writable).
    let demoting = false;
    await withRuntime(inv, (rt) =>
      killAt(runner!, 'the old leader demoting, the candidate not yet routed', 60_000, async () => {
        if (!demoting) {
          const r = await fetch(`http://${ip(from)}:${inv.ports.patroniRestApi}/primary`, {
            signal: AbortSignal.timeout(1000),
          });
          demoting = r.status !== 200;
        }
        return demoting && (await drainedOnEvery(rt, HAPROXY_WRITE_BACKEND, [to]));
      }),
    );
    assert.equal(count('switchoverVerify'), verifyBefore, 'killed before the verification');
    const r = (await h.result()) as HandoffReport;
    assert.equal(
      r.outcome,
      'already-done',
      'the retried hand-off found it done (or under way) and did not POST',
    );
    assert.equal(count('switchoverCutover') - cutBefore, 2, 'the hand-off ran once more after the kill');
    assert.equal(switchoverRequests(inv, since), 1, 'Patroni received exactly one POST /switchover');
    await checkSwitched(r, from, tl, id); // timeline +1, not +2: one switchover
    worker = runner === worker ? spare : worker;
  },
);

void test(
  'failover after the leader CT is stopped; it rejoins as a replica when started',
  { skip, timeout: 420_000 },
  async () => {
    const dead = await healthy();
    const tl = await timelineOf(dead);
    const id = await writeRow();
    // A healthy leader: failover refused.
    const cand = inv.nodes.postgres.map((n) => n.hostname).find((n) => n !== dead)!;
    const h0 = await start('failover', { candidate: cand });
    await assert.rejects(h0.result(), (err: unknown) => {
      assert.match(
        errorMessage((err as WorkflowFailedError).cause),
        new RegExp(`the leader ${dead} is healthy`),
      );
      return true;
    });
    pgha('lab', '--inventory', LAB, 'fault', 'stop-ct', String(vmid(dead)));
    try {
      const r = await runOk('failover', { candidate: cand });
      assert.equal(r.to, cand);
      assert.equal(r.timelineAfter, tl + 1);
      assert.equal(leaderOf(await clusterJson()), cand);
      const row = await one<{ n: number }>(
        ip(cand),
        'select count(*)::int as n from pgha_sw_test where id = $1',
        [id],
      );
      assert.equal(row.n, 1);
      for (const hp of inv.nodes.haproxy) {
        const w = await one<{ addr: string }>(
          hp.ip,
          `insert into pgha_sw_test (note) values ('failover') returning host(inet_server_addr()) as addr`,
          [],
          inv.ports.haproxyWrite,
        );
        assert.equal(nameOf(w.addr), cand);
      }
    } finally {
      pgha('lab', '--inventory', LAB, 'up');
    }
    assert.equal(await healthy(240_000), cand, `${dead} rejoined as a streaming replica`);
  },
);
