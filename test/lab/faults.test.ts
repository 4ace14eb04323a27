/**
 * Faults during runbooks on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml), run
 * by a real pgha worker process, with one writer committing through the first HAProxy throughout;
 * every outcome checked from outside pgha (SQL on each member, Patroni's REST API, the CTs'
 * journals, lxc-attach):
 *  - one etcd CT down: a switchover succeeds;
 *  - two etcd CTs down: a switchover refuses and changes nothing (no POST, same leader and timeline);
 *  - the leader cut off etcd (blackhole routes in its CT): at no moment two writable members, the
 *    switchover ends definitely;
 *  - one HAProxy CT down: a switchover succeeds, the other HAProxy writes to the new leader, the
 *    report names the missing one;
 *  - the Proxmox host's sshd restarted mid-rolling-restart: the run finishes, every member's
 *    PostgreSQL started exactly once more (pg_postmaster_start_time, polled every second);
 *  - the leader CT stopped mid-switchover: the run ends definitely, one leader, at most one POST.
 * After each: no commit the writer saw acknowledged is missing on the leader. The stopped CTs are
 * started again with `pgha lab up` (idempotent). Existing fault tests not repeated here: the leader
 * CT dying mid-rolling-restart and mid-upgrade, failover after a stop, a lagging candidate, failsafe
 * with etcd's quorum lost (upgrade-*.test.ts, nodes.test.ts, switchover.test.ts, failsafe.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { HAPROXY_WRITE_BACKEND } from '../../activities/render';
import { fault, up as labUp } from '../../lab';
import { ensureSshd, stopSshd } from '../../lab/sshd';
import { labNotUpReason } from '../../lab/testing';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { RestartReport, rollingRestart } from '../../workflows/rolling-restart';
import type { HandoffReport, switchover } from '../../workflows/switchover';
import type { DryRunReport } from '../../workflows/dry-run';
import { errorMessage } from '../../workflows/steps';
import {
  LabWriter,
  drainedOnEvery,
  inCt,
  sqlAs,
  switchoverRequests,
  timelineOf,
  waitHealthyDirect,
  withRuntime,
} from '../helpers/lab-direct';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

// Not in CI (PGHA_LAB_FAULTS=1 runs it): its six tests take about 7 minutes, beyond CI's budget. Its
// first CI run left haproxy1 holding writes (a hand-off's release that a dead runtime session
// stopped on every node: now node by node, and a failed hand-off is followed by switchoverSettle;
// deploy lifts any drain) — since then it passed on labb followed by guardian.test.ts and
// nodes.test.ts (12 of 12).
const skip =
  labNotUpReason() ??
  (process.env.PGHA_LAB_FAULTS === '1'
    ? undefined
    : 'PGHA_LAB_FAULTS=1 runs the faults file (not in CI yet: it leaves state that fails the files after it)');
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let worker: Proc;
let writer: LabWriter;
const taskQueue = uniqueId('faults-lab');
const table = `faults_${uniqueId('w').replace(/-/g, '_')}`;

// In-process (lab/index.ts, what `pgha lab` runs): no CLI process to start per call.
const stopCt = (vmid: number) => fault.stopCt(vmid, { inventory: LAB });
const node = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;
const epoch = () => String(Math.floor(Date.now() / 1000));

/** The members whose PostgreSQL answers and is not in recovery, asked directly. */
async function writable(): Promise<string[]> {
  const r = await Promise.all(
    inv.nodes.postgres.map((n) =>
      sqlAs(inv, n.ip, inv.ports.postgresql, async (c) => {
        const q = await c.query<{ rec: boolean }>('select pg_is_in_recovery() as rec');
        return q.rows[0]!.rec ? undefined : n.hostname;
      }).catch(() => undefined),
    ),
  );
  return r.filter((x) => x !== undefined);
}

/** Every commit the writer saw acknowledged is on `leader`. */
async function noCommitLost(leader: string): Promise<void> {
  const ids = writer.ackedIds;
  assert.ok(ids.length > 0, 'the writer committed nothing');
  const found = await sqlAs(inv, node(leader).ip, inv.ports.postgresql, async (c) => {
    const q = await c.query<{ n: number }>(`select count(*)::int as n from ${table} where id = any($1)`, [
      ids,
    ]);
    return q.rows[0]!.n;
  });
  assert.equal(found, ids.length, `${ids.length - found} acknowledged commits missing on ${leader}`);
}

/** Every etcd member answers /health (bounded). */
async function etcdHealthy(timeoutMs = 120_000): Promise<void> {
  await waitFor('every etcd member healthy', timeoutMs, async () => {
    const ok = await Promise.all(
      inv.nodes.etcd.map((e) =>
        fetch(`http://${e.ip}:${inv.ports.etcdClient}/health`, { signal: AbortSignal.timeout(2000) })
          .then(async (r) => r.ok && ((await r.json()) as { health?: string }).health === 'true')
          .catch(() => false),
      ),
    );
    return ok.every(Boolean);
  });
}

/** Back to healthy after a fault: the stopped CTs started, etcd and Patroni settled; the leader. */
async function recover(): Promise<string> {
  labUp({ inventory: LAB });
  await etcdHealthy();
  return waitHealthyDirect(inv, 240_000);
}

async function startSwitchover(candidate?: string) {
  const h = await startRunbook<typeof switchover>(env.client, {
    workflow: 'switchover',
    args: [{ inventory: input, candidate }],
    cluster: inv.cluster,
    operation: 'switchover',
    taskQueue,
  });
  // not a dry run: it ends in the hand-off report
  return h as typeof h & { result(): Promise<HandoffReport> };
}

/** The run's end within `ms`: its report, or the failure's message (a definite refusal). */
async function ending<T>(h: { result(): Promise<T> }, ms: number): Promise<{ ok?: T; refused?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the run did not end within ${ms} ms`)), ms);
  });
  try {
    return { ok: await Promise.race([h.result(), timeout]) };
  } catch (err) {
    if (err instanceof WorkflowFailedError) return { refused: errorMessage(err.cause) };
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  worker = startWorkerProc({
    name: 'worker-faults',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  await workerReady(worker, 300_000);
  await recover(); // a fault left by an earlier file
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    taskQueue,
  });
  await d.result(); // idempotent: fast on a deployed cluster
  await waitHealthyDirect(inv);
  writer = await new LabWriter(inv, table, inv.nodes.haproxy[0]!.ip).start();
});

after(async () => {
  await writer?.stop();
  if (!skip && inv) {
    const leader = await recover().catch(() => undefined);
    if (leader)
      await sqlAs(inv, node(leader).ip, inv.ports.postgresql, (c) =>
        c.query(`drop table if exists ${table}`),
      );
  }
  await worker?.stop();
  await env?.teardown();
});

void test(
  'one etcd CT down: a switchover succeeds, one leader, no commit lost',
  { skip, timeout: 300_000 },
  async () => {
    const from = await waitHealthyDirect(inv);
    const tl = await timelineOf(inv, node(from).ip);
    const since = epoch();
    stopCt(inv.nodes.etcd[2]!.vmid);
    try {
      const r = await ending(await startSwitchover(), 180_000);
      assert.ok(r.ok, `refused: ${r.refused}`);
      assert.equal(r.ok.outcome, 'switched');
      assert.deepEqual(await writable(), [r.ok.to], 'exactly one writable member: the new leader');
      assert.equal(await timelineOf(inv, node(r.ok.to).ip), tl + 1);
      assert.equal(switchoverRequests(inv, since), 1, 'one POST /switchover');
    } finally {
      const leader = await recover();
      await noCommitLost(leader);
    }
  },
);

void test(
  'two etcd CTs down (quorum lost): a switchover refuses and changes nothing',
  { skip, timeout: 300_000 },
  async () => {
    const from = await waitHealthyDirect(inv);
    const tl = await timelineOf(inv, node(from).ip);
    const since = epoch();
    stopCt(inv.nodes.etcd[1]!.vmid);
    stopCt(inv.nodes.etcd[2]!.vmid);
    try {
      const r = await ending(await startSwitchover(), 180_000);
      assert.ok(r.refused, `a switchover without etcd's quorum completed: ${JSON.stringify(r.ok)}`);
      assert.match(r.refused, /etcd|DCS|quorum/i);
      assert.equal(switchoverRequests(inv, since), 0, 'no POST /switchover');
      assert.deepEqual(await writable(), [from], 'the same leader, still writable (failsafe mode)');
      assert.equal(await timelineOf(inv, node(from).ip), tl, 'the same timeline');
    } finally {
      const leader = await recover();
      await noCommitLost(leader);
    }
  },
);

void test(
  'the leader cut off etcd: never two writable members, the switchover ends definitely',
  { skip, timeout: 300_000 },
  async () => {
    const from = await waitHealthyDirect(inv);
    const routes = inv.nodes.etcd.map((e) => `${e.ip}/32`);
    const vmid = node(from).vmid;
    for (const r of routes) inCt(vmid, ['ip', 'route', 'replace', 'blackhole', r]);
    let most = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        most = Math.max(most, (await writable()).length);
        await sleep(300);
      }
    })();
    try {
      const r = await ending(await startSwitchover(), 180_000);
      console.log(
        `leader ${from} cut off etcd: switchover ${r.ok ? `to ${r.ok.to}` : `refused: ${r.refused}`}`,
      );
      if (r.ok) assert.equal(r.ok.outcome, 'switched');
      else assert.ok(r.refused);
    } finally {
      for (const r of routes) inCt(vmid, ['ip', 'route', 'del', 'blackhole', r], { timeoutMs: 10_000 });
      const leader = await recover();
      watching = false;
      await watch;
      assert.ok(most <= 1, `${most} members were writable at once`);
      await noCommitLost(leader);
    }
  },
);

void test(
  'one HAProxy CT down: a switchover succeeds, the other HAProxy writes to the new leader, the report names the missing one',
  { skip, timeout: 300_000 },
  async () => {
    await waitHealthyDirect(inv);
    const [up, down] = inv.nodes.haproxy as [(typeof inv.nodes.haproxy)[0], (typeof inv.nodes.haproxy)[0]];
    stopCt(down.vmid);
    try {
      const r = await ending(await startSwitchover(), 180_000);
      assert.ok(r.ok, `refused: ${r.refused}`);
      assert.deepEqual(await writable(), [r.ok.to]);
      const landed = await sqlAs(inv, up.ip, inv.ports.haproxyWrite, async (c) => {
        const q = await c.query<{ addr: string }>(`select host(inet_server_addr()) as addr`);
        return q.rows[0]!.addr;
      });
      assert.equal(landed, node(r.ok.to).ip, `${up.hostname} routes writes to ${r.ok.to}`);
      const missing = r.ok.verify.haproxy.find((h) => h.node === down.hostname);
      assert.ok(missing, `the report names ${down.hostname}: ${JSON.stringify(r.ok.verify.haproxy)}`);
      assert.equal(missing.writeLandedOn, null);
      assert.equal(missing.down, true);
    } finally {
      const leader = await recover();
      await noCommitLost(leader);
    }
  },
);

void test(
  'the Proxmox host sshd restarted mid-rolling-restart: the run finishes, each PostgreSQL restarted once',
  { skip, timeout: 300_000 },
  async () => {
    await waitHealthyDirect(inv);
    const starts = new Map<string, Set<string>>(inv.nodes.postgres.map((n) => [n.hostname, new Set()]));
    const sample = () =>
      Promise.all(
        inv.nodes.postgres.map((n) =>
          sqlAs(inv, n.ip, inv.ports.postgresql, async (c) => {
            const q = await c.query<{ t: string }>('select pg_postmaster_start_time()::text as t');
            starts.get(n.hostname)!.add(q.rows[0]!.t);
          }).catch(() => undefined),
        ),
      );
    await sample();
    let polling = true;
    const poll = (async () => {
      while (polling) {
        await sample();
        await sleep(1000);
      }
    })();
    const h = await startRunbook<typeof rollingRestart>(env.client, {
      workflow: 'rollingRestart',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'restart',
      taskQueue,
    });
    try {
      // mid-step: once the first member has restarted, while the run goes on
      await waitFor('a first member restarted', 120_000, async () =>
        [...starts.values()].some((s) => s.size > 1),
      );
      stopSshd();
      ensureSshd(inv.proxmox.port);
      const r = await ending<RestartReport | DryRunReport>(h, 240_000);
      assert.ok(r.ok, `failed: ${r.refused}`);
      await waitHealthyDirect(inv);
      await sample();
    } finally {
      polling = false;
      await poll;
    }
    for (const [name, s] of starts)
      assert.equal(s.size, 2, `${name}: PostgreSQL started ${s.size - 1} times (${[...s].join(', ')})`);
    await noCommitLost(await waitHealthyDirect(inv));
  },
);

void test(
  'the leader CT stopped mid-switchover: the run ends definitely, one leader, at most one POST',
  { skip, timeout: 420_000 },
  async () => {
    const from = await waitHealthyDirect(inv);
    const since = epoch();
    const candidate = inv.nodes.postgres.find((n) => n.hostname !== from)!.hostname;
    const h = await startSwitchover(candidate);
    try {
      // the hand-off under way: the candidate drained on every HAProxy just before the POST
      await withRuntime(inv, (rt) =>
        waitFor('the hand-off under way', 120_000, () =>
          drainedOnEvery(rt, HAPROXY_WRITE_BACKEND, [candidate]),
        ),
      );
      stopCt(node(from).vmid);
      const r = await ending(h, 240_000);
      console.log(
        `leader CT ${from} stopped mid-hand-off: ${r.ok ? `switched to ${r.ok.to}` : `refused: ${r.refused}`}`,
      );
      if (r.ok) assert.equal(r.ok.to, candidate);
      const leaders = await writable();
      assert.ok(leaders.length <= 1, `writable: ${leaders.join(', ')}`);
    } finally {
      const leader = await recover();
      assert.deepEqual(await writable(), [leader], 'one leader once the old one is back');
      assert.ok(switchoverRequests(inv, since) <= 1, 'at most one POST /switchover');
      await noCommitLost(leader);
    }
  },
);
