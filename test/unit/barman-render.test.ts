/**
 * Barman's files for the backup CT (activities/render/barman.ts): golden files for the lab's
 * inventory (UPDATE_GOLDEN=1 rewrites them), and the properties the backup design rests on — WAL
 * streaming through the Patroni permanent slot, connections through every HAProxy's write port,
 * Barman's roles allowed only from the backup CT's path and refused elsewhere, passwords only in
 * the 0600 .pgpass.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { loadInventory } from '../../runbooks/inventory';
import { assertGoldenDir, updateGolden } from '../helpers/golden';
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import {
  BARMAN_RECEIVER_NAME,
  barmanSynchronousStandbyNames,
  renderBackupFiles,
  renderBarmanRetentionConf,
  renderPatroniYml,
  renderPgHba,
  synchronousStandbySql,
  type RenderedFile,
} from '../../activities/render';
import { validateInventory } from '../../runbooks/schema';
import { parseRetention } from '../../runbooks/retention';
import { barmanConninfo } from '../../runbooks/topology';

const root = join(__dirname, '..', '..');
const goldenDir = join(root, 'test', 'golden', 'barman');

const FAKE: ClusterSecrets = {
  superuserPassword: '<superuser-password>',
  replicationPassword: '<replication-password>',
  restApiPassword: '<restapi-password>',
  haproxyStatsPassword: '<haproxy-stats-password>',
  barmanPassword: '<barman-password>',
  streamingBarmanPassword: '<streaming-barman-password>',
};

const lab = (): Promise<Inventory> => loadInventory(join(root, 'runbooks', 'clusters', 'lab.yaml'));
const byPath = (files: RenderedFile[], path: string) => {
  const f = files.find((x) => x.path === path);
  assert.ok(f, `${path} is rendered (have ${files.map((x) => x.path).join(', ')})`);
  return f;
};
/** `key = value` lines of an INI section. */
function ini(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+) = (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

void describe('Barman golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
  void it('lab: every file of the backup CT matches test/golden/barman/', async () => {
    const files = renderBackupFiles(await lab(), FAKE);
    const manifest = files.map(
      (f) => `${f.path}\t${f.mode.toString(8).padStart(4, '0')}\t${f.owner}:${f.group}`,
    );
    const want = new Map<string, string>(files.map((f) => [`backup1${f.path}`, f.content]));
    want.set('MANIFEST.tsv', `# path in the CT\tmode\towner:group\n${manifest.join('\n')}\n`);
    await assertGoldenDir(goldenDir, want);
  });
});

void describe('Barman configuration', () => {
  void it('streams WAL through the permanent slot and backs up with pg_basebackup, through every HAProxy', async () => {
    const inv = await lab();
    const server = ini(byPath(renderBackupFiles(inv, FAKE), '/etc/barman.d/lab.conf').content);
    assert.equal(server.backup_method, 'postgres');
    assert.equal(server.streaming_archiver, 'on');
    assert.equal(server.archiver, 'off');
    assert.equal(server.slot_name, 'barman');
    assert.equal(server.create_slot, 'manual', 'Patroni owns the slot, Barman never drops it');
    assert.equal(server.path_prefix, '/usr/pgsql-18/bin');
    for (const key of ['conninfo', 'streaming_conninfo'] as const) {
      assert.match(server[key]!, /^host=10\.213\.50\.11,10\.213\.50\.12 port=5432,5432 /, key);
      assert.doesNotMatch(server[key]!, /password/, `${key} holds no password`);
    }
    assert.match(server.conninfo!, / user=barman /);
    assert.match(server.streaming_conninfo!, / user=streaming_barman /);
    assert.equal(server.conninfo, barmanConninfo(inv, 'conninfo'));
  });

  void it('keeps passwords in the barman user’s 0600 .pgpass only', async () => {
    const files = renderBackupFiles(await lab(), FAKE);
    const pgpass = byPath(files, '/var/lib/barman/.pgpass');
    assert.equal(pgpass.mode, 0o600);
    assert.equal(pgpass.owner, 'barman');
    assert.match(pgpass.content, /^10\.213\.50\.11:5432:\*:barman:<barman-password>$/m);
    assert.match(pgpass.content, /^10\.213\.50\.12:5432:\*:streaming_barman:<streaming-barman-password>$/m);
    for (const f of files.filter((x) => x !== pgpass))
      assert.doesNotMatch(f.content, /<[a-z-]+-password>/, f.path);
  });

  void it('refuses to render without the two passwords', async () => {
    const { barmanPassword: _omit, ...partial } = FAKE;
    const inv = await lab();
    assert.throws(() => renderBackupFiles(inv, partial), /secrets\.barmanPassword/);
  });

  void it('runs barman cron every minute as the barman user', async () => {
    const files = renderBackupFiles(await lab(), FAKE);
    const service = byPath(files, '/etc/systemd/system/barman-cron.service').content;
    assert.match(service, /^User=barman$/m);
    assert.match(service, /^ExecStart=\/opt\/barman\/bin\/barman -q cron$/m);
    assert.match(service, /^KillMode=process$/m, 'receive-wal outlives the oneshot cron run');
    assert.match(
      byPath(files, '/etc/systemd/system/barman-cron.timer').content,
      /^OnCalendar=\*-\*-\* \*:\*:00$/m,
    );
  });
});

void describe('the cluster side of the backup CT', () => {
  void it('declares the slot as a Patroni permanent physical slot', async () => {
    const inv = await lab();
    const yml = parse(renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE).content) as {
      bootstrap: { dcs: { slots?: Record<string, { type: string }> } };
    };
    assert.deepEqual(yml.bootstrap.dcs.slots, { barman: { type: 'physical' } });
  });

  void it('allows Barman’s roles only from the backup CT and the HAProxies, before any broader line', async () => {
    const inv = await lab();
    const hba = renderPgHba(inv);
    const allowed = hba.filter((l) => / (barman|streaming_barman) \S+ scram-sha-256$/.test(l));
    assert.deepEqual(allowed, [
      'host all barman 10.213.50.31/32 scram-sha-256',
      'host replication streaming_barman 10.213.50.31/32 scram-sha-256',
      'host all barman 10.213.50.11/32 scram-sha-256',
      'host replication streaming_barman 10.213.50.11/32 scram-sha-256',
      'host all barman 10.213.50.12/32 scram-sha-256',
      'host replication streaming_barman 10.213.50.12/32 scram-sha-256',
    ]);
    const reject = hba.indexOf('host all barman,streaming_barman all reject');
    const localReject = hba.indexOf('local all barman,streaming_barman reject');
    assert.ok(reject > 0 && localReject > 0, 'reject lines present');
    const firstBroad = hba.findIndex((l) => / all all /.test(l));
    assert.ok(reject < firstBroad && localReject < firstBroad, 'the reject lines come before the broad ones');
  });

  void it('adds nothing for a cluster without a backup CT', async () => {
    const inv = await lab();
    const plain: Inventory = { ...inv, nodes: { ...inv.nodes, backup: [] } };
    assert.ok(!renderPgHba(plain).some((l) => l.includes('barman')));
    const yml = parse(renderPatroniYml(plain, plain.nodes.postgres[0]!, FAKE).content) as {
      bootstrap: { dcs: Record<string, unknown> };
    };
    assert.equal(yml.bootstrap.dcs.slots, undefined);
  });
});

void describe('retention: Barman’s two policy forms, in a drop-in beside the server file', () => {
  void it('accepts RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS and REDUNDANCY n, normalised; refuses the rest naming the fix', () => {
    assert.equal(parseRetention('--retention', 'recovery window of 7 days'), 'RECOVERY WINDOW OF 7 DAYS');
    assert.equal(parseRetention('--retention', ' REDUNDANCY   3 '), 'REDUNDANCY 3');
    assert.equal(parseRetention('--retention', 'RECOVERY WINDOW OF 2 WEEKS'), 'RECOVERY WINDOW OF 2 WEEKS');
    for (const bad of [
      'REDUNDANCY 0',
      'REDUNDANCY -1',
      'RECOVERY WINDOW OF 7 YEARS',
      'RECOVERY WINDOW OF 7 DAYS\nretention_policy_mode = manual',
      'KEEP 3',
      '',
    ])
      assert.throws(() => parseRetention('--retention', bad), /--retention .*'REDUNDANCY <n>'/, bad);
  });

  void it('renders the policy for the server section (golden: test/golden/barman-retention/)', async () => {
    const inv = await lab();
    const f = renderBarmanRetentionConf(inv, 'RECOVERY WINDOW OF 7 DAYS');
    assert.equal(f.path, '/etc/barman.d/lab.retention.conf');
    assert.equal(ini(f.content).retention_policy, 'RECOVERY WINDOW OF 7 DAYS');
    assert.match(f.content, /^\[lab\]$/m);
    const golden = join(root, 'test', 'golden', 'barman-retention', 'lab.retention.conf');
    if (updateGolden) {
      await mkdir(dirname(golden), { recursive: true });
      await writeFile(golden, f.content);
    }
    assert.equal(f.content, await readFile(golden, 'utf8'), 'UPDATE_GOLDEN=1 to accept');
    assert.throws(() => renderBarmanRetentionConf(inv, 'REDUNDANCY 3\n[barman]'), /parseRetention/);
  });
});

void describe('backup.synchronous: Barman’s receiver as the synchronous standby', () => {
  const labDoc = () =>
    parse(readFileSync(join(root, 'runbooks', 'clusters', 'lab.yaml'), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
  const errors = (doc: unknown) =>
    validateInventory(doc)
      .issues.filter((i) => i.severity === 'error')
      .map((i) => `${i.path}: ${i.found} → ${i.fix}`);

  void it('names the receiver in the server file, so synchronous_standby_names can name it', async () => {
    const conf = byPath(renderBackupFiles(await lab(), FAKE), '/etc/barman.d/lab.conf').content;
    assert.equal(ini(conf).streaming_archiver_name, BARMAN_RECEIVER_NAME);
  });

  void it('sets synchronous_standby_names on a member only when it differs, and resets only its own value', async () => {
    const async_ = await lab();
    assert.equal(async_.backup.synchronous, false, 'asynchronous unless asked');
    const sync = { ...async_, backup: { ...async_.backup, synchronous: true } };
    assert.equal(barmanSynchronousStandbyNames(sync), 'barman_receive_wal');
    assert.deepEqual(synchronousStandbySql(sync, ''), [
      "ALTER SYSTEM SET synchronous_standby_names = 'barman_receive_wal';",
      'SELECT pg_reload_conf();',
    ]);
    assert.deepEqual(synchronousStandbySql(sync, 'barman_receive_wal'), [], 'already so: nothing');
    assert.equal(barmanSynchronousStandbyNames(async_), undefined);
    assert.deepEqual(synchronousStandbySql(async_, 'barman_receive_wal'), [
      'ALTER SYSTEM RESET synchronous_standby_names;',
      'SELECT pg_reload_conf();',
    ]);
    assert.deepEqual(synchronousStandbySql(async_, ''), []);
    assert.deepEqual(synchronousStandbySql(async_, 'pg103'), [], 'a value pgha did not set is kept');
    const noCt = { ...sync, nodes: { ...sync.nodes, backup: [] } };
    assert.equal(barmanSynchronousStandbyNames(noCt), undefined, 'no backup CT: nothing to wait for');
  });

  void it('validate: synchronous needs a backup CT, commits that wait, and synchronous_standby_names left to pgha', () => {
    const ok = labDoc();
    ok.backup = { ...ok.backup, synchronous: true };
    assert.deepEqual(errors(ok), []);
    const noCt = labDoc();
    noCt.backup = { ...noCt.backup, synchronous: true };
    delete noCt.nodes!.backup;
    assert.match(
      errors(noCt).join('\n'),
      /^backup\.synchronous: true, and no backup CT → add the backup CT/m,
    );
    const local = labDoc();
    local.backup = { ...local.backup, synchronous: true };
    (local.postgresql!.parameters as Record<string, unknown>).synchronous_commit = 'local';
    assert.match(errors(local).join('\n'), /^postgresql\.parameters\.synchronous_commit: "local"/m);
    const named = labDoc();
    named.backup = { ...named.backup, synchronous: true };
    (named.postgresql!.parameters as Record<string, unknown>).synchronous_standby_names = '*';
    assert.match(errors(named).join('\n'), /^postgresql\.parameters\.synchronous_standby_names: /m);
    const notBool = labDoc();
    notBool.backup = { ...notBool.backup, synchronous: 'yes' };
    assert.match(errors(notBool).join('\n'), /^backup\.synchronous: /m);
  });
});
