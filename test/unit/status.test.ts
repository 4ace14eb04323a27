import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { Client } from 'pg';
import { Agent } from 'undici';
import { createEtcdActivities } from '../../activities/etcd';
import { createHaproxyActivities } from '../../activities/haproxy';
import { createPatroniActivities } from '../../activities/patroni';
import { createPostgresActivities } from '../../activities/postgres';
import {
  createStatusActivities,
  judge,
  statusInputFromInventory,
  type ClusterStatus,
  type StatusInput,
} from '../../activities/status';
import { checkTargets, exitCodeOf, formatStatusReport } from '../../clients/commands/status';
import { loadInventory } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { startLocalEtcd, type LocalEtcdCluster } from '../helpers/local-etcd';
import { startLocalHaproxy, socatRunner, type LocalHaproxy } from '../helpers/local-haproxy';
import { docPrimaryV3, FakePatroni } from '../helpers/local-patroni';
import { startLocalPostgres, type LocalPostgres } from '../helpers/local-postgres';

/** A healthy three-member cluster as the collector reports it. */
function fixedStatus(): ClusterStatus {
  const s: Omit<ClusterStatus, 'verdict'> = {
    cluster: 'lab',
    collectedAt: '2026-11-26T09:00:00.000Z',
    etcd: {
      members: ['etcd1', 'etcd2', 'etcd3'].map((name, i) => ({
        name,
        endpoint: `http://10.213.50.5${i + 1}:2379`,
        healthy: true,
        isLeader: i === 1,
        version: '3.4.23',
        dbSizeBytes: 20480,
        raftTerm: '2',
      })),
      leader: 'etcd2',
      healthy: 3,
      total: 3,
      quorum: true,
    },
    patroni: {
      scope: 'postgres',
      members: [
        {
          name: 'pg102',
          host: '10.213.50.21',
          role: 'replica',
          ownRole: 'replica',
          state: 'streaming',
          timeline: 1,
          lagBytes: 0,
          streaming: true,
        },
        {
          name: 'pg103',
          host: '10.213.50.22',
          role: 'leader',
          ownRole: 'primary',
          state: 'running',
          timeline: 1,
          lagBytes: 0,
          streaming: null,
        },
        {
          name: 'pg104',
          host: '10.213.50.23',
          role: 'replica',
          ownRole: 'replica',
          state: 'streaming',
          timeline: 1,
          lagBytes: 0,
          streaming: true,
        },
      ].map((m) => ({
        ...m,
        reachable: true,
        pendingRestart: false,
        noFailover: false,
        patroniVersion: '3.3.0',
        systemId: '7268616322854375442',
        lagFrom: m.name === 'pg103' ? null : ('pg_stat_replication' as const),
        sql: { inRecovery: m.name !== 'pg103', timeline: 1 },
      })),
      leader: 'pg103',
      leaderKey: { key: '/patroni/postgres/leader', value: 'pg103' },
      keys: {
        prefix: '/patroni/postgres/',
        keys: ['config', 'initialize', 'leader', 'members/pg102', 'members/pg103', 'members/pg104', 'status'],
        initialize: '7268616322854375442',
      },
      clusterFrom: 'pg103',
      paused: false,
      maximumLagBytes: 1048576,
    },
    haproxy: {
      asked: true,
      writeBackend: 'primary',
      readBackend: 'replicas',
      nodes: ['haproxy1', 'haproxy2'].map((name) => ({
        name,
        reachable: true,
        servers: [
          { backend: 'primary', server: 'pg102', state: 'DOWN', status: 'DOWN', checkStatus: 'L7STS' },
          { backend: 'primary', server: 'pg103', state: 'UP', status: 'UP', checkStatus: 'L7OK' },
          { backend: 'primary', server: 'pg104', state: 'DOWN', status: 'DOWN', checkStatus: 'L7STS' },
          { backend: 'replicas', server: 'pg102', state: 'UP', status: 'UP', checkStatus: 'L7OK' },
          { backend: 'replicas', server: 'pg103', state: 'DOWN', status: 'DOWN', checkStatus: 'L7STS' },
          { backend: 'replicas', server: 'pg104', state: 'UP', status: 'UP', checkStatus: 'L7OK' },
        ],
      })),
    },
  };
  return { ...s, verdict: judge(s) };
}

void describe('status verdict and report (fixed status objects)', () => {
  void it('a healthy cluster is healthy, with no reasons, exit code 0', () => {
    const s = fixedStatus();
    assert.deepEqual(s.verdict, { status: 'healthy', reasons: [] });
    assert.equal(exitCodeOf(s), 0);
  });

  void it('prints the seed scripts’ facts as tables: etcd, Patroni with the leader key, HAProxy, verdict', () => {
    const text = formatStatusReport(fixedStatus());
    const lines = text.split('\n');
    assert.equal(lines[0], 'Cluster lab — collected 2026-11-26T09:00:00.000Z');
    assert.ok(lines.includes('etcd: 3/3 healthy, leader etcd2'));
    assert.ok(
      lines.includes(
        'Patroni (scope postgres): leader pg103; etcd /patroni/postgres/leader = pg103 (topology from pg103)',
      ),
    );
    const row = (cells: string[]) =>
      new RegExp(`│ ${cells.map((c) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('\\s*│ ')}\\s*│`);
    assert.match(text, row(['etcd2', 'http://10.213.50.52:2379', 'healthy', '*', '3.4.23', '20.0 KiB', '2']));
    assert.match(text, row(['pg103', '10.213.50.22', 'leader', 'running', '', '1', '', '3.3.0', 'false']));
    assert.match(
      text,
      row(['pg104', '10.213.50.23', 'replica', 'streaming', 'streaming', '1', '0 B', '3.3.0', 'true']),
    );
    assert.match(text, row(['haproxy2', 'replicas', 'pg103', 'DOWN', 'L7STS']));
    assert.ok(
      lines.includes(
        'etcd keys under /patroni/postgres/: config, initialize, leader, members/pg102, members/pg103, members/pg104, status; initialize = 7268616322854375442',
      ),
    );
    assert.equal(lines.at(-1), 'Verdict: HEALTHY');
  });

  void it('degraded: each problem is one reason that names the member and what was found', () => {
    const s = fixedStatus();
    s.etcd.members[0]!.healthy = false;
    s.etcd.members[0]!.error = '14 UNAVAILABLE: No connection established';
    s.etcd.healthy = 2;
    const pg104 = s.patroni.members[2]!;
    pg104.lagBytes = 5 * 1024 * 1024;
    pg104.timeline = 0;
    s.patroni.leaderKey = { key: '/patroni/postgres/leader', value: 'pg102' };
    s.patroni.members[0]!.streaming = false;
    s.patroni.members[0]!.state = 'in archive recovery';
    if (s.haproxy.asked)
      s.haproxy.nodes[1] = { name: 'haproxy2', reachable: false, servers: [], error: 'socat exited 1' };
    const v = judge(s);
    assert.equal(v.status, 'degraded');
    assert.deepEqual(v.reasons, [
      'etcd member etcd1 (http://10.213.50.51:2379) is unhealthy: 14 UNAVAILABLE: No connection established',
      "the leader key /patroni/postgres/leader names pg102, but Patroni's /cluster says pg103",
      'replica pg102 is not streaming from the leader (state in archive recovery)',
      'replica pg104 is on timeline 0, the leader on 1',
      'replica pg104 lags 5.0 MiB (limit 1.0 MiB from maximum_lag_on_failover)',
      'HAProxy haproxy2 runtime API does not answer: socat exited 1',
    ]);
    const text = formatStatusReport({ ...s, verdict: v });
    assert.match(text, /Verdict: DEGRADED\n {2}- etcd member etcd1/);
    assert.match(text, /│ haproxy2 │ - +│ - +│ UNREACHABLE │ socat exited 1/);
    assert.equal(exitCodeOf({ ...s, verdict: v }), 1);
  });

  void it('down: no quorum, no leader, or a second writable primary; HAProxy routing to a replica is flagged', () => {
    const s = fixedStatus();
    s.etcd.quorum = false;
    s.etcd.healthy = 1;
    s.patroni.leader = null;
    s.patroni.members[0]!.sql = { inRecovery: false, timeline: 2 };
    if (s.haproxy.asked) s.haproxy.nodes[0]!.servers[0]!.state = 'UP';
    const v = judge(s);
    assert.equal(v.status, 'down');
    assert.equal(v.reasons[0], 'etcd has no quorum: 1 of 3 members healthy');
    assert.ok(v.reasons.includes('Patroni reports no leader: the cluster takes no writes'));
    assert.ok(
      v.reasons.includes('pg102 is not in recovery but is not the leader: a second writable primary'),
    );
    assert.equal(exitCodeOf({ ...s, verdict: v }), 2);
    const s2 = fixedStatus();
    if (s2.haproxy.asked) s2.haproxy.nodes[0]!.servers[0]!.state = 'UP';
    assert.deepEqual(judge(s2).reasons, [
      'HAProxy haproxy1: write backend primary sends to pg102, pg103, expected only the leader pg103',
    ]);
  });

  void it("flags the seed's HAProxy backend (GET /patroni): the leader and replicas UP alike", () => {
    const s = fixedStatus();
    if (!s.haproxy.asked) throw new Error('fixture');
    s.haproxy.nodes = [
      {
        name: 'haproxy1',
        reachable: true,
        servers: ['pg102', 'pg103', 'pg104'].map((server) => ({
          backend: 'postgresql_backend',
          server,
          state: 'UP',
          status: 'UP',
          checkStatus: 'L7OK',
        })),
      },
    ];
    assert.deepEqual(judge(s).reasons, [
      "HAProxy haproxy1: backend postgresql_backend sends to the leader and to replicas (pg102, pg104) alike: writes can land on a replica (the seed's check on GET /patroni?)",
    ]);
  });

  void it('a write-backend server left drained is an alarm with the one command that fixes it: the leader DOWN, another degraded', () => {
    const s = fixedStatus();
    if (!s.haproxy.asked) throw new Error('fixture');
    const h1 = s.haproxy.nodes[0]!;
    h1.vmid = 100;
    h1.socket = '/run/haproxy/admin.sock';
    h1.servers = h1.servers.map((x) =>
      x.backend === 'primary' && x.server === 'pg103'
        ? { ...x, state: 'DRAIN', status: 'DRAIN' }
        : x.backend === 'primary' && x.server === 'pg104'
          ? { ...x, state: 'MAINT', status: 'MAINT' }
          : x,
    );
    const v = judge(s);
    assert.equal(v.status, 'down');
    const fix = (server: string) =>
      `printf '%s\\n' 'set server primary/${server} state ready' | pct exec 100 -- socat -t 5 stdio unix-connect:/run/haproxy/admin.sock,shut-none`;
    assert.ok(
      v.reasons.includes(
        `leader pg103 drained, no switchover in progress? New writes through HAProxy haproxy1 are held, then refused (unless a runbook is running on the cluster: pgha runs). Fix: ${fix('pg103')}`,
      ),
      v.reasons.join('\n'),
    );
    assert.ok(
      v.reasons.includes(
        `pg104 left in maintenance in HAProxy haproxy1's write backend primary (unless a runbook is running on the cluster: pgha runs). Fix: ${fix('pg104')}`,
      ),
      v.reasons.join('\n'),
    );
    // haproxy2 untouched: nothing said about it but what it is
    assert.ok(!v.reasons.some((r) => r.includes('haproxy2')));
  });

  void it('reads the lab inventory as the inventory helper defines it', async () => {
    const inv = await loadInventory('runbooks/clusters/lab.yaml');
    const input = statusInputFromInventory(inv);
    assert.deepEqual(
      input.etcd.members.map((m) => m.url),
      ['http://10.213.50.51:2379', 'http://10.213.50.52:2379', 'http://10.213.50.53:2379'],
    );
    assert.deepEqual(
      input.patroni.members.map((m) => `${m.name}=${m.url}`),
      ['pg102=http://10.213.50.21:8008', 'pg103=http://10.213.50.22:8008', 'pg104=http://10.213.50.23:8008'],
    );
    assert.equal(input.patroni.maximumLagBytes, 1048576);
    assert.match(
      input.postgres?.passwordRef ?? '',
      /^file:\/var\/lib\/pgha-lab\/secrets\/superuser-password$/,
    );
  });

  void it("a member whose data has another system identifier than etcd's initialize key is named", () => {
    const s = fixedStatus();
    s.patroni.members[2]!.systemId = '7000000000000000001';
    assert.deepEqual(judge(s).reasons, [
      'pg104 has database system identifier 7000000000000000001, the cluster was initialized with 7268616322854375442 (etcd initialize key): its data directory belongs to another cluster',
    ]);
  });

  void it('HAProxy without a transport is reported as unknown, not as healthy or broken', () => {
    const s = fixedStatus();
    s.haproxy = { asked: false, reason: 'no runtime-API transport wired (pct exec): state unknown' };
    assert.equal(judge(s).status, 'healthy');
    assert.match(
      formatStatusReport({ ...s, verdict: judge(s) }),
      /HAProxy: unknown \(no runtime-API transport wired/,
    );
  });

  void it('builds its input from an inventory, and the target guard refuses addresses outside PGHA_TARGET_NETWORKS', () => {
    const ip = (n: number) => `10.213.50.${n}`;
    const inv = {
      cluster: 'lab',
      nodes: {
        haproxy: [{ vmid: 100, hostname: 'haproxy1', ip: ip(11) }],
        postgres: [{ vmid: 102, hostname: 'pg102', ip: ip(21) }],
        etcd: [{ vmid: 109, hostname: 'etcd1', ip: ip(51) }],
      },
      ports: { etcdClient: 2379, postgresql: 5432, patroniRestApi: 8008 },
      patroni: { scope: 'postgres', namespace: '/patroni/', maximumLagOnFailover: 1048576 },
      postgresql: { superuser: 'postgres' },
      secrets: { superuserPassword: 'file:/var/lib/pgha-lab/secrets/superuser-password' },
    } as unknown as Inventory; // only the fields the status input (and runbooks/topology) reads
    const input = statusInputFromInventory(inv);
    assert.deepEqual(input.etcd.members, [{ name: 'etcd1', url: 'http://10.213.50.51:2379' }]);
    assert.deepEqual(input.patroni.members, [
      { name: 'pg102', url: 'http://10.213.50.21:8008', host: '10.213.50.21', port: 5432 },
    ]);
    assert.deepEqual(input.postgres, {
      user: 'postgres',
      passwordRef: 'file:/var/lib/pgha-lab/secrets/superuser-password',
    });
    assert.deepEqual(input.haproxy?.nodes, [
      { name: 'haproxy1', vmid: 100, socket: '/run/haproxy/admin.sock' },
    ]);
    assert.equal(input.haproxy?.writeBackend, 'postgres_primary', "the rendered haproxy.cfg's backends");
    assert.equal(input.haproxy?.readBackend, 'postgres_replicas');
    assert.equal(statusInputFromInventory(inv, { sql: false }).postgres, undefined);
    checkTargets(input, '127.0.0.0/8,10.213.50.0/24');
    const seed = statusInputFromInventory({
      ...inv,
      nodes: { ...inv.nodes, etcd: [{ vmid: 109, hostname: 'etcd1', ip: '192.168.50.51' }] },
    });
    assert.throws(
      () => checkTargets(seed, '127.0.0.0/8,10.213.50.0/24'),
      /refusing to connect to 192\.168\.50\.51/,
    );
  });
});

void describe('status collection against real etcd, PostgreSQL and HAProxy on loopback (Patroni API faked)', () => {
  let etcd: LocalEtcdCluster;
  let pg103: LocalPostgres;
  let pg102: LocalPostgres;
  let pg104: LocalPostgres;
  let hap: LocalHaproxy;
  const fakes = {
    pg102: new FakePatroni({ name: 'pg102', role: 'replica' }),
    pg103: new FakePatroni({ name: 'pg103', role: 'primary' }),
    pg104: new FakePatroni({ name: 'pg104', role: 'replica' }),
  };
  const agent = new Agent({ connect: { timeout: 1000 }, headersTimeout: 2000, bodyTimeout: 2000 });
  const haproxy = createHaproxyActivities({ runner: socatRunner, timeoutMs: 3000 });
  const status = createStatusActivities({
    etcd: createEtcdActivities({ callTimeoutMs: 1000 }),
    patroni: createPatroniActivities({ agent, timeoutMs: 1500 }),
    postgres: createPostgresActivities({ connectTimeoutMs: 2000, statementTimeoutMs: 2000 }),
    haproxy,
  });
  let input: StatusInput;

  const clusterDoc = () => ({
    scope: 'postgres',
    members: [
      { name: 'pg103', role: 'leader', state: 'running', host: '127.0.0.1', port: pg103.port, timeline: 1 },
      {
        name: 'pg102',
        role: 'replica',
        state: 'streaming',
        host: '127.0.0.1',
        port: pg102.port,
        timeline: 1,
        lag: 0,
      },
      {
        name: 'pg104',
        role: 'replica',
        state: 'streaming',
        host: '127.0.0.1',
        port: pg104.port,
        timeline: 1,
        lag: 0,
      },
    ],
  });

  before(async () => {
    etcd = await startLocalEtcd(3);
    pg103 = await startLocalPostgres({ name: 'pg103' });
    process.env.PGHA_TEST_STATUS_PG = pg103.password;
    [pg102, pg104] = await Promise.all([
      startLocalPostgres({ name: 'pg102', primary: pg103 }),
      startLocalPostgres({ name: 'pg104', primary: pg103 }),
    ]);
    for (const f of Object.values(fakes)) {
      await f.start();
      f.routes.set('GET /cluster', { status: 200, body: clusterDoc() });
    }
    const c = new Etcd3({ hosts: etcd.endpoints });
    await c.put('/patroni/postgres/leader').value('pg103');
    await c.put('/patroni/postgres/initialize').value('7268616322854375442'); // the fakes' (documented) id
    c.close();
    const pgs = { pg102, pg103, pg104 };
    const servers = (['pg102', 'pg103', 'pg104'] as const).map((n) => ({
      name: n,
      addr: '127.0.0.1',
      port: pgs[n].port,
      checkPort: fakes[n].port,
    }));
    hap = await startLocalHaproxy({
      backends: [
        { name: 'primary', check: '/primary', servers },
        { name: 'replicas', check: '/replica', servers },
      ],
    });
    const wait = (b: string, s: string, want: 'UP' | 'DOWN') =>
      haproxy.haproxyWaitServer({
        node: hap.node,
        backend: b,
        server: s,
        want,
        waitTimeoutMs: 10_000,
        intervalMs: 100,
      });
    await Promise.all([
      wait('primary', 'pg103', 'UP'),
      wait('replicas', 'pg102', 'UP'),
      wait('replicas', 'pg104', 'UP'),
    ]);
    await Promise.all([
      wait('primary', 'pg102', 'DOWN'),
      wait('primary', 'pg104', 'DOWN'),
      wait('replicas', 'pg103', 'DOWN'),
    ]);
    input = {
      cluster: 'local',
      etcd: { members: etcd.members.map((m) => ({ name: m.name, url: m.clientUrl })) },
      patroni: {
        namespace: '/patroni/',
        scope: 'postgres',
        maximumLagBytes: 1048576,
        members: (['pg102', 'pg103', 'pg104'] as const).map((n) => ({
          name: n,
          url: fakes[n].url,
          host: '127.0.0.1',
          port: pgs[n].port,
        })),
      },
      postgres: { user: 'postgres', passwordRef: 'env:PGHA_TEST_STATUS_PG' },
      haproxy: { nodes: [hap.node], writeBackend: 'primary', readBackend: 'replicas' },
    };
  });
  after(async () => {
    await hap?.stop();
    for (const f of Object.values(fakes)) await f.stop();
    await Promise.all([pg102?.stop(), pg104?.stop()]);
    await pg103?.stop();
    await etcd?.stop();
    await agent.close();
    delete process.env.PGHA_TEST_STATUS_PG;
  });

  void it('a consistent cluster is healthy, and every part is in the report', async () => {
    const s = await status.collectClusterStatus(input);
    assert.deepEqual(s.verdict, { status: 'healthy', reasons: [] }, formatStatusReport(s));
    assert.equal(s.etcd.healthy, 3);
    assert.match(s.etcd.leader ?? '', /^etcd[123]$/);
    assert.equal(s.patroni.leader, 'pg103');
    assert.deepEqual(s.patroni.leaderKey, { key: '/patroni/postgres/leader', value: 'pg103' });
    assert.deepEqual(s.patroni.keys, {
      prefix: '/patroni/postgres/',
      keys: ['initialize', 'leader'],
      initialize: '7268616322854375442',
    });
    assert.deepEqual(
      s.patroni.members.map((m) => [m.name, m.role, m.ownRole, m.streaming, m.sql]),
      [
        ['pg102', 'replica', 'replica', true, { inRecovery: true, timeline: 1 }],
        ['pg103', 'leader', 'primary', null, { inRecovery: false, timeline: 1 }],
        ['pg104', 'replica', 'replica', true, { inRecovery: true, timeline: 1 }],
      ],
    );
    assert.ok(s.haproxy.asked);
    const up = s.haproxy.nodes[0]!.servers.filter((x) => x.state === 'UP').map(
      (x) => `${x.backend}/${x.server}`,
    );
    assert.deepEqual(up.sort(), ['primary/pg103', 'replicas/pg102', 'replicas/pg104']);
    const text = formatStatusReport(s);
    assert.match(text, /Verdict: HEALTHY$/);
    assert.ok(!text.includes(pg103.password), 'no password in the report');
    assert.ok(!JSON.stringify(s).includes(pg103.password), 'no password in the status object');
  });

  void it('without SQL: a leader whose GET /patroni lists no walsenders has no streaming replica (Patroni omits replication[])', async () => {
    const noSql = createStatusActivities({
      etcd: createEtcdActivities({ callTimeoutMs: 1000 }),
      patroni: createPatroniActivities({ agent, timeoutMs: 1500 }),
    });
    const { replication: _omitted, ...leaderWithoutSenders } = docPrimaryV3('pg103');
    fakes.pg103.routes.set('GET /patroni', { status: 200, body: leaderWithoutSenders });
    try {
      const { postgres: _p, haproxy: _h, ...withoutSql } = input;
      const s = await noSql.collectClusterStatus(withoutSql);
      assert.equal(s.verdict.status, 'degraded');
      assert.deepEqual(s.verdict.reasons, [
        'replica pg102 is not streaming from the leader (state streaming)',
        'replica pg104 is not streaming from the leader (state streaming)',
      ]);
      assert.equal(s.patroni.members.find((m) => m.name === 'pg102')?.lagFrom, 'patroni');
    } finally {
      fakes.pg103.routes.delete('GET /patroni');
    }
    const withSql = await status.collectClusterStatus(input);
    assert.equal(withSql.patroni.members.find((m) => m.name === 'pg102')?.lagFrom, 'pg_stat_replication');
  });

  void it('an etcd member down, a wrong leader key and a dead Patroni API make it degraded, each named', async () => {
    const c = new Etcd3({ hosts: etcd.endpoints });
    await c.put('/patroni/postgres/leader').value('pg102');
    c.close();
    // A follower, so that the other two keep their leader (killing the leader is an election).
    const follower = (await status.collectClusterStatus(input)).etcd.members.find((m) => !m.isLeader)!.name;
    await etcd.kill(follower);
    await fakes.pg104.stop();
    const s = await status.collectClusterStatus(input);
    assert.equal(s.verdict.status, 'degraded', formatStatusReport(s));
    const r = s.verdict.reasons.join('\n');
    assert.match(r, new RegExp(`etcd member ${follower} \\(http://127\\.0\\.0\\.1:\\d+\\) is unhealthy`));
    assert.match(
      r,
      /the leader key \/patroni\/postgres\/leader names pg102, but Patroni's \/cluster says pg103/,
    );
    assert.match(
      r,
      /Patroni REST API of pg104 at http:\/\/127\.0\.0\.1:\d+\/patroni did not answer: refused/,
    );
    assert.equal(s.etcd.quorum, true);
  });

  void it('a standby promoted behind Patroni’s back is a second writable primary: down', async () => {
    const c = new Client({ host: '127.0.0.1', port: pg102.port, user: 'postgres', password: pg102.password });
    await c.connect();
    await c.query('select pg_promote(wait => true)');
    await c.end();
    const s = await status.collectClusterStatus(input);
    assert.equal(s.verdict.status, 'down');
    assert.ok(
      s.verdict.reasons.includes('pg102 is not in recovery but is not the leader: a second writable primary'),
    );
    assert.deepEqual(s.patroni.members.find((m) => m.name === 'pg102')?.sql, {
      inRecovery: false,
      timeline: 2,
    });
  });
});
