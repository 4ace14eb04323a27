/** runbooks/patroni-config.ts: where `pgha config set` keys go in the DCS, and values as pg_settings shows them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigKeyError,
  canonicalSetting,
  classifyConfig,
  dcsValueEquals,
  patchBody,
  settingEquals,
} from '../../runbooks/patroni-config';
import type { PgSettingInfo } from '../../runbooks/patroni-config';

/** A character that would break a line of a message: C0, DEL, C1, U+2028/2029. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

const info = (o: Partial<PgSettingInfo> & Pick<PgSettingInfo, 'name' | 'vartype'>): PgSettingInfo => ({
  setting: '',
  unit: null,
  context: 'user',
  enumvals: null,
  min_val: null,
  max_val: null,
  pending_restart: false,
  ...o,
});

void test('DCS keys at the top level (typed), postgresql.use_* under postgresql, the rest as parameters', () => {
  const c = classifyConfig({
    ttl: '30',
    loop_wait: 5,
    synchronous_mode: 'on',
    'postgresql.use_slots': 'false',
    work_mem: ' 8MB ',
    'postgresql.parameters.max_connections': '200',
  });
  assert.deepEqual(
    c.map((x) => [x.key, x.path.join('.'), x.kind, x.value]),
    [
      ['ttl', 'ttl', 'dcs', 30],
      ['loop_wait', 'loop_wait', 'dcs', 5],
      ['synchronous_mode', 'synchronous_mode', 'dcs', true],
      ['postgresql.use_slots', 'postgresql.use_slots', 'dcs', false],
      ['work_mem', 'postgresql.parameters.work_mem', 'parameter', '8MB'],
      ['postgresql.parameters.max_connections', 'postgresql.parameters.max_connections', 'parameter', '200'],
    ],
  );
  assert.deepEqual(patchBody(c), {
    ttl: 30,
    loop_wait: 5,
    synchronous_mode: true,
    postgresql: { use_slots: false, parameters: { work_mem: '8MB', max_connections: '200' } },
  });
});

void test('refusals name the key and where it belongs', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{}, /nothing to set/],
    [{ ttl: 'soon' }, /ttl takes a whole number/],
    [{ synchronous_mode: 'maybe' }, /takes true or false/],
    [{ listen_addresses: '*' }, /listen_addresses cannot be set cluster-wide: Patroni sets it/],
    [{ port: '5433' }, /port cannot be set cluster-wide/],
    [{ data_dir: '/x' }, /not a dynamic \(DCS\) setting.*inventory postgresql.dataDir/],
    [{ 'postgresql.listen': '0.0.0.0:5432' }, /not a dynamic \(DCS\) setting/],
    [{ use_slots: 'true' }, /lives under postgresql: write postgresql.use_slots=true/],
    [{ 'postgresql.whatever': '1' }, /not a DCS key under postgresql/],
    [{ 'Work-Mem': '1' }, /not a PostgreSQL parameter name/],
    [{ work_mem: '' }, /work_mem: empty value/],
  ];
  for (const [set, re] of cases) {
    assert.throws(
      () => classifyConfig(set),
      (e: Error) => e instanceof ConfigKeyError && re.test(e.message),
      JSON.stringify(set),
    );
  }
});

void test('values in the unit pg_settings reports: memory, block-sized, time, bool, enum, ranges', () => {
  const workMem = info({
    name: 'work_mem',
    vartype: 'integer',
    unit: 'kB',
    setting: '8192',
    min_val: '64',
    max_val: '2147483647',
  });
  assert.deepEqual(canonicalSetting(workMem, '8MB'), { ok: true, value: '8192' });
  assert.ok(settingEquals(workMem, '8MB'));
  assert.ok(settingEquals(workMem, '8192kB'));
  assert.ok(settingEquals(workMem, 8192));
  assert.ok(!settingEquals(workMem, '6MB'));
  const sharedBuffers = info({ name: 'shared_buffers', vartype: 'integer', unit: '8kB', setting: '16384' });
  assert.ok(settingEquals(sharedBuffers, '128MB'));
  const timeout = info({ name: 'archive_timeout', vartype: 'integer', unit: 's', setting: '300' });
  assert.ok(settingEquals(timeout, '5min'));
  assert.ok(settingEquals(timeout, '300s'));
  assert.ok(settingEquals(timeout, 300));
  const maxConn = info({
    name: 'max_connections',
    vartype: 'integer',
    setting: '100',
    min_val: '1',
    max_val: '262143',
    context: 'postmaster',
  });
  assert.ok(settingEquals(maxConn, '100'));
  assert.match((canonicalSetting(maxConn, '0') as { error: string }).error, /out of range 1\.\.262143/);
  assert.match((canonicalSetting(maxConn, '10MB') as { error: string }).error, /takes no unit/);
  assert.match((canonicalSetting(workMem, 'lots') as { error: string }).error, /expected a number/);
  assert.match(
    (canonicalSetting(workMem, '8XB') as { error: string }).error,
    /unit XB is not one of B, kB, MB, GB, TB/,
  );
  const hs = info({ name: 'hot_standby_feedback', vartype: 'bool', setting: 'on' });
  assert.ok(settingEquals(hs, 'true'));
  assert.ok(settingEquals(hs, 'ON'));
  assert.ok(!settingEquals(hs, 'off'));
  const lvl = info({
    name: 'wal_level',
    vartype: 'enum',
    setting: 'replica',
    enumvals: ['minimal', 'replica', 'logical'],
  });
  assert.ok(settingEquals(lvl, 'Replica'));
  assert.match(
    (canonicalSetting(lvl, 'hot_standby') as { error: string }).error,
    /expected one of minimal, replica, logical/,
  );
});

void test('DCS values compare as the operator means them', () => {
  assert.ok(dcsValueEquals(10, '10'));
  assert.ok(dcsValueEquals('8MB', '8MB'));
  assert.ok(dcsValueEquals(true, 'on'));
  assert.ok(!dcsValueEquals(undefined, '10'));
  assert.ok(!dcsValueEquals(10, '11'));
});

void test('a value or key with a control character is refused, shown escaped (it would be a new line in postgresql.conf)', () => {
  for (const [key, value, shown] of [
    [
      'work_mem',
      '8MB\nshared_preload_libraries = evil',
      /work_mem="8MB\\nshared_preload_libraries = evil": a value containing a newline \(LF\)/,
    ],
    ['application_name', 'x\ry', /a carriage return \(CR\)/],
    ['archive_command', 'cp %p /a\u0000b', /NUL/],
    ['work_mem', '8MB\u2028', /line separator \(U\+2028\)/],
    ['work_mem', '8MB\u0085', /NEL \(U\+0085\)/],
    ['work\nmem', '8MB', /"work\\nmem": the key is a value containing a newline/],
  ] as const) {
    assert.throws(
      () => classifyConfig({ [key]: value }),
      (e: unknown) => e instanceof ConfigKeyError && shown.test(e.message) && !CONTROL.test(e.message),
      `${JSON.stringify(key)}=${JSON.stringify(value)}`,
    );
  }
  // A tab-free, single-line value with spaces and quotes still passes through unchanged.
  assert.deepEqual(classifyConfig({ application_name: "it's fine" })[0]!.value, "it's fine");
});
