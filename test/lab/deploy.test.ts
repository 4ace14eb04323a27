/**
 * deployCluster end to end on the lab, checked from outside pgha:
 *  1. on freshly reset CTs, deploy with a real worker process that is SIGKILLed while the replicas
 *     join; a new worker finishes the run, and no step finished before the kill runs again;
 *  2. the cluster, asked directly (lxc-attach + etcdctl, Patroni's REST API, SQL through HAProxy):
 *     3 healthy etcd members with one leader, 1 Patroni leader + 2 streaming replicas on one
 *     timeline, the leader key naming the leader, a row written through HAProxy :5432 read back on
 *     both replicas, the read port :5433 reaching only replicas;
 *  3. deploy again: it succeeds and restarts no service (systemd start times unchanged).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { renderSeedHaproxy } from '../../activities/render';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { progress } from '../../workflows/messages';
import { inCt, sqlAs } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { activityCalls, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { eventually, startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

const skip = labNotUpReason();
/** Another lab inventory (other vmids and addresses, same bridge) can be tested side by side. */
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const workers: Proc[] = [];

/** A command inside a CT, straight through LXC (not pgha's transport). */
function pgha(...args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 600_000,
  });
}

const startWorker = (name: string, taskQueue: string, countDir: string) => {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  workers.push(w);
  return w;
};
const ready = (w: Proc) => workerReady(w);
const count = activityCalls;

const sql = <T>(host: string, port: number, fn: (c: Client) => Promise<T>) => sqlAs(inv, host, port, fn);

/** systemd's start time of each service on each node: changes if anything restarted it. */
function serviceStarts(): Record<string, string> {
  const out: Record<string, string> = {};
  const units = { etcd: 'etcd', postgres: 'patroni', haproxy: 'haproxy' } as const;
  for (const role of ['etcd', 'postgres', 'haproxy'] as const) {
    for (const n of inv.nodes[role]) {
      out[`${n.hostname}/${units[role]}`] = inCt(n.vmid, [
        'systemctl',
        'show',
        units[role],
        '--property=ActiveState,ExecMainStartTimestampMonotonic,ExecMainPID',
      ]).trim();
    }
  }
  return out;
}

before(async () => {
  if (skip) return;
  pgha('lab', '--inventory', LAB, 'reset'); // fresh CTs from the base image: no cluster data anywhere
  pgha('secrets', 'init', '--cluster', LAB);
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
});

after(async () => {
  for (const w of workers) await w.stop();
  await env?.teardown();
});

void test(
  'deployCluster survives a worker SIGKILL while the replicas join; no finished step runs again',
  { skip, timeout: 1_500_000 },
  async () => {
    const taskQueue = uniqueId('deploy');
    const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
    const first = startWorker('worker-1', taskQueue, countDir);
    await ready(first);
    const handle = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'deploy',
      taskQueue,
    });
    await eventually(
      'the replicas-join step running',
      () => handle.query(progress),
      (p) => p.steps.some((s) => s.name === 'replicas join' && s.status !== 'pending'),
      900_000,
    );
    await first.kill();
    const second = startWorker('worker-2', taskQueue, countDir);
    await ready(second);
    const result = notDryRun(await handle.result());
    assert.equal(result.verdict.status, 'healthy', JSON.stringify(result.verdict));

    // Steps finished before the kill ran once: one activity per node, not more. The history is the
    // record of what the workflow asked for (an activity's own retries after a transient error are
    // attempts of one scheduled activity, not a step run again); the workers' count files show each
    // was executed at least that often.
    const history = await handle.fetchHistory();
    const scheduled = (name: string) =>
      (history.events ?? []).filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === name,
      ).length;
    for (const [name, n] of [
      ['preflightNode', 8],
      ['installEtcd', 3],
      ['etcdWaitHealthy', 1],
      ['installPostgres', 3],
      ['waitPrimary', 1],
      ['installHaproxy', 2],
    ] as const) {
      assert.equal(scheduled(name), n, `${name} scheduled ${n} times`);
      assert.ok(count(countDir, name) >= n, `${name} executed at least ${n} times`);
    }
  },
);

void test(
  'the deployed cluster, asked directly: etcd, Patroni, leader key, HAProxy routing, replication',
  { skip, timeout: 300_000 },
  async () => {
    const endpoints = inv.nodes.etcd.map((n) => `http://${n.ip}:2379`).join(',');
    const etcdVmid = inv.nodes.etcd[0]!.vmid;
    const health = JSON.parse(
      inCt(etcdVmid, ['etcdctl', `--endpoints=${endpoints}`, 'endpoint', 'health', '-w', 'json']),
    ) as { endpoint: string; health: boolean }[];
    assert.equal(health.filter((h) => h.health).length, 3, JSON.stringify(health));
    const statuses = JSON.parse(
      inCt(etcdVmid, ['etcdctl', `--endpoints=${endpoints}`, 'endpoint', 'status', '-w', 'json']),
    ) as {
      Status: { leader: string; header: { member_id: string } };
    }[];
    const leaders = new Set(statuses.map((s) => String(s.Status.leader)));
    assert.equal(leaders.size, 1, 'all etcd members agree on one leader');
    assert.ok(
      statuses.some((s) => String(s.Status.header.member_id) === [...leaders][0]),
      'the leader is a member',
    );

    const pg0 = inv.nodes.postgres[0]!;
    type ClusterJson = {
      members: { name: string; role: string; state: string; timeline: number; host: string }[];
    };
    const getCluster = async () =>
      (await (await fetch(`http://${pg0.ip}:8008/cluster`)).json()) as ClusterJson;
    // Patroni refreshes a member's state in etcd once per loop_wait (10 s): a replica that just
    // started streaming may still show `running` for that long.
    let cluster = await getCluster();
    await waitFor('/cluster to show both replicas streaming', 30_000, async () => {
      cluster = await getCluster();
      return cluster.members.filter((m) => m.state === 'streaming').length === 2;
    }).catch(() => undefined);
    const leadersPg = cluster.members.filter((m) => m.role === 'leader');
    const replicas = cluster.members.filter((m) => m.role === 'replica');
    assert.equal(leadersPg.length, 1, JSON.stringify(cluster));
    assert.equal(replicas.length, 2, JSON.stringify(cluster));
    assert.ok(
      replicas.every((m) => m.state === 'streaming'),
      JSON.stringify(cluster),
    );
    assert.equal(new Set(cluster.members.map((m) => m.timeline)).size, 1, 'one timeline');
    const leader = leadersPg[0]!;

    const leaderKey = inCt(etcdVmid, [
      'etcdctl',
      `--endpoints=${endpoints}`,
      'get',
      '/patroni/postgres/leader',
      '--print-value-only',
    ]).trim();
    assert.equal(leaderKey, leader.name);

    const marker = `e2e-${Date.now()}`;
    for (const h of inv.nodes.haproxy) {
      const wrote = await sql(h.ip, 5432, async (c) => {
        await c.query('create table if not exists e2e_rows (id serial primary key, note text)');
        const r = await c.query<{ addr: string }>(
          `insert into e2e_rows(note) values ($1) returning host(inet_server_addr()) as addr`,
          [`${marker}-${h.hostname}`],
        );
        return r.rows[0]!.addr;
      });
      assert.equal(wrote, leader.host, `a write through ${h.hostname}:5432 landed on the leader`);
      for (let i = 0; i < 6; i++) {
        const r = await sql(h.ip, 5433, (c) =>
          c.query<{ ro: boolean; addr: string }>(
            'select pg_is_in_recovery() as ro, host(inet_server_addr()) as addr',
          ),
        );
        assert.equal(
          r.rows[0]!.ro,
          true,
          `read port of ${h.hostname} reached ${r.rows[0]!.addr}, not a replica`,
        );
      }
    }
    for (const r of replicas) {
      await waitFor(`rows on ${r.name}`, 30_000, async () => {
        const n = await sql(r.host, 5432, (c) =>
          c.query<{ n: string }>(`select count(*) as n from e2e_rows where note like $1`, [`${marker}-%`]),
        );
        return Number(n.rows[0]!.n) === inv.nodes.haproxy.length;
      });
    }
  },
);

void test(
  'deployCluster again on the deployed cluster succeeds and restarts nothing',
  { skip, timeout: 900_000 },
  async () => {
    const before = serviceStarts();
    assert.ok(
      Object.values(before).every((s) => s.includes('ActiveState=active')),
      JSON.stringify(before, null, 1),
    );
    const taskQueue = uniqueId('redeploy');
    const w = startWorker('worker-3', taskQueue, mkdtempSync(join(tmpdir(), 'pgha-count-')));
    await ready(w);
    const handle = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'deploy',
      suffix: 'again',
      taskQueue,
    });
    const result = notDryRun(await handle.result());
    assert.equal(result.verdict.status, 'healthy');
    assert.deepEqual(serviceStarts(), before);
  },
);

void test(
  "the seed's own haproxy.cfg (GET /patroni) sends write connections to replicas; pgha's does not",
  { skip, timeout: 120_000 },
  async () => {
    // The seed's file, as rendered, on other ports beside pgha's HAProxy on haproxy1.
    const h = inv.nodes.haproxy[0]!;
    const seed = renderSeedHaproxy({
      ...inv,
      ports: { ...inv.ports, haproxyWrite: 6432, haproxyStats: 8405 },
    });
    inCt(h.vmid, ['sh', '-c', 'cat > /tmp/seed-haproxy.cfg'], { stdin: seed.content });
    inCt(h.vmid, ['haproxy', '-f', '/tmp/seed-haproxy.cfg', '-p', '/tmp/seed-haproxy.pid']);
    try {
      await new Promise((r) => setTimeout(r, 10_000)); // rise 3 × inter 3s: every server UP
      const landed = { replica: 0, leader: 0, readOnlyErrors: 0 };
      for (let i = 0; i < 9; i++) {
        await sql(h.ip, 6432, async (c) => {
          const ro = (await c.query<{ ro: boolean }>('select pg_is_in_recovery() as ro')).rows[0]!.ro;
          landed[ro ? 'replica' : 'leader']++;
          if (ro) {
            // Any write; DDL is refused on a standby before any table lookup.
            await c.query('create table if not exists pgha_seed_write_probe (id int)').catch((err: Error) => {
              if (/read-only transaction/.test(err.message)) landed.readOnlyErrors++;
            });
          }
        });
      }
      assert.ok(landed.replica > 0, `the seed config sent writes to replicas: ${JSON.stringify(landed)}`);
      assert.equal(landed.readOnlyErrors, landed.replica, JSON.stringify(landed));
      // pgha's write port on the same HAProxy node, same number of connections: only the leader.
      for (let i = 0; i < 9; i++) {
        const ro = await sql(
          h.ip,
          5432,
          async (c) => (await c.query<{ ro: boolean }>('select pg_is_in_recovery() as ro')).rows[0]!.ro,
        );
        assert.equal(ro, false, "pgha's 5432 reached a replica");
      }
    } finally {
      inCt(h.vmid, [
        'sh',
        '-c',
        'kill $(cat /tmp/seed-haproxy.pid); rm -f /tmp/seed-haproxy.cfg /tmp/seed-haproxy.pid',
      ]);
    }
  },
);
