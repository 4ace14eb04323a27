/**
 * rollingRestart, applyConfig and reinitReplica decisions on a real Temporal dev server with mocked
 * activities (the real thing on the lab: test/lab/maintenance.test.ts): replicas one at a time and
 * the leader last, only pending_restart members when asked, each restart a step with its node, a
 * failed member stops the run before the leader, refusals (unknown member, bad mode, a pre-check
 * that refuses, a non-DCS key, reinit of the leader) touch nothing, and the switchover path.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { ClusterSnapshot, MemberSnapshot, RestartResult } from '../../activities/maintenance';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import { progress } from '../../workflows/messages';
import type { RunbookProgress } from '../../workflows/messages';
import type { ReinitReport } from '../../workflows/reinit';
import type { DryRunReport } from '../../workflows/dry-run';
import type { ApplyConfigReport, RestartReport } from '../../workflows/rolling-restart';
import { errorMessage } from '../../workflows/steps';
import { repoRoot } from '../helpers/local-common';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

/** The lab inventory under a unique cluster name (its own lock), secrets as env refs (never read here). */
const inventory = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_RR_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

const member = (name: string, role: 'leader' | 'replica', pending = false): MemberSnapshot => ({
  name,
  role,
  state: 'running',
  timeline: 3,
  postmasterStartTime: `2026-11-26 08:00:0${name.slice(-1)}.000000+00:00`,
  pendingRestart: pending,
  lagBytes: role === 'leader' ? 0 : 128,
  streaming: role === 'leader' ? null : true,
});

const snapshot = (leader: string, pending: string[] = []): ClusterSnapshot => ({
  leader,
  timeline: 3,
  members: ['pg102', 'pg103', 'pg104'].map((n) =>
    member(n, n === leader ? 'leader' : 'replica', pending.includes(n)),
  ),
  etcd: { healthy: 3, total: 3 },
  checkedAt: new Date().toISOString(),
});

type Call = { activity: string; member?: string; args: Record<string, unknown> };

/** Mock maintenance activities recording every call; behaviour set per test. */
function mock(opts: {
  snap?: ClusterSnapshot;
  /** Pre-checks after the first (applyConfig's second look). */
  snapAfter?: ClusterSnapshot;
  precheckRefuses?: string;
  failRestartOf?: string;
  pendingAfterConfig?: string[];
  leaderFirst?: boolean;
}) {
  const calls: Call[] = [];
  let prechecks = 0;
  const restartResult = (a: {
    member: string;
    role: 'leader' | 'replica';
    postmasterBefore: string | null;
  }): RestartResult => ({
    member: a.member,
    role: a.role,
    action: 'restarted',
    postmasterBefore: a.postmasterBefore,
    postmasterAfter: '2026-11-26 09:00:00+00:00',
    lagBytes: 0,
    tookMs: 5,
  });
  const activities = {
    maintenancePrecheck: async (a: Record<string, unknown>) => {
      calls.push({ activity: 'maintenancePrecheck', args: a });
      if (opts.precheckRefuses) {
        throw ApplicationFailure.create({
          type: Failures.MaintenanceRefused,
          nonRetryable: true,
          message: opts.precheckRefuses,
        });
      }
      prechecks++;
      return prechecks > 1 && opts.snapAfter ? opts.snapAfter : (opts.snap ?? snapshot('pg102'));
    },
    restartMember: async (a: {
      member: string;
      role: 'leader' | 'replica';
      postmasterBefore: string | null;
      onlyIfPending?: boolean;
    }) => {
      calls.push({
        activity: 'restartMember',
        member: a.member,
        args: a as unknown as Record<string, unknown>,
      });
      if (a.member === opts.failRestartOf) {
        throw ApplicationFailure.create({
          type: 'MaintenanceFailed',
          nonRetryable: true,
          message: `timed out waiting for ${a.member} streaming again`,
        });
      }
      return restartResult(a);
    },
    configApply: async (a: { set: Record<string, unknown> }) => {
      calls.push({ activity: 'configApply', args: a });
      return {
        changed: Object.entries(a.set).map(([key, to]) => ({
          key,
          from: null,
          to,
          needsRestart: key === 'max_connections',
        })),
        unchanged: [],
        restartOrder: opts.leaderFirst ? 'leader-first' : 'replicas-first',
      };
    },
    configPreview: async (a: { set: Record<string, unknown> }) => {
      calls.push({ activity: 'configPreview', args: a });
      return {
        changed: Object.entries(a.set)
          .filter(([key]) => key !== 'work_mem')
          .map(([key, to]) => ({ key, from: 100, to, needsRestart: key === 'max_connections' })),
        unchanged: 'work_mem' in a.set ? [{ key: 'work_mem', value: a.set.work_mem }] : [],
        restartOrder: opts.leaderFirst ? 'leader-first' : 'replicas-first',
        ...(opts.leaderFirst ? { orderReason: 'lowering max_connections 100 → 50: ...' } : {}),
      };
    },
    configWaitApplied: async (a: Record<string, unknown>) => {
      calls.push({ activity: 'configWaitApplied', args: a });
      return ['pg102', 'pg103', 'pg104'].map((m) => ({
        member: m,
        pendingRestart: (opts.pendingAfterConfig ?? []).includes(m),
        settings: {},
      }));
    },
    reinitMember: async (a: { member: string; postmasterBefore: string | null }) => {
      calls.push({ activity: 'reinitMember', member: a.member, args: a });
      return restartResult({ ...a, role: 'replica' });
    },
    writeMarker: async (a: Record<string, unknown>) => {
      calls.push({ activity: 'writeMarker', args: a });
      return { id: '42' };
    },
    waitRow: async (a: { member: string; id: string }) => {
      calls.push({ activity: 'waitRow', member: a.member, args: a });
      return { found: true };
    },
    // The switchover runbook's activities (it runs as a child for --leader switchover).
    switchoverPrecheck: async (a: Record<string, unknown>) => {
      calls.push({ activity: 'switchoverPrecheck', args: a });
      const leader = (opts.snap ?? snapshot('pg102')).leader;
      const candidate = ['pg102', 'pg103', 'pg104'].find((n) => n !== leader)!;
      return {
        action: 'switchover',
        leader,
        candidate,
        timeline: 3,
        chosen: true,
        maxLagBytes: 1048576,
        members: [],
      };
    },
    switchoverCutover: async (a: { plan: { candidate: string } }) => {
      calls.push({ activity: 'switchoverCutover', member: a.plan.candidate, args: a });
      return { outcome: 'switched', leader: a.plan.candidate, timings: {}, routedOn: [] };
    },
    switchoverVerify: async (a: { plan: { candidate: string } }) => {
      calls.push({ activity: 'switchoverVerify', member: a.plan.candidate, args: a });
      return { leader: a.plan.candidate, timeline: 4, haproxy: [], members: [] };
    },
  };
  return { calls, activities };
}

const restarted = (calls: Call[]) => calls.filter((c) => c.activity === 'restartMember').map((c) => c.member);
const touched = (calls: Call[]) => calls.filter((c) => c.activity !== 'maintenancePrecheck');

async function run<T>(
  m: ReturnType<typeof mock>,
  workflow: 'rollingRestart' | 'applyConfig' | 'reinitReplica',
  input: Record<string, unknown>,
): Promise<{ result?: T; error?: { message: string; type?: string }; progress?: RunbookProgress }> {
  const taskQueue = uniqueId('rr');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(workflow, {
      taskQueue,
      workflowId: uniqueId(workflow),
      args: [input],
    });
    // The progress query needs the worker: asked before runUntil stops it.
    // (A run refused on its input fails before the runbook registers the query: no progress then.)
    const final = () => handle.query(progress).catch(() => undefined);
    try {
      const result = (await handle.result()) as T;
      return { result, progress: await final() };
    } catch (err) {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      let cause: unknown = err.cause;
      while (cause instanceof Error && !(cause instanceof ApplicationFailure) && cause.cause)
        cause = cause.cause;
      return {
        error: {
          message: errorMessage(cause),
          type: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined,
        },
        progress: await final(),
      };
    }
  });
}

void describe('rollingRestart', () => {
  void test('replicas one at a time, the leader last; each restart a step on its node', async () => {
    const m = mock({ snap: snapshot('pg103') });
    const { result, progress: p } = await run<RestartReport>(m, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
    });
    assert.ok(result, 'completed');
    assert.deepEqual(
      restarted(m.calls),
      ['pg102', 'pg104', 'pg103'],
      'replicas in inventory order, leader pg103 last',
    );
    const roles = m.calls.filter((c) => c.activity === 'restartMember').map((c) => c.args.role);
    assert.deepEqual(roles, ['replica', 'replica', 'leader']);
    // Each call carries the postmaster start time the pre-check saw (what makes a resumed restart idempotent).
    for (const c of m.calls.filter((x) => x.activity === 'restartMember')) {
      assert.equal(c.args.postmasterBefore, member(c.member!, 'replica').postmasterStartTime);
      assert.equal(c.args.onlyIfPending, false);
    }
    assert.deepEqual(
      result.members.map((r) => r.member),
      ['pg102', 'pg104', 'pg103'],
    );
    assert.equal(result.leaderAfter, 'pg103');
    assert.deepEqual(
      p!.steps.map((s) => [s.name, s.node ?? null, s.status]),
      [
        ['pre-check', null, 'completed'],
        ['restart pg102', 'pg102', 'completed'],
        ['restart pg104', 'pg104', 'completed'],
        ['restart pg103 (leader, in place)', 'pg103', 'completed'],
      ],
    );
  });

  void test('onlyPendingRestart restarts only members with pending_restart, still leader last', async () => {
    const m = mock({ snap: snapshot('pg102', ['pg102', 'pg104']) });
    const { result } = await run<RestartReport>(m, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
      onlyPendingRestart: true,
    });
    assert.ok(result);
    assert.deepEqual(restarted(m.calls), ['pg104', 'pg102']);
    assert.ok(
      m.calls.filter((c) => c.activity === 'restartMember').every((c) => c.args.onlyIfPending === true),
    );
  });

  void test('members: only those named, in replicas-then-leader order whatever order they were given', async () => {
    const m = mock({ snap: snapshot('pg102') });
    await run<RestartReport>(m, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
      members: ['pg102', 'pg104'],
    });
    assert.deepEqual(restarted(m.calls), ['pg104', 'pg102']);
  });

  void test('a replica that does not come back stops the run: the leader is not touched', async () => {
    const m = mock({ snap: snapshot('pg102'), failRestartOf: 'pg103' });
    const { error, progress: p } = await run(m, 'rollingRestart', { inventory: inventory(uniqueId('c')) });
    assert.equal(error?.type, 'MaintenanceFailed');
    assert.match(error!.message, /pg103 streaming again/);
    assert.deepEqual(restarted(m.calls), ['pg103'], 'nothing after the failed member');
    assert.equal(p?.state, 'failed');
    assert.equal(p!.steps.find((s) => s.name === 'restart pg103')?.status, 'failed');
  });

  void test('refusals touch nothing: unknown member, bad leader mode, a pre-check that refuses', async () => {
    let m = mock({});
    let r = await run(m, 'rollingRestart', { inventory: inventory(uniqueId('c')), members: ['pg999'] });
    assert.equal(r.error?.type, Failures.InvalidInput);
    assert.match(r.error!.message, /pg999 not in cluster .*\(its members: pg102, pg103, pg104\)/);
    assert.equal(m.calls.length, 0);

    m = mock({});
    r = await run(m, 'rollingRestart', { inventory: inventory(uniqueId('c')), leader: 'sideways' });
    assert.equal(r.error?.type, Failures.InvalidInput);
    assert.match(r.error!.message, /leader "sideways" is invalid: use switchover, in-place/);
    assert.equal(m.calls.length, 0);

    m = mock({ precheckRefuses: 'etcd has no quorum: 1 of 3 members healthy; nothing was touched' });
    r = await run(m, 'rollingRestart', { inventory: inventory(uniqueId('c')) });
    assert.equal(r.error?.type, Failures.MaintenanceRefused);
    assert.match(r.error!.message, /etcd has no quorum/);
    assert.deepEqual(touched(m.calls), []);
  });

  void test('leader through a switchover: replicas first, then the switchover runbook as a child under this lock, then the old leader as a replica', async () => {
    const m = mock({ snap: snapshot('pg102') });
    const { result, error } = await run<{ leaderAfter?: string }>(m, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
      leader: 'switchover',
    });
    assert.equal(error, undefined, JSON.stringify(error));
    assert.equal(result?.leaderAfter, 'pg103');
    assert.deepEqual(
      touched(m.calls).map((c) => `${c.activity}${c.member ? ` ${c.member}` : ''}`),
      [
        'restartMember pg103',
        'restartMember pg104',
        'switchoverPrecheck',
        'switchoverCutover pg103',
        'switchoverVerify pg103',
        'restartMember pg102',
      ],
    );
    const last = m.calls[m.calls.length - 1]!;
    assert.equal(last.args.role, 'replica', 'the old leader is restarted as a replica');
    assert.equal(last.args.leader, 'pg103');
  });
});

void describe('--dry-run', () => {
  const steps = (r: DryRunReport) => r.plan.map((l) => l.split(':')[0]);

  void test('rollingRestart: only the read-only pre-check runs; the plan is the real order, member by member', async () => {
    const m = mock({ snap: snapshot('pg103') });
    const { result } = await run<DryRunReport>(m, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
      dryRun: true,
    });
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['maintenancePrecheck'],
    );
    assert.equal(result?.outcome, 'dry-run');
    assert.equal(result.operation, 'restart');
    assert.deepEqual(steps(result), [
      'pre-check passed',
      'restart pg102 (CT 102) (replica)',
      'restart pg104 (CT 104) (replica)',
      'restart pg103 (CT 103) (leader, in place)',
    ]);
    // Through a switchover: no child workflow is started either (its activities never run).
    const s = mock({ snap: snapshot('pg102', ['pg102', 'pg104']) });
    const sw = await run<DryRunReport>(s, 'rollingRestart', {
      inventory: inventory(uniqueId('c')),
      leader: 'switchover',
      onlyPendingRestart: true,
      dryRun: true,
    });
    assert.deepEqual(
      s.calls.map((c) => c.activity),
      ['maintenancePrecheck'],
    );
    assert.deepEqual(steps(sw.result!), [
      'pre-check passed',
      'restart pg104 (CT 104) (replica)',
      'switchover from pg102',
      'restart pg102 (CT 102) (old leader, as a replica)',
    ]);
  });

  void test('applyConfig: the pre-check and the read-only comparison only; what would change, then the restarts in order', async () => {
    const m = mock({ snap: snapshot('pg102') });
    const { result } = await run<DryRunReport>(m, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { max_connections: 200, work_mem: '8MB' },
      restart: 'in-place',
      dryRun: true,
    });
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['maintenancePrecheck', 'configPreview'],
    );
    assert.equal(result?.operation, 'config');
    assert.deepEqual(steps(result), [
      'pre-check passed',
      'patch config on leader pg102 (CT 102)',
      'wait picked up',
      'restart pg103 (CT 103) (replica)',
      'restart pg104 (CT 104) (replica)',
      'restart pg102 (CT 102) (leader, in place)',
      'verify',
    ]);
    assert.match(result.plan[1]!, /max_connections 100 → 200 \(needs a restart\); unchanged: work_mem$/);
    // Lowering a hot-standby parameter: the leader first, as the real run would.
    const l = mock({ snap: snapshot('pg102'), leaderFirst: true });
    const low = await run<DryRunReport>(l, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { max_connections: 50 },
      restart: 'in-place',
      dryRun: true,
    });
    assert.deepEqual(steps(low.result!).slice(3, 7), [
      'order',
      'restart pg102 (CT 102) (leader, in place)',
      'restart pg103 (CT 103) (replica)',
      'restart pg104 (CT 104) (replica)',
    ]);
    // Nothing differs: the plan says so and stops there.
    const same = mock({ snap: snapshot('pg102') });
    const none = await run<DryRunReport>(same, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { work_mem: '8MB' },
      restart: 'in-place',
      dryRun: true,
    });
    assert.deepEqual(steps(none.result!), ['pre-check passed', 'nothing to change']);
  });
});

void describe('applyConfig', () => {
  void test('a key that is not a DCS setting is refused before anything runs', async () => {
    for (const [key, why] of [
      ['listen_addresses', /cannot be set cluster-wide/],
      ['data_dir', /not a dynamic \(DCS\) setting/],
      ['postgresql.bogus', /not a DCS key under postgresql/],
      ['Bad-Name', /not a PostgreSQL parameter name/],
    ] as const) {
      const m = mock({});
      const r = await run(m, 'applyConfig', {
        inventory: inventory(uniqueId('c')),
        set: { [key]: '1' },
        restart: 'in-place',
      });
      assert.equal(r.error?.type, Failures.InvalidConfigKey, key);
      assert.match(r.error!.message, why);
      assert.equal(m.calls.length, 0, key);
    }
  });

  void test('restart: none changes the config and reports who is pending, restarting nobody', async () => {
    const m = mock({ pendingAfterConfig: ['pg102', 'pg103', 'pg104'] });
    const { result } = await run<ApplyConfigReport>(m, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { max_connections: '120' },
      restart: 'none',
    });
    assert.ok(result);
    assert.deepEqual(result.pendingRestart, ['pg102', 'pg103', 'pg104']);
    assert.deepEqual(result.restarted, []);
    assert.deepEqual(restarted(m.calls), []);
    assert.deepEqual(
      result.changed.map((c) => c.key),
      ['max_connections'],
    );
  });

  void test('restart in place: PATCH, wait, then only the pending members, replicas first, leader last', async () => {
    const m = mock({
      snap: snapshot('pg104'),
      snapAfter: snapshot('pg104', ['pg104', 'pg102']),
      pendingAfterConfig: ['pg104', 'pg102'],
    });
    const { result } = await run<ApplyConfigReport>(m, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { max_connections: '120', work_mem: '8MB' },
      restart: 'in-place',
    });
    assert.ok(result);
    assert.deepEqual(
      m.calls.map((c) => c.activity + (c.member ? ` ${c.member}` : '')),
      [
        'maintenancePrecheck',
        'configApply',
        'configWaitApplied',
        'maintenancePrecheck',
        'restartMember pg102',
        'restartMember pg104',
        'configWaitApplied',
      ],
    );
    assert.equal(
      m.calls[m.calls.length - 1]!.args.running,
      true,
      'the last look requires the values running',
    );
    assert.deepEqual(result.restarted, ['pg102', 'pg104']);
    assert.equal(m.calls.find((c) => c.member === 'pg104')?.args.role, 'leader');
  });

  void test('lowering a hot-standby parameter: the leader first (in place), then the replicas unconditionally', async () => {
    const m = mock({
      snap: snapshot('pg103'),
      snapAfter: snapshot('pg103', ['pg102', 'pg103', 'pg104']),
      pendingAfterConfig: ['pg102', 'pg103', 'pg104'],
      leaderFirst: true,
    });
    const { result } = await run<ApplyConfigReport>(m, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { max_connections: '90' },
      restart: 'in-place',
    });
    assert.ok(result);
    assert.equal(result.restartOrder, 'leader-first');
    assert.deepEqual(restarted(m.calls), ['pg103', 'pg102', 'pg104']);
    const calls = m.calls.filter((c) => c.activity === 'restartMember');
    assert.deepEqual(
      calls.map((c) => [c.args.role, c.args.onlyIfPending]),
      [
        ['leader', true],
        ['replica', false],
        ['replica', false],
      ],
    );
  });

  void test('nothing pending after the change: no restart step at all', async () => {
    const m = mock({ pendingAfterConfig: [] });
    const { result } = await run<ApplyConfigReport>(m, 'applyConfig', {
      inventory: inventory(uniqueId('c')),
      set: { work_mem: '8MB' },
      restart: 'in-place',
    });
    assert.deepEqual(result?.restarted, []);
    assert.equal(m.calls.filter((c) => c.activity === 'maintenancePrecheck').length, 1);
  });
});

void describe('reinitReplica', () => {
  void test('pre-check tolerating the target, a marker row, reinitialize, the row found on the replica', async () => {
    const m = mock({ snap: snapshot('pg102') });
    const { result } = await run<ReinitReport>(m, 'reinitReplica', {
      inventory: inventory(uniqueId('c')),
      member: 'pg104',
    });
    assert.ok(result);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['maintenancePrecheck', 'writeMarker', 'reinitMember', 'waitRow'],
    );
    assert.deepEqual(m.calls[0]!.args.allowUnhealthy, ['pg104']);
    assert.equal(m.calls[2]!.args.postmasterBefore, member('pg104', 'replica').postmasterStartTime);
    assert.deepEqual(m.calls[3]!.args, { inv: m.calls[3]!.args.inv, member: 'pg104', id: '42' });
    assert.equal(result.markerRow, '42');
  });

  void test('--dry-run: only the read-only pre-check runs; the plan names each step on its node', async () => {
    const m = mock({ snap: snapshot('pg102') });
    const { result } = await run<DryRunReport>(m, 'reinitReplica', {
      inventory: inventory(uniqueId('c')),
      member: 'pg104',
      dryRun: true,
    });
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['maintenancePrecheck'],
    );
    assert.equal(result?.outcome, 'dry-run');
    assert.deepEqual(
      result.plan.map((l) => l.split(':')[0]),
      ['pre-check passed', 'marker row', 'reinitialize pg104 (CT 104)', 'marker row on the replica'],
    );
    assert.match(result.plan[2]!, /cloned again from pg102/);
    // The leader is refused in a dry run as in a real one.
    const l = mock({ snap: snapshot('pg104') });
    const r = await run(l, 'reinitReplica', {
      inventory: inventory(uniqueId('c')),
      member: 'pg104',
      dryRun: true,
    });
    assert.equal(r.error?.type, Failures.MaintenanceRefused);
    assert.deepEqual(touched(l.calls), []);
  });

  void test('refuses the leader (naming the fix) and an unknown member, touching nothing', async () => {
    let m = mock({ snap: snapshot('pg103') });
    let r = await run(m, 'reinitReplica', { inventory: inventory(uniqueId('c')), member: 'pg103' });
    assert.equal(r.error?.type, Failures.MaintenanceRefused);
    assert.match(
      r.error!.message,
      /pg103 is the leader.*pgha switchover --cluster FILE --to pg102.*pgha reinit --member pg103/,
    );
    assert.deepEqual(touched(m.calls), []);

    m = mock({});
    r = await run(m, 'reinitReplica', { inventory: inventory(uniqueId('c')), member: 'pg999' });
    assert.equal(r.error?.type, Failures.InvalidInput);
    assert.match(r.error!.message, /"pg999" is not in cluster .*members: pg102, pg103, pg104/);
    assert.equal(m.calls.length, 0);
  });
});
