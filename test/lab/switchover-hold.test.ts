/**
 * The hold of new write connections through a hand-off (issue 17), end to end on the lab
 * (PGHA_LAB_INVENTORY), checked from outside pgha (SQL directly on the members and through
 * HAProxy, the runtime API through lxc-attach). The cluster is deployed first by deployCluster (a
 * real worker process), so HAProxy runs the rendered hold. The hand-off runs in this process with
 * the runbook's own activities (as bench:switchover does), so a test can act right after the
 * pre-POST drain (deps.afterDrain):
 *  - a switchover whose POST Patroni refuses (the candidate tagged nofailover after the
 *    pre-check): it fails saying so, the leader keeps leading, no server is left drained on any
 *    HAProxy, the live writer never failed, and new connections opened in the drain window were
 *    held, then served by the old leader, none refused;
 *  - 500 concurrent new connections opened the instant the hand-off drained the old leader: all
 *    succeed (served by the new leader), and PostgreSQL's connection count on every member, sampled
 *    directly every 50 ms, never exceeds max_connections (HAProxy's per-server maxconn + queue).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { patroniConfigPath } from '../../activities/render/patroni';
import { createEtcdActivities } from '../../activities/etcd';
import { adminForced, createHaproxyActivities, runnerFromCtExec } from '../../activities/haproxy';
import { createPatroniActivities } from '../../activities/patroni';
import { createPostgresActivities } from '../../activities/postgres';
import { createProxmoxFactory } from '../../activities/proxmox';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_WRITE_BACKEND, writeHoldMs } from '../../activities/render';
import { createSwitchoverActivities } from '../../activities/switchover';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { LabWriter, inCt, sqlAs, MEMBER_STREAMING } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let worker: Proc | undefined;
const proxmox = createProxmoxFactory();
let sw: ReturnType<typeof createSwitchoverActivities>;
let afterDrain: (() => void) | undefined;

const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const vmid = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.vmid;
const nameOf = (addr: string) => inv.nodes.postgres.find((n) => n.ip === addr)?.hostname ?? addr;
const password = () => readFileSync(inv.secrets.superuserPassword.replace(/^file:/, ''), 'utf8').trim();
const one = async <T>(host: string, q: string, port = inv.ports.postgresql) =>
  sqlAs(inv, host, port, async (c) => (await c.query(q)).rows[0] as T);

async function leader(): Promise<string> {
  let l = '';
  await waitFor('a writable leader with every replica streaming', 180_000, async () => {
    for (const n of inv.nodes.postgres) {
      try {
        const r = await one<{ rec: boolean; n: number }>(
          n.ip,
          `select pg_is_in_recovery() as rec, (select count(*) from pg_stat_replication where ${MEMBER_STREAMING})::int as n`,
        );
        if (!r.rec && r.n === inv.nodes.postgres.length - 1) {
          l = n.hostname;
          return true;
        }
      } catch {
        // next
      }
    }
    return false;
  });
  return l;
}

/** Every server of the write backend with an admin state (drain, maint) on every HAProxy node. */
function leftForced(): string[] {
  return inv.nodes.haproxy.flatMap((h) =>
    adminForced(
      inCt(h.vmid, [
        'sh',
        '-c',
        `echo "show servers state ${HAPROXY_WRITE_BACKEND}" | socat -t 5 stdio unix-connect:${HAPROXY_ADMIN_SOCKET}`,
      ]),
    ).map((x) => `${h.hostname}: ${x}`),
  );
}

/** One new connection through HAProxy's write port: connect, ask where it landed, close. */
async function newConnection(
  host: string,
  connectTimeoutMs: number,
): Promise<{ ok: boolean; connectMs: number; server?: string; error?: string }> {
  const t0 = Date.now();
  const c = new Client({
    host,
    port: inv.ports.haproxyWrite,
    user: inv.postgresql.superuser,
    password: password(),
    database: 'postgres',
    connectionTimeoutMillis: connectTimeoutMs,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const connectMs = Date.now() - t0;
    const r = await c.query<{ a: string }>('select host(inet_server_addr()) as a');
    return { ok: true, connectMs, server: nameOf(r.rows[0]!.a) };
  } catch (err) {
    return { ok: false, connectMs: Date.now() - t0, error: (err as Error).message };
  } finally {
    await c.end().catch(() => undefined);
  }
}

before(async () => {
  if (skip) return;
  ({ inventory: inv } = await inventoryInput(LAB));
  const { input } = await inventoryInput(LAB);
  env = await startTestServer();
  const taskQueue = uniqueId('hold-lab');
  worker = startWorkerProc({
    name: 'worker-1',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  await workerReady(worker, 300_000); // a loaded 2-core machine takes minutes to bundle the workflows
  // Deployed first (idempotent): HAProxy runs the rendered hold and Lua file.
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    taskQueue,
  });
  await d.result();
  const host = await proxmox.get(inv.proxmox);
  const haproxy = createHaproxyActivities({ runner: runnerFromCtExec(host) });
  sw = createSwitchoverActivities({
    patroni: createPatroniActivities(),
    postgres: createPostgresActivities(),
    etcd: createEtcdActivities(),
    haproxyFor: async () => haproxy,
    proxmoxFor: (s) => proxmox.get(s),
    afterDrain: () => afterDrain?.(),
  });
  await leader();
});

after(async () => {
  proxmox.closeAll();
  await worker?.stop();
  await env?.teardown();
});

void test(
  'a switchover whose POST Patroni refuses: it fails, nothing is left drained, no connection refused',
  { skip, timeout: 300_000 },
  async () => {
    const from = await leader();
    const to = inv.nodes.postgres.map((n) => n.hostname).find((n) => n !== from)!;
    const plan = await sw.switchoverPrecheck({ inv, action: 'switchover', candidate: to });
    // After the pre-check, the candidate becomes unfit for Patroni: tagged nofailover.
    const cfg = patroniConfigPath(inv);
    const tag = (v: boolean) => {
      inCt(vmid(to), ['sed', '-i', `s/nofailover: ${!v}/nofailover: ${v}/`, cfg]);
      inCt(vmid(to), ['systemctl', 'reload', 'patroni']);
    };
    const tagged = (v: boolean) =>
      waitFor(`${to} nofailover ${v}`, 60_000, async () => {
        const r = await fetch(`http://${ip(from)}:${inv.ports.patroniRestApi}/cluster`, {
          signal: AbortSignal.timeout(3000),
        });
        const c = (await r.json()) as { members: { name: string; tags?: { nofailover?: boolean } }[] };
        return Boolean(c.members.find((m) => m.name === to)?.tags?.nofailover) === v;
      });
    const hp = inv.nodes.haproxy[0]!;
    const writer = await new LabWriter(inv, 'pgha_hold_test', hp.ip).start();
    tag(true);
    const conns: Promise<Awaited<ReturnType<typeof newConnection>>>[] = [];
    try {
      await tagged(true);
      // New connections from the pre-POST drain on, every 20 ms, while the hand-off runs.
      let on = false;
      afterDrain = () => {
        on = true;
        void (async () => {
          while (on) {
            conns.push(newConnection(hp.ip, writeHoldMs(inv) + 2000));
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
      };
      try {
        await assert.rejects(sw.switchoverCutover({ inv, plan }), (err: Error) => {
          assert.match(
            err.message,
            new RegExp(`switchover to ${to} did not happen: Patroni answered 4\\d\\d`),
          );
          assert.match(err.message, new RegExp(`The leader is still ${from}`));
          return true;
        });
      } finally {
        on = false;
        afterDrain = undefined;
      }
    } finally {
      tag(false);
      await tagged(false);
    }
    const results = await Promise.all(conns);
    await writer.stop();
    assert.deepEqual(leftForced(), [], 'no server left drained on any HAProxy');
    assert.ok(results.length > 0, 'connections were opened in the drain window');
    assert.deepEqual(
      results.filter((r) => !r.ok),
      [],
      'no new connection was refused',
    );
    assert.deepEqual([...new Set(results.map((r) => r.server))], [from], 'all served by the leader');
    const longest = Math.max(...results.map((r) => r.connectMs));
    assert.ok(longest < writeHoldMs(inv), `held ${longest} ms at most, under the bound`);
    assert.equal(writer.errors, 0, `the live writer's session never failed (${writer.errors} errors)`);
    assert.equal(await leader(), from, 'the leader did not change');
  },
);

void test(
  '500 concurrent new connections during a switchover: all succeed, PostgreSQL never over max_connections',
  { skip, timeout: 300_000 },
  async () => {
    const from = await leader();
    const maxConnections = Number(
      (await one<{ m: string }>(ip(from), "select current_setting('max_connections') as m")).m,
    );
    const plan = await sw.switchoverPrecheck({ inv, action: 'switchover', candidate: undefined });
    // Connection counts sampled directly on every member (one kept connection each).
    const peak: Record<string, number> = {};
    let sampling = true;
    const samplers = inv.nodes.postgres.map(async (n) => {
      const c = new Client({
        host: n.ip,
        port: inv.ports.postgresql,
        user: inv.postgresql.superuser,
        password: password(),
        database: 'postgres',
      });
      c.on('error', () => undefined);
      await c.connect();
      try {
        while (sampling) {
          try {
            const r = await c.query<{ n: number }>('select count(*)::int as n from pg_stat_activity');
            peak[n.hostname] = Math.max(peak[n.hostname] ?? 0, r.rows[0]!.n);
          } catch {
            break; // the old leader restarts as a replica: its count was taken up to here
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await c.end().catch(() => undefined);
      }
    });
    const hp = inv.nodes.haproxy[0]!;
    let burst: Promise<Awaited<ReturnType<typeof newConnection>>[]> | undefined;
    afterDrain = () => {
      burst = Promise.all(Array.from({ length: 500 }, () => newConnection(hp.ip, 120_000)));
    };
    let cut;
    try {
      cut = await sw.switchoverCutover({ inv, plan });
    } finally {
      afterDrain = undefined;
    }
    assert.ok(burst, 'the burst started at the drain');
    const results = await burst;
    sampling = false;
    await Promise.all(samplers);
    await sw.switchoverVerify({ inv, plan });
    console.log(`hand-off timings (ms after the POST): ${JSON.stringify(cut.timings)}`);
    assert.equal(cut.outcome, 'switched');
    const failedOnes = results.filter((r) => !r.ok);
    assert.deepEqual(failedOnes.slice(0, 5), [], `${failedOnes.length} of 500 failed`);
    assert.deepEqual(
      [...new Set(results.map((r) => r.server))],
      [plan.candidate],
      'all served by the new leader',
    );
    for (const [name, n] of Object.entries(peak))
      assert.ok(n <= maxConnections, `${name}: ${n} connections at most, max_connections ${maxConnections}`);
    assert.deepEqual(leftForced(), [], 'no server left drained on any HAProxy');
    console.log(
      `500 connections: longest connect ${Math.max(...results.map((r) => r.connectMs))} ms; peak connections ${JSON.stringify(peak)} (max_connections ${maxConnections})`,
    );
  },
);
