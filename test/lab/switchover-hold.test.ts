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
 *    directly every 50 ms, never exceeds max_connections (HAProxy's per-server maxconn + queue);
 *  - the switchover runbook on a real worker process SIGKILLed right after its pre-POST drain (the
 *    kill confirmed with the worker frozen: both servers drained on every HAProxy, read through the
 *    runtime API): the run ends definitely (switched once, or not at all), no server is left in an
 *    admin state on any HAProxy, new connections opened from the kill on are held and then served
 *    (never by a replica), and refused only after being held the whole bound, for no longer than
 *    the bound; one leader, replicas streaming, every acknowledged row still there.
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
import {
  HAPROXY_ADMIN_SOCKET,
  HAPROXY_READ_BACKEND,
  HAPROXY_WRITE_BACKEND,
  writeHoldMs,
} from '../../activities/render';
import { createSwitchoverActivities } from '../../activities/switchover';
import type { Inventory } from '../../runbooks/schema';
import { WorkflowFailedError } from '@temporalio/client';
import { parseShowStat } from '../../activities/haproxy';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { HandoffReport, switchover } from '../../workflows/switchover';
import { errorMessage } from '../../workflows/steps';
import {
  LabWriter,
  adminStates,
  drainedOnEvery,
  inCt,
  sqlAs,
  switchoverRequests,
  timelineOf,
  withRuntime,
  MEMBER_STREAMING,
} from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { activityCallers, killAt, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const workers: Proc[] = [];
const taskQueue = uniqueId('hold-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
const startWorker = async (name: string) => {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  workers.push(w);
  await workerReady(w, 300_000); // a loaded 2-core machine takes minutes to bundle the workflows
  return w;
};
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

/** Every server of the write (and read) backend with an admin state (drain, maint) on every HAProxy node. */
function leftForced(backends = [HAPROXY_WRITE_BACKEND]): string[] {
  return inv.nodes.haproxy.flatMap((h) =>
    backends.flatMap((b) =>
      adminForced(
        inCt(h.vmid, [
          'sh',
          '-c',
          `echo "show servers state ${b}" | socat -t 5 stdio unix-connect:${HAPROXY_ADMIN_SOCKET}`,
        ]),
      ).map((x) => `${h.hostname}: ${x}`),
    ),
  );
}

/** One new connection through HAProxy's write port: connect, ask where it landed, close. */
async function newConnection(
  host: string,
  connectTimeoutMs: number,
): Promise<{
  ok: boolean;
  connectMs: number;
  /** The connection was established (a failure after it: the session was cut, not refused). */
  connected?: boolean;
  server?: string;
  replica?: boolean;
  error?: string;
}> {
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
  let connected = false;
  try {
    await c.connect();
    connected = true;
    const connectMs = Date.now() - t0;
    const r = await c.query<{ a: string; r: boolean }>(
      'select host(inet_server_addr()) as a, pg_is_in_recovery() as r',
    );
    return { ok: true, connectMs, server: nameOf(r.rows[0]!.a), replica: r.rows[0]!.r };
  } catch (err) {
    return { ok: false, connectMs: Date.now() - t0, connected, error: (err as Error).message };
  } finally {
    await c.end().catch(() => undefined);
  }
}

before(async () => {
  if (skip) return;
  ({ inventory: inv, input } = await inventoryInput(LAB));
  env = await startTestServer();
  await startWorker('worker-1');
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
  for (const w of workers) await w.stop();
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

void test(
  'a worker SIGKILLed right after the pre-POST drain: a definite end, nothing left drained, new connections held then served',
  { skip, timeout: 420_000 },
  async () => {
    const from = await leader();
    const to = inv.nodes.postgres.map((n) => n.hostname).find((n) => n !== from)!;
    const tlBefore = await timelineOf(inv, ip(from));
    const hold = writeHoldMs(inv);
    assert.deepEqual(leftForced([HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND]), [], 'nothing drained before');
    // A second worker polls the same queue: it takes over the hand-off once the first is dead.
    const live = workers.filter((w) => w.running);
    if (live.length < 2) live.push(await startWorker(`worker-${workers.length + 1}`));
    const hp = inv.nodes.haproxy[0]!;
    await one(ip(from), 'drop table if exists pgha_hold_kill'); // the writer's ids start at 1
    const writer = await new LabWriter(inv, 'pgha_hold_kill', hp.ip).start();
    const conns: { start: number; r: ReturnType<typeof newConnection> }[] = [];
    let opening = false;
    let opener: Promise<void> | undefined;
    try {
      const since = inCt(vmid(from), ['date', '+%s']).trim();
      const cutsBefore = activityCallers(countDir, 'switchoverCutover').length;
      const h = await startRunbook<typeof switchover>(env.client, {
        workflow: 'switchover',
        args: [{ inventory: input, candidate: to }],
        cluster: inv.cluster,
        operation: 'switchover',
        taskQueue,
      });
      let runner: Proc | undefined;
      await waitFor('the hand-off started', 120_000, async () => {
        const pid = activityCallers(countDir, 'switchoverCutover')[cutsBefore];
        runner = live.find((w) => w.child.pid === pid);
        return runner !== undefined;
      });
      // The kill lands after the pre-POST drain (both drained on every HAProxy, confirmed with the
      // worker frozen) and before the candidate is admitted; whether the POST went out just before
      // is not known, and the checks below hold either way.
      const killedAt = await withRuntime(inv, (rt) =>
        killAt(runner!, `${from} and ${to} drained on every HAProxy`, 120_000, () =>
          drainedOnEvery(rt, HAPROXY_WRITE_BACKEND, [from, to]),
        ),
      );
      // New connections from the kill on, every 100 ms, with the connect timeout clients are told
      // to use (README "What clients must know": at least the bound).
      opening = true;
      opener = (async () => {
        while (opening) {
          conns.push({ start: Date.now(), r: newConnection(hp.ip, hold + 2000) });
          await sleep(100);
        }
      })();
      let report: HandoffReport | undefined;
      let failure: string | undefined;
      try {
        report = (await h.result()) as HandoffReport;
      } catch (err) {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        failure = errorMessage(err.cause);
      }
      const endedAt = Date.now();
      await sleep(1000);
      opening = false;
      await opener;
      const results = await Promise.all(conns.map(async (c) => ({ start: c.start, ...(await c.r) })));
      await writer.stop();
      const killed = live.filter((w) => !w.running);
      assert.deepEqual(
        killed.map((w) => w.name),
        [runner!.name],
        'the worker running the hand-off was killed',
      );
      assert.equal(
        activityCallers(countDir, 'switchoverCutover').length - cutsBefore,
        2,
        'the hand-off ran again on the other worker',
      );

      // A definite end: switched once, or not at all with the old leader leading.
      const requests = switchoverRequests(inv, since);
      const now = await leader();
      if (report) {
        assert.equal(report.to, to);
        assert.ok(['switched', 'already-done'].includes(report.outcome), report.outcome);
        assert.equal(now, to, 'the candidate leads');
        assert.equal(await timelineOf(inv, ip(to)), tlBefore + 1, 'timeline +1: one switchover');
        assert.equal(requests, 1, 'Patroni received exactly one POST /switchover');
      } else {
        assert.equal(now, from, `the run failed (${failure}), so the old leader must still lead`);
        assert.match(failure!, new RegExp(`switchover to ${to} did not happen`));
        assert.equal(await timelineOf(inv, ip(from)), tlBefore, 'same timeline');
        assert.ok(requests <= 1, `${requests} POST /switchover`);
      }

      // HAProxy, read directly: nothing in an admin state, writes only to the leader.
      assert.deepEqual(
        leftForced([HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND]),
        [],
        'no server left drained',
      );
      await withRuntime(inv, async (rt) => {
        for (const b of [HAPROXY_WRITE_BACKEND, HAPROXY_READ_BACKEND])
          assert.deepEqual(
            Object.values(await adminStates(rt, b)).filter((x) => Object.keys(x).length > 0),
            [],
            `${b}: no admin state`,
          );
        for (const x of rt.sessions) {
          const up = async () =>
            parseShowStat(await x.command('show stat'))
              .filter((r) => r.backend === HAPROXY_WRITE_BACKEND && r.type === 'server' && r.state === 'UP')
              .map((r) => r.server);
          await waitFor(`${x.node}: only ${now} UP in the write backend`, 15_000, async () => {
            const u = await up();
            return u.length === 1 && u[0] === now;
          });
        }
      });
      for (const n of inv.nodes.haproxy) {
        const w = await one<{ a: string }>(
          n.ip,
          'select host(inet_server_addr()) as a',
          inv.ports.haproxyWrite,
        );
        assert.equal(nameOf(w.a), now, `a connection through ${n.hostname} reaches the leader`);
      }

      // New connections: never to a replica; refused only after being held the whole bound, and
      // only those opened early enough that no leader was admitted within their bound.
      const served = results.filter((r) => r.ok);
      const refused = results.filter((r) => !r.ok && !r.connected);
      const cut = results.filter((r) => !r.ok && r.connected);
      console.log(
        `kill → end ${endedAt - killedAt} ms; ${results.length} new connections: ${served.length} served ` +
          `(longest connect ${Math.max(0, ...served.map((r) => r.connectMs))} ms), ${refused.length} refused ` +
          `(opened ${refused.map((r) => r.start - killedAt).join(' ')} ms after the kill, after ${refused.map((r) => r.connectMs).join(' ')} ms); ` +
          `${cut.length} cut after connecting (${cut.map((r) => r.error).join('; ')}); outcome ${report?.outcome ?? failure}`,
      );
      assert.ok(results.length > 0);
      assert.deepEqual(
        served.filter((r) => r.replica),
        [],
        'no new connection reached a replica',
      );
      for (const r of refused)
        assert.ok(
          r.connectMs >= hold - 100,
          `refused after ${r.connectMs} ms: held the whole bound (${hold} ms) first`,
        );
      // The longest stretch in which every new connection was refused (from the first refused one
      // opened to the next served one opened): clients are refused no longer than the bound.
      let stretch = 0;
      let from0: number | undefined;
      for (const r of [...results].sort((x, y) => x.start - y.start)) {
        if (r.ok || r.connected) {
          if (from0 !== undefined) stretch = Math.max(stretch, r.start - from0);
          from0 = undefined;
        } else from0 ??= r.start;
      }
      if (from0 !== undefined) stretch = Math.max(stretch, endedAt - from0);
      assert.ok(
        stretch <= hold,
        `new connections were refused for ${stretch} ms in a row: longer than the bound ${hold} ms`,
      );

      // The cluster itself: one leader, every replica streaming from it (leader() above), the
      // others in recovery, every acknowledged row there.
      for (const n of inv.nodes.postgres.filter((m) => m.hostname !== now))
        assert.equal(
          (await one<{ r: boolean }>(n.ip, 'select pg_is_in_recovery() as r')).r,
          true,
          n.hostname,
        );
      const acked = writer.ackedIds;
      const found = await sqlAs(inv, ip(now), inv.ports.postgresql, async (c) =>
        Number(
          (
            await c.query<{ n: string }>(
              'select count(*)::text as n from pgha_hold_kill where id = any($1::bigint[])',
              [acked],
            )
          ).rows[0]!.n,
        ),
      );
      assert.ok(acked.length > 0);
      assert.equal(found, acked.length, 'every acknowledged row is on the leader');
    } finally {
      opening = false;
      await opener;
      await writer.stop();
    }
  },
);
