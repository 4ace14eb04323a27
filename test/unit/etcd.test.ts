import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { createEtcdActivities, EtcdUnavailableError, patroniPrefix, hexId } from '../../activities/etcd';
import { PollTimeoutError } from '../../activities/poll';
import { freePort } from '../helpers/local-common';
import { startLocalEtcd, type LocalEtcdCluster } from '../helpers/local-etcd';

void describe('etcd helpers (pure)', () => {
  void it('builds the Patroni prefix from namespace and scope the way Patroni does', () => {
    assert.equal(patroniPrefix('/patroni/', 'postgres'), '/patroni/postgres/');
    assert.equal(patroniPrefix('patroni', 'postgres'), '/patroni/postgres/');
    assert.equal(patroniPrefix('/service', 'pg-lab'), '/service/pg-lab/');
    assert.throws(() => patroniPrefix('/patroni/', 'a/b'), /scope "a\/b"/);
  });
  void it('prints member ids in hex like etcdctl, and no leader as undefined', () => {
    assert.equal(hexId('10276657743932975437'), '8e9e05c52164694d');
    assert.equal(hexId('0'), undefined);
  });
  void it('rejects endpoints that are not http://<ip>:<port>, naming the bad one', async () => {
    const etcd = createEtcdActivities();
    await assert.rejects(etcd.etcdEndpointHealth({ endpoints: [] }), /non-empty list/);
    await assert.rejects(
      etcd.etcdEndpointHealth({ endpoints: ['10.213.50.51:2379'] }),
      /"10\.213\.50\.51:2379".*http:\/\/<ip>:<port>/,
    );
  });
});

void describe('etcd activities against a real 3-member etcd on loopback', () => {
  let cluster: LocalEtcdCluster;
  const etcd = createEtcdActivities({ callTimeoutMs: 1500 });

  before(async () => {
    cluster = await startLocalEtcd(3);
    // Patroni's keys, written the way Patroni's etcd3 DCS writes them (plain v3 puts).
    const c = new Etcd3({ hosts: cluster.endpoints });
    try {
      await c.put('/patroni/postgres/leader').value('pg103');
      await c.put('/patroni/postgres/members/pg102').value('{"role":"replica","state":"streaming"}');
      await c.put('/patroni/postgres/members/pg103').value('{"role":"primary","state":"running"}');
      await c.put('/patroni/postgres/initialize').value('7268616322854375442');
      await c.put('/patroni/other/leader').value('not-ours');
    } finally {
      c.close();
    }
  });
  after(async () => {
    await cluster?.stop();
  });

  void it('reports every member healthy, with one leader they all agree on', async () => {
    const view = await etcd.etcdCluster({ endpoints: cluster.endpoints });
    assert.equal(view.healthyCount, 3);
    assert.equal(view.quorum, true);
    assert.equal(view.members?.length, 3);
    assert.deepEqual(view.members?.map((m) => m.name).sort(), ['etcd1', 'etcd2', 'etcd3']);
    assert.ok(view.leader, 'a leader');
    assert.match(view.leader.name ?? '', /^etcd[123]$/);
    assert.equal(view.endpoints.filter((e) => e.isLeader).length, 1);
    for (const e of view.endpoints) {
      assert.equal(e.leaderId, view.leader.id);
      assert.match(e.version ?? '', /^3\.\d+\.\d+/);
      assert.ok((e.dbSizeBytes ?? 0) > 0);
    }
    const members = await etcd.etcdMembers({ endpoints: cluster.endpoints });
    const byName = new Map(members.map((m) => [m.name, m]));
    assert.deepEqual(byName.get('etcd2')?.clientUrls, [cluster.members[1]!.clientUrl]);
  });

  void it('lists only the keys under /<namespace>/<scope>/ and reads the leader key', async () => {
    const { prefix, keys } = await etcd.etcdPatroniKeys({
      endpoints: cluster.endpoints,
      namespace: '/patroni/',
      scope: 'postgres',
    });
    assert.equal(prefix, '/patroni/postgres/');
    assert.deepEqual(
      keys.map((k) => k.key),
      [
        '/patroni/postgres/initialize',
        '/patroni/postgres/leader',
        '/patroni/postgres/members/pg102',
        '/patroni/postgres/members/pg103',
      ],
    );
    const withValues = await etcd.etcdPatroniKeys({
      endpoints: cluster.endpoints,
      namespace: 'patroni',
      scope: 'postgres',
      withValues: true,
    });
    assert.equal(withValues.keys.find((k) => k.key.endsWith('/leader'))?.value, 'pg103');
    const leader = await etcd.etcdPatroniLeaderKey({
      endpoints: cluster.endpoints,
      namespace: '/patroni/',
      scope: 'postgres',
    });
    assert.deepEqual(leader, { key: '/patroni/postgres/leader', value: 'pg103' });
    const none = await etcd.etcdPatroniLeaderKey({
      endpoints: cluster.endpoints,
      namespace: '/patroni/',
      scope: 'nosuch',
    });
    assert.equal(none.value, null);
  });

  void it("reads the leader key's lease: the TTL Patroni granted it and what is left", async () => {
    const c = new Etcd3({ hosts: cluster.endpoints });
    const lease = c.lease(20, { autoKeepAlive: false });
    try {
      await lease.put('/patroni/leased/leader').value('pg104');
      const got = await etcd.etcdPatroniLeaderLease({
        endpoints: cluster.endpoints,
        namespace: '/patroni/',
        scope: 'leased',
      });
      assert.ok(got);
      assert.equal(got.value, 'pg104');
      assert.equal(got.grantedTtl, 20);
      assert.ok(got.ttl > 0 && got.ttl <= 20, `remaining ${got.ttl}`);
      const none = await etcd.etcdPatroniLeaderLease({
        endpoints: cluster.endpoints,
        namespace: '/patroni/',
        scope: 'nosuch',
      });
      assert.equal(none, null);
    } finally {
      await lease.revoke().catch(() => undefined);
      c.close();
    }
  });

  void it('waits (bounded) for the members to be healthy', async () => {
    const health = await etcd.etcdWaitHealthy({ endpoints: cluster.endpoints, waitTimeoutMs: 10_000 });
    assert.equal(health.filter((h) => h.healthy).length, 3);
  });

  void it('a port nobody listens on is one unhealthy endpoint, not a failure of the whole call', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const health = await etcd.etcdEndpointHealth({
      endpoints: [...cluster.endpoints, dead],
      timeoutMs: 1000,
    });
    assert.equal(health.length, 4);
    const d = health.find((h) => h.endpoint === dead)!;
    assert.equal(d.healthy, false);
    assert.ok(d.error && d.error.length > 0);
    assert.equal(health.filter((h) => h.healthy).length, 3);
    // Reads over several endpoints go on to the next member when the first does not answer.
    const key = await etcd.etcdPatroniLeaderKey({
      endpoints: [dead, ...cluster.endpoints],
      namespace: '/patroni/',
      scope: 'postgres',
    });
    assert.equal(key.value, 'pg103');
    const members = await etcd.etcdMembers({ endpoints: [dead, ...cluster.endpoints] });
    assert.equal(members.length, 3);
    await assert.rejects(
      etcd.etcdPatroniKeys({ endpoints: [dead], namespace: '/patroni/', scope: 'postgres' }),
      (err: unknown) => {
        assert.ok(err instanceof EtcdUnavailableError);
        assert.ok(err.message.includes(`no etcd member answered get --prefix /patroni/postgres/: ${dead}:`));
        return true;
      },
    );
  });

  void it('with one member killed: that one is unhealthy, quorum holds; with two: no quorum and the wait times out', async () => {
    // A follower: killing the leader would leave the others leaderless (unhealthy) until they elect anew.
    const before = await etcd.etcdCluster({ endpoints: cluster.endpoints });
    const victim = cluster.members.find((m) => m.proc.running && m.name !== before.leader?.name)!;
    await cluster.kill(victim.name);
    const view = await etcd.etcdCluster({ endpoints: cluster.endpoints, timeoutMs: 1000 });
    const v = view.endpoints.find((e) => e.endpoint === victim.clientUrl)!;
    assert.equal(v.healthy, false);
    assert.equal(view.quorum, true);
    await etcd.etcdWaitHealthy({
      endpoints: cluster.endpoints,
      expected: 2,
      waitTimeoutMs: 15_000,
      intervalMs: 200,
    });

    const second = cluster.members.find((m) => m.proc.running)!;
    await cluster.kill(second.name);
    await assert.rejects(
      etcd.etcdWaitHealthy({
        endpoints: cluster.endpoints,
        expected: 2,
        waitTimeoutMs: 3000,
        intervalMs: 300,
        timeoutMs: 800,
      }),
      (err: unknown) =>
        err instanceof PollTimeoutError &&
        /2 healthy etcd member/.test(err.message) &&
        /unhealthy/.test(err.message),
    );
    const lonely = await etcd.etcdCluster({ endpoints: cluster.endpoints, timeoutMs: 800 });
    assert.equal(lonely.quorum, false);
    assert.equal(lonely.healthyCount, 0, 'the last member alone serves no linearizable read');
  });
});
