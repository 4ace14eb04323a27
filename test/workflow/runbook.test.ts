/**
 * The runbook machinery (workflows/steps.ts) on a real Temporal dev server with mocked activities:
 * steps + progress + search attributes, approval (approve / reject / timeout / invalid), pause and
 * resume, cancellation with compensations, and one operation per cluster.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ClusterBusyError, runningOperation, snapshot, startRunbook } from '../../clients/runbook';
import {
  FailureType,
  PgCluster,
  PgNode,
  PgOperation,
  PgStep,
  approve,
  lockWorkflowId,
  pause,
  progress,
  resume,
} from '../../workflows/messages';
import type { RunbookProgress } from '../../workflows/messages';
import { createTestWorker, eventually, startTestServer, uniqueId } from '../helpers/temporal';
import type { ScriptEntry, TestActivities } from '../helpers/workflows';
import { scripted } from '../helpers/workflows';

/** Mock activities: record calls; a step can be held until released, or wait until cancelled. */
class Mock {
  readonly calls: string[] = [];
  private readonly holds = new Map<string, Promise<void>>();
  readonly untilCancelled = new Set<string>();

  hold(name: string): () => void {
    let release!: () => void;
    this.holds.set(name, new Promise<void>((r) => (release = r)));
    return release;
  }

  activities(): TestActivities {
    return {
      act: async (name, node) => {
        this.calls.push(`act ${name}`);
        if (this.untilCancelled.has(name)) {
          const ctx = Context.current();
          for (let i = 0; i < 300; i++) {
            ctx.heartbeat();
            await Promise.race([ctx.cancelled, ctx.sleep(100)]);
          }
          throw new Error(`${name} was never cancelled`);
        }
        await this.holds.get(name);
        return `${name}${node ? `@${node}` : ''}`;
      },
      undo: async (name) => {
        this.calls.push(`undo ${name}`);
      },
    };
  }
}

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

function start(taskQueue: string, script: ScriptEntry[], cluster = uniqueId('c'), operation = 'test') {
  return env.client.workflow.start(scripted, {
    taskQueue,
    workflowId: `${operation}-${cluster}`,
    args: [{ cluster, operation, script }],
  });
}

const query = (h: WorkflowHandle) => h.query(progress);
const stepOf = (p: RunbookProgress, name: string) => p.steps.find((s) => s.name === name);
const waitProgress = (h: WorkflowHandle, what: string, ok: (p: RunbookProgress) => boolean) =>
  eventually(
    what,
    () => query(h).catch(() => undefined as unknown as RunbookProgress),
    (p) => p !== undefined && ok(p),
  );

async function failureOf(h: WorkflowHandle): Promise<unknown> {
  const err = await h.result().then(
    () => assert.fail('the run should not succeed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
  return err.cause;
}

void describe('runbook machinery on a real Temporal server', () => {
  void test('steps run in order; progress and search attributes follow them', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
    await worker.runUntil(async () => {
      const releaseB = mock.hold('b');
      const h = await start(taskQueue, [
        { step: 'a', node: 'etcd1' },
        { step: 'b', node: 'pg102' },
        { step: 'c' },
      ]);
      const p = await waitProgress(h, 'step b running', (p) => stepOf(p, 'b')?.status === 'running');
      assert.equal(p.current, 'b');
      assert.equal(p.state, 'running');
      assert.deepEqual(
        p.steps.map((s) => [s.name, s.status]),
        [
          ['a', 'completed'],
          ['b', 'running'],
          ['c', 'pending'],
        ],
      );
      const a = stepOf(p, 'a')!;
      assert.equal(a.attempt, 1);
      assert.equal(a.node, 'etcd1');
      assert.ok(a.startedAt && a.endedAt && a.startedAt <= a.endedAt);
      assert.equal(stepOf(p, 'b')!.attempt, 1);
      assert.equal(p.lock?.state, 'held');

      const sa = (await h.describe()).typedSearchAttributes;
      assert.equal(sa.get(PgStep), 'b');
      assert.equal(sa.get(PgNode), 'pg102');
      assert.equal(sa.get(PgOperation), 'test');
      assert.equal(sa.get(PgCluster), p.cluster);

      releaseB();
      assert.deepEqual(await h.result(), ['a@etcd1', 'b@pg102', 'c']);
      const end = await query(h);
      assert.equal(end.state, 'completed');
      assert.ok(end.steps.every((s) => s.status === 'completed'));
      assert.equal(end.lock?.state, 'released');
      const final = (await h.describe()).typedSearchAttributes;
      assert.equal(final.get(PgStep), 'c');
      assert.equal(final.get(PgNode), undefined, 'a step without a node clears PgNode');
      assert.deepEqual(mock.calls, ['act a', 'act b', 'act c']);
    });
  });

  void test('a step failure fails the run with the activity’s own message, recorded in progress', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const acts = mock.activities();
    const worker = await createTestWorker(env, {
      taskQueue,
      activities: {
        ...acts,
        act: async (name: string) => {
          if (name === 'b')
            throw ApplicationFailure.nonRetryable('etcd2 is unhealthy: no leader', 'Unhealthy');
          return acts.act(name);
        },
      },
    });
    await worker.runUntil(async () => {
      const h = await start(taskQueue, [{ step: 'a', compensate: true }, { step: 'b' }, { step: 'c' }]);
      await failureOf(h);
      const p = await query(h);
      assert.equal(p.state, 'failed');
      assert.equal(stepOf(p, 'b')?.status, 'failed');
      assert.equal(stepOf(p, 'b')?.error, 'etcd2 is unhealthy: no leader');
      assert.equal(p.outcome, 'etcd2 is unhealthy: no leader');
      assert.equal(stepOf(p, 'c')?.status, 'pending');
      assert.deepEqual(mock.calls, ['act a'], 'a failure does not compensate (only cancellation does)');
    });
  });

  void test('a step with attempts: 2 runs again after a failure; progress shows the attempt', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const acts = mock.activities();
    let calls = 0;
    const worker = await createTestWorker(env, {
      taskQueue,
      activities: {
        ...acts,
        act: async (name: string) => {
          if (++calls === 1) throw ApplicationFailure.nonRetryable('member not yet in the cluster', 'NotYet');
          return acts.act(name);
        },
      },
    });
    await worker.runUntil(async () => {
      const h = await start(taskQueue, [{ step: 'join', attempts: 2 }]);
      assert.deepEqual(await h.result(), ['join']);
      const s = stepOf(await query(h), 'join')!;
      assert.equal(s.status, 'completed');
      assert.equal(s.attempt, 2);
      assert.equal(s.error, undefined);
      assert.equal(calls, 2);
    });
  });

  void test('watchers see the activity in flight retrying, with its last failure decoded', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const acts = mock.activities();
    const release = mock.hold('flaky');
    const worker = await createTestWorker(env, {
      taskQueue,
      activities: {
        ...acts,
        act: async (name: string) => {
          const { attempt } = Context.current().info;
          if (attempt < 3) throw new Error(`etcd2 not ready (attempt ${attempt})`);
          return acts.act(name);
        },
      },
    });
    await worker.runUntil(async () => {
      const h = await start(taskQueue, [{ step: 'flaky', retry: true }]);
      const snap = await eventually(
        'third attempt in flight',
        () => snapshot(env.client, h),
        (s) => s.pending[0]?.attempt === 3,
      );
      assert.equal(snap.pending[0]?.activityType, 'act');
      assert.equal(snap.pending[0]?.lastFailure, 'etcd2 not ready (attempt 2)');
      assert.equal(stepOf(snap.progress!, 'flaky')?.status, 'running');
      release();
      assert.deepEqual(await h.result(), ['flaky']);
    });
  });

  void describe('approval gate', () => {
    const script: ScriptEntry[] = [{ step: 'a', compensate: true }, { gate: 'before-b' }, { step: 'b' }];
    const waiting = (h: WorkflowHandle) =>
      waitProgress(h, 'gate waiting', (p) => stepOf(p, 'before-b')?.status === 'waiting');

    void test('approve: the run goes on, the decision is recorded', async () => {
      const mock = new Mock();
      const taskQueue = uniqueId('tq');
      const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
      await worker.runUntil(async () => {
        const h = await start(taskQueue, script);
        const p = await waiting(h);
        assert.equal(p.state, 'waiting-approval');
        assert.deepEqual(mock.calls, ['act a'], 'nothing after the gate runs before approval');
        const r = await h.executeUpdate(approve, { args: [{ gate: 'before-b', approver: 'alice' }] });
        assert.equal(r.decision, 'approve');
        assert.equal(r.approver, 'alice');
        assert.deepEqual(await h.result(), ['a', 'before-b:approve:alice', 'b']);
        const g = stepOf(await query(h), 'before-b')!;
        assert.equal(g.status, 'approved');
        assert.equal(g.decision?.approver, 'alice');
      });
    });

    void test('reject: the run ends with ApprovalRejected and the reason; nothing further runs', async () => {
      const mock = new Mock();
      const taskQueue = uniqueId('tq');
      const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
      await worker.runUntil(async () => {
        const h = await start(taskQueue, script);
        await waiting(h);
        const r = await h.executeUpdate(approve, {
          args: [{ gate: 'before-b', approver: 'bob', decision: 'reject', reason: 'replica lag too high' }],
        });
        assert.equal(r.decision, 'reject');
        const cause = await failureOf(h);
        assert.ok(cause instanceof ApplicationFailure);
        assert.equal(cause.type, FailureType.ApprovalRejected);
        assert.match(cause.message, /before-b rejected by bob: replica lag too high/);
        const p = await query(h);
        assert.equal(p.state, 'rejected');
        assert.equal(stepOf(p, 'b')?.status, 'pending');
        assert.deepEqual(mock.calls, ['act a'], 'neither b nor any compensation ran');
        assert.equal(p.lock?.state, 'released');
      });
    });

    void test('timeout: nobody decides, the run ends with ApprovalTimedOut; nothing further runs', async () => {
      const mock = new Mock();
      const taskQueue = uniqueId('tq');
      const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
      await worker.runUntil(async () => {
        const h = await start(taskQueue, [{ step: 'a' }, { gate: 'before-b', timeout: '2s' }, { step: 'b' }]);
        const cause = await failureOf(h);
        assert.ok(cause instanceof ApplicationFailure);
        assert.equal(cause.type, FailureType.ApprovalTimedOut);
        assert.match(cause.message, /before-b timed out/);
        const p = await query(h);
        assert.equal(p.state, 'timed-out');
        assert.equal(stepOf(p, 'before-b')?.status, 'timed-out');
        assert.deepEqual(mock.calls, ['act a']);
      });
    });

    void test('invalid approve calls are rejected by the validator and leave the gate waiting', async () => {
      const mock = new Mock();
      const taskQueue = uniqueId('tq');
      const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
      await worker.runUntil(async () => {
        const h = await start(taskQueue, [...script, { gate: 'later' }]);
        await waiting(h);
        const rejected = async (input: object, why: RegExp) => {
          const err = await h.executeUpdate(approve, { args: [input as never] }).then(
            () => assert.fail(`accepted ${JSON.stringify(input)}`),
            (e: unknown) => e,
          );
          assert.ok(err instanceof WorkflowUpdateFailedError, String(err));
          assert.match(String((err.cause as Error)?.message), why);
        };
        await rejected({ gate: 'nope', approver: 'alice' }, /unknown gate "nope".*before-b, later/);
        await rejected({ gate: 'before-b', approver: '   ' }, /approver is empty/);
        await rejected(
          { gate: 'before-b', approver: 'alice', decision: 'maybe' },
          /decision "maybe" is invalid/,
        );
        await rejected({ gate: 'later', approver: 'alice' }, /gate later is not waiting .*pending/);
        const p = await query(h);
        assert.equal(stepOf(p, 'before-b')?.status, 'waiting');
        assert.equal(stepOf(p, 'before-b')?.decision, undefined);
        // Validator rejections are not written to history.
        const history = await h.fetchHistory();
        assert.ok(!history.events?.some((e) => e.workflowExecutionUpdateAcceptedEventAttributes));
        await h.executeUpdate(approve, { args: [{ gate: 'before-b', approver: 'alice' }] });
        await waitProgress(h, 'gate later waiting', (p) => stepOf(p, 'later')?.status === 'waiting');
        await rejected(
          { gate: 'before-b', approver: 'carol' },
          /before-b is not waiting .*approved by alice/,
        );
        await h.executeUpdate(approve, { args: [{ gate: 'later', approver: 'alice' }] });
        await h.result();
      });
    });
  });

  void test('pause holds the run before the next step; resume carries on', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
    await worker.runUntil(async () => {
      const releaseB = mock.hold('b');
      const h = await start(taskQueue, [{ step: 'a' }, { step: 'b' }, { step: 'c' }]);
      await waitProgress(h, 'b running', (p) => stepOf(p, 'b')?.status === 'running');
      await h.signal(pause, { by: 'alice', reason: 'maintenance window closed' });
      await waitProgress(h, 'pause recorded', (p) => p.paused?.by === 'alice');
      releaseB(); // the step in flight finishes
      const p = await waitProgress(h, 'paused before c', (p) => p.state === 'paused');
      assert.equal(stepOf(p, 'b')?.status, 'completed');
      assert.equal(stepOf(p, 'c')?.status, 'pending');
      assert.equal(p.paused?.reason, 'maintenance window closed');
      // Still paused after the worker has had time to run c, had it been allowed to.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await query(h)).state, 'paused');
      assert.deepEqual(mock.calls, ['act a', 'act b']);
      await h.signal(resume, { by: 'alice' });
      assert.deepEqual(await h.result(), ['a', 'b', 'c']);
      assert.equal((await query(h)).paused, undefined);
    });
  });

  void test('a pause longer than maxPause ends the run with PauseTimedOut; nothing further runs', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
    await worker.runUntil(async () => {
      const releaseA = mock.hold('a');
      const cluster = uniqueId('c');
      const h = await env.client.workflow.start(scripted, {
        taskQueue,
        workflowId: `test-${cluster}`,
        args: [{ cluster, operation: 'test', script: [{ step: 'a' }, { step: 'b' }], maxPause: '2s' }],
      });
      await waitProgress(h, 'a running', (p) => stepOf(p, 'a')?.status === 'running');
      await h.signal(pause, { by: 'alice' });
      await waitProgress(h, 'pause recorded', (p) => p.paused?.by === 'alice');
      releaseA();
      const cause = await failureOf(h);
      assert.ok(cause instanceof ApplicationFailure);
      assert.equal(cause.type, FailureType.PauseTimedOut);
      assert.match(cause.message, /paused by alice for longer than 2s/);
      assert.deepEqual(mock.calls, ['act a']);
      assert.equal((await query(h)).state, 'timed-out');
    });
  });

  void test('cancel: the step in flight is cancelled, then compensations run in reverse', async () => {
    const mock = new Mock();
    mock.untilCancelled.add('c');
    const taskQueue = uniqueId('tq');
    const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
    await worker.runUntil(async () => {
      const h = await start(taskQueue, [
        { step: 'a', compensate: true },
        { step: 'b' },
        { step: 'c', compensate: true },
        { step: 'd', compensate: true },
      ]);
      const cluster = (await waitProgress(h, 'c running', (p) => stepOf(p, 'c')?.status === 'running'))
        .cluster;
      await h.cancel();
      const cause = await failureOf(h);
      assert.ok(cause instanceof CancelledFailure, String(cause));
      assert.deepEqual(mock.calls, ['act a', 'act b', 'act c', 'undo c', 'undo a']);
      const p = await query(h);
      assert.equal(p.state, 'cancelled');
      assert.match(p.outcome ?? '', /2 step\(s\) compensated/);
      assert.deepEqual(
        p.steps.map((s) => [s.name, s.status, s.compensation]),
        [
          ['a', 'completed', 'completed'],
          ['b', 'completed', undefined],
          ['c', 'cancelled', 'completed'],
          ['d', 'pending', undefined],
        ],
      );
      // The lock was held through the compensations and released after them.
      assert.equal(p.lock?.state, 'released');
      const lock = await env.client.workflow.getHandle(lockWorkflowId(cluster)).describe();
      assert.equal(lock.status.name, 'COMPLETED');
    });
  });

  void test('one operation per cluster: a second one is refused, naming the running one', async () => {
    const mock = new Mock();
    const taskQueue = uniqueId('tq');
    const worker = await createTestWorker(env, { taskQueue, activities: mock.activities() });
    await worker.runUntil(async () => {
      const cluster = uniqueId('lab');
      const run = (
        operation: string,
        c = cluster,
        exclusive = true,
        script: ScriptEntry[] = [{ step: 'x' }],
      ) =>
        startRunbook(env.client, {
          workflow: scripted,
          args: [{ cluster: c, operation, script }],
          cluster: c,
          operation,
          taskQueue,
          exclusive,
        });
      const deploy = await run('deploy', cluster, true, [{ step: 'etcd' }, { gate: 'before-bootstrap' }]);
      assert.equal(deploy.workflowId, `deploy-${cluster}`);
      await waitProgress(deploy, 'deploy at its gate', (p) => p.state === 'waiting-approval');

      // Client side: refused before starting, with the running operation named.
      const busy = await run('switchover').then(
        () => assert.fail('switchover started beside deploy'),
        (e: unknown) => e,
      );
      assert.ok(busy instanceof ClusterBusyError);
      assert.equal(busy.running.workflowId, `deploy-${cluster}`);
      assert.match(
        busy.message,
        new RegExp(
          `cluster ${cluster} is busy: deploy-${cluster} \\(operation deploy, at step before-bootstrap`,
        ),
      );
      assert.equal((await runningOperation(env.client, cluster))?.workflowId, `deploy-${cluster}`);

      // The same operation again: the deterministic id refuses it.
      await assert.rejects(run('deploy', cluster, false), ClusterBusyError);

      // Server side: a client that skipped the check (a race) still cannot run beside it.
      const racer = await run('restart', cluster, false);
      const cause = await failureOf(racer);
      assert.ok(cause instanceof ApplicationFailure);
      assert.equal(cause.type, FailureType.ClusterBusy);
      assert.match(cause.message, new RegExp(`cluster ${cluster} is busy`));
      assert.deepEqual(mock.calls, ['act etcd'], 'the refused run touched nothing');

      // Another cluster is independent.
      const other = await run('deploy', uniqueId('other'));
      assert.deepEqual(await other.result(), ['x']);

      // Once deploy ends, the cluster is free again.
      await deploy.executeUpdate(approve, { args: [{ gate: 'before-bootstrap', approver: 'alice' }] });
      await deploy.result();
      assert.equal(await runningOperation(env.client, cluster), undefined);
      const next = await run('switchover');
      assert.deepEqual(await next.result(), ['x']);
    });
  });
});
