/**
 * upgradePatroni on a real dev server with mocked activities (the order and the decisions):
 *  - a member that does not come back: it and every member switched before it are rolled back to
 *    the version they ran (newest first), the cluster is resumed, and the run fails saying so;
 *  - the leader lost while paused (a failed switch, then the leader found gone): no roll-back, the
 *    look at the leader resumes and waits for Patroni's failover, the run stops naming both;
 *  - the happy path: install, pause, replicas first, the leader last, resume, verify;
 *  - --dry-run and "already at the target": only the pre-check runs (nothing touched);
 *  - a worker that loses the run at every phase boundary: the same acts, each once;
 *  - a malformed target is refused before any activity runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { SwitchArgs, UpgradeMember, UpgradePlan } from '../../activities/upgrade-patroni';
import { startRunbook } from '../../clients/runbook';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import type { UpgradePatroniReport, upgradePatroni } from '../../workflows/upgrade-patroni';
import { repoRoot } from '../helpers/local-common';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const labInput = (cluster: string): InventoryInput => ({
  ...(parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as InventoryInput),
  cluster,
});

const member = (name: string, role: 'leader' | 'replica', version = '3.3.0'): UpgradeMember => ({
  name,
  role,
  version,
  postmasterStartTime: '2026-11-29 08:00:00+00:00',
  killMode: 'process',
  action: version === '4.1.5' ? 'already' : 'upgrade',
});
const plan = (members: UpgradeMember[]): UpgradePlan => ({
  cluster: 'x',
  to: '4.1.5',
  leader: 'pg102',
  timeline: 3,
  members,
  noop: members.every((m) => m.action === 'already'),
  steps: [],
  checkedAt: new Date().toISOString(),
});

function mocks(opts: {
  before: UpgradeMember[];
  failOn?: string;
  /** The leader died: the switch of `failOn` failed because of it, and Patroni elects this member after the resume. */
  leaderLostTo?: string;
}) {
  const calls: string[] = [];
  let prechecks = 0;
  return {
    calls,
    activities: {
      patroniUpgradePrecheck: async () => {
        calls.push('precheck');
        return prechecks++ === 0
          ? plan(opts.before)
          : plan(opts.before.map((m) => ({ ...m, version: '4.1.5', action: 'already' as const })));
      },
      patroniStageVersion: async (a: { member: string; version: string }) => {
        calls.push(`stage ${a.member} ${a.version}`);
        return [];
      },
      patroniSetPause: async (a: { pause: boolean }) => {
        calls.push(`pause ${a.pause}`);
        return { pause: a.pause, patched: true, members: [] };
      },
      patroniLeaderLoss: async (a: { leader: string }) => {
        calls.push(`leader? ${a.leader}`);
        if (!opts.leaderLostTo) return { lost: false, leader: a.leader };
        // The activity itself resumes the cluster and waits for the failover (activities/upgrade-patroni/leader-loss.ts).
        return {
          lost: true,
          leader: a.leader,
          newLeader: opts.leaderLostTo,
          resumed: true,
          versions: { pg102: null, pg103: '4.1.5', pg104: '3.3.0' },
        };
      },
      patroniSwitchMember: async (a: SwitchArgs) => {
        calls.push(`switch ${a.member} ${a.to} as ${a.role}`);
        if (a.member === opts.failOn && a.to === '4.1.5')
          throw ApplicationFailure.create({
            type: Failures.PatroniUpgradeFailed,
            nonRetryable: true,
            message: `${a.member} did not come back on Patroni 4.1.5`,
          });
        return {
          member: a.member,
          from: '3.3.0',
          to: a.to,
          action: 'switched',
          postmasterBefore: a.postmasterBefore,
          postmasterAfter: a.postmasterBefore,
          postgresRestarted: false,
          changes: [],
          tookMs: 1,
        };
      },
    },
  };
}

async function run(
  m: ReturnType<typeof mocks>,
  args: { to?: string; dryRun?: boolean } = {},
  workerOpts: { maxCachedWorkflows?: number } = {},
) {
  const taskQueue = uniqueId('upat');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities, ...workerOpts });
  const cluster = uniqueId('upat');
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof upgradePatroni>(env.client, {
      workflow: 'upgradePatroni',
      args: [{ inventory: labInput(cluster), to: args.to ?? '4.1.5', dryRun: args.dryRun }],
      cluster,
      operation: 'upgrade-patroni',
      taskQueue,
    });
    return h.result().then(
      (r) => ({ r: r as UpgradePatroniReport, err: undefined }),
      (err: unknown) => ({ r: undefined, err }),
    );
  });
}

function failure(err: unknown): ApplicationFailure {
  assert.ok(err instanceof WorkflowFailedError, `the run failed (got ${String(err)})`);
  let cause = err.cause as Error & { cause?: unknown };
  while (!(cause instanceof ApplicationFailure) && cause.cause instanceof Error) cause = cause.cause as Error;
  assert.ok(cause instanceof ApplicationFailure);
  return cause;
}

const cluster3 = () => [member('pg103', 'replica'), member('pg104', 'replica'), member('pg102', 'leader')];

void test('a member that does not come back: it and those before it rolled back, newest first; resumed', async () => {
  const m = mocks({ before: cluster3(), failOn: 'pg104' });
  const { err } = await run(m);
  const f = failure(err);
  assert.equal(f.type, Failures.PatroniUpgradeFailed);
  assert.match(f.message, /Patroni upgrade of pg104 to 4\.1\.5 failed: pg104 did not come back/);
  assert.match(f.message, /pg104 back on Patroni 3\.3\.0; pg103 back on Patroni 3\.3\.0; cluster resumed/);
  // The installs run in parallel (any order); everything after them, in this order.
  assert.deepEqual(m.calls.slice(0, 4).sort(), [
    'precheck',
    'stage pg102 4.1.5',
    'stage pg103 4.1.5',
    'stage pg104 4.1.5',
  ]);
  assert.deepEqual(m.calls.slice(4), [
    'pause true',
    'switch pg103 4.1.5 as replica',
    'switch pg104 4.1.5 as replica',
    'leader? pg102', // alive: the ordinary roll-back
    'switch pg104 3.3.0 as replica',
    'switch pg103 3.3.0 as replica',
    'pause false',
  ]);
});

void test('the leader lost in pause: no roll-back, the look at the leader resumes and waits for the failover; the run stops naming it', async () => {
  const m = mocks({ before: cluster3(), failOn: 'pg104', leaderLostTo: 'pg103' });
  const f = failure((await run(m)).err);
  assert.equal(f.type, Failures.PatroniUpgradeFailed);
  assert.match(
    f.message,
    /the leader pg102 was lost during the Patroni upgrade \(the switch of pg104 failed: /,
  );
  assert.match(f.message, /the run resumed the cluster and Patroni elected pg103/);
  assert.match(f.message, /Patroni versions now: pg102 not answering, pg103 4\.1\.5, pg104 3\.3\.0/);
  assert.match(f.message, /Bring pg102 back .* run pgha upgrade patroni --to 4\.1\.5 again/);
  assert.deepEqual(m.calls.slice(4), [
    'pause true',
    'switch pg103 4.1.5 as replica',
    'switch pg104 4.1.5 as replica',
    'leader? pg102',
  ]);
});

void test('the whole run: replicas first, the leader last, resumed, verified', async () => {
  const m = mocks({ before: cluster3() });
  const { r, err } = await run(m);
  assert.equal(err, undefined);
  assert.equal(r?.outcome, 'upgraded');
  assert.deepEqual(r?.postgresRestarted, []);
  assert.deepEqual(m.calls.slice(4), [
    'pause true',
    'switch pg103 4.1.5 as replica',
    'switch pg104 4.1.5 as replica',
    'switch pg102 4.1.5 as leader',
    'pause false',
    'precheck',
  ]);
});

void test('a worker that loses the run at every phase boundary (no cache: each step replayed from history): each member switched once, paused and resumed once', async () => {
  // maxCachedWorkflows 0: after every activity the run is rebuilt from its history, as a new worker
  // does after a crash at that boundary; also when the leader is lost mid-run.
  for (const opts of [{}, { failOn: 'pg104', leaderLostTo: 'pg103' }]) {
    const calm = mocks({ before: cluster3(), ...opts });
    const a = await run(calm);
    const m = mocks({ before: cluster3(), ...opts });
    const b = await run(m, {}, { maxCachedWorkflows: 0 });
    // the installs run side by side (any order); everything else in the same order
    const staged = (calls: string[]) => calls.filter((c) => c.startsWith('stage ')).sort();
    const rest = (calls: string[]) => calls.filter((c) => !c.startsWith('stage '));
    assert.deepEqual(staged(m.calls), staged(calm.calls), JSON.stringify(opts));
    assert.deepEqual(rest(m.calls), rest(calm.calls), JSON.stringify(opts));
    assert.equal(b.r?.outcome, a.r?.outcome);
    assert.equal(String(b.err), String(a.err));
    const switched = m.calls.filter((c) => c.startsWith('switch '));
    assert.equal(new Set(switched).size, switched.length, `no member switched twice: ${switched.join(', ')}`);
    assert.ok(m.calls.filter((c) => c === 'pause true').length <= 1);
  }
});

void test('dry run, and a cluster already at the target: only the pre-check runs', async () => {
  const dry = mocks({ before: cluster3() });
  assert.equal((await run(dry, { dryRun: true })).r?.outcome, 'dry-run');
  assert.deepEqual(dry.calls, ['precheck']);
  const done = mocks({
    before: cluster3().map((x) => ({ ...x, version: '4.1.5', action: 'already' as const })),
  });
  assert.equal((await run(done)).r?.outcome, 'already-at-target');
  assert.deepEqual(done.calls, ['precheck']);
});

void test('a malformed target is refused before anything runs', async () => {
  const m = mocks({ before: cluster3() });
  const f = failure((await run(m, { to: '4.1' })).err);
  assert.equal(f.type, Failures.InvalidInput);
  assert.match(f.message, /to "4\.1" is not a Patroni version/);
  assert.deepEqual(m.calls, []);
});
