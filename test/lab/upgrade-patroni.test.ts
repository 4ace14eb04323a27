/**
 * upgradePatroni end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml),
 * run by real pgha worker processes and checked from outside pgha (Patroni's REST API, SQL on each
 * member, lxc-attach). The cluster is deployed first at the inventory's Patroni (3.3.0).
 *  1. --dry-run: the plan per node, nothing touched (every member still on the old version, not paused);
 *  2. the upgrade to PGHA_TEST_PATRONI_TO (default 4.1.5) with writes flowing through HAProxy and
 *     the worker SIGKILLed while a member is being switched (a spare worker finishes): every
 *     member's /patroni reports the target; pg_postmaster_start_time() unchanged on every member;
 *     the timeline unchanged; every acknowledged row there; not paused; each member's Patroni
 *     started exactly once (journal); /opt/patroni a link to the target's venv, the old venv kept.
 *     Prints the longest write gap (ms) during the run;
 *  3. run again: a no-op that says so;
 *  4. a switchover on the new Patroni: roles read correctly, the new leader on timeline +1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import { versionedVenv } from '../../runbooks/patroni-versions';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { HandoffReport, switchover } from '../../workflows/switchover';
import type { UpgradePatroniReport, upgradePatroni } from '../../workflows/upgrade-patroni';
import { LabWriter, inCt, sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { activityCalls, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const TO = process.env.PGHA_TEST_PATRONI_TO ?? '4.1.5';

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const taskQueue = uniqueId('upat-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
const procs: Proc[] = [];

function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  procs.push(w);
  return w;
}
const names = () => inv.nodes.postgres.map((n) => n.hostname);
const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const vmid = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.vmid;
const one = async <T>(host: string, q: string, params: unknown[] = [], port = inv.ports.postgresql) =>
  sqlAs(inv, host, port, async (c: Client) => (await c.query(q, params)).rows[0] as T);

interface PatroniJson {
  state?: string;
  role?: string;
  pause?: boolean;
  patroni?: { version?: string };
}
async function patroniJson(name: string): Promise<PatroniJson | null> {
  try {
    const r = await fetch(`http://${ip(name)}:${inv.ports.patroniRestApi}/patroni`, {
      signal: AbortSignal.timeout(3000),
    });
    return (await r.json()) as PatroniJson;
  } catch {
    return null;
  }
}

/** The leader writable and every other member streaming from it with lag under 1 MiB. */
const healthy = (timeoutMs = 180_000) => waitHealthyDirect(inv, timeoutMs);
const postmasterStart = async (name: string) =>
  (await one<{ t: string }>(ip(name), 'select pg_postmaster_start_time()::text as t')).t;
const timelineOf = async (name: string) =>
  (
    await one<{ tl: number }>(
      ip(name),
      `select case when pg_is_in_recovery() then (select received_tli from pg_stat_wal_receiver)
              else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as tl`,
    )
  ).tl;
/** How many times systemd started patroni on a member since `since` (epoch s). */
const patroniStarts = (name: string, since: string) =>
  inCt(vmid(name), ['journalctl', '-u', 'patroni', '--since', `@${since}`, '-o', 'cat', '--no-pager'])
    .split('\n')
    .filter((l) => /^Started patroni/.test(l)).length;

async function upgrade(args: { dryRun?: boolean } = {}) {
  return startRunbook<typeof upgradePatroni>(env.client, {
    workflow: 'upgradePatroni',
    args: [{ inventory: input, to: TO, ...args }],
    cluster: inv.cluster,
    operation: 'upgrade-patroni',
    taskQueue,
  });
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  const w = startWorker('worker-1');
  await workerReady(w);
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    taskQueue,
  });
  await d.result();
  await healthy();
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test('dry run: the plan per node, nothing touched', { skip, timeout: 300_000 }, async () => {
  const before = await Promise.all(names().map(patroniJson));
  const r = (await (await upgrade({ dryRun: true })).result()) as UpgradePatroniReport;
  if (before.every((p) => p?.patroni?.version === TO)) {
    assert.equal(r.outcome, 'already-at-target');
    return;
  }
  assert.equal(r.outcome, 'dry-run');
  assert.equal(r.members.length, 0);
  assert.match(r.plan.steps.join('\n'), new RegExp(`restart patroni \\(PostgreSQL keeps running\\)`));
  // Replicas first, the leader last.
  assert.equal(r.plan.members.at(-1)?.role, 'leader');
  const after = await Promise.all(names().map(patroniJson));
  assert.deepEqual(
    after.map((p) => [p?.patroni?.version, Boolean(p?.pause)]),
    before.map((p) => [p?.patroni?.version, false]),
  );
});

void test(
  `Patroni to ${TO} with writes flowing and the worker SIGKILLed mid-member: PostgreSQL never restarts`,
  { skip, timeout: 1_200_000 },
  async () => {
    const leader = await healthy();
    const tl = await timelineOf(leader);
    const pmBefore = Object.fromEntries(
      await Promise.all(names().map(async (n) => [n, await postmasterStart(n)])),
    );
    const versionsBefore = Object.fromEntries(
      await Promise.all(names().map(async (n) => [n, (await patroniJson(n))?.patroni?.version])),
    );
    const since = inCt(vmid(leader), ['date', '+%s']).trim();
    // A fresh table: the writer's ids start at 1 (a table left by an earlier run would refuse them).
    await one(ip(leader), 'drop table if exists pgha_upat_test');
    const writer = await new LabWriter(inv, 'pgha_upat_test', inv.nodes.haproxy[0]!.ip).start();

    const t0 = Date.now();
    const h = await upgrade();
    // Kill the first worker once a member's switch is under way (its venv link switched: the
    // member stops answering or answers with the new version).
    const first = procs[0]!;
    await waitFor('a member switching', 900_000, async () => {
      for (const n of names()) {
        if (versionsBefore[n] === TO) continue;
        const p = await patroniJson(n);
        if (!p || p.patroni?.version === TO) return true;
      }
      return false;
    });
    await first.kill();
    // A new worker takes over: the retried switch finds the restart done (another main PID) and only waits.
    await workerReady(startWorker('worker-2'));
    const r = (await h.result()) as UpgradePatroniReport;
    const t1 = Date.now();
    await writer.stop();

    assert.equal(r.outcome, 'upgraded');
    for (const n of names()) {
      const p = await patroniJson(n);
      assert.equal(p?.patroni?.version, TO, `${n} reports Patroni ${TO}`);
      assert.equal(Boolean(p?.pause), false, `${n}: not paused`);
      assert.equal(await postmasterStart(n), pmBefore[n], `${n}: PostgreSQL did not restart`);
      if (versionsBefore[n] !== TO)
        assert.equal(patroniStarts(n, since), 1, `${n}: its Patroni was started exactly once`);
      const venv = inv.install.patroni.venv ?? '/opt/patroni';
      assert.equal(inCt(vmid(n), ['readlink', venv]).trim(), versionedVenv(venv, TO));
      if (versionsBefore[n] && versionsBefore[n] !== TO)
        inCt(vmid(n), [`${versionedVenv(venv, versionsBefore[n])}/bin/patroni`, '--version']); // kept for roll-back
    }
    assert.deepEqual(r.postgresRestarted, []);
    const leaderAfter = await healthy();
    assert.equal(leaderAfter, leader, 'the leader did not change');
    assert.equal(await timelineOf(leaderAfter), tl, 'timeline unchanged');
    for (const n of names()) assert.equal(await timelineOf(n), tl, `${n} on timeline ${tl}`);
    const acked = writer.ackedIds;
    assert.ok(acked.length > 0, 'writes went through during the upgrade');
    const got = await one<{ n: number }>(
      ip(leaderAfter),
      'select count(*)::int as n from pgha_upat_test where id = any($1::bigint[])',
      [acked],
    );
    assert.equal(got.n, acked.length, 'every acknowledged row is there');
    assert.ok(activityCalls(countDir, 'patroniSwitchMember') >= names().length);
    console.log(
      `patroni_upgrade write_gap_max_ms=${writer.longestGap(t0, t1)} write_errors=${writer.errors} ` +
        `rows=${acked.length} wall_s=${((t1 - t0) / 1000).toFixed(1)}`,
    );
  },
);

void test('run again: a no-op that says so', { skip, timeout: 300_000 }, async () => {
  const r = (await (await upgrade()).result()) as UpgradePatroniReport;
  assert.equal(r.outcome, 'already-at-target');
  assert.match(r.plan.steps.join(' '), new RegExp(`nothing to do: every member already runs Patroni ${TO}`));
});

void test(`a switchover on Patroni ${TO}: roles read correctly`, { skip, timeout: 300_000 }, async () => {
  const from = await healthy();
  const tl = await timelineOf(from);
  const h = await startRunbook<typeof switchover>(env.client, {
    workflow: 'switchover',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'switchover',
    taskQueue,
  });
  const r = (await h.result()) as HandoffReport;
  assert.equal(r.from, from);
  const to = await healthy();
  assert.equal(to, r.to);
  assert.notEqual(to, from);
  assert.equal((await patroniJson(to))?.role, 'primary', 'Patroni 4 says primary');
  assert.equal(await timelineOf(to), tl + 1);
});
