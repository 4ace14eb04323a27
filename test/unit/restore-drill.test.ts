/**
 * Restore drills, the pure parts and the counting SQL:
 * - the scratch copy's files (activities/render/drill.ts): golden files for the lab's inventory
 *   (UPDATE_GOLDEN=1 rewrites them) and the properties that keep it apart from the cluster;
 * - the row counts (activities/backup/counts.ts) on a real local PostgreSQL: the largest tables of
 *   every database, odd names quoted, the marker table left out; and the comparison's bracket;
 * - the backup reference grammar and psql's database argument.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Client } from 'pg';
import { loadInventory } from '../../runbooks/inventory';
import { assertGoldenDir } from '../helpers/golden';
import type { Inventory } from '../../runbooks/schema';
import {
  drillScratch,
  drillServerOptions,
  renderDrillFiles,
  type DrillScratch,
} from '../../activities/render';
import {
  compareCounts,
  largestTableCounts,
  mergeCounts,
  type SqlRunner,
} from '../../activities/backup/counts';
import { dbnameConninfo } from '../../activities/backup/barman';
import { parseBackupRef } from '../../runbooks/retention';
import { startLocalPostgres, type LocalPostgres } from '../helpers/local-postgres';

const root = join(__dirname, '..', '..');
const goldenDir = join(root, 'test', 'golden', 'drill');
const lab = (): Promise<Inventory> => loadInventory(join(root, 'runbooks', 'clusters', 'lab.yaml'));

/** `key = value` lines of postgresql.conf, values unquoted. */
function conf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+) = '?(.*?)'?$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

void describe('the scratch copy of a restore drill', () => {
  let inv: Inventory;
  let s: DrillScratch;
  before(async () => {
    inv = await lab();
    s = drillScratch(inv, 'drill-lab-2f4116');
  });

  void it('lab: its files match test/golden/drill/ (UPDATE_GOLDEN=1 to accept)', async () => {
    const files = renderDrillFiles(inv, s);
    const want = new Map<string, string>(files.map((f) => [`backup1${f.path}`, f.content]));
    want.set(
      'MANIFEST.tsv',
      `${files.map((f) => `${f.path}\t${f.mode.toString(8).padStart(4, '0')}\t${f.owner}:${f.group}`).join('\n')}\npg_ctl -o\t${drillServerOptions(s)}\n`,
    );
    await assertGoldenDir(goldenDir, want);
  });

  void it('can never join or harm the cluster: loopback, own port, no archiving, no replication, no standby', () => {
    const [file, hba] = renderDrillFiles(inv, s);
    const c = conf(file!.content);
    assert.equal(c.listen_addresses, '127.0.0.1');
    assert.notEqual(Number(c.port), inv.ports.postgresql);
    assert.equal(Number(c.port), s.port);
    assert.equal(c.archive_mode, 'off');
    assert.equal(c.max_wal_senders, '0');
    assert.equal(c.max_replication_slots, '0');
    assert.equal(c.primary_conninfo, '');
    assert.equal(c.primary_slot_name, '');
    assert.equal(c.hot_standby, 'off');
    assert.equal(c.recovery_target, 'immediate');
    assert.match(c.restore_command!, /\/bin\/barman get-wal lab %f > %p$/);
    assert.ok(!/etcd|patroni|2379|8008/i.test(file!.content), 'nothing points at etcd or Patroni');
    for (const ip of Object.values(inv.nodes)
      .flat()
      .map((n) => n.ip))
      assert.ok(!file!.content.includes(ip), `${ip} is not in the drill's configuration`);
    // everything it writes is below the scratch directory, under the backup storage
    assert.ok(s.dir.startsWith(`${inv.backup.storage.path}/pgha-drill/`));
    for (const p of [
      s.data,
      s.socketDir,
      s.conf,
      s.hba,
      s.ident,
      s.log,
      c.hba_file!,
      c.ident_file!,
      c.unix_socket_directories!,
    ])
      assert.ok(p.startsWith(`${s.dir}/`), p);
    assert.deepEqual(
      hba!.content.split('\n').filter((l) => l !== '' && !l.startsWith('#')),
      ['local all all trust'],
    );
    assert.equal(file!.mode, 0o600);
    assert.equal(file!.owner, inv.backup.osUser);
    // the isolating settings are on the command line too (above postgresql.auto.conf), one token each
    const opts = drillServerOptions(s);
    for (const k of [
      'config_file',
      'listen_addresses',
      'port',
      'archive_mode',
      'max_wal_senders',
      'hba_file',
    ])
      assert.match(opts, new RegExp(`-c ${k}=\\S+`));
    assert.ok(!/['"`$;&|<>\\]/.test(opts), `no shell metacharacters in ${opts}`);
  });

  void it('refuses a scratch id that could leave the scratch directory', () => {
    for (const bad of ['', '../etc', 'a/b', 'A', '-x', 'a b', 'x'.repeat(101)])
      assert.throws(() => drillScratch(inv, bad), /drill scratch id/);
  });
});

void describe('row counts of the largest tables', () => {
  let pg: LocalPostgres;
  const sql: SqlRunner = async (db, q) => {
    const c = new Client({
      host: pg.host,
      port: pg.port,
      user: 'postgres',
      password: pg.password,
      database: db,
    });
    await c.connect();
    try {
      const res = await c.query({ text: q, rowMode: 'array' });
      const all = Array.isArray(res) ? res : [res];
      return all.flatMap((r) => (r.rows as unknown[][]).map((row) => row.map((v) => String(v))));
    } finally {
      await c.end();
    }
  };
  before(async () => {
    pg = await startLocalPostgres({ name: 'drill-counts' });
    await sql(
      'postgres',
      `create table big (id int); insert into big select generate_series(1, 3000);
       create schema "odd s";
       create table "odd s".";x" (id int); insert into "odd s".";x" select generate_series(1, 7);
       create table pgha_backup_marker (id text primary key); insert into pgha_backup_marker values ('m');`,
    );
    await sql('postgres', 'create database "other db"');
    await sql('other db', 'create table t2 (v text); insert into t2 values (1), (2);');
  });
  after(async () => {
    await pg?.stop();
  });

  void it('counts the largest user tables of every database, quoted, without the marker table', async () => {
    const counts = await largestTableCounts(sql);
    const by = (db: string, t: string) => counts.find((c) => c.database === db && c.table === t)?.rows;
    assert.equal(by('postgres', '"public"."big"'), 3000);
    assert.equal(by('postgres', '"odd s".";x"'), 7);
    assert.equal(by('other db', '"public"."t2"'), 2);
    assert.ok(!counts.some((c) => c.table.includes('pgha_backup_marker')));
    assert.ok(!counts.some((c) => c.database.startsWith('template')));
  });

  void it('a restored count must lie between the counts at the marker and after the backup', () => {
    const rec = mergeCounts(
      [{ database: 'd', table: 't', rows: 10 }],
      [
        { database: 'd', table: 't', rows: 15 },
        { database: 'd', table: 'u', rows: 4 },
      ],
    );
    assert.deepEqual(rec, [
      { database: 'd', table: 't', atMarker: 10, atEnd: 15 },
      { database: 'd', table: 'u', atEnd: 4 },
    ]);
    const ok = (t: number, u?: number) =>
      compareCounts(rec, [
        { database: 'd', table: 't', rows: t },
        ...(u === undefined ? [] : [{ database: 'd', table: 'u', rows: u }]),
      ]).map((c) => c.ok);
    assert.deepEqual(ok(12, 4), [true, true]);
    assert.deepEqual(ok(10, 4), [true, true]);
    assert.deepEqual(ok(9, 4), [false, true], 'rows lost');
    assert.deepEqual(ok(16, 5), [false, false], 'more than recorded after the backup');
    assert.deepEqual(ok(12), [true, false], 'a recorded table missing from the copy');
  });
});

void describe('inputs that reach a command', () => {
  void it('a backup reference is latest, a Barman id or a pgha name; anything else names the flag', () => {
    for (const good of ['latest', '20261129T121352', 'pgha-backup-lab-20261129t121352-2f4116'])
      assert.equal(parseBackupRef('--backup', good), good);
    for (const bad of ['', 'last', '2026-11-29', '--help', 'pgha-../x', '20261129T121352;rm'])
      assert.throws(() => parseBackupRef('--backup', bad), /--backup .*expected latest/);
  });

  void it("a database name reaches psql's -d as a quoted conninfo, never as options", () => {
    assert.equal(dbnameConninfo('postgres'), "dbname='postgres'");
    assert.equal(dbnameConninfo("a'b\\c"), "dbname='a\\'b\\\\c'");
    assert.equal(dbnameConninfo('host=evil port=1'), "dbname='host=evil port=1'");
  });
});
