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
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { EtcdActivities } from '../../activities/etcd';
import type { HaproxyActivities, HaproxyStatRow } from '../../activities/haproxy';
import { PatroniUnreachableError } from '../../activities/patroni';
import type { PatroniActivities } from '../../activities/patroni';
import type { PgConn, PostgresActivities } from '../../activities/postgres';
import { createSwitchoverActivities } from '../../activities/switchover';
import type { CutoverResult, RuntimeSessions } from '../../activities/switchover';
import type { InventoryInput } from '../../runbooks/schema';
import type { failover, HandoffReport, switchover } from '../../workflows/switchover';
import type { DryRunReport } from '../../workflows/dry-run';
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

/**
 * Where in the hand-off a worker dies (see FakeCluster.deaths). `after-drain`: right after the
 * pre-POST drain of the old leader and the candidate, before the POST; `drained-posted`: the same
 * moment, but the POST still reaches Patroni (the request was on its way) while the heartbeat that
 * records it never reaches the server.
 */
type DeathPhase =
  'before-post' | 'after-drain' | 'drained-posted' | 'post-sent' | 'old-stopping' | 'promoting' | 'routed';

/** The hand-off attempt (Temporal's attempt number) calling into the fake, if a hand-off calls. */
function cutoverAttempt(): Context | undefined {
  try {
    const ctx = Context.current();
    return ctx.info.activityType === 'switchoverCutover' ? ctx : undefined;
  } catch {
    return undefined;
  }
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
  behaviour: 'ok' | 'refuse' | 'stall' | 'ignore' = 'ok';
  posts: string[] = [];
  commands: string[] = [];
  /** Fail the first `health up` command (as a worker dying mid-hand-off would leave it). */
  failFirstUp = false;
  private failedUp = false;
  /**
   * The hand-off's runtime session to this HAProxy node dies right after its pre-POST drain (every
   * later command on it fails): as a session lost under load, so the hand-off's own release cannot
   * reach that node. Sessions opened later (settle, verify) work.
   */
  sessionDiesAfterDrain?: string;
  private sessionsOpened = 0;
  /** HAProxy admin state per `<node> <backend>/<server>` (0 ready, 8 drain, 1 maint). */
  admin: Record<string, number> = {};
  /** HAProxy operational state forced by pgha per `<node> <backend>/<server>` (up/down). */
  health: Record<string, string> = {};
  /** ms after the POST: the old leader's PostgreSQL stops, the candidate takes the key, leaves recovery, the old one streams again. */
  timing = { oldDown: 30, key: 150, writable: 300, rejoin: 500 };
  /** When Patroni answers the POST (ms after it; it answers when the switchover is done). */
  answerMs = 600;
  /** The hand-off's bound (deps.handoffTimeoutMs). */
  handoffTimeoutMs = 3000;
  /** The leader's recovery probe gets no answer this many times before the POST (a slow login). */
  leaderProbeMisses = 0;
  /**
   * A worker dying mid-hand-off, per attempt: at that phase the attempt's heartbeats stop reaching
   * the server and none of its calls returns again (until the worker shuts down) — as when the
   * worker process is killed. Temporal then times the attempt out (heartbeat timeout) and retries.
   */
  deaths: Partial<Record<number, DeathPhase>> = {};
  private dead = new Set<number>();
  /** The attempts of the hand-off that ran, and what the ones that finished returned. */
  cutAttempts: number[] = [];
  cutResults: CutoverResult[] = [];
  /** The HAProxy admin states each finished hand-off attempt left behind (before verify). */
  adminAfterCut: Record<string, number>[] = [];

  /** The calling hand-off attempt dies now if `phase` is its death. */
  private maybeDie(phase: DeathPhase): void {
    const ctx = cutoverAttempt();
    if (!ctx || this.deaths[ctx.info.attempt] !== phase) return;
    this.dead.add(ctx.info.attempt);
    // Its heartbeats no longer reach the server (the worker is gone).
    (ctx as unknown as { heartbeatFn: () => void }).heartbeatFn = () => undefined;
  }
  /**
   * A dead attempt's call never returns (rejects only when the worker shuts down and cancels it),
   * except a call that was already on its way when the attempt died at phase `passes`.
   */
  private async gate(passes?: DeathPhase): Promise<void> {
    const ctx = cutoverAttempt();
    if (!ctx || !this.dead.has(ctx.info.attempt)) return;
    if (passes && this.deaths[ctx.info.attempt] === passes) return;
    // (an attempt cancelled before it got here — a compensation after the worker shut down — must
    // not wait for an 'abort' that already fired: under load that hung the file, and CI, for good)
    const signal = ctx.cancellationSignal;
    await new Promise((_, reject) => {
      const gone = () => reject(new Error('the worker is gone'));
      if (signal.aborted) gone();
      else signal.addEventListener('abort', gone, { once: true });
    });
  }

  leader(): string | undefined {
    return Object.keys(this.members).find((n) => this.members[n]!.role === 'leader');
  }

  handOff(to: string) {
    const old = this.leader();
    const at = (ms: number, fn: () => void) => setTimeout(fn, ms);
    const t = this.timing;
    // fast shutdown: PostgreSQL stops (no SQL, /primary 503), Patroni still holds the key
    if (old) at(t.oldDown, () => Object.assign(this.members[old]!, { up: false, writable: false }));
    if (this.behaviour === 'stall') {
      if (old) at(60, () => (this.members[old]!.role = 'replica'));
      return;
    }
    at(t.key, () => {
      if (old) this.members[old]!.role = 'replica';
      this.members[to]!.role = 'leader'; // takes the key: /primary 200, still in recovery
    });
    at(t.writable, () => {
      this.members[to]!.writable = true;
      this.timeline++;
    });
    if (old)
      at(t.rejoin, () => {
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
        await this.gate();
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
        await this.gate();
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
        await this.gate('drained-posted');
        this.posts.push(`switchover ${a.leader} -> ${a.candidate}`);
        if (this.behaviour === 'refuse')
          return {
            member: a.leader,
            url: '',
            status: 412,
            body: null,
            text: 'candidate name does not match',
          };
        if (this.behaviour !== 'ignore') this.handOff(a.candidate!);
        this.maybeDie('post-sent');
        await new Promise((r) => setTimeout(r, this.answerMs));
        await this.gate();
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
        await this.gate();
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

  sessions = async (): Promise<RuntimeSessions> => {
    this.maybeDie('before-post');
    await this.gate();
    const first = this.sessionsOpened++ === 0;
    return {
      sessions: ['haproxy1', 'haproxy2'].map((node) => ({
        node,
        command: async (cmd: string) => {
          await this.gate();
          const drained = Object.keys(this.admin).some(
            (k) => k.startsWith(`${node} `) && this.admin[k] === 8,
          );
          if (first && node === this.sessionDiesAfterDrain && drained && !/ state drain$/.test(cmd))
            throw new Error(`haproxy ${node}: runtime session closed`);
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
          const hl = cmd.match(/^set server (\w+)\/(\w+) health (up|down)$/);
          if (hl) this.health[`${node} ${hl[1]}/${hl[2]}`] = hl[3]!;
          this.commands.push(`${node}: ${cmd}`);
          if (hl && hl[1] === 'postgres_primary' && hl[3] === 'up') this.maybeDie('routed');
          return '';
        },
        close() {},
      })),
      close() {},
    };
  };

  activities() {
    const a = createSwitchoverActivities({
      patroni: this.patroni(),
      postgres: this.postgres(),
      etcd: this.etcd(),
      haproxyFor: async () => this.haproxy(),
      openRuntimeSessions: this.sessions,
      handoffTimeoutMs: this.handoffTimeoutMs,
      resumeWatchMs: 1500,
      afterDrain: () => {
        this.maybeDie('after-drain');
        this.maybeDie('drained-posted');
      },
      recoveryProbe: (c) => ({
        inRecovery: async () => {
          await this.gate();
          const name = nameOf(c.host) ?? '';
          const x = this.members[name]!;
          if (this.posts.length > 0 && name === this.leaderAtPost && x.up) this.maybeDie('old-stopping');
          if (name === this.candidateAtPost && x.role === 'leader' && !x.writable) this.maybeDie('promoting');
          await this.gate();
          if (!x.up && !(x.role === 'leader' && x.writable)) return null;
          if (this.posts.length === 0 && x.role === 'leader' && this.leaderProbeMisses > 0) {
            this.leaderProbeMisses--;
            return null;
          }
          return !(x.role === 'leader' && x.writable);
        },
        close() {},
      }),
    });
    return {
      ...a,
      switchoverCutover: async (args: Parameters<typeof a.switchoverCutover>[0]) => {
        this.cutAttempts.push(Context.current().info.attempt);
        const r = await a.switchoverCutover(args);
        this.cutResults.push(r);
        this.adminAfterCut.push({ ...this.admin });
        return r;
      },
    };
  }
  private get leaderAtPost(): string | undefined {
    return this.posts[0]?.match(/^switchover (\w+) ->/)?.[1];
  }
  private get candidateAtPost(): string | undefined {
    return this.posts[0]?.match(/-> (\w+)$/)?.[1];
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

void test('the leader does not answer its first two probes before the POST (a slow login): asked again, switched', async () => {
  const fake = new FakeCluster();
  fake.leaderProbeMisses = 2;
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.equal(fake.leaderProbeMisses, 0, 'both misses were seen');
  assert.equal(r.outcome, 'switched');
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103']);
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

void test('Patroni refuses and the hand-off cannot undo its drain on one HAProxy (its session died): the run settles HAProxy before it ends — nothing left drained, the leader never forced DOWN', async () => {
  const fake = new FakeCluster();
  fake.behaviour = 'refuse';
  fake.sessionDiesAfterDrain = 'haproxy2';
  await assert.rejects(run(fake, 'switchover', { candidate: 'pg103' }), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(errorMessage(err.cause), /switchover to pg103 did not happen: Patroni answered 412/);
    return true;
  });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103']);
  // what the hand-off itself left: haproxy2 still draining both (its release could not reach it)
  assert.equal(fake.adminAfterCut.length, 0, 'the hand-off failed: it returned nothing');
  assert.deepEqual(
    Object.entries(fake.admin).filter(([, v]) => v !== 0),
    [],
    `nothing left drained once the run ended: ${JSON.stringify(fake.admin)}`,
  );
  assert.ok(
    fake.commands.includes('haproxy2: set server postgres_primary/pg102 state ready'),
    'the leader drain lifted on haproxy2',
  );
  assert.ok(
    fake.commands.includes('haproxy2: set server postgres_primary/pg103 health down'),
    'the candidate back under its checks',
  );
  assert.ok(
    !fake.commands.some((c) => c.endsWith('postgres_primary/pg102 health down')),
    'the leader never forced DOWN',
  );
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

/** The end state every worker-death test wants: `to` leads, every HAProxy routes writes to it and not to `from`. */
function assertRoutedTo(fake: FakeCluster, to: string, from: string) {
  assert.equal(fake.leader(), to);
  for (const h of ['haproxy1', 'haproxy2']) {
    assert.equal(fake.health[`${h} postgres_primary/${to}`], 'up', `${h} routes writes to ${to}`);
    assert.equal(
      fake.health[`${h} postgres_primary/${from}`],
      'down',
      `${h} does not route writes to ${from}`,
    );
  }
  assert.ok(!fake.commands.some((c) => c.startsWith('MISROUTED')), fake.commands.join('\n'));
  assertNoneDrained(fake);
}

/**
 * No server left drained (or in maintenance): neither by the hand-off that returned — before
 * verify, which could fail before it looks (old leader not streaming) — nor at the end.
 */
function assertNoneDrained(fake: FakeCluster) {
  const forced = (a: Record<string, number>) => Object.entries(a).filter(([, v]) => v !== 0);
  assert.deepEqual(forced(fake.admin), [], 'no admin state left at the end');
  assert.ok(fake.adminAfterCut.length > 0, 'a hand-off attempt returned');
  assert.deepEqual(forced(fake.adminAfterCut.at(-1)!), [], 'no admin state left by the hand-off itself');
}

/**
 * A hand-off slower than a retry after a worker death (heartbeat timeout 4 s, the SDK's heartbeat
 * throttling up to 0.8 of it, the retry interval), so the retried attempt finds it under way.
 */
const slow = (fake: FakeCluster, t: FakeCluster['timing']) => {
  fake.timing = t;
  fake.answerMs = t.writable + 100;
  fake.handoffTimeoutMs = 40_000;
};

void test('worker dead before the POST (intent recorded): the retry watches, sees nothing happened, POSTs once and says so', async () => {
  const fake = new FakeCluster();
  fake.deaths = { 1: 'before-post' };
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.deepEqual(fake.cutAttempts, [1, 2]);
  assert.equal(r.outcome, 'switched');
  assert.match(
    fake.cutResults[0]!.resumed ?? '',
    /attempt 1 recorded its intent to switchover .* whether its POST went out is unknown; after watching \d+ ms nothing had happened \(pg102 leads on timeline 1, running, no switchover scheduled\): POSTed now \(attempt 2\)/,
  );
  assertRoutedTo(fake, 'pg103', 'pg102');
});

void test('worker dead right after the pre-POST drain, the POST not sent: the retry undoes the drain, POSTs once, nothing left drained', async () => {
  const fake = new FakeCluster();
  fake.deaths = { 1: 'after-drain' };
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.deepEqual(fake.cutAttempts, [1, 2]);
  assert.equal(r.outcome, 'switched');
  assert.match(
    fake.cutResults[0]!.resumed ?? '',
    /whether its POST went out is unknown.*POSTed now \(attempt 2\)/,
  );
  assertRoutedTo(fake, 'pg103', 'pg102');
});

void test('worker dead right after the pre-POST drain, its POST reached Patroni unrecorded: the retry finds it done, no second POST, nothing left drained', async () => {
  const fake = new FakeCluster();
  fake.deaths = { 1: 'drained-posted' };
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.deepEqual(fake.cutAttempts, [1, 2]);
  assert.equal(r.outcome, 'already-done');
  assert.match(fake.cutResults[0]!.resumed ?? '', /pg103 already led on timeline 2: routed, no POST/);
  assert.equal(r.timelineAfter, 2, 'one switchover: timeline +1');
  assertRoutedTo(fake, 'pg103', 'pg102');
});

for (const [phase, timing] of [
  ['post-sent', { oldDown: 30, key: 14_000, writable: 15_000, rejoin: 15_500 }],
  ['old-stopping', { oldDown: 30, key: 14_000, writable: 15_000, rejoin: 15_500 }],
  ['promoting', { oldDown: 30, key: 1000, writable: 15_000, rejoin: 15_500 }],
] as const) {
  void test(`worker dead ${phase === 'post-sent' ? 'right after the POST was sent' : phase === 'old-stopping' ? 'while the old leader stops' : 'while the candidate promotes'}: the retry watches the hand-off under way, routes it, no second POST`, async () => {
    const fake = new FakeCluster();
    slow(fake, timing);
    fake.deaths = { 1: phase };
    const r = await run(fake, 'switchover', { candidate: 'pg103' });
    assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
    assert.deepEqual(fake.cutAttempts, [1, 2]);
    assert.equal(r.outcome, 'already-done');
    assert.match(
      fake.cutResults[0]!.resumed ?? '',
      /attempt 1 recorded its intent to switchover .*; found the hand-off under way, watched it and routed writes to pg103 \d+ ms later; no POST$/,
    );
    assert.equal(r.timelineAfter, 2, 'one switchover: timeline +1');
    assertRoutedTo(fake, 'pg103', 'pg102');
  });
}

void test('worker dead after routing: the retry finds it done, routes again, no second POST', async () => {
  const fake = new FakeCluster();
  fake.deaths = { 1: 'routed' };
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.deepEqual(fake.cutAttempts, [1, 2]);
  assert.equal(r.outcome, 'already-done');
  assert.match(fake.cutResults[0]!.resumed ?? '', /pg103 already led on timeline 2: routed, no POST/);
  assertRoutedTo(fake, 'pg103', 'pg102');
});

void test('two workers dead in a row (after the POST, then while watching): the third attempt still knows, watches, no second POST', async () => {
  const fake = new FakeCluster();
  slow(fake, { oldDown: 30, key: 12_000, writable: 28_000, rejoin: 28_500 });
  fake.deaths = { 1: 'old-stopping', 2: 'promoting' };
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.deepEqual(fake.cutAttempts, [1, 2, 3]);
  assert.equal(r.outcome, 'already-done');
  assert.match(fake.cutResults[0]!.resumed ?? '', /attempt 1 recorded its intent/);
  assertRoutedTo(fake, 'pg103', 'pg102');
});

void test('Patroni answers late (11 s after the POST): the wait is heartbeated, one attempt, one POST', async () => {
  const fake = new FakeCluster();
  fake.answerMs = 11_000;
  const r = await run(fake, 'switchover', { candidate: 'pg103' });
  assert.deepEqual(fake.cutAttempts, [1], 'the hand-off was never timed out');
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103']);
  assert.equal(r.outcome, 'switched');
  assert.equal(r.patroni?.status, 200);
  assertRoutedTo(fake, 'pg103', 'pg102');
});

void test('an earlier attempt sent the POST and nothing happened (its answer lost): not sent again, a definite failure', async () => {
  const fake = new FakeCluster();
  fake.behaviour = 'ignore';
  fake.deaths = { 1: 'post-sent' };
  await assert.rejects(run(fake, 'switchover', { candidate: 'pg103' }), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(
      errorMessage(err.cause),
      /switchover to pg103 did not happen: attempt 1 recorded its intent .* and sent the POST at .*the cluster shows nothing of it \(pg102 leads on timeline 1, running, no switchover scheduled\).*Not sent again/,
    );
    return true;
  });
  assert.deepEqual(fake.posts, ['switchover pg102 -> pg103'], 'exactly one POST');
  assert.equal(fake.leader(), 'pg102');
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
    const res = (await h.result()) as HandoffReport;
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

/** A dry run: its result and the activity types its history scheduled. */
async function runDry(fake: FakeCluster, workflow: 'switchover' | 'failover', args: object) {
  const taskQueue = uniqueId('sw');
  const cluster = uniqueId('sw');
  const worker = await createTestWorker(env, { taskQueue, activities: fake.activities() });
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof switchover>(env.client, {
      workflow,
      args: [{ inventory: labInput(cluster), dryRun: true, ...args }] as Parameters<typeof switchover>,
      cluster,
      operation: workflow,
      taskQueue,
    });
    const result = (await h.result()) as unknown as DryRunReport;
    const history = await env.client.workflow.getHandle(h.workflowId).fetchHistory();
    const scheduled = (history.events ?? [])
      .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
      .filter((n): n is string => Boolean(n));
    return { result, scheduled };
  });
}

void test('--dry-run: only the read-only pre-check is scheduled; the plan names each step on its node; nothing touched', async () => {
  const fake = new FakeCluster();
  const { result, scheduled } = await runDry(fake, 'switchover', {
    candidate: 'pg104',
    approvalTimeout: '1h',
  });
  assert.deepEqual(scheduled, ['switchoverPrecheck']);
  assert.equal(result.outcome, 'dry-run');
  assert.equal(result.operation, 'switchover');
  assert.match(result.plan[0]!, /^pre-checks passed: leader pg102 on timeline 1; candidate pg104$/);
  assert.match(result.plan[1]!, /^gate switchover: wait up to 1h for pgha approve, then re-check$/);
  assert.match(
    result.plan[2]!,
    /^hand-off on pg104 \(CT 104\): POST \/switchover pg102 → pg104; pg102 cut in HAProxy haproxy1, haproxy2/,
  );
  assert.match(result.plan[3]!, /^verify: pg104 leads on timeline 2, pg102 rejoins/);
  assert.equal(result.plan.length, 4);
  assert.deepEqual(fake.posts, []);
  assert.deepEqual(fake.commands, []);
  assert.equal(fake.leader(), 'pg102');

  // failover: the same, and a refused pre-check is still a refusal (a dry run says no as the real one would).
  const f = await runDry(fake, 'failover', { candidate: 'pg103', force: true });
  assert.deepEqual(f.scheduled, ['switchoverPrecheck']);
  assert.match(f.result.plan.join('\n'), /POST \/failover pg102 → pg103/);
  assert.deepEqual(fake.posts, []);
  await assert.rejects(runDry(fake, 'failover', { candidate: 'pg103' }), WorkflowFailedError);
  assert.deepEqual(fake.commands, []);
});
