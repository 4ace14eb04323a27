/**
 * The restoreDrill runbook with mocked activities on a real dev server: the scratch copy is torn
 * down however the run ends — after the checks, after a failed step, on a check that finds a
 * problem, on cancellation (the restore step's compensation) — exactly once, and the outcome
 * (PgOutcome, the failure's type and message) says what happened; a cluster without a backup CT is
 * refused before any activity runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { DrillBackup, DrillChecks } from '../../activities/restore';
import type { InventoryInput } from '../../runbooks/schema';
import { PgOutcome } from '../../workflows/messages';
import { drillScratchId, type restoreDrill } from '../../workflows/restore-drill';
import { isDryRun, notDryRun } from '../../workflows/dry-run';
import { repoRoot } from '../helpers/local-common';
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

const checks = (problems: string[] = []): DrillChecks => ({
  marker: { expected: BACKUP.name, found: true, lsn: '0/A00A000' },
  amcheck: { ok: true, detail: '' },
  counts: [],
  restoredLsn: '0/B000120',
  consistentLsn: '0/B000120',
  endLsn: '0/C000000',
  lsnReached: true,
  problems,
});

type Behaviour = 'ok' | 'problems' | 'restore-fails' | 'check-hangs';

function mocks(behaviour: Behaviour) {
  const calls: string[] = [];
  const scratch: string[] = [];
  return {
    calls,
    scratch,
    activities: {
      drillChooseBackup: async (a: { backup: string }) => {
        calls.push(`choose ${a.backup}`);
        return BACKUP;
      },
      drillVerify: async () => {
        calls.push('verify');
        return { ok: true, detail: '' };
      },
      drillRestore: async (a: { scratchId: string }) => {
        calls.push('restore');
        scratch.push(a.scratchId);
        if (behaviour === 'restore-fails')
          throw ApplicationFailure.nonRetryable('the scratch copy stopped while starting: FATAL: bad');
        return {
          scratch: `/var/lib/barman/pgha-drill/${a.scratchId}`,
          port: 15432,
          startedAt: '2026-11-29T19:31:45.039Z',
          readyAt: '2026-11-29T19:31:51.413Z',
          rtoSeconds: 6.4,
        };
      },
      drillCheck: async () => {
        calls.push('check');
        if (behaviour === 'check-hangs') {
          const ctx = Context.current();
          for (;;) {
            ctx.heartbeat();
            await ctx.sleep(100); // rejects once the run is cancelled
          }
        }
        return checks(behaviour === 'problems' ? ['pg_amcheck found corruption: base/5/16390 block 0'] : []);
      },
      drillTeardown: async (a: { scratchId: string }) => {
        calls.push('teardown');
        scratch.push(a.scratchId);
        return { stopped: true, removed: true };
      },
    },
  };
}

async function run(behaviour: Behaviour, cancelAt?: string, dryRun?: boolean) {
  const m = mocks(behaviour);
  const taskQueue = uniqueId('drill');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dr');
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof restoreDrill>(env.client, {
      workflow: 'restoreDrill',
      args: [{ inventory: labInput(cluster), ...(dryRun ? { dryRun: true } : {}) }],
      cluster,
      operation: 'drill',
      taskQueue,
    });
    if (cancelAt) {
      await eventually(
        `the drill at ${cancelAt}`,
        async () => m.calls.includes(cancelAt),
        (x) => x,
      );
      await h.cancel();
    }
    const outcome = await h.result().then(
      (r) => ({
        result: dryRun ? undefined : notDryRun(r),
        plan: isDryRun(r) ? r : undefined,
        error: undefined,
      }),
      (e: unknown) => ({ result: undefined, plan: undefined, error: e }),
    );
    const { runId, typedSearchAttributes } = await h.describe();
    return {
      ...outcome,
      scheduled: await scheduledActivityTypes(h),
      m,
      pgOutcome: typedSearchAttributes.get(PgOutcome),
      workflowId: h.workflowId,
      runId,
    };
  });
}

const teardowns = (calls: string[]) => calls.filter((c) => c === 'teardown').length;

void test('a drill that passes: every step, then the scratch copy torn down; the result is the findings', async () => {
  const r = await run('ok');
  assert.deepEqual(r.m.calls, ['choose latest', 'verify', 'restore', 'check', 'teardown']);
  assert.deepEqual(r.result?.problems, []);
  assert.equal(r.result?.restored.rtoSeconds, 6.4);
  assert.equal(r.pgOutcome, 'succeeded');
  // the same scratch copy is restored and removed, named after this run
  assert.deepEqual(r.m.scratch, [
    drillScratchId(r.workflowId, r.runId),
    drillScratchId(r.workflowId, r.runId),
  ]);
});

void test('a check that finds a problem fails the drill naming it, after the teardown', async () => {
  const r = await run('problems');
  assert.deepEqual(r.m.calls, ['choose latest', 'verify', 'restore', 'check', 'teardown']);
  assert.ok(r.error instanceof WorkflowFailedError);
  const cause = r.error.cause as ApplicationFailure;
  assert.equal(cause.type, 'DrillFailed');
  assert.match(cause.message, /base\/5\/16390 block 0/);
  assert.equal(r.pgOutcome, 'failed');
});

void test('a failed restore step still tears the scratch copy down, and the error says why', async () => {
  const r = await run('restore-fails');
  assert.deepEqual(r.m.calls, ['choose latest', 'verify', 'restore', 'teardown']);
  assert.ok(r.error instanceof WorkflowFailedError);
  const cause = r.error.cause as ApplicationFailure;
  assert.equal(cause.type, 'DrillFailed');
  assert.match(cause.message, /stopped while starting: FATAL: bad.*scratch copy was removed/);
  assert.equal(r.pgOutcome, 'failed');
});

void test('cancelled while checking: the compensation tears the scratch copy down, once', async () => {
  const r = await run('check-hangs', 'check');
  assert.equal(teardowns(r.m.calls), 1, r.m.calls.join(', '));
  assert.deepEqual(r.m.calls.slice(0, 4), ['choose latest', 'verify', 'restore', 'check']);
  assert.ok(r.error instanceof WorkflowFailedError);
  assert.ok(r.error.cause instanceof CancelledFailure, String(r.error.cause));
  assert.equal(r.pgOutcome, 'cancelled');
});

void test('a cluster without a backup CT is refused before any activity', async () => {
  const m = mocks('ok');
  const taskQueue = uniqueId('drill');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dr');
  const input = labInput(cluster);
  const { backup: _omit, ...nodes } = input.nodes as InventoryInput['nodes'] & { backup?: unknown };
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof restoreDrill>(env.client, {
      workflow: 'restoreDrill',
      args: [{ inventory: { ...input, nodes } }],
      cluster,
      operation: 'drill',
      taskQueue,
    });
    await assert.rejects(h.result(), (e: unknown) => {
      assert.ok(e instanceof WorkflowFailedError);
      assert.match(String(e.cause?.message), /no backup CT/);
      return true;
    });
  });
  assert.deepEqual(m.calls, []);
});

void test('drillScratchId: one per run, of the scratch id grammar', () => {
  const a = drillScratchId('drill-labg', '01a22865-b46a-7c3a-bc55-5265cb2f4116');
  assert.equal(a, 'drill-labg-2f4116');
  assert.notEqual(drillScratchId('drill-labg', '01a22865-b46a-7c3a-bc55-5265cb9e0a7d'), a);
  assert.match(drillScratchId('drill-labg-2026-11-29T03:00:00Z', 'ffffff'), /^[a-z0-9][a-z0-9-]{0,99}$/);
  assert.match(drillScratchId('X'.repeat(300), 'abc'), /^x{60}-abc$/);
});

void test('--dry-run: only the read-only choice of the backup is scheduled; the plan names each step on the backup CT; nothing restored', async () => {
  const r = await run('ok', undefined, true);
  assert.deepEqual(r.scheduled, ['drillChooseBackup']);
  assert.deepEqual(r.m.calls, ['choose latest']);
  assert.deepEqual(r.m.scratch, []);
  assert.equal(r.plan?.operation, 'drill');
  assert.deepEqual(
    r.plan?.plan.map((l) => l.split(':')[0]),
    [
      'choose backup',
      'verify on backup1 (CT 105)',
      'restore on backup1 (CT 105)',
      'check on backup1 (CT 105)',
      'teardown on backup1 (CT 105)',
    ],
  );
  assert.match(r.plan!.plan[0]!, new RegExp(`^choose backup: ${BACKUP.backupId}`));
});
