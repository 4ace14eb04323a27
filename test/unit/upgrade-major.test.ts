/**
 * The pure parts of the major upgrade: the inventory as it is after it (majorTargetInput: the new
 * major's build, bin and data directories beside the old), the build `--to 18` means
 * (findMajorBuild), the plan the dry run prints, and patroni.yml rendered for the new directories
 * (golden: test/golden/major, the old and the new side by side).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { renderBarmanServerConf, renderPatroniYml } from '../../activities/render';
import { findMajorBuild, majorTargetInput, swapMajor } from '../../runbooks/pg-version';
import { parseInventory } from '../../runbooks/schema';
import type { ClusterSecrets, InventoryInput } from '../../runbooks/schema';
import { planMajor } from '../../workflows/upgrade-major';
import { assertGoldenDir } from '../helpers/golden';
import { repoRoot } from '../helpers/local-common';

const raw = () =>
  parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab17.yaml'), 'utf8')) as InventoryInput;

const FAKE: ClusterSecrets = {
  superuserPassword: '<superuser-password>',
  replicationPassword: '<replication-password>',
  restApiPassword: '<restapi-password>',
  haproxyStatsPassword: '<haproxy-stats-password>',
};

const builds = [
  { version: '17.11.0', wheel: 'w17', archive: 'a17' },
  { version: '18.4.0', wheel: 'w4', archive: 'a4' },
  { version: '18.6.0', wheel: 'w6', archive: 'a6' },
];

void describe('majorTargetInput', () => {
  void test('the default layout: versions.postgresql the build, the directories follow', () => {
    const next = parseInventory(majorTargetInput(raw(), '18.6.0'));
    assert.equal(next.versions.postgresql, '18.6');
    assert.equal(next.postgresql.major, 18);
    assert.equal(next.postgresql.binDir, '/usr/pgsql-18/bin');
    assert.equal(next.postgresql.dataDir, '/var/lib/pgsql/18/data');
    assert.equal(
      parseInventory(raw()).postgresql.dataDir,
      '/var/lib/pgsql/17/data',
      'the input is not changed',
    );
  });

  void test("with a backup CT: the new major's own Barman server; without one: none set", () => {
    const withCt = {
      ...raw(),
      nodes: { ...raw().nodes, backup: [{ vmid: 126, hostname: 'backup17', ip: '10.213.50.46' }] },
      secrets: { ...raw().secrets, barmanPassword: 'env:B', streamingBarmanPassword: 'env:S' },
    };
    const next = parseInventory(majorTargetInput(withCt, '18.6.0'));
    assert.equal(next.backup.server, 'lab17-pg18');
    assert.equal(renderBarmanServerConf(next).path, '/etc/barman.d/lab17-pg18.conf');
    assert.match(renderBarmanServerConf(next).content, /^\[lab17-pg18\]$/m);
    assert.equal(parseInventory(majorTargetInput(raw(), '18.6.0')).backup.server, undefined);
  });

  void test('the old server retired: active = false in its own file, its section and directory unchanged', () => {
    const inv = parseInventory(raw());
    const live = renderBarmanServerConf(inv);
    const retired = renderBarmanServerConf(inv, { retired: true });
    assert.equal(retired.path, live.path);
    assert.match(retired.content, /^\[lab17\]\ndescription = .*\nactive = false$/m);
    assert.doesNotMatch(live.content, /active/);
    const body = (c: string) => c.split('\n').filter((l) => !l.startsWith('#') && l !== 'active = false');
    assert.deepEqual(body(retired.content), body(live.content));
  });

  void test('explicit directories: the segment naming the old major names the new one', () => {
    const input = {
      ...raw(),
      postgresql: { ...raw().postgresql, binDir: '/opt/pg17/bin', dataDir: '/srv/postgresql-17/main' },
    };
    const next = parseInventory(majorTargetInput(input, '18.4.0'));
    assert.equal(next.postgresql.binDir, '/opt/pg18/bin');
    assert.equal(next.postgresql.dataDir, '/srv/postgresql-18/main');
    assert.equal(next.versions.postgresql, '18.4');
  });

  void test('a directory that names no major is refused naming the field and the fix', () => {
    const input = { ...raw(), postgresql: { ...raw().postgresql, dataDir: '/srv/db/main' } };
    assert.throws(
      () => majorTargetInput(input, '18.6.0'),
      /postgresql\.dataDir \/srv\/db\/main names no PostgreSQL 17 directory.*\/var\/lib\/pgsql\/<major>\/data, or omit dataDir/,
    );
  });

  void test('swapMajor touches only a segment that names the old major', () => {
    assert.equal(swapMajor('/var/lib/pgsql/17/data', 17, 18), '/var/lib/pgsql/18/data');
    assert.equal(swapMajor('/data-17x/17/data', 17, 18), '/data-17x/18/data');
    assert.equal(swapMajor('/var/lib/pgsql/16/data', 17, 18), null);
  });
});

void describe('findMajorBuild', () => {
  void test('--to 18 is the newest 18.x; --to 18.4 exactly that; none is undefined', () => {
    assert.equal(findMajorBuild(builds, '18')?.version, '18.6.0');
    assert.equal(findMajorBuild(builds, '18.4')?.version, '18.4.0');
    assert.equal(findMajorBuild(builds, '19'), undefined);
    assert.equal(findMajorBuild(builds, '17')?.version, '17.11.0');
  });
});

void test('the plan: the point of no return is the start of the new leader, replicas re-cloned after', () => {
  const plan = planMajor({ leader: 'pg17a', replicas: ['pg17b'], build: '18.6.0', fromNum: 170011 });
  const point = plan.findIndex((s) => s.includes('point of no return'));
  assert.match(plan[point]!, /start pg17a on 18\.6\.0/);
  assert.ok(plan.findIndex((s) => s.includes('pg_upgrade --link')) < point);
  assert.ok(plan.findIndex((s) => s.includes('re-clone pg17b')) > point);
});

void test('patroni.yml before and after: only the bin and data directories and the major change (golden)', async () => {
  const old = parseInventory(raw());
  const next = parseInventory(majorTargetInput(raw(), '18.6.0'));
  const want = new Map<string, string>();
  for (const [side, inv] of [
    ['17', old],
    ['18', next],
  ] as const)
    for (const node of inv.nodes.postgres)
      want.set(`${side}/${node.hostname}/patroni.yml`, renderPatroniYml(inv, node, FAKE).content);
  await assertGoldenDir(join(repoRoot, 'test/golden/major'), want);
  const a = want.get('17/pg17a/patroni.yml')!.split('\n');
  const b = want.get('18/pg17a/patroni.yml')!.split('\n');
  const changed = a.filter((l, i) => l !== b[i]).map((l) => l.trim());
  assert.deepEqual(changed, ['data_dir: /var/lib/pgsql/17/data', 'bin_dir: /usr/pgsql-17/bin']);
});
