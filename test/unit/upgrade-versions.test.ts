/**
 * The pure parts of the PostgreSQL minor upgrade: version arithmetic (runbooks/pg-version.ts), the
 * ordered plan (planUpgrade), and the CLI's size and duration options.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { UpgradeUsageError, parseBytes, parseMs } from '../../clients/commands/upgrade';
import {
  findPgBuild,
  parsePgVersion,
  pgBuildHome,
  pgVersionNum,
  pgVersionText,
  upgradeProblem,
} from '../../runbooks/pg-version';
import { planUpgrade } from '../../workflows/upgrade-postgresql';
import type { UpgradeMember } from '../../activities/upgrade';

const builds = [
  { version: '18.4.0', wheel: 'w4', archive: 'a4' },
  { version: '18.6.0', wheel: 'w6', archive: 'a6' },
];

void describe('PostgreSQL versions', () => {
  void test('as typed, as the install source names them, as server_version_num', () => {
    assert.deepEqual(parsePgVersion('18.6'), { major: 18, minor: 6 });
    assert.deepEqual(parsePgVersion('18.6.0'), { major: 18, minor: 6 });
    for (const bad of ['latest', '18', '18.6.1', '18.x', '', '18.6; rm -rf /']) {
      assert.equal(parsePgVersion(bad), null, bad);
    }
    assert.equal(pgVersionNum('18.6'), 180006);
    assert.equal(pgVersionNum('17.10'), 170010);
    assert.equal(pgVersionText(180004), '18.4');
    assert.equal(pgVersionText(null), null);
  });

  void test('the build for a target, and where it lives beside the others', () => {
    assert.equal(findPgBuild(builds, '18.6')?.archive, 'a6');
    assert.equal(findPgBuild(builds, '18.6.0')?.archive, 'a6');
    assert.equal(findPgBuild(builds, '18.5'), undefined);
    assert.deepEqual(pgBuildHome('/usr/pgsql-18/bin', '18.6.0'), {
      link: '/usr/pgsql-18',
      target: '/usr/pgsql-18.6.0',
    });
    assert.deepEqual(pgBuildHome('/opt/pg/bin', '18.6.0'), { link: '/opt/pg', target: '/opt/pg-18.6.0' });
  });

  void test('no downgrade, no other major; the same version is no problem', () => {
    assert.match(
      upgradeProblem('pg102', 180006, 180004)!,
      /pg102 runs PostgreSQL 18\.6, newer than the target 18\.4: a downgrade is refused/,
    );
    assert.match(
      upgradeProblem('pg102', 170004, 180006)!,
      /another major version: this runbook does minor upgrades only/,
    );
    assert.equal(upgradeProblem('pg102', 180004, 180006), null);
    assert.equal(upgradeProblem('pg102', 180006, 180006), null);
  });
});

const m = (name: string, role: 'leader' | 'replica', v: number): UpgradeMember => ({
  name,
  role,
  state: 'running',
  serverVersion: v,
  running: pgVersionText(v),
  postmasterStartTime: null,
  timeline: 1,
  upgraded: v === 180006,
});

void describe('planUpgrade', () => {
  void test('replicas first in inventory order, the leader last through a switchover; done members skipped', () => {
    const plan = planUpgrade({
      leader: 'pg103',
      build: '18.6.0',
      members: [m('pg102', 'replica', 180004), m('pg103', 'leader', 180004), m('pg104', 'replica', 180006)],
    });
    assert.deepEqual(
      plan.map((p) => [p.node, p.role]),
      [
        ['pg102', 'replica'],
        ['pg104', 'replica'],
        ['pg103', 'leader'],
      ],
    );
    assert.match(plan[0]!.steps[0]!, /^drain pg102 from the read port/);
    assert.deepEqual(plan[1]!.steps, ['already on 18.6: skipped']);
    assert.match(
      plan[2]!.steps.join('\n'),
      /switchover pg103 → an upgraded replica \(its demotion restarts it on 18\.6\.0\)/,
    );
  });
});

void describe('pgha upgrade options', () => {
  void test('sizes and durations', () => {
    assert.equal(parseBytes('--max-lag', '10MiB'), 10 * 1024 * 1024);
    assert.equal(parseBytes('--max-lag', '512kB'), 512 * 1024);
    assert.equal(parseBytes('--max-lag', '1048576'), 1048576);
    assert.equal(parseMs('--max-xact-age', '15s'), 15_000);
    assert.equal(parseMs('--max-xact-age', '500ms'), 500);
    assert.equal(parseMs('--max-xact-age', '2m'), 120_000);
    assert.throws(() => parseBytes('--max-lag', 'lots'), UpgradeUsageError);
    assert.throws(() => parseBytes('--max-lag', '0'), /--max-lag "0": give a size such as 10MiB/);
    assert.throws(
      () => parseMs('--max-xact-age', '15 parsecs'),
      /--max-xact-age "15 parsecs": give a duration such as 15s/,
    );
  });
});
