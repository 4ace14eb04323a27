/**
 * The guardian end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml), run by
 * real pgha worker processes and checked from outside pgha (Patroni's REST API, SQL directly on the
 * members and through each HAProxy, journalctl in the HAProxy CTs):
 *  - a pgha switchover: the guardian leaves it to the runbook (no failover-observed record), and
 *    HAProxy's own log, read with `journalctl -u haproxy` in each HAProxy CT, shows the old leader
 *    leaving the write backend and the new one entering it;
 *  - the leader's CT hard-stopped (`pgha lab fault stop-ct`), and the guardian's worker SIGKILLed
 *    the moment Patroni has moved the key: a spare worker carries on, every HAProxy sends writes to
 *    the new leader, and exactly one failover-observed run names both members and the new timeline;
 *    the rows written before are on the new leader; the stopped CT comes back as a streaming replica.
 * The cluster is deployed first with `guard: true` (deployCluster: idempotent, fast on a deployed
 * cluster), which starts the guardian; a second deploy keeps the running one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { failoverRecords, startGuardian } from '../../clients/commands/guard';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { guardianState, guardianWorkflowId } from '../../workflows/guardian';
import { progress } from '../../workflows/messages';
import type { HandoffReport, switchover } from '../../workflows/switchover';
import { inCt, sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const taskQueue = uniqueId('guard-lab');
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
const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const vmid = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.vmid;
const nameOf = (addr: string) => inv.nodes.postgres.find((n) => n.ip === addr)?.hostname ?? addr;
const one = async <T>(host: string, q: string, params: unknown[] = [], port = inv.ports.postgresql) =>
  sqlAs(inv, host, port, async (c: Client) => (await c.query(q, params)).rows[0] as T);

/** The leader as Patroni's /cluster says (any member that answers). */
async function leaderNow(): Promise<string | undefined> {
  for (const n of inv.nodes.postgres) {
    try {
      const r = await fetch(`http://${n.ip}:${inv.ports.patroniRestApi}/cluster`, {
        signal: AbortSignal.timeout(2000),
      });
      if (!r.ok) continue;
      const c = (await r.json()) as { members: { name: string; role: string }[] };
      return c.members.find((m) => m.role === 'leader' || m.role === 'master')?.name;
    } catch {
      // next member
    }
  }
  return undefined;
}

/** Leader writable and every other member streaming from it. */
const healthy = (timeoutMs = 240_000) => waitHealthyDirect(inv, timeoutMs);
const timelineOf = async (name: string) =>
  (
    await one<{ tl: number }>(
      ip(name),
      `select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as tl`,
    )
  ).tl;

const guardian = () => env.client.workflow.getHandle(guardianWorkflowId(inv.cluster));
async function guardianKnows(leader: string, timeoutMs = 120_000) {
  await waitFor(`the guardian knows ${leader}`, timeoutMs, async () => {
    try {
      return (await guardian().query(guardianState)).leader === leader;
    } catch {
      return false;
    }
  });
  return guardian().query(guardianState);
}

/** Where a write through each HAProxy lands. */
async function writesLandOn(): Promise<string[]> {
  const out: string[] = [];
  for (const h of inv.nodes.haproxy) {
    const w = await one<{ addr: string }>(
      h.ip,
      `insert into pgha_guard_test (note) values ('probe') returning host(inet_server_addr()) as addr`,
      [],
      inv.ports.haproxyWrite,
    );
    out.push(nameOf(w.addr));
  }
  return out;
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  const w = startWorker('worker-1');
  await workerReady(w, 600_000); // bundling the workflows takes minutes on a loaded 2-core machine
  // The deploy starts the guardian (`pgha deploy --guard`): its `guardian` step.
  const deploy = () =>
    startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: input, guard: true }],
      cluster: inv.cluster,
      operation: 'deploy',
      taskQueue,
    });
  const d = await deploy();
  await d.result();
  const steps = (await d.query(progress)).steps;
  assert.deepEqual(
    steps.filter((s) => s.name === 'guardian').map((s) => s.status),
    ['completed'],
    'the deploy ran its guardian step',
  );
  const started = await guardian().describe();
  assert.equal(started.status.name, 'RUNNING', 'the deploy left the guardian running');
  const l = await healthy();
  await one(ip(l), 'create table if not exists pgha_guard_test (id bigserial primary key, note text)');
  await guardianKnows(l);
  // A second deploy (and pgha guard start) keep the running guardian.
  await (await deploy()).result();
  assert.equal(
    (await guardian().describe()).runId,
    started.runId,
    'a second deploy kept the running guardian',
  );
  assert.equal(
    (await startGuardian(env.client, inv.cluster, { inventory: input }, { taskQueue })).already,
    true,
  );
});

after(async () => {
  await guardian()
    .cancel()
    .catch(() => undefined);
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test(
  'a pgha switchover: no guardian event; HAProxy logs it, readable with journalctl -u haproxy',
  { skip, timeout: 300_000 },
  async () => {
    const from = await healthy();
    const since = Math.floor(Date.now() / 1000) - 1;
    const h = await startRunbook<typeof switchover>(env.client, {
      workflow: 'switchover',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'switchover',
      taskQueue,
    });
    const r = (await h.result()) as HandoffReport;
    assert.equal(r.from, from);
    const s = await guardianKnows(r.to);
    assert.equal(s.observed, 0, 'the guardian recorded no failover for a pgha switchover');
    assert.ok(s.yielded >= 1, 'it left the change to the runbook');
    assert.deepEqual(await failoverRecords(env.client, inv.cluster), []);
    assert.deepEqual(
      await writesLandOn(),
      inv.nodes.haproxy.map(() => r.to),
    );

    for (const hp of inv.nodes.haproxy) {
      const log = inCt(hp.vmid, [
        'journalctl',
        '-u',
        'haproxy',
        '--since',
        `@${since}`,
        '-o',
        'cat',
        '--no-pager',
      ]);
      assert.match(
        log,
        new RegExp(`Server postgres_primary/${from} is DOWN`),
        `${hp.hostname}: the old leader out`,
      );
      assert.match(
        log,
        new RegExp(`Server postgres_primary/${r.to} is UP`),
        `${hp.hostname}: the new leader in`,
      );
      assert.match(
        log,
        new RegExp(`postgres_write postgres_primary/${r.to} `),
        `${hp.hostname}: a connection log line for a write routed to ${r.to}`,
      );
      assert.doesNotMatch(log, /sendmsg\(\) failed in logger/);
    }
  },
);

void test(
  'leader CT hard-stopped, guardian worker SIGKILLed during the failover: routed, recorded once',
  { skip, timeout: 1_200_000 },
  async () => {
    const from = await healthy();
    const tlBefore = await timelineOf(from);
    const before = await one<{ id: string }>(
      inv.nodes.haproxy[0]!.ip,
      `insert into pgha_guard_test (note) values ('before') returning id::text`,
      [],
      inv.ports.haproxyWrite,
    );
    await guardianKnows(from);
    const spare = startWorker('worker-2');
    await workerReady(spare, 600_000);
    const first = procs[0]!;

    pgha('lab', '--inventory', LAB, 'fault', 'stop-ct', String(vmid(from)));
    try {
      // The moment Patroni has moved the key, the guardian's worker dies.
      let to: string | undefined;
      await waitFor('Patroni promotes another member', inv.patroni.ttl * 1000 + 60_000, async () => {
        to = await leaderNow().catch(() => undefined);
        return to !== undefined && to !== from;
      });
      await first.kill();
      assert.ok(to);

      await waitFor('one failover-observed record', 120_000, async () => {
        return (await failoverRecords(env.client, inv.cluster)).length > 0;
      });
      const s = await guardianKnows(to);
      await sleep(2000); // a second record would have been started by now
      const records = await failoverRecords(env.client, inv.cluster);
      assert.equal(records.length, 1, JSON.stringify(records));
      const f = records[0]!;
      assert.equal(f.oldLeader, from);
      assert.equal(f.newLeader, to);
      assert.equal(f.timeline, tlBefore + 1);
      assert.equal(await timelineOf(to), tlBefore + 1, 'the record names the new leader timeline');
      assert.equal(f.routeError, undefined);
      assert.deepEqual([...(f.routedOn ?? [])].sort(), inv.nodes.haproxy.map((n) => n.hostname).sort());
      assert.equal(s.observed, 1);

      // Checked directly: writes through every HAProxy land on the new leader, the row from before is there.
      assert.deepEqual(
        await writesLandOn(),
        inv.nodes.haproxy.map(() => to),
      );
      const row = await one<{ n: number }>(
        ip(to),
        'select count(*)::int as n from pgha_guard_test where id = $1',
        [before.id],
      );
      assert.equal(row.n, 1, 'the row written before the failover is on the new leader');
    } finally {
      execFileSync(join(repoRoot, 'lab/pct'), ['start', String(vmid(from))], { timeout: 120_000 });
    }
    // The old leader comes back as a replica of the new one.
    const leader = await healthy();
    assert.notEqual(leader, from);
    assert.equal((await one<{ rec: boolean }>(ip(from), 'select pg_is_in_recovery() as rec')).rec, true);
  },
);
