import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';
import {
  createPostgresActivities,
  PostgresAuthError,
  PostgresReadOnlyError,
  PostgresUnreachableError,
  type PgConn,
} from '../../activities/postgres';
import { pollUntil } from '../../activities/poll';
import { freePort } from '../helpers/local-common';
import { startLocalPostgres, type LocalPostgres } from '../helpers/local-postgres';

void describe('postgres activities against real PostgreSQL 18 on loopback (a primary and a streaming standby)', () => {
  let primary: LocalPostgres;
  let standby: LocalPostgres;
  const pg = createPostgresActivities({ connectTimeoutMs: 2000, statementTimeoutMs: 3000 });
  const conn = (s: LocalPostgres): PgConn => ({
    host: s.host,
    port: s.port,
    user: 'postgres',
    passwordRef: 'env:PGHA_TEST_PG_PASSWORD',
  });

  before(async () => {
    primary = await startLocalPostgres({ name: 'pg103' });
    process.env.PGHA_TEST_PG_PASSWORD = primary.password;
    standby = await startLocalPostgres({ name: 'pg102', primary });
  });
  after(async () => {
    await standby?.stop();
    await primary?.stop();
    delete process.env.PGHA_TEST_PG_PASSWORD;
  });

  void it('tells the primary from the standby: recovery, identity, timeline', async () => {
    assert.equal(await pg.pgIsInRecovery(conn(primary)), false);
    assert.equal(await pg.pgIsInRecovery(conn(standby)), true);
    const p = await pg.pgIdentity(conn(primary));
    assert.equal(p.clusterName, 'pg103');
    assert.equal(p.serverAddr, '127.0.0.1');
    assert.equal(p.serverPort, primary.port);
    assert.equal(p.inRecovery, false);
    assert.equal(p.timeline, 1);
    assert.ok(p.serverVersionNum >= 180000, `server_version_num ${p.serverVersionNum}`);
    assert.equal(p.dataChecksums, true, 'initdb of PostgreSQL 18 enables data checksums by default');
    const s = await pg.pgIdentity(conn(standby));
    assert.equal(s.clusterName, 'pg102');
    assert.equal(s.inRecovery, true);
    assert.equal(s.systemIdentifier, p.systemIdentifier, 'a standby of the same cluster');
    assert.deepEqual(await pg.pgTimeline(conn(standby)), { timeline: 1, checkpointTimeline: 1 });
  });

  void it('lists pg_stat_replication on the primary, with the standby streaming and its lag in bytes', async () => {
    const rows = await pollUntil(
      { what: 'the standby streaming', timeoutMs: 15_000, intervalMs: 200 },
      async () => {
        const r = await pg.pgReplication(conn(primary));
        return { done: r.some((x) => x.state === 'streaming'), value: r, describe: JSON.stringify(r) };
      },
    );
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.applicationName, 'pg102');
    assert.equal(row.clientAddr, '127.0.0.1');
    assert.equal(row.syncState, 'async');
    assert.equal(typeof row.replayLagBytes, 'number');
    assert.ok(row.replayLagBytes! >= 0);
    assert.match(row.sentLsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.deepEqual(await pg.pgReplication(conn(standby)), [], 'nobody replicates from the standby');
  });

  void it('a probe row written on the primary is read back on the standby; a write to the standby is refused', async () => {
    const w = await pg.pgWriteProbe({ conn: conn(primary), note: 'hello from the test' });
    assert.match(w.id, /^\d+$/);
    assert.equal(w.clusterName, 'pg103');
    const w2 = await pg.pgWriteProbe({ conn: conn(primary) });
    assert.equal(BigInt(w2.id), BigInt(w.id) + 1n, 'the table is reused, not recreated');
    const r = await pollUntil(
      { what: 'the probe row on the standby', timeoutMs: 15_000, intervalMs: 100 },
      async () => {
        const x = await pg.pgReadProbe({ conn: conn(standby), id: w.id });
        return { done: x.found, value: x, describe: JSON.stringify(x) };
      },
    );
    assert.equal(r.note, 'hello from the test');
    assert.equal(r.clusterName, 'pg102');
    assert.equal(r.inRecovery, true);
    const missing = await pg.pgReadProbe({ conn: conn(primary), id: '999999999' });
    assert.equal(missing.found, false);
    await assert.rejects(pg.pgWriteProbe({ conn: conn(standby) }), (err: unknown) => {
      assert.ok(err instanceof PostgresReadOnlyError);
      assert.match(err.message, new RegExp(`postgres@127\\.0\\.0\\.1:${standby.port}`));
      return true;
    });
  });

  void it('a wrong password is an auth error naming the reference, never the value', async () => {
    process.env.PGHA_TEST_PG_WRONG = 'definitely-wrong-pw';
    try {
      await assert.rejects(
        pg.pgIsInRecovery({ ...conn(primary), passwordRef: 'env:PGHA_TEST_PG_WRONG' }),
        (err: unknown) => {
          assert.ok(err instanceof PostgresAuthError);
          assert.match(err.message, /env:PGHA_TEST_PG_WRONG/);
          assert.ok(!err.message.includes('definitely-wrong-pw'));
          return true;
        },
      );
    } finally {
      delete process.env.PGHA_TEST_PG_WRONG;
    }
  });

  void it('a port nobody listens on is PostgresUnreachable, naming host and port', async () => {
    const port = await freePort();
    await assert.rejects(
      pg.pgIsInRecovery({ ...conn(primary), port }),
      (err: unknown) => err instanceof PostgresUnreachableError && err.message.includes(`127.0.0.1:${port}`),
    );
  });

  void it('after promoting the standby: the wait sees it writable, on timeline 2, and it takes writes', async () => {
    const c = new Client({
      host: standby.host,
      port: standby.port,
      user: 'postgres',
      password: standby.password,
      database: 'postgres',
    });
    await c.connect();
    try {
      await c.query('select pg_promote(wait => false)');
    } finally {
      await c.end();
    }
    const id = await pg.pgWaitRecovery({
      conn: conn(standby),
      inRecovery: false,
      waitTimeoutMs: 20_000,
      intervalMs: 100,
    });
    assert.equal(id.inRecovery, false);
    assert.equal(id.timeline, 2);
    const w = await pg.pgWriteProbe({ conn: conn(standby) });
    assert.equal(w.clusterName, 'pg102');
    await assert.rejects(
      pg.pgWaitRecovery({ conn: conn(primary), inRecovery: true, waitTimeoutMs: 600, intervalMs: 100 }),
      /timed out after 600 ms waiting for .*in recovery.*last seen: in recovery: false/,
    );
  });
});
