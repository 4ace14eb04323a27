/**
 * HAProxy never sends a write to a replica right after it starts or reloads (issue 8 item 5), on the
 * lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml).
 *
 * HAProxy 2.6 starts every server UP until its first check fails; with `balance first` a new
 * connection then goes to the first server of the write backend, a replica whenever the leader is not
 * first. pgha's files load every server's initial state from a state file the unit writes before each
 * start (all DOWN) and each reload (the running states). The test:
 *  - makes sure the leader is the last server of the write backend (a plain Patroni switchover to
 *    it first): HAProxy spreads the first checks over `inter` in server order, so the first server
 *    is checked at once, and the replicas before the leader stay UP-at-start longest when the
 *    leader is last;
 *  - installs pgha's HAProxy files with the deploy step itself (installHaproxy: push, haproxy -c,
 *    reload when changed);
 *  - runs writers through the write port of the first HAProxy node, each write on a new connection
 *    (a client pool's way, so every new connection is routed afresh), counting those that reach a
 *    replica (SQLSTATE 25006, or an address other than the leader's);
 *  - restarts HAProxy (`systemctl restart`, what a boot, a crash or an upgrade does) and reloads it
 *    (`systemctl reload`, what the deploy step and applyConfig do) five times each;
 *  - expects 0 writes on a replica, and writes acknowledged by the leader after every restart/reload.
 * On the files before the fix (no state file) the same run counted writes on a replica (see the
 * report of issue 8). Skips only when the lab is not up.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client } from 'pg';
import { createNodeActivities } from '../../activities/nodes';
import { createPatroniActivities, clusterLeader } from '../../activities/patroni';
import { createProxmoxFactory } from '../../activities/proxmox';
import type { ProxmoxHost } from '../../activities/proxmox';
import { labNotUpReason } from '../../lab/testing';
import { loadInventory, resolveClusterSecrets } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { findNode, memberByIp, memberNames, restApi, restApiAuth } from '../../runbooks/topology';
import { sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
/** Writers opening a new connection per write (a pool's new connections). */
const FRESH_WRITERS = 4;
/** Writers keeping their connection and reconnecting at once after any error (cut by a restart). */
const KEPT_WRITERS = 2;
/** Restarts and reloads, each (the misrouting window is a few hundred ms: not every restart hits it). */
const ROUNDS = 5;

interface Attempt {
  start: number;
  end: number;
  ok: boolean;
  server?: string;
  replica: boolean;
  error?: string;
}

void describe('HAProxy after a restart or a reload (pgha files)', { skip }, () => {
  let inv: Inventory;
  let password: string;
  const proxmox = createProxmoxFactory();
  let host: ProxmoxHost;
  const patroni = createPatroniActivities();

  const leaderNow = async () => {
    for (const t of memberNames(inv).map((m) => restApi(inv, m))) {
      try {
        const r = await patroni.patroniGetCluster({ target: t, timeoutMs: 2000 });
        const l = r.body ? clusterLeader(r.body) : undefined;
        if (l) return l;
      } catch {
        // next member
      }
    }
    return undefined;
  };
  /** The leader, writable, with every other member streaming from it. */
  const healthy = (timeoutMs = 120_000) => waitHealthyDirect(inv, timeoutMs);

  before(async () => {
    inv = await loadInventory(LAB);
    password = (await resolveClusterSecrets(inv)).superuserPassword;
    host = await proxmox.get(inv.proxmox);
  });
  after(() => proxmox.closeAll());

  void it(`sends no write to a replica in the first seconds after ${ROUNDS} restarts and ${ROUNDS} reloads`, async () => {
    const hp = inv.nodes.haproxy[0]!;
    const last = memberNames(inv).at(-1)!;
    let leader = await healthy();
    if (leader !== last) {
      // With the leader first in the write backend, "every server UP" would still pick the leader.
      // Last: the replicas before it are checked first but not at once.
      const r = await patroni.patroniSwitchover({
        target: restApi(inv, leader),
        auth: restApiAuth(inv),
        leader,
        candidate: last,
        timeoutMs: 60_000,
      });
      // 503 "Switchover status unknown": Patroni stopped waiting for the outcome (a slow promotion
      // on a loaded machine), not a refusal; whether it happened is what the wait below checks.
      assert.ok(
        r.status === 200 || (r.status === 503 && /unknown/i.test(r.text ?? '')),
        `POST /switchover ${leader} → ${last}: ${r.status} ${r.text ?? ''}`,
      );
      await waitFor(`${last} leading`, 90_000, async () => (await leaderNow()) === last);
      leader = await healthy();
    }
    assert.equal(leader, last, 'the leader is the last server of the write backend');
    const leaderIp = findNode(inv, 'postgres', leader).ip;

    // pgha's files, installed by the deploy step itself (reloads HAProxy when they changed).
    const nodes = createNodeActivities({ shellFor: (section) => proxmox.get(section) });
    for (const h of inv.nodes.haproxy) {
      await new MockActivityEnvironment().run(nodes.installHaproxy, { inv, hostname: h.hostname });
    }
    await sqlAs(inv, leaderIp, inv.ports.postgresql, (c) =>
      c.query(
        'create table if not exists pgha_restart_probe (id bigserial primary key, at timestamptz default now())',
      ),
    );
    await sleep(3000); // past any reload the install did

    const attempts: Attempt[] = [];
    let running = true;
    const connect = async () => {
      const c = new Client({
        host: hp.ip,
        port: inv.ports.haproxyWrite,
        user: inv.postgresql.superuser,
        password,
        database: 'postgres',
        connectionTimeoutMillis: 2000,
        query_timeout: 2000,
      });
      c.on('error', () => undefined);
      try {
        await c.connect();
      } catch (err) {
        await c.end().catch(() => undefined);
        throw err;
      }
      return c;
    };
    const writer = async (keep: boolean) => {
      let c: Client | undefined;
      while (running) {
        const start = Date.now();
        try {
          c ??= await connect();
          const r = await c.query<{ addr: string }>(
            'insert into pgha_restart_probe default values returning host(inet_server_addr()) as addr',
          );
          const server = r.rows[0]!.addr;
          attempts.push({ start, end: Date.now(), ok: true, server, replica: server !== leaderIp });
        } catch (err) {
          const e = err as { code?: string; message?: string };
          attempts.push({
            start,
            end: Date.now(),
            ok: false,
            replica: e.code === '25006',
            error: `${e.code ?? ''} ${e.message ?? ''}`.trim(),
          });
          await c?.end().catch(() => undefined);
          c = undefined;
          if (e.code === 'ECONNREFUSED') await sleep(5); // HAProxy stopped: no busy loop
          continue;
        }
        if (keep) {
          await sleep(4); // ≈ 200 writes/s each
        } else {
          await c.end().catch(() => undefined);
          c = undefined;
        }
      }
      await c?.end().catch(() => undefined);
    };
    const loops = [
      ...Array.from({ length: FRESH_WRITERS }, () => writer(false)),
      ...Array.from({ length: KEPT_WRITERS }, () => writer(true)),
    ];
    const events: { what: string; at: number }[] = [];
    try {
      await sleep(2000);
      for (let i = 0; i < ROUNDS; i++) {
        for (const action of ['restart', 'reload'] as const) {
          events.push({ what: `${action} ${i + 1}`, at: Date.now() });
          await host.execChecked(hp.vmid, ['systemctl', action, 'haproxy'], { timeoutMs: 60_000 });
          await sleep(4000);
        }
      }
    } finally {
      running = false;
      await Promise.all(loops);
    }

    const misrouted = attempts.filter((a) => a.replica);
    const eventOf = (t: number) => [...events].reverse().find((e) => e.at <= t)?.what ?? 'before';
    const where = misrouted
      .slice(0, 10)
      .map(
        (a) =>
          `${eventOf(a.start)} +${a.start - (events.find((e) => e.what === eventOf(a.start))?.at ?? a.start)} ms: ${a.error ?? `committed on ${memberByIp(inv, a.server)}`}`,
      );
    console.log(
      `haproxy restart/reload: ${attempts.length} write attempts, ${attempts.filter((a) => a.ok).length} committed, ` +
        `${misrouted.length} reached a replica (leader ${leader}); per event: ` +
        events
          .map((e) => `${e.what} ${misrouted.filter((a) => eventOf(a.start) === e.what).length}`)
          .join(', '),
    );
    assert.equal(misrouted.length, 0, `writes reached a replica after a restart/reload: ${where.join('; ')}`);
    // Not vacuous: after every restart and reload the leader acknowledged writes through HAProxy.
    for (const [k, e] of events.entries()) {
      const until = events[k + 1]?.at ?? Infinity;
      const acked = attempts.filter((a) => a.ok && a.start >= e.at && a.start < until).length;
      assert.ok(acked > 0, `no write acknowledged after ${e.what}`);
    }
    await sqlAs(inv, leaderIp, inv.ports.postgresql, (c) =>
      c.query('drop table if exists pgha_restart_probe'),
    );
  });
});
