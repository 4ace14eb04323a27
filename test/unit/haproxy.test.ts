import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  adminForced,
  createHaproxyActivities,
  settleCommands,
  settleNode,
  openRuntimeSessions,
  parseShowStat,
  socatArgv,
  type HaproxyNode,
  type HaproxyRuntimeRunner,
  type RuntimeStream,
} from '../../activities/haproxy';
import { freePort } from '../helpers/local-common';
import { startLocalHaproxy, socatRunner, type LocalHaproxy } from '../helpers/local-haproxy';
import { FakePatroni } from '../helpers/local-patroni';

void describe('haproxy show stat parser', () => {
  // Columns and values in HAProxy 2.6's format; only the columns pgha reads are filled in.
  const header =
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,';
  const line = (
    px: string,
    sv: string,
    scur: number,
    status: string,
    lastchg: string,
    type: number,
    check: string,
    code: string,
  ) => {
    const f = new Array(40).fill('');
    f[0] = px;
    f[1] = sv;
    f[4] = String(scur);
    f[17] = status;
    f[23] = lastchg;
    f[32] = String(type);
    f[36] = check;
    f[37] = code;
    return f.join(',');
  };
  const csv = [
    header,
    line('primary', 'FRONTEND', 0, 'OPEN', '', 0, '', ''),
    line('primary', 'pg102', 0, 'DOWN', '12', 2, 'L7STS', '503'),
    line('primary', 'pg103', 3, 'UP', '40', 2, 'L7OK', '200'),
    line('primary', 'pg104', 0, 'UP 1/2', '40', 2, '* L7STS', '503'),
    line('primary', 'BACKEND', 3, 'UP', '40', 1, '', ''),
    line('replicas', 'pg102', 0, 'MAINT', '5', 2, 'L4CON', ''),
    line('replicas', 'pg104', 0, 'no check', '5', 2, '', ''),
    '',
  ].join('\n');

  void it('reads backend, server, status and check status by column name', () => {
    const rows = parseShowStat(csv);
    assert.equal(rows.length, 7);
    const pg102 = rows.find((r) => r.backend === 'primary' && r.server === 'pg102')!;
    assert.deepEqual(
      [pg102.type, pg102.status, pg102.state, pg102.checkStatus, pg102.checkCode, pg102.lastChangeS],
      ['server', 'DOWN', 'DOWN', 'L7STS', 503, 12],
    );
    const pg103 = rows.find((r) => r.backend === 'primary' && r.server === 'pg103')!;
    assert.equal(pg103.currentSessions, 3);
    const goingDown = rows.find((r) => r.server === 'pg104' && r.backend === 'primary')!;
    assert.equal(goingDown.state, 'UP', 'UP 1/2 is still up (going down)');
    assert.equal(goingDown.checkStatus, 'L7STS', 'the in-progress marker is dropped');
    assert.equal(rows.find((r) => r.backend === 'replicas' && r.server === 'pg102')!.state, 'MAINT');
    assert.equal(rows.find((r) => r.backend === 'replicas' && r.server === 'pg104')!.state, 'unknown');
    assert.equal(rows.find((r) => r.server === 'FRONTEND')!.type, 'frontend');
  });

  void it('refuses an answer that is not show stat CSV, quoting it', () => {
    assert.throws(() => parseShowStat('Unknown command: show stats\n'), /no CSV header.*Unknown command/);
  });

  void it('builds the socat argv for the admin socket and rejects a relative path', () => {
    assert.deepEqual(socatArgv({ name: 'haproxy1', vmid: 100 }), [
      'socat',
      '-t',
      '5',
      'stdio',
      'unix-connect:/run/haproxy/admin.sock,shut-none',
    ]);
    assert.throws(() => socatArgv({ name: 'h', socket: 'admin.sock' }), /must be an absolute path/);
  });

  void it('never sends a name that could smuggle a second runtime-API command', async () => {
    const sent: string[] = [];
    const spy: HaproxyRuntimeRunner = async (_n, cmd) => {
      sent.push(cmd);
      return '';
    };
    const h = createHaproxyActivities({ runner: spy });
    await assert.rejects(
      h.haproxySetServerState({
        node: { name: 'h1' },
        backend: 'primary',
        server: 'pg102;shutdown frontend x',
        state: 'maint',
      }),
      /haproxy server .* only letters, digits/,
    );
    await assert.rejects(
      h.haproxySetServerState({
        node: { name: 'h1' },
        backend: 'primary',
        server: 'pg102',
        state: 'off' as never,
      }),
      /expected ready, drain or maint/,
    );
    assert.deepEqual(sent, []);
  });
});

void describe('haproxy activities against a real HAProxy on loopback (checks on fake Patroni /primary, /replica)', () => {
  const pg102 = new FakePatroni({ name: 'pg102', role: 'replica' });
  const pg103 = new FakePatroni({ name: 'pg103', role: 'primary' });
  let hap: LocalHaproxy;
  const h = createHaproxyActivities({ runner: socatRunner, timeoutMs: 3000 });

  before(async () => {
    await pg102.start();
    await pg103.start();
    const pgPort = await freePort(); // the servers' traffic port is not used by these tests
    const servers = [
      { name: 'pg102', addr: '127.0.0.1', port: pgPort, checkPort: pg102.port },
      { name: 'pg103', addr: '127.0.0.1', port: pgPort, checkPort: pg103.port },
    ];
    hap = await startLocalHaproxy({
      backends: [
        { name: 'primary', check: '/primary', servers },
        { name: 'replicas', check: '/replica', servers },
        // Slow checks: a forced health stays until the next checks, long enough to observe.
        { name: 'slow', check: '/primary', servers, inter: '3s' },
      ],
    });
  });
  after(async () => {
    await hap?.stop();
    await pg102.stop();
    await pg103.stop();
  });

  const wait = (backend: string, server: string, want: 'UP' | 'DOWN') =>
    h.haproxyWaitServer({ node: hap.node, backend, server, want, waitTimeoutMs: 10_000, intervalMs: 100 });

  void it('shows each server UP or DOWN as its Patroni check answers', async () => {
    await wait('primary', 'pg103', 'UP');
    await wait('primary', 'pg102', 'DOWN');
    await wait('replicas', 'pg102', 'UP');
    await wait('replicas', 'pg103', 'DOWN');
    const rows = await h.haproxyShowStat({ node: hap.node });
    assert.deepEqual(rows.map((r) => `${r.backend}/${r.server}`).sort(), [
      'primary/pg102',
      'primary/pg103',
      'replicas/pg102',
      'replicas/pg103',
      'slow/pg102',
      'slow/pg103',
    ]);
    const down = rows.find((r) => r.backend === 'primary' && r.server === 'pg102')!;
    assert.equal(down.checkStatus, 'L7STS');
    assert.equal(down.checkCode, 503);
    assert.equal(rows.find((r) => r.backend === 'primary' && r.server === 'pg103')!.checkStatus, 'L7OK');
    const all = await h.haproxyShowStat({ node: hap.node, all: true });
    assert.ok(all.some((r) => r.type === 'backend' && r.backend === 'primary'));
  });

  void it('follows a role change: the new primary comes UP, the old one goes DOWN', async () => {
    pg103.role = 'replica';
    pg102.role = 'primary';
    await wait('primary', 'pg102', 'UP');
    const old = await wait('primary', 'pg103', 'DOWN');
    assert.equal(old.checkCode, 503);
    pg103.role = 'primary';
    pg102.role = 'replica';
    await wait('primary', 'pg103', 'UP');
    await wait('primary', 'pg102', 'DOWN');
  });

  void it('sets maint / drain / ready through the runtime API, idempotently', async () => {
    const m1 = await h.haproxySetServerState({
      node: hap.node,
      backend: 'primary',
      server: 'pg103',
      state: 'maint',
    });
    assert.equal(m1.changed, true);
    assert.equal(m1.before, 'UP');
    assert.equal(m1.after, 'MAINT');
    const m2 = await h.haproxySetServerState({
      node: hap.node,
      backend: 'primary',
      server: 'pg103',
      state: 'maint',
    });
    assert.equal(m2.changed, false, 'already in maintenance: nothing sent');
    await wait('primary', 'pg103', 'DOWN');
    const r = await h.haproxySetServerState({
      node: hap.node,
      backend: 'primary',
      server: 'pg103',
      state: 'ready',
    });
    assert.equal(r.changed, true);
    assert.notEqual(r.after, 'MAINT');
    await wait('primary', 'pg103', 'UP');
    const d = await h.haproxySetServerState({
      node: hap.node,
      backend: 'primary',
      server: 'pg103',
      state: 'drain',
    });
    assert.equal(d.after, 'DRAIN');
    const back = await h.haproxySetServerState({
      node: hap.node,
      backend: 'primary',
      server: 'pg103',
      state: 'ready',
    });
    assert.equal(back.after, 'UP');
  });

  void it('forces a server UP or DOWN at once with set server health (idempotent), until checks take over', async () => {
    await wait('slow', 'pg103', 'UP');
    await wait('slow', 'pg102', 'DOWN');
    const up = await h.haproxySetServerHealth({
      node: hap.node,
      backend: 'slow',
      server: 'pg102',
      health: 'up',
    });
    assert.deepEqual([up.before, up.after, up.changed], ['DOWN', 'UP', true]);
    const again = await h.haproxySetServerHealth({
      node: hap.node,
      backend: 'slow',
      server: 'pg102',
      health: 'up',
    });
    assert.equal(again.changed, false);
    const down = await h.haproxySetServerHealth({
      node: hap.node,
      backend: 'slow',
      server: 'pg103',
      health: 'down',
    });
    assert.deepEqual([down.before, down.after], ['UP', 'DOWN']);
    // The checks (/primary: 503 on pg102, 200 on pg103) put both back.
    await wait('slow', 'pg102', 'DOWN');
    await wait('slow', 'pg103', 'UP');
    await assert.rejects(
      h.haproxySetServerHealth({
        node: hap.node,
        backend: 'slow',
        server: 'pg103',
        health: 'maint' as never,
      }),
      /expected up, stopping or down/,
    );
  });

  void it('names the servers it knows when asked for one it does not; a wait that cannot succeed times out', async () => {
    await assert.rejects(
      h.haproxySetServerState({ node: hap.node, backend: 'primary', server: 'pg999', state: 'drain' }),
      /no server primary\/pg999 \(servers: .*primary\/pg102/,
    );
    await assert.rejects(
      h.haproxyWaitServer({
        node: hap.node,
        backend: 'primary',
        server: 'pg102',
        want: 'UP',
        waitTimeoutMs: 700,
        intervalMs: 100,
      }),
      /timed out after 700 ms waiting for primary\/pg102 UP on haproxy haproxy1.*status DOWN, check L7STS/,
    );
  });

  /** socat on the local admin socket as the stream the sessions run over (on Proxmox: proxmox openSession). */
  const socatStream = async (node: HaproxyNode): Promise<RuntimeStream> => {
    const [cmd, ...args] = socatArgv(node);
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    // socat gone early (no socket): a write then fails with EPIPE; the session learns it from 'close'
    child.stdin.on('error', () => undefined);
    const s = new EventEmitter() as EventEmitter & RuntimeStream;
    child.stdout.on('data', (d: Buffer) => s.emit('data', d));
    child.on('close', () => s.emit('close'));
    return Object.assign(s, {
      stderr: child.stderr,
      write: (x: string) => child.stdin.write(x),
      end: (x?: string) => child.stdin.end(x),
    });
  };

  void it('a prompt-mode runtime session: one command after another on one connection; admin states read back', async () => {
    const rs = await openRuntimeSessions([hap.node], socatStream);
    try {
      const [s] = rs.sessions;
      assert.equal(s!.node, hap.node.name);
      assert.deepEqual(adminForced(await s!.command('show servers state slow')), []);
      assert.equal(await s!.command('set server slow/pg102 state drain'), '');
      assert.deepEqual(adminForced(await s!.command('show servers state slow')), [
        'slow/pg102 (admin state 8)',
      ]);
      assert.equal(await s!.command('set server slow/pg102 state ready'), '');
      assert.deepEqual(adminForced(await s!.command('show servers state slow')), []);
      assert.match(await s!.command('set server slow/nosuch state ready'), /No such server/);
      await assert.rejects(s!.command('show stat; shutdown frontend x'), /separator/);
    } finally {
      rs.close();
    }
  });

  void it('settleNode: a drained leader back to ready as it is, a replica in maintenance forced DOWN first; none left forced', async () => {
    const rs = await openRuntimeSessions([hap.node], socatStream);
    try {
      const [s] = rs.sessions;
      const sent: string[] = [];
      const cmd = (c: string) => (sent.push(c), s!.command(c));
      // as a hand-off cut short leaves it: the leader (pg103) drained; pg102 in maintenance; a read drain
      assert.equal(await s!.command('set server slow/pg103 state drain'), '');
      assert.equal(await s!.command('set server slow/pg102 state maint'), '');
      assert.equal(await s!.command('set server replicas/pg102 state drain'), '');
      const settled = await settleNode(hap.node.name, cmd, [
        { backend: 'slow', leads: async (m) => m === 'pg103' },
        { backend: 'replicas', leads: async () => false },
      ]);
      assert.deepEqual(settled.sort(), ['replicas/pg102', 'slow/pg102', 'slow/pg103']);
      const sets = sent.filter((c) => c.startsWith('set '));
      assert.deepEqual(sets, [
        'set server slow/pg102 state drain',
        'set server slow/pg102 health down',
        'set server slow/pg102 state ready',
        'set server slow/pg103 state ready',
        'set server replicas/pg102 health down',
        'set server replicas/pg102 state ready',
      ]);
      for (const b of ['slow', 'replicas'])
        assert.deepEqual(adminForced(await s!.command(`show servers state ${b}`)), [], b);
      // slow checks (3 s): what settling left is observable before the next check — the leader UP
      // (its clients kept), the replica DOWN (a `ready` after maintenance alone would have made it UP)
      const rows = await h.haproxyShowStat({ node: hap.node });
      const state = (b: string, sv: string) => rows.find((r) => r.backend === b && r.server === sv)?.state;
      assert.equal(state('slow', 'pg103'), 'UP');
      assert.equal(state('slow', 'pg102'), 'DOWN');
      // nothing forced: nothing sent
      sent.length = 0;
      assert.deepEqual(await settleNode(hap.node.name, cmd, [{ backend: 'slow' }]), []);
      assert.ok(!sent.some((c) => c.startsWith('set ')), sent.join('; '));
    } finally {
      rs.close();
    }
  });

  void it('settleCommands: a drain alone is lifted as it is when the role is unknown; maintenance forces DOWN first', () => {
    assert.deepEqual(settleCommands({ backend: 'w', server: 'a', admin: 8 }), ['set server w/a state ready']);
    assert.deepEqual(settleCommands({ backend: 'w', server: 'a', admin: 1 }), [
      'set server w/a state drain',
      'set server w/a health down',
      'set server w/a state ready',
    ]);
    assert.deepEqual(settleCommands({ backend: 'w', server: 'a', admin: 9 }, true), [
      'set server w/a state drain',
      'set server w/a state ready',
    ]);
    assert.throws(() => settleCommands({ backend: 'w', server: 'a;shutdown', admin: 8 }), /only letters/);
  });

  void it('opening sessions is all or nothing: a node that does not answer closes the ones opened', async () => {
    let closed = 0;
    await assert.rejects(
      openRuntimeSessions(
        [hap.node, { name: 'haproxy9', socket: '/nonexistent/admin.sock' }],
        socatStream,
        () => closed++,
      ),
      /haproxy haproxy9: runtime session closed/,
    );
    assert.equal(closed, 1);
  });

  // Regression (test/lab/faults.test.ts): one HAProxy CT stopped failed the whole switchover with
  // "haproxy haproxy2: runtime session closed"; pgha now routes through the nodes that run.
  void it('a node whose CT is stopped is left out and named in down; only a confirmed stop', async () => {
    const gone = { name: 'haproxy9', socket: '/nonexistent/admin.sock' };
    const asked: string[] = [];
    const rs = await openRuntimeSessions([gone, hap.node], socatStream, undefined, (n) => {
      asked.push(n.name);
      return Promise.resolve(true);
    });
    try {
      assert.deepEqual(asked, ['haproxy9'], 'asked only about the node whose session failed');
      assert.deepEqual(rs.down, ['haproxy9']);
      assert.deepEqual(
        rs.sessions.map((s) => s.node),
        [hap.node.name],
      );
      assert.equal(await rs.sessions[0]!.command('set server slow/pg102 state ready'), '');
    } finally {
      rs.close();
    }
    let closed = 0;
    await assert.rejects(
      openRuntimeSessions(
        [hap.node, gone],
        socatStream,
        () => closed++,
        () => Promise.resolve(false),
      ),
      /haproxy haproxy9: runtime session closed/,
      'a node that runs but does not answer still fails all',
    );
    assert.equal(closed, 1);
    await assert.rejects(
      openRuntimeSessions([gone], socatStream, undefined, () => Promise.resolve(true)),
      /every HAProxy node is down \(haproxy9\)/,
    );
  });

  void it('a node whose socket does not answer is an error from the runner', async () => {
    await assert.rejects(
      h.haproxyShowStat({ node: { name: 'haproxy9', socket: '/nonexistent/admin.sock' } }),
      /socat to haproxy9 failed/,
    );
  });
});
