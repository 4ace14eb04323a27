/**
 * The etcd runbooks' decisions on a real Temporal dev server with mocked activities (the real thing
 * on the lab: test/lab/etcd.test.ts): followers first and the leader last, each with the
 * InvocationID the pre-check saw; only the members asked for; a refusal or a failed member stops the
 * run before the leader; maintain compacts once, then defragments the leader last (or only reports);
 * a snapshot is taken on a follower under a name from the run's start; the DCS clean deletes only
 * after its approval gate, and a rejection deletes nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type {
  EtcdClusterState,
  EtcdHealthReport,
  EtcdMemberState,
  EtcdReplacePlan,
} from '../../activities/etcd-ops';
import {
  etcdMaintainScheduleId,
  listSchedules,
  upsertBackupSchedule,
  upsertEtcdMaintainSchedule,
} from '../../clients/schedules';
import type { EtcdMaintainScheduleMemo } from '../../clients/schedules';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import { approve, progress } from '../../workflows/messages';
import type { RunbookProgress } from '../../workflows/messages';
import type { DryRunReport } from '../../workflows/dry-run';
import type { EtcdMaintainReport, EtcdRestartReport } from '../../workflows/etcd';
import { errorMessage } from '../../workflows/steps';
import { repoRoot, waitFor } from '../helpers/local-common';
import { createTestWorker, eventually, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const inventory = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_ETCD_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

const memberState = (name: string, leader: string): EtcdMemberState => ({
  name,
  vmid: 100,
  endpoint: `http://10.213.50.5${name.slice(-1)}:2379`,
  id: `a${name.slice(-1)}`,
  healthy: true,
  isLeader: name === leader,
  raftIndex: '100',
  dbSizeBytes: 1000,
  alarms: [],
  invocation: `inv-${name}`,
});
const state = (leader: string): EtcdClusterState => ({
  members: ['etcd1', 'etcd2', 'etcd3'].map((n) => memberState(n, leader)),
  leader,
  healthyCount: 3,
});
const health = (leader: string): EtcdHealthReport => ({
  leader,
  healthy: 3,
  total: 3,
  quotaBytes: 2 ** 31,
  members: ['etcd1', 'etcd2', 'etcd3'].map((n) => ({
    member: n,
    healthy: true,
    isLeader: n === leader,
    dbSizeBytes: 1000,
    alarms: [],
  })),
  alarms: [],
  warnings: [],
});

type Call = { activity: string; args: Record<string, unknown> };
const refused = (message: string) =>
  ApplicationFailure.create({ type: Failures.EtcdRefused, nonRetryable: true, message });

function mock(opts: {
  leader?: string;
  precheckRefuses?: string;
  failRestartOf?: string;
  patroniRuns?: boolean;
}) {
  const calls: Call[] = [];
  const leader = opts.leader ?? 'etcd2';
  const rec = (activity: string, args: unknown) =>
    calls.push({ activity, args: args as Record<string, unknown> });
  const activities = {
    etcdPrecheck: async (a: unknown) => {
      rec('etcdPrecheck', a);
      if (opts.precheckRefuses) throw refused(opts.precheckRefuses);
      return state(leader);
    },
    etcdRestartMember: async (a: { member: string; invocationBefore: string | null }) => {
      rec('etcdRestartMember', a);
      if (a.member === opts.failRestartOf) {
        throw ApplicationFailure.create({
          type: Failures.EtcdFailed,
          nonRetryable: true,
          message: `${a.member} did not come back`,
        });
      }
      return {
        member: a.member,
        action: 'restarted',
        leaderMovedTo: a.member === leader ? 'etcd1' : undefined,
        invocationBefore: a.invocationBefore,
        invocationAfter: `new-${a.member}`,
        raftIndex: '120',
        leaderRaftIndex: '120',
        leaderAfter: a.member === leader ? 'etcd1' : leader,
        tookMs: 5,
      };
    },
    etcdHealthReport: async (a: unknown) => {
      rec('etcdHealthReport', a);
      return health(leader);
    },
    etcdCompact: async (a: unknown) => {
      rec('etcdCompact', a);
      return { revision: '77', compacted: true };
    },
    etcdDefragMember: async (a: { member: string }) => {
      rec('etcdDefragMember', a);
      return { member: a.member, wasLeader: a.member === leader, sizeBefore: 1000, sizeAfter: 10, tookMs: 1 };
    },
    etcdSnapshotSave: async (a: { member: string; name: string }) => {
      rec('etcdSnapshotSave', a);
      return {
        member: a.member,
        path: `/x/${a.name}`,
        sha256: 'ab',
        created: true,
        removed: [],
        kept: [a.name],
      };
    },
    dcsCleanCheck: async (a: unknown) => {
      rec('dcsCleanCheck', a);
      if (opts.patroniRuns) throw refused('Patroni runs on pg102: nothing was deleted');
      return { prefix: '/patroni/postgres/', keys: ['/patroni/postgres/leader'], members: [] };
    },
    dcsCleanDelete: async (a: unknown) => {
      rec('dcsCleanDelete', a);
      return { prefix: '/patroni/postgres/', deleted: 1, left: 0 };
    },
  };
  return { calls, activities };
}

const named = (calls: Call[], activity: string) =>
  calls.filter((c) => c.activity === activity).map((c) => c.args.member);

async function run<T>(
  m: { activities: object },
  workflow: string,
  input: Record<string, unknown>,
  during?: (h: WorkflowHandle) => Promise<void>,
): Promise<{ result?: T; error?: { message: string; type?: string }; progress?: RunbookProgress }> {
  const taskQueue = uniqueId('etcd');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(workflow, {
      taskQueue,
      workflowId: uniqueId(workflow),
      args: [input],
    });
    const final = () => handle.query(progress).catch(() => undefined);
    try {
      if (during) await during(handle);
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

void describe('etcdRestart', () => {
  void test('followers in inventory order, the leader last; each with the InvocationID the pre-check saw', async () => {
    const m = mock({ leader: 'etcd1' });
    const { result, progress: p } = await run<EtcdRestartReport>(m, 'etcdRestart', {
      inventory: inventory(uniqueId('c')),
    });
    assert.ok(result);
    assert.deepEqual(named(m.calls, 'etcdRestartMember'), ['etcd2', 'etcd3', 'etcd1']);
    for (const c of m.calls.filter((x) => x.activity === 'etcdRestartMember')) {
      assert.equal(c.args.invocationBefore, `inv-${String(c.args.member)}`);
    }
    assert.equal(result.leaderBefore, 'etcd1');
    assert.deepEqual(
      p!.steps.map((s) => [s.name, s.node ?? null, s.status]),
      [
        ['pre-check', null, 'completed'],
        ['restart etcd2', 'etcd2', 'completed'],
        ['restart etcd3', 'etcd3', 'completed'],
        ['restart etcd1 (leader, after move-leader)', 'etcd1', 'completed'],
      ],
    );
  });

  void test('only the members asked for, the leader still last', async () => {
    const m = mock({ leader: 'etcd3' });
    const { result } = await run<EtcdRestartReport>(m, 'etcdRestart', {
      inventory: inventory(uniqueId('c')),
      members: ['etcd3', 'etcd1'],
    });
    assert.ok(result);
    assert.deepEqual(named(m.calls, 'etcdRestartMember'), ['etcd1', 'etcd3']);
  });

  void test('an unknown member is refused before anything runs, naming the members', async () => {
    const m = mock({});
    const { error } = await run(m, 'etcdRestart', {
      inventory: inventory(uniqueId('c')),
      members: ['etcd9'],
    });
    assert.equal(error?.type, Failures.InvalidInput);
    assert.match(
      error!.message,
      /etcd9 not etcd members of cluster .* \(its etcd members: etcd1, etcd2, etcd3\)/,
    );
    assert.deepEqual(m.calls, []);
  });

  void test('a refusing pre-check restarts nothing', async () => {
    const m = mock({ precheckRefuses: 'etcd of cluster x is not healthy: etcd3: unavailable' });
    const { error } = await run(m, 'etcdRestart', { inventory: inventory(uniqueId('c')) });
    assert.equal(error?.type, Failures.EtcdRefused);
    assert.deepEqual(named(m.calls, 'etcdRestartMember'), []);
  });

  void test('a member that does not come back stops the run before the leader', async () => {
    const m = mock({ leader: 'etcd3', failRestartOf: 'etcd1' });
    const { error, progress: p } = await run(m, 'etcdRestart', { inventory: inventory(uniqueId('c')) });
    assert.equal(error?.type, Failures.EtcdFailed);
    assert.deepEqual(named(m.calls, 'etcdRestartMember'), ['etcd1']);
    assert.equal(p!.steps.find((s) => s.name === 'restart etcd1')?.status, 'failed');
  });
});

void describe('etcdMaintain', () => {
  void test('health, pre-check, one compaction, defragmentation one at a time with the leader last, health after', async () => {
    const m = mock({ leader: 'etcd2' });
    const { result } = await run<EtcdMaintainReport>(m, 'etcdMaintain', {
      inventory: inventory(uniqueId('c')),
    });
    assert.ok(result);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      [
        'etcdHealthReport',
        'etcdPrecheck',
        'etcdCompact',
        'etcdDefragMember',
        'etcdDefragMember',
        'etcdDefragMember',
        'etcdHealthReport',
      ],
    );
    assert.deepEqual(named(m.calls, 'etcdDefragMember'), ['etcd1', 'etcd3', 'etcd2']);
    assert.equal(m.calls.find((c) => c.activity === 'etcdPrecheck')!.args.allowAlarms, true);
    assert.equal(result.compaction?.revision, '77');
  });

  void test('on a Temporal Schedule: SKIP, catch-up, pause on failure; a trigger runs one maintenance; listed beside backups', async () => {
    const m = mock({ leader: 'etcd2' });
    const taskQueue = uniqueId('etcd-sched');
    const cluster = uniqueId('es');
    const o = { cluster, inventory: inventory(cluster), cron: '0 4 * * 0', taskQueue, operator: 'bob' };
    const { handle, created } = await upsertEtcdMaintainSchedule(env.client, o);
    assert.equal(created, true);
    assert.equal(handle.scheduleId, etcdMaintainScheduleId(cluster));
    const d = await handle.describe();
    assert.equal(d.policies.overlap, 'SKIP');
    assert.equal(d.policies.pauseOnFailure, true);
    assert.equal(d.policies.catchupWindow, 3600_000);
    const memo = d.memo as unknown as EtcdMaintainScheduleMemo;
    assert.deepEqual([memo.pgha, memo.cron, memo.by], ['etcd-maintain-schedule', '0 4 * * 0', 'bob']);
    assert.match(d.state.note ?? '', /etcd maintenance .* at '0 4 \* \* 0'/);
    await assert.rejects(
      upsertEtcdMaintainSchedule(env.client, { ...o, cron: '0 4 * *' }),
      /--cron "0 4 \* \*": expected five cron fields/,
    );
    // listed with the cluster's backup schedules, each with its own memo
    const backup = await upsertBackupSchedule(env.client, { ...o, cron: '0 3 * * *' });
    assert.deepEqual(
      (await listSchedules(env.client, cluster)).map((s) => [s.scheduleId, s.memo.pgha]),
      [
        [backup.handle.scheduleId, 'backup-schedule'],
        [handle.scheduleId, 'etcd-maintain-schedule'],
      ],
    );
    await backup.handle.delete();

    const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
    await worker.runUntil(async () => {
      await handle.trigger(ScheduleOverlapPolicy.SKIP);
      const ran = await eventually(
        'the triggered maintenance run',
        async () => (await handle.describe()).info.recentActions,
        (a) => a.length === 1,
      );
      const wf = ran[0]!.action.workflow;
      assert.match(wf.workflowId, new RegExp(`^etcd-maintain-${cluster}-`));
      const r = (await env.client.workflow
        .getHandle(wf.workflowId, wf.firstExecutionRunId)
        .result()) as EtcdMaintainReport;
      assert.equal(r.compaction?.revision, '77');
    });
    assert.deepEqual(named(m.calls, 'etcdDefragMember'), ['etcd1', 'etcd3', 'etcd2']);
    await handle.delete();
    await assert.rejects(handle.describe(), ScheduleNotFoundError);
  });

  void test('defrag: false only reports', async () => {
    const m = mock({});
    const { result } = await run<EtcdMaintainReport>(m, 'etcdMaintain', {
      inventory: inventory(uniqueId('c')),
      defrag: false,
    });
    assert.ok(result);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['etcdHealthReport', 'etcdHealthReport'],
    );
    assert.deepEqual(result.defrag, []);
  });
});

void describe('etcdSnapshot', () => {
  void test('on a healthy follower, named after the run start', async () => {
    const m = mock({ leader: 'etcd1' });
    const { result } = await run<{ member: string }>(m, 'etcdSnapshot', {
      inventory: inventory('snapc'),
      keep: 3,
    });
    assert.ok(result);
    const c = m.calls.find((x) => x.activity === 'etcdSnapshotSave')!;
    assert.equal(c.args.member, 'etcd2');
    assert.equal(c.args.keep, 3);
    assert.match(String(c.args.name), /^etcd-snapc-\d{8}T\d{6}Z\.db$/);
  });

  void test('keep 0 is refused before anything runs', async () => {
    const m = mock({});
    const { error } = await run(m, 'etcdSnapshot', { inventory: inventory(uniqueId('c')), keep: 0 });
    assert.equal(error?.type, Failures.InvalidInput);
    assert.match(error!.message, /^keep 0/);
    assert.deepEqual(m.calls, []);
  });
});

void describe('patroniDcsClean', () => {
  const gateWaiting = (h: WorkflowHandle) =>
    waitFor('the before-delete gate waiting', 20_000, async () =>
      (await h.query(progress)).steps.some((s) => s.name === 'before-delete' && s.status === 'waiting'),
    );

  void test('deletes only after the approval', async () => {
    const m = mock({});
    const { result } = await run<{ approvedBy: string }>(
      m,
      'patroniDcsClean',
      { inventory: inventory(uniqueId('c')) },
      async (h) => {
        await gateWaiting(h);
        assert.deepEqual(
          m.calls.map((c) => c.activity),
          ['dcsCleanCheck'],
          'nothing deleted before the approval',
        );
        await h.executeUpdate(approve, { args: [{ gate: 'before-delete', approver: 'alice' }] });
      },
    );
    assert.equal(result?.approvedBy, 'alice');
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['dcsCleanCheck', 'dcsCleanDelete'],
    );
  });

  void test('a rejection deletes nothing', async () => {
    const m = mock({});
    const { error } = await run(m, 'patroniDcsClean', { inventory: inventory(uniqueId('c')) }, async (h) => {
      await gateWaiting(h);
      await h.executeUpdate(approve, {
        args: [{ gate: 'before-delete', approver: 'bob', decision: 'reject' }],
      });
    });
    assert.equal(error?.type, Failures.ApprovalRejected);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['dcsCleanCheck'],
    );
  });

  void test('refused while Patroni runs: no gate, nothing deleted', async () => {
    const m = mock({ patroniRuns: true });
    const { error } = await run(m, 'patroniDcsClean', { inventory: inventory(uniqueId('c')) });
    assert.equal(error?.type, Failures.EtcdRefused);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['dcsCleanCheck'],
    );
  });
});

void describe('--dry-run', () => {
  const steps = (r: DryRunReport) => r.plan.map((l) => l.split(':')[0]);
  const dry = async (workflow: string, input: Record<string, unknown>) => {
    const m = mock({ leader: 'etcd2' });
    const r = await run<DryRunReport>(m, workflow, {
      inventory: inventory(uniqueId('d')),
      ...input,
      dryRun: true,
    });
    assert.equal(r.error, undefined, r.error?.message);
    assert.equal(r.result?.outcome, 'dry-run');
    return { calls: m.calls.map((c) => c.activity), result: r.result! };
  };

  void test('etcdRestart: the pre-check only; followers in order, the leader last after move-leader', async () => {
    const { calls, result } = await dry('etcdRestart', {});
    assert.deepEqual(calls, ['etcdPrecheck']);
    assert.deepEqual(steps(result), [
      'pre-check passed',
      'restart etcd1 (CT 109) (follower)',
      'restart etcd3 (CT 111) (follower)',
      'restart etcd2 (CT 110) (leader, after move-leader)',
    ]);
  });

  void test('etcdMaintain: the health report and pre-check only; compaction, then defragmentation member by member, the leader last', async () => {
    const { calls, result } = await dry('etcdMaintain', {});
    assert.deepEqual(calls, ['etcdHealthReport', 'etcdPrecheck']);
    assert.deepEqual(steps(result), [
      'health',
      'pre-check passed',
      'compact',
      'defrag etcd1 (CT 109)',
      'defrag etcd3 (CT 111)',
      'defrag etcd2 (CT 110) (leader)',
      'health after',
    ]);
  });

  void test('etcdSnapshot: the health report only; the follower it would be taken on and where it would be kept', async () => {
    const { calls, result } = await dry('etcdSnapshot', { keep: 3 });
    assert.deepEqual(calls, ['etcdHealthReport']);
    assert.deepEqual(steps(result), [
      'health',
      'snapshot on etcd1 (CT 109) (a healthy follower',
      'copy to the Proxmox host',
    ]);
    assert.match(result.plan[2]!, /keep the newest 3/);
  });

  void test('patroniDcsClean: the check only; no gate is waited on and nothing deleted; the keys named', async () => {
    const { calls, result } = await dry('patroniDcsClean', {});
    assert.deepEqual(calls, ['dcsCleanCheck']);
    assert.deepEqual(steps(result), [
      'check passed',
      'gate before-delete',
      'delete the 1 keys under /patroni/postgres/ (only these)',
    ]);
    assert.match(result.plan[2]!, /\/patroni\/postgres\/leader/);
  });
});

void describe('etcdReplace', () => {
  /** The replace activities: a plan from the pre-check (or its refusal), then each act recorded. */
  function replaceMock(o: { plan?: Partial<EtcdReplacePlan>; refuse?: string } = {}) {
    const calls: Call[] = [];
    const rec = (activity: string, args: unknown) =>
      calls.push({ activity, args: args as Record<string, unknown> });
    const activities = {
      etcdReplacePrecheck: async (a: unknown) => {
        rec('etcdReplacePrecheck', a);
        if (o.refuse) throw refused(o.refuse);
        return {
          member: 'etcd3',
          target: { vmid: 111, ip: '10.213.50.53' },
          oldId: 'a3',
          alreadyReplaced: false,
          leader: 'etcd1',
          seen: [],
          ...o.plan,
        };
      },
      etcdReplaceRemove: async (a: unknown) => (rec('etcdReplaceRemove', a), { action: 'removed' }),
      etcdReplaceAdd: async (a: unknown) => (rec('etcdReplaceAdd', a), { id: 'b7', action: 'added' }),
      installEtcd: async (a: unknown) => (
        rec('installEtcd', a),
        { node: 'etcd3', vmid: 111, installed: [], files: [], services: [] }
      ),
      etcdReplaceJoined: async (a: { memberId: string }) => (
        rec('etcdReplaceJoined', a),
        {
          member: 'etcd3',
          memberId: a.memberId,
          leader: 'etcd1',
          members: [],
          patroniLeader: 'pg102',
          tookMs: 1,
        }
      ),
    };
    return { calls, activities };
  }

  void test('remove, add, install with state existing at the new address, then the join wait', async () => {
    const m = replaceMock();
    const { result, error } = await run<{ joined: { memberId: string } }>(m, 'etcdReplace', {
      inventory: inventory(uniqueId('r')),
      member: 'etcd3',
      vmid: 112,
      ip: '10.213.50.54',
    });
    assert.equal(error, undefined, error?.message);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['etcdReplacePrecheck', 'etcdReplaceRemove', 'etcdReplaceAdd', 'installEtcd', 'etcdReplaceJoined'],
    );
    assert.equal(m.calls[1]!.args.oldId, 'a3');
    const install = m.calls[3]!.args as {
      join: boolean;
      inv: { nodes: { etcd: { vmid: number; ip: string }[] } };
    };
    assert.equal(install.join, true);
    assert.deepEqual(install.inv.nodes.etcd[2], { vmid: 112, hostname: 'etcd3', ip: '10.213.50.54' });
    assert.equal(result?.joined.memberId, 'b7');
  });

  void test('already replaced (an earlier run joined it): only the join check runs', async () => {
    const m = replaceMock({ plan: { alreadyReplaced: true, joinedId: 'b5', oldId: undefined } });
    const { error } = await run(m, 'etcdReplace', { inventory: inventory(uniqueId('r')), member: 'etcd3' });
    assert.equal(error, undefined, error?.message);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['etcdReplacePrecheck', 'etcdReplaceJoined'],
    );
    assert.equal(m.calls[1]!.args.memberId, 'b5');
  });

  void test('--dry-run: only the read-only pre-check; the plan names the removal, the addition at the fresh CT, the install and the join', async () => {
    const m = replaceMock();
    const { result, error } = await run<DryRunReport>(m, 'etcdReplace', {
      inventory: inventory(uniqueId('r')),
      member: 'etcd3',
      vmid: 112,
      ip: '10.213.50.54',
      dryRun: true,
    });
    assert.equal(error, undefined, error?.message);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['etcdReplacePrecheck'],
    );
    assert.deepEqual(
      result!.plan.map((l) => l.split(':')[0]),
      [
        'pre-check passed',
        'member remove etcd3',
        'member add etcd3',
        'install etcd3 (CT 111, 10.213.50.53)',
        'join etcd3',
      ],
    );
    assert.match(result!.plan[1]!, /etcdctl member remove a3/);
  });

  void test('a refusing pre-check, an unknown member, or an address outside the subnet: nothing is done', async () => {
    const m = replaceMock({ refuse: 'etcd3 is healthy: nothing was done' });
    const r1 = await run(m, 'etcdReplace', { inventory: inventory(uniqueId('r')), member: 'etcd3' });
    assert.equal(r1.error?.type, Failures.EtcdRefused);
    const r2 = await run(m, 'etcdReplace', { inventory: inventory(uniqueId('r')), member: 'etcd9' });
    assert.equal(r2.error?.type, Failures.InvalidInput);
    assert.match(r2.error!.message, /etcd9 not etcd members/);
    const r3 = await run(m, 'etcdReplace', {
      inventory: inventory(uniqueId('r')),
      member: 'etcd3',
      ip: '203.0.113.5', // TEST-NET-3: outside the subnet, and no one's private network
    });
    assert.equal(r3.error?.type, Failures.InvalidInventory);
    assert.match(r3.error!.message, /nodes\.etcd\[2\]\.ip/);
    assert.deepEqual(
      m.calls.map((c) => c.activity),
      ['etcdReplacePrecheck'],
    );
  });
});
