/**
 * clusterGuardian's decisions on a real Temporal dev server, with its two activities scripted (the
 * etcd watch and the routing; the real ones run in test/lab/guardian.test.ts):
 *  - a leader change with no runbook behind it: routed once, recorded once as a failover-observed
 *    run (PgCluster/PgOperation/PgNode set) whose facts are computed from what the watch and the
 *    routing saw; the guardian goes on watching the new leader;
 *  - a change while a runbook holds the cluster lock: left alone (no routing, no record);
 *  - routing that fails: still recorded, with the reason; the lock is released either way;
 *  - continue-as-new after eventsPerRun watches, carrying the leader it knows;
 *  - --dry-run: only the two reads (the leader key's holder, the members' word), under an id of its
 *    own, beside a runbook holding the lock; the plan names the key, the lock, the HAProxy nodes and
 *    the record; no watch that waits, no lock, no routing, no record. Under the guardian's own id: refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { RouteArgs, RouteResult, WatchArgs, WatchResult } from '../../activities/guardian';
import type { InventoryInput } from '../../runbooks/schema';
import { Failures } from '../../runbooks/failures';
import { startGuardianDryRun } from '../../clients/commands/guard';
import { describeDryRun, notDryRun, type DryRunReport } from '../../workflows/dry-run';
import {
  FAILOVER_OBSERVED_OPERATION,
  guardianDryRunId,
  guardianState,
  guardianWorkflowId,
} from '../../workflows/guardian';
import type { FailoverFacts, clusterGuardian } from '../../workflows/guardian';
import { PgCluster, PgNode, PgOperation, lockWorkflowId, release } from '../../workflows/messages';
import type { clusterLock } from '../../workflows/lock';
import { repoRoot, sleep } from '../helpers/local-common';
import {
  createTestWorker,
  eventually,
  scheduledActivityTypes,
  startTestServer,
  uniqueId,
} from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

process.env.PGHA_GUARD_TEST_SECRET = 'not-a-real-password';
const labInput = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_GUARD_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

/** The watch as a script: each call takes the next answer; past the end it waits (quiet) a little. */
function scriptedWatch(answers: ((a: WatchArgs) => WatchResult)[], calls: WatchArgs[]) {
  return async (a: WatchArgs): Promise<WatchResult> => {
    calls.push(a);
    const next = answers.shift();
    if (next) return next(a);
    await sleep(200);
    return { kind: 'quiet', old: a.known ?? null, leader: a.known ?? null, observedAt: Date.now() };
  };
}

async function records(client: TestWorkflowEnvironment['client'], cluster: string) {
  const out: { id: string; facts: FailoverFacts; node?: string; op?: string }[] = [];
  const query = `PgCluster = '${cluster}' AND PgOperation = '${FAILOVER_OBSERVED_OPERATION}'`;
  for await (const wf of client.workflow.list({ query })) {
    out.push({
      id: wf.workflowId,
      facts: (await client.workflow.getHandle(wf.workflowId).result()) as FailoverFacts,
      node: wf.typedSearchAttributes.get(PgNode),
      op: wf.typedSearchAttributes.get(PgOperation),
    });
  }
  return out;
}

const T0 = Date.parse('2026-11-29T10:00:00Z');
const change =
  (old: string, leader: string): ((a: WatchArgs) => WatchResult) =>
  () => ({
    kind: 'changed',
    old,
    leader,
    observedAt: T0 + 58_000,
    keyGoneAt: T0 + 57_900,
    oldLastSeen: { member: old, at: T0 + 1_000, timeline: 1, lsn: 50_000_000 },
  });

void test('a failover with no runbook behind it: routed once, recorded once, then watched on', async () => {
  const cluster = uniqueId('g1');
  const taskQueue = uniqueId('guard');
  const watchCalls: WatchArgs[] = [];
  const routeCalls: RouteArgs[] = [];
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      guardianWatch: scriptedWatch(
        [
          (): WatchResult => ({ kind: 'quiet', old: null, leader: 'pg102', observedAt: T0 }),
          change('pg102', 'pg103'),
        ],
        watchCalls,
      ),
      guardianRoute: async (a: RouteArgs): Promise<RouteResult> => {
        routeCalls.push(a);
        return {
          leader: a.leader,
          writableAt: T0 + 58_300,
          routedAt: T0 + 58_320,
          routedOn: ['haproxy1', 'haproxy2'],
          timeline: 2,
          switchLsn: 49_999_000,
        };
      },
    },
  });
  await worker.runUntil(async () => {
    const h = await env.client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId: guardianWorkflowId(cluster),
      taskQueue,
      args: [{ inventory: labInput(cluster) }],
    });
    await eventually(
      'the guardian watches pg103',
      () => h.query(guardianState),
      (s) => s.leader === 'pg103' && s.observed === 1,
    );
    const recs = await eventually(
      'one failover-observed record',
      () => records(env.client, cluster),
      (r) => r.length === 1,
    );
    await h.cancel();
    const end = notDryRun(await h.result());
    assert.equal(end.phase, 'stopped');

    assert.equal(routeCalls.length, 1);
    assert.equal(routeCalls[0]!.leader, 'pg103');
    assert.equal(routeCalls[0]!.old, 'pg102');
    // the watches: the first learns the leader, the next waits on pg102, then on pg103
    assert.equal(watchCalls[0]!.known, undefined);
    assert.equal(watchCalls[1]!.known, 'pg102');
    assert.equal(watchCalls[2]!.known, 'pg103');

    const r = recs[0]!;
    assert.equal(r.op, FAILOVER_OBSERVED_OPERATION);
    assert.equal(r.node, 'pg103');
    assert.equal(r.id, `failover-observed-${cluster}-pg103-tl2`);
    assert.equal(r.facts.oldLeader, 'pg102');
    assert.equal(r.facts.newLeader, 'pg103');
    assert.equal(r.facts.timeline, 2);
    assert.equal(r.facts.writesRefusedMs, 57_320, 'old leader last seen → every HAProxy routed');
    assert.equal(r.facts.lostBytes, 1_000, "the old leader's last LSN beyond the switch point");
    assert.equal(r.facts.keyExpiredAt, new Date(T0 + 57_900).toISOString());
    assert.deepEqual(r.facts.routedOn, ['haproxy1', 'haproxy2']);

    // the lock was released after the record
    const lock = await env.client.workflow.getHandle(lockWorkflowId(cluster)).describe();
    assert.equal(lock.status.name, 'COMPLETED');
  });
});

void test('a change while a runbook holds the cluster lock is left to the runbook', async () => {
  const cluster = uniqueId('g2');
  const taskQueue = uniqueId('guard');
  const routeCalls: RouteArgs[] = [];
  let changeNow!: () => void;
  const changed = new Promise<void>((r) => (changeNow = r));
  const answers = [(): WatchResult => ({ kind: 'quiet', old: null, leader: 'pg102', observedAt: T0 })];
  const watchCalls: WatchArgs[] = [];
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      guardianWatch: async (a: WatchArgs): Promise<WatchResult> => {
        if (answers.length) return scriptedWatch(answers, watchCalls)(a);
        watchCalls.push(a);
        if (a.known === 'pg102') {
          await changed;
          return change('pg102', 'pg104')(a);
        }
        await sleep(200);
        return { kind: 'quiet', old: a.known ?? null, leader: a.known ?? null, observedAt: Date.now() };
      },
      guardianRoute: async (a: RouteArgs): Promise<RouteResult> => {
        routeCalls.push(a);
        throw new Error('must not route under a runbook');
      },
    },
  });
  await worker.runUntil(async () => {
    // a "runbook" holds the lock (as steps.ts takes it)
    const lock = await env.client.workflow.start<typeof clusterLock>('clusterLock', {
      workflowId: lockWorkflowId(cluster),
      taskQueue,
      args: [{ cluster, holder: `switchover-${cluster}`, operation: 'switchover' }],
    });
    const h = await env.client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId: guardianWorkflowId(cluster),
      taskQueue,
      args: [{ inventory: labInput(cluster) }],
    });
    await eventually(
      'the guardian knows pg102',
      () => h.query(guardianState),
      (s) => s.leader === 'pg102',
    );
    changeNow();
    const s = await eventually(
      'the guardian follows pg104',
      () => h.query(guardianState),
      (x) => x.leader === 'pg104',
    );
    assert.equal(s.yielded, 1);
    assert.equal(s.observed, 0);
    assert.equal(routeCalls.length, 0);
    assert.deepEqual(await records(env.client, cluster), []);
    // the runbook's lock is untouched
    assert.equal((await lock.describe()).status.name, 'RUNNING');
    await lock.signal(release);
    await h.cancel();
    await h.result();
  });
});

void test('routing that fails is recorded with its reason; the lock is released', async () => {
  const cluster = uniqueId('g3');
  const taskQueue = uniqueId('guard');
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      guardianWatch: scriptedWatch(
        [
          (): WatchResult => ({ kind: 'quiet', old: null, leader: 'pg102', observedAt: T0 }),
          change('pg102', 'pg103'),
        ],
        [],
      ),
      guardianRoute: async (): Promise<RouteResult> => {
        throw ApplicationFailure.nonRetryable(
          'pg103 holds the leader key but did not take writes',
          Failures.GuardianRouteTimeout,
        );
      },
    },
  });
  await worker.runUntil(async () => {
    const h = await env.client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId: guardianWorkflowId(cluster),
      taskQueue,
      args: [{ inventory: labInput(cluster) }],
    });
    const recs = await eventually(
      'one record',
      () => records(env.client, cluster),
      (r) => r.length === 1,
    );
    const f = recs[0]!.facts;
    assert.match(f.routeError ?? '', /did not take writes/);
    assert.equal(f.routedOn, undefined);
    assert.equal(f.timeline, undefined);
    assert.match(recs[0]!.id, new RegExp(`^failover-observed-${cluster}-pg103-at\\d+$`));
    await eventually(
      'the lock released',
      async () => (await env.client.workflow.getHandle(lockWorkflowId(cluster)).describe()).status.name,
      (s) => s === 'COMPLETED',
    );
    await h.cancel();
    await h.result();
  });
});

void test('continues as new after eventsPerRun watches, carrying the leader and the totals', async () => {
  const cluster = uniqueId('g4');
  const taskQueue = uniqueId('guard');
  const watchCalls: WatchArgs[] = [];
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      guardianWatch: scriptedWatch(
        [(): WatchResult => ({ kind: 'quiet', old: null, leader: 'pg102', observedAt: T0 })],
        watchCalls,
      ),
      guardianRoute: async (): Promise<RouteResult> => {
        throw new Error('no change in this test');
      },
    },
  });
  await worker.runUntil(async () => {
    const h = await env.client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId: guardianWorkflowId(cluster),
      taskQueue,
      args: [{ inventory: labInput(cluster), eventsPerRun: 2, yielded: 3 }],
    });
    await eventually(
      'a second run',
      async () => watchCalls.length,
      (n) => n >= 4,
    );
    const d = await env.client.workflow.getHandle(guardianWorkflowId(cluster)).describe();
    assert.notEqual(d.runId, h.firstExecutionRunId, 'continued as new');
    // the new run's first watch already knows the leader
    assert.equal(watchCalls[2]!.known, 'pg102');
    const s = await env.client.workflow.getHandle(guardianWorkflowId(cluster)).query(guardianState);
    assert.equal(s.yielded, 3);
    assert.equal(d.typedSearchAttributes.get(PgCluster), cluster);
    await env.client.workflow.getHandle(guardianWorkflowId(cluster)).cancel();
  });
});

void test('--dry-run: only the leader key read and the leader look, under an id of its own, beside a runbook; nothing watched, locked, routed or recorded', async () => {
  const cluster = uniqueId('g5');
  const taskQueue = uniqueId('guard');
  const called: string[] = [];
  const watchCalls: WatchArgs[] = [];
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      guardianWatch: async (a: WatchArgs): Promise<WatchResult> => {
        called.push('guardianWatch');
        watchCalls.push(a);
        return { kind: 'quiet', old: null, leader: 'pg102', observedAt: T0 };
      },
      findLeader: async () => {
        called.push('findLeader');
        return 'pg102';
      },
      guardianRoute: async (): Promise<RouteResult> => {
        called.push('guardianRoute');
        throw new Error('a dry run must not route');
      },
    },
  });
  await worker.runUntil(async () => {
    // a "runbook" holds the cluster lock: the dry run takes none, so it is not held up
    const lock = await env.client.workflow.start<typeof clusterLock>('clusterLock', {
      workflowId: lockWorkflowId(cluster),
      taskQueue,
      args: [{ cluster, holder: `switchover-${cluster}`, operation: 'switchover' }],
    });
    const when = new Date(T0);
    const h = await startGuardianDryRun(env.client, cluster, labInput(cluster), { taskQueue, at: when });
    assert.equal(h.workflowId, guardianDryRunId(cluster, when));
    assert.equal(h.workflowId, `guardian-${cluster}-dry-run-20261129T100000.000Z`);
    const r = (await h.result()) as DryRunReport;
    assert.equal(r.outcome, 'dry-run');
    assert.equal(r.operation, 'guardian');
    assert.deepEqual(await scheduledActivityTypes(h), ['guardianWatch', 'findLeader']);
    assert.deepEqual(called.sort(), ['findLeader', 'guardianWatch']);
    assert.equal(
      watchCalls[0]!.known,
      undefined,
      'a watch that knows no leader: it returns the holder at once',
    );
    assert.deepEqual(
      r.plan.map((l) => l.split(':')[0]),
      ['look', 'watch', 'yield', 'lock', 'route on haproxy1, haproxy2 (CT 100, 101)', 'record'],
    );
    assert.match(
      r.plan[0]!,
      /^look: the leader key \/patroni\/postgres\/leader names pg102 \(CT 102\); Patroni's members agree/,
    );
    assert.match(r.plan[1]!, /\/patroni\/postgres\/leader on etcd etcd1, etcd2, etcd3 \(CT 109, 110, 111\)/);
    assert.match(r.plan[2]!, new RegExp(`cluster lock pgha-lock-${cluster} is that runbook's`));
    assert.match(r.plan[4]!, /within ttl \+ 30 s = 90 s/);
    assert.match(r.plan[5]!, new RegExp(`failover-observed-${cluster}-<new leader>-tl<timeline>`));
    assert.match(describeDryRun(r), /^dry run of guardian on cluster .*\n {2}1\. look: /);

    // nothing else: the runbook's lock untouched, no guardian, no record
    assert.equal((await lock.describe()).status.name, 'RUNNING');
    await assert.rejects(
      env.client.workflow.getHandle(guardianWorkflowId(cluster)).describe(),
      WorkflowNotFoundError,
    );
    assert.deepEqual(await records(env.client, cluster), []);
    await lock.signal(release);

    // under the guardian's own id a dry run is refused: it would keep the guardian from starting
    const own = await env.client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId: guardianWorkflowId(cluster),
      taskQueue,
      args: [{ inventory: labInput(cluster), dryRun: true }],
    });
    const err = await own.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError);
    const cause = err.cause as ApplicationFailure;
    assert.equal(cause.type, Failures.InvalidInput);
    assert.match(cause.message, /dryRun under the guardian's own id .*start it under another id/);
    assert.deepEqual(await scheduledActivityTypes(own), []);
  });
});
