/**
 * Refusing what is unsafe before it starts, on a real dev server with mocked activities:
 *  - switchover with scheduledAt in the past (beyond the 30 s grace) or more than 7 days ahead fails
 *    InvalidInput before any activity runs (a past time used to switch over at once);
 *  - a time within the bounds is taken (the pre-check runs);
 *  - every run records how it ended in PgOutcome: a refusal (a pre-check said no) is `refused`, a
 *    hand-off that failed is `failed`;
 *  - the CLI: `pgha switchover --at <past>` refuses before starting anything (exit 2, one line), and a
 *    run refused by the live cluster prints ONE line, once, and exits 1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import { PgCluster, PgOutcome } from '../../workflows/messages';
import type { switchover } from '../../workflows/switchover';
import { repoRoot } from '../helpers/local-common';
import { createTestWorker, startTestServer, testCodecKey, uniqueId } from '../helpers/temporal';

const exec = promisify(execFile);
let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const labRaw = () =>
  parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as InventoryInput;
const labInput = (cluster: string): InventoryInput => ({ ...labRaw(), cluster });

const plan = {
  action: 'switchover',
  leader: 'pg102',
  candidate: 'pg103',
  timeline: 3,
  chosen: true,
  maxLagBytes: 1048576,
  members: [],
};

/** Switchover activities that record their calls; the pre-check answers with `precheck`. */
function mocks(
  precheck: () => unknown,
  cutover: () => unknown = () => ({ outcome: 'switched', timings: {} }),
) {
  const calls: string[] = [];
  return {
    calls,
    activities: {
      switchoverPrecheck: async () => {
        calls.push('switchoverPrecheck');
        return precheck();
      },
      switchoverCutover: async () => {
        calls.push('switchoverCutover');
        return cutover();
      },
      switchoverVerify: async () => {
        calls.push('switchoverVerify');
        return { timeline: 4, haproxy: [] };
      },
    },
  };
}

async function runSwitchover(
  m: ReturnType<typeof mocks>,
  args: Omit<Parameters<typeof switchover>[0], 'inventory'>,
): Promise<{ err: unknown; outcome: string | undefined }> {
  const taskQueue = uniqueId('refuse');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('ref');
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof switchover>(env.client, {
      workflow: 'switchover',
      args: [{ inventory: labInput(cluster), ...args }],
      cluster,
      operation: 'switchover',
      taskQueue,
    });
    const err = await h.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    return { err, outcome: (await h.describe()).typedSearchAttributes.get(PgOutcome) };
  });
}

function failure(err: unknown): Error & { type?: string } {
  assert.ok(err instanceof WorkflowFailedError, `the run failed (got ${String(err)})`);
  let cause = err.cause as Error & { type?: string; cause?: unknown };
  while (!(cause instanceof ApplicationFailure) && cause.cause instanceof Error) {
    cause = cause.cause as Error & { type?: string; cause?: unknown };
  }
  return cause;
}

void test('switchover refuses a scheduledAt in the past or more than 7 days ahead: nothing runs, recorded as refused', async () => {
  const cases = [
    { at: new Date(Date.now() - 3600_000).toISOString(), why: /is in the past/ },
    { at: new Date(Date.now() - 120_000).toISOString(), why: /is in the past/ },
    { at: new Date(Date.now() + 30 * 24 * 3600_000).toISOString(), why: /more than 7 days ahead/ },
  ];
  for (const c of cases) {
    const m = mocks(() => plan);
    const { err, outcome } = await runSwitchover(m, { scheduledAt: c.at });
    const f = failure(err);
    assert.equal(f.type, Failures.InvalidInput, c.at);
    assert.match(f.message, c.why);
    assert.match(f.message, /scheduledAt/, 'the message names the field');
    assert.match(f.message, /nothing was done/);
    assert.deepEqual(m.calls, [], `${c.at}: no activity ran (nothing was touched)`);
    assert.equal(outcome, 'refused');
  }
});

void test('a scheduledAt within the bounds is taken; a pre-check refusal is recorded as refused, a failed hand-off as failed', async () => {
  // Within the clock-skew grace (10 s ago) and ahead: the pre-check runs, and its refusal ends the run.
  for (const at of [
    new Date(Date.now() - 10_000).toISOString(),
    new Date(Date.now() + 3600_000).toISOString(),
  ]) {
    const m = mocks(() => {
      throw ApplicationFailure.nonRetryable(
        'pg102 is the leader: name a replica',
        Failures.SwitchoverRefused,
      );
    });
    const { err, outcome } = await runSwitchover(m, { scheduledAt: at });
    assert.equal(failure(err).type, Failures.SwitchoverRefused);
    assert.deepEqual(m.calls, ['switchoverPrecheck'], `${at}: accepted, the pre-check ran`);
    assert.equal(outcome, 'refused');
  }
  const m = mocks(
    () => plan,
    () => {
      throw ApplicationFailure.nonRetryable('pg103 did not become the leader', Failures.SwitchoverFailed);
    },
  );
  const { err, outcome } = await runSwitchover(m, {});
  assert.equal(failure(err).type, Failures.SwitchoverFailed);
  assert.equal(outcome, 'failed', 'a hand-off that ran and failed is a failure, not a refusal');
});

void test('CLI: a past --at is refused before anything starts; a run refused by the cluster prints one line once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-refuse-'));
  const cluster = uniqueId('cliref');
  const file = join(dir, 'cluster.yaml');
  writeFileSync(
    file,
    readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8').replace(
      /^cluster: lab$/m,
      `cluster: ${cluster}`,
    ),
  );
  const taskQueue = uniqueId('cliref');
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: env.address,
    TEMPORAL_NAMESPACE: 'default',
    PGHA_TASK_QUEUE: taskQueue,
    PGHA_CODEC_KEY: testCodecKey.toString('base64'),
  };
  delete childEnv.PGHA_CODEC_KEY_FILE;
  const pgha = (...args: string[]) =>
    exec(process.execPath, [join(repoRoot, 'bin/pgha.js'), ...args], { cwd: repoRoot, env: childEnv }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );
  const runsOf = async () => {
    const ids: string[] = [];
    for await (const wf of env.client.workflow.list({ query: `${PgCluster.name} = '${cluster}'` }))
      ids.push(wf.workflowId);
    return ids;
  };

  // 1. A time in the past: one line naming --at, exit 2, no run started.
  const past = await pgha(
    'switchover',
    '--cluster',
    file,
    '--at',
    new Date(Date.now() - 3600_000).toISOString(),
  );
  assert.equal(past.code, 2, past.stdout + past.stderr);
  const pastLines = past.stderr.trim().split('\n');
  assert.equal(pastLines.length, 1, past.stderr);
  assert.match(pastLines[0]!, /^--at .* is in the past/);
  assert.equal(past.stdout, '');

  // 2. Refused by the (mocked) live cluster: the pre-check says the candidate is the leader.
  const why =
    'pg102 is the leader, it cannot be the candidate: name a replica (pg103 or pg104), or leave --to out';
  const m = mocks(() => {
    throw ApplicationFailure.nonRetryable(why, Failures.SwitchoverRefused);
  });
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const refused = await worker.runUntil(() => pgha('switchover', '--cluster', file, '--to', 'pg102'));
  assert.equal(refused.code, 1, refused.stdout + refused.stderr);
  const out = refused.stdout + refused.stderr;
  assert.equal(out.split(why).length - 1, 1, `the reason is printed exactly once:\n${out}`);
  assert.match(out, new RegExp(`switchover-${cluster}: refused \\[${Failures.SwitchoverRefused}\\]: `));
  assert.doesNotMatch(out, /┌|│ step/, 'no progress table for a refusal');
  assert.deepEqual(m.calls, ['switchoverPrecheck']);
  assert.deepEqual(
    await runsOf(),
    [`switchover-${cluster}`],
    'only the refused run exists: the past --at started none',
  );
});
