/**
 * The restore runbook with mocked activities on a real dev server:
 * - in place: nothing is stopped before the approval; then the order of the seed's prose (stop every
 *   member — the replicas first, the leader last, so none promotes itself — clean the DCS, old data aside, stage and bootstrap on one member, the others clone,
 *   verify, old data removed, Barman onto the new timeline);
 * - a rejection stops nothing;
 * - a failure after the move-aside puts every member's old data back, cleans the keys again and
 *   starts the old leader first, then waits for the replicas to stream, and no old directory is
 *   removed; the run fails as RestoreFailed;
 * - a worker that dies after the bootstrap: the run resumes on another worker without staging,
 *   bootstrapping or moving anything again;
 * - bad input refused before any activity; --dry-run stops nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { DrillBackup, RestorePlan } from '../../activities/restore';
import type { InventoryInput } from '../../runbooks/schema';
import { approve, progress } from '../../workflows/messages';
import type { RestoreInput, restore } from '../../workflows/restore';
import { repoRoot } from '../helpers/local-common';
import { createTestWorker, eventually, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const labInput = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as InventoryInput;
  return { ...raw, cluster };
};

const BACKUP: DrillBackup = {
  server: 'lab',
  backupId: '20261129T193133',
  name: 'pgha-backup-lab-20261129t193131-c82fb9',
  beginLsn: '0/B000028',
  endLsn: '0/C000000',
  consistentLsn: '0/B000120',
  endTime: '2026-11-29 19:31:34+00:00',
  timeline: 1,
  systemId: '7713675100390363372',
  postgresVersion: 180004,
  sizeBytes: 23_000_000,
};

const MEMBERS = ['pg102', 'pg103', 'pg104'];

type Fault = 'none' | 'stage-fails' | 'die-after-bootstrap';

function mocks(fault: Fault, cluster: string) {
  const calls: string[] = [];
  let blocked = false;
  const call = (what: string) => async (a: { hostname?: string }) => {
    calls.push(a?.hostname ? `${what} ${a.hostname}` : what);
    return {};
  };
  const plan: RestorePlan = {
    mode: 'in-place',
    source: cluster,
    cluster,
    backup: BACKUP,
    target: { kind: 'time', time: '2026-11-29T19:40:00.000Z' },
    window: {
      fromTime: BACKUP.endTime,
      fromLsn: BACKUP.consistentLsn,
      toTime: '2026-11-29T20:00:00.000Z',
      toLsn: '0/F000000',
      switched: true,
    },
    restoreOn: 'pg103',
    members: MEMBERS.map((hostname) => ({ hostname, hasData: true, systemId: BACKUP.systemId })),
    loses: 'every change after time 2026-11-29T19:40:00.000Z is LOST',
    tag: 'restore-x',
  };
  return {
    calls,
    unblock: () => (blocked = false),
    activities: {
      restorePlan: async (a: { tag: string }) => {
        calls.push('plan');
        return { ...plan, tag: a.tag };
      },
      // The leader's stop waits (bounded) until the stage has begun: a restore that staged only after
      // every stop (before the restore-stage-beside-stops patch) shows the stage after it.
      restoreStopMember: async (a: { hostname: string }) => {
        if (a.hostname === plan.restoreOn)
          for (let i = 0; i < 100 && !calls.includes(`stage ${a.hostname}`); i++)
            await new Promise((r) => setTimeout(r, 50));
        return call('stop')(a);
      },
      dcsCleanDelete: call('clean dcs'),
      restoreMoveAside: call('move aside'),
      restoreStage: async (a: { hostname: string }) => {
        calls.push(`stage ${a.hostname}`);
        if (fault === 'stage-fails')
          throw ApplicationFailure.nonRetryable(
            'copying the base backup failed (exit 2): No space left on device',
          );
        return { staged: '/x', walFiles: 3, bytes: 1, seconds: 1, again: false };
      },
      restoreBootstrap: async (a: { hostname: string }) => {
        calls.push(`bootstrap ${a.hostname}`);
        if (fault === 'die-after-bootstrap') blocked = true;
        return { bootstrapped: true };
      },
      waitPrimary: async (a: { hostname: string }) => {
        calls.push(`wait primary ${a.hostname}`);
        // the first worker "dies" here: the activity never completes on it
        const ctx = Context.current();
        while (blocked) {
          ctx.heartbeat();
          await ctx.sleep(100);
        }
        return { leader: a.hostname, timeline: 2, systemIdentifier: BACKUP.systemId };
      },
      restoreFinishBootstrap: call('usual config'),
      startPatroni: call('start'),
      waitReplication: call('replication'),
      restoreVerify: async () => {
        calls.push('verify');
        return {
          leader: 'pg103',
          timeline: 2,
          stoppedAt: '1\t0/D000100\tbefore 2026-11-29 19:40:00+00',
          marker: { expected: BACKUP.name, found: true },
          problems: [],
        };
      },
      checkThroughHaproxy: call('through haproxy'),
      restoreRemoveOld: call('remove old'),
      restoreRollbackMember: call('put back'),
      restoreResetWalStreaming: call('wal streaming'),
      waitBarmanReady: call('barman ready'),
      physicalBackup: async () => {
        calls.push('first backup');
        return { backupId: '20261129T200000' };
      },
    },
  };
}

async function gateWaiting(h: WorkflowHandle) {
  await eventually(
    'the restore gate waiting',
    async () => (await h.query(progress)).steps.find((s) => s.name === 'restore')?.status,
    (s) => s === 'waiting',
  );
}

async function run(
  fault: Fault,
  input: Partial<RestoreInput>,
  during?: (h: WorkflowHandle, m: ReturnType<typeof mocks>) => Promise<void>,
) {
  const cluster = uniqueId('rs');
  const m = mocks(fault, cluster);
  const taskQueue = uniqueId('restore');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof restore>(env.client, {
      workflow: 'restore',
      args: [{ inventory: labInput(cluster), mode: 'in-place', ...input }],
      cluster,
      operation: 'restore',
      taskQueue,
    });
    if (during) await during(h, m);
    const outcome = await h.result().then(
      (r) => ({ result: r, error: undefined }),
      (e: unknown) => ({ result: undefined, error: e }),
    );
    return { ...outcome, m, h };
  });
}

const approveAfterCheck = async (h: WorkflowHandle, m: ReturnType<typeof mocks>) => {
  await gateWaiting(h);
  assert.deepEqual(m.calls, ['plan'], 'nothing stopped before the approval');
  await h.executeUpdate(approve, { args: [{ gate: 'restore', approver: 'alice' }] });
};

const each = (what: string) => MEMBERS.map((h) => `${what} ${h}`);

void test('in place: approval first, then the seed order; the old data removed only after the verification', async () => {
  const r = await run('none', { targetTime: '2026-11-29T19:40:00Z' }, approveAfterCheck);
  assert.equal(r.error, undefined, String(r.error));
  // The stage runs beside the stops, the DCS clean and the move-aside: in any interleaving, but it
  // begins before the leader stops; the replicas stop before the leader, the leader before the
  // clean, the clean before every move-aside.
  const c = r.m.calls;
  const beside = c.slice(1, c.indexOf('bootstrap pg103'));
  assert.deepEqual(
    [...beside].sort(),
    ['stop pg102', 'stop pg104', 'stop pg103', 'clean dcs', ...each('move aside'), 'stage pg103'].sort(),
  );
  const at = (x: string) => c.indexOf(x);
  assert.ok(
    at('stage pg103') < at('stop pg103'),
    `the stage began before the leader stopped: ${c.join(', ')}`,
  );
  assert.ok(at('stop pg102') < at('stop pg103') && at('stop pg104') < at('stop pg103'), c.join(', '));
  assert.ok(at('stop pg103') < at('clean dcs'), c.join(', '));
  assert.ok(
    each('move aside').every((m) => at('clean dcs') < at(m)),
    c.join(', '),
  );
  assert.deepEqual(c.slice(0, 1), ['plan']);
  assert.deepEqual(c.slice(c.indexOf('bootstrap pg103')), [
    'bootstrap pg103',
    'wait primary pg103',
    'usual config pg103',
    'start pg102',
    'start pg104',
    'replication',
    'verify',
    'through haproxy',
    ...each('remove old'),
    'wal streaming',
    'barman ready',
    'first backup',
  ]);
  assert.equal(r.result?.approvedBy, 'alice');
  assert.equal(r.result?.oldDirectories, 'removed');
  assert.equal(r.result?.firstBackup, '20261129T200000');
});

void test('--keep-old keeps the old data directories', async () => {
  const r = await run('none', { keepOld: true }, approveAfterCheck);
  assert.equal(r.result?.oldDirectories, 'kept');
  assert.ok(!r.m.calls.some((c) => c.startsWith('remove old')));
});

void test('a rejection at the gate stops nothing', async () => {
  const r = await run('none', {}, async (h) => {
    await gateWaiting(h);
    await h.executeUpdate(approve, { args: [{ gate: 'restore', approver: 'bob', decision: 'reject' }] });
  });
  assert.ok(r.error instanceof WorkflowFailedError);
  assert.deepEqual(r.m.calls, ['plan']);
});

void test('a failed stage stops no more members, puts the old data back and starts the old leader first', async () => {
  const r = await run('stage-fails', {}, approveAfterCheck);
  assert.ok(r.error instanceof WorkflowFailedError);
  const cause = r.error.cause as ApplicationFailure;
  assert.equal(cause.type, 'RestoreFailed');
  assert.match(cause.message, /No space left on device.*old data directories were put back/);
  // the replicas' stops (begun beside the stage) end; the leader is not stopped, nothing moved aside
  const first = r.m.calls.indexOf(each('put back')[0]!);
  assert.deepEqual([...r.m.calls.slice(0, first)].sort(), [
    'plan',
    'stage pg103',
    'stop pg102',
    'stop pg104',
  ]);
  const after = r.m.calls.slice(first);
  assert.deepEqual(after, [
    ...each('put back'),
    'clean dcs',
    'start pg103',
    'wait primary pg103',
    'start pg102',
    'start pg104',
    'replication',
  ]);
  assert.match(cause.message, /every replica streams from pg103/);
  assert.ok(!r.m.calls.some((c) => c.startsWith('remove old') || c.startsWith('bootstrap')));
});

void test('an injected failure right after the move-aside (failAfter) takes the same rollback path', async () => {
  const r = await run('none', { failAfter: 'move aside' }, approveAfterCheck);
  assert.equal((r.error as WorkflowFailedError).cause?.name, 'ApplicationFailure');
  assert.ok(r.m.calls.includes('put back pg102'));
  // the stage ran beside the move-aside (its copy is removed by every member's put back)
  const back = r.m.calls.indexOf(each('put back')[0]!);
  assert.ok(
    [...each('move aside'), 'stage pg103'].every(
      (x) => r.m.calls.indexOf(x) >= 0 && r.m.calls.indexOf(x) < back,
    ),
    r.m.calls.join(', '),
  );
});

void test('a worker that dies after the bootstrap: another worker finishes without restoring again', async () => {
  const cluster = uniqueId('rs');
  const taskQueue = uniqueId('restore');
  const first = mocks('die-after-bootstrap', cluster);
  const w1 = await createTestWorker(env, {
    taskQueue,
    activities: first.activities,
    shutdownGraceTime: '1s',
  });
  const h = await w1.runUntil(async () => {
    const h = await startRunbook<typeof restore>(env.client, {
      workflow: 'restore',
      args: [{ inventory: labInput(cluster), mode: 'in-place' }],
      cluster,
      operation: 'restore',
      taskQueue,
    });
    await approveAfterCheck(h, first);
    await eventually(
      'the first worker in the wait after the bootstrap',
      async () => first.calls.includes('wait primary pg103'),
      (x) => x,
    );
    return h;
  });
  const second = mocks('none', cluster);
  const w2 = await createTestWorker(env, { taskQueue, activities: second.activities });
  const result = await w2.runUntil(h.result());
  assert.equal(result.outcome, 'restored');
  assert.equal(first.calls.filter((c) => c.startsWith('bootstrap')).length, 1);
  for (const what of ['stage', 'bootstrap', 'move aside', 'stop', 'clean dcs', 'plan'])
    assert.ok(
      !second.calls.some((c) => c.startsWith(what)),
      `${what} again on the second worker: ${second.calls.join(', ')}`,
    );
  assert.equal(second.calls[0], 'wait primary pg103');
});

void test('bad input is refused before any activity; --dry-run stops nothing', async () => {
  const bad = await run('none', { targetLsn: 'zz' });
  assert.match(String((bad.error as WorkflowFailedError).cause?.message), /--target-lsn/);
  assert.deepEqual(bad.m.calls, []);
  const nc = await run('none', { mode: 'new-cluster' });
  assert.match(String((nc.error as WorkflowFailedError).cause?.message), /--into/);
  const dry = await run('none', { dryRun: true });
  assert.equal(dry.result?.outcome, 'dry-run');
  assert.deepEqual(dry.m.calls, ['plan']);
});
