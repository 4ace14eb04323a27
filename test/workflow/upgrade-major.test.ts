/**
 * upgradeMajor decisions on a real Temporal dev server with mocked activities (the real thing on
 * the lab: test/lab/upgrade-major.test.ts): Patroni's sequence in order; the dry run touches
 * nothing; nothing is upgraded before the gate `pg_upgrade` is approved; a rejected gate or a
 * failed pg_upgrade (before the point of no return) brings the old major back and says so; a
 * failure after the new leader started is not rolled back and says so; a worker that dies after
 * pg_upgrade does not make a second one run it again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { MajorPlan } from '../../activities/upgrade-major';
import { Failures } from '../../runbooks/failures';
import type { Inventory, InventoryInput } from '../../runbooks/schema';
import { approve, progress } from '../../workflows/messages';
import { errorMessage } from '../../workflows/steps';
import type { UpgradeMajorReport } from '../../workflows/upgrade-major';
import { repoRoot, waitFor } from '../helpers/local-common';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const inventory = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab17.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_UP_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

const failed = (message: string) =>
  ApplicationFailure.create({ type: Failures.MajorUpgradeFailed, nonRetryable: true, message });

/** The activities as a log of calls (`name version member`); each answers as a healthy cluster would. */
function mock(
  opts: {
    failPgUpgrade?: boolean;
    failLeaderStart?: boolean;
    /** Called when the configure step starts (the step after pg_upgrade). */
    onConfigure?: () => Promise<void>;
  } = {},
) {
  const calls: string[] = [];
  const log = (...parts: (string | undefined)[]) => calls.push(parts.filter(Boolean).join(' '));
  const ver = (inv: Inventory) => inv.versions.postgresql;
  const plan: MajorPlan = {
    leader: 'pg17a',
    replicas: ['pg17b'],
    fromNum: 170011,
    build: '18.6.0',
    toNum: 180006,
    alreadyDone: false,
    lagBytes: { pg17b: 0 },
    checkedAt: new Date().toISOString(),
  };
  const activities = {
    majorPrecheck: () => (log('majorPrecheck'), Promise.resolve(plan)),
    majorInstall: (a: { next: Inventory; member: string }) => (
      log('majorInstall', ver(a.next), a.member),
      Promise.resolve({ member: a.member, installed: [] })
    ),
    majorCheck: (a: { leader: string }) => {
      log('majorCheck', a.leader);
      return Promise.resolve({
        leader: a.leader,
        checksums: true,
        initdb: true,
        extensions: ['plpgsql'],
        check: 'ok',
      });
    },
    patroniSetPause: (a: { pause: boolean }) => {
      log('patroniSetPause', String(a.pause));
      return Promise.resolve({ pause: a.pause, patched: true, members: [] });
    },
    majorStop: () => (log('majorStop'), Promise.resolve({ checkpoints: {}, stopped: [] })),
    majorPgUpgrade: (a: { leader: string }) => {
      log('majorPgUpgrade', a.leader);
      if (opts.failPgUpgrade) throw failed('pg_upgrade on pg17a failed (exit 1)');
      return Promise.resolve({ action: 'ran', tookMs: 1 });
    },
    installPostgres: async (a: { inv: Inventory; hostname: string }) => {
      log('installPostgres', ver(a.inv), a.hostname);
      if (ver(a.inv) === '18.6') await opts.onConfigure?.();
      return { node: a.hostname, vmid: 0, installed: [], files: [], services: [] };
    },
    dcsCleanDelete: () => (
      log('dcsCleanDelete'),
      Promise.resolve({ prefix: '/patroni/postgres/', deleted: 5, left: 0 })
    ),
    startPatroni: (a: { inv: Inventory; hostname: string }) => {
      log('startPatroni', ver(a.inv), a.hostname);
      return Promise.resolve({ node: a.hostname, vmid: 0, installed: [], files: [], services: [] });
    },
    majorWaitMember: (a: { inv: Inventory; member: string; role: string }) => {
      log('majorWaitMember', ver(a.inv), a.member);
      if (opts.failLeaderStart && a.role === 'leader' && ver(a.inv) === '18.6')
        throw failed('timed out waiting for pg17a up on PostgreSQL 18 as leader');
      return Promise.resolve({ member: a.member, role: a.role, state: 'running', serverVersion: 180006 });
    },
    majorAnalyze: () => (log('majorAnalyze'), Promise.resolve({ tookMs: 1 })),
    majorRestoreOld: () => (log('majorRestoreOld'), Promise.resolve({ restored: ['pg_control'] })),
    majorStartOld: (a: { member: string }) => (
      log('majorStartOld', a.member),
      Promise.resolve({ started: [] })
    ),
  };
  return { calls, activities };
}

/** Calls with each run of the same activity sorted: the steps that act on every member at once run in parallel. */
function norm(calls: string[]): string[] {
  const out: string[] = [];
  let run: string[] = [];
  const name = (c: string) => c.split(' ')[0];
  for (const c of calls) {
    if (run.length && name(run[0]!) !== name(c)) {
      out.push(...run.sort());
      run = [];
    }
    run.push(c);
  }
  return [...out, ...run.sort()];
}

type Outcome = { result?: UpgradeMajorReport; error?: { message: string; type?: string } };

async function outcome(handle: WorkflowHandle): Promise<Outcome> {
  try {
    return { result: (await handle.result()) as UpgradeMajorReport };
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
    };
  }
}

async function run(
  m: ReturnType<typeof mock>,
  input: Record<string, unknown> = {},
  during?: (h: WorkflowHandle) => Promise<void>,
): Promise<Outcome> {
  const taskQueue = uniqueId('major');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('upgradeMajor', {
      taskQueue,
      workflowId: uniqueId('upgradeMajor'),
      args: [{ inventory: inventory(uniqueId('c')), to: '18', ...input }],
    });
    await during?.(handle);
    return outcome(handle);
  });
}

const gateWaiting = (h: WorkflowHandle) =>
  waitFor('the pg_upgrade gate waiting', 20_000, async () =>
    (await h.query(progress)).steps.some((s) => s.name === 'pg_upgrade' && s.status === 'waiting'),
  );

/** The calls up to pg_upgrade, in the order Patroni's existing_data.rst gives. */
const BEFORE = [
  'majorPrecheck',
  'majorInstall 18.6 pg17a',
  'majorInstall 18.6 pg17b',
  'majorCheck pg17a',
  'patroniSetPause true',
  'majorStop',
];
const ROLLBACK = [
  'majorRestoreOld',
  'installPostgres 17.11 pg17a',
  'installPostgres 17.11 pg17b',
  'majorStartOld pg17a',
  'majorStartOld pg17b',
  'patroniSetPause false',
  'majorWaitMember 17.11 pg17a',
  'majorWaitMember 17.11 pg17b',
];

void test("Patroni's sequence, in order; the report says what to change in the inventory", async () => {
  const m = mock();
  const { result, error } = await run(m);
  assert.equal(error, undefined, error?.message);
  assert.deepEqual(norm(m.calls), [
    ...BEFORE,
    'majorPgUpgrade pg17a',
    'installPostgres 18.6 pg17a',
    'installPostgres 18.6 pg17b',
    'dcsCleanDelete',
    'startPatroni 18.6 pg17a',
    'majorWaitMember 18.6 pg17a',
    'startPatroni 18.6 pg17b',
    'majorWaitMember 18.6 pg17b',
    'patroniSetPause false',
    'majorAnalyze',
    'majorWaitMember 18.6 pg17a',
    'majorWaitMember 18.6 pg17b',
  ]);
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(result?.from, '17.11');
  assert.equal(result?.to, '18.6.0');
  assert.match(
    result?.inventoryChange ?? '',
    /versions\.postgresql: '18\.6'.*\/var\/lib\/pgsql\/18\/data.*\/usr\/pgsql-18\/bin/,
  );
});

void test('the dry run schedules only the pre-check', async () => {
  const m = mock();
  const { result } = await run(m, { dryRun: true });
  assert.equal(result?.outcome, 'dry-run');
  assert.deepEqual(norm(m.calls), ['majorPrecheck']);
  assert.match(result!.plan.join('\n'), /point of no return.*start pg17a on 18\.6\.0/);
});

void test('bad input is refused before any step, naming the field', async () => {
  const m = mock();
  const { error } = await run(m, { to: 'latest' });
  assert.equal(error?.type, Failures.InvalidInput);
  assert.match(error!.message, /to "latest" is not a PostgreSQL version: use e\.g\. --to 18/);
  assert.deepEqual(norm(m.calls), []);
});

void test('nothing is upgraded before the gate; approved, the run goes on', async () => {
  const m = mock();
  const { result } = await run(m, { approve: true }, async (h) => {
    await gateWaiting(h);
    assert.deepEqual(norm(m.calls), BEFORE, 'stopped, nothing upgraded while the gate waits');
    await h.executeUpdate(approve, { args: [{ gate: 'pg_upgrade', approver: 'alice' }] });
  });
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(m.calls.filter((c) => c.startsWith('majorPgUpgrade')).length, 1);
});

void test('a rejected gate brings the old major back and says which side of the point', async () => {
  const m = mock();
  const { error } = await run(m, { approve: true }, async (h) => {
    await gateWaiting(h);
    await h.executeUpdate(approve, { args: [{ gate: 'pg_upgrade', approver: 'bob', decision: 'reject' }] });
  });
  assert.equal(error?.type, Failures.MajorUpgradeRolledBack);
  assert.match(
    error!.message,
    /^before the point of no return: approval gate pg_upgrade rejected by bob.*PostgreSQL 17\.11 serves again/,
  );
  assert.deepEqual(norm(m.calls), [...BEFORE, ...ROLLBACK]);
});

void test('a failed pg_upgrade is rolled back: the new major never starts', async () => {
  const m = mock({ failPgUpgrade: true });
  const { error } = await run(m);
  assert.equal(error?.type, Failures.MajorUpgradeRolledBack);
  assert.match(error!.message, /before the point of no return: pg_upgrade on pg17a failed/);
  assert.deepEqual(norm(m.calls), [...BEFORE, 'majorPgUpgrade pg17a', ...ROLLBACK]);
});

void test('a failure after the new leader started is not rolled back, and says so', async () => {
  const m = mock({ failLeaderStart: true });
  const { error } = await run(m);
  assert.equal(error?.type, Failures.MajorUpgradePastPoint);
  assert.match(
    error!.message,
    /^past the point of no return \(at start leader\): PostgreSQL 17\.11 cannot come back/,
  );
  assert.ok(!m.calls.includes('majorRestoreOld'), m.calls.join(', '));
  assert.ok(
    !m.calls.some((c) => c.startsWith('startPatroni 18.6 pg17b')),
    'no replica cloned from a leader that is not up',
  );
});

void test('a worker that dies after pg_upgrade: the next one goes on without running it again', async () => {
  let releaseConfigure!: () => void;
  const configureReached = new Promise<void>((resolve) => {
    releaseConfigure = resolve;
  });
  let first = true;
  const m = mock({
    // The first worker dies while the step after pg_upgrade runs (its activity never ends there).
    onConfigure: async () => {
      if (!first) return;
      releaseConfigure();
      await Context.current().cancelled.catch(() => undefined);
      throw new Error('worker gone');
    },
  });
  const taskQueue = uniqueId('major');
  const handle = await env.client.workflow.start('upgradeMajor', {
    taskQueue,
    workflowId: uniqueId('upgradeMajor'),
    args: [{ inventory: inventory(uniqueId('c')), to: '18' }],
  });
  const w1 = await createTestWorker(env, { taskQueue, activities: m.activities, shutdownGraceTime: '1s' });
  await w1.runUntil(configureReached);
  first = false;
  const w2 = await createTestWorker(env, { taskQueue, activities: m.activities });
  const { result, error } = await w2.runUntil(outcome(handle));
  assert.equal(error, undefined, error?.message);
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(m.calls.filter((c) => c.startsWith('majorPgUpgrade')).length, 1, m.calls.join(', '));
  assert.equal(m.calls.filter((c) => c === 'dcsCleanDelete').length, 1);
});
