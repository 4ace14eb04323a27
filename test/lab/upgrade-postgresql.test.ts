/**
 * upgradePostgresql end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml),
 * with a real worker process, checked from outside pgha (Patroni's REST API, SQL, the CTs through
 * lxc-attach):
 *  1. refusals and the dry run through `pgha upgrade postgresql`: a downgrade, a build the install
 *     source does not have — each naming the fix; `--dry-run` prints the ordered plan and touches
 *     nothing (no postmaster restarted, no link moved, no build unpacked);
 *  2. 18.4 → 18.6 while a writer commits through HAProxy's write port; the worker is SIGKILLed while
 *     the second replica restarts and a new worker finishes: every member's `SELECT version()` says
 *     18.6, each postmaster restarted exactly once, the timeline moved by exactly 1 (one switchover),
 *     every acknowledged row on the final leader, both replicas streaming, the old build still there;
 *  3. the same again: a no-op that says so, nothing restarted.
 * The cluster is deployed first if needed, and put back on 18.4 if an earlier run left it on 18.6.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRunbook } from '../../clients/runbook';
import type { upgradePostgresql } from '../../workflows/upgrade-postgresql';
import { LabWriter, refused } from '../helpers/lab-direct';
import { LAB, StartTimes, upgradeLabSetup } from '../helpers/lab-upgrade';
import type { LabCluster, UpgradeLab } from '../helpers/lab-upgrade';
import { workerReady } from '../helpers/worker-procs';
import { labNotUpReason } from '../../lab/testing';
import { sleep } from '../helpers/local-common';
import { uniqueId } from '../helpers/temporal';

const skip = labNotUpReason();
const FROM = '18.4';
const TO = '18.6';

let t: UpgradeLab;
let lab: LabCluster;

before(async () => {
  if (skip) return;
  t = await upgradeLabSetup('upgrade');
  lab = t.lab;
});

/** Writers and samplers a test started: stopped in after() too, so a failed test leaves no loop running. */
const loops: { stop(): Promise<unknown> }[] = [];

after(async () => {
  for (const l of loops) await l.stop().catch(() => undefined);
  await t?.teardown();
});

void test(
  'refusals name the fix; --dry-run prints the plan and touches nothing',
  { skip, timeout: 300_000 },
  async () => {
    const leader = await lab.healthy();
    const t0 = await lab.startTimesNow();
    const links0 = lab.members().map((m) => lab.sh(m, 'readlink', '/usr/pgsql-18'));
    const usr0 = lab.members().map((m) => lab.sh(m, 'ls', '/usr'));

    const down = t.pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', '18.3');
    assert.notEqual(down.status, 0, down.out);
    assert.match(down.out, /runs PostgreSQL 18\.4, newer than the target 18\.3: a downgrade is refused/);
    const absent = t.pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', '18.9');
    assert.notEqual(absent.status, 0, absent.out);
    assert.match(
      absent.out,
      // every build of the offline directory is listed (17.11.0 too, since the major upgrade's lab)
      /PostgreSQL 18\.9 is not in the install source of \S+ \(it has (\d+\.\d+\.\d+, )*18\.4\.0, 18\.6\.0\)/,
    );
    const bad = t.pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', 'latest');
    assert.equal(bad.status, 2, bad.out);
    assert.match(bad.out, /--to "latest" is not a PostgreSQL minor version/);

    const dry = t.pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', TO, '--dry-run');
    assert.equal(dry.status, 0, dry.out);
    assert.match(dry.out, /dry-run: dry run/);
    // Replicas first, the leader last, each with its steps.
    const order = [...dry.out.matchAll(/^\d+\. (\S+) \((leader|replica)/gm)].map((m) => [m[1], m[2]]);
    assert.equal(order.length, 3, dry.out);
    assert.deepEqual(order[2], [leader, 'leader']);
    assert.match(dry.out, /switchover \S+ → an upgraded replica/);

    assert.deepEqual(await lab.startTimesNow(), t0, 'nothing restarted');
    assert.deepEqual(
      lab.members().map((m) => lab.sh(m, 'readlink', '/usr/pgsql-18')),
      links0,
      'no link moved',
    );
    assert.deepEqual(
      lab.members().map((m) => lab.sh(m, 'ls', '/usr')),
      usr0,
      'nothing unpacked',
    );
  },
);

void test(
  `${FROM} → ${TO} while writes flow; worker SIGKILLed mid-restart; each member restarted once, one switchover, no row lost`,
  { skip, timeout: 900_000 },
  async () => {
    const leader = await lab.healthy();
    const replicas = lab.members().filter((m) => m !== leader);
    const tl0 = await lab.timeline(leader);
    const t0 = await lab.startTimesNow();
    const times = new StartTimes(lab).start();
    const writer = await new LabWriter(t.inv, `up_writes_${Date.now()}`, t.inv.nodes.haproxy[0]!.ip).start();
    loops.push(times, writer);
    await sleep(1000);
    const rowsBefore = writer.acked.length;

    const handle = await startRunbook<typeof upgradePostgresql>(t.env.client, {
      workflow: 'upgradePostgresql',
      args: [{ inventory: t.input, to: TO }],
      cluster: t.inv.cluster,
      operation: 'upgrade',
      suffix: uniqueId('pg'),
      taskQueue: t.taskQueue,
    });
    // SIGKILL the worker the moment the second replica's PostgreSQL goes down under the restart.
    const calls0 = t.count('upgradeRestartMember');
    const victim = () => replicas[1]!;
    const deadline = Date.now() + 300_000;
    for (;;) {
      assert.ok(Date.now() < deadline, `${victim()} never started restarting`);
      const n = t.count('upgradeRestartMember') - calls0;
      assert.ok(n <= 2, `${victim()}'s restart finished before it was seen (timing)`);
      if (n === 2 && (await refused(lab.pg(victim()).ip, t.inv.ports.postgresql))) break;
      await sleep(5);
    }
    await t.worker.kill();
    await workerReady(t.startWorker('worker-2'), 300_000);
    const report = await handle.result();
    await sleep(1500);
    await writer.stop();
    const seen = await times.stop();

    // Every member runs 18.6 (asked over SQL), through the link; the old build is still there.
    for (const m of lab.members()) {
      assert.match(await lab.version(m), /^PostgreSQL 18\.6\b/, `${m} version()`);
      assert.equal(lab.sh(m, 'readlink', '/usr/pgsql-18'), '/usr/pgsql-18.6.0');
      assert.match(lab.sh(m, '/usr/pgsql-18.4.0/bin/postgres', '--version'), /18\.4/);
    }
    // Replicas first, the leader last; one switchover away from the old leader.
    assert.deepEqual(
      report.members.map((m) => m.member),
      [...replicas, leader],
    );
    for (const m of report.members) assert.deepEqual([m.from, m.to], [FROM, TO], JSON.stringify(m));
    assert.equal(report.switchover?.from, leader);
    assert.ok(replicas.includes(report.switchover!.to));
    // The restarted victim was found already on 18.6 by the retried attempt (not restarted again).
    assert.equal(report.members.find((m) => m.member === victim())!.action, 'already-upgraded');
    // Each postmaster restarted exactly once (the old leader by its demotion).
    const t1 = await lab.startTimesNow();
    for (const m of lab.members()) {
      assert.notEqual(t1[m], t0[m], `${m} restarted`);
      const extra = (seen.get(m) ?? []).filter((t) => t !== t0[m] && t !== t1[m]);
      assert.deepEqual(extra, [], `${m} restarted more than once: ${JSON.stringify(seen.get(m))}`);
    }
    // Exactly one switchover: the timeline moved by exactly 1.
    const final = await lab.leaderNow();
    assert.equal(final, report.switchover!.to);
    assert.equal(await lab.timeline(final), tl0 + 1, 'timeline +1');
    assert.deepEqual([report.timelineBefore, report.timelineAfter], [tl0, tl0 + 1]);
    // Healthy: both others streaming from the new leader.
    assert.deepEqual(
      await lab.streamingReplicas(final),
      lab
        .members()
        .filter((m) => m !== final)
        .sort(),
    );
    // Every acknowledged row — before and during — is on the new leader.
    assert.ok(writer.acked.length > rowsBefore + 100, `writes flowed: ${writer.acked.length}`);
    const missing = await lab.sql(lab.pg(final).ip, t.inv.ports.postgresql, async (c) =>
      (
        await c.query<{ id: string }>(
          `select a.id from unnest($1::bigint[]) a(id) left join ${writer.table} t using (id) where t.id is null`,
          [writer.ackedIds],
        )
      ).rows.map((r) => r.id),
    );
    assert.deepEqual(missing, [], `acknowledged writes missing on ${final}`);
    console.log(
      `upgradePostgresql: ${writer.acked.length} writes acknowledged, ${writer.errors} failed attempts, 0 lost, ` +
        `longest write gap ${writer.longestGap(Date.parse(report.startedAt), Date.parse(report.startedAt) + report.tookMs)} ms; ` +
        report.members.map((m) => `${m.member} ${m.action} ${(m.tookMs / 1000).toFixed(1)}s`).join(', '),
    );
  },
);

void test('the same again: a no-op that says so, nothing restarted', { skip, timeout: 300_000 }, async () => {
  await lab.healthy();
  const t0 = await lab.startTimesNow();
  const again = t.pgha('upgrade', 'postgresql', '--cluster', LAB, '--to', TO);
  assert.equal(again.status, 0, again.out);
  assert.match(again.out, /already-at-target: every member already runs PostgreSQL 18\.6: nothing to do/);
  assert.deepEqual(await lab.startTimesNow(), t0);
});
