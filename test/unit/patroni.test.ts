import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'undici';
import { ensureApplicationFailure } from '@temporalio/common';
import {
  clusterLeader,
  clusterMembers,
  createPatroniActivities,
  normaliseRole,
  PatroniAuthRejectedError,
  PatroniUnreachableError,
  type PatroniClusterJson,
} from '../../activities/patroni';
import { SecretRefError } from '../../activities/secrets';
import { freePort } from '../helpers/local-common';
import { docCluster, docPrimaryV3, FakePatroni } from '../helpers/local-patroni';

void describe('patroni activities against an HTTP server on loopback', () => {
  const primary = new FakePatroni({
    name: 'pg103',
    role: 'primary',
    auth: { username: 'patroni', password: 's3cr3t-pw' },
  });
  const replica = new FakePatroni({ name: 'pg102', role: 'replica' });
  const agent = new Agent({ connect: { timeout: 1000 }, headersTimeout: 2000, bodyTimeout: 2000 });
  const p = createPatroniActivities({ agent, timeoutMs: 1500, writeTimeoutMs: 1500 });
  const auth = { username: 'patroni', passwordRef: 'env:PGHA_TEST_PATRONI_PASSWORD' };

  before(async () => {
    await primary.start();
    await replica.start();
    process.env.PGHA_TEST_PATRONI_PASSWORD = 's3cr3t-pw';
  });
  after(async () => {
    await primary.stop();
    await replica.stop();
    await agent.close();
    delete process.env.PGHA_TEST_PATRONI_PASSWORD;
  });

  void it('GET /patroni returns the parsed document with its status', async () => {
    const a = await p.patroniGetPatroni({ target: { member: 'pg103', url: primary.url } });
    assert.equal(a.status, 200);
    assert.equal(a.member, 'pg103');
    assert.equal(a.url, `${primary.url}/patroni`);
    assert.equal(a.body?.role, 'master');
    assert.equal(normaliseRole(a.body?.role), 'primary');
    assert.deepEqual(
      a.body?.replication?.map((r) => [r.application_name, r.state]),
      [
        ['pg102', 'streaming'],
        ['pg104', 'streaming'],
      ],
    );
  });

  void it('a 503 is an answer, not an error: /primary on a replica, /replica on the primary', async () => {
    const onReplica = await p.patroniGetPrimary({ target: { member: 'pg102', url: replica.url } });
    assert.equal(onReplica.status, 503);
    assert.equal(onReplica.body?.role, 'replica');
    const onPrimary = await p.patroniGetPrimary({ target: { member: 'pg103', url: primary.url } });
    assert.equal(onPrimary.status, 200);
    const replicaOnPrimary = await p.patroniGetReplica({ target: { member: 'pg103', url: primary.url } });
    assert.equal(replicaOnPrimary.status, 503);
    const r = await p.patroniGetReplica({
      target: { member: 'pg102', url: replica.url },
      lag: '1MB',
      replicationState: 'streaming',
    });
    assert.equal(r.status, 200);
    assert.equal(replica.requests.at(-1)?.path, '/replica?lag=1MB&replication_state=streaming');
  });

  void it('reads /cluster, /history, /health, /config', async () => {
    const t = { member: 'pg103', url: primary.url };
    const c = await p.patroniGetCluster({ target: t });
    assert.equal(clusterLeader(c.body!), 'pg103');
    const h = await p.patroniGetHistory({ target: t });
    assert.deepEqual(
      h.body?.map((x) => x[0]),
      [1, 2],
    );
    assert.equal((await p.patroniGetHealth({ target: t })).status, 200);
    assert.equal((await p.patroniGetConfig({ target: t })).body?.ttl, 60);
  });

  void it('connection refused is a typed failure naming the member and the URL', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(p.patroniGetPatroni({ target: { member: 'pg104', url } }), (err: unknown) => {
      assert.ok(err instanceof PatroniUnreachableError);
      assert.equal(
        err.name,
        'PatroniUnreachableError',
        'the class name: Temporal reports it as the failure type',
      );
      assert.equal(err.reason, 'refused');
      // What a workflow sees: an ApplicationFailure whose type is the class name (for retry policies).
      assert.equal(ensureApplicationFailure(err).type, 'PatroniUnreachableError');
      assert.match(err.message, /pg104/);
      assert.ok(err.message.includes(`${url}/patroni`));
      return true;
    });
  });

  void it('a member that accepts but never answers times out within the call deadline', async () => {
    primary.routes.set('GET /cluster', { status: 200, body: {}, delayMs: 'hang' });
    try {
      await assert.rejects(
        p.patroniGetCluster({ target: { member: 'pg103', url: primary.url }, timeoutMs: 300 }),
        (err: unknown) =>
          err instanceof PatroniUnreachableError && err.reason === 'timeout' && /pg103/.test(err.message),
      );
    } finally {
      primary.routes.delete('GET /cluster');
    }
  });

  void it('a GET that meets a connection reset is tried once more; a POST is never repeated', async () => {
    const t = { member: 'pg102', url: replica.url };
    const before = replica.requests.length;
    replica.routes.set('GET /health', { status: 0, body: '', resetOnce: true });
    const a = await p.patroniGetHealth({ target: t });
    assert.equal(a.status, 200);
    assert.equal(replica.requests.length - before, 2, 'one reset, one answer');
    replica.routes.set('POST /reload', { status: 0, body: '', resetOnce: true });
    await assert.rejects(
      p.patroniReload({ target: t }),
      (err: unknown) => err instanceof PatroniUnreachableError && err.reason === 'reset',
    );
    assert.equal(replica.requests.length - before, 3, 'the POST was sent once');
  });

  void it('waits (bounded) for a member to answer /primary 200, and for /cluster to name a new leader', async () => {
    const t = { member: 'pg102', url: replica.url };
    setTimeout(() => (replica.role = 'primary'), 300);
    try {
      const a = await p.patroniWaitStatus({
        target: t,
        path: '/primary',
        want: 200,
        waitTimeoutMs: 5000,
        intervalMs: 50,
      });
      assert.equal(a.status, 200);
      await assert.rejects(
        p.patroniWaitStatus({ target: t, path: '/replica', want: 200, waitTimeoutMs: 300, intervalMs: 50 }),
        /timed out after 300 ms waiting for GET \/replica on pg102 answering 200 .*last seen: 503/,
      );
    } finally {
      replica.role = 'replica';
    }
    const dead = { member: 'pg104', url: `http://127.0.0.1:${await freePort()}` };
    await assert.rejects(
      p.patroniWaitStatus({ target: dead, path: '/health', want: 200, waitTimeoutMs: 300, intervalMs: 50 }),
      /last seen: Patroni REST API of pg104 .* refused/,
    );

    const doc = docCluster();
    replica.routes.set('GET /cluster', { status: 200, body: doc });
    setTimeout(() => {
      const flipped = docCluster();
      flipped.members[0]!.role = 'replica';
      flipped.members[1]!.role = 'leader';
      replica.routes.set('GET /cluster', { status: 200, body: flipped });
    }, 300);
    try {
      const c = await p.patroniWaitClusterLeader({
        targets: [dead, t],
        leader: 'pg102',
        waitTimeoutMs: 5000,
        intervalMs: 50,
      });
      assert.equal(clusterLeader(c), 'pg102');
      await assert.rejects(
        p.patroniWaitClusterLeader({
          targets: [dead, t],
          leader: 'pg104',
          waitTimeoutMs: 300,
          intervalMs: 50,
        }),
        /waiting for pg104 as the leader in \/cluster .*last seen: pg104: .*refused.*; pg102 says pg102/,
      );
    } finally {
      replica.routes.delete('GET /cluster');
    }
  });

  void it('DELETE /switchover and /restart are authenticated writes; 404 (nothing scheduled) is an answer', async () => {
    const t = { member: 'pg103', url: primary.url };
    const none = await p.patroniDeleteSwitchover({ target: t, auth });
    assert.equal(none.status, 404);
    assert.equal(primary.requests.at(-1)?.method, 'DELETE');
    assert.ok(primary.requests.at(-1)?.headers.authorization?.startsWith('Basic '));
    primary.routes.set('DELETE /restart', { status: 200, body: 'scheduled restart deleted' });
    const r = await p.patroniDeleteRestart({ target: t, auth });
    assert.equal(r.text, 'scheduled restart deleted');
    primary.routes.delete('DELETE /restart');
  });

  void it('rejects a target URL that is not a REST API base, naming the member', async () => {
    await assert.rejects(
      p.patroniGetPatroni({ target: { member: 'pg102', url: 'http://10.213.50.21:8008/patroni' } }),
      /pg102: url .* must be the REST API base/,
    );
  });

  void it('write endpoints send Basic auth resolved from the secret reference, and the JSON body', async () => {
    const t = { member: 'pg103', url: primary.url };
    const a = await p.patroniSwitchover({ target: t, auth, leader: 'pg103', candidate: 'pg102' });
    assert.equal(a.status, 200);
    assert.equal(a.text, 'Successfully switched over to "pg102"');
    const req = primary.requests.at(-1)!;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/switchover');
    assert.equal(req.headers.authorization, `Basic ${Buffer.from('patroni:s3cr3t-pw').toString('base64')}`);
    assert.deepEqual(JSON.parse(req.body), { leader: 'pg103', candidate: 'pg102' });
    assert.ok(!JSON.stringify(a).includes('s3cr3t-pw'), 'the password never appears in a result');

    const reload = await p.patroniReload({ target: t, auth });
    assert.equal(reload.status, 202);
    primary.routes.set('PATCH /config', { status: 200, body: { ttl: 30 } });
    const patched = await p.patroniPatchConfig({ target: t, auth, patch: { ttl: 30 } });
    assert.equal(patched.body?.ttl, 30);
    assert.equal(primary.requests.at(-1)?.method, 'PATCH');
    assert.equal(primary.requests.at(-1)?.headers.authorization?.startsWith('Basic '), true);
    primary.routes.delete('PATCH /config');
  });

  void it('a 401 is PatroniAuthRejected naming the reference, never the password; a missing secret names the ref', async () => {
    const t = { member: 'pg103', url: primary.url };
    process.env.PGHA_TEST_PATRONI_WRONG = 'wrong-pw';
    await assert.rejects(
      p.patroniRestart({
        target: t,
        auth: { username: 'patroni', passwordRef: 'env:PGHA_TEST_PATRONI_WRONG' },
        restartPending: true,
      }),
      (err: unknown) =>
        err instanceof PatroniAuthRejectedError &&
        err.message.includes('env:PGHA_TEST_PATRONI_WRONG') &&
        !err.message.includes('wrong-pw'),
    );
    delete process.env.PGHA_TEST_PATRONI_WRONG;
    // Without auth the server refuses with 401 too, and that is an answer the caller can read.
    const noAuth = await p.patroniReload({ target: t });
    assert.equal(noAuth.status, 401);
    assert.equal(noAuth.text, 'no auth header received');
    await assert.rejects(
      p.patroniReload({ target: t, auth: { username: 'patroni', passwordRef: 'env:PGHA_NO_SUCH_VAR' } }),
      (err: unknown) => err instanceof SecretRefError && /env:PGHA_NO_SUCH_VAR/.test(err.message),
    );
  });
});

void describe('patroni pure helpers: the same view from every Patroni version', () => {
  void it('uses the leader replication[] to decide streaming when given (Patroni 3.0 says running)', () => {
    const v30 = docCluster('running') as PatroniClusterJson;
    const withoutLeader = clusterMembers(v30);
    assert.equal(withoutLeader.find((m) => m.name === 'pg102')?.streaming, null, 'running says nothing');
    const leaderRepl = docPrimaryV3('pg103', ['pg102']).replication;
    const withLeader = clusterMembers(v30, leaderRepl);
    assert.equal(withLeader.find((m) => m.name === 'pg102')?.streaming, true);
    assert.equal(withLeader.find((m) => m.name === 'pg104')?.streaming, false, 'not in replication[]');
    assert.equal(withLeader.find((m) => m.name === 'pg103')?.streaming, null, 'the leader does not stream');
  });
  void it('reads streaming from newer versions, lag `unknown` as null, and nofailover tags', () => {
    const members = clusterMembers(docCluster('streaming') as PatroniClusterJson);
    const pg102 = members.find((m) => m.name === 'pg102')!;
    const pg104 = members.find((m) => m.name === 'pg104')!;
    assert.equal(pg102.streaming, true);
    assert.equal(pg102.lagBytes, 0);
    assert.equal(pg104.lagBytes, null);
    assert.equal(pg104.noFailover, true);
    assert.equal(members.find((m) => m.name === 'pg103')!.lagBytes, 0);
    const stopped = clusterMembers({ members: [{ name: 'x', role: 'replica', state: 'stopped' }] });
    assert.equal(stopped[0]!.streaming, false);
  });
});
