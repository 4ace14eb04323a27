/**
 * `pgha doctor`'s checks, pure: a healthy cluster's observations pass every check; each fault the
 * seed's Troubleshooting section names, put into the observations, fails (or warns) exactly its
 * check with a finding naming the member; an observation that could not be read makes the check
 * unknown, not passed. Also the parsers of what the CTs print (ss, ip addr, etcd.conf).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  diagnose,
  doctorExitCode,
  formatDoctorReport,
  hbaMatches,
  parseEnvFile,
  parseIpAddr,
  parseSs,
  type DoctorObservations,
  type HbaRule,
} from '../../activities/doctor';
import type { ClusterStatus, PatroniMemberStatus } from '../../activities/status';

const PG = [
  { name: 'pg102', ip: '10.213.50.21', vmid: 102 },
  { name: 'pg103', ip: '10.213.50.22', vmid: 103 },
  { name: 'pg104', ip: '10.213.50.23', vmid: 104 },
];
const ETCD = [
  { name: 'etcd1', ip: '10.213.50.51', vmid: 109 },
  { name: 'etcd2', ip: '10.213.50.52', vmid: 110 },
  { name: 'etcd3', ip: '10.213.50.53', vmid: 111 },
];
const initialCluster = ETCD.map((e) => `${e.name}=http://${e.ip}:2380`).join(',');

const hbaRule = (
  line: number,
  address: string | null,
  netmask: string | null,
  auth = 'scram-sha-256',
): HbaRule => ({
  lineNumber: line,
  type: address === null ? 'local' : 'host',
  database: ['replication'],
  userName: ['replicator'],
  address,
  netmask,
  authMethod: auth,
  error: null,
});

function member(name: string, leader: boolean): PatroniMemberStatus {
  return {
    name,
    host: PG.find((p) => p.name === name)!.ip,
    reachable: true,
    role: leader ? 'leader' : 'replica',
    ownRole: leader ? 'primary' : 'replica',
    state: leader ? 'running' : 'streaming',
    timeline: 3,
    lagBytes: leader ? null : 0,
    lagFrom: leader ? null : 'pg_stat_replication',
    streaming: leader ? null : true,
    pendingRestart: false,
    noFailover: false,
    patroniVersion: '4.0.7',
    serverVersion: 180004,
    systemId: '7300000000000000001',
    sql: { inRecovery: !leader, timeline: 3 },
  };
}

function healthyStatus(): ClusterStatus {
  const servers = (backend: string, up: (n: string) => boolean) =>
    PG.map((p) => ({
      backend,
      server: p.name,
      state: up(p.name) ? 'UP' : 'DOWN',
      status: up(p.name) ? 'UP' : 'DOWN',
      checkStatus: up(p.name) ? 'L7OK' : 'L7STS',
    }));
  return {
    cluster: 'lab',
    collectedAt: '2026-11-29T00:00:00.000Z',
    etcd: {
      members: ETCD.map((e, i) => ({
        name: e.name,
        endpoint: `http://${e.ip}:2379`,
        healthy: true,
        isLeader: i === 0,
        version: '3.4.23',
        dbSizeBytes: 100_000,
        raftTerm: '2',
      })),
      leader: 'etcd1',
      healthy: 3,
      total: 3,
      quorum: true,
    },
    patroni: {
      scope: 'postgres',
      members: PG.map((p) => member(p.name, p.name === 'pg102')),
      leader: 'pg102',
      leaderKey: { key: '/patroni/postgres/leader', value: 'pg102' },
      keys: { prefix: '/patroni/postgres/', keys: ['leader'], initialize: '7300000000000000001' },
      clusterFrom: 'pg102',
      paused: false,
      maximumLagBytes: 1048576,
    },
    haproxy: {
      asked: true,
      writeBackend: 'postgres_write',
      readBackend: 'postgres_read',
      nodes: ['haproxy1', 'haproxy2'].map((name) => ({
        name,
        reachable: true,
        servers: [
          ...servers('postgres_write', (n) => n === 'pg102'),
          ...servers('postgres_read', (n) => n !== 'pg102'),
        ],
      })),
    },
    verdict: { status: 'healthy', reasons: [] },
  };
}

function healthy(): DoctorObservations {
  return {
    cluster: 'lab',
    collectedAt: '2026-11-29T00:00:00.000Z',
    status: healthyStatus(),
    etcd: ETCD.map((e) => ({
      ...e,
      addresses: { ok: true, value: ['127.0.0.1', e.ip] },
      conf: {
        ok: true,
        value: {
          ETCD_NAME: e.name,
          ETCD_LISTEN_CLIENT_URLS: `http://${e.ip}:2379,http://127.0.0.1:2379`,
          ETCD_ADVERTISE_CLIENT_URLS: `http://${e.ip}:2379`,
          ETCD_LISTEN_PEER_URLS: `http://${e.ip}:2380`,
          ETCD_INITIAL_ADVERTISE_PEER_URLS: `http://${e.ip}:2380`,
          ETCD_INITIAL_CLUSTER: initialCluster,
        },
      },
      listening: {
        ok: true,
        value: [
          { address: '127.0.0.1', port: 2379, process: 'etcd' },
          { address: e.ip, port: 2379, process: 'etcd' },
          { address: e.ip, port: 2380, process: 'etcd' },
        ],
      },
    })),
    postgres: PG.map((p) => ({
      ...p,
      dataDir: { ok: true, value: { path: '/var/lib/pgsql/18/data', owner: 'postgres', mode: '700' } },
      patroniJournal: {
        ok: true,
        value: [
          `2026-11-29T00:00:00+0000 ${p.name} patroni[1]: INFO: no action. I am (${p.name}), a secondary`,
        ],
      },
      settings: {
        ok: true,
        value: { wal_level: 'replica', max_wal_senders: '10', max_replication_slots: '10' },
      },
      hba: {
        ok: true,
        value: [
          hbaRule(1, null, null),
          hbaRule(2, '127.0.0.1', '255.255.255.255'),
          hbaRule(3, '10.213.50.0', '255.255.255.0'),
        ],
      },
    })),
    clocks: [...PG, ...ETCD].map((n) => ({
      ...n,
      offset: { ok: true, value: { offsetMs: 3, uncertaintyMs: 20 } },
    })),
    patroniConfig: { ok: true, value: { ttl: 60, loop_wait: 10, retry_timeout: 20 } },
    expected: {
      etcdClientPort: 2379,
      etcdPeerPort: 2380,
      osUser: 'postgres',
      replicationUser: 'replicator',
      timing: { ttl: 60, loopWait: 10, retryTimeout: 20 },
      replicationSources: PG.map((p) => ({ name: p.name, ip: p.ip, user: 'replicator' })),
      backupStreams: 0,
    },
  };
}

/** The checks that do not pass, as id → status. */
function notPassing(o: DoctorObservations): Record<string, string> {
  return Object.fromEntries(
    diagnose(o)
      .checks.filter((c) => c.status !== 'pass')
      .map((c) => [c.id, c.status]),
  );
}

function finding(o: DoctorObservations, id: string): string {
  return diagnose(o)
    .checks.find((c) => c.id === id)!
    .findings.join('\n');
}

void describe('doctor checks', () => {
  void it('a healthy cluster passes every check: exit 0', () => {
    const r = diagnose(healthy());
    assert.deepEqual(notPassing(healthy()), {});
    assert.equal(r.verdict, 'pass');
    assert.equal(doctorExitCode(r), 0);
    assert.equal(r.checks.length, 11);
  });

  void it("etcd-config: an address in etcd.conf that is not the CT's fails, naming the key and both addresses", () => {
    const o = healthy();
    (o.etcd[1]!.conf as { ok: true; value: Record<string, string> }).value.ETCD_LISTEN_PEER_URLS =
      'http://10.213.50.99:2380';
    assert.deepEqual(notPassing(o), { 'etcd-config': 'fail' });
    assert.match(
      finding(o, 'etcd-config'),
      /etcd2: ETCD_LISTEN_PEER_URLS names 10\.213\.50\.99, not the CT's IP 10\.213\.50\.52/,
    );
    const r = diagnose(o);
    assert.equal(r.verdict, 'fail');
    assert.equal(doctorExitCode(r), 2);
  });

  void it('etcd-config: a CT without its inventory IP, or ETCD_INITIAL_CLUSTER with a wrong member, fails', () => {
    const o = healthy();
    o.etcd[0]!.addresses = { ok: true, value: ['127.0.0.1', '10.213.50.77'] };
    (o.etcd[2]!.conf as { ok: true; value: Record<string, string> }).value.ETCD_INITIAL_CLUSTER =
      initialCluster.replace('etcd2=http://10.213.50.52', 'etcd2=http://10.213.50.62');
    const f = finding(o, 'etcd-config');
    assert.match(f, /etcd1 \(CT 109\) does not have the inventory's IP 10\.213\.50\.51/);
    assert.match(
      f,
      /etcd3: ETCD_INITIAL_CLUSTER has etcd2 at 10\.213\.50\.62, the inventory at 10\.213\.50\.52/,
    );
  });

  void it('etcd-ports: a stopped etcd (nothing listening) and a port held by another process fail', () => {
    const o = healthy();
    o.etcd[0]!.listening = { ok: true, value: [] };
    o.etcd[1]!.listening = {
      ok: true,
      value: [
        { address: '10.213.50.52', port: 2379, process: 'etcd' },
        { address: '0.0.0.0', port: 2380, process: 'python3' },
      ],
    };
    assert.deepEqual(notPassing(o), { 'etcd-ports': 'fail' });
    const f = finding(o, 'etcd-ports');
    assert.match(f, /etcd1 \(CT 109\): nothing listens on 10\.213\.50\.51:2379/);
    assert.match(f, /etcd1 \(CT 109\): nothing listens on 10\.213\.50\.51:2380/);
    assert.match(f, /etcd2 \(CT 110\): port 2380 on 10\.213\.50\.52 is held by python3, not etcd/);
  });

  void it('etcd-ports: a CT that cannot be asked is unknown (exit 1), never a pass', () => {
    const o = healthy();
    o.etcd[2]!.listening = { ok: false, error: 'CT 111 is not running' };
    assert.deepEqual(notPassing(o), { 'etcd-ports': 'unknown' });
    assert.equal(doctorExitCode(diagnose(o)), 1);
  });

  void it("patroni-dcs: 'Failed to get list of machines' after the last HA loop fails; a later HA loop passes", () => {
    const o = healthy();
    const j = o.postgres[2]!.patroniJournal as { ok: true; value: string[] };
    const err = 'ERROR: Failed to get list of machines from http://10.213.50.51:2379/v3: MaxRetryError(...)';
    j.value.push(err);
    assert.deepEqual(notPassing(o), { 'patroni-dcs': 'fail' });
    assert.match(
      finding(o, 'patroni-dcs'),
      /pg104 \(CT 104\): Patroni cannot reach etcd: ERROR: Failed to get list of machines/,
    );
    j.value.push('INFO: no action. I am (pg104), a secondary, and following a leader (pg102)');
    assert.deepEqual(notPassing(o), {});
  });

  void it('data-dir: a wrong owner or a mode wider than 0750 fails; 0750 passes', () => {
    const o = healthy();
    o.postgres[0]!.dataDir = {
      ok: true,
      value: { path: '/var/lib/pgsql/18/data', owner: 'root', mode: '755' },
    };
    const f = finding(o, 'data-dir');
    assert.match(f, /pg102 \(CT 102\): \/var\/lib\/pgsql\/18\/data belongs to root, not postgres/);
    assert.match(f, /has mode 0755, PostgreSQL needs 0700/);
    o.postgres[0]!.dataDir = {
      ok: true,
      value: { path: '/var/lib/pgsql/18/data', owner: 'postgres', mode: '750' },
    };
    assert.deepEqual(notPassing(o), {});
  });

  void it('replication-settings: wal_level minimal, too few senders or slots fail (Barman counts)', () => {
    const o = healthy();
    (o.postgres[1]!.settings as { ok: true; value: Record<string, string> }).value = {
      wal_level: 'minimal',
      max_wal_senders: '2',
      max_replication_slots: '1',
    };
    const f = finding(o, 'replication-settings');
    assert.match(f, /pg103: wal_level is minimal/);
    assert.match(f, /pg103: max_wal_senders is 2, needs at least 3/);
    assert.match(f, /pg103: max_replication_slots is 1, needs at least 2/);
    const b = healthy();
    b.expected.backupStreams = 1;
    for (const p of b.postgres)
      p.settings = {
        ok: true,
        value: { wal_level: 'replica', max_wal_senders: '3', max_replication_slots: '3' },
      };
    assert.match(finding(b, 'replication-settings'), /max_wal_senders is 3, needs at least 4/);
  });

  void it('pg-hba-replication: a member without a replication line, or a reject line first, fails', () => {
    const o = healthy();
    o.postgres[0]!.hba = {
      ok: true,
      value: [hbaRule(1, null, null), hbaRule(2, '10.213.50.21', '255.255.255.255')],
    };
    o.postgres[1]!.hba = {
      ok: true,
      value: [
        hbaRule(1, '10.213.50.23', '255.255.255.255', 'reject'),
        hbaRule(2, '10.213.50.0', '255.255.255.0'),
      ],
    };
    const f = finding(o, 'pg-hba-replication');
    assert.match(
      f,
      /pg102: pg_hba\.conf has no line for replication by replicator from pg103 \(10\.213\.50\.22\)/,
    );
    assert.match(f, /pg102: .* from pg104/);
    assert.doesNotMatch(f, /pg102: .* from pg102/);
    assert.match(f, /pg103: pg_hba\.conf line 1 rejects replication by replicator from pg104/);
  });

  void it('hbaMatches: the replication keyword only (not all), the user or all, the address within its mask', () => {
    const r = hbaRule(1, '10.213.50.0', '255.255.255.0');
    assert.equal(hbaMatches(r, 'replicator', '10.213.50.22'), true);
    assert.equal(hbaMatches(r, 'replicator', '192.0.2.22'), false);
    assert.equal(hbaMatches(r, 'someone', '10.213.50.22'), false);
    assert.equal(hbaMatches({ ...r, userName: ['all'] }, 'someone', '10.213.50.22'), true);
    assert.equal(hbaMatches({ ...r, database: ['all'] }, 'replicator', '10.213.50.22'), false);
    assert.equal(hbaMatches({ ...r, type: 'local' }, 'replicator', '10.213.50.22'), false);
    assert.equal(hbaMatches({ ...r, address: 'all', netmask: null }, 'replicator', '192.0.2.1'), true);
  });

  void it('haproxy-roles: a member missing from a backend, a server in MAINT, a replica UP in the write backend fail', () => {
    const o = healthy();
    if (!o.status.haproxy.asked) throw new Error('fixture');
    const [h1, h2] = o.status.haproxy.nodes;
    h1!.servers = h1!.servers.filter((s) => !(s.backend === 'postgres_read' && s.server === 'pg104'));
    const m = h2!.servers.find((s) => s.backend === 'postgres_read' && s.server === 'pg103')!;
    Object.assign(m, { state: 'MAINT', status: 'MAINT' });
    const w = h2!.servers.find((s) => s.backend === 'postgres_write' && s.server === 'pg104')!;
    Object.assign(w, { state: 'UP', status: 'UP' });
    assert.deepEqual(notPassing(o), { 'haproxy-roles': 'fail' });
    const f = finding(o, 'haproxy-roles');
    assert.match(f, /HAProxy haproxy1: backend postgres_read does not list pg104/);
    assert.match(f, /HAProxy haproxy2: postgres_read\/pg103 is MAINT/);
    assert.match(
      f,
      /HAProxy haproxy2: write backend postgres_write sends to pg102, pg104, expected only the leader pg102/,
    );
  });

  void it('timeline: a member on another timeline fails, naming every member and the leader', () => {
    const o = healthy();
    o.status.patroni.members[2]!.sql = { inRecovery: true, timeline: 2 };
    assert.deepEqual(notPassing(o), { timeline: 'fail' });
    assert.match(
      finding(o, 'timeline'),
      /members on 2 timelines: pg102 3, pg103 3, pg104 2 \(the leader pg102 on 3\)/,
    );
  });

  void it("patroni-timing: Patroni's rule broken fails; values other than the inventory's warn", () => {
    const o = healthy();
    o.patroniConfig = { ok: true, value: { ttl: 30, loop_wait: 10, retry_timeout: 20 } };
    assert.match(finding(o, 'patroni-timing'), /ttl 30 < loop_wait 10 \+ 2 × retry_timeout 20/);
    assert.deepEqual(notPassing(o), { 'patroni-timing': 'fail' });
    o.patroniConfig = { ok: true, value: { ttl: 20, loop_wait: 5, retry_timeout: 7 } };
    assert.deepEqual(notPassing(o), { 'patroni-timing': 'warn' });
    assert.equal(doctorExitCode(diagnose(o)), 1);
  });

  void it('versions: Patroni 3.3.0 with PostgreSQL 18 warns with the upgrade; mixed majors fail', () => {
    const o = healthy();
    for (const m of o.status.patroni.members) m.patroniVersion = '3.3.0';
    assert.deepEqual(notPassing(o), { versions: 'warn' });
    assert.match(
      finding(o, 'versions'),
      /pg102: Patroni 3\.3\.0 does not support PostgreSQL 18 .*pgha upgrade patroni/,
    );
    o.status.patroni.members[1]!.serverVersion = 170005;
    assert.deepEqual(notPassing(o), { versions: 'fail' });
  });

  void it('clock-skew: more than 1 s beyond the measurement uncertainty fails, 250 ms warns, within the round trip passes', () => {
    const o = healthy();
    const set = (ms: number, unc = 20) =>
      (o.clocks[4]!.offset = { ok: true, value: { offsetMs: ms, uncertaintyMs: unc } });
    set(1500);
    assert.deepEqual(notPassing(o), { 'clock-skew': 'fail' });
    assert.match(finding(o, 'clock-skew'), /etcd2 is 1497 ms ahead of pg102/);
    set(500);
    assert.deepEqual(notPassing(o), { 'clock-skew': 'warn' });
    set(500, 400); // a slow round trip: not sure of any skew
    assert.deepEqual(notPassing(o), {});
  });

  void it('the report names each failed check, its findings and its remedy; passing checks show no remedy', () => {
    const o = healthy();
    o.etcd[0]!.listening = { ok: true, value: [] };
    const text = formatDoctorReport(diagnose(o));
    assert.match(text, /\[FAIL\] etcd-ports: /);
    assert.match(text, /remedy: Another process on an etcd port/);
    assert.match(text, /\[ok {2}\] data-dir: /);
    assert.equal((text.match(/remedy:/g) ?? []).length, 1);
    assert.match(text, /Verdict: FAIL \(10\/11 checks pass\)/);
  });
});

void describe('doctor parsers', () => {
  void it('ss -Hltnp: address, port and process; IPv6 and no-process lines', () => {
    const s = parseSs(
      [
        'LISTEN 0      4096   10.213.50.231:2380 0.0.0.0:* users:(("etcd",pid=224,fd=7))',
        'LISTEN 0      128          [::]:22       [::]:*',
        'LISTEN 0      4096       127.0.0.1:2379 0.0.0.0:* users:(("etcd",pid=224,fd=9))',
      ].join('\n'),
    );
    assert.deepEqual(s, [
      { address: '10.213.50.231', port: 2380, process: 'etcd' },
      { address: '[::]', port: 22, process: null },
      { address: '127.0.0.1', port: 2379, process: 'etcd' },
    ]);
  });

  void it('ip -4 -o addr and etcd.conf', () => {
    assert.deepEqual(
      parseIpAddr(
        '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n2: eth0    inet 10.213.50.231/24 brd 0.0.0.255 scope global eth0\\',
      ),
      ['127.0.0.1', '10.213.50.231'],
    );
    assert.deepEqual(
      parseEnvFile('# comment\nETCD_NAME=etcd1\nETCD_DATA_DIR="/var/lib/etcd"\n\nnot a line\n'),
      {
        ETCD_NAME: 'etcd1',
        ETCD_DATA_DIR: '/var/lib/etcd',
      },
    );
  });
});
