/**
 * The read port around a member's restart (activities/upgrade/drain.ts), against a real HAProxy on
 * loopback: drained, the open read sessions are given their bound, and what is still open after it
 * is closed by HAProxy — before the restart — while a new connection goes to the other replica.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { MockActivityEnvironment } from '@temporalio/testing';
import { adminForced, createHaproxyActivities, type HaproxyRuntimeRunner } from '../../activities/haproxy';
import { HAPROXY_READ_BACKEND } from '../../activities/render';
import { createUpgradeActivities, type UpgradeDeps } from '../../activities/upgrade';
import type { DrainResult } from '../../activities/upgrade/types';
import { labInventory } from '../helpers/lab-inventory';
import { freePort } from '../helpers/local-common';
import { startLocalHaproxy, socatRunner, type LocalHaproxy } from '../helpers/local-haproxy';
import { FakePatroni } from '../helpers/local-patroni';

const inv = labInventory();
const [drained, other] = inv.nodes.postgres.slice(1).map((n) => n.hostname) as [string, string];

/** A stand-in PostgreSQL: accepts and holds connections, answers each with its name. */
async function holdingServer(name: string): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.write(`${name}\n`);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, port, sockets };
}

let hap: LocalHaproxy;
const patronis: FakePatroni[] = [];
const servers: Awaited<ReturnType<typeof holdingServer>>[] = [];

before(async () => {
  for (const name of [drained, other]) {
    patronis.push(await new FakePatroni({ name, role: 'replica' }).start());
    servers.push(await holdingServer(name));
  }
  hap = await startLocalHaproxy({
    backends: [
      {
        name: HAPROXY_READ_BACKEND,
        check: '/replica',
        servers: [drained, other].map((name, i) => ({
          name,
          addr: '127.0.0.1',
          port: servers[i]!.port,
          checkPort: patronis[i]!.port,
        })),
      },
    ],
  });
});

after(async () => {
  await hap?.stop();
  for (const p of patronis) await p.stop();
  for (const s of servers) {
    for (const k of s.sockets) k.destroy();
    s.server.close();
  }
});

/** A client through HAProxy's read port: which server it reached, and a promise of its close. */
async function reader(): Promise<{ reached: string; closed: Promise<void> }> {
  const s = connect(hap.ports[HAPROXY_READ_BACKEND]!, '127.0.0.1');
  s.on('error', () => undefined);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  const reached = await new Promise<string>((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString().trim()));
    s.once('close', () => reject(new Error('closed before an answer')));
  });
  return { reached, closed };
}

void test('drain: a session past its bound is closed by HAProxy before the restart; new ones reach the other replica', async () => {
  // every HAProxy node of the inventory is the one local HAProxy here
  const runner: HaproxyRuntimeRunner = (_node, cmd, o) => socatRunner(hap.node, cmd, o);
  const deps = {
    haproxyRunner: async () => runner,
    haproxyFor: async () => createHaproxyActivities({ runner }),
  } as unknown as UpgradeDeps;
  // a client held on the member about to restart (HAProxy balances: open until one lands there)
  let held: Awaited<ReturnType<typeof reader>> | undefined;
  for (let i = 0; i < 20 && !held; i++) {
    const r = await reader();
    if (r.reached === drained) held = r;
  }
  assert.ok(held, `a read session on ${drained}`);
  let closedAt = 0;
  void held.closed.then(() => (closedAt = Date.now()));

  const t0 = Date.now();
  const out: DrainResult = await new MockActivityEnvironment().run(
    createUpgradeActivities(deps).upgradeReadPortOut,
    {
      inv,
      member: drained,
      sessionsTimeoutMs: 600,
    },
  );
  assert.ok(out.sessionsLeft >= 1, `reported: ${JSON.stringify(out)}`);
  assert.ok(out.waitedMs >= 600, `the bound was given: ${out.waitedMs} ms`);
  await Promise.race([held.closed, new Promise((r) => setTimeout(r, 3000))]);
  assert.ok(closedAt > 0, 'the held session was closed by HAProxy (nothing restarted here)');
  assert.ok(closedAt - t0 >= 600, `closed after the bound, ${closedAt - t0} ms`);
  assert.deepEqual(
    adminForced(await runner(hap.node, `show servers state ${HAPROXY_READ_BACKEND}`, { timeoutMs: 3000 })),
    [`${HAPROXY_READ_BACKEND}/${drained} (admin state 8)`],
  );
  for (let i = 0; i < 4; i++)
    assert.equal((await reader()).reached, other, 'a new read goes to the other replica');
});
