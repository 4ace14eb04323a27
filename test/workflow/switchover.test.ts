/**
 * switchover / failover decisions on a real Temporal dev server: the workflows with pgha's real
 * switchover activities (activities/switchover.ts) over a fake cluster — Patroni, SQL, etcd and the
 * HAProxy runtime API answered from one in-memory model that changes like Patroni does when a
 * POST /switchover arrives (old leader stops, the candidate takes the key, answers /primary 200,
 * then leaves recovery on a new timeline). Checks: refusals name what was found and the fix and
 * touch nothing; the routing order (old leader down before the candidate up, only once it is out
 * of recovery); definite end states when Patroni refuses or the hand-off stalls; a retried hand-off
 * finds the switchover done and does not POST again. (The real thing: test/lab/switchover.test.ts.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { EtcdActivities } from '../../activities/etcd';
import type { HaproxyActivities, HaproxyStatRow } from '../../activities/haproxy';
import { PatroniUnreachableError } from '../../activities/patroni';
import type { PatroniActivities } from '../../activities/patroni';
import type { PgConn, PostgresActivities } from '../../activities/postgres';
import { createSwitchoverActivities } from '../../activities/switchover';
import type { RuntimeSessions } from '../../activities/switchover';
import type { InventoryInput } from '../../runbooks/schema';
import type { failover, HandoffReport, switchover } from '../../workflows/switchover';
import { errorMessage } from '../../workflows/steps';
import { approve, progress } from '../../workflows/messages';
import { repoRoot, waitFor } from '../helpers/local-common';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

process.env.PGHA_SW_TEST_SECRET = 'not-a-real-password';
const labInput = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_SW_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

const IPS: Record<string, string> = { pg102: '10.213.50.21', pg103: '10.213.50.22', pg104: '10.213.50.23' };
const nameOf = (ip: string) => Object.keys(IPS).find((k) => IPS[k] === ip);
const MiB = 1024 * 1024;

interface Member {
  role: 'leader' | 'replica';
  /** running (leader, replica streaming), stopped. */
  up: boolean;
  /** Leader only: PostgreSQL out of recovery (false between taking the key and finishing promotion). */
  writable: boolean;
  lag: number;
  nofailover?: boolean;
}

/** The cluster as Patroni, PostgreSQL, etcd and HAProxy would show it. */
class FakeCluster {
  members: Record<string, Member> = {
    pg102: { role: 'leader', up: true, writable: true, lag: 0 },
    pg103: { role: 'replica', up: true, writable: false, lag: 0 },
    pg104: { role: 'replica', up: true, writable: false, lag: 0 },
  };
  timeline = 1;
  paused = false;
  etcdHealthy = 3;
  /** What Patroni does with a POST: hand over, refuse (412), or stall (old leader stops, nobody takes over). */
  behaviour: 'ok' | 'refuse' | 'stall' = 'ok';
  posts: string[] = [];
  commands: string[] = [];
  /** Fail the first `health up` command (as a worker dying mid-hand-off would leave it). */
  failFirstUp = false;
  private failedUp = false;
  /** HAProxy admin state per `<node> <backend>/<server>` (0 ready, 8 drain, 1 maint). */
  admin: Record<string, number> = {};

  leader(): string | undefined {
    return Object.keys(this.members).find((n) => this.members[n]!.role === 'leader');
  }

  handOff(to: string) {
    const old = this.leader();
    const at = (ms: number, fn: () => void) => setTimeout(fn, ms);
    if (old) at(30, () => (this.members[old]!.up = false)); // fast shutdown
    if (this.behaviour === 'stall') {
      if (old) at(60, () => (this.members[old]!.role = 'replica'));
      return;
    }
    at(150, () => {
      if (old) this.members[old]!.role = 'replica';
      this.members[to]!.role = 'leader'; // takes the key: /primary 200, still in recovery
    });
    at(300, () => {
      this.members[to]!.writable = true;
      this.timeline++;
    });
    if (old)
      at(500, () => {
        this.members[old] = { role: 'replica', up: true, writable: false, lag: 0 };
      });
  }

  patroni(): PatroniActivities {
    const member = (url: string) => nameOf(url.replace(/^http:\/\//, '').replace(/:\d+$/, ''))!;
    const unreachable = (name: string, url: string) => {
      throw new PatroniUnreachableError(name, url, 'refused', 'connection refused');
    };
    const fake = {
      patroniGetCluster: async (a: { target: { url: string } }) => {
        const me = member(a.target.url);
        if (!this.members[me]!.up && this.members[me]!.role !== 'leader') unreachable(me, a.target.url);
        return {
          member: me,
          url: a.target.url,
          status: 200,
          body: {
            pause: this.paused,
            members: Object.entries(this.members).map(([name, m]) => ({
              name,
              role: m.role,
              state: m.up ? (m.role === 'leader' ? 'running' : 'streaming') : 'stopped',
              timeline: this.timeline,
              lag: m.role === 'leader' ? undefined : m.lag,
              tags: m.nofailover ? { nofailover: true } : {},
            })),
          },
        };
      },
      patroniGetPrimary: async (a: { target: { url: string } }) => {
        const me = member(a.target.url);
        const m = this.members[me]!;
        if (!m.up && m.role !== 'leader') unreachable(me, a.target.url);
        return {
          member: me,
          url: a.target.url,
          status: m.role === 'leader' && (m.up || m.writable) ? 200 : 503,
          body: {},
        };
      },
      patroniGetConfig: async (a: { target: { url: string } }) => ({
        member: member(a.target.url),
        url: a.target.url,
        status: 200,
        body: { maximum_lag_on_failover: MiB },
      }),
      patroniSwitchover: async (a: { leader: string; candidate?: string }) => {
        this.posts.push(`switchover ${a.leader} -> ${a.candidate}`);
        if (this.behaviour === 'refuse')
          return {
            member: a.leader,
            url: '',
            status: 412,
            body: null,
            text: 'candidate name does not match',
          };
        this.handOff(a.candidate!);
        await new Promise((r) => setTimeout(r, 600));
        return this.behaviour === 'ok'
          ? {
              member: a.leader,
              url: '',
              status: 200,
              body: null,
              text: `Successfully switched over to "${a.candidate}"`,
            }
          : { member: a.leader, url: '', status: 503, body: null, text: 'Switchover status unknown' };
      },
      patroniFailover: async (a: { candidate: string }) => {
        this.posts.push(`failover -> ${a.candidate}`);
        this.handOff(a.candidate);
        await new Promise((r) => setTimeout(r, 600));
        return {
          member: a.candidate,
          url: '',
          status: 200,
          body: null,
          text: `Successfully failed over to "${a.candidate}"`,
        };
      },
    };
    return fake as unknown as PatroniActivities;
  }

  postgres(): PostgresActivities {
    const m = (c: PgConn) => this.members[nameOf(c.host) ?? '']!;
    const fake = {
      pgReplication: async (c: PgConn) => {
        if (nameOf(c.host) !== this.leader()) return [];
        return Object.entries(this.members)
          .filter(([, x]) => x.role === 'replica' && x.up)
          .map(([name, x]) => ({
            applicationName: name,
            clientAddr: IPS[name],
            state: 'streaming',
            syncState: 'async',
            sentLsn: null,
            replayLsn: null,
            replayLagBytes: x.lag,
          }));
      },
      pgTimeline: async (c: PgConn) => {
        if (!m(c).up) throw new Error(`PostgreSQL ${c.host} did not accept a connection`);
        return { timeline: this.timeline, checkpointTimeline: this.timeline };
      },
      pgWriteProbe: async (c: PgConn) => {
        // Through HAProxy: where the write backend routes (the only UP server).
        return { id: '1', serverAddr: IPS[this.leader()!]!, clusterName: this.leader()!, via: c.host };
      },
    };
    return fake as unknown as PostgresActivities;
  }

  etcd(): EtcdActivities {
    return {
      etcdEndpointHealth: async (a: { endpoints: string[] }) =>
        a.endpoints.map((endpoint, i) => ({
          endpoint,
          healthy: i < this.etcdHealthy,
          tookMs: 1,
          error: i < this.etcdHealthy ? undefined : 'context deadline exceeded',
        })),
    } as unknown as EtcdActivities;
  }

  haproxy(): HaproxyActivities {
    return {
      haproxyShowStat: async () => {
        const rows: HaproxyStatRow[] = [];
        for (const [name, x] of Object.entries(this.members)) {
          const w = x.role === 'leader' && x.writable;
          const r = x.role === 'replica' && x.up;
          rows.push({
            backend: 'postgres_primary',
            server: name,
            type: 'server',
            status: w ? 'UP' : 'DOWN',
            state: w ? 'UP' : 'DOWN',
            checkStatus: 'L7OK',
          });
          rows.push({
            backend: 'postgres_replicas',
            server: name,
            type: 'server',
            status: r ? 'UP' : 'DOWN',
            state: r ? 'UP' : 'DOWN',
            checkStatus: 'L7OK',
          });
        }
        return rows;
      },
    } as unknown as HaproxyActivities;
  }

  sessions = async (): Promise<RuntimeSessions> => ({
    sessions: ['haproxy1', 'haproxy2'].map((node) => ({
      node,
      command: async (cmd: string) => {
        if (
          this.failFirstUp &&
          !this.failedUp &&
          / health up$/.test(cmd) &&
          cmd.includes('postgres_primary')
        ) {
          this.failedUp = true;
          throw new Error(`haproxy ${node}: runtime session closed`);
        }
        // Routing a member that is still in recovery would send writes to a replica.
        const target = cmd.match(/postgres_primary\/(\w+) health up/)?.[1];
        if (target && !this.members[target]!.writable) this.commands.push(`MISROUTED ${cmd}`);
        // Admin states (drain/maint), as `show servers state` reports them (srv_admin_state, 7th field).
        const st = cmd.match(/^set server (\w+)\/(\w+) state (ready|drain|maint)$/);
        if (st) this.admin[`${node} ${st[1]}/${st[2]}`] = st[3] === 'ready' ? 0 : st[3] === 'drain' ? 8 : 1;
        const show = cmd.match(/^show servers state (\w+)$/)?.[1];
        if (show) {
          const rows = Object.keys(this.members).map(
            (name, i) =>
              `4 ${show} ${i + 1} ${name} ${IPS[name]} 2 ${this.admin[`${node} ${show}/${name}`] ?? 0} 1 1`,
          );
          return [
            '1',
            '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight',
            ...rows,
          ].join('\n');
        }
        this.commands.push(`${node}: ${cmd}`);
        return '';
      },
      close() {},
    })),
    close() {},
  });

  activities() {
    return createSwitchoverActivities({
      patroni: this.patroni(),
      postgres: this.postgres(),
      etcd: this.etcd(),
      haproxyFor: async () => this.haproxy(),
      openRuntimeSessions: this.sessions,
      handoffTimeoutMs: 3000,
      recoveryProbe: (c) => ({
        inRecovery: async () => {
          const x = this.members[nameOf(c.host) ?? '']!;
          if (!x.up && !(x.role === 'leader' && x.writable)) return null;
          return !(x.role === 'leader' && x.writable);
        },
        close() {},
      }),
    });
  }
}

async function run<W extends typeof switchover | typeof failover>(
  fake: FakeCluster,
  workflow: 'switchover' | 'failover',
  args: object,
): Promise<HandoffReport> {
  const taskQueue = uniqueId('sw');
  const cluster = uniqueId('sw');
  const worker = await createTestWorker(env, { taskQueue, activities: fake.activities() });
  return worker.runUntil(async () => {
    const h = await startRunbook<W>(env.client, {
      workflow,
      args: [{ inventory: labInput(cluster), ...args }] as Parameters<W>,
      cluster,
      operation: workflow,
      taskQueue,
    });
    return (await h.result()) as HandoffReport;
  });
}

async function refused(fake: FakeCluster, workflow: 'switchover' | 'failover', args: object, re: RegExp) {
  await assert.rejects(run(fake, workflow, args as never), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    const msg = errorMessage(err.cause);
    assert.match(msg, re);
    return true;
  });
  assert.deepEqual(fake.posts, [], 'nothing requested from Patroni');
  assert.deepEqual(fake.commands, [], 'HAProxy untouched');
  assert.equal(fake.leader(), 'pg102');
}

void test('switchover to a named replica: old leader cut, the candidate routed only once writable, verified', async () => {
  const fake = new FakeCluster();
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.equal(r.from, 'pg102');
  assert.equal(r.to, 'pg103');
  assert.equal(r.outcome, 'switched');
  assert.equal(r.timelineBefore, 1);
  assert.equal(r.timelineAfter, 2);
  assert.equal(r.chosen, false);
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103']);
  assert.ok(!fake.commands.some((c) => c.startsWith('MISROUTED')), fake.commands.join('\n'));
  for (const h of ['haproxy1', 'haproxy2']) {
    const down = fake.commands.indexOf(`${h}: set server postgres_primary/pg102 health down`);
    const up = fake.commands.indexOf(`${h}: set server postgres_primary/pg103 health up`);
    assert.ok(
      down >= 0 && up > down,
      `${h}: old leader down before the candidate up\n${fake.commands.join('\n')}`,
    );
  }
  assert.ok(
    r.timings.candidateWritableMs! >= r.timings.candidatePrimary200Ms!,
    'writable after /primary 200',
  );
  assert.ok(r.timings.routedMs! >= r.timings.candidateWritableMs!);
  assert.equal(r.verify.oldLeader?.name, 'pg102');
  assert.equal(r.verify.oldLeader?.state, 'streaming');
  assert.deepEqual(
    r.verify.haproxy.map((h) => h.writeLandedOn),
    ['pg103', 'pg103'],
  );
});

void test('switchover with no candidate picks the fit replica with the least lag', async () => {
  const fake = new FakeCluster();
  fake.members.pg103!.lag = 4096;
  const r = await run(fake, 'switchover', {});
  assert.equal(r.to, 'pg104');
  assert.equal(r.chosen, true);
});

void test('refusals say what was found and the fix, and touch nothing', async () => {
  await refused(
    new FakeCluster(),
    'switchover',
    { candidate: 'pg102' },
    /candidate pg102 is the leader already.*choose pg103 \(lag 0 B\) or pg104/,
  );
  await refused(
    new FakeCluster(),
    'switchover',
    { candidate: 'pg999' },
    /candidate pg999 is not a member of cluster .*: choose one of pg102, pg103, pg104/,
  );
  const lagging = new FakeCluster();
  lagging.members.pg104!.lag = 12 * MiB;
  await refused(
    lagging,
    'switchover',
    { candidate: 'pg104' },
    /candidate pg104 lags 12 MiB behind the leader \(limit 1\.0 MiB from maximum_lag_on_failover\); wait, or choose pg103 \(lag 0 B\)/,
  );
  const tagged = new FakeCluster();
  tagged.members.pg103!.nofailover = true;
  await refused(
    tagged,
    'switchover',
    { candidate: 'pg103' },
    /candidate pg103 is tagged nofailover.*choose pg104/,
  );
  const paused = new FakeCluster();
  paused.paused = true;
  await refused(
    paused,
    'switchover',
    { candidate: 'pg103' },
    /is paused \(Patroni maintenance mode\).*resume/,
  );
  const noQuorum = new FakeCluster();
  noQuorum.etcdHealthy = 1;
  await refused(noQuorum, 'switchover', { candidate: 'pg103' }, /etcd has no quorum: 1 of 3 members healthy/);
  await refused(
    new FakeCluster(),
    'failover',
    { candidate: 'pg103' },
    /the leader pg102 is healthy.*use pgha switchover --to pg103, or failover --force/,
  );
});

void test('Patroni refuses: a definite end — the leader is still pg102, HAProxy as before', async () => {
  const fake = new FakeCluster();
  fake.behaviour = 'refuse';
  await assert.rejects(run(fake, 'switchover', { candidate: 'pg103' }), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(
      errorMessage(err.cause),
      /switchover to pg103 did not happen: Patroni answered 412: candidate name does not match\. The leader is still pg102 \(timeline 1\)/,
    );
    return true;
  });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'POSTed once, not retried');
  assert.ok(!fake.commands.some((c) => c.includes('pg103 health up')));
});

void test('a stalled hand-off ends in a definite, reported state (no leader), not a guess', async () => {
  const fake = new FakeCluster();
  fake.behaviour = 'stall';
  await assert.rejects(run(fake, 'switchover', { candidate: 'pg103' }), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(
      errorMessage(err.cause),
      /switchover to pg103 did not complete \(waited \d+ ms, bound 3000 ms\): Patroni answered 503: Switchover status unknown\. Now: no leader in \/cluster/,
    );
    return true;
  });
  assert.equal(fake.posts.length, 1);
  assert.ok(
    Object.values(fake.admin).every((v) => v === 0),
    `the old leader is not left drained: ${JSON.stringify(fake.admin)}`,
  );
  assert.ok(fake.commands.includes('haproxy1: set server postgres_primary/pg102 health down'));
});

void test('a hand-off retried after it failed mid-way finds the switchover done: no second POST, routed, reported', async () => {
  const fake = new FakeCluster();
  fake.failFirstUp = true;
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.equal(r.outcome, 'already-done');
  assert.equal(r.to, 'pg103');
  assert.equal(r.timelineAfter, 2);
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103']);
  assert.ok(fake.commands.includes('haproxy2: set server postgres_primary/pg103 health up'));
});

void test('failover when the leader is gone: POST /failover to the candidate, routed, old leader not waited for', async () => {
  const fake = new FakeCluster();
  fake.members.pg102!.up = false; // its CT stopped: the key is still there until the TTL, /primary unreachable
  fake.members.pg102!.writable = false;
  const r = await run(fake, 'failover', { candidate: 'pg104' });
  assert.deepEqual(fake.posts, ['failover -> pg104']);
  assert.equal(r.to, 'pg104');
  assert.equal(r.from, undefined);
  assert.equal(r.timelineAfter, 2);
  assert.equal(r.verify.oldLeader, undefined);
});

void test('failover --force with a healthy leader hands over like a switchover', async () => {
  const fake = new FakeCluster();
  const r = await run(fake, 'failover', { candidate: 'pg103', force: true });
  assert.deepEqual(fake.posts, ['failover -> pg103']);
  assert.equal(r.from, 'pg102');
  assert.equal(r.verify.oldLeader?.state, 'streaming');
});

void test('--approve: nothing is touched before the gate is approved; then re-checked and done', async () => {
  const fake = new FakeCluster();
  const taskQueue = uniqueId('sw');
  const cluster = uniqueId('sw');
  const worker = await createTestWorker(env, { taskQueue, activities: fake.activities() });
  const r = await worker.runUntil(async () => {
    const h = await startRunbook<typeof switchover>(env.client, {
      workflow: 'switchover',
      args: [{ inventory: labInput(cluster), candidate: 'pg104', approvalTimeout: '1m' }],
      cluster,
      operation: 'switchover',
      taskQueue,
    });
    await waitFor(
      'the gate waiting',
      20_000,
      async () => (await h.query(progress)).state === 'waiting-approval',
    );
    await new Promise((res) => setTimeout(res, 500));
    assert.deepEqual(fake.posts, [], 'no POST before approval');
    assert.deepEqual(fake.commands, [], 'HAProxy untouched before approval');
    await h.executeUpdate(approve, { args: [{ gate: 'switchover', approver: 'test' }] });
    const res = await h.result();
    const steps = (await h.query(progress)).steps.map((s) => `${s.name}:${s.status}`);
    assert.deepEqual(steps, [
      'pre-checks:completed',
      'switchover:approved',
      're-check:completed',
      'hand-off:completed',
      'verify:completed',
    ]);
    return res;
  });
  assert.equal(r.to, 'pg104');
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg104']);
});

void test('--at: a durable timer; the hand-off starts only at that time', async () => {
  const fake = new FakeCluster();
  const at = new Date(Date.now() + 4000);
  const r = await run(fake, 'switchover', { candidate: 'pg103', scheduledAt: at.toISOString() });
  assert.equal(r.to, 'pg103');
  assert.ok(r.timings.postedAt! >= at.getTime(), `POST at ${r.timings.postedAt}, scheduled ${at.getTime()}`);
});
