/**
 * activities/maintenance/ decisions over a fake cluster (Patroni REST, SQL, etcd answered from an
 * in-memory model): look before acting (a member restarted since the pre-check is not restarted
 * again; nothing pending → no POST), a replica counts as back only with a walsender newer than its
 * new postmaster, the plan's role is checked, pre-check refusals, config compared before a PATCH,
 * lowering a hot-standby parameter orders the leader first, reinit refuses the leader; a POST's
 * intent rides in the heartbeat details across a retry (exactly one POST), and a hanging POST
 * heartbeats.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { BEAT_EVERY_MS } from '../../activities/poll';
import { createMaintenanceActivities } from '../../activities/maintenance';
import type { MaintenanceDeps, RestartResult } from '../../activities/maintenance';
import type { PgConn, PgReplicationRow, PgSettingRow } from '../../activities/postgres';
import type { Inventory } from '../../runbooks/schema';
import { labInventory } from '../helpers/lab-inventory';

const inv: Inventory = labInventory();
const ipOf = (m: string) => inv.nodes.postgres.find((n) => n.hostname === m)!.ip;
const nameOf = (ip: string) => inv.nodes.postgres.find((n) => n.ip === ip)!.hostname;

interface FakeMember {
  role: 'master' | 'replica';
  state: string;
  start: string | null;
  pending?: boolean;
  /** When its current walsender (as a replica) started. */
  walsenderStart?: string;
}

function fake(
  opts: { paused?: boolean; quorum?: boolean; dcs?: Record<string, unknown>; settings?: PgSettingRow[] } = {},
) {
  const members: Record<string, FakeMember> = {
    pg102: { role: 'master', state: 'running', start: '2026-11-26 08:00:00+00:00' },
    pg103: {
      role: 'replica',
      state: 'running',
      start: '2026-11-26 08:00:01+00:00',
      walsenderStart: '2026-11-26T08:00:02Z',
    },
    pg104: {
      role: 'replica',
      state: 'running',
      start: '2026-11-26 08:00:02+00:00',
      walsenderStart: '2026-11-26T08:00:03Z',
    },
  };
  const calls: string[] = [];
  let replicationAsked = 0;
  /** What a POST /restart does to a member: a new postmaster; its walsender reconnects one look later. */
  const restart = (m: string) => {
    const fm = members[m]!;
    fm.start = '2026-11-26 09:00:00+00:00';
    fm.pending = false;
  };
  const deps = {
    etcd: {
      etcdCluster: async () => ({
        endpoints: [
          { endpoint: 'http://x:2379', healthy: opts.quorum !== false, error: 'refused', tookMs: 1 },
        ],
        members: null,
        leader: null,
        healthyCount: opts.quorum === false ? 1 : 3,
        quorum: opts.quorum !== false,
      }),
    },
    patroni: {
      patroniGetPatroni: async ({ target }: { target: { member: string } }) => {
        const m = members[target.member]!;
        return {
          status: 200,
          body: {
            role: m.role,
            state: m.state,
            postmaster_start_time: m.start ?? undefined,
            pending_restart: m.pending,
            timeline: 3,
          },
        };
      },
      patroniGetCluster: async () => ({
        status: 200,
        body: {
          pause: opts.paused,
          members: Object.entries(members).map(([name, m]) => ({
            name,
            role: m.role === 'master' ? 'leader' : 'replica',
            state: m.role === 'master' ? 'running' : 'streaming',
            timeline: 3,
          })),
        },
      }),
      patroniRestart: async ({
        target,
        role,
        restartPending,
      }: {
        target: { member: string };
        role?: string;
        restartPending?: boolean;
      }) => {
        calls.push(`POST /restart ${target.member} role=${role ?? '-'} pending=${restartPending ?? '-'}`);
        restart(target.member);
        return { status: 200, body: null, text: 'restarted successfully' };
      },
      patroniReinitialize: async ({ target }: { target: { member: string } }) => {
        calls.push(`POST /reinitialize ${target.member}`);
        return { status: 200, body: null, text: 'reinitialize started' };
      },
      patroniGetConfig: async () => ({ status: 200, body: opts.dcs ?? {} }),
      patroniPatchConfig: async ({ patch }: { patch: unknown }) => {
        calls.push(`PATCH /config ${JSON.stringify(patch)}`);
        return { status: 200, body: patch };
      },
    },
    postgres: {
      pgReplication: async (conn: PgConn): Promise<PgReplicationRow[]> => {
        replicationAsked++;
        if (nameOf(conn.host) !== 'pg102') return [];
        return Object.entries(members)
          .filter(([, m]) => m.role === 'replica' && m.start !== null)
          .map(([name, m]) => {
            // A restarted replica's walsender shows up one look after its restart.
            if (Date.parse(m.walsenderStart!) < Date.parse(m.start!)) {
              const stale = m.walsenderStart!;
              m.walsenderStart = new Date(Date.parse(m.start!) + 50).toISOString();
              return {
                applicationName: name,
                clientAddr: ipOf(name),
                state: 'streaming',
                syncState: 'async',
                sentLsn: null,
                replayLsn: null,
                replayLagBytes: 0,
                backendStart: stale,
              };
            }
            return {
              applicationName: name,
              clientAddr: ipOf(name),
              state: 'streaming',
              syncState: 'async',
              sentLsn: null,
              replayLsn: null,
              replayLagBytes: 0,
              backendStart: m.walsenderStart,
            };
          });
      },
      pgIdentity: async (conn: PgConn) => ({ inRecovery: members[nameOf(conn.host)]!.role !== 'master' }),
      pgSettings: async ({ names }: { names: string[] }) =>
        (opts.settings ?? []).filter((s) => names.includes(s.name)),
      pgWriteProbe: async () => ({ id: '1', serverAddr: null, clusterName: '' }),
    },
  } as unknown as MaintenanceDeps;
  return {
    acts: createMaintenanceActivities(deps),
    deps,
    members,
    calls,
    replicationAsked: () => replicationAsked,
  };
}

async function refusal(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ApplicationFailure, String(e));
    assert.equal(e.type, 'MaintenanceRefused');
    assert.match(e.message, re);
    return true;
  });
}

const before = (f: ReturnType<typeof fake>, m: string) => f.members[m]!.start;

void test('a member restarted since the pre-check is not restarted again: only waited for', async () => {
  const f = fake();
  const seen = before(f, 'pg103');
  f.members.pg103!.start = '2026-11-26 08:30:00+00:00'; // an earlier attempt restarted it
  const r = await f.acts.restartMember({
    inv,
    member: 'pg103',
    role: 'replica',
    leader: 'pg102',
    postmasterBefore: seen,
  });
  assert.equal(r.action, 'already-restarted');
  assert.deepEqual(f.calls, [], 'no POST');
});

void test('a member down right after the pre-check (restart in progress) is waited for, not POSTed', async () => {
  const f = fake();
  const seen = before(f, 'pg104');
  f.members.pg104!.start = null;
  setTimeout(() => (f.members.pg104!.start = '2026-11-26 09:30:00+00:00'), 300);
  const r = await f.acts.restartMember({
    inv,
    member: 'pg104',
    role: 'replica',
    leader: 'pg102',
    postmasterBefore: seen,
  });
  assert.equal(r.action, 'already-restarted');
  assert.equal(r.postmasterAfter, '2026-11-26 09:30:00+00:00');
  assert.deepEqual(f.calls, []);
});

void test('onlyIfPending with nothing pending: skipped, no POST', async () => {
  const f = fake();
  const r = await f.acts.restartMember({
    inv,
    member: 'pg104',
    role: 'replica',
    leader: 'pg102',
    postmasterBefore: before(f, 'pg104'),
    onlyIfPending: true,
  });
  assert.equal(r.action, 'skipped');
  assert.deepEqual(f.calls, []);
});

void test('a replica restart POSTs with its role, and counts it back only with a walsender newer than its new postmaster', async () => {
  const f = fake();
  f.members.pg103!.pending = true;
  const r = await f.acts.restartMember({
    inv,
    member: 'pg103',
    role: 'replica',
    leader: 'pg102',
    postmasterBefore: before(f, 'pg103'),
    onlyIfPending: true,
  });
  assert.deepEqual(f.calls, ['POST /restart pg103 role=replica pending=true']);
  assert.equal(r.action, 'restarted');
  assert.equal(r.postmasterAfter, '2026-11-26 09:00:00+00:00');
  assert.ok(f.replicationAsked() >= 2, 'the stale walsender row was not taken for the restarted replica');
});

void test('the plan said replica but it runs as primary now: refused, nothing restarted', async () => {
  const f = fake();
  await refusal(
    f.acts.restartMember({
      inv,
      member: 'pg102',
      role: 'replica',
      leader: 'pg103',
      postmasterBefore: before(f, 'pg102'),
    }),
    /pg102 runs as master, the plan expected replica: the cluster changed since the pre-check/,
  );
  assert.deepEqual(f.calls, []);
});

void test('pre-check: the snapshot, and refusals for no quorum, a paused cluster, a replica not streaming', async () => {
  const snap = await fake().acts.maintenancePrecheck({ inv });
  assert.equal(snap.leader, 'pg102');
  assert.deepEqual(
    snap.members.map((m) => [m.name, m.role, m.postmasterStartTime]),
    [
      ['pg102', 'leader', '2026-11-26 08:00:00+00:00'],
      ['pg103', 'replica', '2026-11-26 08:00:01+00:00'],
      ['pg104', 'replica', '2026-11-26 08:00:02+00:00'],
    ],
  );
  await refusal(
    fake({ quorum: false }).acts.maintenancePrecheck({ inv }),
    /etcd has no quorum: 1 of 1 members healthy/,
  );
  await refusal(
    fake({ paused: true }).acts.maintenancePrecheck({ inv }),
    /is paused \(Patroni maintenance mode\).*resume it first/,
  );
  const f = fake();
  f.members.pg104!.start = null; // no walsender for it
  await refusal(f.acts.maintenancePrecheck({ inv }), /pg104: not streaming from pg102.*Nothing was touched/);
  // The reinit target itself may be broken.
  assert.equal((await f.acts.maintenancePrecheck({ inv, allowUnhealthy: ['pg104'] })).leader, 'pg102');
});

const setting = (o: Partial<PgSettingRow> & Pick<PgSettingRow, 'name' | 'setting'>): PgSettingRow => ({
  unit: null,
  vartype: 'integer',
  context: 'user',
  enumvals: null,
  min_val: '1',
  max_val: '2147483647',
  pending_restart: false,
  ...o,
});

void test('configApply: compared with GET /config first (8192kB is 8MB): nothing PATCHed when all is set', async () => {
  const f = fake({
    dcs: { loop_wait: 10, postgresql: { parameters: { work_mem: '8192kB' } } },
    settings: [setting({ name: 'work_mem', setting: '8192', unit: 'kB' })],
  });
  const r = await f.acts.configApply({ inv, leader: 'pg102', set: { work_mem: '8MB', loop_wait: '10' } });
  assert.deepEqual(r.changed, []);
  assert.deepEqual(
    r.unchanged.map((u) => u.key),
    ['work_mem', 'loop_wait'],
  );
  assert.deepEqual(f.calls, []);
});

void test('configApply: only what differs is PATCHed; a parameter PostgreSQL does not know is refused', async () => {
  const f = fake({
    dcs: { loop_wait: 10 },
    settings: [setting({ name: 'max_connections', setting: '100', context: 'postmaster' })],
  });
  const r = await f.acts.configApply({
    inv,
    leader: 'pg102',
    set: { max_connections: '200', loop_wait: 10 },
  });
  assert.deepEqual(r.changed, [{ key: 'max_connections', from: null, to: '200', needsRestart: true }]);
  assert.equal(r.restartOrder, 'replicas-first');
  assert.deepEqual(f.calls, ['PATCH /config {"postgresql":{"parameters":{"max_connections":"200"}}}']);
  await refusal(
    fake().acts.configApply({ inv, leader: 'pg102', set: { shared_bufers: '1GB' } }),
    /knows no parameter shared_bufers \(not in pg_settings\)/,
  );
});

void test('lowering max_connections: the leader first; refused with a switchover before anything changes', async () => {
  const settings = [setting({ name: 'max_connections', setting: '200', context: 'postmaster' })];
  const r = await fake({ settings }).acts.configApply({
    inv,
    leader: 'pg102',
    set: { max_connections: '150' },
    restart: 'in-place',
  });
  assert.equal(r.restartOrder, 'leader-first');
  assert.match(r.orderReason ?? '', /lowering max_connections 200 → 150/);
  const f = fake({ settings });
  await refusal(
    f.acts.configApply({ inv, leader: 'pg102', set: { max_connections: '150' }, restart: 'switchover' }),
    /nothing was changed: lowering max_connections .* Use --restart in-place/,
  );
  assert.deepEqual(f.calls, []);
});

void test('reinitMember refuses the leader, naming the fix', async () => {
  const f = fake();
  await refusal(
    f.acts.reinitMember({ inv, member: 'pg102', leader: 'pg102', postmasterBefore: before(f, 'pg102') }),
    /pg102 is the leader: .*switch over first/,
  );
  assert.deepEqual(f.calls, []);
});

// ---- never POST twice: the intent rides in the heartbeat details across a retry ----

interface Beat {
  phase?: string;
  intents?: Record<string, { postmasterBefore: string | null; at: string }>;
}

/** Rejects once the attempt is cancelled (already, or later). */
function untilCancelled(signal: AbortSignal, reject: (e: Error) => void): void {
  if (signal.aborted) reject(new Error('cancelled'));
  else signal.addEventListener('abort', () => reject(new Error('cancelled')));
}

/** Runs `fn` as one activity attempt; `prior` is the last heartbeat of the attempt before it. */
function attempt(prior: unknown) {
  const env = new MockActivityEnvironment(
    prior === undefined ? { attempt: 1 } : { attempt: 2, heartbeatDetails: prior },
  );
  const beats: Beat[] = [];
  env.on('heartbeat', (d: Beat) => beats.push(d));
  return { env, beats };
}

void test('a retried restart whose first attempt timed out during the POST watches it, never POSTs again', async () => {
  const f = fake();
  const seen = before(f, 'pg103');
  const deps = f.deps;
  const realPost = deps.patroni.patroniRestart;
  // Attempt 1: the POST reaches Patroni, which is slow to restart; the worker stops answering and
  // the server times the attempt out (here: cancels it) before any answer.
  let posts = 0;
  deps.patroni.patroniRestart = (() => {
    posts++;
    const signal = Context.current().cancellationSignal;
    return new Promise((_, reject) => untilCancelled(signal, reject));
  }) as typeof realPost;
  const a1 = attempt(undefined);
  a1.env.on('heartbeat', (d: Beat) => {
    if (d.intents?.['restart:pg103']) a1.env.cancel();
  });
  await assert.rejects(
    a1.env.run(() =>
      f.acts.restartMember({
        inv,
        member: 'pg103',
        role: 'replica',
        leader: 'pg102',
        postmasterBefore: seen,
      }),
    ),
  );
  assert.equal(posts, 1);
  const last = a1.beats.at(-1)!;
  assert.deepEqual(
    last.intents?.['restart:pg103']?.postmasterBefore,
    seen,
    'the intent was heartbeated before the POST',
  );

  // Attempt 2: Patroni still runs the old postmaster (the restart not begun yet): the old check
  // (start time unchanged → POST) would restart it a second time.
  deps.patroni.patroniRestart = (async (a: Parameters<typeof realPost>[0]) => {
    posts++;
    return realPost(a);
  }) as typeof realPost;
  let looks = 0;
  const realGet = deps.patroni.patroniGetPatroni;
  deps.patroni.patroniGetPatroni = (async (a: Parameters<typeof realGet>[0]) => {
    if (a.target.member === 'pg103' && ++looks === 2) f.members.pg103!.start = '2026-11-26 09:10:00+00:00';
    return realGet(a);
  }) as typeof realGet;
  const a2 = attempt(last);
  const r: RestartResult = await a2.env.run(() =>
    f.acts.restartMember({ inv, member: 'pg103', role: 'replica', leader: 'pg102', postmasterBefore: seen }),
  );
  assert.equal(posts, 1, 'exactly one POST /restart over both attempts');
  assert.equal(r.action, 'already-restarted', 'the retry watched the restart, it did not POST');
  assert.equal(r.postmasterAfter, '2026-11-26 09:10:00+00:00');
  assert.ok(a2.beats.length > 0);
  for (const b of a2.beats)
    assert.ok(b.intents?.['restart:pg103'], `every later heartbeat carries the intent: ${JSON.stringify(b)}`);
});

void test('a POST /restart that hangs heartbeats through it, each beat carrying the intent', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const f = fake();
  const realPost = f.deps.patroni.patroniRestart;
  let answer!: () => void;
  f.deps.patroni.patroniRestart = ((a: Parameters<typeof realPost>[0]) =>
    new Promise((resolve) => (answer = () => resolve(realPost(a))))) as typeof realPost;
  const a = attempt(undefined);
  const p = a.env.run(() =>
    f.acts.restartMember({
      inv,
      member: 'pg104',
      role: 'replica',
      leader: 'pg102',
      postmasterBefore: before(f, 'pg104'),
    }),
  );
  while (!answer) await new Promise((r) => setImmediate(r));
  const atPost = a.beats.length;
  t.mock.timers.tick(BEAT_EVERY_MS * 3);
  const during = a.beats.slice(atPost);
  assert.equal(during.length, 3, 'one heartbeat per interval while the POST is unanswered');
  for (const b of during) {
    assert.equal(b.phase, 'POST /restart');
    assert.ok(b.intents?.['restart:pg104']);
  }
  answer();
  const r = (await p) as RestartResult;
  assert.equal(r.action, 'restarted');
});

void test('a retried reinit whose first attempt POSTed watches the re-clone, never POSTs again', async () => {
  const f = fake();
  const seen = before(f, 'pg104');
  const a1 = attempt(undefined);
  a1.env.on('heartbeat', (d: Beat) => {
    if (d.intents?.['reinit:pg104']) a1.env.cancel();
  });
  const realReinit = f.deps.patroni.patroniReinitialize;
  f.deps.patroni.patroniReinitialize = ((a: Parameters<typeof realReinit>[0]) => {
    const signal = Context.current().cancellationSignal;
    void realReinit(a); // recorded in f.calls: Patroni got it
    return new Promise((_, reject) => untilCancelled(signal, reject));
  }) as typeof realReinit;
  await assert.rejects(
    a1.env.run(() => f.acts.reinitMember({ inv, member: 'pg104', leader: 'pg102', postmasterBefore: seen })),
  );
  f.deps.patroni.patroniReinitialize = realReinit;
  // The re-clone has not visibly begun yet (same postmaster, running): only the intent says it was asked.
  setTimeout(() => (f.members.pg104!.start = '2026-11-26 09:20:00+00:00'), 300);
  const a2 = attempt(a1.beats.at(-1));
  const r: RestartResult = await a2.env.run(() =>
    f.acts.reinitMember({ inv, member: 'pg104', leader: 'pg102', postmasterBefore: seen }),
  );
  assert.deepEqual(f.calls, ['POST /reinitialize pg104'], 'exactly one POST /reinitialize');
  assert.equal(r.action, 'already-restarted', 'the retry watched the re-clone, it did not POST');
  assert.equal(r.postmasterAfter, '2026-11-26 09:20:00+00:00');
});
