/**
 * The hold of new write connections (issue 17), run by a real HAProxy (Debian's 2.6) on loopback
 * from the RENDERED write frontend and backend (render/haproxy.ts haproxyWriteSections) and the
 * rendered Lua file (render/haproxy-hold.ts): servers are TCP stand-ins for PostgreSQL on
 * 127.0.0.21-23 that answer a client's first bytes with their name, checked on FakePatroni's
 * /primary like the lab's members. The runtime API drives drain/ready as the hand-off does.
 *  - a usable leader: a new connection goes through;
 *  - nothing usable (the leader drained, as between the hand-off's pre-POST drain and the new
 *    leader's admission): the connection is held — no server sees it — and goes to the leader
 *    once it is `ready` again;
 *  - nothing usable for longer than haproxy.writeHold: let go after the bound, closed, never routed;
 *  - per-server maxconn (from max_connections): a burst of connections never has more than
 *    maxconn at a server at once, the rest wait in the queue and are all served.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  HAPROXY_HOLD_LUA_PATH,
  HAPROXY_WRITE_BACKEND,
  haproxyWriteSections,
  renderHaproxyHoldLua,
  writeServerMaxconn,
} from '../../activities/render';
import { parseInventory } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { Proc, freePort, waitFor } from '../helpers/local-common';
import { socatRunner } from '../helpers/local-haproxy';
import { FakePatroni } from '../helpers/local-patroni';

const root = join(__dirname, '..', '..');

/** A PostgreSQL stand-in: answers a client's first bytes with its name; counts concurrent clients. */
class StandIn {
  server?: Server;
  seen = 0;
  now = 0;
  max = 0;
  constructor(
    readonly name: string,
    readonly host: string,
    readonly port: number,
    /** Keep each client this long before closing (ms); 0: until the client closes. */
    readonly holdMs = 0,
  ) {}
  async start(): Promise<void> {
    this.server = createServer((s: Socket) => {
      this.seen++;
      this.now++;
      this.max = Math.max(this.max, this.now);
      s.on('error', () => undefined);
      // Counted out when this side ends it (HAProxy frees the slot only after it sees that FIN), or
      // when the client goes first.
      let counted = true;
      const out = () => {
        if (counted) this.now--;
        counted = false;
      };
      s.once('close', out);
      s.once('data', () => {
        s.write(`${this.name}\n`);
        if (this.holdMs > 0)
          setTimeout(() => {
            out();
            s.end();
          }, this.holdMs);
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, this.host, r));
  }
  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** A client through the frontend: sends a startup-like packet; resolves when the server (or HAProxy) closes. */
function client(port: number): Promise<{ reply?: string; closedAt: number; openedAt: number }> {
  return new Promise((resolve) => {
    const openedAt = Date.now();
    let reply: string | undefined;
    const s = connect(port, '127.0.0.1', () => s.write('startup\n'));
    s.on('data', (b: Buffer) => (reply = (reply ?? '') + b.toString()));
    s.on('error', () => undefined);
    s.once('close', () => resolve({ reply: reply?.trim(), closedAt: Date.now(), openedAt }));
  });
}

let dir: string;
let inv: Inventory;
let haproxy: Proc;
const node = () => ({ name: 'haproxy1', socket: join(dir, 'admin.sock') });
const patronis: FakePatroni[] = [];
const standIns: StandIn[] = [];
let frontPort = 0;
const runtime = (cmd: string) => socatRunner(node(), cmd, { timeoutMs: 2000 });
const HOLD_MS = 1000;

async function serverState(server: string): Promise<string> {
  const out = await runtime(`show stat`);
  const line = out.split('\n').find((l) => l.startsWith(`${HAPROXY_WRITE_BACKEND},${server},`));
  return line?.split(',')[17] ?? '?';
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgha-hold-'));
  const [pg, rest] = [await freePort(), await freePort()];
  frontPort = await freePort();
  const text = (await readFile(join(root, 'runbooks', 'clusters', 'lab.yaml'), 'utf8')).replaceAll(
    '10.213.50.',
    '127.0.0.',
  );
  const doc = parseYaml(text) as {
    ports: Record<string, number>;
    haproxy?: Record<string, unknown>;
    postgresql: { parameters: Record<string, unknown> };
  };
  Object.assign(doc.ports, { postgresql: pg, patroniRestApi: rest, haproxyWrite: frontPort });
  doc.haproxy = { ...(doc.haproxy ?? {}), writeHold: `${HOLD_MS}ms`, writeQueue: '20s' };
  doc.postgresql.parameters.max_connections = 21; // (21 - 3 reserved - 10) / 2 HAProxy nodes = 4 per server
  inv = parseInventory(doc, { baseDir: root });
  for (const [i, n] of inv.nodes.postgres.entries()) {
    const p = new FakePatroni({
      name: n.hostname,
      role: i === 0 ? 'primary' : 'replica',
      host: n.ip,
      port: rest,
    });
    await p.start();
    patronis.push(p);
    const s = new StandIn(n.hostname, n.ip, pg, 150);
    await s.start();
    standIns.push(s);
  }
  const lua = join(dir, 'hold.lua');
  await writeFile(lua, renderHaproxyHoldLua(inv).content);
  const cfg = [
    'global',
    `    stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
    'defaults',
    '    mode tcp',
    '    timeout connect 1s',
    '    timeout client 30s',
    '    timeout server 30s',
    '    timeout check 1s',
    '',
    ...haproxyWriteSections(inv).map((l) =>
      l.replace(HAPROXY_HOLD_LUA_PATH, lua).replace(`bind *:${frontPort}`, `bind 127.0.0.1:${frontPort}`),
    ),
  ].join('\n');
  await writeFile(join(dir, 'haproxy.cfg'), `${cfg}\n`);
  haproxy = new Proc('haproxy', '/usr/sbin/haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
  await waitFor('haproxy: the leader UP in the write backend', 15_000, async () => {
    if (!haproxy.running) throw new Error(`haproxy exited: ${haproxy.output()}`);
    if (!existsSync(node().socket)) return false;
    return (await serverState(inv.nodes.postgres[0]!.hostname)) === 'UP';
  });
});

after(async () => {
  await haproxy?.stop();
  for (const p of patronis) await p.stop();
  for (const s of standIns) await s.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

void describe('the write hold, in a real HAProxy from the rendered lines', () => {
  const leader = () => inv.nodes.postgres[0]!.hostname;

  void it('the rendered maxconn comes from max_connections, less reserved slots and headroom, per HAProxy node', () => {
    assert.deepEqual(writeServerMaxconn(inv), { maxconn: 4, maxConnections: 21, reserved: 3, nodes: 2 });
  });

  void it('a usable leader: a new connection goes straight to it', async () => {
    const r = await client(frontPort);
    assert.equal(r.reply, leader());
  });

  void it('no usable server (leader drained): held, no server sees it, then served by the leader once ready', async () => {
    const seenBefore = standIns.map((s) => s.seen);
    await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state drain`);
    let readyAt = 0;
    try {
      const pending = client(frontPort);
      // held: while drained, nothing reaches any server (well within the 1 s bound)
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(
        standIns.map((s) => s.seen),
        seenBefore,
        'no server saw the held connection',
      );
      readyAt = Date.now();
      await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state ready`);
      const r = await pending;
      assert.equal(r.reply, leader(), 'served by the leader once it was usable again');
      assert.ok(r.closedAt >= readyAt, 'answered only after the leader was made ready');
    } finally {
      await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state ready`);
    }
  });

  void it('no usable server for longer than the bound: let go after haproxy.writeHold and closed, never routed', async () => {
    const seenBefore = standIns.map((s) => s.seen);
    await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state drain`);
    try {
      const r = await client(frontPort);
      assert.equal(r.reply, undefined, 'no server answered');
      assert.ok(
        r.closedAt - r.openedAt >= HOLD_MS - 20,
        `held for the bound before it was let go (closed after ${r.closedAt - r.openedAt} ms, bound ${HOLD_MS} ms)`,
      );
      assert.deepEqual(
        standIns.map((s) => s.seen),
        seenBefore,
      );
    } finally {
      await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state ready`);
    }
  });

  void it('a burst of 40 connections released at once: never more than maxconn at the server, all served', async () => {
    const s = standIns[0]!;
    s.max = s.now;
    await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state drain`);
    let results: Awaited<ReturnType<typeof client>>[];
    try {
      const pending = Array.from({ length: 40 }, () => client(frontPort));
      await new Promise((r) => setTimeout(r, 200));
      await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state ready`);
      results = await Promise.all(pending);
    } finally {
      await runtime(`set server ${HAPROXY_WRITE_BACKEND}/${leader()} state ready`);
    }
    assert.deepEqual(
      results.map((r) => r.reply),
      results.map(() => leader()),
      'every connection was served by the leader',
    );
    assert.ok(s.max <= writeServerMaxconn(inv).maxconn, `at most maxconn at once (saw ${s.max})`);
    assert.equal(s.max, writeServerMaxconn(inv).maxconn, 'the queue filled every slot');
  });
});
