/**
 * upgradePostgresql decisions on a real Temporal dev server with mocked activities over a small
 * model of the cluster (the real thing on the lab: test/lab/upgrade-postgresql.test.ts): the dry
 * run schedules nothing that changes anything; replicas one at a time, then exactly one switchover,
 * then the old leader; members already on the target are skipped and so is the switchover when the
 * leader already runs it; a member that does not come back is rolled back and the run stops before
 * the leader; after a failover mid-upgrade the new leader waits until the remaining replicas are done;
 * a leader that died mid-upgrade (a member down after the failover) stops the run naming it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { MemberUpgradeResult, UpgradeMember, UpgradeView } from '../../activities/upgrade';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import type { UpgradeReport } from '../../workflows/upgrade-postgresql';
import { errorMessage } from '../../workflows/steps';
import { repoRoot } from '../helpers/local-common';
import { activitySummaries, createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

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
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_UP_TEST_SECRET']),
  );
  return { ...raw, cluster, secrets } as InventoryInput;
};

const FROM = 180004;
const TO = 180006;
const text = (n: number) => `18.${n % 100}`;

/** The mock cluster: who leads, what each runs, its postmaster; activities act on it and record calls. */
function mock(opts: {
  leader?: string;
  on?: Record<string, number>;
  failRestartOf?: string;
  /** This member's build switch fails (its CT is gone). */
  failSwitchOf?: string;
  /** After this member's restart, the leader dies and Patroni promotes `to`. */
  failoverAfter?: { member: string; to: string; deadLeader?: boolean };
}) {
  const names = ['pg102', 'pg103', 'pg104'];
  let leader = opts.leader ?? 'pg102';
  const on: Record<string, number> = Object.fromEntries(names.map((n) => [n, opts.on?.[n] ?? FROM]));
  const linked: Record<string, number> = { ...on };
  const pm: Record<string, number> = Object.fromEntries(names.map((n) => [n, 1]));
  const calls: string[] = [];
  /** A member whose CT died: its REST API does not answer (as versionsOf reports it). */
  const dead = new Set<string>();
  const view = (): UpgradeView => ({
    leader,
    timeline: 3,
    build: '18.6.0',
    toNum: TO,
    members: names.map((name): UpgradeMember => ({
      name,
      role: name === leader ? 'leader' : 'replica',
      state: dead.has(name) ? 'unreachable' : 'running',
      serverVersion: dead.has(name) ? null : on[name]!,
      running: dead.has(name) ? null : text(on[name]!),
      postmasterStartTime: `pm-${name}-${pm[name]}`,
      timeline: 3,
      upgraded: on[name] === TO,
    })),
    checkedAt: 'now',
  });
  const restart = (m: string) => {
    pm[m]!++;
    on[m] = linked[m]!;
  };
  const result = (
    member: string,
    from: number,
    action: MemberUpgradeResult['action'],
  ): MemberUpgradeResult => ({
    member,
    from: text(from),
    to: text(on[member]!),
    action,
    postmasterBefore: null,
    postmasterAfter: null,
    lagBytes: 0,
    tookMs: 1,
  });
  const activities = {
    upgradePostgresPrecheck: async (a: { to: string }) => {
      calls.push('precheck');
      if (a.to === '18.3') {
        throw ApplicationFailure.create({
          type: Failures.MaintenanceRefused,
          nonRetryable: true,
          message: 'a downgrade is refused',
        });
      }
      const v = view();
      return {
        ...v,
        alreadyAtTarget: v.members.every((m) => m.upgraded),
        oldestXactMs: 0,
        etcd: { healthy: 3, total: 3 },
      };
    },
    upgradeLook: async () => {
      calls.push('look');
      return view();
    },
    upgradeReadPortOut: async (a: { member: string }) => {
      calls.push(`out ${a.member}`);
      return { member: a.member, sessionsLeft: 0, waitedMs: 0, haproxies: [] };
    },
    upgradeReadPortIn: async (a: { member: string }) => {
      calls.push(`in ${a.member}`);
      return { member: a.member, sessionsLeft: 0, waitedMs: 0, haproxies: [] };
    },
    upgradeSwitchBuild: async (a: { member: string }) => {
      calls.push(`switch ${a.member}`);
      if (a.member === opts.failSwitchOf) {
        throw ApplicationFailure.create({
          type: 'ProxmoxError',
          nonRetryable: true,
          message: `CT 102 is not running on 10.213.50.1: start it (pct start 102)`,
        });
      }
      linked[a.member] = TO;
      return {
        member: a.member,
        link: '/usr/pgsql-18',
        before: '/usr/pgsql-18.4.0',
        after: '/usr/pgsql-18.6.0',
        changed: true,
      };
    },
    upgradeRelink: async (a: { member: string }) => {
      calls.push(`relink ${a.member}`);
      linked[a.member] = FROM;
      return {
        member: a.member,
        link: '/usr/pgsql-18',
        before: '/usr/pgsql-18.6.0',
        after: '/usr/pgsql-18.4.0',
        changed: true,
      };
    },
    upgradeRestartMember: async (a: { member: string; postmasterBefore: string | null; fromNum: number }) => {
      calls.push(`restart ${a.member}`);
      if (a.member === opts.failRestartOf) {
        throw ApplicationFailure.create({
          type: Failures.MaintenanceFailed,
          nonRetryable: true,
          message: `${a.member} never came back`,
        });
      }
      // Already restarted since the plan (the old leader's demotion): only waited for.
      const already = a.postmasterBefore !== `pm-${a.member}-${pm[a.member]}`;
      if (!already) restart(a.member);
      if (opts.failoverAfter?.member === a.member) {
        if (opts.failoverAfter.deadLeader) dead.add(leader);
        leader = opts.failoverAfter.to;
        calls.push(`FAILOVER to ${leader}`);
      }
      return result(a.member, a.fromNum, already ? 'already-upgraded' : 'upgraded');
    },
    upgradeRollbackMember: async (a: { member: string; fromNum: number }) => {
      calls.push(`rollback ${a.member}`);
      linked[a.member] = a.fromNum;
      restart(a.member);
      return result(a.member, TO, 'rolled-back');
    },
    // The switchover runbook's activities (a child of the upgrade).
    switchoverPrecheck: async () => {
      calls.push('switchoverPrecheck');
      const candidate = names.find((n) => n !== leader && on[n] === TO)!;
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
    switchoverCutover: async (a: { plan: { leader: string; candidate: string } }) => {
      calls.push(`switchover ${a.plan.leader} → ${a.plan.candidate}`);
      leader = a.plan.candidate;
      restart(a.plan.leader); // the demotion restarts the old leader, on whatever its link points at
      return { outcome: 'switched', leader: a.plan.candidate, timings: {}, routedOn: [] };
    },
    switchoverVerify: async (a: { plan: { candidate: string } }) => {
      calls.push('switchoverVerify');
      return { leader: a.plan.candidate, timeline: 4, haproxy: [], members: [] };
    },
  };
  return { calls, activities, on: () => ({ ...on }), leader: () => leader };
}

async function run(
  m: ReturnType<typeof mock>,
  input: Record<string, unknown>,
  workerOptions: { maxCachedWorkflows?: number } = {},
): Promise<{
  result?: UpgradeReport;
  error?: { message: string; type?: string };
  summaries: () => Promise<string[]>;
}> {
  const taskQueue = uniqueId('up');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities, ...workerOptions });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('upgradePostgresql', {
      taskQueue,
      workflowId: uniqueId('upgradePostgresql'),
      args: [{ inventory: inventory(uniqueId('c')), to: '18.6', ...input }],
    });
    const summaries = () => activitySummaries(handle);
    try {
      return { result: (await handle.result()) as UpgradeReport, summaries };
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
        summaries,
      };
    }
  });
}

const CHANGING = /^(out|in|switch|relink|restart|rollback|switchover) /;

void describe('upgradePostgresql', () => {
  void test('--dry-run: the ordered plan per node, and no activity that changes anything is scheduled', async () => {
    const m = mock({});
    const r = await run(m, { dryRun: true });
    assert.equal(r.result?.outcome, 'dry-run');
    assert.deepEqual(m.calls, ['precheck']);
    assert.deepEqual(
      r.result!.plan.map((p) => [p.node, p.role]),
      [
        ['pg103', 'replica'],
        ['pg104', 'replica'],
        ['pg102', 'leader'],
      ],
    );
    assert.match(r.result!.plan[2]!.steps.join('\n'), /switchover pg102 → an upgraded replica/);
    assert.deepEqual(m.on(), { pg102: FROM, pg103: FROM, pg104: FROM });
  });

  void test('replicas one at a time (out, switch, restart, in), then exactly one switchover, then the old leader', async () => {
    const m = mock({});
    const r = await run(m, {});
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.deepEqual(
      m.calls.filter((c) => CHANGING.test(c)),
      [
        'out pg103',
        'switch pg103',
        'restart pg103',
        'in pg103',
        'out pg104',
        'switch pg104',
        'restart pg104',
        'in pg104',
        'in pg102', // a drain an earlier interrupted run left on it would fail the switchover's verify
        'switch pg102',
        'switchover pg102 → pg103',
        'restart pg102',
      ],
    );
    assert.deepEqual(m.on(), { pg102: TO, pg103: TO, pg104: TO });
    const rep = r.result!;
    assert.equal(rep.outcome, 'upgraded');
    assert.deepEqual(
      rep.members.map((x) => [x.member, x.from, x.to, x.action]),
      [
        ['pg103', '18.4', '18.6', 'upgraded'],
        ['pg104', '18.4', '18.6', 'upgraded'],
        ['pg102', '18.4', '18.6', 'upgraded'],
      ],
    );
    assert.deepEqual([rep.switchover?.from, rep.switchover?.to], ['pg102', 'pg103']);
    assert.deepEqual([rep.leaderBefore, rep.leaderAfter], ['pg102', 'pg103']);
    // The Web UI's timeline names each step's member (decoded with the key, as the codec server does).
    const summaries = await r.summaries();
    assert.match(summaries[0]!, /^upgradePostgresPrecheck cluster c-/);
    for (const s of [
      'upgradeReadPortOut pg103 (CT 103)',
      'upgradeSwitchBuild pg104 (CT 104)',
      'upgradeRestartMember pg102 (CT 102)',
    ])
      assert.ok(summaries.includes(s), `${s} in ${summaries.join(' | ')}`);
  });

  void test('members already on the target are skipped; no switchover when the leader already runs it', async () => {
    const m = mock({ on: { pg102: TO, pg104: TO } });
    const r = await run(m, {});
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.deepEqual(
      m.calls.filter((c) => CHANGING.test(c)),
      // pg104 (skipped) is put back into the read port at the end: an earlier crashed run may have drained it.
      ['out pg103', 'switch pg103', 'restart pg103', 'in pg103', 'in pg104'],
    );
    assert.equal(r.result!.switchover, undefined);
    assert.deepEqual(r.result!.plan[1]!.steps, ['already on 18.6: skipped']);
  });

  void test('every member on the target: a no-op that says so', async () => {
    const m = mock({ on: { pg102: TO, pg103: TO, pg104: TO } });
    const r = await run(m, {});
    assert.equal(r.result?.outcome, 'already-at-target');
    assert.match(r.result!.message, /every member already runs PostgreSQL 18\.6: nothing to do/);
    assert.deepEqual(m.calls, ['precheck']);
  });

  void test('a member that does not come back is rolled back and the run stops with the leader untouched', async () => {
    const m = mock({ failRestartOf: 'pg104' });
    const r = await run(m, {});
    assert.equal(r.error?.type, Failures.UpgradeRolledBack, JSON.stringify(r.error));
    assert.match(
      r.error!.message,
      /pg104 did not come back on 18\.6\.0 \(pg104 never came back\); it was rolled back/,
    );
    assert.match(r.error!.message, /upgraded: pg103/);
    assert.deepEqual(m.calls.filter((c) => CHANGING.test(c)).slice(4), [
      'out pg104',
      'switch pg104',
      'restart pg104',
      'rollback pg104',
      'in pg104',
    ]);
    assert.ok(!m.calls.some((c) => /pg102|switchover/.test(c)), m.calls.join(', '));
    assert.deepEqual(m.on(), { pg102: FROM, pg103: TO, pg104: FROM });
  });

  void test('the leader dies mid-upgrade: re-planned, the new leader waits until the remaining replicas are done', async () => {
    // pg103 upgraded; then pg102 (the leader) dies and Patroni promotes pg104 (not upgraded yet).
    const m = mock({ failoverAfter: { member: 'pg103', to: 'pg104' } });
    const r = await run(m, {});
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    const changing = m.calls.filter((c) => CHANGING.test(c) || c.startsWith('FAILOVER'));
    assert.deepEqual(changing, [
      'out pg103',
      'switch pg103',
      'restart pg103',
      'FAILOVER to pg104',
      'in pg103',
      'out pg102',
      'switch pg102',
      'restart pg102',
      'in pg102',
      'in pg104',
      'switch pg104',
      'switchover pg104 → pg102',
      'restart pg104',
    ]);
    assert.equal(changing.filter((c) => c.startsWith('switchover')).length, 1, 'one switchover');
    assert.deepEqual(m.on(), { pg102: TO, pg103: TO, pg104: TO });
  });

  void test('the leader dies mid-upgrade: the run stops naming it and what to do; nothing more is touched, no switchover', async () => {
    // pg102 (the leader) dies while pg103 restarts; Patroni promotes pg104 (not upgraded).
    const m = mock({ failoverAfter: { member: 'pg103', to: 'pg104', deadLeader: true } });
    const r = await run(m, {});
    assert.equal(r.error?.type, Failures.UpgradeFailed, JSON.stringify(r.error));
    assert.match(
      r.error!.message,
      /pg102 is unreachable, not running \(the leader when the run began: Patroni failed over to pg104\)/,
    );
    assert.match(
      r.error!.message,
      /The cluster serves on leader pg104; upgraded so far: pg103\. Bring pg102 back/,
    );
    assert.match(r.error!.message, /pct start \d+/);
    assert.deepEqual(
      m.calls.filter((c) => CHANGING.test(c) || c.startsWith('FAILOVER')),
      ['out pg103', 'switch pg103', 'restart pg103', 'FAILOVER to pg104', 'in pg103'],
    );
    assert.deepEqual(m.on(), { pg102: FROM, pg103: TO, pg104: FROM });
  });

  void test('the leader dies at its own turn (its link switch fails): stopped, no switchover, what to do', async () => {
    const m = mock({ failSwitchOf: 'pg102' });
    const r = await run(m, {});
    assert.equal(r.error?.type, Failures.UpgradeFailed, JSON.stringify(r.error));
    assert.match(
      r.error!.message,
      /^the leader pg102 could not be switched to 18\.6\.0 \(CT 102 is not running .*\); no switchover was done\. Upgraded: pg103, pg104\./,
    );
    assert.match(r.error!.message, /bring pg102 back .* start the upgrade again/);
    assert.ok(!m.calls.some((c) => c.startsWith('switchover')), m.calls.join(', '));
  });

  void test('a worker that loses the run at every phase boundary (no cache: each step replayed from history): nothing done twice, one switchover', async () => {
    // maxCachedWorkflows 0: after every activity the run is rebuilt from its history, as a new
    // worker does after a crash at that boundary — with and without a failover mid-run.
    for (const opts of [{}, { failoverAfter: { member: 'pg103', to: 'pg104' } }]) {
      const calm = mock(opts);
      await run(calm, {});
      const m = mock(opts);
      const r = await run(m, {}, { maxCachedWorkflows: 0 });
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      const changing = (calls: string[]) => calls.filter((c) => CHANGING.test(c));
      assert.deepEqual(changing(m.calls), changing(calm.calls), JSON.stringify(opts));
      assert.equal(changing(m.calls).filter((c) => c.startsWith('switchover')).length, 1);
      assert.deepEqual(m.on(), { pg102: TO, pg103: TO, pg104: TO });
    }
  });

  void test('refusals touch nothing: a version that is not one (input), a downgrade (pre-check)', async () => {
    const m = mock({});
    const bad = await run(m, { to: 'latest' });
    assert.equal(bad.error?.type, Failures.InvalidInput);
    assert.match(bad.error!.message, /to "latest" is not a PostgreSQL minor version: use e\.g\. --to 18\.6/);
    const down = await run(m, { to: '18.3' });
    assert.equal(down.error?.type, Failures.MaintenanceRefused);
    assert.deepEqual(m.calls, ['precheck']);
  });
});
